"""Post-processing and kinematics (schema ``postprocess``) on an estimate with known defects.

The estimate (see ``noisy`` in conftest) is the synthetic truth plus 1 px noise, 20 isolated
low-likelihood frames and one 15-frame gap per body part, and one confident 60 px jump of the
head; both parts circle the frame centre half a turn apart at a known speed.
"""

import numpy as np
import pytest

from workflow_deeplabcut import poses, synthetic
from workflow_deeplabcut.errors import InputError
from workflow_deeplabcut.rows import load_array

PX_PER_CM = 10.0
PARAMS = {
    "likelihood_threshold": 0.6,
    "max_gap": 10,
    "smoothing": "savgol",
    "window": 7,
    "polyorder": 2,
    "px_per_cm": PX_PER_CM,
    "heading_body_parts": ["tail", "head"],
}


@pytest.fixture(scope="module")
def cleaned(pipeline, noisy):
    pp = pipeline.postprocess
    idx = pp.PostprocessParamSet.insert_new_params("savgol 7, cm", PARAMS)
    key = pp.PostprocessTask.generate(noisy["key"], idx)
    for table in (pp.CleanedTrajectory, pp.Kinematics):
        result = table.populate(key, suppress_errors=True)
        assert not result["error_list"], result["error_list"]
    return key


def _truth(spec):
    return synthetic.ground_truth(spec)


def test_counts_of_each_cleaning_step(pipeline, noisy, cleaned):
    corruption = noisy["corruption"]
    rows = {r["body_part"]: r for r in (pipeline.postprocess.CleanedTrajectory.BodyPart & cleaned).to_dicts()}
    assert set(rows) == set(synthetic.BODY_PARTS)
    for part, row in rows.items():
        n_low = len(corruption.low_frames[part])
        assert row["n_low_likelihood"] == n_low
        # Every isolated frame is filled; the 15-frame gap is longer than max_gap (10) and stays.
        assert row["n_interpolated"] == n_low - len(corruption.long_gap)
        assert row["n_missing"] == len(corruption.long_gap) + row["n_smoothing_removed"]
        x = load_array(row["x_pos"])
        assert np.isnan(x[list(corruption.long_gap)]).all()
    master = (pipeline.postprocess.CleanedTrajectory & cleaned).fetch1()
    assert master["space_unit"] == "cm" and master["fps"] == pytest.approx(30.0)


def test_cleaned_is_closer_to_truth_than_raw(pipeline, noisy, cleaned):
    truth = _truth(noisy["spec"])
    frame = noisy["frame"]
    ds = pipeline.postprocess.CleanedTrajectory.get_dataset(cleaned)
    assert ds.attrs["space_unit"] == "cm"
    for part in synthetic.BODY_PARTS:
        raw_err = np.hypot(frame[(part, "x")] - truth[(part, "x")], frame[(part, "y")] - truth[(part, "y")])
        pos = ds.position.sel(keypoints=part, individuals="individual_0") * PX_PER_CM
        err = np.hypot(
            pos.sel(space="x").values - truth[(part, "x")], pos.sel(space="y").values - truth[(part, "y")]
        )
        seen = np.isfinite(err)
        # The confident jump is not a cleaning target (QC counts it); leave its window out.
        jump = noisy["corruption"].jump_frame
        seen[jump - PARAMS["window"] : jump + PARAMS["window"] + 1] = False
        raw_rmse = np.sqrt(np.mean(raw_err[seen] ** 2))
        rmse = np.sqrt(np.mean(err[seen] ** 2))
        assert rmse < 0.6 * raw_rmse, (part, rmse, raw_rmse)
        assert rmse < noisy["corruption"].noise_px * 1.5, (part, rmse)


