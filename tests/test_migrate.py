"""A database written by an earlier version (``ea07546``) is refused, then migrated in place.

The old version's own code (``git archive`` of that commit) writes a load-mode estimation and
its QC rows on the PostgreSQL and MariaDB servers; this version refuses to load the pipeline
on it, migrates it with ``workflow-deeplabcut migrate``, and then reads the same values, with
tables identical to freshly declared ones and no old file left behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import uuid
from pathlib import Path

import pytest
from conftest import IN_CI, PROJECT_ROOT, SERVERS

OLD_COMMIT = "ea07546"

OLD_WRITER = """
import json, os, sys
from pathlib import Path
import numpy as np
from workflow_deeplabcut import synthetic
from workflow_deeplabcut.pipeline import lab, model, qc, session, subject

parts = ["head", "tail", "snout"]
key = {"subject": "m1", "session_datetime": "2025-01-01 00:00:00", "recording_id": 1}
processed = Path(os.environ["WORKFLOW_DLC_PROCESSED_DIR"])
synthetic.write_dlc_outputs(processed / "rec1", "rec1", parts, 500)
lab.Device.insert1({"device": "cam", "modality": "video"})
subject.Subject.insert1({"subject": "m1", "sex": "U", "subject_birth_date": "2024-01-01"})
session.Session.insert1({"subject": "m1", "session_datetime": "2025-01-01 00:00:00"})
model.BodyPart.insert([{"body_part": p} for p in parts])
model.Model.insert1({"model_name": "old", "task": "t", "date": "Jan1", "iteration": 0, "snapshotindex": 0,
    "shuffle": 1, "trainingsetindex": 0, "scorer": "s", "config_template": {}, "project_path": "p"})
model.Model.BodyPart.insert([{"model_name": "old", "body_part": p} for p in parts])
for rid in (1, 2):
    rec = {**key, "recording_id": rid}
    model.VideoRecording.insert1({**rec, "device": "cam"})
    model.VideoRecording.File.insert1({**rec, "file_id": 0, "file_path": f"rec{rid}.mp4"})
    model.RecordingInfo.insert1({**rec, "px_height": 480, "px_width": 640, "nframes": 500, "fps": 30.0,
        "recording_duration": 500 / 30}, allow_direct_insert=True)
model.PoseEstimationTask.insert1({**key, "model_name": "old", "task_mode": "load",
    "pose_estimation_output_dir": "rec1"})
model.PoseEstimation.populate()
qc.PoseQC.populate()
traj = model.PoseEstimation.get_trajectory({**key, "model_name": "old"})
np.save(sys.argv[1], traj.to_numpy())
print(json.dumps({"columns": [list(c) for c in traj.columns], "qc": len(qc.PoseQC.BodyPart())}))
"""

CHECK = """
import json, os, sys
from pathlib import Path
import numpy as np
from workflow_deeplabcut import synthetic
from workflow_deeplabcut.pipeline import model, qc

key = {"subject": "m1", "session_datetime": "2025-01-01 00:00:00", "recording_id": 1, "model_name": "old"}
traj = model.PoseEstimation.get_trajectory(key)
same = bool(np.array_equal(traj.to_numpy(), np.load(sys.argv[1])))
# The migrated tables take new rows: a second recording's outputs, loaded by this version.
processed = Path(os.environ["WORKFLOW_DLC_PROCESSED_DIR"])
synthetic.write_dlc_outputs(processed / "rec2", "rec2", ["head", "tail", "snout"], 500, seed=9)
model.PoseEstimationTask.insert1({**key, "recording_id": 2, "task_mode": "load",
    "pose_estimation_output_dir": "rec2"})
model.PoseEstimation.populate()
qc.PoseQC.populate()
print(json.dumps({
    "same": same, "columns": [list(c) for c in traj.columns], "qc": len(qc.PoseQC.BodyPart()),
    "estimations": len(model.PoseEstimation()), "slots": len(model.PoseEstimation.BodyPartPosition()),
}))
"""

DESCRIBE = """
import json
from workflow_deeplabcut.pipeline import model
tables = (model.RecordingInfo, model.PoseEstimation, model.PoseEstimation.BodyPartPosition)
print(json.dumps([t.describe(printout=False) for t in tables]))
"""

DROP = """
from workflow_deeplabcut import migrate
migrate._migrating = True  # drop whatever shape the tables have
from workflow_deeplabcut.pipeline import SCHEMAS
for module in reversed(list(SCHEMAS.values())):
    module.schema.drop(prompt=False)
