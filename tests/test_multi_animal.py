"""Multi-animal tracks as rows: who is who, identity QC, social measures and NWB, on every backend.

The estimate is the truth of the synthetic two-animal video (workflow_deeplabcut.synthetic.
MultiAnimalSpec: look-alike animals of three parts on crossing circles, 300 frames, 160x160)
with three planted identity swaps and a 5-frame gap, written as DeepLabCut's multi-animal
``_el.h5`` and imported. DeepLabCut's own training and tracking are in test_multi_animal_dlc.py.
"""

import numpy as np
import pytest

from workflow_deeplabcut import synthetic
from workflow_deeplabcut.errors import InputError

SPEC = synthetic.MultiAnimalSpec()


def truth_array() -> np.ndarray:
    truth = synthetic.multi_animal_truth(SPEC)
    return truth.to_numpy().reshape(SPEC.n_frames, SPEC.n_animals, len(synthetic.MULTI_BODY_PARTS), 2)


# ----------------------------------------------------------------- known estimates: swaps, gaps
PLANTED = [80, 150, 240]  # frames where the two tracks exchange animals (the animals are apart there)
GAP = range(110, 115)  # animal2 unseen


@pytest.fixture(scope="module")
def planted(pipeline, new_session, camera, raw_root):
    """The truth with three planted identity swaps and a 5-frame gap, imported as a DeepLabCut file."""
    from workflow_deeplabcut import identity

    model = pipeline.model
    assert all(synthetic.apart_frames(SPEC)[PLANTED])
    values = np.concatenate([truth_array(), np.ones((SPEC.n_frames, 2, 3, 1))], axis=-1)
    values = identity.plant_swaps(values, PLANTED)
    values[list(GAP), 1, :, 2] = 0.0
    h5 = synthetic.write_multi_animal_h5(
        values,
        SPEC.individuals,
        list(synthetic.MULTI_BODY_PARTS),
        raw_root / "planted" / "pairDLC_planted_el.h5",
    )
    session = new_session("planted")
    video = synthetic.make_multi_animal_video(raw_root / "planted", SPEC)
    rec = model.VideoRecording.insert_recording(session, 1, camera, [video])
    model.RecordingInfo.populate(rec)
    model.Model.insert_external_model("planted", list(synthetic.MULTI_BODY_PARTS), "DeepLabCut")
    key = model.PoseEstimationTask.generate_import(rec, "planted", h5, "DeepLabCut")
    result = model.PoseEstimation.populate(key, suppress_errors=True)
    assert not result["error_list"], result["error_list"]
    return {"key": key, "values": values, "h5": h5, "session": session}


def test_identity_qc_counts_planted_swaps(pipeline, planted):
    qc = pipeline.qc
    qc.IdentityQC.populate(planted["key"])
    key = {**planted["key"], "identity_paramset_idx": 0}
    row = (qc.IdentityQC & key).fetch1()
    swaps = sorted((qc.IdentityQC.Swap & key).to_dicts(), key=lambda r: r["frame_index"])
    assert [s["frame_index"] for s in swaps] == PLANTED
    assert {(s["individual_a"], s["individual_b"]) for s in swaps} == {("animal1", "animal2")}
    assert row["n_swaps"] == 3 and row["n_individuals"] == 2
    animals = {r["individual"]: r for r in (qc.IdentityQC.Individual & key).to_dicts()}
    assert animals["animal1"]["coverage"] == 1.0 and animals["animal1"]["n_fragments"] == 1
    assert animals["animal2"]["coverage"] == pytest.approx((SPEC.n_frames - len(GAP)) / SPEC.n_frames)
    assert animals["animal2"]["n_fragments"] == 2
    assert all(r["n_swaps"] == 3 for r in animals.values())
    assert "3 identity swap(s) (first at frame 80)" in row["warning"]
    from PIL import Image

    from workflow_deeplabcut.settings import get_settings

    colours = []
    for r in animals.values():
        image = np.asarray(Image.open(get_settings().processed_data_dir / r["identity_plot"]).convert("RGB"))
        assert image.shape == (500, 800, 3)
        colours.append({tuple(c) for c in image.reshape(-1, 3)[::7]})
    assert colours[0] != colours[1]  # each animal drawn in its own colour


