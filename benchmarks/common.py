"""Shared set-up of the benchmarks: backend, fresh prefix and roots, timing, seed rows."""

from __future__ import annotations

import gc
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
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


def teardown(workdir: Path) -> None:
    """Drop the benchmark's schemas, stop its embedded server and remove its folder."""
    import shutil

    from workflow_deeplabcut import database
    from workflow_deeplabcut.pipeline import SCHEMAS, target

    for module in reversed(list(SCHEMAS.values())):
        module.schema.drop(prompt=False)
    if target.embedded:
        database.stop_embedded(workdir / "pgdata")
    shutil.rmtree(workdir, ignore_errors=True)


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


@dataclass
class Pairs:
    """Wall and CPU seconds of A and B, run alternately (A B A B ...)."""

    wall_a: list[float] = field(default_factory=list)
    wall_b: list[float] = field(default_factory=list)
    cpu_a: list[float] = field(default_factory=list)
    cpu_b: list[float] = field(default_factory=list)

    @property
    def ratios(self) -> list[float]:
        """Per-pair wall-time ratios A / B."""
        return [a / b for a, b in zip(self.wall_a, self.wall_b, strict=True)]

    @property
    def cpu_ratios(self) -> list[float]:
        """Per-pair CPU-time ratios A / B."""
        return [a / max(b, 1e-9) for a, b in zip(self.cpu_a, self.cpu_b, strict=True)]

    def line(self, name: str, baseline: str, goal: float | None = None) -> str:
        """One report line: medians, the median per-pair ratio (min-max), the CPU ratio, the goal."""
        ratio = statistics.median(self.ratios)
        met = "" if goal is None else f"  goal <= {goal:g}x: {'met' if ratio <= goal else 'MISSED'}"
        return (
            f"{name:<28} {1e3 * statistics.median(self.wall_a):8.1f} ms  {baseline} "
            f"{1e3 * statistics.median(self.wall_b):8.1f} ms  ratio {ratio:5.2f}x "
            f"({min(self.ratios):.2f}-{max(self.ratios):.2f})  CPU ratio "
            f"{statistics.median(self.cpu_ratios):5.2f}x{met}"
        )


def interleaved(a, b, rounds: int, setup_a=None, setup_b=None, warm: bool = True) -> Pairs:
    """Run ``a`` and ``b`` alternately ``rounds`` times (after one untimed round when ``warm``).

    ``setup_a``/``setup_b`` run before each call, untimed. The machine's load swings; a ratio
    of two calls made seconds apart is what means something, so each pair gives one ratio.
    """
    out = Pairs()
    for i in range(rounds + int(warm)):
        for fn, setup, wall, cpu in (
            (a, setup_a, out.wall_a, out.cpu_a),
            (b, setup_b, out.wall_b, out.cpu_b),
        ):
            if setup:
                setup()
            gc.collect()
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            elapsed, used = time.perf_counter() - t0, time.process_time() - c0
            if i >= int(warm):
                wall.append(elapsed)
                cpu.append(used)
    return out


_RSS_START = """
import gc, json, re
def _status(name):
    text = open("/proc/self/status").read()
    return int(re.search(name + r":\\s+(\\d+)", text).group(1)) * 1024
gc.collect()
open("/proc/self/clear_refs", "w").write("5")  # resets VmHWM to the current RSS
_base = _status("VmRSS")
"""
_RSS_END = """
print("RSS", json.dumps([_base, _status("VmHWM") - _base]))
"""


def fresh_peak_rss(setup: str, measured: str, env: dict | None = None) -> tuple[int, int]:
    """Run ``setup`` then ``measured`` in a fresh Python; return (baseline RSS, peak added), bytes.

    The peak is the kernel's high-water mark (``VmHWM``), reset after ``setup`` through
    ``/proc/self/clear_refs``: what ``measured`` alone added at its peak, every allocation
    counted (numpy, HDF5, the database driver), not only what tracemalloc sees.
    """
    code = "\n".join([setup, _RSS_START, measured, _RSS_END])
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    line = [x for x in done.stdout.splitlines() if x.startswith("RSS ")][-1]
    base, added = json.loads(line[4:])
    return base, added


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
