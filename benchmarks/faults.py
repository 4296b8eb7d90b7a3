"""Fault suite: real workers against database restarts, kill -9, simultaneous starts and a full disk.

Every scenario runs on database servers this script starts itself on private sockets/ports (a
MariaDB from the system's ``mariadbd``, a PostgreSQL from the embedded cluster code), never on
the shared ones. The work is N load-mode pose estimations (DeepLabCut outputs of ``--frames``
frames, 3 body parts); the workers are real ``workflow-deeplabcut worker`` processes.

After each scenario it counts, from the database and the store:

- lost: keys with no row; duplicated: duplicate-key errors; partial: estimations whose arrays
  are missing, or differ from the source file; stuck: jobs left reserved or failed;
- orphaned: files in the store that no row references, before and after ``gc``.

Run it (figures for the README / an issue):

    .venv/bin/python benchmarks/faults.py [--backend postgres mariadb] [--jobs 40] [--kills 12] [--restarts 3]

``tests/test_faults.py`` runs the same scenarios, smaller, and requires every count to be 0.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import worker_command  # noqa: E402

PROJECT_ROOT = Path(__file__).resolve().parents[1]
PARTS = ["nose", "left_ear", "right_ear"]


# ------------------------------------------------------------------------------ servers
class PrivatePostgres:
    """A PostgreSQL on a private Unix socket (the embedded cluster code), restartable."""

    backend = "postgres"

    def __init__(self, folder: Path):
        self.data = folder / "pg"
        self.server = None

    def start(self) -> None:
        from workflow_deeplabcut import embedded

        self.server = embedded.start(self.data, keep_running=True, register=False)

    def stop(self) -> None:
        from workflow_deeplabcut import embedded

        embedded.stop(self.data)

    def env(self) -> dict:
        return {
            "DJ_HOST": str(self.server.socket_dir),
            "DJ_PORT": "5432",
            "DJ_BACKEND": "postgresql",
            "DJ_USER": "postgres",
            "DJ_PASS": self.server.password,
        }


class PrivateMariaDB:
    """A MariaDB on a private port of 127.0.0.1, with its own data folder, restartable."""

    backend = "mariadb"

    def __init__(self, folder: Path):
        self.data = folder / "mariadb"
        self.port = _free_port()
        self.proc = None

    def start(self) -> None:
        if not (self.data / "mysql").exists():
            self.data.mkdir(parents=True, exist_ok=True)
            install = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
            args = [
                install,
                "--no-defaults",
                f"--datadir={self.data}",
                "--auth-root-authentication-method=normal",
            ]
            if os.geteuid() == 0:
                args.append("--user=root")
            subprocess.run(args, check=True, capture_output=True, text=True)
        daemon = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
        args = [
            daemon,
            "--no-defaults",
            f"--datadir={self.data}",
            f"--port={self.port}",
            "--bind-address=127.0.0.1",
            f"--socket={self.data / 'mysqld.sock'}",
            f"--pid-file={self.data / 'mysqld.pid'}",
            f"--log-error={self.data / 'error.log'}",
            "--innodb-buffer-pool-size=64M",
            "--character-set-server=latin1",  # the old default: the pipeline must make its schemas UTF-8
        ]
        if os.geteuid() == 0:
            args.append("--user=root")
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while time.time() < deadline:
            if _answers("127.0.0.1", self.port):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError(f"MariaDB did not start; see {self.data / 'error.log'}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=120)
        self.proc = None

    def env(self) -> dict:
        return {
            "DJ_HOST": "127.0.0.1",
            "DJ_PORT": str(self.port),
            "DJ_BACKEND": "mysql",
            "DJ_USER": "root",
            "DJ_PASS": "",
        }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


# ------------------------------------------------------------------------------ the pipeline side
class Site:
    """One private server, one schema prefix, its roots and store; runs workers and scripts against it."""

    def __init__(self, server, folder: Path, store: Path | None = None):
        self.server = server
        self.folder = folder
        self.prefix = f"fault{uuid.uuid4().hex[:6]}_"
        self.store = store or folder / "store"
        for sub in ("raw", "processed"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        self.store.mkdir(parents=True, exist_ok=True)
        self.workers: list[subprocess.Popen] = []
        self.logs: list[tuple] = []  # (exit code, stdout, stderr) of every finished worker

    def env(self, **extra) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DJ_", "WORKFLOW_DLC_"))}
        env.update(self.server.env())
        env.update(
            WORKFLOW_DLC_DATABASE="server",
            WORKFLOW_DLC_PREFIX=self.prefix,
            WORKFLOW_DLC_ROOT_DATA_DIR=str(self.folder / "raw"),
            WORKFLOW_DLC_PROCESSED_DIR=str(self.folder / "processed"),
            WORKFLOW_DLC_STORE_DIR=str(self.store),
            WORKFLOW_DLC_HEARTBEAT_TIMEOUT="3",
            WORKFLOW_DLC_RETRY_DELAY="0.2",
            WORKFLOW_DLC_RECONNECT_FOR="180",
            MPLBACKEND="Agg",
        )
        if os.environ.get("WORKFLOW_DLC_DEBUG"):
            env["WORKFLOW_DLC_DEBUG"] = os.environ["WORKFLOW_DLC_DEBUG"]  # tracebacks of failing workers
        env.update(extra)
        return env

    def python(self, code: str, *args, timeout: float = 600) -> str:
        proc = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
            capture_output=True,
            text=True,
            env=self.env(),
            cwd=PROJECT_ROOT,
            timeout=timeout,
        )
        if proc.returncode:
            raise RuntimeError(f"script failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
        return proc.stdout

    def cli(self, *args, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "workflow_deeplabcut.cli", *args],
            capture_output=True,
            text=True,
            env=self.env(),
            cwd=PROJECT_ROOT,
            timeout=timeout,
        )

    def start_worker(self, *args) -> subprocess.Popen:
        proc = subprocess.Popen(
            worker_command("--sleep", "0.5", *args),
            env=self.env(),
            cwd=PROJECT_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.workers.append(proc)
        return proc

    def seed(self, jobs: int, frames: int, start: int = 0) -> None:
        """Insert ``jobs`` load-mode estimation tasks and write their DeepLabCut outputs."""
        self.python(SEED, jobs, frames, start)

    def check(self, gc_min_age: float = 0.0) -> dict:
        """Count lost, duplicated, partial, stuck and orphaned; run gc; count orphans again."""
        return json.loads(self.python(CHECK, gc_min_age).splitlines()[-1])


SEED = """
import sys
from workflow_deeplabcut import synthetic
from workflow_deeplabcut.pipeline import lab, model, session, subject
from workflow_deeplabcut.settings import get_settings

