"""3D from calibrated cameras (issue 15): rig, calibration, multi-view recordings, triangulation.

The scene is workflow_deeplabcut.synthetic3d: three 640×480 cameras about 520 mm from the
arena centre, a 7×5 ChArUco board of 40 mm squares, a three-point body on a 100 mm circle.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from workflow_deeplabcut import multiview, synthetic, synthetic3d

CAMERAS = ["cam0", "cam1", "cam2"]


@pytest.fixture(scope="module")
def scene_files(raw_root):
    return synthetic3d.write_scene(raw_root / "threed", synthetic3d.Scene())


@pytest.fixture(scope="module")
def calibrated(pipeline, scene_files):
    """The rig, its board and its calibration from the board videos (Calibration.populate)."""
    threed = pipeline.threed
    threed.Rig.insert_rig("rig3", CAMERAS, description="synthetic three-camera rig")
    board = synthetic3d.BOARD
    threed.BoardParamSet.insert_new_params(7, **board)
    key = threed.CalibrationSource.insert_board_videos(
        "rig3", 1, 7, dict(zip(CAMERAS, scene_files["calibration"], strict=True))
    )
    result = threed.Calibration.populate(key, suppress_errors=True)
    assert not result["error_list"], result["error_list"]
    return key


def test_calibration_recovers_each_camera(pipeline, calibrated):
    threed = pipeline.threed
    row = (threed.Calibration & calibrated).fetch1()
    assert row["reprojection_error"] <= 1.0
    assert row["reprojection_error"] < row["initial_error"]  # the bundle adjustment improved it
    assert row["unit"] == "mm" and row["warning"] == ""
    found = threed.Calibration.cameras(calibrated)
    true = synthetic3d.relative_cameras(synthetic3d.cameras())
    baseline = max(np.linalg.norm(a.center - b.center) for a in true for b in true)
    for cam, truth in zip(found, true, strict=True):
        angle = np.degrees(np.linalg.norm(cv2.Rodrigues(cam.R @ truth.R.T)[0]))
        assert angle <= 1.0, (cam.name, angle)
        assert np.linalg.norm(cam.center - truth.center) <= 0.01 * baseline, cam.name
        assert cam.reprojection_error <= 1.0
        assert abs(cam.K[0, 0] - truth.K[0, 0]) / truth.K[0, 0] < 0.01


def test_triangulating_true_points_with_noise(pipeline, calibrated):
    scene = synthetic3d.Scene()
    cams = pipeline.threed.Calibration.cameras(calibrated)
    truth = synthetic3d.in_camera0(synthetic3d.body_truth(scene), synthetic3d.cameras(scene))
    px = np.stack([c.project(synthetic3d.body_truth(scene)) for c in synthetic3d.cameras(scene)])
    noisy = px + np.random.default_rng(3).normal(0, 1.0, px.shape)
    likelihood = np.ones(px.shape[:3])
    for method in multiview.METHODS:
        tri = multiview.triangulate(noisy, likelihood, cams, method=method)
        error = np.linalg.norm(tri.points - truth, axis=-1)
        assert np.median(error) <= 1.0, (method, np.median(error))
        assert (tri.n_cameras == 3).all()
    # One view wrong by 40 px on a third of the points: RANSAC leaves it out, DLT cannot.
    wrong = noisy.copy()
    wrong[1, ::3, :, 0] += 40
    dlt = multiview.triangulate(wrong, likelihood, cams, method="dlt")
    ransac = multiview.triangulate(wrong, likelihood, cams, method="ransac")
    assert np.median(np.linalg.norm(dlt.points[::3] - truth[::3], axis=-1)) > 5
    assert np.median(np.linalg.norm(ransac.points[::3] - truth[::3], axis=-1)) <= 1.5
    assert (ransac.n_cameras[::3] == 2).all() and (ransac.n_cameras[1::3] == 3).all()
    # Below the likelihood threshold a view is not used; one view left is no point at all.
    low = likelihood.copy()
    low[1:, :10] = 0.1
    tri = multiview.triangulate(noisy, low, cams, likelihood_threshold=0.5)
    assert np.isnan(tri.points[:10]).all() and (tri.n_cameras[:10] == 1).all()
    assert (tri.likelihood[:10] == 0).all() and np.isfinite(tri.points[10:]).all()


def test_anipose_toml_round_trip(pipeline, calibrated, raw_root):
    threed = pipeline.threed
    path = threed.Calibration.export_anipose_toml(calibrated, raw_root / "threed" / "calibration.toml")
    key = threed.CalibrationSource.insert_anipose("rig3", 2, path)
    result = threed.Calibration.populate(key, suppress_errors=True)
    assert not result["error_list"], result["error_list"]
    for a, b in zip(threed.Calibration.cameras(calibrated), threed.Calibration.cameras(key), strict=True):
        np.testing.assert_allclose(a.K, b.K)
        np.testing.assert_allclose(a.rvec, b.rvec)
        np.testing.assert_allclose(a.tvec, b.tvec)
        np.testing.assert_allclose(a.dist, b.dist)


@pytest.fixture(scope="module")
def views(pipeline, new_session, camera, scene_files, raw_root):
    """A session with one recording per camera and an imported 2D estimate of each (truth + 1 px)."""
    from workflow_deeplabcut.imports import import_pose_file

    model = pipeline.model
    session_key = new_session("three")
    estimates = synthetic3d.view_estimates(synthetic3d.Scene(), noise_px=1.0)
    for i, (video, frame) in enumerate(zip(scene_files["body"], estimates, strict=True)):
        rec = model.VideoRecording.insert_recording(session_key, i, camera, [video])
        h5 = synthetic.write_dlc_h5(frame, raw_root / "threed" / f"body_cam{i}_2d.h5")
        import_pose_file(h5, "DeepLabCut", rec, "view2d")
    return session_key


@pytest.fixture(scope="module")
def triangulated(pipeline, calibrated, views):
    """The multi-view recording, its triangulation task, and the 3D estimation's key."""
    from workflow_deeplabcut import processing

    threed = pipeline.threed
    mv = threed.MultiViewRecording.insert_views(views, 1, "rig3", {c: i for i, c in enumerate(CAMERAS)})
    task = threed.TriangulationTask.insert_task(mv, calibrated, "view2d", triangulation_paramset_idx=0)
    assert (threed.TriangulationTask & task).fetch1("model_name") == "rig3-3d"
    # Restricted to this session: other tests leave tasks that fail on purpose.
    only = {"subject": views["subject"]}
    results = {r.table: r for r in processing.run(["PoseEstimation"], only, display_progress=False)}
    assert not results["PoseEstimation"].errors, results["PoseEstimation"].errors
    return {**views, "recording_id": 0, "model_name": "rig3-3d"}