def test_who_is_who(pipeline, planted, new_session):
    model = pipeline.model
    key, subject = planted["key"], planted["session"]["subject"]
    other = new_session("partner")["subject"]
    mapping = model.IndividualMapping
    for bad, message in [
        ({"animal3": subject}, "no individual"),
        ({"single": subject}, "no individual"),
        ({"animal1": "nobody"}, "No subject"),
        ({"animal1": subject, "animal2": subject}, "mapped to both"),
    ]:
        with pytest.raises(InputError, match=message):
            mapping.map(key, bad)
        assert not mapping & key
    mapping.map(key, {"animal1": subject})
    with pytest.raises(InputError, match="mapped to both"):
        mapping.map(key, {"animal2": subject})
    with pytest.raises(InputError, match="mapped already"):
        mapping.map(key, {"animal1": other})
    mapping.map(key, {"animal2": other})
    assert {r["individual"]: r["animal"] for r in (mapping & key).to_dicts()} == {
        "animal1": subject,
        "animal2": other,
    }
    assert mapping.labels(key, ["animal1", "animal2"]) == [f"animal1 = {subject}", f"animal2 = {other}"]


def test_social_measures_in_cm(pipeline, planted):
    pp = pipeline.postprocess
    idx = pp.PostprocessParamSet.insert_new_params("social cm", {"px_per_cm": 4.0, "max_gap": 0})
    pp.PostprocessTask.generate(planted["key"], idx)
    social = pp.SocialParamSet.insert_new("head to tail", [["head", "tail"]])
    with pytest.raises(Exception, match="give two body part names"):
        pp.SocialParamSet.insert_new("bad", [["head"]])
    key = {**planted["key"], "pp_paramset_idx": idx}
    for table in (pp.CleanedTrajectory, pp.Kinematics, pp.SocialMeasures):
        result = table.populate(key, suppress_errors=True)
        assert not result["error_list"], result["error_list"]
    assert len(pp.SocialMeasures & key) == 2  # centroids only (set 0) and head to tail
    frame = pp.SocialMeasures.get_dataframe({**key, "social_paramset_idx": social})
    assert frame.attrs["space_unit"] == "cm"
    values = planted["values"]
    seen = values[..., 2] > 0.5
    xy = np.where(seen[..., None], values[..., :2], np.nan) / 4.0
    centroid = xy.mean(axis=2)  # strict mean of the three parts, as Kinematics takes it
    expected = np.linalg.norm(centroid[:, 0] - centroid[:, 1], axis=-1)
    np.testing.assert_allclose(frame[("animal1", "animal2", "centroid")], expected, rtol=1e-12)
    assert np.isnan(frame[("animal1", "animal2", "centroid")].to_numpy()[list(GAP)]).all()
    head_tail = np.linalg.norm(xy[:, 0, 0] - xy[:, 1, 2], axis=-1)  # animal1's head to animal2's tail
    np.testing.assert_allclose(frame[("animal1", "animal2", "head-tail")], head_tail, rtol=1e-12)
    tail_head = np.linalg.norm(xy[:, 0, 2] - xy[:, 1, 0], axis=-1)
    np.testing.assert_allclose(frame[("animal1", "animal2", "tail-head")], tail_head, rtol=1e-12)
    bad = pp.SocialParamSet.insert_new("nose", [["nose", "tail"]])
    result = pp.SocialMeasures.populate({**key, "social_paramset_idx": bad}, suppress_errors=True)
    assert "names body part(s) ['nose']" in str(result["error_list"])
    assert not pp.SocialMeasures & {"social_paramset_idx": bad}
    (pp.SocialParamSet & {"social_paramset_idx": bad}).delete(prompt=False)