jobs, frames, start = (int(a) for a in sys.argv[1:4])
parts = ["nose", "left_ear", "right_ear"]
lab.Device.insert1({"device": "cam", "modality": "video"}, skip_duplicates=True)
subject.Subject.insert1(
    {"subject": "f1", "sex": "U", "subject_birth_date": "2024-01-01"}, skip_duplicates=True
)
session.Session.insert1({"subject": "f1", "session_datetime": "2025-01-01 12:00:00"}, skip_duplicates=True)
model.BodyPart.insert([{"body_part": p} for p in parts], skip_duplicates=True)
if not model.Model & {"model_name": "fault"}:
    model.Model.insert1({"model_name": "fault", "task": "fault", "date": "Jan1", "iteration": 0,
        "snapshotindex": 0, "shuffle": 1, "trainingsetindex": 0, "scorer": "DLC_fault",
        "config_template": {}, "project_path": "fault-project"})
    model.Model.BodyPart.insert([{"model_name": "fault", "body_part": p} for p in parts])
processed = get_settings().processed_data_dir
for i in range(start, start + jobs):
    rec = {"subject": "f1", "session_datetime": "2025-01-01 12:00:00", "recording_id": i}
    model.VideoRecording.insert1({**rec, "device": "cam"})
    model.VideoRecording.File.insert1({**rec, "file_id": 0, "file_path": f"fault/rec{i}.mp4"})
    model.RecordingInfo.insert1({**rec, "px_height": 480, "px_width": 640, "nframes": frames, "fps": 30.0,
        "recording_duration": frames / 30}, allow_direct_insert=True)
    synthetic.write_dlc_outputs(processed / "fault" / f"rec{i}", f"rec{i}", parts, frames, seed=i)
    model.PoseEstimationTask.insert1({**rec, "model_name": "fault", "task_mode": "load",
        "pose_estimation_output_dir": f"fault/rec{i}"})
print("seeded", jobs)
"""

CHECK = """
import json, sys
import numpy as np
from workflow_deeplabcut import dlc, storage
from workflow_deeplabcut.pipeline import model
from workflow_deeplabcut.settings import get_settings

min_age = float(sys.argv[1])
tasks = model.PoseEstimationTask & {"model_name": "fault"}
done = model.PoseEstimation & tasks.proj()
jobs = model.PoseEstimation.jobs
partial = 0
for key in done.keys():
    window = model.PoseEstimation.window(key)
    out = dlc.read_outputs(get_settings().processed_data_dir / "fault" / f"rec{key['recording_id']}",
                           [f"rec{key['recording_id']}"])
    ok = len(window.slots) == 3 and window.slots == out.slots and np.array_equal(window.values, out.array())
    partial += not ok