def test_one_estimation_per_view_triangulated_as_a_pose_estimation(pipeline, triangulated):
    model = pipeline.model
    pose_key = triangulated
    info = model.PoseEstimation.info(pose_key)
    assert info["coords"] == ("x", "y", "z", "likelihood")
    assert info["body_parts"] == sorted(synthetic3d.BODY_PARTS)
    frame = model.PoseEstimation.get_trajectory(pose_key)
    scene = synthetic3d.Scene()
    truth = synthetic3d.in_camera0(synthetic3d.body_truth(scene), synthetic3d.cameras(scene))
    for k, part in enumerate(synthetic3d.BODY_PARTS):
        xyz = (
            frame.xs(part, level="bodyparts", axis=1).droplevel("scorer", axis=1)[["x", "y", "z"]].to_numpy()
        )
        assert np.median(np.linalg.norm(xyz - truth[:, k], axis=1)) <= 1.0, part
    tri = (model.PoseEstimation.Triangulated & pose_key).fetch1()
    assert tri["fraction_triangulated"] == 1.0 and tri["unit"] == "mm" and tri["warning"] == ""
    assert 0.3 < tri["median_reprojection_error"] < 1.5  # the 2D noise is 1 px
    assert (np.asarray(tri["n_cameras"]) == 3).all()


