"""Benchmark: load-mode ingest of one large DeepLabCut multi-animal tracks file (``_el.h5``).

Defaults: 4 animals x 12 body parts x 108,000 frames (one hour at 30 fps), written as
DeepLabCut's stitcher writes it (HDF key ``tracks``, PyTables ``table`` format, float64,
rows indexed by frame), with a ``_meta.pickle``. Each ingest (``PoseEstimation.populate`` of a
load-mode task of a registered multi-animal model) is timed side by side with
``pandas.read_hdf`` of the same file (A B A B ...: each pair gives one ratio; the median and
min-max of the per-pair ratios are printed). Memory is the peak RSS one ingest (or one
``read_hdf``) adds in a fresh process, over the file's size.

    python benchmarks/multi_animal_ingest.py                      # embedded PostgreSQL
    python benchmarks/multi_animal_ingest.py --backend mariadb    # 127.0.0.1:3306

Goals (issue 10): ingest <= 3x read_hdf; peak RSS added by the ingest <= 2x the file; on the
embedded database and MariaDB.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
import tempfile
from pathlib import Path

from common import SERVERS, configure, fresh_peak_rss, interleaved, seed_load_task, teardown


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["embedded", *SERVERS], default="embedded")
    parser.add_argument("--frames", type=int, default=108_000)
    parser.add_argument("--animals", type=int, default=4)
    parser.add_argument("--parts", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="wdlc-bench-"))
    configure(args.backend, workdir)
    import numpy as np
    import pandas as pd

    from workflow_deeplabcut.pipeline import lab, model, session, subject

    try:
        animals = [f"mouse{i + 1}" for i in range(args.animals)]
        parts = [f"part{i:02d}" for i in range(args.parts)]
        scorer = "DLC_Resnet50_benchJan1shuffle1_snapshot_200"
        out_rel = "bench/out"
        folder = workdir / "processed" / out_rel
        folder.mkdir(parents=True)
        rng = np.random.default_rng(0)
        values = rng.uniform(0, 640, size=(args.frames, args.animals, args.parts, 3))
        values[..., 2] = rng.uniform(0, 1, size=values.shape[:-1])
        values[rng.uniform(size=values.shape[:-1]) < 0.05] = np.nan  # untracked points
        columns = pd.MultiIndex.from_product(
            [[scorer], animals, parts, ["x", "y", "likelihood"]],
            names=["scorer", "individuals", "bodyparts", "coords"],
        )
        h5 = folder / f"bench{scorer}_el.h5"
        frame = pd.DataFrame(values.reshape(args.frames, -1), columns=columns)
        frame.to_hdf(h5, key="tracks", format="table", mode="w")  # as DeepLabCut's stitcher writes it
        meta = {"data": {"nframes": args.frames, "Scorer": scorer, "fps": 30.0}}
        (folder / f"bench{scorer}_meta.pickle").write_bytes(pickle.dumps(meta))
        size = h5.stat().st_size

        key = {"subject": "bench", "session_datetime": "2025-01-01 00:00:00", "recording_id": 1}
        lab.Device.insert1({"device": "cam", "modality": "video"})
        subject.Subject.insert1({"subject": "bench", "sex": "U", "subject_birth_date": "2024-01-01"})
        session.Session.insert1({k: key[k] for k in ("subject", "session_datetime")})
        row = {
            "model_name": "bench",
            "task": "bench",
            "date": "Jan1",
            "iteration": 0,
            "snapshotindex": 0,
            "shuffle": 1,
            "trainingsetindex": 0,
            "scorer": scorer,
            "config_template": {"multianimalproject": True, "individuals": animals},
            "project_path": "bench-project",
        }
        with model.Model.connection.transaction:
            model.Model.insert_built(row, parts)
        task = seed_load_task(key, args.frames, out_rel)

        store = workdir / "processed" / "datajoint-store"

        def clear():
            # A new estimation's array goes to a new file: remove the last round's (and flush the
            # disk) outside the timing, so a round does not pay for freeing the one before it.
            (model.PoseEstimation & task).delete(prompt=False)
            for old in store.rglob("*.npy"):
                old.unlink()
            os.sync()

        read = lambda: pd.read_hdf(h5, "tracks")  # noqa: E731
        ingest = interleaved(lambda: model.PoseEstimation.populate(task), read, args.rounds, setup_a=clear)

        traj = model.PoseEstimation.get_trajectory(task)
        assert traj.shape == (args.frames, 3 * args.animals * args.parts), traj.shape
        assert np.array_equal(traj.to_numpy(), frame.to_numpy(), equal_nan=True)  # bit for bit

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
        _, read_rss = fresh_peak_rss(
            "import pandas as pd", f"frame = pd.read_hdf({str(h5)!r}, 'tracks')", env
        )

        print(
            f"backend={args.backend}  file={size / 2**20:.1f} MiB (table, float64)  frames={args.frames}  "
            f"animals={args.animals}  parts={args.parts}  rounds={args.rounds}"
        )
        print(ingest.line("ingest (populate)", "read_hdf", 3.0))
        print(
            f"{'peak RSS added, ingest':<28} {ingest_rss / 2**20:8.1f} MiB  "
            f"= {ingest_rss / size:5.2f}x file  "
            f"goal <= 2x: {'met' if ingest_rss / size <= 2 else 'MISSED'}   "
            f"(read_hdf alone: {read_rss / 2**20:.1f} MiB = {read_rss / size:.2f}x)"
        )
    finally:
        teardown(workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
