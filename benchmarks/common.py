"""Shared set-up of the benchmarks: backend, fresh prefix and roots, timing, seed rows."""

from __future__ import annotations

import gc
import os
import sys
import time
import uuid
from pathlib import Path

SERVERS = {
    "postgres": {
        "DJ_HOST": "127.0.0.1",
        "DJ_PORT": "5432",
        "DJ_BACKEND": "postgresql",
        "DJ_USER": "postgres",
        "DJ_PASS": "postgres",
    },
    "mariadb": {
        "DJ_HOST": "127.0.0.1",
        "DJ_PORT": "3306",
        "DJ_BACKEND": "mysql",
        "DJ_USER": "root",
        "DJ_PASS": "",
    },
}


def configure(backend: str, workdir: Path) -> None:
    (workdir / "raw").mkdir()
    (workdir / "processed").mkdir()
    os.environ.update(
        WORKFLOW_DLC_PREFIX=f"bench{uuid.uuid4().hex[:6]}_",
        WORKFLOW_DLC_ROOT_DATA_DIR=str(workdir / "raw"),
        WORKFLOW_DLC_PROCESSED_DIR=str(workdir / "processed"),
        WORKFLOW_DLC_EMBEDDED_DIR=str(workdir / "pgdata"),
        WORKFLOW_DLC_DATABASE="embedded" if backend == "embedded" else "server",
    )
    if backend != "embedded":
        os.environ.update(SERVERS[backend])


def worker_command(*args: str) -> list[str]:
    """The command line of one ``workflow-deeplabcut worker --once`` on PoseEstimation jobs."""
    return [
        sys.executable,
        "-m",
        "workflow_deeplabcut.cli",
        "worker",
        "--once",
        "--table",
        "PoseEstimation",
        *args,
    ]


def timed(fn, repeat: int, setup=None) -> list[float]:
    times = []
    for _ in range(repeat):
        if setup:
            setup()
        gc.collect()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def seed_model(parts: list[str], name: str = "bench") -> None:
    """Insert the body parts and a DeepLabCut model row that load-mode estimations can name."""
    from workflow_deeplabcut.pipeline import model

    model.BodyPart.insert([{"body_part": p} for p in parts], skip_duplicates=True)
    model.Model.insert1(
        {
            "model_name": name,
            "task": "bench",
            "date": "Jan1",
            "iteration": 0,
            "snapshotindex": 0,
            "shuffle": 1,
            "trainingsetindex": 0,
            "scorer": "bench",
            "config_template": {},
            "project_path": f"{name}-project",
        }
    )
    model.Model.BodyPart.insert([{"model_name": name, "body_part": p} for p in parts])


def seed_load_task(
    key: dict, frames: int, out_rel: str, video: str = "bench.mp4", model_name: str = "bench"
) -> dict:
    """Insert a recording (device ``cam``, RecordingInfo given, no real video) and its load-mode task.

    The outputs in ``out_rel`` are found by the video's stem (``<stem>DLC*.h5``).
    """
    from workflow_deeplabcut.pipeline import model

    model.VideoRecording.insert1({**key, "device": "cam"})
    model.VideoRecording.File.insert1({**key, "file_id": 0, "file_path": video})
    model.RecordingInfo.insert1(
        {
            **key,
            "px_height": 480,
            "px_width": 640,
            "nframes": frames,
            "fps": 30.0,
            "recording_duration": frames / 30,
        },
        allow_direct_insert=True,
    )
    task = {**key, "model_name": model_name}
    model.PoseEstimationTask.insert1({**task, "task_mode": "load", "pose_estimation_output_dir": out_rel})
    return task


def seed_estimation_task(key: dict, parts: list[str], frames: int, out_rel: str) -> dict:
    """Insert the rows a load-mode PoseEstimation needs (no real video: RecordingInfo is given)."""
    from workflow_deeplabcut.pipeline import lab, session, subject

    lab.Device.insert1({"device": "cam", "modality": "video"})
    subject.Subject.insert1({"subject": key["subject"], "sex": "U", "subject_birth_date": "2024-01-01"})
    session.Session.insert1({k: key[k] for k in ("subject", "session_datetime")})
    seed_model(parts)
    return seed_load_task(key, frames, out_rel)