def test_a_3d_estimation_is_cleaned_measured_checked_and_exported(pipeline, triangulated, processed_root):
    from pynwb import NWBHDF5IO

    from workflow_deeplabcut import nwb, processing

    pp, qc, model = pipeline.postprocess, pipeline.qc, pipeline.model
    idx = pp.PostprocessParamSet.insert_new_params("3d median", {"smoothing": "median", "window": 5})
    task = pp.PostprocessTask.generate(triangulated, idx)
    tables = ["CleanedTrajectory", "Kinematics", "PoseQC", "QCPlots"]
    results = processing.run(tables, {"subject": triangulated["subject"]}, display_progress=False)
    assert not [e for r in results for e in r.errors], [e for r in results for e in r.errors]
    cleaned = pp.CleanedTrajectory.get_dataset(task)
    assert cleaned.attrs["space_unit"] == "mm" and list(cleaned.space.values) == ["x", "y", "z"]
    kin = pp.Kinematics.get_dataset(task)
    assert kin.attrs["space_unit"] == "mm" and kin.velocity.sizes["space"] == 3
    scene = synthetic3d.Scene()
    true_speed = 2 * np.pi * scene.radius / scene.period * scene.fps  # mm/s in the floor plane
    head = float(kin.speed.sel(keypoints="head").median())
    assert abs(head - true_speed) / true_speed < 0.05, (head, true_speed)
    assert set(pp.Kinematics.get_dataframe(task).columns.get_level_values("quantity")) >= {"velocity_z", "z"}
    row = (qc.PoseQC & triangulated).fetch1()
    assert row["fraction_below_pcutoff"] == 0 and row["n_jumps"] == 0
    pictures = qc.QCPlots.paths(triangulated)
    assert set(pictures) == {
        "trajectory_plot",
        "likelihood_plot",
        "likelihood_histogram",
        "reprojection_plot",
    }
    assert all(p.stat().st_size > 10_000 for p in pictures.values())
    # px_per_cm scales pixels: on millimetres it is refused, and nothing is written.
    bad = pp.PostprocessParamSet.insert_new_params("3d in cm?", {"px_per_cm": 10.0})
    pp.PostprocessTask.generate(triangulated, bad)
    result = pp.CleanedTrajectory.populate({**triangulated, "pp_paramset_idx": bad}, suppress_errors=True)
    assert "px_per_cm" in str(result["error_list"][0][1])
    assert not pp.CleanedTrajectory & {**triangulated, "pp_paramset_idx": bad}

    path = nwb.export_session(triangulated, processed_root / "nwb" / "three.nwb")
    stored = model.PoseEstimation.get_trajectory(triangulated)
    cams = pipeline.threed.Calibration.cameras({"rig_name": "rig3", "calibration_id": 1})
    with NWBHDF5IO(str(path), "r") as io:
        behavior = io.read().processing["behavior"]
        multi = behavior["rig3-3d_recording0"]
        assert type(multi).__name__ == "MultiCameraPoseEstimation"
        for part in synthetic3d.BODY_PARTS:
            series = multi.pose_estimation_series[part]
            assert series.unit == "millimeters"
            want = stored.xs(part, level="bodyparts", axis=1).droplevel("scorer", axis=1)
            np.testing.assert_array_equal(series.data[:], want[["x", "y", "z"]].to_numpy())
            np.testing.assert_array_equal(series.confidence[:], want["likelihood"].to_numpy())
        children = sorted(multi.pose_estimations)
        assert children == [f"{c}_view2d_recording{i}" for i, c in enumerate(CAMERAS)]
        for i, cam in enumerate(cams):
            device = multi.pose_estimations[children[i]].device
            assert type(device).__name__ == "CalibratedCamera"
            np.testing.assert_array_equal(device.intrinsic_matrix[:], cam.K)
            np.testing.assert_array_equal(device.rotation_matrix[:], cam.R)
        # The views are not repeated at the top level; the cleaned 3D trajectory is there.
        assert not [n for n in behavior.data_interfaces if n.startswith("view2d")]
        assert type(behavior[f"rig3-3d_recording0_postprocess{idx}"]).__name__ == "MultiCameraPoseEstimation"
    messages = nwb.inspect(path)
    print("nwbinspector:", [(m.importance.name, m.check_function_name, m.message) for m in messages])
    bad = ("CRITICAL", "PYNWB_VALIDATION", "BEST_PRACTICE_VIOLATION")
    # The fixture's subject has no species: that violation is the session's, not the 3D data's.
    assert not [
        m
        for m in messages
        if m.importance.name in bad and m.check_function_name != "check_subject_species_exists"
    ]


