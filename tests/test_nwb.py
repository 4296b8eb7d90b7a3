"""NWB export (ndx-pose 0.4) read back with pynwb and checked by nwbinspector; imports of
NWB, SLEAP, Lightning Pose and DeepLabCut files through movement's loaders."""

from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
from pynwb import NWBHDF5IO

from workflow_deeplabcut import dlc, imports, nwb, poses, synthetic
from workflow_deeplabcut.errors import PoseFileError
from workflow_deeplabcut.rows import load_array


@pytest.fixture(scope="module")
def session_key(pipeline, noisy):
    return {k: noisy["key"][k] for k in ("subject", "session_datetime")}


@pytest.fixture(scope="module")
def cleaned_idx(pipeline, noisy):
    pp = pipeline.postprocess
    idx = pp.PostprocessParamSet.insert_new_params("median 5, cm", {"smoothing": "median", "px_per_cm": 10.0})
    key = pp.PostprocessTask.generate(noisy["key"], idx)
    pp.CleanedTrajectory.populate(key)
    return idx


@pytest.fixture(scope="module")
def metadata(pipeline, session_key):
    lab, subject, session = pipeline.lab, pipeline.subject, pipeline.session
    lab.Lab.insert1(
        {"lab": "nwblab", "lab_name": "NWB Lab", "time_zone": "Europe/London"}, skip_duplicates=True
    )
    subject.Species.insert1({"species": "Mus musculus"}, skip_duplicates=True)
    subject.Subject.Species.insert1({"subject": session_key["subject"], "species": "Mus musculus"})
    subject.Subject.Lab.insert1({"subject": session_key["subject"], "lab": "nwblab"})
    lab.User.insert1({"user": "ada", "user_fullname": "Lovelace, Ada"}, skip_duplicates=True)
    session.SessionExperimenter.insert1({**session_key, "user": "ada"})
    session.SessionNote.insert1({**session_key, "session_note": "open field, synthetic"})


@pytest.fixture(scope="module")
def exported(pipeline, session_key, cleaned_idx, metadata, processed_root):
    return nwb.export_session(session_key, processed_root / "nwb" / "noisy.nwb")


def test_export_reads_back_with_the_same_values(pipeline, noisy, session_key, cleaned_idx, exported):
    model, pp = pipeline.model, pipeline.postprocess
    with NWBHDF5IO(str(exported), "r") as io:
        f = io.read()
        assert f.subject.subject_id == session_key["subject"]
        assert f.subject.species == "Mus musculus"
        assert f.subject.sex == "U"
        assert f.session_description == "open field, synthetic"
        assert list(f.experimenter) == ["Lovelace, Ada"]
        assert f.lab == "NWB Lab"
        start = session_key["session_datetime"].replace(tzinfo=ZoneInfo("Europe/London"))
        assert f.session_start_time == start
        behavior = f.processing["behavior"]
        pe = behavior["noisy_recording1"]
        # An imported DeepLabCut file keeps the scorer it names.
        assert pe.scorer == dlc.file_scorer(noisy["h5"]) and pe.source_software == "DeepLabCut"
        assert list(pe.skeleton.nodes[:]) == ["head", "tail"]
        assert "noisy" in behavior["Skeletons"].skeletons
        video = pe.source_video
        assert (exported.parent / video.external_file[0]).resolve() == noisy["video"].resolve()
        assert list(video.dimension[:]) == [128, 128]
        assert video.device.name == "cam0"
        for (_, part), r in model.PoseEstimation.window(noisy["key"]).arrays().items():
            series = pe.pose_estimation_series[part]
            np.testing.assert_array_equal(series.data[:, 0], r["x_pos"])
            np.testing.assert_array_equal(series.data[:, 1], r["y_pos"])
            np.testing.assert_array_equal(series.confidence[:], r["likelihood"])
            assert series.rate == pytest.approx(30.0) and series.unit == "pixels"
        clean = behavior[f"noisy_recording1_postprocess{cleaned_idx}"]
        for r in (pp.CleanedTrajectory.BodyPart & noisy["key"] & {"pp_paramset_idx": cleaned_idx}).to_dicts():
            series = clean.pose_estimation_series[r["body_part"]]
            assert series.unit == "centimeters"
            np.testing.assert_array_equal(series.data[:, 0], load_array(r["x_pos"]))
            np.testing.assert_array_equal(series.data[:, 1], load_array(r["y_pos"]))
        assert '"px_per_cm": 10.0' in clean.description


