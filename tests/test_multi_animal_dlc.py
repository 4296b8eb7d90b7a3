"""Multi-animal DeepLabCut end to end: train, register, evaluate, track, with real DeepLabCut.

Backend-independent (DeepLabCut's side), so it runs in the embedded run only; the tables around
tracks (who is who, identity QC, social measures, NWB) are in test_multi_animal.py, on every
backend.

The synthetic geometry (workflow_deeplabcut.synthetic.MultiAnimalSpec): two look-alike animals
(head, body, tail discs) on intersecting circles, turning opposite ways, 300 frames at 30 fps,
160x160; 30 frames labeled with the exact truth. Only motion tells the animals apart.
"""

import numpy as np
import pandas as pd
import pytest

from workflow_deeplabcut import dlc, synthetic
from workflow_deeplabcut.demo import MULTI_ANIMAL_TRACKER, MULTI_ANIMAL_TRAINING
from workflow_deeplabcut.errors import InputError

pytestmark = pytest.mark.dlc

SPEC = synthetic.MultiAnimalSpec()
#: Bottom-up with part-affinity fields on a small backbone; 60 epochs (~100 s on 2 cores).
MULTI_TRAINING = MULTI_ANIMAL_TRAINING
BOX_TRACKER = MULTI_ANIMAL_TRACKER


@pytest.fixture(scope="module")
def ma_project(raw_root):
    return synthetic.make_multi_animal_project(raw_root / "multi", SPEC)


@pytest.fixture(scope="module")
def ma_model(pipeline, ma_project):
    """Train the project through train.ModelTraining and register it as 'pair'."""
    from workflow_deeplabcut.settings import to_relative

    train = pipeline.train
    idx = train.TrainingParamSet.insert_new_params("multi-animal fast", MULTI_TRAINING)
    labels = sorted(ma_project.parent.glob("labeled-data/*/CollectedData_*.h5"))
    train.VideoSet.insert1({"video_set_id": 910})
    train.VideoSet.File.insert([{"video_set_id": 910, "file_id": 0, "file_path": to_relative(labels[0])}])
    key = {"video_set_id": 910, "paramset_idx": idx, "training_id": 910}
    train.TrainingTask.insert1({**key, "project_path": to_relative(ma_project.parent)})
    result = train.ModelTraining.populate(key, suppress_errors=True)
    assert not result["error_list"], result["error_list"]
    pipeline.model.Model.insert_new_model("pair", ma_project, shuffle=1, trainingsetindex=0, paramset_idx=idx)
    return "pair"


@pytest.fixture(scope="module")
def ma_recording(pipeline, new_session, camera, ma_project):
    video = ma_project.parent / "videos" / "pair.mp4"
    key = pipeline.model.VideoRecording.insert_recording(new_session("pair"), 1, camera, [video])
    pipeline.model.RecordingInfo.populate(key)
    return key


@pytest.fixture(scope="module")
def tracked(pipeline, ma_model, ma_recording):
    model = pipeline.model
    key = model.PoseEstimationTask.generate(
        ma_recording, ma_model, task_mode="trigger", analyze_videos_params=BOX_TRACKER
    )
    result = model.PoseEstimation.populate(key, suppress_errors=True)
    assert not result["error_list"], result["error_list"]
    return key


def tracks(pipeline, key) -> np.ndarray:
    """The estimation as (frames, individuals, parts, x/y/likelihood), in the model's order."""
    traj = pipeline.model.PoseEstimation.get_trajectory(key)
    names = list(traj.columns.get_level_values("individuals").unique())
    out = np.stack(
        [
            np.stack(
                [
                    traj.xs((ind, part), axis=1, level=(1, 2)).to_numpy()
                    for part in synthetic.MULTI_BODY_PARTS
                ],
                1,
            )
            for ind in names
        ],
        1,
    )
    return out, names


def truth_array() -> np.ndarray:
    truth = synthetic.multi_animal_truth(SPEC)
    return truth.to_numpy().reshape(SPEC.n_frames, SPEC.n_animals, len(synthetic.MULTI_BODY_PARTS), 2)


