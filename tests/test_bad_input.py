"""Bad input: a clear error naming the input and the fix, and nothing written."""

import os
import shutil
import subprocess
import sys

import datajoint as dj
import pytest
from conftest import FAST_TRAINING, PROJECT_ROOT

from workflow_deeplabcut import dlc, synthetic
from workflow_deeplabcut.settings import PathOutsideRootsError, to_relative
from workflow_deeplabcut.video import VideoError


def count(table):
    return len(table.keys())


@pytest.fixture
def recordings(pipeline):
    """Asserts that a test leaves the recording tables as it found them."""
    model = pipeline.model
    tables = [model.VideoRecording, model.VideoRecording.File, model.RecordingInfo]
    before = [count(t) for t in tables]
    yield model
    assert [count(t) for t in tables] == before


def test_missing_video(recordings, new_session, camera, raw_root):
    with pytest.raises(FileNotFoundError, match="nope.mp4"):
        recordings.VideoRecording.insert_recording(new_session(), 1, camera, [raw_root / "nope.mp4"])


def test_not_a_video(recordings, new_session, camera, raw_root):
    fake = raw_root / "fake.mp4"
    fake.write_text("this is not a video\n")
    with pytest.raises(VideoError, match="fake.mp4 is not a readable video"):
        recordings.VideoRecording.insert_recording(new_session(), 1, camera, [fake])
    empty = raw_root / "empty.avi"
    empty.write_bytes(b"")
    with pytest.raises(VideoError, match="empty.avi"):
        recordings.VideoRecording.insert_recording(new_session(), 1, camera, [empty])


def test_files_of_one_recording_disagree(recordings, new_session, camera, raw_root):
    small = synthetic.make_video(
        raw_root / "mismatch", synthetic.SyntheticSpec(n_frames=10, size=64), "small"
    )
    large = synthetic.make_video(
        raw_root / "mismatch", synthetic.SyntheticSpec(n_frames=10, size=96), "large"
    )
    with pytest.raises(VideoError, match="disagree: small.mp4 is 64x64 .* large.mp4 is 96x96"):
        recordings.VideoRecording.insert_recording(new_session(), 1, camera, [small, large])


def test_files_disagree_at_populate(pipeline, new_session, camera, raw_root):
    """Rows inserted by hand are checked by RecordingInfo: an error, no row."""
    model = pipeline.model
    small = synthetic.make_video(raw_root / "mismatch2", synthetic.SyntheticSpec(n_frames=10, size=64), "a")
    fast = synthetic.make_video(raw_root / "mismatch2", synthetic.SyntheticSpec(n_frames=10, fps=25), "b")
    key = {**new_session(), "recording_id": 1}
    model.VideoRecording.insert1({**key, "device": camera})
    model.VideoRecording.File.insert(
        [{**key, "file_id": i, "file_path": to_relative(p)} for i, p in enumerate([small, fast])]
    )
    result = model.RecordingInfo.populate(key, suppress_errors=True)
    assert len(result["error_list"]) == 1 and "disagree" in str(result["error_list"][0])
    assert not model.RecordingInfo & key


def test_fractional_frame_rate_is_kept(pipeline, new_session, camera, raw_root):
    video = synthetic.make_video(
        raw_root / "ntsc", synthetic.SyntheticSpec(n_frames=12, size=64, fps=30000 / 1001), "ntsc"
    )
    key = pipeline.model.VideoRecording.insert_recording(new_session(), 1, camera, [video])
    pipeline.model.RecordingInfo.populate(key)
    info = (pipeline.model.RecordingInfo & key).fetch1()
    assert info["fps"] == pytest.approx(29.97, abs=1e-3)
    assert info["nframes"] == 12


def test_path_outside_roots(recordings, new_session, camera, tmp_path):
    outside = synthetic.make_video(tmp_path, synthetic.SyntheticSpec(n_frames=5, size=64), "outside")
    with pytest.raises(PathOutsideRootsError, match="outside the data roots"):
        recordings.VideoRecording.insert_recording(new_session(), 1, camera, [outside])
    with pytest.raises(PathOutsideRootsError, match="climbs out"):
        recordings.VideoRecording.insert_recording(new_session(), 1, camera, ["../../etc/passwd"])


@pytest.fixture
def models(pipeline):
    model = pipeline.model
    tables = [model.Model, model.Model.BodyPart, model.BodyPart]
    before = [count(t) for t in tables]
    yield model
    assert [count(t) for t in tables] == before