def test_export_passes_nwbinspector(exported):
    messages = nwb.inspect(exported)
    critical = [m for m in messages if m.importance.name == "CRITICAL"]
    assert not critical, [(m.check_function_name, m.message) for m in critical]
    errors = [m for m in messages if m.importance.name == "PYNWB_VALIDATION"]
    assert not errors, [m.message for m in errors]
    print("nwbinspector:", [(m.importance.name, m.check_function_name) for m in messages])
    assert not [m for m in messages if m.importance.name == "BEST_PRACTICE_VIOLATION"], messages


def test_export_refuses_bad_requests(pipeline, session_key, exported, workdir, new_session):
    with pytest.raises(nwb.NWBExportError, match="exists"):
        nwb.export_session(session_key, exported)
    with pytest.raises(nwb.NWBExportError, match="matches 0 sessions"):
        nwb.export_session({"subject": "nobody"}, workdir / "x.nwb")
    with pytest.raises(nwb.NWBExportError, match="has no pose estimation"):
        nwb.export_session(new_session("empty"), workdir / "empty.nwb")
    with pytest.raises(nwb.NWBExportError, match="end in .nwb"):
        nwb.export_session(session_key, workdir / "x.h5")
    assert not (workdir / "x.nwb").exists() and not (workdir / "empty.nwb").exists()


def _arrays(pipeline, key):
    arrays = pipeline.model.PoseEstimation.window(key).arrays()
    return {
        part: np.column_stack([r[a] for a in ("x_pos", "y_pos", "likelihood")])
        for (_, part), r in arrays.items()
    }


def _recording(pipeline, noisy):
    return {k: noisy["key"][k] for k in ("subject", "session_datetime", "recording_id")}


def test_import_nwb_round_trip(pipeline, noisy, exported):
    key = imports.import_pose_file(
        exported,
        "NWB",
        _recording(pipeline, noisy),
        "from-nwb",
        loader_params={"pose_estimation_key": "noisy_recording1"},
    )
    model = (pipeline.model.Model & key).fetch1()
    assert model["engine"] == "external" and model["task"] == "NWB"
    got, want = _arrays(pipeline, key), _arrays(pipeline, noisy["key"])
    assert set(got) == set(want)
    for part in want:
        np.testing.assert_array_equal(got[part], want[part])


@pytest.mark.parametrize(("software", "name"), [("SLEAP", "x.analysis.h5"), ("LightningPose", "x.csv")])
def test_import_sleap_and_lightning_pose(pipeline, noisy, raw_root, software, name):
    from movement.io import save_poses

    frame = noisy["frame"]
    ds = poses.to_dataset(
        {
            ("individual_0", p): {
                c: frame[(p, k)].to_numpy()
                for c, k in (("x_pos", "x"), ("y_pos", "y"), ("likelihood", "likelihood"))
            }
            for p in synthetic.BODY_PARTS
        },
        30.0,
    )
    path = raw_root / "external" / software / name
    path.parent.mkdir(parents=True, exist_ok=True)
    (save_poses.to_sleap_analysis_file if software == "SLEAP" else save_poses.to_lp_file)(ds, path)
    if software == "LightningPose":  # movement names the file after the individual
        path = path.with_name("x_individual_0.csv")
    key = imports.import_pose_file(path, software, _recording(pipeline, noisy), f"from-{software}")
    got, want = _arrays(pipeline, key), _arrays(pipeline, noisy["key"])
    for part in want:
        np.testing.assert_allclose(got[part], want[part], rtol=1e-6, atol=1e-4)  # SLEAP keeps float32
    # Post-processing runs on the import like on any estimation.
    pp = pipeline.postprocess
    idx = pp.PostprocessParamSet.insert_new_params("defaults", {})
    pp.PostprocessTask.generate(key, idx)
    pp.CleanedTrajectory.populate(key)
    counts = (pp.CleanedTrajectory.BodyPart & key & {"body_part": "tail"}).fetch1("n_low_likelihood")
    assert counts == len(noisy["corruption"].low_frames["tail"])


