"""Benchmark: the pipeline's post-processing, QC and NWB export against the bare libraries.

For one large estimate (default: a one-hour video at 30 fps, 108,000 frames, 20 body parts) it
times, interleaved (A B A B ...) in the same process, the median and min-max of the per-pair
ratios with the CPU-time ratio (compare ratios, not seconds; this machine is noisy):

- ``CleanedTrajectory.populate`` + ``Kinematics.populate`` (fetch arrays, clean, derive, write
  ``.npy`` files, insert rows) against calling the same movement functions on arrays already in
  memory (``poses.clean`` + ``poses.kinematics``): the pipeline's overhead;
- ``PoseQC.populate`` against ``poses.qc_metrics`` on in-memory arrays;
- ``nwb.export_session`` against movement's own ``to_nwb_file`` + ``NWBHDF5IO.write`` of the same
  raw data (our file also holds the cleaned trajectories, metadata and skeleton).

    python benchmarks/postprocess.py [--backend embedded|postgres|mariadb] [--frames N] [--parts K]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from common import SERVERS, configure, interleaved, seed_estimation_task, teardown


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["embedded", *SERVERS], default="embedded")
    parser.add_argument("--frames", type=int, default=108_000)
    parser.add_argument("--parts", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="wdlc-bench-"))
    configure(args.backend, workdir)
    import numpy as np
    import pynwb

    from workflow_deeplabcut import nwb, poses, synthetic
    from workflow_deeplabcut.pipeline import model, postprocess, qc

    try:
        parts = [f"part{i:02d}" for i in range(args.parts)]
        key = {"subject": "bench", "session_datetime": "2025-01-01 00:00:00", "recording_id": 1}
        out_rel = "bench/out"
        synthetic.write_dlc_outputs(workdir / "processed" / out_rel, "bench", parts, args.frames)
        task = seed_estimation_task(key, parts, args.frames, out_rel)
        (workdir / "raw" / "bench.mp4").touch()  # the export links the video; it is never read
        model.PoseEstimation.populate(task)
        params = {"smoothing": "savgol", "window": 7, "px_per_cm": 10.0, "heading_body_parts": parts[:2]}
        idx = postprocess.PostprocessParamSet.insert_new_params("bench", params)
        pp_key = {**task, "pp_paramset_idx": idx}
        postprocess.PostprocessTask.insert1(pp_key)
        qc_key = {**task, "qc_paramset_idx": 0}
        checked = poses.check_postprocess_params(params)
        if checked["likelihood_threshold"] == "model":  # as CleanedTrajectory.make resolves it
            checked["likelihood_threshold"] = model.Model.pcutoff(task)

        arrays = {
            slot: {a: np.array(v) for a, v in r.items()}
            for slot, r in model.PoseEstimation.window(task).arrays().items()
        }
        ds = poses.to_dataset(arrays, 30.0)

        def bare_postprocess():
            cleaned, _ = poses.clean(ds, checked)
            poses.kinematics(cleaned.assign_attrs(time_unit="seconds"), checked)

        def pipeline_postprocess():
            postprocess.CleanedTrajectory.populate(pp_key)
            postprocess.Kinematics.populate(pp_key)

        def clear_postprocess():
            (postprocess.CleanedTrajectory & pp_key).delete(prompt=False)

        def bare_qc():
            for a in arrays.values():
                poses.qc_metrics(a["x_pos"], a["y_pos"], a["likelihood"], 0.6, 30.0)

        def clear_qc():
            (qc.PoseQC & qc_key).delete(prompt=False)

        pp = interleaved(pipeline_postprocess, bare_postprocess, args.rounds, setup_a=clear_postprocess)
        qcs = interleaved(lambda: qc.PoseQC.populate(qc_key), bare_qc, args.rounds, setup_a=clear_qc)

        from movement.io import save_poses

        def bare_nwb():
            nwbfile = save_poses.to_nwb_file(ds)
            with pynwb.NWBHDF5IO(str(workdir / "bare.nwb"), "w") as io:
                io.write(nwbfile)

        out = workdir / "processed" / "bench.nwb"
        nwbs = interleaved(lambda: nwb.export_session(key, out, overwrite=True), bare_nwb, args.rounds)

        print(f"backend={args.backend}  frames={args.frames}  parts={args.parts}  rounds={args.rounds}")
        print(pp.line("clean + kinematics (rows)", "movement in memory"))
        print(qcs.line("QC metrics (rows)", "the same metrics in memory"))
        print(nwbs.line("NWB export (raw + cleaned)", "movement to_nwb_file (raw only)"))
        ours, bare = (p.stat().st_size / 2**20 for p in (out, workdir / "bare.nwb"))
        print(f"NWB file: {ours:.1f} MiB; movement's raw-only file: {bare:.1f} MiB")
    finally:
        teardown(workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
