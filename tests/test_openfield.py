"""The real DeepLabCut example project (../shared/data/openfield-Pranav-2018-10-30).

116 labeled 640x480 frames of a mouse in an open field (snout, ears, tail base) and a
2,330-frame video of another session. Training here is deliberately brief (CPU), so the tests
check the plumbing and real-data handling, not accuracy (that is checked on the synthetic video).
"""

import shutil
import stat

import numpy as np
import pytest
from conftest import FAST_TRAINING

from workflow_deeplabcut import dlc, synthetic, video
from workflow_deeplabcut.settings import to_relative

pytestmark = [pytest.mark.dlc, pytest.mark.openfield]

CLIP_FRAMES = 45
BODY_PARTS = {"snout", "leftear", "rightear", "tailbase"}


def _make_writable(root):
    for path in [root, *root.rglob("*")]:
        path.chmod(path.stat().st_mode | stat.S_IWUSR)


def _clip(source, target, n):
    """Write the first ``n`` frames of a video to ``target`` (re-encoded, same size and rate)."""
    import av

    with av.open(str(source)) as src:
        stream = src.streams.video[0]
        frames = []
        for frame in src.decode(stream):
            frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) == n:
                break
        fps = float(stream.average_rate)
    return synthetic.write_video(target, np.stack(frames), fps)


@pytest.fixture(scope="module")
def project(openfield_source, raw_root):
    """A writable copy of the example under the raw root, listing its labeled video."""
    target = raw_root / "openfield" / openfield_source.name
    shutil.copytree(openfield_source, target)
    _make_writable(target)
    dlc.edit_config(target, {"video_sets": {str(target / "videos" / "m4s1.mp4"): {"crop": "0, 640, 0, 480"}}})
    _clip(target / "videos" / "m3v1mp4.mp4", target / "videos" / "m3v1clip.mp4", CLIP_FRAMES)
    return target


@pytest.fixture(scope="module")
def trained_openfield(pipeline, project):
    train = pipeline.train
    params = {**FAST_TRAINING, "epochs": 1, "save_epochs": 1, "batch_size": 8}
    idx = train.TrainingParamSet.insert_new_params("openfield, one epoch", params)
    train.VideoSet.insert1({"video_set_id": 2})
    train.VideoSet.File.insert1(
        {
            "video_set_id": 2,
            "file_id": 0,
            "file_path": to_relative(project / "labeled-data" / "m4s1" / "CollectedData_Pranav.h5"),
        }
    )
    key = {"video_set_id": 2, "paramset_idx": idx, "training_id": 1}
    train.TrainingTask.insert1({**key, "project_path": to_relative(project)})
    result = train.ModelTraining.populate(key, suppress_errors=True)
    assert not result["error_list"], result["error_list"]
    pipeline.model.Model.insert_new_model(
        "openfield",
        project,
        shuffle=1,
        trainingsetindex=0,
        paramset_idx=idx,
    )
    return key


def test_full_video_properties(openfield_source):
    info = video.probe(openfield_source / "videos" / "m3v1mp4.mp4")
    assert (info.width, info.height, info.nframes) == (640, 480, 2330)
    assert info.fps == pytest.approx(30.0, abs=1e-3)  # the file says 1000000/33333


def test_train_register_evaluate(pipeline, project, trained_openfield):
    row = (pipeline.train.ModelTraining & trained_openfield).fetch1()
    assert row["latest_snapshot"] == 1
    assert dlc.read_config(project)["project_path"] == str(project)  # placeholder rewritten
    model = (pipeline.model.Model & {"model_name": "openfield"}).fetch1()
    assert model["task"] == "openfield" and model["date"] == "Oct30"
    assert model["scorer"].startswith("DLC_Resnet50_openfieldOct30shuffle1_snapshot_")
    parts = {r["body_part"] for r in (pipeline.model.Model.BodyPart & {"model_name": "openfield"}).to_dicts()}
    assert parts == BODY_PARTS
    pipeline.model.ModelEvaluation.populate({"model_name": "openfield"})
    ev = (pipeline.model.ModelEvaluation & {"model_name": "openfield"}).fetch1()
    assert ev["train_iterations"] == 1
    assert np.isfinite(ev["train_error"]) and ev["train_error"] > 0


@pytest.fixture(scope="module")
def inferred(pipeline, project, trained_openfield, new_session, camera):
    """Trigger-mode inference of the trained model on the 45-frame clip."""
    model = pipeline.model
    clip = project / "videos" / "m3v1clip.mp4"
    rec = model.VideoRecording.insert_recording(new_session("of"), 1, camera, [clip])
    model.RecordingInfo.populate(rec)
    key = model.PoseEstimationTask.generate(rec, "openfield", task_mode="trigger")
    result = model.PoseEstimation.populate(key, suppress_errors=True)
    assert not result["error_list"], result["error_list"]
    return key