def test_bad_imports_write_nothing(pipeline, noisy, raw_root, new_session, camera):
    model = pipeline.model
    recording = model.VideoRecording.insert_recording(new_session("badimport"), 1, camera, [noisy["video"]])
    model.RecordingInfo.populate(recording)
    before = (len(model.Model()), len(model.PoseEstimationTask()), len(model.PoseEstimation()))
    short = synthetic.write_dlc_h5(noisy["frame"].iloc[:100], raw_root / "bad" / "short.h5")
    with pytest.raises(Exception, match="has 100 frames but the recording has 300"):
        imports.import_pose_file(short, "DeepLabCut", recording, "short-import")
    renamed = noisy["frame"].rename(columns={"tail": "nose"}, level="bodyparts")
    other = synthetic.write_dlc_h5(renamed, raw_root / "bad" / "other.h5")
    with pytest.raises(Exception, match=r"holds body parts \['head', 'nose'\] but model 'noisy' has"):
        imports.import_pose_file(other, "DeepLabCut", recording, "noisy")
    with pytest.raises(Exception, match="already has a pose estimation task for model 'noisy'"):
        imports.import_pose_file(noisy["h5"], "DeepLabCut", _recording(pipeline, noisy), "noisy")
    with pytest.raises(ValueError, match="Unknown pose software 'DLC'"):
        imports.import_pose_file(short, "DLC", recording, "x")
    with pytest.raises(PoseFileError, match="does not exist"):
        imports.import_pose_file(raw_root / "bad" / "missing.h5", "DeepLabCut", recording, "x")
    not_pose = raw_root / "bad" / "table.csv"
    pd.DataFrame({"a": [1, 2]}).to_csv(not_pose)
    with pytest.raises(ValueError, match="could not be read as LightningPose"):
        imports.import_pose_file(not_pose, "LightningPose", recording, "x")
    assert (len(model.Model()), len(model.PoseEstimationTask()), len(model.PoseEstimation())) == before


def test_external_models_are_never_run_or_evaluated(pipeline, noisy):
    model = pipeline.model
    assert not model.ModelEvaluation.key_source & {"model_name": "noisy"}
    task = (model.PoseEstimationTask & noisy["key"]).fetch1()
    assert task["pose_estimation_params"]["source_software"] == "DeepLabCut"