def test_model_knows_its_individuals(pipeline, ma_model, ma_project):
    model = pipeline.model
    assert model.Model.individuals({"model_name": ma_model}) == SPEC.individuals
    assert not model.Model.UniqueBodyPart & {"model_name": ma_model}
    parts = {r["body_part"] for r in (model.Model.BodyPart & {"model_name": ma_model}).to_dicts()}
    assert parts == set(synthetic.MULTI_BODY_PARTS)
    row = (pipeline.train.ModelTraining & {"training_id": 910}).fetch1()
    cfg = row["pytorch_config"]
    assert cfg["method"] == "bu" and cfg["model"]["heads"]["bodypart"]["type"] == "DLCRNetHead"
    assert cfg["model"]["backbone"]["model_name"] == "resnet10t"
    assert cfg["metadata"]["individuals"] == SPEC.individuals


def test_evaluation_equals_deeplabcuts_file(pipeline, ma_model, ma_project):
    model = pipeline.model
    model.ModelEvaluation.populate({"model_name": ma_model})
    row = (model.ModelEvaluation & {"model_name": ma_model}).fetch1()
    metrics = (model.ModelEvaluation.Metrics & {"model_name": ma_model}).fetch1()
    files = sorted((ma_project.parent / "evaluation-results-pytorch" / "iteration-0").glob("*-results.csv"))
    table = pd.read_csv(files[-1])
    table.columns = [c.strip() for c in table.columns]
    dlc_row = table[table["Training epochs"] == MULTI_TRAINING["epochs"]].iloc[-1]
    assert row["train_error"] == dlc_row["train rmse"] and row["test_error"] == dlc_row["test rmse"]
    assert row["test_error_p"] == dlc_row["test rmse_pcutoff"]
    assert (metrics["train_map"], metrics["test_map"]) == (dlc_row["train mAP"], dlc_row["test mAP"])
    assert (metrics["train_mar"], metrics["test_mar"]) == (dlc_row["train mAR"], dlc_row["test mAR"])
    assert row["train_error"] < 5 and metrics["train_map"] > 0


def test_tracks_match_the_truth(pipeline, tracked):
    model = pipeline.model
    task = (model.PoseEstimationTask & tracked).fetch1("pose_estimation_params")
    # The tracker and every value it used are recorded on the task.
    assert task["track_method"] == "box" and task["n_tracks"] == 2 and task["min_length"] == 10
    assert task["tracker"]["max_age"] == 5 and task["tracker"]["boundingboxslack"] == 20
    assert "pcutoff" in task["tracker"] and "topktoretain" in task["tracker"]
    rows = (model.PoseEstimation.BodyPartPosition & tracked).to_dicts()
    assert {(r["individual"], r["body_part"]) for r in rows} == {
        (i, p) for i in SPEC.individuals for p in synthetic.MULTI_BODY_PARTS
    }
    out_dir = model.PoseEstimationTask.output_dir(tracked)
    assert [p.name.endswith("_bx.h5") for p in out_dir.glob("*.h5")] == [True]
    est, names = tracks(pipeline, tracked)
    truth = truth_array()
    apart = synthetic.apart_frames(SPEC)
    # Which track is which animal: the pairing with the smaller median error.
    err = np.hypot(*(est[:, :, None, :, :2] - truth[:, None, :, :, :]).transpose(4, 0, 1, 2, 3))
    per_pair = np.nanmedian(err[apart].mean(axis=-1), axis=0)  # (track, animal)
    pairing = [0, 1] if per_pair[0, 0] + per_pair[1, 1] <= per_pair[0, 1] + per_pair[1, 0] else [1, 0]
    for track, animal in enumerate(pairing):
        e = err[apart, track, animal]
        assert np.nanmedian(e) <= 3, (names[track], np.nanmedian(e))
        assert np.isfinite(e).mean() > 0.8  # present in most frames where the animals are apart