def test_speed_distance_and_heading_match_truth(pipeline, noisy, cleaned):
    spec = noisy["spec"]
    kin = pipeline.postprocess.Kinematics.get_dataset(cleaned)
    assert kin.attrs == {"space_unit": "cm", "time_unit": "s"}
    true_speed = spec.speed * spec.fps / PX_PER_CM  # cm/s
    for part in synthetic.BODY_PARTS:
        speed = kin.speed.sel(keypoints=part, individuals="individual_0")
        assert float(speed.median()) == pytest.approx(true_speed, rel=0.03)
    # Half a turn apart: the centroid stays at the frame centre.
    centre = (spec.size - 1) / 2 / PX_PER_CM
    centroid = kin.centroid.sel(individuals="individual_0")
    assert float(np.nanmedian(np.abs(centroid - centre))) < 0.1
    # The tail (no jump) travels the circle's arc: 3 turns less one frame.
    arc = spec.speed * (spec.n_frames - 1) / PX_PER_CM
    tail_path = float(kin.path_length.sel(keypoints="tail", individuals="individual_0"))
    assert tail_path == pytest.approx(arc, rel=0.05)
    # The centroid barely moves: its distance is a small fraction of a part's path.
    assert float(kin.distance.sel(individuals="individual_0")) < 0.25 * arc
    # Heading tail -> head equals the truth angle of the head on its circle.
    t = np.arange(spec.n_frames)
    angle = 2 * np.pi * t / spec.period
    heading = kin.heading.sel(individuals="individual_0").values
    diff = np.angle(np.exp(1j * (heading - angle)))
    assert np.nanmedian(np.abs(diff)) < 0.05
    assert np.isnan(heading[list(noisy["corruption"].long_gap)]).all()


def test_kinematics_rows_and_frames(pipeline, cleaned, noisy):
    pp = pipeline.postprocess
    rows = (pp.Kinematics.BodyPart & cleaned).to_dicts()
    assert len(rows) == 2
    n = noisy["spec"].n_frames
    for r in rows:
        assert load_array(r["velocity"]).shape == (n, 2)
        assert load_array(r["acceleration"]).shape == (n, 2)
        assert load_array(r["speed"]).shape == (n,)
        assert r["path_length"] > 0
    frame = pp.Kinematics.get_dataframe(cleaned)
    assert len(frame) == n
    assert frame.index.names == ["frame_index", "time"]
    assert ("individual_0", "head", "speed") in frame.columns
    assert ("individual_0", "centroid", "heading") in frame.columns
    assert frame.attrs["space_unit"] == "cm"
    np.testing.assert_allclose(
        frame[("individual_0", "head", "speed")].to_numpy(),
        load_array(next(r for r in rows if r["body_part"] == "head")["speed"]),
    )
    traj = pp.CleanedTrajectory.get_dataframe(cleaned)
    assert len(traj) == n
    assert ("noisy", "individual_0", "head", "likelihood") in traj.columns


def test_windows_of_cleaned_trajectories_and_kinematics(pipeline, cleaned):
    """start/stop give exactly those frames of the whole, with their times and frame numbers."""
    pp = pipeline.postprocess
    whole = pp.CleanedTrajectory.get_dataset(cleaned)
    part = pp.CleanedTrajectory.get_dataset(cleaned, start=40, stop=70)
    np.testing.assert_array_equal(part.position.values, whole.position.values[40:70])
    np.testing.assert_array_equal(part.confidence.values, whole.confidence.values[40:70])
    np.testing.assert_allclose(part.time.values, whole.time.values[40:70])
    frame = pp.CleanedTrajectory.get_dataframe(cleaned, start=40, stop=70)
    assert list(frame.index) == list(range(40, 70))
    np.testing.assert_array_equal(
        frame.to_numpy(), pp.CleanedTrajectory.get_dataframe(cleaned).to_numpy()[40:70]
    )
    kin_whole = pp.Kinematics.get_dataframe(cleaned)
    kin = pp.Kinematics.get_dataframe(cleaned, start=40, stop=70)
    assert list(kin.index.get_level_values("frame_index")) == list(range(40, 70))
    np.testing.assert_array_equal(kin.to_numpy(), kin_whole.to_numpy()[40:70])
    np.testing.assert_allclose(
        kin.index.get_level_values("time"), kin_whole.index.get_level_values("time")[40:70]
    )
    with pytest.raises(InputError, match="0 <= start < stop"):
        pp.Kinematics.get_dataset(cleaned, start=70, stop=40)