def test_nwb_one_estimation_per_animal(pipeline, planted, processed_root):
    from pynwb import NWBHDF5IO

    from workflow_deeplabcut import nwb

    model = pipeline.model
    key = planted["key"]
    if not model.IndividualMapping & key:
        model.IndividualMapping.map(key, {"animal1": planted["session"]["subject"]})
    path = nwb.export_session(planted["session"], processed_root / "nwb" / "planted.nwb")
    arrays = model.PoseEstimation.window(key).arrays()
    with NWBHDF5IO(str(path), "r") as io:
        f = io.read()
        behavior = f.processing["behavior"]
        for ind in SPEC.individuals:
            pe = behavior[f"planted_recording1_{ind}"]
            assert list(pe.skeleton.nodes[:]) == sorted(synthetic.MULTI_BODY_PARTS)
            assert pe.skeleton.name == f"planted_{ind}"
            for part in synthetic.MULTI_BODY_PARTS:
                series = pe.pose_estimation_series[part]
                np.testing.assert_array_equal(series.data[:, 0], arrays[(ind, part)]["x_pos"])
                np.testing.assert_array_equal(series.data[:, 1], arrays[(ind, part)]["y_pos"])
                np.testing.assert_array_equal(series.confidence[:], arrays[(ind, part)]["likelihood"])
        first = behavior["planted_recording1_animal1"]
        assert (
            first.skeleton.subject is not None
            and first.skeleton.subject.subject_id == planted["session"]["subject"]
        )
        assert f"subject {planted['session']['subject']}" in first.description
        skeletons = behavior["Skeletons"].skeletons
        assert {"planted_animal1", "planted_animal2"} <= set(skeletons)
    assert not [m for m in nwb.inspect(path) if m.importance.name == "CRITICAL"]


def test_tracks_file_gets_a_row_per_frame(pipeline, new_session, camera, raw_root, processed_root):
    """DeepLabCut's tracks files leave out frames before and after the tracks: they load as NaN."""
    import pickle

    import pandas as pd

    model = pipeline.model
    scorer = "DLC_Resnet50_socialJan1shuffle1_snapshot_60"
    row = {
        "model_name": "pair-tracks",
        "task": "social",
        "date": "Jan1",
        "iteration": 0,
        "snapshotindex": 0,
        "shuffle": 1,
        "trainingsetindex": 0,
        "scorer": scorer,
        "config_template": {"multianimalproject": True, "individuals": SPEC.individuals},
        "project_path": "social-project",
    }
    with model.Model.connection.transaction:
        model.Model.insert_built(row, list(synthetic.MULTI_BODY_PARTS))
    assert model.Model.individuals(row) == SPEC.individuals
    folder = processed_root / "pair-tracks"
    values = np.concatenate([truth_array(), np.ones((SPEC.n_frames, 2, 3, 1))], axis=-1)
    h5 = synthetic.write_multi_animal_h5(
        values,
        SPEC.individuals,
        list(synthetic.MULTI_BODY_PARTS),
        folder / f"pair{scorer}_el.h5",
        scorer=scorer,
    )
    frame = pd.read_hdf(h5, "tracks")
    frame.iloc[5:290].to_hdf(h5, key="tracks", mode="w")  # rows 5..289, indexed by frame
    meta = {"data": {"nframes": SPEC.n_frames, "Scorer": scorer, "fps": SPEC.fps}}
    (folder / f"pair{scorer}_meta.pickle").write_bytes(pickle.dumps(meta))
    video = synthetic.make_multi_animal_video(raw_root / "pair-tracks", SPEC)
    rec = model.VideoRecording.insert_recording(new_session("tracks"), 1, camera, [video])
    model.RecordingInfo.populate(rec)
    key = model.PoseEstimationTask.generate(rec, "pair-tracks", output_dir=folder)
    assert (model.PoseEstimationTask & key).fetch1("task_mode") == "load"
    result = model.PoseEstimation.populate(key, suppress_errors=True)
    assert not result["error_list"], result["error_list"]
    arrays = model.PoseEstimation.window(key).arrays()
    for (ind, part), a in arrays.items():
        i, j = SPEC.individuals.index(ind), synthetic.MULTI_BODY_PARTS.index(part)
        assert np.isnan(a["x_pos"][:5]).all() and np.isnan(a["x_pos"][290:]).all()
        np.testing.assert_array_equal(a["x_pos"][5:290], values[5:290, i, j, 0])
        np.testing.assert_array_equal(a["y_pos"][5:290], values[5:290, i, j, 1])
    # Tracks of other animals than the model's are refused, naming both.
    other = frame.rename(columns={"animal2": "animal9"}, level="individuals")
    other.to_hdf(h5, key="tracks", mode="w")
    (model.PoseEstimation & key).delete(prompt=False)
    result = model.PoseEstimation.populate(key, suppress_errors=True)
    assert "hold individuals ['animal1', 'animal9']" in str(result["error_list"])
    assert not model.PoseEstimation & key