errors = jobs.errors.to_dicts() if jobs.is_declared else []
before = storage.collect_garbage(dry_run=True, min_age=min_age)
removed = storage.collect_garbage(dry_run=False, min_age=min_age)
after = storage.collect_garbage(dry_run=True, min_age=0)
print(json.dumps({
    "jobs": len(tasks),
    "done": len(done),
    "lost": len(tasks) - len(done),
    "duplicated": sum("Duplicate" in e["error_message"] for e in errors),
    "partial": partial,
    "stuck": (len(jobs.reserved) if jobs.is_declared else 0) + len(errors),
    "orphans_found": len(before.orphans),
    "orphans_removed": removed.removed,
    "orphaned": len(after.orphans),
}))
"""


def wait_all(site: Site, timeout: float = 600) -> list[int]:
    codes = []
    for proc in site.workers:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        codes.append(proc.returncode)
        site.logs.append((proc.returncode, out[-2000:], err[-4000:]))
    site.workers.clear()
    return codes


# ------------------------------------------------------------------------------ scenarios
def restarts(site: Site, jobs: int, frames: int, restarts: int, workers: int = 3) -> dict:
    """Restart the server ``restarts`` times while workers populate; they must carry on."""
    site.seed(jobs, frames)
    for _ in range(workers):
        site.start_worker()
    done = 0
    for _ in range(restarts):
        # Restart while work goes on: once another job's array has reached the store.
        if not _wait_for_arrays(site, _array_count(site) + 1, site.workers):
            break
        site.server.stop()
        time.sleep(1.5)
        site.server.start()
        done += 1
    codes = wait_all(site)
    noticed = sum("database connection lost" in err for _, _, err in site.logs)
    return {
        "scenario": "restart mid-populate",
        "restarts": done,
        "workers_that_reconnected": noticed,
        "crashed_workers": sum(c != 0 for c in codes),
        **site.check(),
    }


def late_server(site: Site, jobs: int, frames: int, workers: int = 2, down: float = 4.0) -> dict:
    """Workers start while the server is down; they wait for it, then do the work."""
    site.seed(jobs, frames)
    site.server.stop()
    for _ in range(workers):
        site.start_worker()
    time.sleep(down)
    site.server.start()
    codes = wait_all(site)
    waited = sum("database connection lost" in err for _, _, err in site.logs)
    return {
        "scenario": "workers started while the server is down",
        "workers_that_waited": waited,
        "crashed_workers": sum(c != 0 for c in codes),
        **site.check(),
    }


def _array_count(site: Site) -> int:
    return sum(1 for _ in site.store.rglob("*.npy"))


def _wait_for_arrays(site: Site, count: int, workers, timeout: float = 300) -> bool:
    """Wait until the store holds ``count`` arrays; False if the workers finished first."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if _array_count(site) >= count:
            return True
        if all(w.poll() is not None for w in workers):
            return False
        time.sleep(0.05)
    return False


def kills(site: Site, jobs: int, frames: int, kills: int, workers: int = 4, seed: int = 0) -> dict:
    """kill -9 workers at random moments, starting replacements; a final worker finishes."""
    rng = random.Random(seed)
    site.seed(jobs, frames)
    for _ in range(workers):
        site.start_worker()
    killed = 0
    deadline = time.time() + 600
    while killed < kills and time.time() < deadline:
        time.sleep(rng.uniform(0.3, 1.2))
        alive = [w for w in site.workers if w.poll() is None]
        if not alive:
            break
        victim = rng.choice(alive)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        site.workers.remove(victim)
        killed += 1
        site.start_worker()
    codes = wait_all(site)
    site.start_worker()  # a rerun finishes what the killed left (their reservations are recovered)
    codes += wait_all(site)
    return {
        "scenario": "kill -9 mid-make",
        "kills": killed,
        "crashed_workers": sum(c != 0 for c in codes),
        **site.check(),
    }


def simultaneous(site: Site, jobs: int, frames: int, workers: int = 8) -> dict:
    """Start ``workers`` workers at the same moment on a fresh prefix, twice (empty, then with work)."""
    for _ in range(workers):
        site.start_worker()
    codes = wait_all(site)
    site.seed(jobs, frames)
    for _ in range(workers):
        site.start_worker()
    codes += wait_all(site)
    return {
        "scenario": f"{workers} workers at once, fresh prefix",
        "crashed_workers": sum(c != 0 for c in codes),
        **site.check(),
    }