def test_pixels_when_no_scale(pipeline, noisy):
    pp = pipeline.postprocess
    idx = pp.PostprocessParamSet.insert_new_params("threshold only", {"max_gap": 0})
    key = pp.PostprocessTask.generate(noisy["key"], idx)
    pp.CleanedTrajectory.populate(key)
    pp.Kinematics.populate(key)
    assert (pp.Kinematics & key).fetch1("space_unit", "time_unit") == ("px", "s")
    head = (pp.CleanedTrajectory.BodyPart & key & {"body_part": "head"}).fetch1()
    assert head["n_interpolated"] == 0  # max_gap 0: nothing filled
    assert head["n_missing"] == head["n_low_likelihood"]
    kin = pp.Kinematics.get_dataset(key)
    spec = noisy["spec"]
    assert np.isnan(kin.heading).all()  # no heading parts in these params
    # Unsmoothed noise inflates the speed; the median stays within 15% of the truth (px/s).
    assert float(kin.speed.sel(keypoints="tail").median()) == pytest.approx(spec.speed * spec.fps, rel=0.15)


def test_param_sets_are_hashed_and_idempotent(pipeline):
    pp = pipeline.postprocess
    a = pp.PostprocessParamSet.insert_new_params("defaults", {})
    explicit = {k: d for k, (d, _) in poses.POSTPROCESS_PARAMS.items()}
    assert pp.PostprocessParamSet.insert_new_params("defaults again", dict(reversed(explicit.items()))) == a
    with pytest.raises(ValueError, match="already exist"):
        pp.PostprocessParamSet.insert_new_params("defaults", {}, pp_paramset_idx=a + 50)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"smothing": "median"}, r"Unknown post-processing param\(s\) \['smothing'\]"),
        ({"window": 4}, "window=4: give an odd"),
        ({"smoothing": "savgol", "window": 5, "polyorder": 5}, "polyorder=5"),
        ({"likelihood_threshold": -1}, "likelihood_threshold=-1"),
        ({"max_gap": 2.5}, "max_gap=2.5"),
        ({"px_per_cm": 0}, "px_per_cm=0"),
        ({"smoothing": "gaussian"}, "choose 'none', 'median' or 'savgol'"),
        ({"heading_body_parts": ["head"]}, "two different body parts"),
    ],
)
def test_bad_params_are_refused_and_write_nothing(pipeline, params, message):
    pp = pipeline.postprocess
    before = len(pp.PostprocessParamSet())
    with pytest.raises(ValueError, match=message):
        pp.PostprocessParamSet.insert_new_params("bad", params)
    assert len(pp.PostprocessParamSet()) == before


def test_params_naming_missing_body_parts_are_refused(pipeline, noisy):
    pp = pipeline.postprocess
    idx = pp.PostprocessParamSet.insert_new_params("nose heading", {"heading_body_parts": ["tail", "nose"]})
    with pytest.raises(ValueError, match=r"body part\(s\) \['nose'\].*has \['head', 'tail'\]"):
        pp.PostprocessTask.generate(noisy["key"], idx)
    assert not pp.PostprocessTask & {"pp_paramset_idx": idx}
    # Inserted by hand, the task fails at populate with the same message and writes nothing.
    pp.PostprocessTask.insert1({**noisy["key"], "pp_paramset_idx": idx})
    result = pp.CleanedTrajectory.populate({"pp_paramset_idx": idx}, suppress_errors=True)
    assert "nose" in str(result["error_list"])
    assert not pp.CleanedTrajectory & {"pp_paramset_idx": idx}
    (pp.PostprocessTask & {"pp_paramset_idx": idx}).delete(prompt=False)


