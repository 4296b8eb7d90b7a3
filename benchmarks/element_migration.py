"""Benchmark: migrating an element-deeplabcut database's pose estimations (issue 11).

An element-deeplabcut 0.2.8 database is written on the MariaDB server by element's own code
(``benchmarks/element_build_bulk.py`` in ``.element-venv``: SESSIONS recordings, each one hour
at 30 fps, 108,000 frames x 20 body parts). Then, interleaved (A B A B ...: this machine is
noisy, so each pair gives one ratio):

- A: ``migrate_element`` of those estimations into this pipeline (the estimations are deleted
  from the target before each round; the other rows stay, as after a first run);
- B: reading the same arrays from the source alone, as element stores them (one row per body
  part, five blobs each, decoded by DataJoint's ``blob.unpack``).

    python benchmarks/element_migration.py                       # into the embedded PostgreSQL
    python benchmarks/element_migration.py --backend mariadb --sessions 4

Goal (issue 11): migration <= 3x the read alone (the issue names 100 sessions; the ratio is per
estimation, so a few sessions measure it; ``--sessions 100`` needs ~9 GB on the server).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from common import configure, interleaved, teardown

ROOT = Path(__file__).resolve().parents[1]
ELEMENT_PYTHON = ROOT / ".element-venv" / "bin" / "python"
SOURCE = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}


def _drop(prefix: str) -> None:
    import pymysql

    with pymysql.connect(**SOURCE, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("SHOW DATABASES LIKE %s", (prefix.replace("_", r"\_") + "%",))
        names = [n for (n,) in cur.fetchall()]
        cur.execute("SET FOREIGN_KEY_CHECKS=0")
        for name in names:
            cur.execute(f"DROP DATABASE `{name}`")


def main() -> None:
    """Build the element database, run the interleaved pairs, print the ratio, clean up."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="embedded", choices=("embedded", "postgres", "mariadb"))
    parser.add_argument("--sessions", type=int, default=3)
    parser.add_argument("--parts", type=int, default=20)
    parser.add_argument("--frames", type=int, default=108_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not ELEMENT_PYTHON.exists():
        sys.exit(f"{ELEMENT_PYTHON} is missing: run scripts/install-element.sh first.")

    prefix = f"elb{uuid.uuid4().hex[:6]}_"
    env = {**os.environ, "DJ_HOST": SOURCE["host"], "DJ_USER": SOURCE["user"], "DJ_PASS": SOURCE["password"]}
    print(
        f"building element-deeplabcut 0.2.8 database {prefix}*: "
        f"{args.sessions} x {args.parts} x {args.frames}"
    )
    subprocess.run(
        [str(ELEMENT_PYTHON), str(ROOT / "benchmarks" / "element_build_bulk.py"), prefix]
        + [str(args.sessions), str(args.parts), str(args.frames)],
        env=env,
        check=True,
        capture_output=True,
    )
    workdir = Path(tempfile.mkdtemp(prefix="bench-element-"))
    configure(args.backend, workdir)
    try:
        from workflow_deeplabcut.element import ElementReader, ElementSource, migrate_element
        from workflow_deeplabcut.pipeline import model

        source = ElementSource(prefix=prefix, **SOURCE)
        migrate_element(source)  # the rows the estimations hang on, once
        reader = ElementReader(source)
        keys = [
            {k: r[k] for k in ("subject", "session_datetime", "recording_id", "model_name")}
            for r in reader.rows("model", "__pose_estimation")
        ]

        def clear():
            (model.PoseEstimation.BodyPartPosition & keys).delete_quick()
            (model.PoseEstimation & keys).delete_quick()

        def migrate():
            report = migrate_element(source)
            assert report.counts["PoseEstimation"]["inserted"] == len(keys), report.counts

        def read_only():
            for key in keys:
                rows = reader.rows("model", "__pose_estimation__body_part_position", key)
                assert len(rows) == args.parts

        pairs = interleaved(migrate, read_only, args.rounds, setup_a=clear)
        gb = args.sessions * args.parts * 5 * args.frames * 8 / 1e9
        print(f"backend {args.backend}: {len(keys)} estimations, {gb:.2f} GB of element blobs")
        print(pairs.line("migrate --from-element", "read alone", goal=3))
        reader.close()
    finally:
        teardown(workdir)
        _drop(prefix)


if __name__ == "__main__":
    main()
