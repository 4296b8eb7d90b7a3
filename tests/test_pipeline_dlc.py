"""End to end with real DeepLabCut on the synthetic video: train, register, evaluate, infer, load.

The synthetic geometry (workflow_deeplabcut.synthetic): two discs circling the frame centre
at a known speed; 20 frames labeled with the exact truth; 300 frames at 30 fps, 128x128.
"""

import re
import shutil

import numpy as np
import pytest
from conftest import FAST_TRAINING, TRAINED

from workflow_deeplabcut import dlc, synthetic
from workflow_deeplabcut.settings import find_full_path

pytestmark = pytest.mark.dlc


@pytest.fixture(scope="module")
def recording(pipeline, new_session, camera, synthetic_video):
    key = pipeline.model.VideoRecording.insert_recording(new_session("dlc"), 1, camera, [synthetic_video])
    pipeline.model.RecordingInfo.populate(key)
    return key


@pytest.fixture(scope="module")
def triggered(pipeline, recording, model_name):
    key = pipeline.model.PoseEstimationTask.generate(recording, model_name)
    result = pipeline.model.PoseEstimation.populate(key, suppress_errors=True)
    assert not result["error_list"], result["error_list"]
    return key


def test_training_really_trained(pipeline, trained, synthetic_project):
    row = (pipeline.train.ModelTraining & trained).fetch1()
    assert row["latest_snapshot"] == FAST_TRAINING["epochs"]
    snapshot = find_full_path(row["snapshot_path"])
    assert snapshot.name == f"snapshot-{FAST_TRAINING['epochs']:03d}.pt"
    # The project now points inference at the new snapshot.
    assert TRAINED["config_snapshotindex"] == row["snapshotindex"]
    cfg = dlc.read_config(synthetic_project)
    folder = dlc.model_folder(cfg, 1, 0)
    assert dlc.list_snapshots(folder)[row["snapshotindex"]] == snapshot
    # The parameters reached DeepLabCut: the backbone was swapped, weights started random.
    assert row["pytorch_config"]["model"]["backbone"]["model_name"] == "resnet10t"
    assert row["pytorch_config"]["train_settings"]["epochs"] == FAST_TRAINING["epochs"]
    assert (folder / "train" / "init-random-seed0.pt").exists()
    assert row["config_template"]["training_filelist_datajoint"]


def test_model_registration(pipeline, model_name, synthetic_project):
    model = pipeline.model
    row = (model.Model & {"model_name": model_name}).fetch1()
    cfg = dlc.read_config(synthetic_project)
    epochs = FAST_TRAINING["epochs"]
    assert re.fullmatch(
        rf"DLC_Resnet50_{cfg['Task']}{cfg['date']}shuffle1_snapshot_0*{epochs}", row["scorer"]
    )
    assert row["engine"] == "pytorch"
    assert (row["task"], row["shuffle"], row["trainingsetindex"]) == ("synthetic", 1, 0)
    assert not row["project_path"].startswith("/")
    parts = {r["body_part"] for r in (model.Model.BodyPart & {"model_name": model_name}).to_dicts()}
    assert parts == set(synthetic.BODY_PARTS)
    assert set(synthetic.BODY_PARTS) <= {k["body_part"] for k in model.BodyPart.keys()}


def test_evaluation(pipeline, model_name):
    model = pipeline.model
    model.ModelEvaluation.populate({"model_name": model_name})
    row = (model.ModelEvaluation & {"model_name": model_name}).fetch1()
    assert row["train_iterations"] == FAST_TRAINING["epochs"]
    assert 0 <= row["train_error"] < 5 and 0 <= row["test_error"] < 5
    assert row["p_cutoff"] == pytest.approx(
        dlc.read_config(find_full_path((model.Model & {"model_name": model_name}).fetch1("project_path")))[
            "pcutoff"
        ]
    )


def test_recording_info(pipeline, recording):
    info = (pipeline.model.RecordingInfo & recording).fetch1()
    spec = synthetic.SyntheticSpec()
    assert (info["px_width"], info["px_height"]) == (spec.size, spec.size)
    assert info["nframes"] == spec.n_frames
    assert info["fps"] == pytest.approx(spec.fps)
    assert info["recording_duration"] == pytest.approx(spec.n_frames / spec.fps)