def test_inference_then_load(pipeline, project, inferred, camera):
    model = pipeline.model
    clip = project / "videos" / "m3v1clip.mp4"
    key = inferred
    session_key = {k: key[k] for k in ("subject", "session_datetime")}
    info = (model.RecordingInfo & key).fetch1()
    assert (info["px_width"], info["px_height"], info["nframes"]) == (640, 480, CLIP_FRAMES)
    traj = model.PoseEstimation.get_trajectory(key)
    assert traj.shape == (CLIP_FRAMES, 3 * len(BODY_PARTS))
    assert set(traj.columns.get_level_values("bodyparts")) == BODY_PARTS
    xy = traj.xs("x", axis=1, level="coords").to_numpy()
    assert np.isfinite(xy).all() and (xy >= -50).all() and (xy <= 690).all()

    # The same outputs, put in another recording's folder, enter in load mode.
    second = model.VideoRecording.insert_recording(session_key, 2, camera, [clip])
    model.RecordingInfo.populate(second)
    folder = model.PoseEstimationTask.infer_output_dir({**second, "model_name": "openfield"}, mkdir=True)
    for f in model.PoseEstimationTask.output_dir(key).glob("m3v1clip*"):
        shutil.copy2(f, folder / f.name)
    loaded_key = model.PoseEstimationTask.generate(second, "openfield")
    assert (model.PoseEstimationTask & loaded_key).fetch1("task_mode") == "load"
    model.PoseEstimation.populate(loaded_key)
    np.testing.assert_array_equal(model.PoseEstimation.get_trajectory(loaded_key).to_numpy(), traj.to_numpy())


def test_pipeline_engine_equals_analyze_videos(pipeline, project, inferred, tmp_path):
    """The pipeline ran our engine; DeepLabCut's analyze_videos gives the same file on this clip."""
    import deeplabcut
    import pandas as pd

    out = pipeline.model.PoseEstimationTask.output_dir(inferred)
    assert '"engine": "workflow"' in (out / dlc.RUN_RECORD).read_text()
    snapshotindex = (pipeline.model.Model & {"model_name": "openfield"}).fetch1("snapshotindex")
    clip = project / "videos" / "m3v1clip.mp4"
    deeplabcut.analyze_videos(
        str(project / "config.yaml"),
        [str(clip)],
        shuffle=1,
        destfolder=str(tmp_path),
        snapshot_index=snapshotindex,
        device="cpu",
        batch_size=8,
    )
    [theirs] = list(tmp_path.glob("m3v1clip*.h5"))
    [ours] = dlc.find_outputs(out, ["m3v1clip"])
    assert ours.name == theirs.name
    a, b = pd.read_hdf(theirs), pd.read_hdf(ours)
    assert a.columns.equals(b.columns) and a.index.equals(b.index)
    # Our default CPU layout (channels-last) sums in another order: float32 rounding only.
    xy = a.columns.get_level_values("coords") != "likelihood"
    diff = np.abs(a.to_numpy(np.float64) - b.to_numpy(np.float64))
    assert diff[:, xy].max() <= 0.01 and diff[:, ~xy].max() <= 1e-4, (diff[:, xy].max(), diff[:, ~xy].max())


def test_postprocess_qc_and_nwb_on_real_output(pipeline, project, inferred, processed_root):
    """The real 640x480 output through the rest of the pipeline, driven by processing.run."""
    from pynwb import NWBHDF5IO

    from workflow_deeplabcut import nwb, plots, processing

    pp, qc = pipeline.postprocess, pipeline.qc
    idx = pp.PostprocessParamSet.insert_new_params(
        "openfield: median 5, heading tailbase -> snout",
        {"likelihood_threshold": 0.4, "smoothing": "median", "heading_body_parts": ["tailbase", "snout"]},
    )
    pp.PostprocessTask.generate(inferred, idx)
    qc.LabeledVideoTask.insert1({**inferred, "labeled_video_idx": 0})
    results = processing.run(restriction=inferred, display_progress=False)
    assert not [r for r in results if r.errors], [(r.table, r.errors) for r in results if r.errors]
    done = {r.table: r.success for r in results}
    for table in ("CleanedTrajectory", "Kinematics", "PoseQC", "QCPlots", "LabeledVideo"):
        assert done[table] == 1, (table, done)

    rows = (pp.CleanedTrajectory.BodyPart & inferred).to_dicts()
    assert {r["body_part"] for r in rows} == BODY_PARTS
    for r in rows:  # every point is accounted for
        assert 0 <= r["n_missing"] <= CLIP_FRAMES
    kin = pp.Kinematics.get_dataset(inferred)
    assert kin.attrs == {"space_unit": "px", "time_unit": "s"}
    assert kin.speed.shape == (CLIP_FRAMES, len(BODY_PARTS), 1)
    metrics = (qc.PoseQC.BodyPart & inferred).to_dicts()
    assert len(metrics) == len(BODY_PARTS)
    assert all(0 <= m["fraction_below_pcutoff"] <= 1 for m in metrics)
    from PIL import Image

    for path in qc.QCPlots.paths(inferred).values():
        with Image.open(path) as image:
            assert image.size == plots.PICTURE_SIZE
    labeled = video.probe(qc.LabeledVideo.path(inferred))
    assert (labeled.width, labeled.height, labeled.nframes) == (640, 480, CLIP_FRAMES)

    session_key = {k: inferred[k] for k in ("subject", "session_datetime")}
    path = nwb.export_session(session_key, processed_root / "nwb" / "openfield.nwb", training_labels=True)
    with NWBHDF5IO(str(path), "r") as io:
        f = io.read()
        pe = f.processing["behavior"]["openfield_recording1"]
        assert set(pe.pose_estimation_series) == BODY_PARTS
        assert pe.pose_estimation_series["snout"].data.shape == (CLIP_FRAMES, 2)
        assert f"openfield_recording1_postprocess{idx}" in f.processing["behavior"].data_interfaces
        frames = f.processing["behavior"]["PoseTraining_openfield"].training_frames.training_frames
        assert len(frames) == 116
    assert not [m for m in nwb.inspect(path) if m.importance.name == "CRITICAL"]