@pytest.mark.dlc
def test_training_labels_in_nwb(
    pipeline, model_name, synthetic_project, new_session, camera, synthetic_video, workdir
):
    """A DeepLabCut model's labeled frames go to ndx-pose PoseTraining."""
    model = pipeline.model
    recording = model.VideoRecording.insert_recording(new_session("labels"), 1, camera, [synthetic_video])
    model.RecordingInfo.populate(recording)
    scorer = (model.Model & {"model_name": model_name}).fetch1("scorer")
    out = model.PoseEstimationTask.infer_output_dir({**recording, "model_name": model_name}, mkdir=True)
    synthetic.write_dlc_outputs(out, synthetic_video.stem, list(synthetic.BODY_PARTS), 300, scorer=scorer)
    key = model.PoseEstimationTask.generate(recording, model_name)
    model.PoseEstimation.populate(key)
    path = nwb.export_session(recording, workdir / "nwb" / "labels.nwb", training_labels=True)
    labels = pd.read_hdf(next(synthetic_project.parent.glob("labeled-data/*/CollectedData_*.h5")))
    with NWBHDF5IO(str(path), "r") as io:
        f = io.read()
        training = f.processing["behavior"][f"PoseTraining_{model_name}"]
        frames = training.training_frames.training_frames
        assert len(frames) == len(labels) == 20
        for index, row in labels.iterrows():
            frame = frames[f"synthetic_{index[-1]}"]
            assert frame.annotator == "truth"
            assert frame.source_video_frame_index == int(index[-1][3:7])
            instance = frame.skeleton_instances.skeleton_instances["instance_0"]
            want = np.array([[row[("truth", p, "x")], row[("truth", p, "y")]] for p in ("head", "tail")])
            np.testing.assert_allclose(instance.node_locations[:], want)
            assert instance.skeleton.name == model_name
        assert (
            training.source_videos.image_series[f"{model_name}_synthetic"].external_file[0].endswith(".mp4")
        )
    assert not [m for m in nwb.inspect(path) if m.importance.name == "CRITICAL"]


def test_multi_animal_import_postprocess_and_export(
    pipeline, noisy, raw_root, processed_root, new_session, camera
):
    """Two tracked animals from a SLEAP file: one row set per individual all the way to NWB."""
    from movement.io import save_poses

    model, pp = pipeline.model, pipeline.postprocess
    frame = noisy["frame"]
    positions = {}
    for ind, shift in (("mouse_a", 0.0), ("mouse_b", 20.0)):
        for p in synthetic.BODY_PARTS:
            positions[(ind, p)] = {
                "x_pos": frame[(p, "x")].to_numpy() + shift,
                "y_pos": frame[(p, "y")].to_numpy(),
                "likelihood": frame[(p, "likelihood")].to_numpy(),
            }
    path = raw_root / "external" / "two.analysis.h5"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_poses.to_sleap_analysis_file(poses.to_dataset(positions, 30.0), path)
    session_key = new_session("two")
    rec = model.VideoRecording.insert_recording(session_key, 1, camera, [noisy["video"]])
    key = imports.import_pose_file(path, "SLEAP", rec, "sleap-two")
    arrays = model.PoseEstimation.window(key).arrays()
    assert set(arrays) == set(positions)
    for slot, r in arrays.items():
        np.testing.assert_allclose(r["x_pos"], positions[slot]["x_pos"], atol=1e-4)
    traj = model.PoseEstimation.get_trajectory(key)
    assert traj.columns.names == ["scorer", "individuals", "bodyparts", "coords"]

    idx = pp.PostprocessParamSet.insert_new_params("defaults", {})
    pp.PostprocessTask.generate(key, idx)
    pp.CleanedTrajectory.populate(key)
    pp.Kinematics.populate(key)
    kin = pp.Kinematics.get_dataset({**key, "pp_paramset_idx": idx})
    assert list(kin.individuals.values) == ["mouse_a", "mouse_b"]
    centroid = kin.centroid.sel(space="x")
    shift = (centroid.sel(individuals="mouse_b") - centroid.sel(individuals="mouse_a")).values
    assert np.nanmedian(shift) == pytest.approx(20.0, abs=1e-3)

    out = nwb.export_session(session_key, processed_root / "nwb" / "two.nwb")
    with NWBHDF5IO(str(out), "r") as io:
        behavior = io.read().processing["behavior"]
        for ind in ("mouse_a", "mouse_b"):
            assert f"sleap-two_recording1_{ind}" in behavior.data_interfaces
            assert f"sleap-two_recording1_{ind}_postprocess{idx}" in behavior.data_interfaces
    assert not [m for m in nwb.inspect(out) if m.importance.name == "CRITICAL"]