def test_anipose_3d_csv_imports_as_a_3d_estimation(pipeline, triangulated, views, raw_root):
    import pandas as pd

    from workflow_deeplabcut.imports import import_pose_file

    model = pipeline.model
    stored = model.PoseEstimation.get_trajectory(triangulated)
    tri = (model.PoseEstimation.Triangulated & triangulated).fetch1()
    error, ncams = np.asarray(tri["reprojection_error"]), np.asarray(tri["n_cameras"])
    parts = model.PoseEstimation.info(triangulated)["body_parts"]
    columns = {}
    for k, part in enumerate(parts):  # the slots are in body-part order here
        one = stored.xs(part, level="bodyparts", axis=1).droplevel("scorer", axis=1)
        for c in ("x", "y", "z"):
            columns[f"{part}_{c}"] = one[c].to_numpy()
        columns[f"{part}_error"] = error[:, k]
        columns[f"{part}_ncams"] = ncams[:, k]
        columns[f"{part}_score"] = one["likelihood"].to_numpy()
    # anipose's own bookkeeping columns (movement's loader requires them)
    columns["fnum"] = np.arange(len(stored))
    for i in range(3):
        columns[f"center_{i}"] = np.zeros(len(stored))
        for j in range(3):
            columns[f"M_{i}{j}"] = np.full(len(stored), float(i == j))
    csv = raw_root / "threed" / "anipose_3d.csv"
    pd.DataFrame(columns).to_csv(csv, index=False)
    key = import_pose_file(csv, "Anipose", {**views, "recording_id": 1}, "anipose3d")
    assert model.PoseEstimation.info(key)["coords"] == ("x", "y", "z", "likelihood")
    imported = model.PoseEstimation.get_trajectory(key)
    np.testing.assert_allclose(imported.to_numpy(), stored.to_numpy())
    got = (model.PoseEstimation.Triangulated & key).fetch1()
    np.testing.assert_allclose(np.asarray(got["reprojection_error"]), error, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(got["n_cameras"]), ncams)
    assert got["fraction_triangulated"] == 1.0 and got["unit"] == "mm"
    assert model.PoseEstimation.get_dataset(key).attrs["space_unit"] == "mm"


def test_bad_multiview_input_is_refused_and_writes_nothing(
    pipeline, calibrated, views, scene_files, camera, raw_root
):
    from workflow_deeplabcut.errors import InputError
    from workflow_deeplabcut.imports import import_pose_file

    threed, model = pipeline.threed, pipeline.model
    # Views of different lengths.
    frames = synthetic3d.render_body(synthetic3d.Scene())[2][:100]
    short = synthetic.write_video(raw_root / "threed" / "short_cam2.mp4", frames, 30.0)
    model.VideoRecording.insert_recording(views, 7, camera, [short])
    with pytest.raises(InputError, match="different numbers of frames"):
        threed.MultiViewRecording.insert_views(views, 5, "rig3", {"cam0": 0, "cam1": 1, "cam2": 7})
    # A camera that is not in the rig, and a single view.
    with pytest.raises(InputError, match="not in rig"):
        threed.MultiViewRecording.insert_views(views, 5, "rig3", {"cam0": 0, "top": 1})
    with pytest.raises(InputError, match="two or more views"):
        threed.MultiViewRecording.insert_views(views, 5, "rig3", {"cam0": 0})
    assert not threed.MultiViewRecording & {"multiview_id": 5}
    mv = threed.MultiViewRecording.insert_views(views, 6, "rig3", {"cam0": 0, "cam1": 1, "cam2": 2})
    # Views whose models have different body parts.
    estimate = synthetic3d.view_estimates(synthetic3d.Scene())[2].drop(columns="tail", level="bodyparts")
    h5 = synthetic.write_dlc_h5(estimate, raw_root / "threed" / "two_parts.h5")
    import_pose_file(h5, "DeepLabCut", {**views, "recording_id": 2}, "two-parts")
    models_before, tasks_before = len(model.Model()), len(model.PoseEstimationTask())
    with pytest.raises(InputError, match="different body parts"):
        threed.TriangulationTask.insert_task(
            mv, calibrated, {"cam0": "view2d", "cam1": "view2d", "cam2": "two-parts"}, model_name="mixed"
        )
    # A calibration of another rig.
    threed.Rig.insert_rig("pair", ["left", "right"])
    cams = threed.Calibration.cameras(calibrated)[:2]
    cams[0].name, cams[1].name = "left", "right"
    toml = threed.write_anipose_toml(cams, raw_root / "threed" / "pair.toml", 0.2)
    other = threed.CalibrationSource.insert_anipose("pair", 1, toml)
    threed.Calibration.populate(other)
    with pytest.raises(InputError, match="rig 'pair'"):
        threed.TriangulationTask.insert_task(mv, other, "view2d", model_name="wrong-rig")
    # ... and its toml offered for rig3.
    with pytest.raises(InputError, match="another rig"):
        threed.CalibrationSource.insert_anipose("rig3", 9, toml)
    assert len(model.Model()) == models_before and len(model.PoseEstimationTask()) == tasks_before
    assert not threed.TriangulationTask & mv and not threed.CalibrationSource & {"calibration_id": 9}


