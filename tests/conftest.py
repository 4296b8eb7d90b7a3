"""Test configuration: one database backend per pytest process, its own prefix and data roots.

``WORKFLOW_DLC_TEST_BACKEND`` selects the backend: ``embedded`` (default: a fresh embedded
PostgreSQL in a temporary folder), ``postgres`` (127.0.0.1:5432) or ``mariadb``
(127.0.0.1:3306). ``tests/test_backends.py`` runs the suite again on the two servers.
Every run uses a new schema prefix and drops its schemas at the end.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest

from workflow_deeplabcut.demo import DEMO_TRAINING

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"
OPENFIELD = SHARED_DATA / "openfield-Pranav-2018-10-30"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

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
BACKEND = os.environ.get("WORKFLOW_DLC_TEST_BACKEND", "embedded")
# The server runs skip what is about the embedded database only, the slow real-data example
# (it exercises DeepLabCut, not the backend) and the runner of the server runs itself.
collect_ignore = (
    ["test_slurm.py"]  # SLURM workers use the MariaDB server, as on a cluster: that run only
    if BACKEND == "embedded"
    else [
        "test_backends.py",
        "test_database.py",
        "test_embedded_private.py",
        "test_faults.py",  # it starts its own MariaDB and PostgreSQL servers
        "test_openfield.py",
        "test_inference.py",  # DeepLabCut against our engine: no backend in it
        "test_superanimal.py",  # DeepLabCut's model zoo inference: no backend in it
        "test_dlc_files.py",  # DeepLabCut's files around training and pose runs
        "test_threed_dlc.py",  # DeepLabCut per camera view, then triangulation: the embedded run is enough
        "test_refine_dlc.py",  # two DeepLabCut trainings per loop: the embedded run is enough
        "test_multi_animal_dlc.py",  # DeepLabCut's multi-animal training and tracking: likewise
        "test_migrate.py",  # it migrates databases on both servers itself
        "test_cli.py",
        "test_notebooks.py",
        *(["test_slurm.py"] if BACKEND != "mariadb" else []),
    ]
)

#: Small, fast, offline DeepLabCut training (see shared notes: resnet10t, no crop sampling).
FAST_TRAINING = DEMO_TRAINING

_WORKDIR: Path | None = None
TRAINED: dict = {}  # facts about the synthetic training, read right after it ran


def pytest_configure(config):
    """Point the workflow at a fresh prefix, fresh roots and the chosen backend."""
    global _WORKDIR
    if BACKEND not in ("embedded", *SERVERS):
        raise pytest.UsageError(f"WORKFLOW_DLC_TEST_BACKEND={BACKEND!r}: use embedded, postgres or mariadb")
    _WORKDIR = Path(tempfile.mkdtemp(prefix="wdlc-test-"))
    (_WORKDIR / "raw").mkdir()
    (_WORKDIR / "processed").mkdir()
    os.environ.update(
        MPLBACKEND="Agg",
        HF_HUB_OFFLINE="1",
        HF_HOME=str(_WORKDIR / "huggingface"),  # never the developer's cache: tests build their own
        TORCH_HOME=str(_WORKDIR / "torch"),
        WORKFLOW_DLC_PREFIX=f"t{uuid.uuid4().hex[:8]}_",
        WORKFLOW_DLC_ROOT_DATA_DIR=str(_WORKDIR / "raw"),
        WORKFLOW_DLC_PROCESSED_DIR=str(_WORKDIR / "processed"),
        WORKFLOW_DLC_EMBEDDED_DIR=str(_WORKDIR / "pgdata"),
        WORKFLOW_DLC_DATABASE="embedded" if BACKEND == "embedded" else "server",
    )
    if BACKEND == "embedded":
        for var in ("DJ_HOST", "DJ_PORT", "DJ_BACKEND", "DJ_USER", "DJ_PASS"):
            os.environ.pop(var, None)
    else:
        os.environ.update(SERVERS[BACKEND])


def pytest_report_header(config):
    prefix = os.environ["WORKFLOW_DLC_PREFIX"]
    return f"workflow-deeplabcut backend: {BACKEND}; prefix {prefix}; work dir {_WORKDIR}"


def pytest_unconfigure(config):
    """Drop this run's schemas and remove its folders."""
    import sys

    pipeline = sys.modules.get("workflow_deeplabcut.pipeline")
    if pipeline is not None:
        for module in reversed(list(pipeline.SCHEMAS.values())):
            try:
                module.schema.drop(prompt=False)
            except Exception as err:  # a failed drop must not hide the test results
                print(f"could not drop {module.schema.database}: {err}")
    if BACKEND == "embedded" and pipeline is not None:
        from workflow_deeplabcut import database

        database.stop_embedded(_WORKDIR / "pgdata")
    if _WORKDIR is not None:
        shutil.rmtree(_WORKDIR, ignore_errors=True)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def insert_model_row(pipeline, name: str, parts: list[str]) -> str:
    """Register a DeepLabCut model by its row alone (no project): enough for load-mode tasks."""
    model = pipeline.model
    model.BodyPart.insert([{"body_part": p} for p in parts], skip_duplicates=True)
    model.Model.insert1(
        {
            "model_name": name,
            "task": name,
            "date": "Jan1",
            "iteration": 0,
            "snapshotindex": 0,
            "shuffle": 1,
            "trainingsetindex": 0,
            "scorer": f"DLC_{name}",
            "config_template": {},
            "project_path": f"{name}-project",
        }
    )
    model.Model.BodyPart.insert([{"model_name": name, "body_part": p} for p in parts])
    return name