def test_workers_run_the_new_stages_with_job_reservation(pipeline, noisy):
    """The stages after pose estimation run through processing.run with DataJoint's job tables."""
    from workflow_deeplabcut import processing

    pp = pipeline.postprocess
    idx = pp.PostprocessParamSet.insert_new_params("median 3", {"smoothing": "median", "window": 3})
    pp.PostprocessTask.generate(noisy["key"], idx)
    names = ["CleanedTrajectory", "Kinematics", "PoseQC", "QCPlots"]
    results = processing.run(names, noisy["key"], reserve_jobs=True, display_progress=False)
    assert [r.table for r in results] == names
    assert not [r.errors for r in results if r.errors]
    status = {row["table"]: row for row in processing.status(names)}
    for name in names:
        assert status[name]["reserved"] == 0 and not status[name]["errors"], status[name]
    assert pp.Kinematics & noisy["key"] & {"pp_paramset_idx": idx}


def test_tasks_can_be_declared_before_the_estimation_exists(pipeline, noisy, new_session, camera):
    model, pp = pipeline.model, pipeline.postprocess
    rec = model.VideoRecording.insert_recording(new_session("early"), 1, camera, [noisy["video"]])
    model.RecordingInfo.populate(rec)
    task = model.PoseEstimationTask.generate_import(rec, "noisy", noisy["h5"], "DeepLabCut")
    idx = pp.PostprocessParamSet.insert_new_params("defaults", {})
    key = pp.PostprocessTask.generate(task, idx)
    assert not pp.CleanedTrajectory.key_source & key  # waits for its estimation
    model.PoseEstimation.populate(task)
    assert pp.CleanedTrajectory.key_source & key
    pp.CleanedTrajectory.populate(key)
    assert len(pp.CleanedTrajectory.BodyPart & key) == 2


def test_raw_estimation_as_movement_dataset(pipeline, noisy):
    ds = pipeline.model.PoseEstimation.get_dataset(noisy["key"])
    assert ds.attrs["fps"] == 30.0 and ds.attrs["time_unit"] == "seconds"
    frame = noisy["frame"]
    head = ds.position.sel(keypoints="head", individuals="individual_0")
    np.testing.assert_array_equal(head.sel(space="x").values, frame[("head", "x")].to_numpy())
    np.testing.assert_array_equal(
        ds.confidence.sel(keypoints="tail").values[:, 0], frame[("tail", "likelihood")]
    )


COUNT_COMPILES = """
import sys

from workflow_deeplabcut.cli import main

sys.argv = ["workflow-deeplabcut", *sys.argv[1:]]
try:
    main()
except SystemExit as stop:
    print("EXIT", stop.code)
built = 0
decorators = sys.modules.get("numbagg.decorators")
for value in vars(decorators or object).values():  # each numbagg kernel class caches its gufuncs
    gufunc = getattr(value, "gufunc", None) if isinstance(value, type) else None
    if hasattr(gufunc, "cache_info"):
        built += gufunc.cache_info().currsize
        if gufunc.cache_info().currsize:
            print("BUILT", value)
print("NUMBAGG KERNELS BUILT", built)
"""


def test_no_first_call_compiling(pipeline, noisy):
    """Cleaning (median), kinematics and QC in a fresh `run` build no numbagg kernel.

    numbagg (xarray's default accelerator here) compiles each kernel on its first call in
    every process, a 12-20 s pause before the first result of every command and worker.
    """
    import subprocess
    import sys

    from conftest import PROJECT_ROOT

    pp = pipeline.postprocess
    idx = pp.PostprocessParamSet.insert_new_params("median 5, no JIT", {"smoothing": "median", "window": 5})
    key = pp.PostprocessTask.generate(noisy["key"], idx)
    args = ["run", "-t", "CleanedTrajectory", "-t", "Kinematics", "-t", "PoseQC"]
    args += ["-k", f"subject={key['subject']}"]
    proc = subprocess.run(
        [sys.executable, "-c", COUNT_COMPILES, *args],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert "EXIT 0" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "NUMBAGG KERNELS BUILT 0" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert pp.CleanedTrajectory & key and pp.Kinematics & key
    assert pipeline.qc.PoseQC & noisy["key"]
