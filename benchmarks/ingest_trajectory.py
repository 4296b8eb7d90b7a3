"""Benchmark: load-mode ingest and get_trajectory of one large DeepLabCut output.

Prints each step as a ratio to ``pandas.read_hdf`` of the same file, measured side by side in
the same process (this machine is noisy: compare ratios, not seconds). Defaults: a one-hour
video at 30 fps (108,000 frames) with 20 body parts, on the embedded database.

    python benchmarks/ingest_trajectory.py                      # embedded PostgreSQL
    python benchmarks/ingest_trajectory.py --backend mariadb    # 127.0.0.1:3306, 16 MiB packets
    python benchmarks/ingest_trajectory.py --backend postgres   # 127.0.0.1:5432

Goals (issue 2): ingest <= 3x read_hdf, fetch <= 1.5x, memory added by ingest <= 2x the file.
"""

from __future__ import annotations

import argparse
import gc
import shutil
import statistics
import sys
import tempfile
import tracemalloc
from pathlib import Path

from common import SERVERS, configure, seed_estimation_task, timed


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["embedded", *SERVERS], default="embedded")
    parser.add_argument("--frames", type=int, default=108_000)
    parser.add_argument("--parts", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="wdlc-bench-"))
    configure(args.backend, workdir)
    import pandas as pd

    from workflow_deeplabcut import database, synthetic
    from workflow_deeplabcut.pipeline import SCHEMAS, model, target

    conn = model.schema.connection
    packet = None
    if args.backend == "mariadb":
        packet = conn.query("SELECT @@global.max_allowed_packet").fetchone()[0]
        conn.query("SET GLOBAL max_allowed_packet = 16777216")  # a stock server's value
    try:
        parts = [f"part{i:02d}" for i in range(args.parts)]
        key = {"subject": "bench", "session_datetime": "2025-01-01 00:00:00", "recording_id": 1}
        out_rel = "bench/out"
        h5 = synthetic.write_dlc_outputs(workdir / "processed" / out_rel, "bench", parts, args.frames)
        size = h5.stat().st_size

        task = seed_estimation_task(key, parts, args.frames, out_rel)

        def clear():
            (model.PoseEstimation & task).delete(prompt=False)

        read = timed(lambda: pd.read_hdf(h5), args.repeat)
        ingest = timed(lambda: model.PoseEstimation.populate(task), args.repeat, setup=clear)
        fetch = timed(lambda: model.PoseEstimation.get_trajectory(task), args.repeat)

        # Memory: peak allocations traced during one ingest (numpy reports to tracemalloc),
        # next to the peak of read_hdf alone.
        gc.collect()
        tracemalloc.start()
        pd.read_hdf(h5)
        _, read_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        clear()
        gc.collect()
        tracemalloc.start()
        model.PoseEstimation.populate(task)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()

        traj = model.PoseEstimation.get_trajectory(task)
        assert traj.shape == (args.frames, 3 * args.parts), traj.shape
        base = min(read)
        print(
            f"backend={args.backend}  file={size / 2**20:.1f} MiB  frames={args.frames}  parts={args.parts}"
            + (f"  max_allowed_packet=16 MiB (server had {packet})" if packet else "")
        )
        print(f"read_hdf        min {base * 1e3:8.1f} ms   (baseline)")
        for name, values, goal in (("ingest", ingest, 3.0), ("get_trajectory", fetch, 1.5)):
            ratio = min(values) / base
            print(
                f"{name:15s} min {min(values) * 1e3:8.1f} ms   "
                f"median {statistics.median(values) * 1e3:8.1f} ms"
                f"   ratio {ratio:5.2f}x read_hdf   goal <= {goal}x  {'OK' if ratio <= goal else 'MISSED'}"
            )
        print(
            f"ingest memory   peak {peak / 2**20:8.1f} MiB   ratio {peak / size:5.2f}x file   goal <= 2x  "
            f"{'OK' if peak / size <= 2 else 'MISSED'}   (read_hdf alone peaks at {read_peak / size:.2f}x)"
        )
    finally:
        if packet is not None:
            conn.query(f"SET GLOBAL max_allowed_packet = {int(packet)}")
        for module in reversed(list(SCHEMAS.values())):
            module.schema.drop(prompt=False)
        if target.embedded:
            database.stop_embedded(workdir / "pgdata")
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