def test_a_board_never_detected_is_a_clear_error(pipeline, scene_files):
    threed = pipeline.threed
    wrong = dict(synthetic3d.BOARD, dictionary="DICT_5X5_50")  # not the board in the videos
    threed.BoardParamSet.insert_new_params(8, **wrong)
    key = threed.CalibrationSource.insert_board_videos(
        "rig3", 3, 8, dict(zip(CAMERAS, scene_files["calibration"], strict=True))
    )
    result = threed.Calibration.populate(key, suppress_errors=True)
    (message,) = [str(m) for _, m in result["error_list"]]
    assert "never detected" in message and "DICT_5X5_50" in message and "cam0" in message
    assert not threed.Calibration & key


def test_a_view_with_a_frame_offset_is_paired_by_its_offset(
    pipeline, calibrated, triangulated, camera, raw_root
):
    """cam2 started 10 frames early: with frame_offset 10 the 3D result is the same as in sync."""
    from workflow_deeplabcut import processing
    from workflow_deeplabcut.imports import import_pose_file

    threed, model = pipeline.threed, pipeline.model
    scene = synthetic3d.Scene()
    session_key = {k: triangulated[k] for k in ("subject", "session_datetime")}
    bodies = synthetic3d.render_body(scene)
    estimates = synthetic3d.view_estimates(scene, noise_px=1.0)
    early = synthetic.write_video(
        raw_root / "threed" / "early_cam2.mp4", np.concatenate([bodies[2][:10], bodies[2]]), scene.fps
    )
    rec = model.VideoRecording.insert_recording(session_key, 12, camera, [early])
    padded = estimates[2].iloc[np.r_[np.zeros(10, int), np.arange(scene.n_frames)]].reset_index(drop=True)
    padded.iloc[:10] = 5.0  # frames before the scene: junk that must not be used
    h5 = synthetic.write_dlc_h5(padded, raw_root / "threed" / "early_cam2_2d.h5")
    import_pose_file(h5, "DeepLabCut", rec, "view2d")
    with pytest.raises(Exception, match="different numbers of frames"):
        threed.MultiViewRecording.insert_views(session_key, 2, "rig3", {"cam0": 0, "cam1": 1, "cam2": 12})
    mv = threed.MultiViewRecording.insert_views(
        session_key, 2, "rig3", {"cam0": 0, "cam1": 1, "cam2": (12, 10)}
    )
    assert (threed.MultiViewRecording & mv).fetch1("nframes") == scene.n_frames
    threed.TriangulationTask.insert_task(mv, calibrated, "view2d", model_name="rig3-3d-offset")
    (result,) = processing.run(
        ["PoseEstimation"], {"subject": session_key["subject"]}, display_progress=False
    )
    assert not result.errors, result.errors
    offset = model.PoseEstimation.get_trajectory(
        {**session_key, "recording_id": 0, "model_name": "rig3-3d-offset"}
    )
    np.testing.assert_array_equal(
        offset.to_numpy(), model.PoseEstimation.get_trajectory(triangulated).to_numpy()
    )


def test_checkerboard_corners_are_found_where_they_are():
    board = multiview.check_board(
        {"board_type": "checkerboard", "squares_x": 8, "squares_y": 6, "square_length": 25.0}
    )
    square = 40  # px
    image = np.kron(
        (np.indices((6, 8)).sum(axis=0) % 2).astype(np.uint8) * 255, np.ones((square, square), np.uint8)
    )
    image = cv2.copyMakeBorder(image, 60, 60, 60, 60, cv2.BORDER_CONSTANT, value=255)
    tilt = np.array([[0.9, 0.12, 40.0], [-0.08, 0.85, 30.0], [0.0002, 0.0001, 1.0]])
    warped = cv2.warpPerspective(image, tilt, (640, 480), flags=cv2.INTER_AREA, borderValue=255)
    ids, px = multiview.detect_board(warped, board)
    corners = multiview.board_corners(board)  # board units; 25 mm = one 40 px square
    flat = corners[ids, :2] / 25.0 * square + 60 + square - 0.5  # the first inner corner, pixel centres
    expected = cv2.perspectiveTransform(flat.reshape(-1, 1, 2), tilt).reshape(-1, 2)
    # OpenCV orders the corners from either end; compare as sets of points.
    distance = np.linalg.norm(px[:, None] - expected[None], axis=-1).min(axis=1)
    assert len(ids) == 7 * 5 and distance.max() < 0.5