def test_trigger_positions_match_truth(pipeline, triggered):
    model = pipeline.model
    truth = synthetic.ground_truth(synthetic.SyntheticSpec())
    traj = model.PoseEstimation.get_trajectory(triggered)
    assert traj.columns.names == ["scorer", "bodyparts", "coords"]
    assert len(traj) == len(truth)
    for part in synthetic.BODY_PARTS:
        err = np.hypot(
            traj[("synthetic", part, "x")] - truth[(part, "x")],
            traj[("synthetic", part, "y")] - truth[(part, "y")],
        )
        assert np.median(err) < 3, (part, np.median(err))
        assert traj[("synthetic", part, "likelihood")].median() > 0.3
    # The scorer registered for the model is the one DeepLabCut wrote into its outputs.
    scorer = (model.PoseEstimation & triggered).fetch1("scorer")
    assert scorer == (model.Model & triggered).fetch1("scorer")
    rows = (model.PoseEstimation.BodyPartPosition & triggered).to_dicts()
    assert len(rows) == len(synthetic.BODY_PARTS)
    assert {r["individual"] for r in rows} == {dlc.SINGLE_INDIVIDUAL}
    head = model.PoseEstimation.get_trajectory(triggered, body_parts=["head"])
    assert list(head.columns.get_level_values("bodyparts").unique()) == ["head"]


def test_trigger_reuses_unchanged_outputs(pipeline, triggered):
    model = pipeline.model
    out_dir = model.PoseEstimationTask.output_dir(triggered)
    (h5,) = dlc.find_outputs(out_dir, ["synthetic"])
    stamp = h5.stat().st_mtime_ns
    before = model.PoseEstimation.get_trajectory(triggered)
    (model.PoseEstimation & triggered).delete(prompt=False)
    model.PoseEstimation.populate(triggered)
    assert h5.stat().st_mtime_ns == stamp  # DeepLabCut did not run again
    after = model.PoseEstimation.get_trajectory(triggered)
    np.testing.assert_array_equal(before.to_numpy(), after.to_numpy())


def test_load_mode_imports_existing_outputs(pipeline, triggered, camera, synthetic_video, model_name):
    model = pipeline.model
    second = model.VideoRecording.insert_recording(
        {k: triggered[k] for k in ("subject", "session_datetime")}, 2, camera, [synthetic_video]
    )
    model.RecordingInfo.populate(second)
    target = model.PoseEstimationTask.infer_output_dir({**second, "model_name": model_name}, mkdir=True)
    source = model.PoseEstimationTask.output_dir(triggered)
    for f in source.glob("synthetic*"):
        shutil.copy2(f, target / f.name)
    key = model.PoseEstimationTask.generate(second, model_name)
    assert (model.PoseEstimationTask & key).fetch1("task_mode") == "load"
    model.PoseEstimation.populate(key)
    loaded = model.PoseEstimation.get_trajectory(key)
    original = model.PoseEstimation.get_trajectory(triggered)
    np.testing.assert_array_equal(loaded.to_numpy(), original.to_numpy())
    # With two estimations stored, a key must name one.
    with pytest.raises(ValueError, match="matches 2 pose estimations"):
        model.PoseEstimation.get_trajectory({"model_name": model_name, "subject": key["subject"]})


def test_trigger_uses_the_models_snapshot(pipeline, recording, model_name, synthetic_project):
    """A model pinned to an earlier snapshot runs that snapshot; config.yaml is not edited."""
    model = pipeline.model
    before = synthetic_project.read_text()
    model.Model.insert_new_model(
        "synthetic-epoch20",
        synthetic_project,
        shuffle=1,
        trainingsetindex=0,
        params={"snapshotindex": 1},  # test_ingest pins 0
    )
    assert (model.Model & {"model_name": "synthetic-epoch20"}).fetch1("scorer").endswith("_snapshot_20")
    key = model.PoseEstimationTask.generate(recording, "synthetic-epoch20", task_mode="trigger")
    result = model.PoseEstimation.populate(key, suppress_errors=True)
    assert not result["error_list"], result["error_list"]
    assert (model.PoseEstimation & key).fetch1("scorer").endswith("_snapshot_20")
    assert synthetic_project.read_text() == before


def test_kinematics_of_real_inference_match_truth(pipeline, triggered):
    """Speed from DeepLabCut's own estimate, cleaned and differentiated, is the true speed."""
    pp = pipeline.postprocess
    spec = synthetic.SyntheticSpec()
    idx = pp.PostprocessParamSet.insert_new_params(
        "savgol 9, heading tail -> head",
        {"smoothing": "savgol", "window": 9, "heading_body_parts": ["tail", "head"]},
    )
    key = pp.PostprocessTask.generate(triggered, idx)
    pp.CleanedTrajectory.populate(key)
    pp.Kinematics.populate(key)
    kin = pp.Kinematics.get_dataset(key)
    assert kin.attrs == {"space_unit": "px", "time_unit": "s"}
    for part in synthetic.BODY_PARTS:
        speed = float(kin.speed.sel(keypoints=part).median()) / spec.fps  # px per frame
        assert speed == pytest.approx(spec.speed, rel=0.05), part
    heading = kin.heading.sel(individuals=dlc.SINGLE_INDIVIDUAL).values
    truth = 2 * np.pi * np.arange(spec.n_frames) / spec.period
    assert np.nanmedian(np.abs(np.angle(np.exp(1j * (heading - truth))))) < 0.1