def insert_load_task(
    pipeline, rec: dict, device: str, model_name: str, output_dir: Path, n_frames: int
) -> dict:
    """A recording (its RecordingInfo given, no real video) and a load-mode task of ``model_name``.

    The DeepLabCut outputs in ``output_dir`` are found by the stem ``rec<recording_id>``.
    """
    from workflow_deeplabcut.settings import to_relative

    model = pipeline.model
    model.VideoRecording.insert1({**rec, "device": device})
    model.VideoRecording.File.insert1(
        {**rec, "file_id": 0, "file_path": f"videos/rec{rec['recording_id']}.mp4"}
    )
    model.RecordingInfo.insert1(
        {
            **rec,
            "px_height": 480,
            "px_width": 640,
            "nframes": n_frames,
            "fps": 30.0,
            "recording_duration": n_frames / 30,
        },
        allow_direct_insert=True,
    )
    task = {**rec, "model_name": model_name}
    model.PoseEstimationTask.insert1(
        {**task, "task_mode": "load", "pose_estimation_output_dir": to_relative(output_dir)}
    )
    return task


@pytest.fixture(scope="session")
def workdir() -> Path:
    return _WORKDIR


@pytest.fixture(scope="session")
def raw_root(workdir) -> Path:
    return workdir / "raw"


@pytest.fixture(scope="session")
def processed_root(workdir) -> Path:
    return workdir / "processed"


@pytest.fixture(scope="session")
def pipeline():
    """The activated pipeline module; an unreachable server fails in CI, skips elsewhere."""
    from workflow_deeplabcut import database

    try:
        from workflow_deeplabcut import pipeline
    except database.DatabaseUnreachableError as err:
        if IN_CI or BACKEND == "embedded":
            raise
        pytest.skip(f"database server not reachable: {err}")
    return pipeline


@pytest.fixture(scope="session")
def openfield_source() -> Path:
    if not (OPENFIELD / "config.yaml").exists():
        message = f"The real example project was not found at {OPENFIELD} (expected ../shared/data)."
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return OPENFIELD


_counter = iter(range(10**6))


@pytest.fixture(scope="session")
def new_session(pipeline):
    """Insert a fresh subject and session; return the session key."""

    def make(prefix: str = "s") -> dict:
        n = next(_counter)
        subject = f"{prefix}{n}"[:32]
        pipeline.subject.Subject.insert1({"subject": subject, "sex": "U", "subject_birth_date": "2024-01-01"})
        key = {"subject": subject, "session_datetime": dt.datetime(2025, 1, 1, 12, 0, n % 60)}
        pipeline.session.Session.insert1(key)
        return key

    return make


@pytest.fixture(scope="session")
def camera(pipeline) -> str:
    pipeline.lab.Device.insert1({"device": "cam0", "modality": "video"}, skip_duplicates=True)
    return "cam0"


# ----------------------------------------------------------------- the trained synthetic model
@pytest.fixture(scope="session")
def synthetic_project(raw_root, workdir) -> Path:
    """A DeepLabCut project around the synthetic video (see workflow_deeplabcut.synthetic).

    Its training dataset is made in a staging folder and the project is then moved under the
    raw root, so training exercises a moved project (absolute paths in its YAML files).
    """
    from workflow_deeplabcut import dlc, synthetic

    staged = synthetic.make_dlc_project(workdir / "staging")
    dlc.ensure_training_dataset(staged, shuffle=1, trainingsetindex=0)
    target = raw_root / "synthetic" / staged.parent.name
    target.parent.mkdir(parents=True)
    shutil.move(staged.parent, target)
    return target / "config.yaml"