"""


@pytest.fixture(scope="module")
def old_source(tmp_path_factory) -> Path:
    """The earlier version's ``src`` folder, from git history."""
    folder = tmp_path_factory.mktemp("old")
    archive = folder / "old.tar"
    done = subprocess.run(
        ["git", "archive", "--format=tar", "-o", str(archive), OLD_COMMIT, "src"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        if IN_CI:
            pytest.fail(f"git archive {OLD_COMMIT} failed in CI: {done.stderr}")
        pytest.skip(f"this checkout has no history of {OLD_COMMIT}: {done.stderr.strip()}")
    with tarfile.open(archive) as tar:
        tar.extractall(folder, filter="data")
    return folder / "src"


def _env(backend: str, prefix: str, root: Path, pythonpath: str | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJ_", "WORKFLOW_DLC_"))}
    env.update(SERVERS[backend])
    env.update(
        WORKFLOW_DLC_DATABASE="server",
        WORKFLOW_DLC_PREFIX=prefix,
        WORKFLOW_DLC_ROOT_DATA_DIR=str(root / "raw"),
        WORKFLOW_DLC_PROCESSED_DIR=str(root / "processed"),
        MPLBACKEND="Agg",
    )
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    return env


def _python(code: str, env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "workflow_deeplabcut.cli", *args],
        env={**env, "COLUMNS": "200"},
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _last_json(done: subprocess.CompletedProcess):
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("backend", ["postgres", "mariadb"])
def test_old_database_is_refused_then_migrated(backend, old_source, tmp_path):
    prefix = f"mig{uuid.uuid4().hex[:6]}_"
    for sub in ("raw", "processed"):
        (tmp_path / sub).mkdir()
    old_env = _env(backend, prefix, tmp_path, str(old_source))
    env = _env(backend, prefix, tmp_path)
    saved = tmp_path / "before.npy"
    try:
        before = _last_json(_python(OLD_WRITER, old_env, str(saved)))
        store = tmp_path / "processed" / "datajoint-store" / "_schema" / f"{prefix}model"
        old_files = sorted((store / "__pose_estimation__body_part_position").rglob("*.npy"))
        assert len(old_files) == 3 * 4  # the old layout: frame_index, x, y, likelihood per body part

        refused = _python("import workflow_deeplabcut.pipeline", env)
        assert refused.returncode != 0
        assert "earlier version" in refused.stderr and "workflow-deeplabcut migrate" in refused.stderr

        dry = _cli(env, "migrate", "--dry-run")
        assert dry.returncode == 0, dry.stdout + dry.stderr
        assert "would migrate: RecordingInfo: add rotation, frame_times" in dry.stdout
        assert "1 pose estimation(s) to convert" in dry.stdout
        assert _python("import workflow_deeplabcut.pipeline", env).returncode != 0  # nothing written

        done = _cli(env, "migrate")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "1 pose estimation(s) converted; 12 old file(s) removed" in done.stdout
        again = _cli(env, "migrate")
        assert again.returncode == 0 and "up to date" in again.stdout

        after = _last_json(_python(CHECK, env, str(saved)))
        assert after["same"] and after["columns"] == before["columns"]
        assert after["qc"] == before["qc"] * 2 and after["estimations"] == 2 and after["slots"] == 6
        assert not list(store.rglob("__pose_estimation__body_part_position/**/*.npy"))
        fresh_env = _env(backend, f"mig{uuid.uuid4().hex[:6]}_", tmp_path)
        try:
            assert _last_json(_python(DESCRIBE, env)) == _last_json(_python(DESCRIBE, fresh_env))
        finally:
            _python(DROP, fresh_env)
    finally:
        _python(DROP, env)
