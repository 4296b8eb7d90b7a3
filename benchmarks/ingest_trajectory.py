"""Benchmark: load-mode ingest, reading back, windows and info() of one large DeepLabCut output.

Defaults: a one-hour video at 30 fps (108,000 frames) with 20 body parts, on the embedded
database. Every timing is interleaved with ``pandas.read_hdf`` of the same file (A B A B ...:
this machine is noisy, so each pair gives one ratio; the median and the min-max of the
per-pair ratios are printed, with the CPU-time ratio as a cross-check). Memory is the peak
RSS that one ingest (or one ``read_hdf``) adds in a fresh process, over the file's size.

    python benchmarks/ingest_trajectory.py                      # embedded PostgreSQL
    python benchmarks/ingest_trajectory.py --backend mariadb    # 127.0.0.1:3306, 16 MiB packets
    python benchmarks/ingest_trajectory.py --backend postgres   # 127.0.0.1:5432

Goals (issue 9): ingest <= 2x read_hdf on every backend; peak RSS added by the ingest <= 1.5x
the file; the whole get_trajectory <= 1x read_hdf; a 1-minute window of the hour <= 50 ms;
``PoseEstimation.info`` (shape, body parts, fps; no array read) <= 10 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import SERVERS, configure, fresh_peak_rss, interleaved, seed_estimation_task, teardown


def _ms(fn, rounds: int) -> tuple[float, float, float]:
    """Median, min and max milliseconds of ``rounds`` calls (after one untimed call)."""
    fn()
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(1e3 * (time.perf_counter() - t0))
    return statistics.median(times), min(times), max(times)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["embedded", *SERVERS], default="embedded")
    parser.add_argument("--frames", type=int, default=108_000)
    parser.add_argument("--parts", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--float32", action="store_true", help="write the file as float32 (DeepLabCut 3)")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="wdlc-bench-"))
    configure(args.backend, workdir)
    import numpy as np
    import pandas as pd

    from workflow_deeplabcut import synthetic
    from workflow_deeplabcut.pipeline import model

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
        if args.float32:
            pd.read_hdf(h5).astype(np.float32).to_hdf(h5, key="df_with_missing", format="fixed", mode="w")
        size = h5.stat().st_size
        task = seed_estimation_task(key, parts, args.frames, out_rel)

        def clear():
            (model.PoseEstimation & task).delete(prompt=False)

        read = lambda: pd.read_hdf(h5)  # noqa: E731
        ingest = interleaved(lambda: model.PoseEstimation.populate(task), read, args.rounds, setup_a=clear)
        whole = interleaved(lambda: model.PoseEstimation.get_trajectory(task), read, args.rounds)
        minute = 60 * 30
        start = args.frames // 2

        def window():
            model.PoseEstimation.get_trajectory(task, start=start, stop=min(start + minute, args.frames))

        windowed = interleaved(window, read, args.rounds)
        info = _ms(lambda: model.PoseEstimation.info(task), args.rounds)

        traj = model.PoseEstimation.get_trajectory(task)
        assert traj.shape == (args.frames, 3 * args.parts), traj.shape
        assert np.array_equal(traj.to_numpy(), pd.read_hdf(h5).to_numpy())  # bit for bit

        # Memory: what one ingest (or one read_hdf) adds at its peak, each in a fresh process.
        task_json = json.dumps(task, default=str)
        setup = (
            "import json\nfrom workflow_deeplabcut.pipeline import model\n"
            f"task = json.loads({task_json!r})\n"
            "(model.PoseEstimation & task).delete(prompt=False)\n"
            "model.PoseEstimation.populate(task)  # warm: imports, codecs\n"
            "(model.PoseEstimation & task).delete(prompt=False)"
        )
        env = dict(os.environ)
        _, ingest_rss = fresh_peak_rss(setup, "model.PoseEstimation.populate(task)", env)
        _, read_rss = fresh_peak_rss("import pandas as pd", f"frame = pd.read_hdf({str(h5)!r})", env)

        print(
            f"backend={args.backend}  file={size / 2**20:.1f} MiB "
            f"({'float32' if args.float32 else 'float64'})  frames={args.frames}  parts={args.parts}"
            f"  rounds={args.rounds}"
            + (f"  max_allowed_packet=16 MiB (server had {packet})" if packet else "")
        )
        print(ingest.line("ingest (populate)", "read_hdf", 2.0))
        print(whole.line("get_trajectory (whole)", "read_hdf", 1.0))
        print(windowed.line("get_trajectory (1 minute)", "read_hdf"))
        med = statistics.median(windowed.wall_a) * 1e3
        print(f"{'1-minute window':<28} {med:8.1f} ms  goal <= 50 ms: {'met' if med <= 50 else 'MISSED'}")
        print(
            f"{'info (no array read)':<28} {info[0]:8.1f} ms  ({info[1]:.1f}-{info[2]:.1f})  "
            f"goal <= 10 ms: {'met' if info[0] <= 10 else 'MISSED'}"
        )
        print(
            f"{'peak RSS added, ingest':<28} {ingest_rss / 2**20:8.1f} MiB  "
            f"= {ingest_rss / size:5.2f}x file  "
            f"goal <= 1.5x: {'met' if ingest_rss / size <= 1.5 else 'MISSED'}   "
            f"(read_hdf alone: {read_rss / 2**20:.1f} MiB = {read_rss / size:.2f}x)"
        )
    finally:
        if packet is not None:
            conn.query(f"SET GLOBAL max_allowed_packet = {int(packet)}")
        teardown(workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