def test_identity_pictures_go_with_their_rows(pipeline, planted):
    """`gc` keeps a row's identity pictures and `delete` removes them with the row."""
    from workflow_deeplabcut import deletion, storage
    from workflow_deeplabcut.settings import get_settings

    qc = pipeline.qc
    qc.IdentityQC.populate(planted["key"])
    key = {**planted["key"], "identity_paramset_idx": 0}
    root = get_settings().processed_data_dir
    pictures = [root / r["identity_plot"] for r in (qc.IdentityQC.Individual & key).to_dicts()]
    assert len(pictures) == 2 and all(p.is_file() for p in pictures)
    report = storage.collect_garbage(dry_run=True, min_age=0)
    assert not set(map(str, pictures)) & set(report.orphans)
    plan = deletion.delete(qc.IdentityQC, key)
    assert set(pictures) <= set(plan.files)
    assert not any(p.exists() for p in pictures)
    qc.IdentityQC.populate(planted["key"])  # back, for the tests after this one


def test_untracked_detections_are_named(tmp_path):
    """A folder with a multi-animal run's detections but no tracks says so, and what to run."""
    from workflow_deeplabcut import dlc

    (tmp_path / "pairDLC_Resnet50_socialJan1shuffle1_snapshot_60_full.pickle").write_bytes(b"")
    with pytest.raises(dlc.DLCOutputError, match="never tracked.*stitch_tracklets"):
        dlc.find_outputs(tmp_path, ["pair"])


def test_single_animal_model_refuses_several_animals(pipeline, new_session, camera, raw_root, processed_root):
    """Tracks of two animals paired with a single-animal DeepLabCut model: refused, nothing stored."""
    import pickle

    model = pipeline.model
    scorer = "DLC_Resnet50_soloJan1shuffle1_snapshot_60"
    row = {
        "model_name": "solo",
        "task": "solo",
        "date": "Jan1",
        "iteration": 0,
        "snapshotindex": 0,
        "shuffle": 1,
        "trainingsetindex": 0,
        "scorer": scorer,
        "config_template": {"Task": "solo", "multianimalproject": False},
        "project_path": "solo-project",
    }
    with model.Model.connection.transaction:
        model.Model.insert_built(row, list(synthetic.MULTI_BODY_PARTS))
    folder = processed_root / "solo"
    values = np.concatenate([truth_array(), np.ones((SPEC.n_frames, 2, 3, 1))], axis=-1)
    synthetic.write_multi_animal_h5(
        values,
        SPEC.individuals,
        list(synthetic.MULTI_BODY_PARTS),
        folder / f"pair{scorer}_el.h5",
        scorer=scorer,
    )
    meta = {"data": {"nframes": SPEC.n_frames, "Scorer": scorer}}
    (folder / f"pair{scorer}_meta.pickle").write_bytes(pickle.dumps(meta))
    video = synthetic.make_multi_animal_video(raw_root / "solo", SPEC)
    rec = model.VideoRecording.insert_recording(new_session("solo"), 1, camera, [video])
    model.RecordingInfo.populate(rec)
    key = model.PoseEstimationTask.generate(rec, "solo", output_dir=folder)
    result = model.PoseEstimation.populate(key, suppress_errors=True)
    assert "model 'solo' is single-animal" in str(result["error_list"])
    assert not model.PoseEstimation & key