def test_config_not_yaml(models, raw_root):
    project = raw_root / "broken-yaml"
    project.mkdir()
    (project / "config.yaml").write_text("Task: [unclosed\nscorer: {\n")
    with pytest.raises(dlc.DLCConfigError, match="config.yaml is not valid YAML"):
        models.Model.insert_new_model("broken", project, shuffle=1, trainingsetindex=0)


def test_config_missing_keys(models, raw_root):
    project = raw_root / "missing-keys"
    project.mkdir()
    (project / "config.yaml").write_text("Task: x\nscorer: y\n")
    with pytest.raises(dlc.DLCConfigError, match=r"lacks the key\(s\) \['date', 'iteration'"):
        models.Model.insert_new_model("incomplete", project, shuffle=1, trainingsetindex=0)
    with pytest.raises(dlc.DLCConfigError, match="config not found"):
        models.Model.insert_new_model("absent", raw_root / "no-such-project", shuffle=1, trainingsetindex=0)


def test_tensorflow_model_without_tensorflow_snapshots(models, synthetic_project, model_name, raw_root):
    """Asked for the TensorFlow engine, a PyTorch-only shuffle is refused (tests/test_legacy_dlc.py
    registers real DeepLabCut 2.x shuffles); an unknown engine too."""
    with pytest.raises(dlc.DLCConfigError, match="no TensorFlow snapshot"):
        models.Model.insert_new_model(
            "tf", synthetic_project, shuffle=1, trainingsetindex=0, params={"engine": "tensorflow"}
        )
    with pytest.raises(dlc.DLCConfigError, match="engine 'jax' is not a DeepLabCut engine"):
        models.Model.insert_new_model(
            "tf", synthetic_project, shuffle=1, trainingsetindex=0, params={"engine": "jax"}
        )
    assert not models.Model & {"model_name": "tf"}


def test_duplicate_model(models, synthetic_project, model_name):
    with pytest.raises(dj.errors.DuplicateError, match="named 'synthetic' exists"):
        models.Model.insert_new_model(model_name, synthetic_project, shuffle=1, trainingsetindex=0)
    with pytest.raises(dj.errors.DuplicateError, match="already registered as 'synthetic'"):
        models.Model.insert_new_model("again", synthetic_project, shuffle=1, trainingsetindex=0)
    with pytest.raises(dlc.DLCConfigError, match="snapshotindex 7 is out of range"):
        models.Model.insert_new_model(
            "nosnap", synthetic_project, shuffle=1, trainingsetindex=0, params={"snapshotindex": 7}
        )
    with pytest.raises(dlc.DLCConfigError, match="trainingsetindex 3 is out of range"):
        models.Model.insert_new_model("badtsi", synthetic_project, shuffle=1, trainingsetindex=3)


def test_duplicate_recording(pipeline, new_session, camera, synthetic_video):
    session = new_session()
    pipeline.model.VideoRecording.insert_recording(session, 1, camera, [synthetic_video])
    n = count(pipeline.model.VideoRecording.File)
    with pytest.raises(dj.errors.DuplicateError, match="already exists"):
        pipeline.model.VideoRecording.insert_recording(session, 1, camera, [synthetic_video])
    assert count(pipeline.model.VideoRecording.File) == n


@pytest.fixture
def paramsets(pipeline):
    table = pipeline.train.TrainingParamSet
    yield table


def test_training_params(paramsets):
    before = count(paramsets)
    with pytest.raises(ValueError, match="lack 'shuffle'"):
        paramsets.insert_new_params("no shuffle", {"trainingsetindex": 0})
    with pytest.raises(ValueError, match="lack 'trainingsetindex'"):
        paramsets.insert_new_params("no tsi", {"shuffle": 1})
    with pytest.raises(ValueError, match="'shuffle' must be an integer"):
        paramsets.insert_new_params("str shuffle", {"shuffle": "one", "trainingsetindex": 0})
    with pytest.raises(ValueError, match=r"Unknown training param\(s\) \['maxepochs'\]. Accepted: net_type"):
        paramsets.insert_new_params("typo", {"shuffle": 1, "trainingsetindex": 0, "maxepochs": 5})
    with pytest.raises(ValueError, match=r"no meaning for DeepLabCut 3's PyTorch engine: 'maxiters'"):
        paramsets.insert_new_params("tf", {"shuffle": 1, "trainingsetindex": 0, "maxiters": 5})
    assert count(paramsets) == before
    params = {"shuffle": 2, "trainingsetindex": 0, "epochs": 3}
    idx = paramsets.insert_new_params("three epochs", params)
    # Same params again: idempotent, in any key order.
    assert paramsets.insert_new_params("again", dict(reversed(list(params.items())))) == idx
    assert paramsets.insert_new_params("again", params, paramset_idx=idx) == idx
    with pytest.raises(ValueError, match=f"already exist as paramset_idx {idx}"):
        paramsets.insert_new_params("second index", params, paramset_idx=idx + 50)
    with pytest.raises(ValueError, match=f"paramset_idx {idx} already holds different params"):
        paramsets.insert_new_params("clash", {**params, "epochs": 4}, paramset_idx=idx)
    assert count(paramsets) == before + 1
    stored = (paramsets & {"paramset_idx": idx}).fetch1("params")
    assert stored == params and FAST_TRAINING["shuffle"] == 1


