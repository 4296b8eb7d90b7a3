"""Migrating an element-deeplabcut database (issue 11), built by element's own code.

``tests/element_build.py`` runs in ``.element-venv`` (element-deeplabcut 0.2.8 on DataJoint 0.14,
made by ``scripts/install-element.sh``) and writes an element database on the MariaDB server
under a fresh prefix; the migration reads it into this run's backend (embedded PostgreSQL, and
the PostgreSQL and MariaDB servers in their runs).
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid

import numpy as np
import pytest
from conftest import IN_CI, PROJECT_ROOT, free_port

ELEMENT_PYTHON = PROJECT_ROOT / ".element-venv" / "bin" / "python"
SERVER = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}
PARTS = ["snout", "leftear", "rightear", "tailbase"]


def _mysql():
    import pymysql

    return pymysql.connect(**SERVER, autocommit=True)


def _checksums(prefix: str) -> dict:
    """CHECKSUM TABLE of every table under the prefix: any write to the source changes one."""
    with _mysql() as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema LIKE %s",
            (prefix.replace("_", r"\_") + "%",),
        )
        names = [f"`{s}`.`{t}`" for s, t in cur.fetchall()]
        cur.execute("CHECKSUM TABLE " + ", ".join(names))
        return dict(cur.fetchall())


@pytest.fixture(scope="module")
def element_db(pipeline):
    """An element-deeplabcut 0.2.8 database on the MariaDB server; dropped afterwards."""
    if not ELEMENT_PYTHON.exists():
        message = f"{ELEMENT_PYTHON} is missing: run scripts/install-element.sh (scripts/test.sh does)."
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    from workflow_deeplabcut.element import ElementSource

    prefix = f"el{uuid.uuid4().hex[:8]}_"
    env = {**os.environ, "DJ_HOST": SERVER["host"], "DJ_USER": SERVER["user"], "DJ_PASS": SERVER["password"]}
    env.pop("DJ_PORT", None)
    done = subprocess.run(
        [str(ELEMENT_PYTHON), str(PROJECT_ROOT / "tests" / "element_build.py"), prefix],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    counts = json.loads(done.stdout.strip().splitlines()[-1])
    yield ElementSource(prefix=prefix, **SERVER), counts
    # The migrated rows go too: an untrained training task among them would be work for the
    # other tests' `run`.
    m, t = pipeline.model, pipeline.train
    for table, restriction in (
        (pipeline.subject.Subject, [{"subject": "elm1"}, {"subject": "elm2"}]),
        (m.Model, [{"model_name": "el-openfield-v1"}, {"model_name": "el-openfield-v0"}]),
        (t.VideoSet, {"video_set_id": 100}),
        (t.TrainingParamSet, [{"paramset_idx": 100}, {"paramset_idx": 101}]),
        (pipeline.lab.Device, [{"device": "el-top"}, {"device": "el-side"}]),
    ):
        (table & restriction).delete(prompt=False)
    with _mysql() as conn, conn.cursor() as cur:
        cur.execute("SHOW DATABASES LIKE %s", (prefix.replace("_", r"\_") + "%",))
        drops = " ".join(f"DROP DATABASE `{name}`;" for (name,) in cur.fetchall())
        cur.execute("SET FOREIGN_KEY_CHECKS=0")
        for statement in filter(None, drops.split(";")):
            cur.execute(statement)


def _count(pipeline) -> dict:
    m, t = pipeline.model, pipeline.train
    tables = {
        "Subject": pipeline.subject.Subject,
        "Session": pipeline.session.Session,
        "VideoRecording": m.VideoRecording,
        "TrainingParamSet": t.TrainingParamSet,
        "ModelTraining": t.ModelTraining,
        "Model": m.Model,
        "PoseEstimation": m.PoseEstimation,
        "BodyPartPosition": m.PoseEstimation.BodyPartPosition,
    }
    return {name: len(table()) for name, table in tables.items()}


def test_element_database_migrates(pipeline, element_db):
    """Dry run writes nothing; the run carries every row it can, bit for bit, reports the rest
    with the reason, never writes to the source; a second run changes nothing."""
    from workflow_deeplabcut.element import ElementReader, migrate_element

    source, built = element_db
    model = pipeline.model
    checksums = _checksums(source.prefix)
    before = _count(pipeline)

    dry = migrate_element(source, dry_run=True)
    assert _count(pipeline) == before and dry.inserted > 0

    report = migrate_element(source)
    for name, n in built.items():
        if name in report.counts:
            assert report.counts[name]["source"] == n, name
    counts = report.counts
    # Everything but the recording whose file climbs out of the root, the param set with
    # TensorFlow's maxiters, and what hangs on them.
    why = {
        (s["table"], s["key"].get("subject"), s["key"].get("paramset_idx")): s["why"] for s in report.skipped
    }
    assert "not inside a data root" in why[("VideoRecording", "elm2", None)]
    assert "'maxiters' (TensorFlow iterations; give 'epochs'" in why[("TrainingParamSet", None, 100)]
    assert "its TrainingParamSet was not carried" in why[("TrainingTask", None, 100)]
    assert "its TrainingTask was not carried" in why[("ModelTraining", None, 100)]
    assert counts["VideoRecording"]["inserted"] == 2 and counts["RecordingInfo"]["inserted"] == 2
    assert counts["PoseEstimationTask"]["inserted"] == 4 and counts["PoseEstimationTask"]["skipped"] == 2
    assert counts["PoseEstimation"]["inserted"] == 3 and counts["PoseEstimation"]["skipped"] == 2
    assert counts["TrainingParamSet"]["inserted"] == 1 and counts["TrainingTask"]["inserted"] == 1
    assert counts["Model"]["inserted"] == 2 and counts["ModelEvaluation"]["inserted"] == 1
    assert counts["BodyPart"]["inserted"] + counts["BodyPart"]["present"] == 4
    assert [n["key"] for n in report.notes if n["table"] == "Model"] == [{"model_name": "el-openfield-v1"}]
    assert sum(c["inserted"] for c in dry.counts.values()) == report.inserted

    # The rows, against the source.
    v1 = (model.Model & {"model_name": "el-openfield-v1"}).fetch1()
    assert v1["engine"] == "tensorflow" and v1["paramset_idx"] is None and v1["snapshotindex"] == -1
    assert v1["config_template"]["bodyparts"] == PARTS
    assert (model.Model & {"model_name": "el-openfield-v0"}).fetch1("scorer") == (
        "DLC_resnet50_openfieldOct30shuffle1_500000"
    )
    assert (pipeline.train.TrainingParamSet & {"paramset_idx": 101}).fetch1("params") == {
        "shuffle": 7,
        "trainingsetindex": 0,
        "epochs": 7,
    }
    info = (model.RecordingInfo & {"subject": "elm1"}).to_dicts()
    assert len(info) == 2 and all(r["fps"] == 30.0 and r["nframes"] == 300 for r in info)
    reader = ElementReader(source)
    try:
        estimations = reader.rows("model", "__pose_estimation")
        carried = [e for e in estimations if e["subject"] == "elm1"]
        assert len(carried) == 3
        for e in carried:
            key = {k: e[k] for k in ("subject", "session_datetime", "recording_id", "model_name")}
            parts = {
                r["body_part"]: r for r in reader.rows("model", "__pose_estimation__body_part_position", key)
            }
            window = model.PoseEstimation.window(key)
            got = window.arrays()
            assert [bp for _, bp in got] == PARTS  # the config's order
            for (_, bp), arrays in got.items():
                for name in ("x_pos", "y_pos", "likelihood"):
                    assert np.array_equal(arrays[name], np.ravel(parts[bp][name]), equal_nan=True)
                    assert arrays[name].dtype == np.float64
            row = (model.PoseEstimation & key).fetch1()
            assert row["scorer"] == (model.Model & key).fetch1("scorer") and row["nframes"] == 300
            assert row["output_dir"] == f"elm1/{key['model_name']}"
    finally:
        reader.close()
    assert _checksums(source.prefix) == checksums  # the source was only read

    again = migrate_element(source)
    assert again.inserted == 0
    assert all(c["inserted"] == 0 for c in again.counts.values())
    after = _count(pipeline)
    assert migrate_element(source, dry_run=True).inserted == 0 and _count(pipeline) == after

    # A migration stopped halfway (an estimation and a recording's info missing) is finished
    # by running it again: only what is missing is inserted.
    key = {k: carried[0][k] for k in ("subject", "session_datetime", "recording_id", "model_name")}
    (model.PoseEstimation.BodyPartPosition & key).delete_quick()
    (model.PoseEstimation & key).delete_quick()
    rec = {k: key[k] for k in ("subject", "session_datetime", "recording_id")}
    (model.RecordingInfo & rec).delete_quick()
    resumed = migrate_element(source)
    assert {n: c["inserted"] for n, c in resumed.counts.items() if c["inserted"]} == {
        "RecordingInfo": 1,
        "PoseEstimation": 1,
    }
    assert _count(pipeline) == after


def test_stack_positions_refuses_what_cannot_be_stacked():
    from workflow_deeplabcut.element import stack_positions

    def part(name, frames, n=5):
        return {
            "body_part": name,
            "frame_index": frames,
            "x_pos": np.arange(n) * 1.0,
            "y_pos": np.ones(n),
            "z_pos": None,
            "likelihood": np.ones(n),
        }

    poses, slots = stack_positions([part("b", np.arange(5)), part("a", np.arange(5))], ["b", "a"])
    assert poses.shape == (5, 2, 3) and slots == [("individual_0", "b"), ("individual_0", "a")]
    with pytest.raises(ValueError, match=r"body part 'a': frame_index is not 0..4"):
        stack_positions([part("b", np.arange(5)), part("a", np.array([0, 1, 2, 4, 5]))], None)
    with pytest.raises(ValueError, match="no BodyPartPosition rows"):
        stack_positions([], None)


def test_element_source_bad_input(pipeline, element_db):
    """An unreachable server and a prefix without element's schemas: clear errors, nothing written."""
    from workflow_deeplabcut.element import ElementSource, ElementSourceError, migrate_element

    before = _count(pipeline)
    with pytest.raises(
        ElementSourceError, match=r"Cannot reach the element-deeplabcut database at root@127.0.0.1:\d+"
    ):
        migrate_element(ElementSource(prefix="x_", port=free_port()))
    with pytest.raises(ElementSourceError, match="holds no element-deeplabcut database at prefix 'nosuch_'"):
        migrate_element(ElementSource(prefix="nosuch_", **{k: v for k, v in SERVER.items()}))
    assert _count(pipeline) == before