def full_disk(site: Site, jobs: int, frames: int, mount: Path) -> dict:
    """The store's disk fills up: jobs fail as transient, are retried, then succeed once space is freed."""
    site.seed(jobs, frames)
    filler = mount / "filler"
    free = shutil.disk_usage(mount).free
    with open(filler, "wb") as fh:
        fh.write(b"\0" * max(free - 64 * 1024, 0))
    for _ in range(2):
        site.start_worker("--max-retries", "1")
    codes = wait_all(site)
    status = json.loads(site.cli("status", "--json", "--table", "PoseEstimation").stdout)
    failed = status["tables"][0]["errors"]
    attempts = sorted({e["attempts"] for e in failed})
    transient = all(e["transient"] for e in failed)
    filler.unlink()
    retried = site.cli("retry", "--table", "PoseEstimation")
    site.start_worker()
    after = wait_all(site)
    return {
        "scenario": "store disk full, then freed",
        "failed_while_full": len(failed),
        "attempts_while_full": attempts,
        "all_transient": transient,
        "workers_exit_1_while_full": any(c == 1 for c in codes) and all(c in (0, 1) for c in codes),
        "retry_exit": retried.returncode,
        "crashed_workers": sum(c != 0 for c in after),
        **site.check(),
    }


@contextlib.contextmanager
def small_disk(folder: Path, jobs: int, frames: int):
    """Mount a tmpfs (root only) big enough for the jobs' arrays twice over; yield its path."""
    mount = folder / "small-disk"
    mount.mkdir(parents=True)
    size_mb = int(jobs * len(PARTS) * 3 * frames * 8 * 2 / 2**20) + 4  # x, y, likelihood float64
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def make_server(backend: str, folder: Path):
    return PrivatePostgres(folder) if backend == "postgres" else PrivateMariaDB(folder)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--backend", nargs="+", default=["postgres", "mariadb"], choices=["postgres", "mariadb"]
    )
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--frames", type=int, default=20_000)
    parser.add_argument("--kills", type=int, default=12)
    parser.add_argument("--restarts", type=int, default=3)
    args = parser.parse_args()
    results = []
    for backend in args.backend:
        with tempfile.TemporaryDirectory(prefix=f"faults-{backend}-") as tmp:
            server = make_server(backend, Path(tmp))
            server.start()
            try:
                results.append(
                    {
                        "backend": backend,
                        **restarts(Site(server, Path(tmp) / "a"), args.jobs, args.frames, args.restarts),
                    }
                )
                results.append(
                    {
                        "backend": backend,
                        **kills(Site(server, Path(tmp) / "b"), args.jobs, args.frames, args.kills),
                    }
                )
                results.append(
                    {
                        "backend": backend,
                        **simultaneous(Site(server, Path(tmp) / "c"), args.jobs, args.frames),
                    }
                )
                results.append(
                    {
                        "backend": backend,
                        **late_server(Site(server, Path(tmp) / "e"), args.jobs // 4, args.frames),
                    }
                )
                if os.geteuid() == 0:
                    jobs = max(args.jobs // 4, 4)
                    with small_disk(Path(tmp), jobs, args.frames) as mount:
                        site = Site(server, Path(tmp) / "d", store=mount / "store")
                        results.append({"backend": backend, **full_disk(site, jobs, args.frames, mount)})
            finally:
                server.stop()
    columns = [
        "backend",
        "scenario",
        "jobs",
        "done",
        "kills",
        "restarts",
        "crashed_workers",
        "lost",
        "duplicated",
        "partial",
        "stuck",
        "orphans_found",
        "orphans_removed",
        "orphaned",
    ]
    print(" | ".join(columns))
    for row in results:
        print(" | ".join(str(row.get(c, "")) for c in columns))
    totals = {
        k: sum(r.get(k, 0) for r in results) for k in ("lost", "duplicated", "partial", "stuck", "orphaned")
    }
    print(
        f"jobs {sum(r['jobs'] for r in results)}, kills {sum(r.get('kills', 0) for r in results)}, "
        f"restarts {sum(r.get('restarts', 0) for r in results)}; "
        + ", ".join(f"{k} {v}" for k, v in totals.items())
    )
    for row in results:
        if "failed_while_full" in row:
            print(
                f"{row['backend']} full disk: {row['failed_while_full']} job(s) failed while full, attempts "
                f"{row['attempts_while_full']}, transient {row['all_transient']}"
            )


if __name__ == "__main__":
    main()
