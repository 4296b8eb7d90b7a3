"""Benchmark: triangulation through the tables against aniposelib's own ``triangulate``.

Three cameras (the synthetic rig of ``workflow_deeplabcut.synthetic3d``) see 20 body parts
moving for 108,000 frames (one hour at 30 fps); their 2D estimates (the true projections plus
1 px noise) are stored as three load-mode ``PoseEstimation`` rows. Interleaved (A B A B ...):

- A: ``model.PoseEstimation.populate`` of the 3D estimation (``threed.TriangulationTask``,
  linear DLT): fetch the calibration and the three stored arrays, undistort, triangulate,
  measure the reprojection errors, write the 3D array and the rows;
- B: aniposelib's ``CameraGroup.triangulate(points, undistort=True)`` on the same points
  already in memory, with the same calibration (written as anipose's ``calibration.toml``),
  in its own virtual environment (aniposelib needs opencv-contrib and jax); only the call
  is timed, after one untimed call that compiles its JAX code.

It prints the median and min-max of the per-pair wall-time ratios A / B (the goal is at most
1.5x), the median 3D distance between the two results, and the peak memory the populate adds
(kernel high-water mark in a fresh process) against the size of the three input arrays
(x, y, likelihood as float64; the goal is at most 2x).

    python benchmarks/triangulation.py [--frames N] [--parts K] [--rounds R] [--anipose-python PATH]

The aniposelib environment is made on first use under ``.bench/anipose`` (needs the package
index): ``python3.11 -m venv .bench/anipose && .bench/anipose/bin/pip install aniposelib==0.8.0 "jax[cpu]"``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import configure, fresh_peak_rss, seed_model, teardown

ROOT = Path(__file__).resolve().parents[1]
ANIPOSE_ENV = ROOT / ".bench" / "anipose"

ANIPOSE_RUN = """
import json, sys, time
import numpy as np
from aniposelib.cameras import CameraGroup
group = CameraGroup.load(sys.argv[1])
points = np.load(sys.argv[2])
group.triangulate(points[:, :1000], undistort=True)  # compiles JAX's code: not timed
t0 = time.perf_counter()
out = group.triangulate(points, undistort=True)
elapsed = time.perf_counter() - t0
np.save(sys.argv[3], out)
print("TIME", json.dumps(elapsed))
"""


def anipose_python(given: str | None) -> str:
    if given:
        return given
    python = ANIPOSE_ENV / "bin" / "python"
    if not python.exists():
        print(f"creating {ANIPOSE_ENV} with aniposelib 0.8.0 and jax (once)...", flush=True)
        subprocess.run(["python3.11", "-m", "venv", str(ANIPOSE_ENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "aniposelib==0.8.0", "jax[cpu]"], check=True
        )
    return str(python)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=108_000)
    parser.add_argument("--parts", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--anipose-python", default=None)
    args = parser.parse_args()
    python = anipose_python(args.anipose_python)

    workdir = Path(tempfile.mkdtemp(prefix="wdlc-bench-"))
    configure("embedded", workdir)
    import numpy as np
    import pandas as pd

    from workflow_deeplabcut import synthetic3d
    from workflow_deeplabcut.pipeline import lab, model, session, subject, threed

    try:
        rng = np.random.default_rng(0)
        cams = synthetic3d.cameras()
        for cam in cams:
            cam.dist = np.array([-0.05, 0.01, 0.0, 0.0, 0.0])  # a little lens distortion to undo
        parts = [f"part{i:02d}" for i in range(args.parts)]
        walk = np.cumsum(rng.normal(0, 1.0, (args.frames, 1, 3)), axis=0)
        walk = 80 * np.tanh(walk / 80) + np.array([0, 0, 40.0])
        truth = walk + rng.normal(0, 15, (1, args.parts, 3))  # (frames, parts, 3), mm
        pixels = np.stack([c.project(truth) for c in cams]) + rng.normal(
            0, 1.0, (3, args.frames, args.parts, 2)
        )
        likelihood = 0.95

        lab.Device.insert1({"device": "cam", "modality": "video"})
        subject.Subject.insert1({"subject": "bench", "sex": "U", "subject_birth_date": "2024-01-01"})
        skey = {"subject": "bench", "session_datetime": "2025-01-01 00:00:00"}
        session.Session.insert1(skey)
        seed_model(parts, "bench2d")
        for c in range(3):
            key = {**skey, "recording_id": c}
            folder = workdir / "processed" / f"view{c}"
            folder.mkdir()
            columns = pd.MultiIndex.from_product(
                [["DLC_bench"], parts, ["x", "y", "likelihood"]], names=["scorer", "bodyparts", "coords"]
            )
            values = np.concatenate([pixels[c], np.full((args.frames, args.parts, 1), likelihood)], axis=2)
            pd.DataFrame(values.reshape(args.frames, -1), columns=columns).to_hdf(
                folder / f"view{c}DLC_bench.h5", key="df_with_missing", mode="w", format="fixed"
            )
            model.VideoRecording.insert1({**key, "device": "cam"})
            model.VideoRecording.File.insert1({**key, "file_id": 0, "file_path": f"view{c}.mp4"})
            model.RecordingInfo.insert1(
                {
                    **key,
                    "px_height": 480,
                    "px_width": 640,
                    "nframes": args.frames,
                    "fps": 30.0,
                    "recording_duration": args.frames / 30,
                },
                allow_direct_insert=True,
            )
            model.PoseEstimationTask.insert1(
                {
                    **key,
                    "model_name": "bench2d",
                    "task_mode": "load",
                    "pose_estimation_output_dir": f"view{c}",
                }
            )
        model.PoseEstimation.populate()
        names = ["cam0", "cam1", "cam2"]
        for cam, name in zip(cams, names, strict=True):
            cam.name = name
        threed.Rig.insert_rig("bench", names)
        toml = threed.write_anipose_toml(cams, workdir / "raw" / "calibration.toml", 0.0)
        calib = threed.CalibrationSource.insert_anipose("bench", 1, toml)
        threed.Calibration.populate(calib)
        mv = threed.MultiViewRecording.insert_views(skey, 1, "bench", {n: c for c, n in enumerate(names)})
        threed.TriangulationTask.insert_task(mv, calib, "bench2d", triangulation_paramset_idx=0)
        key3d = {**skey, "recording_id": 0, "model_name": "bench-3d"}
        points_file = workdir / "points.npy"
        np.save(points_file, pixels.reshape(3, -1, 2))
        out_file = workdir / "anipose_out.npy"

        ours, theirs = [], []
        for _ in range(args.rounds):
            (model.PoseEstimation & key3d).delete(prompt=False)
            t0 = time.perf_counter()
            model.PoseEstimation.populate(key3d)
            ours.append(time.perf_counter() - t0)
            done = subprocess.run(
                [python, "-c", ANIPOSE_RUN, str(toml), str(points_file), str(out_file)],
                capture_output=True,
                text=True,
                env={k: v for k, v in os.environ.items() if not k.startswith("DJ_")},
            )
            if done.returncode != 0:
                raise RuntimeError(done.stderr[-3000:])
            theirs.append(json.loads([x for x in done.stdout.splitlines() if x.startswith("TIME ")][-1][5:]))
        ratios = [a / b for a, b in zip(ours, theirs, strict=True)]
        ratio = statistics.median(ratios)

        mine = model.PoseEstimation.get_trajectory(key3d)
        order = model.PoseEstimation.info(key3d)["body_parts"]
        mine_xyz = np.stack(
            [
                mine.xs(p, level="bodyparts", axis=1).droplevel("scorer", axis=1)[["x", "y", "z"]].to_numpy()
                for p in order
            ],
            1,
        )
        theirs_xyz = np.load(out_file).reshape(args.frames, args.parts, 3)[:, [parts.index(p) for p in order]]
        agree = float(np.median(np.linalg.norm(mine_xyz - theirs_xyz, axis=-1)))
        error = float(
            np.median(np.linalg.norm(mine_xyz - truth[:, [parts.index(p) for p in order]], axis=-1))
        )

        setup = (
            "from workflow_deeplabcut.pipeline import model\n"
            f"key = {key3d!r}\n(model.PoseEstimation & key).delete(prompt=False)"
        )
        _, peak = fresh_peak_rss(setup, "model.PoseEstimation.populate(key)", env=dict(os.environ))
        inputs = 3 * args.frames * args.parts * 3 * 8

        print(f"triangulating {args.frames:,} frames x {args.parts} body parts x 3 cameras (DLT)")
        print(
            f"PoseEstimation.populate (3D) {1e3 * statistics.median(ours):9.0f} ms  aniposelib triangulate "
            f"{1e3 * statistics.median(theirs):9.0f} ms  ratio {ratio:5.2f}x "
            f"({min(ratios):.2f}-{max(ratios):.2f})"
            f"  goal <= 1.5x: {'met' if ratio <= 1.5 else 'MISSED'}"
        )
        print(
            f"median distance between the two results {agree:.2e} mm; "
            f"median error against the truth {error:.2f} mm"
        )
        print(
            f"peak memory added by the populate {peak / 2**20:7.0f} MiB; inputs {inputs / 2**20:7.0f} MiB; "
            f"ratio {peak / inputs:4.2f}x  goal <= 2x: {'met' if peak <= 2 * inputs else 'MISSED'}"
        )
    finally:
        teardown(workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
