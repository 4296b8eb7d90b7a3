"""Benchmark: the dashboard's pages at lab scale, against bare queries of the same rows.

Seeds 1,000 sessions x 5 pose estimations (rows as the pipeline writes them: recordings,
their info, tasks, estimations, QC) and one session with a real one-hour estimation
(108,000 frames x 20 body parts, loaded from a DeepLabCut ``.h5``, with its QC, pictures,
cleaned trajectory and kinematics). Then times, through the app's own HTTP stack (Starlette's
test client, in this process), interleaved A B A B with a bare query of the same rows:

- overview (``/``)           vs the per-table counts alone (``len(table)``, ``len(key_source - table)``)
- sessions list (``/sessions``, sorted, first page) vs fetching the rows it summarises
- session page (``/session``) + its trajectory (``/api/trajectory``) vs fetching the
  session's rows and loading its position arrays

Prints the median time of each, the median of per-pair ratios (min-max) and the CPU-time
ratio. Goals (issue 16): overview <= 300 ms, session page <= 1 s on a 2-core machine.

    python benchmarks/dashboard.py                      # embedded PostgreSQL
    python benchmarks/dashboard.py --backend mariadb    # 127.0.0.1:3306
    python benchmarks/dashboard.py --backend postgres   # 127.0.0.1:5432
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import SERVERS, configure, seed_model


def seed(sessions: int, estimations: int) -> None:
    """Insert ``sessions`` sessions with one recording each and ``estimations`` estimations per recording."""
    from workflow_deeplabcut.pipeline import lab, model, qc, session, subject

    lab.Device.insert1({"device": "cam", "modality": "video"}, skip_duplicates=True)
    names = [f"model{i}" for i in range(estimations)]
    for name in names:
        seed_model(["nose", "tail"], name=name)
    subjects = [{"subject": f"m{i:03d}", "sex": "U", "subject_birth_date": "2024-01-01"} for i in range(100)]
    subject.Subject.insert(subjects)
    start = dt.datetime(2025, 1, 1, 9)
    keys = [
        {
            "subject": f"m{i % 100:03d}",
            "session_datetime": start + dt.timedelta(days=i // 100, minutes=i % 100),
        }
        for i in range(sessions)
    ]
    session.Session.insert(keys)
    recs = [{**k, "recording_id": 1} for k in keys]
    model.VideoRecording.insert([{**r, "device": "cam"} for r in recs])
    model.VideoRecording.File.insert(
        [{**r, "file_id": 0, "file_path": f"v/{i}.mp4"} for i, r in enumerate(recs)]
    )
    info = {"px_height": 480, "px_width": 640, "nframes": 108_000, "fps": 30.0, "recording_duration": 3600.0}
    model.RecordingInfo.insert([{**r, **info} for r in recs], allow_direct_insert=True)
    tasks = [{**r, "model_name": n} for r in recs for n in names]
    model.PoseEstimationTask.insert([{**t, "task_mode": "load"} for t in tasks])
    when = dt.datetime(2025, 6, 1)
    model.PoseEstimation.insert(
        [
            {**t, "pose_estimation_time": when, "output_dir": "x", "scorer": "s", "nframes": 108_000}
            for t in tasks
        ],
        allow_direct_insert=True,
    )
    qc.PoseQC.insert(
        [
            {
                **t,
                "qc_paramset_idx": 0,
                "nframes": 108_000,
                "fraction_below_pcutoff": (i * 37 % 100) / 100,
                "worst_body_part": "nose",
                "n_jumps": i % 7,
            }
            for i, t in enumerate(tasks)
        ],
        allow_direct_insert=True,
    )


def seed_big(workdir: Path, frames: int, parts: int) -> dict:
    """One session with a real load-mode estimation of ``frames`` x ``parts``, QC and kinematics."""
    from common import seed_load_task

    from workflow_deeplabcut import synthetic
    from workflow_deeplabcut.demo import DEMO_POSTPROCESS
    from workflow_deeplabcut.pipeline import model, postprocess, qc, session, subject

    names = [f"part{i:02d}" for i in range(parts)]
    seed_model(names, name="big")
    subject.Subject.insert1({"subject": "big", "sex": "U", "subject_birth_date": "2024-01-01"})
    key = {"subject": "big", "session_datetime": dt.datetime(2025, 1, 1, 8)}
    session.Session.insert1(key)
    synthetic.write_dlc_outputs(workdir / "processed" / "big", "big", names, frames)
    task = seed_load_task({**key, "recording_id": 1}, frames, "big", video="big.mp4", model_name="big")
    params = {**DEMO_POSTPROCESS, "heading_body_parts": names[:2]}
    postprocess.PostprocessTask.generate(
        task, postprocess.PostprocessParamSet.insert_new_params("bench", params)
    )
    for table in (
        model.PoseEstimation,
        qc.PoseQC,
        qc.QCPlots,
        postprocess.CleanedTrajectory,
        postprocess.Kinematics,
    ):
        result = table.populate(task, suppress_errors=True)
        if result["error_list"]:
            raise RuntimeError(f"{table.__name__}: {result['error_list'][0]}")
    return task


def bare_overview(sources: list) -> None:
    for table, key_source in sources:
        len(table())
        len(key_source - table)


def bare_sessions() -> None:
    from workflow_deeplabcut.pipeline import model, qc, session

    session.Session.to_dicts()
    model.VideoRecording.keys()
    model.PoseEstimation.keys()
    qc.PoseQC.proj("fraction_below_pcutoff").to_dicts()


def bare_session(key: dict) -> None:
    import numpy as np

    from workflow_deeplabcut.pipeline import model, qc

    for table in (
        model.VideoRecording,
        model.RecordingInfo,
        model.PoseEstimation,
        qc.PoseQC,
        qc.PoseQC.BodyPart,
    ):
        (table & key).to_dicts()
    np.array(model.PoseEstimation.window(key).values)


def pairs(a, b, rounds: int) -> tuple[list[float], list[float], list[float], list[float]]:
    """Run a and b alternately; return their wall and CPU times."""
    wall_a, wall_b, cpu_a, cpu_b = [], [], [], []
    a(), b()  # warm caches and connections
    for _ in range(rounds):
        for fn, wall, cpu in ((a, wall_a, cpu_a), (b, wall_b, cpu_b)):
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    return wall_a, wall_b, cpu_a, cpu_b


def report(name: str, goal: float | None, result) -> None:
    wall_a, wall_b, cpu_a, cpu_b = result
    ratios = [x / y for x, y in zip(wall_a, wall_b, strict=True)]
    cpu = statistics.median(cpu_a) / max(statistics.median(cpu_b), 1e-9)
    median = statistics.median(wall_a)
    met = ""
    if goal is not None:
        met = f"  (goal <= {goal * 1000:.0f} ms: {'met' if median <= goal else 'MISSED'})"
    print(
        f"{name:<27} {1000 * median:7.1f} ms  bare {1000 * statistics.median(wall_b):7.1f} ms  "
        f"ratio {statistics.median(ratios):5.2f}x ({min(ratios):.2f}-{max(ratios):.2f})  "
        f"CPU ratio {cpu:5.2f}x{met}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["embedded", *SERVERS], default="embedded")
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--estimations", type=int, default=5)
    parser.add_argument("--frames", type=int, default=108_000)
    parser.add_argument("--parts", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="wdlc-bench-dash-"))
    configure(args.backend, workdir)
    from starlette.testclient import TestClient

    from workflow_deeplabcut import processing
    from workflow_deeplabcut.dashboard import data
    from workflow_deeplabcut.dashboard.app import LOOPBACK_HOSTS, create_app
    from workflow_deeplabcut.pipeline import SCHEMAS

    try:
        t0 = time.perf_counter()
        seed(args.sessions, args.estimations)
        big = seed_big(workdir, args.frames, args.parts)
        print(
            f"seeded {args.sessions} sessions x {args.estimations} estimations and one "
            f"{args.frames:,}-frame x {args.parts}-part estimation in {time.perf_counter() - t0:.0f} s "
            f"({args.backend})"
        )
        query = "&".join(
            f"{k}={v}"
            for k, v in data.url_params({k: big[k] for k in ("subject", "session_datetime")}).items()
        )
        est = "&".join(f"{k}={v}" for k, v in data.url_params(big).items())
        with TestClient(create_app(allowed_hosts=LOOPBACK_HOSTS), base_url="http://127.0.0.1:8050") as client:

            def get(path):
                response = client.get(path)
                if response.status_code != 200:
                    raise RuntimeError(f"{path}: {response.status_code} {response.text[:300]}")
                return response

            sizes = {
                "trajectory JSON": len(get(f"/api/trajectory?{est}").content),
                "points per series": max(
                    len(s["x"]["t"]) for s in get(f"/api/trajectory?{est}").json()["series"]
                ),
            }
            sources = [(t, t.key_source) for t in processing.select_tables().values()]
            report("overview /", 0.3, pairs(lambda: get("/"), lambda: bare_overview(sources), args.rounds))
            report(
                "sessions list /sessions",
                None,
                pairs(lambda: get("/sessions?sort=worst_below_pcutoff"), bare_sessions, args.rounds),
            )
            report(
                "session page + trajectory",
                1.0,
                pairs(
                    lambda: (get(f"/session?{query}"), get(f"/api/trajectory?{est}")),
                    lambda: bare_session(big),
                    args.rounds,
                ),
            )
        print(
            f"trajectory sent: {sizes['trajectory JSON'] / 1e6:.2f} MB of JSON, at most "
            f"{sizes['points per series']} points per series ({args.parts} parts x 3 series), "
            f"from {args.frames:,} frames"
        )
    finally:
        for module in reversed(list(SCHEMAS.values())):
            try:
                module.schema.drop(prompt=False)
            except Exception as err:
                print(f"could not drop {module.schema.database}: {err}", file=sys.stderr)
        if args.backend == "embedded":
            from workflow_deeplabcut import database

            database.stop_embedded(workdir / "pgdata")
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
