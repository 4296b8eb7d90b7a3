"""3D with DeepLabCut in the loop (issue 15): one model trained on all views, run, triangulated.

The scene is workflow_deeplabcut.synthetic3d at 320×240 px (focal 375 px): three cameras about
520 mm from the arena centre, so one pixel is about 1.4 mm there. Training is DeepLabCut's own
(resnet10t backbone, random init, CPU, 128-px crops), on 24 labeled frames per view.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import FAST_TRAINING

from workflow_deeplabcut import synthetic3d

SCENE = synthetic3d.Scene(width=320, height=240, focal=375.0, n_board=40, n_frames=120)
CAMERAS = ["cam0", "cam1", "cam2"]


@pytest.fixture(scope="module")
def scene(raw_root):
    files = synthetic3d.write_scene(raw_root / "threed_dlc", SCENE)
    config = synthetic3d.make_dlc_project(
        raw_root / "threed_dlc" / "project", SCENE, files["body"], n_labeled=24
    )
    return files, config


def test_dlc_per_view_then_triangulation_within_3_mm(pipeline, scene, new_session, camera):
    from workflow_deeplabcut import processing
    from workflow_deeplabcut.settings import to_relative

    files, config = scene
    threed, model, train = pipeline.threed, pipeline.model, pipeline.train
    # Calibrate the rig from its board videos.
    threed.Rig.insert_rig("small", CAMERAS)
    threed.BoardParamSet.insert_new_params(20, **synthetic3d.BOARD)
    calib = threed.CalibrationSource.insert_board_videos(
        "small", 1, 20, dict(zip(CAMERAS, files["calibration"], strict=True))
    )
    # Train one DeepLabCut model on the labeled frames of every view.
    # Trained on 128-px crops around the labels (DeepLabCut's crop sampling): the 320x240
    # frames cost 4.7 times as much per epoch.
    params = FAST_TRAINING | {"epochs": 40}
    params["pytorch_cfg_updates"] = params["pytorch_cfg_updates"] | {
        "data.train.crop_sampling": {"width": 128, "height": 128, "max_shift": 0.1, "method": "hybrid"}
    }
    idx = train.TrainingParamSet.insert_new_params("3d views", params)
    train.VideoSet.insert1({"video_set_id": 30})
    labels = sorted(config.parent.glob("labeled-data/*/CollectedData_*.h5"))
    assert len(labels) == 3
    train.VideoSet.File.insert(
        [{"video_set_id": 30, "file_id": i, "file_path": to_relative(p)} for i, p in enumerate(labels)]
    )
    task = {"video_set_id": 30, "paramset_idx": idx, "training_id": 30}
    train.TrainingTask.insert1({**task, "project_path": to_relative(config.parent)})
    # Restricted to this test's rows: other tests leave tasks that fail on purpose.
    results = processing.run(["ModelTraining"], {"video_set_id": 30}, display_progress=False)
    results += processing.run(["Calibration"], {"rig_name": "small"}, display_progress=False)
    assert not [e for r in results for e in r.errors], [e for r in results for e in r.errors]
    model.Model.insert_new_model("views3d", config, shuffle=1, trainingsetindex=0, paramset_idx=idx)
    # One recording per camera, each analysed by DeepLabCut, then triangulated: one run.
    session_key = new_session("dlc3d")
    for i, video in enumerate(files["body"]):
        rec = model.VideoRecording.insert_recording(session_key, i, camera, [video])
        if i < 2:  # the third view's task is made by TriangulationTask.insert_task
            model.PoseEstimationTask.generate(rec, "views3d", task_mode="trigger")
    mv = threed.MultiViewRecording.insert_views(
        session_key, 1, "small", {c: i for i, c in enumerate(CAMERAS)}
    )
    threed.TriangulationTask.insert_task(mv, calib, "views3d", triangulation_paramset_idx=1)
    assert (model.PoseEstimationTask & {**session_key, "recording_id": 2}).fetch1("task_mode") == "trigger"
    (result,) = processing.run(
        ["PoseEstimation"], {"subject": session_key["subject"]}, display_progress=False
    )
    assert not result.errors, result.errors
    assert result.success == 4  # three views, then the 3D estimation in the same run
    key = {**session_key, "recording_id": 0, "model_name": "small-3d"}
    frame = model.PoseEstimation.get_trajectory(key)
    truth = synthetic3d.in_camera0(synthetic3d.body_truth(SCENE), synthetic3d.cameras(SCENE))
    errors = []
    for k, part in enumerate(synthetic3d.BODY_PARTS):
        xyz = (
            frame.xs(part, level="bodyparts", axis=1).droplevel("scorer", axis=1)[["x", "y", "z"]].to_numpy()
        )
        errors.append(np.linalg.norm(xyz - truth[:, k], axis=1))
    for i, cam in enumerate(synthetic3d.cameras(SCENE)):  # the 2D errors, for the log
        view = model.PoseEstimation.get_trajectory(
            {**session_key, "recording_id": i, "model_name": "views3d"}
        )
        px = np.stack(
            [
                view.xs(p, level="bodyparts", axis=1).droplevel("scorer", axis=1)[["x", "y"]].to_numpy()
                for p in synthetic3d.BODY_PARTS
            ],
            1,
        )
        error = np.linalg.norm(px - cam.project(synthetic3d.body_truth(SCENE)), axis=-1)
        print(f"{cam.name}: median 2D error {np.median(error):.2f} px")
    median = float(np.nanmedian(np.concatenate(errors)))
    print(f"median 3D error with DeepLabCut per view: {median:.2f} mm")
    assert median <= 3.0
    tri = (model.PoseEstimation.Triangulated & key).fetch1()
    assert tri["fraction_triangulated"] > 0.95 and tri["warning"] == ""