def test_tracking_params_are_checked(pipeline, ma_model, ma_recording, model_name):
    model = pipeline.model
    with pytest.raises(InputError, match="single-animal"):
        model.PoseEstimationTask.generate(
            ma_recording, model_name, task_mode="trigger", analyze_videos_params={"n_tracks": 2}
        )
    with pytest.raises(dlc.DLCConfigError, match="n_tracks must be a whole number from 1 to 2"):
        model.PoseEstimationTask.generate(
            ma_recording, ma_model, task_mode="trigger", analyze_videos_params={"n_tracks": 3}
        )
    with pytest.raises(dlc.DLCConfigError, match="track_method must be one of"):
        model.PoseEstimationTask.generate(
            ma_recording, ma_model, task_mode="trigger", analyze_videos_params={"track_method": "kalman"}
        )
    with pytest.raises(dlc.DLCConfigError, match="inference_cfg.yaml values"):
        model.PoseEstimationTask.generate(
            ma_recording, ma_model, task_mode="trigger", analyze_videos_params={"tracker": {"maxage": 5}}
        )
    with pytest.raises(dlc.DLCConfigError, match="auto_track: False"):
        model.PoseEstimationTask.generate(
            ma_recording, ma_model, task_mode="trigger", analyze_videos_params={"auto_track": False}
        )
    assert not model.PoseEstimationTask & {"model_name": ma_model, "recording_id": 2}


def test_empty_tracklets_are_a_clear_error(pipeline, ma_model, ma_recording, camera, ma_project):
    """The ellipse tracker on three-point animals makes no tracklet: an error on the task, nothing written."""
    model = pipeline.model
    second = model.VideoRecording.insert_recording(
        {k: ma_recording[k] for k in ("subject", "session_datetime")},
        2,
        camera,
        [ma_project.parent / "videos" / "pair.mp4"],
    )
    model.RecordingInfo.populate(second)
    key = model.PoseEstimationTask.generate(
        second, ma_model, task_mode="trigger", analyze_videos_params={"track_method": "ellipse"}
    )
    assert (model.PoseEstimationTask & key).fetch1("pose_estimation_params")["n_tracks"] == 2
    result = model.PoseEstimation.populate(key, suppress_errors=True)
    (error,) = result["error_list"]
    message = str(error[1]) if isinstance(error, tuple) else str(error)
    assert "made no tracklet" in message and "'track_method': 'box'" in message
    assert not model.PoseEstimation & key
    out_dir = model.PoseEstimationTask.output_dir(key)
    assert not out_dir.exists() or not any(out_dir.iterdir())
    (model.PoseEstimationTask & key).delete(prompt=False)
    (model.VideoRecording & second).delete(prompt=False)


def test_dlcrnet_backbone_override_is_refused(pipeline, ma_project):
    """DLCRNet's heads read its own backbone's stages: a timm override is refused, the project unchanged."""
    project = ma_project.parent
    before = {p: p.read_bytes() for p in project.rglob("*") if p.is_file()}
    params = {**MULTI_TRAINING, "net_type": "dlcrnet_stride16_ms5"}
    with pytest.raises(dlc.DLCConfigError, match="cannot replace dlcrnet_stride16_ms5's DLCRNet backbone"):
        dlc.train(ma_project, shuffle=7, trainingsetindex=0, params=params)
    after = {p: p.read_bytes() for p in project.rglob("*") if p.is_file()}
    assert after.keys() == before.keys() and all(after[p] == before[p] for p in before)


def test_tracked_identity(pipeline, tracked):
    """After tracking the crossing video: at most two swaps, by our QC and against the truth."""
    qc = pipeline.qc
    qc.IdentityQC.populate(tracked)
    row = (qc.IdentityQC & tracked & {"identity_paramset_idx": 0}).fetch1()
    assert row["n_individuals"] == 2 and row["n_swaps"] <= 2, row
    est, _ = tracks(pipeline, tracked)
    truth = truth_array()
    centroid = np.nanmean(est[..., :2], axis=2)  # (frames, tracks, 2)
    true_centroid = truth.mean(axis=2)
    d = np.linalg.norm(centroid[:, :, None] - true_centroid[:, None], axis=-1)  # (frames, track, animal)
    # Track 0's animal, on frames where the animals are apart (close by, "nearest" is ambiguous).
    who = np.where(np.isfinite(d[:, 0]).all(-1), np.argmin(d[:, 0], axis=-1), -1)
    known = who[(who >= 0) & synthetic.apart_frames(SPEC)]
    truth_swaps = int(np.count_nonzero(known[1:] != known[:-1]))
    print(
        "tracked: IdentityQC swaps",
        row["n_swaps"],
        "truth swaps",
        truth_swaps,
        "coverage",
        row["min_coverage"],
    )
    assert truth_swaps <= 2
