"""Throughput of K workers on load-mode jobs against one database server.

Each trial seeds ``--jobs`` load-mode pose estimations (DeepLabCut outputs of ``--frames``
frames × ``--parts`` body parts, written once) under a session of its own, starts K real
``workflow-deeplabcut worker --once`` processes and times them until the last one exits. The
worker counts are interleaved (1 2 4, 2 4 1, 4 1 2, ...), and each trial reports:

- jobs per second, and its ratio to one worker (median of the per-round ratios, min–max);
- the workers' CPU seconds per job (their own processes) and the server's CPU seconds per job
  (``/proc`` of the server process, children included: PostgreSQL's backends);
- bytes written to the store and to the database per job, and per frame × body part.

Those figures feed the README's sizing of a lab's cluster. The server must run on this machine
(its CPU is read from ``/proc``); on 2 cores, more than two workers share the cores, so the
scaling shown here is the database's and the store's share, not a cluster's.

    .venv/bin/python benchmarks/workers.py --backend mariadb --jobs 24 --workers 1,2,4 --rounds 3
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import configure, seed_load_task, seed_model, worker_command  # noqa: E402

PARTS = [f"part{i}" for i in range(40)]
TICKS = os.sysconf("SC_CLK_TCK")


def server_pid(backend: str) -> int | None:
    name = {"mariadb": "mariadbd", "postgres": "postgres"}.get(backend)
    if name is None:
        return None
    pids = subprocess.run(["pgrep", "-x", name], capture_output=True, text=True).stdout.split()
    parents = []
    for pid in pids:  # the postmaster is the postgres process whose parent is not postgres
        parent = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]
        if parent not in pids:
            parents.append(int(pid))
    return parents[0] if parents else None


def server_cpu(pid: int | None) -> float:
    """CPU seconds of the server process, its threads and its reaped children."""
    if pid is None:
        return float("nan")
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / TICKS


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def database_bytes(backend: str, prefix: str) -> int:
    import datajoint as dj

    conn = dj.conn()
    if backend == "mariadb":
        tables = conn.query(
            "SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema LIKE %s",
            (prefix + "%",),
        ).fetchall()
        for schema, table in tables:  # InnoDB's sizes are estimates until analysed
            conn.query(f"ANALYZE TABLE `{schema}`.`{table}`").fetchall()
        query = (
            "SELECT COALESCE(SUM(data_length + index_length), 0) FROM information_schema.tables "
            "WHERE table_schema LIKE %s"
        )
    else:
        query = (
            "SELECT COALESCE(SUM(pg_total_relation_size(quote_ident(table_schema) || '.' || "
            "quote_ident(table_name))), 0) FROM information_schema.tables WHERE table_schema LIKE %s"
        )
    return int(conn.query(query, (prefix + "%",)).fetchone()[0])


def seed(session_key: dict, outputs: list[str], frames: int) -> None:
    from workflow_deeplabcut.pipeline import session

    session.Session.insert1(session_key)
    for i, out in enumerate(outputs):
        seed_load_task({**session_key, "recording_id": i}, frames, out, video=f"bench/rec{i}.mp4")


def trial(k: int, session_key: dict, env: dict) -> float:
    when = session_key["session_datetime"].strftime("%Y-%m-%d %H:%M:%S")
    command = worker_command("--key", f"session_datetime={when}", "--sleep", "1")
    start = time.perf_counter()
    procs = [
        subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for _ in range(k)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=3600)
        if proc.returncode:
            raise SystemExit(f"a worker failed:\n{err.decode()[-2000:]}")
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["mariadb", "postgres", "embedded"], default="mariadb")
    parser.add_argument("--jobs", type=int, default=24)
    parser.add_argument("--frames", type=int, default=27_000, help="frames per job (15 min at 30 fps)")
    parser.add_argument("--parts", type=int, default=12)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    counts = [int(k) for k in args.workers.split(",")]
    parts = PARTS[: args.parts]

    workdir = Path(tempfile.mkdtemp(prefix="wdlc-bench-workers-"))
    configure(args.backend, workdir)
    os.environ.setdefault("WORKFLOW_DLC_MAX_RETRIES", "0")
    try:
        measure(args, counts, parts)
    finally:  # the trials write gigabytes: leave nothing behind
        from workflow_deeplabcut import database
        from workflow_deeplabcut.pipeline import SCHEMAS

        for module in reversed(list(SCHEMAS.values())):
            module.schema.drop(prompt=False)
        if args.backend == "embedded":
            database.stop_embedded(workdir / "pgdata")
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def measure(args, counts: list[int], parts: list[str]) -> None:
    """Seed, run the interleaved trials and print the tables."""
    from workflow_deeplabcut import synthetic
    from workflow_deeplabcut.pipeline import lab, model, subject
    from workflow_deeplabcut.settings import get_settings

    settings = get_settings()
    lab.Device.insert1({"device": "cam", "modality": "video"})
    subject.Subject.insert1({"subject": "bench", "sex": "U", "subject_birth_date": "2024-01-01"})
    seed_model(parts)
    outputs = []
    for i in range(args.jobs):
        folder = settings.processed_data_dir / "bench" / f"rec{i}"
        synthetic.write_dlc_outputs(folder, f"rec{i}", parts, args.frames, seed=i)
        outputs.append(f"bench/rec{i}")
    input_bytes = folder_bytes(settings.processed_data_dir / "bench") / args.jobs

    env = dict(os.environ)
    pid = server_pid(args.backend)
    results: dict[int, list[dict]] = {k: [] for k in counts}
    base = dt.datetime(2025, 1, 1)
    n = 0
    print(
        f"{args.backend}: {args.jobs} load-mode jobs per trial, {args.frames} frames × "
        f"{args.parts} body parts each ({input_bytes / 1e6:.1f} MB of DeepLabCut output per job); "
        f"worker counts {counts}, "
        f"{args.rounds} interleaved rounds; {os.cpu_count()} CPUs"
    )
    for r in range(args.rounds):
        order = counts[r % len(counts) :] + counts[: r % len(counts)]
        for k in order:
            n += 1
            session_key = {"subject": "bench", "session_datetime": base + dt.timedelta(hours=n)}
            seed(session_key, outputs, args.frames)
            store0, db0 = folder_bytes(settings.store_dir), database_bytes(args.backend, settings.prefix)
            cpu0, srv0 = children_cpu(), server_cpu(pid)
            wall = trial(k, session_key, env)
            time.sleep(0.5)  # let the server reap the workers' connections
            cpu1, srv1 = children_cpu(), server_cpu(pid)
            done = len(model.PoseEstimation & session_key)
            if done != args.jobs:
                raise SystemExit(f"{done} of {args.jobs} jobs done with {k} workers")
            results[k].append(
                {
                    "wall": wall,
                    "rate": args.jobs / wall,
                    "cpu": (cpu1 - cpu0) / args.jobs,
                    "server": (srv1 - srv0) / args.jobs,
                    "store": (folder_bytes(settings.store_dir) - store0) / args.jobs,
                    "db": (database_bytes(args.backend, settings.prefix) - db0) / args.jobs,
                }
            )
            print(f"  round {r + 1}: {k} worker(s): {wall:.1f} s, {args.jobs / wall:.2f} jobs/s", flush=True)

    print()
    print(
        "| workers | jobs/s (median) | ÷ 1 worker (median, min–max of rounds) "
        "| worker CPU s/job | server CPU s/job |"
    )
    print("|---|---|---|---|---|")
    one = results[counts[0]]
    for k in counts:
        ratios = [b["rate"] / a["rate"] for a, b in zip(one, results[k], strict=True)]
        print(
            f"| {k} | {statistics.median(x['rate'] for x in results[k]):.2f} | "
            f"{statistics.median(ratios):.2f}× ({min(ratios):.2f}–{max(ratios):.2f}) | "
            f"{statistics.median(x['cpu'] for x in results[k]):.2f} | "
            f"{statistics.median(x['server'] for x in results[k]):.3f} |"
        )
    every = [x for rows in results.values() for x in rows]
    store, db = statistics.median(x["store"] for x in every), statistics.median(x["db"] for x in every)
    cells = args.frames * args.parts
    print()
    print(
        f"per job: store {store / 1e6:.2f} MB ({store / cells:.1f} bytes per frame × body part), "
        f"database {db / 1e3:.1f} kB; DeepLabCut's own output {input_bytes / 1e6:.2f} MB"
    )


if __name__ == "__main__":
    raise SystemExit(main())