def test_migrate_from_element_command(pipeline, element_db, tmp_path):
    """The shell: a table per source table, every row not carried with its reason, a JSON report."""
    from typer.testing import CliRunner

    from workflow_deeplabcut.cli import app

    source, _ = element_db
    out = tmp_path / "report.json"
    result = CliRunner().invoke(
        app,
        [
            "migrate",
            "--from-element",
            source.prefix,
            "--host",
            "127.0.0.1",
            "--dry-run",
            "--report",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "dry run: nothing written" in result.output and "PoseEstimation" in result.output
    assert "not carried TrainingParamSet {'paramset_idx': 100}" in result.output
    report = json.loads(out.read_text())
    assert report["dry_run"] is True and report["counts"]["Subject"]["source"] == 2
    assert any("not inside a data root" in s["why"] for s in report["skipped"])
    bad = CliRunner().invoke(app, ["migrate", "--from-element", "nosuch_"])
    assert bad.exit_code != 0 and "holds no element-deeplabcut database" in bad.output


def test_attaching_to_element_schemas_is_refused(element_db, tmp_path):
    """Pointed at element's prefix, the package refuses before declaring anything there."""
    import sys

    source, _ = element_db

    def schemas():
        with _mysql() as conn, conn.cursor() as cur:
            cur.execute("SHOW DATABASES LIKE %s", (source.prefix.replace("_", r"\_") + "%",))
            names = sorted(n for (n,) in cur.fetchall())
            cur.execute(
                "SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema LIKE %s",
                (source.prefix.replace("_", r"\_") + "%",),
            )
            return names, sorted(cur.fetchall())

    before, checksums = schemas(), _checksums(source.prefix)
    env = {
        **os.environ,
        "WORKFLOW_DLC_PREFIX": source.prefix,
        "WORKFLOW_DLC_DATABASE": "server",
        "DJ_HOST": "127.0.0.1",
        "DJ_PORT": "3306",
        "DJ_BACKEND": "mysql",
        "DJ_USER": "root",
        "DJ_PASS": "",
        "WORKFLOW_DLC_ROOT_DATA_DIR": str(tmp_path),
        "WORKFLOW_DLC_PROCESSED_DIR": str(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, "-c", "import workflow_deeplabcut.pipeline"], env=env, capture_output=True, text=True
    )
    assert done.returncode != 0
    assert "hold element-deeplabcut's tables" in done.stderr
    assert f"migrate --from-element {source.prefix}" in done.stderr
    assert schemas() == before and _checksums(source.prefix) == checksums
