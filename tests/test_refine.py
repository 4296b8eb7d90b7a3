"""The refinement loop's rows without training: frames out, labels in, merging, bad input.

Runs on every backend. The loop with DeepLabCut training in it is ``test_refine_dlc.py``.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from workflow_deeplabcut import dlc, synthetic
from workflow_deeplabcut.errors import InputError

SPEC = synthetic.SyntheticSpec(n_frames=120, tail_lag=0.125, floor="split")


def truth_rows(truth: pd.DataFrame, frames, video: str | None = None) -> pd.DataFrame:
    """A plain label CSV's rows: the exact ground truth at ``frames``."""
    rows = [
        {
            **({"video": video} if video else {}),
            "frame": int(f),
            "bodypart": b,
            "x": truth.at[f, (b, "x")],
            "y": truth.at[f, (b, "y")],
        }
        for f in frames
        for b in synthetic.BODY_PARTS
    ]
    return pd.DataFrame(rows)


def collected_data(truth: pd.DataFrame, frames, stem: str, scorer: str, nframes: int) -> pd.DataFrame:
    """Labels in DeepLabCut's CollectedData layout, as its GUI writes them."""
    from workflow_deeplabcut.refine import image_name

    index = pd.MultiIndex.from_tuples([("labeled-data", stem, image_name(int(f), nframes)) for f in frames])
    columns = pd.MultiIndex.from_product(
        [[scorer], list(synthetic.BODY_PARTS), ["x", "y"]], names=["scorer", "bodyparts", "coords"]
    )
    return pd.DataFrame(truth.loc[list(frames)].to_numpy(), index=index, columns=columns)


@pytest.fixture(scope="module")
def project(pipeline, raw_root, new_session, camera):
    """A DeepLabCut project around a synthetic video, registered with one recording."""
    root = raw_root / "refine-rows"
    video = synthetic.make_video(root / "videos", SPEC, name="arena")
    config = dlc.create_project("rows", "truth", video, root, bodyparts=list(synthetic.BODY_PARTS))
    rec = pipeline.model.VideoRecording.insert_recording(new_session("rr"), 1, camera, [video])
    pipeline.model.RecordingInfo.populate(rec)
    pipeline.refine.Project.insert_project("rows", config)
    return {"config": config, "video": video, "rec": rec, "truth": synthetic.ground_truth(SPEC)}


def _counts(refine) -> tuple:
    return len(refine.LabelSet()), len(refine.LabelSet.Label()), len(refine.Iteration())