@pytest.fixture
def load_task(pipeline, new_session, camera, synthetic_video, model_name):
    """A recording of the synthetic video and a load-mode task whose folder we fill by hand."""
    model = pipeline.model
    rec = model.VideoRecording.insert_recording(new_session(), 1, camera, [synthetic_video])
    model.RecordingInfo.populate(rec)
    out_dir = model.PoseEstimationTask.infer_output_dir({**rec, "model_name": model_name}, mkdir=True)
    key = {**rec, "model_name": model_name}
    return key, out_dir


def test_outputs_with_other_body_parts(pipeline, load_task):
    key, out_dir = load_task
    synthetic.write_dlc_outputs(out_dir, "synthetic", ["nose", "tail"], 300)
    pipeline.model.PoseEstimationTask.generate(key, key["model_name"])
    assert (pipeline.model.PoseEstimationTask & key).fetch1("task_mode") == "load"
    result = pipeline.model.PoseEstimation.populate(key, suppress_errors=True)
    assert "body parts ['nose', 'tail']" in str(result["error_list"][0])
    assert not pipeline.model.PoseEstimation & key
    assert not pipeline.model.PoseEstimation.BodyPartPosition & key


def test_outputs_with_other_frame_count(pipeline, load_task):
    key, out_dir = load_task
    synthetic.write_dlc_outputs(out_dir, "synthetic", list(synthetic.BODY_PARTS), 250)
    pipeline.model.PoseEstimationTask.generate(key, key["model_name"], task_mode="load")
    result = pipeline.model.PoseEstimation.populate(key, suppress_errors=True)
    assert "have 250 frames but the recording has 300" in str(result["error_list"][0])
    assert not pipeline.model.PoseEstimation & key


def test_load_mode_without_outputs(pipeline, load_task):
    key, out_dir = load_task
    pipeline.model.PoseEstimationTask.generate(key, key["model_name"], task_mode="load")
    result = pipeline.model.PoseEstimation.populate(key, suppress_errors=True)
    assert "No DeepLabCut output synthetic" in str(result["error_list"][0])
    assert not pipeline.model.PoseEstimation & key


def test_training_task_without_project(pipeline, trained):
    train = pipeline.train
    key = {"video_set_id": 1, "paramset_idx": trained["paramset_idx"], "training_id": 99}
    train.TrainingTask.insert1(key)
    result = train.ModelTraining.populate(key, suppress_errors=True)
    assert "has no project_path" in str(result["error_list"][0])
    assert not train.ModelTraining & key
    (train.TrainingTask & key).delete(prompt=False)


def test_unreachable_database():
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJ_")}
    env.update(
        DJ_HOST="127.0.0.1",
        DJ_PORT="9",
        DJ_BACKEND="mysql",
        DJ_USER="someone",
        DJ_PASS="s3cret-pw",
        WORKFLOW_DLC_DATABASE="server",
    )
    proc = subprocess.run(
        [sys.executable, "-c", "import workflow_deeplabcut.pipeline"],
        capture_output=True,
        text=True,
        env=env,
        cwd=PROJECT_ROOT,
        timeout=120,
    )
    assert proc.returncode != 0
    assert (
        "DatabaseUnreachableError: Cannot connect to the mysql at 127.0.0.1:9 (user someone)" in proc.stderr
    )
    assert "s3cret-pw" not in proc.stderr + proc.stdout


def test_copied_project_trains_where_it_is(synthetic_project, raw_root):
    """relocate_project: a project copied elsewhere points at its new folder."""
    copy = raw_root / "copied-project"
    shutil.copytree(synthetic_project.parent, copy)
    dlc.relocate_project(copy / "config.yaml")
    assert dlc.read_config(copy)["project_path"] == str(copy)
    for cfg in copy.glob("dlc-models-pytorch/*/*/train/pytorch_config.yaml"):
        assert str(copy) in cfg.read_text() and str(synthetic_project.parent) + "/" not in cfg.read_text()