@pytest.fixture(scope="session")
def trained(pipeline, synthetic_project):
    """Train the synthetic project through train.ModelTraining.populate (real DeepLabCut)."""
    from workflow_deeplabcut.settings import to_relative

    train = pipeline.train
    idx = train.TrainingParamSet.insert_new_params("fast synthetic", FAST_TRAINING)
    project = synthetic_project.parent
    train.VideoSet.insert1({"video_set_id": 1})
    labels = sorted(project.glob("labeled-data/*/CollectedData_*.h5"))
    train.VideoSet.File.insert(
        [{"video_set_id": 1, "file_id": i, "file_path": to_relative(p)} for i, p in enumerate(labels)]
    )
    key = {"video_set_id": 1, "paramset_idx": idx, "training_id": 1}
    train.TrainingTask.insert1({**key, "project_path": to_relative(project)})
    result = train.ModelTraining.populate(key, suppress_errors=True)
    assert not result["error_list"], result["error_list"]
    # DeepLabCut keeps one snapshotindex per project; later trainings of other shuffles move it.
    from workflow_deeplabcut import dlc

    TRAINED["config_snapshotindex"] = dlc.read_config(synthetic_project)["snapshotindex"]
    return key


@pytest.fixture(scope="session")
def model_name(pipeline, trained, synthetic_project) -> str:
    """Register the trained synthetic model as 'synthetic'."""
    pipeline.model.Model.insert_new_model(
        "synthetic",
        synthetic_project,
        shuffle=1,
        trainingsetindex=0,
        paramset_idx=trained["paramset_idx"],
        model_description="synthetic test model",
    )
    return "synthetic"


@pytest.fixture(scope="session")
def synthetic_video(synthetic_project) -> Path:
    return synthetic_project.parent / "videos" / "synthetic.mp4"


# ----------------------------------------------------------------- an imported, corrupted estimate
@pytest.fixture(scope="session")
def noisy(pipeline, new_session, camera, raw_root):
    """A synthetic recording with an imported estimate whose defects are known.

    The estimate (synthetic.noisy_estimate) is written as a DeepLabCut ``.h5`` and imported as
    a PoseEstimation of the external model ``noisy``. Returns the estimation's key and facts.
    """
    from workflow_deeplabcut import synthetic

    model = pipeline.model
    spec = synthetic.SyntheticSpec()
    folder = raw_root / "noisy"
    video = synthetic.make_video(folder, spec)
    frame, corruption = synthetic.noisy_estimate(spec)
    h5 = synthetic.write_dlc_h5(frame, folder / "synthetic_DLC_external.h5")
    recording = model.VideoRecording.insert_recording(new_session("noisy"), 1, camera, [video])
    model.RecordingInfo.populate(recording)
    model.Model.insert_external_model(
        "noisy", list(synthetic.BODY_PARTS), "DeepLabCut", model_description="noisy"
    )
    key = model.PoseEstimationTask.generate_import(recording, "noisy", h5, "DeepLabCut")
    result = model.PoseEstimation.populate(key, suppress_errors=True)
    assert not result["error_list"], result["error_list"]
    return {"key": key, "spec": spec, "frame": frame, "corruption": corruption, "video": video, "h5": h5}


def hub_cache(repo: str, filename: str, data: bytes) -> Path:
    """Put a file into the Hugging Face cache in the hub's own layout (blob, snapshot link, ref)."""
    import hashlib

    from huggingface_hub import constants

    folder = Path(constants.HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}"
    blob = folder / "blobs" / hashlib.sha256(data).hexdigest()
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(data)
    refs = folder / "refs" / "main"
    if refs.exists():
        commit = refs.read_text().strip()
    else:
        commit = hashlib.sha1(repo.encode()).hexdigest()
        refs.parent.mkdir(parents=True, exist_ok=True)
        refs.write_text(commit)
    snapshot = folder / "snapshots" / commit / filename
    snapshot.parent.mkdir(parents=True, exist_ok=True)
    snapshot.symlink_to(Path("..") / ".." / "blobs" / blob.name)
    return snapshot


def project_copy(synthetic_project, target):
    """Copy a DeepLabCut project (its config.yaml given) to ``target``, relocated there."""
    import shutil

    from workflow_deeplabcut import dlc

    shutil.copytree(synthetic_project.parent, target)
    dlc.relocate_project(target / "config.yaml")
    return target / "config.yaml"