def test_frames_labels_and_merge_as_rows(pipeline, project, tmp_path):
    refine, train = pipeline.refine, pipeline.train
    rec, config, truth = project["rec"], project["config"], project["truth"]
    key = {"project_name": "rows", **rec}
    idx = refine.ExtractionParamSet.insert_new_params("uniform 30", {"algorithm": "uniform", "numframes": 30})
    refine.FrameExtraction.insert1({**key, "extraction_paramset_idx": idx})
    refine.ExtractedFrames.populate(key)
    frames = refine.ExtractedFrames.Frame & key
    assert (refine.ExtractedFrames & key).fetch1("n_frames") == len(frames) == 30
    for row in frames.to_dicts():  # DeepLabCut's names: img + the index padded to 3 digits (120 frames)
        assert row["image_path"] == f"labeled-data/arena/img{row['frame_index']:03d}.png"
        assert (config.parent / row["image_path"]).is_file()
    # The image is the video's frame, decoded.
    first = frames.to_dicts()[0]
    from PIL import Image

    image = np.asarray(Image.open(config.parent / first["image_path"]))
    assert image.shape == (SPEC.size, SPEC.size, 3)
    import av

    with av.open(str(project["video"])) as container:  # decoded here by PyAV, not OpenCV
        rendered = np.stack([fr.to_ndarray(format="rgb24") for fr in container.decode(video=0)]).astype(int)
    f = first["frame_index"]
    off = [np.abs(image - rendered[g]).mean() for g in (f, (f + 3) % SPEC.n_frames)]
    assert off[0] < 1 and off[0] < off[1] / 4, off  # that frame, not its neighbour
    assert any(v.endswith("arena.mp4") for v in dlc.read_config(config)["video_sets"])
    # Same seed, same frames.
    again = refine.select_frames(
        project["video"],
        refine.check_params(
            {"algorithm": "uniform", "numframes": 30}, refine.EXTRACTION_DEFAULTS, "extraction"
        ),
    )
    assert again == sorted(r["frame_index"] for r in frames.to_dicts())

    picked = sorted(r["frame_index"] for r in frames.to_dicts())
    half = picked[: len(picked) // 2]
    csv = tmp_path / "labels.csv"
    truth_rows(truth, half, "arena").to_csv(csv, index=False)
    first_set = refine.LabelSet.import_labels("rows", csv, labeled_by="truth")
    row = (refine.LabelSet & first_set).fetch1()
    assert row["n_labels"] == 2 * len(half) and row["labeled_by"] == "truth"
    assert row["labeled_at"] == dt.datetime.fromtimestamp(csv.stat().st_mtime).replace(microsecond=0)
    written = pd.read_hdf(config.parent / "labeled-data/arena/CollectedData_truth.h5")
    assert written.shape == (len(half), 4) and list(written.columns.names) == [
        "scorer",
        "bodyparts",
        "coords",
    ]
    np.testing.assert_allclose(written.to_numpy(), truth.loc[half].to_numpy())

    # DeepLabCut's own layout, another half, and a held-out set.
    h5 = tmp_path / "CollectedData_truth.h5"
    collected_data(truth, picked[len(picked) // 2 : -4], "arena", "truth", SPEC.n_frames).to_hdf(
        h5, key="df_with_missing"
    )
    refine.LabelSet.import_labels("rows", h5, labeled_by="napari")
    held = tmp_path / "held.csv"
    truth_rows(truth, picked[-4:]).to_csv(held, index=False)
    held_key = refine.LabelSet.import_labels("rows", held, held_out=True, video="arena")
    written = pd.read_hdf(config.parent / "labeled-data/arena/CollectedData_truth.h5")
    assert len(written) == len(picked) - 4  # held-out frames stay out of training
    assert len(pd.read_hdf(config.parent / "labeled-data/arena/HeldOut_truth.h5")) == 4

    # Iteration 0 records its training task and the model it will register.
    idx_train = train.TrainingParamSet.insert_new_params(
        "refine rows", {"shuffle": 1, "trainingsetindex": 0, "epochs": 1}
    )
    it0 = refine.Iteration.start("rows", idx_train)
    row = (refine.Iteration & it0).fetch1()
    assert (
        row["iteration"] == 0 and row["parent_model"] is None and row["trained_model"] == "rows-iteration-0"
    )
    assert sorted(k["label_set_id"] for k in (refine.Iteration.LabelSet & it0).keys()) == [1, 2]
    assert (train.TrainingParamSet & row).fetch1("params")["iteration"] == 0
    assert (pipeline.model.PendingModel & {"model_name": "rows-iteration-0"}).fetch1("config_params") == {
        "iteration": 0
    }
    assert held_key["label_set_id"] not in [
        k["label_set_id"] for k in (refine.Iteration.LabelSet & it0).keys()
    ]

    # Nothing changed since: merging again is refused, and nothing is written.
    before = _counts(refine), len(train.TrainingTask())
    with pytest.raises(InputError, match="(?i)nothing changed"):
        refine.Iteration.start("rows", idx_train, parent_model="rows-iteration-0")
    with pytest.raises(InputError, match="parent_model"):
        refine.Iteration.start("rows", idx_train)
    assert (_counts(refine), len(train.TrainingTask())) == before
    assert dlc.read_config(config)["iteration"] == 0
    # Something changed, but iteration 0's model is not trained yet: still nothing is written.
    truth_rows(truth, picked[:1], "arena").to_csv(tmp_path / "again.csv", index=False)
    refine.LabelSet.import_labels("rows", tmp_path / "again.csv")
    before = _counts(refine), len(train.TrainingTask())
    with pytest.raises(InputError, match="not trained and registered"):
        refine.Iteration.start("rows", idx_train, parent_model="rows-iteration-0")
    assert (_counts(refine), len(train.TrainingTask())) == before
    assert dlc.read_config(config)["iteration"] == 0


@pytest.mark.parametrize(
    "case, match",
    [
        ("unknown body part", "not in"),
        ("never extracted", "never extracted"),
        ("other scorer", "scorer 'someone'"),
        ("outside the image", "outside the image"),
        ("no video column", "video"),
        ("empty", "no labelled point"),
    ],
)
def test_bad_labels_write_nothing(pipeline, project, tmp_path, case, match):
    refine = pipeline.refine
    key = {"project_name": "rows", **project["rec"]}
    if not refine.ExtractedFrames & key:
        refine.FrameExtraction.insert1({**key, "extraction_paramset_idx": 0})
        refine.ExtractedFrames.populate(key)
    frames = sorted(r["frame_index"] for r in (refine.ExtractedFrames.Frame & key).to_dicts())
    truth = project["truth"]
    path = tmp_path / "labels.csv"
    table = truth_rows(truth, frames[:3], "arena")
    if case == "unknown body part":
        table.loc[0, "bodypart"] = "ear"
    elif case == "never extracted":
        table.loc[0, "frame"] = next(f for f in range(SPEC.n_frames) if f not in frames)
    elif case == "outside the image":
        table.loc[1, "x"] = SPEC.size + 40
    elif case == "no video column":
        table = table.drop(columns="video")
    elif case == "empty":
        table["x"] = np.nan
    if case == "other scorer":
        path = tmp_path / "CollectedData_someone.h5"
        collected_data(truth, frames[:3], "arena", "someone", SPEC.n_frames).to_hdf(
            path, key="df_with_missing"
        )
    else:
        table.to_csv(path, index=False)
    collected = project["config"].parent / "labeled-data/arena/CollectedData_truth.h5"
    stamp = collected.read_bytes() if collected.exists() else None
    before = _counts(refine)
    with pytest.raises(InputError, match=match):
        refine.LabelSet.import_labels("rows", path)
    assert _counts(refine) == before
    assert (collected.read_bytes() if collected.exists() else None) == stamp


def test_bad_params_and_projects(pipeline, project):
    refine = pipeline.refine
    with pytest.raises(InputError, match="Unknown extraction param"):
        refine.ExtractionParamSet.insert_new_params("x", {"algo": "kmeans"})
    with pytest.raises(InputError, match="algorithm"):
        refine.OutlierParamSet.insert_new_params("x", {"algorithm": "manual"})
    with pytest.raises(InputError, match="frames"):
        refine.OutlierParamSet.insert_new_params("x", {"algorithm": "list"})
    with pytest.raises(InputError, match="registered already"):
        refine.Project.insert_project("other-name", project["config"])
    with pytest.raises(InputError, match="not registered"):
        refine.LabelSet.import_labels("nope", project["config"])


def test_outlier_criteria_are_deeplabcuts():
    """Each criterion flags what DeepLabCut's extract_outlier_frames flags, with its score."""
    from workflow_deeplabcut.refine import OUTLIER_DEFAULTS, find_outliers

    truth = synthetic.ground_truth(SPEC)
    frame = pd.concat({"DLC_x": truth}, axis=1, names=["scorer"])
    likelihood = pd.DataFrame(
        0.99,
        index=truth.index,
        columns=pd.MultiIndex.from_product(
            [["DLC_x"], synthetic.BODY_PARTS, ["likelihood"]], names=frame.columns.names
        ),
    )
    frame = pd.concat([frame, likelihood], axis=1).sort_index(axis=1, level="bodyparts", sort_remaining=False)
    frame = frame.reindex(
        columns=pd.MultiIndex.from_product(
            [["DLC_x"], synthetic.BODY_PARTS, ["x", "y", "likelihood"]], names=frame.columns.names
        )
    )
    frame.loc[40, ("DLC_x", "head", "x")] += 30  # a jump there and back
    frame.loc[70, ("DLC_x", "tail", "likelihood")] = 0.005
    jumps, score = find_outliers(frame, OUTLIER_DEFAULTS)
    assert jumps.tolist() == [40, 41] and score[40] == pytest.approx(
        np.hypot(
            30 + (truth.at[40, ("head", "x")] - truth.at[39, ("head", "x")]),
            truth.at[40, ("head", "y")] - truth.at[39, ("head", "y")],
        )
    )
    uncertain, score = find_outliers(frame, OUTLIER_DEFAULTS | {"algorithm": "uncertain"})
    assert uncertain.tolist() == [70] and score[70] == 0.005
    listed, score = find_outliers(frame, OUTLIER_DEFAULTS | {"algorithm": "list", "frames": [5, 3]})
    assert listed.tolist() == [3, 5] and score is None
    only_tail, _ = find_outliers(frame, OUTLIER_DEFAULTS | {"comparison_body_parts": ["tail"]})
    assert only_tail.tolist() == []


def test_held_out_error_of_an_imported_estimate(pipeline, project, noisy, tmp_path):
    """HeldOutError compares an estimation with held-out labels of its recording."""
    refine = pipeline.refine
    est = noisy["key"]
    rec = {k: est[k] for k in pipeline.model.VideoRecording.primary_key}
    refine.FrameExtraction.insert1({"project_name": "rows", **rec, "extraction_paramset_idx": 1})
    refine.ExtractedFrames.populate(rec)
    frames = sorted(r["frame_index"] for r in (refine.ExtractedFrames.Frame & rec).to_dicts())
    truth = synthetic.ground_truth(noisy["spec"])
    truth_rows(truth, frames, noisy["video"].stem).to_csv(tmp_path / "held.csv", index=False)
    held = refine.LabelSet.import_labels("rows", tmp_path / "held.csv", held_out=True)
    refine.HeldOutError.populate(est)
    row = (refine.HeldOutError & est & held).fetch1()
    estimate = noisy["frame"].droplevel(0, axis=1) if noisy["frame"].columns.nlevels == 3 else noisy["frame"]
    errors = np.concatenate(
        [
            np.hypot(
                estimate.loc[frames, (b, "x")].to_numpy() - truth.loc[frames, (b, "x")].to_numpy(),
                estimate.loc[frames, (b, "y")].to_numpy() - truth.loc[frames, (b, "y")].to_numpy(),
            )
            for b in synthetic.BODY_PARTS
        ]
    )
    errors = errors[np.isfinite(errors)]
    assert row["n_points"] == len(errors)
    assert row["median_error"] == pytest.approx(np.median(errors))
    assert row["max_error"] == pytest.approx(errors.max())
    # An estimation by a model of another project (here an external one) has no outliers to give it.
    with pytest.raises(InputError, match="not trained in project"):
        refine.OutlierTask.insert_task("rows", est)


def test_cropped_frames_keep_their_offset(pipeline, raw_root, new_session, camera, tmp_path):
    """Frames extracted with a crop hold the crop; labels in them measure estimations right."""
    refine, model = pipeline.refine, pipeline.model
    spec = synthetic.SyntheticSpec(n_frames=60)
    root = raw_root / "refine-crop"
    video = synthetic.make_video(root / "videos", spec, name="cropped")
    config = dlc.create_project("crop", "truth", video, root, bodyparts=list(synthetic.BODY_PARTS))
    rec = model.VideoRecording.insert_recording(new_session("rc"), 1, camera, [video])
    model.RecordingInfo.populate(rec)
    refine.Project.insert_project("crop", config)
    crop = [32, 96, 16, 112]
    idx = refine.ExtractionParamSet.insert_new_params("crop", {"numframes": 6, "crop": crop})
    with pytest.raises(InputError, match="crop"):
        refine.ExtractionParamSet.insert_new_params("bad crop", {"crop": [96, 32, 16, 112]})
    refine.FrameExtraction.insert1({"project_name": "crop", **rec, "extraction_paramset_idx": idx})
    refine.ExtractedFrames.populate(rec)
    row = (refine.ExtractedFrames & rec).fetch1()
    assert (row["crop_x"], row["crop_y"]) == (32, 16)
    frames = sorted(r["frame_index"] for r in (refine.ExtractedFrames.Frame & rec).to_dicts())
    from PIL import Image

    for f in frames:
        assert Image.open(config.parent / f"labeled-data/cropped/img{f:02d}.png").size == (64, 96)
    assert (
        dlc.read_config(config)["video_sets"][str(config.parent / "videos" / "cropped.mp4")]["crop"]
        == "32, 96, 16, 112"
    )

    # Labels in the crop's coordinates; a label past the crop is outside its image.
    truth = synthetic.ground_truth(spec)
    inside = [
        f
        for f in frames
        if (
            (truth.loc[f].xs("x", level="coords") - 32).between(0, 64).all()
            and (truth.loc[f].xs("y", level="coords") - 16).between(0, 96).all()
        )
    ]
    assert inside
    shifted = truth.copy()
    shifted.loc[:, (slice(None), "x")] -= 32
    shifted.loc[:, (slice(None), "y")] -= 16
    table = truth_rows(shifted, inside, "cropped")
    table.loc[0, "x"] = 70.0
    table.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(InputError, match="outside the image"):
        refine.LabelSet.import_labels("crop", tmp_path / "bad.csv", held_out=True)
    truth_rows(shifted, inside, "cropped").to_csv(tmp_path / "held.csv", index=False)
    held = refine.LabelSet.import_labels("crop", tmp_path / "held.csv", held_out=True)

    # The truth itself, imported as an estimation, is 0 px from the (shifted back) labels.
    estimate = truth.copy()
    for part in synthetic.BODY_PARTS:
        estimate[(part, "likelihood")] = 1.0
    estimate = estimate.reindex(
        columns=pd.MultiIndex.from_product(
            [synthetic.BODY_PARTS, ["x", "y", "likelihood"]], names=["bodyparts", "coords"]
        )
    )
    h5 = synthetic.write_dlc_h5(estimate, root / "cropped_DLC_truth.h5")
    model.Model.insert_external_model("crop-truth", list(synthetic.BODY_PARTS), "DeepLabCut")
    est = model.PoseEstimationTask.generate_import(rec, "crop-truth", h5, "DeepLabCut")
    model.PoseEstimation.populate(est)
    refine.HeldOutError.populate(est)
    assert (refine.HeldOutError & est & held).fetch1("max_error") == pytest.approx(0, abs=1e-9)
    # Deleting the session takes its frames, labels and errors with it (DataJoint's cascade).
    from typer.testing import CliRunner

    from workflow_deeplabcut.cli import app

    session = {"subject": rec["subject"], "session_datetime": str(rec["session_datetime"])}
    done = CliRunner().invoke(app, ["delete", *(f"{k}={v}" for k, v in session.items()), "--yes"])
    assert done.exit_code == 0, done.output
    assert not refine.ExtractedFrames & rec and not refine.LabelSet & held and not refine.HeldOutError & est
    assert refine.Project & {"project_name": "crop"}  # the project stays, and so do its files
    assert (config.parent / "labeled-data/cropped/HeldOut_truth.h5").is_file()
