"""Labs coming from DeepLabCut 2.x and element-deeplabcut (issue 11): TensorFlow models register
for load mode, legacy output folders load the right file and are never written into, and
element's calls run.

The DeepLabCut 2.x project and outputs are written here, in DeepLabCut 2.x's own layout and
naming (``dlc-models``, ``snapshot-N.index``, ``pose_cfg.yaml``, ``DLC_resnet50_…``/
``DeepCut_resnet50_…`` files in ``table`` format, ``_meta.pickle``, ``_filtered``, ``_el``).
"""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import OPENFIELD, insert_load_task
from ruamel.yaml import YAML

PARTS = ["snout", "leftear", "rightear", "tailbase"]  # the config's order, not sorted
NFRAMES = 40
SCORER = "DLC_resnet50_openfieldOct30shuffle1_1030000"
OLDER = "DLC_resnet50_openfieldOct30shuffle1_500000"
DEEPCUT = "DeepCut_resnet50_openfieldOct30shuffle1_200000"


def write_tf_project(folder: Path) -> Path:
    """A DeepLabCut 2.x project: the openfield config without ``engine``, a trained TF shuffle 1."""
    yaml = YAML()
    cfg = yaml.load((OPENFIELD / "config.yaml").read_text())
    del cfg["engine"]
    cfg["project_path"] = str(folder)
    cfg["video_sets"] = {str(folder / "videos" / "m3v1mp4.mp4"): {"crop": "0, 640, 0, 480"}}
    folder.mkdir(parents=True)
    with open(folder / "config.yaml", "w") as fh:
        yaml.dump(cfg, fh)
    model = folder / "dlc-models" / "iteration-0" / "openfieldOct30-trainset95shuffle1"
    pose_cfg = {"net_type": "resnet_50", "all_joints_names": PARTS, "num_joints": len(PARTS)}
    for sub in ("train", "test"):
        (model / sub).mkdir(parents=True)
        with open(model / sub / "pose_cfg.yaml", "w") as fh:
            YAML(typ="safe", pure=True).dump(pose_cfg, fh)
    for iterations in (500000, 1030000):  # a TF checkpoint is three files
        for suffix in (".index", ".meta", ".data-00000-of-00001"):
            (model / "train" / f"snapshot-{iterations}{suffix}").write_bytes(b"\0")
    return folder / "config.yaml"


def dlc2_frame(scorer: str, seed: int, individuals: list[str] | None = None) -> pd.DataFrame:
    """Pose values as DeepLabCut 2.x writes them (multi-animal: with an ``individuals`` level)."""
    rng = np.random.default_rng(seed)
    if individuals is None:
        levels = [[scorer], PARTS, ["x", "y", "likelihood"]]
        columns = pd.MultiIndex.from_product(levels, names=["scorer", "bodyparts", "coords"])
    else:
        tuples = [
            (scorer, ind, bp, c)
            for ind in individuals
            for bp in (["tailbase"] if ind == "single" else ["snout", "leftear", "rightear"])
            for c in ("x", "y", "likelihood")
        ]
        columns = pd.MultiIndex.from_tuples(tuples, names=["scorer", "individuals", "bodyparts", "coords"])
    values = rng.uniform(0, 640, size=(NFRAMES, len(columns)))
    values[:, 2::3] = rng.uniform(0, 1, size=(NFRAMES, len(columns) // 3))
    values[3, :3] = np.nan  # DeepLabCut 2.x leaves undetected points empty in tracks
    return pd.DataFrame(values, columns=columns)


def write_output(folder: Path, stem: str, scorer: str, seed: int, suffix: str = "", key="df_with_missing"):
    """Write ``<stem><scorer><suffix>.h5`` (table format, as DeepLabCut 2.x does) and its CSV."""
    frame = dlc2_frame(scorer, seed, ["mouse1", "mouse2", "single"] if key == "tracks" else None)
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_hdf(folder / f"{stem}{scorer}{suffix}.h5", key=key, format="table", mode="w")
    frame.to_csv(folder / f"{stem}{scorer}{suffix}.csv")
    return frame


def write_meta(folder: Path, stem: str, scorer: str) -> None:
    meta = {"data": {"Scorer": scorer, "fps": 30.0, "nframes": NFRAMES, "iteration (active-learning)": 0}}
    (folder / f"{stem}{scorer}_meta.pickle").write_bytes(pickle.dumps(meta))


def legacy_folder(folder: Path, stem: str) -> dict[str, pd.DataFrame]:
    """A DeepLabCut 2.x output folder: newer and older snapshots, filtered, csv, DeepCut naming."""
    frames = {
        "newest": write_output(folder, stem, SCORER, 1),
        "filtered": write_output(folder, stem, SCORER, 2, "_filtered"),
        "older": write_output(folder, stem, OLDER, 3),
        "deepcut": write_output(folder, stem, DEEPCUT, 4),
    }
    for scorer in (SCORER, OLDER):
        write_meta(folder, stem, scorer)
    meta = {"data": {"Scorer": DEEPCUT, "nframes": NFRAMES}}  # DeepLabCut 2.0 named its meta file so
    (folder / f"{stem}{DEEPCUT}includingmetadata.pickle").write_bytes(pickle.dumps(meta))
    (folder / f"{stem}{SCORER}_labeled.mp4").write_bytes(b"not a video")
    return frames


def listing(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def tf_project(raw_root) -> Path:
    return write_tf_project(raw_root / "legacy" / "openfield-Pranav-2018-10-30")


@pytest.fixture(scope="module")
def tf_model(pipeline, tf_project) -> str:
    pipeline.model.Model.insert_new_model("openfield-tf", tf_project, shuffle=1, trainingsetindex=0)
    return "openfield-tf"


@pytest.fixture(scope="module")
def tf_model_older(pipeline, tf_project) -> str:
    """The same shuffle at its first snapshot (500,000 iterations)."""
    pipeline.model.Model.insert_new_model(
        "openfield-tf-500k", tf_project, shuffle=1, trainingsetindex=0, params={"snapshotindex": 0}
    )
    return "openfield-tf-500k"


# ---------------------------------------------------------------------- choosing the file
def test_output_choice_rules(tmp_path):
    """The model's scorer wins; filtered, snapshot, scorer and tracks choose; ambiguity is named."""
    from workflow_deeplabcut import dlc

    folder = tmp_path / "out"
    legacy_folder(folder, "rec1")
    write_output(folder, "rec10", SCORER, 5)  # another video whose name starts alike

    def pick(prefer=(), **choice):
        return dlc.find_outputs(folder, ["rec1"], prefer=prefer, choice=choice)[0].name

    assert pick(prefer=(SCORER,)) == f"rec1{SCORER}.h5"
    assert pick(prefer=(SCORER,), filtered=True) == f"rec1{SCORER}_filtered.h5"
    assert pick(snapshot=500000) == f"rec1{OLDER}.h5"
    assert pick(prefer=(SCORER,), scorer=OLDER) == f"rec1{OLDER}.h5"
    # Either spelling of a pre-2.1 scorer names its DeepCut_ file.
    assert pick(scorer="DLC_resnet50_openfieldOct30shuffle1_200000") == f"rec1{DEEPCUT}.h5"
    assert (
        pick(prefer=dlc.legacy_scorers("DLC_resnet50_openfieldOct30shuffle1_200000")) == f"rec1{DEEPCUT}.h5"
    )
    with pytest.raises(dlc.DLCOutputError, match="Several DeepLabCut outputs for rec1") as err:
        pick()
    assert all(f"rec1{s}.h5" in str(err.value) for s in (SCORER, OLDER, DEEPCUT)) and "rec10" not in str(
        err.value
    )
    assert "'scorer'" in str(err.value)
    with pytest.raises(dlc.DLCOutputError, match=r"matches the task's choice \{'snapshot': 7\}") as err:
        pick(snapshot=7)
    assert f"rec1{SCORER}_filtered.h5" in str(err.value)
    with pytest.raises(dlc.DLCOutputError, match="'filtered' must be True or False"):
        pick(filtered="yes")
    # A DeepLabCut 2.0 meta file is read (safely) and checked like a _meta.pickle.
    out = dlc.read_outputs(folder, ["rec1"], choice={"scorer": DEEPCUT})
    assert out.scorer == DEEPCUT
    meta = {"data": {"Scorer": OLDER}}
    (folder / f"rec1{DEEPCUT}includingmetadata.pickle").write_bytes(pickle.dumps(meta))
    with pytest.raises(dlc.DLCOutputError, match="includingmetadata.pickle names the scorer"):
        dlc.read_outputs(folder, ["rec1"], choice={"scorer": DEEPCUT})
    # Multi-animal: stitched tracks (_el) when there is no plain file; tracks chooses.
    write_output(folder, "ma", SCORER, 6, "_el", key="tracks")
    write_output(folder, "ma", SCORER, 7, "_bx", key="tracks")
    assert dlc.find_outputs(folder, ["ma"])[0].name == f"ma{SCORER}_el.h5"
    assert dlc.find_outputs(folder, ["ma"], choice={"tracks": "bx"})[0].name == f"ma{SCORER}_bx.h5"


# ---------------------------------------------------------------------- TensorFlow models
def test_tensorflow_model_registers_for_load_mode(pipeline, tf_model, tf_model_older, tf_project):
    """A DeepLabCut 2.x project's trained TF shuffle registers, with DeepLabCut 2.x's scorer."""
    model = pipeline.model
    row = (model.Model & {"model_name": tf_model}).fetch1()
    assert row["engine"] == "tensorflow" and row["scorer"] == SCORER
    assert row["snapshotindex"] == 1 and row["iteration"] == 0 and row["task"] == "openfield"
    assert sorted(
        r["body_part"] for r in (model.Model.BodyPart & {"model_name": tf_model}).to_dicts()
    ) == sorted(PARTS)
    assert (model.Model & {"model_name": tf_model_older}).fetch1("scorer") == OLDER
    # The project itself is not touched (no metadata file, no config edit).
    assert sorted(p.name for p in tf_project.parent.iterdir()) == ["config.yaml", "dlc-models"]


def test_tensorflow_model_bad_input(pipeline, tf_model, tf_project, raw_root):
    from workflow_deeplabcut import dlc

    models = pipeline.model.Model
    with pytest.raises(
        dlc.DLCConfigError, match=r"snapshotindex 5 is out of range.*TensorFlow snapshot\(s\)"
    ):
        models.insert_new_model(
            "tf-bad", tf_project, shuffle=1, trainingsetindex=0, params={"snapshotindex": 5}
        )
    with pytest.raises(dlc.DLCConfigError, match="no TensorFlow snapshot"):
        models.insert_new_model("tf-bad", tf_project, shuffle=2, trainingsetindex=0, params={"engine": "tf"})
    renamed = raw_root / "legacy-renamed" / "openfield-Pranav-2018-10-30"
    shutil.copytree(tf_project.parent, renamed)
    dlc.edit_config(renamed, {"bodyparts": ["nose", *PARTS[1:]], "project_path": str(renamed)})
    with pytest.raises(dlc.DLCConfigError, match=r"TensorFlow shuffle 1 was trained on \['snout'"):
        models.insert_new_model("tf-bad", renamed, shuffle=1, trainingsetindex=0)
    assert not models & {"model_name": "tf-bad"}


def test_tensorflow_model_does_not_run(pipeline, tf_model, new_session, camera, processed_root):
    """Trigger mode on a TF model is refused at the task and at populate, saying how to retrain."""
    from workflow_deeplabcut import dlc

    model = pipeline.model
    rec = {**new_session("tfrun"), "recording_id": 1}
    empty = processed_root / "legacy-empty"
    empty.mkdir(parents=True)
    task = insert_load_task(pipeline, rec, camera, tf_model, empty, NFRAMES)
    (model.PoseEstimationTask & task).delete_quick()
    with pytest.raises(dlc.DLCConfigError, match=r"TensorFlow model.*train a PyTorch model.*'shuffle': 2"):
        model.PoseEstimationTask.generate(rec, tf_model, output_dir=empty)  # no outputs: would trigger
    assert not model.PoseEstimationTask & task
    model.PoseEstimationTask.insert1({**task, "task_mode": "trigger"})
    result = model.PoseEstimation.populate(task, suppress_errors=True)
    assert len(result["error_list"]) == 1 and "TensorFlow model" in str(result["error_list"][0])
    assert not model.PoseEstimation & task and list(empty.iterdir()) == []
    (model.PoseEstimationTask & task).delete_quick()  # no failing work left for other tests' `run`


def test_legacy_folder_loads_the_models_file_and_stays_untouched(
    pipeline, tf_model, tf_model_older, new_session, camera, processed_root
):
    """Automatic mode loads (it never runs DeepLabCut into a lab's folder); the model's file is
    read bit for bit, with its scorer and the file's body-part order; nothing there changes."""
    model = pipeline.model
    rec = {**new_session("legacy"), "recording_id": 1}
    folder = processed_root / "legacy-outputs"
    stem = f"rec{rec['recording_id']}"
    frames = legacy_folder(folder, stem)
    task = insert_load_task(pipeline, rec, camera, tf_model, folder, NFRAMES)
    (model.PoseEstimationTask & task).delete_quick()
    before = listing(folder)
    assert model.PoseEstimationTask.generate(rec, tf_model, output_dir=folder) == task
    assert (model.PoseEstimationTask & task).fetch1("task_mode") == "load"
    result = model.PoseEstimation.populate(task, suppress_errors=True)
    assert not result["error_list"], result["error_list"]
    assert listing(folder) == before
    assert (model.PoseEstimation & task).fetch1("scorer") == SCORER
    got = model.PoseEstimation.get_trajectory(task)
    assert list(got.columns.get_level_values("bodyparts").unique()) == PARTS
    expected = frames["newest"].to_numpy()
    assert np.array_equal(got.to_numpy(), expected, equal_nan=True)

    # The older model of the same project loads its own (older) file; a choice picks the filtered one.
    older = model.PoseEstimationTask.generate(rec, tf_model_older, output_dir=folder)
    other = {**new_session("legacy-f"), "recording_id": 1}  # its video is also rec1: same folder
    ftask = insert_load_task(pipeline, other, camera, tf_model, folder, NFRAMES)
    (model.PoseEstimationTask & ftask).delete_quick()
    model.PoseEstimationTask.generate(
        other, tf_model, output_dir=folder, analyze_videos_params={"filtered": True}
    )
    result = model.PoseEstimation.populate([older, ftask], suppress_errors=True)
    assert not result["error_list"], result["error_list"]
    assert listing(folder) == before
    assert (model.PoseEstimation & older).fetch1("scorer") == OLDER
    for key, which in ((older, "older"), (ftask, "filtered")):
        got = model.PoseEstimation.get_trajectory(key).to_numpy()
        assert np.array_equal(got, frames[which].to_numpy(), equal_nan=True), which


def test_legacy_multi_animal_tracks_load_bit_equal(pipeline, raw_root, new_session, camera, processed_root):
    """A DeepLabCut 2.x multi-animal project (DLCRNet) registers; its stitched tracks (``_el.h5``,
    HDF key ``tracks``) load with one slot per individual and body part, values bit-equal."""
    model = pipeline.model
    project = raw_root / "legacy-ma" / "openfield-Pranav-2018-10-30"
    config = write_tf_project(project)
    yaml = YAML()
    cfg = yaml.load(config.read_text())
    cfg.update(
        multianimalproject=True,
        individuals=["mouse1", "mouse2"],
        multianimalbodyparts=PARTS[:3],
        uniquebodyparts=["tailbase"],
        bodyparts="MULTI!",
    )
    with open(config, "w") as fh:
        yaml.dump(cfg, fh)
    for sub in ("train", "test"):
        pose_cfg = (
            project / "dlc-models/iteration-0/openfieldOct30-trainset95shuffle1" / sub / "pose_cfg.yaml"
        )
        trained = {"net_type": "resnet_50", "multi_stage": True, "all_joints_names": PARTS}
        with open(pose_cfg, "w") as fh:
            YAML(typ="safe", pure=True).dump(trained, fh)
    model.Model.insert_new_model("openfield-ma-tf", config, shuffle=1, trainingsetindex=0)
    scorer = (model.Model & {"model_name": "openfield-ma-tf"}).fetch1("scorer")
    assert scorer == "DLC_dlcrnetms5_openfieldOct30shuffle1_1030000"

    rec = {**new_session("legacy-ma"), "recording_id": 1}
    folder = processed_root / "legacy-ma-outputs"
    frame = write_output(folder, "rec1", scorer, 8, "_el", key="tracks")
    write_meta(folder, "rec1", scorer)
    (folder / f"rec1{scorer}_full.pickle").write_bytes(pickle.dumps({"metadata": {}}))
    task = insert_load_task(pipeline, rec, camera, "openfield-ma-tf", folder, NFRAMES)
    before = listing(folder)
    result = model.PoseEstimation.populate(task, suppress_errors=True)
    assert not result["error_list"], result["error_list"]
    assert listing(folder) == before
    slots = (model.PoseEstimation.BodyPartPosition & task).to_pandas().reset_index()
    assert sorted(zip(slots["individual"], slots["body_part"], strict=True)) == sorted(
        [(i, b) for i in ("mouse1", "mouse2") for b in PARTS[:3]] + [("single", "tailbase")]
    )
    got = model.PoseEstimation.get_trajectory(task)
    assert list(got.columns.droplevel(0)) == list(frame.columns.droplevel(0))
    assert np.array_equal(got.to_numpy(), frame.to_numpy(), equal_nan=True)
    # Cleaning, kinematics and QC take it as it is: no row for a grid cell that is no body part
    # of the estimation (an individual's unique part), where a foreign key refused them before.
    pp, qc = pipeline.postprocess, pipeline.qc
    idx = pp.PostprocessParamSet.insert_new_params("legacy ma", {"likelihood_threshold": 0.1, "window": 5})
    ptask = pp.PostprocessTask.generate(task, idx)
    for table in (pp.CleanedTrajectory, pp.Kinematics, qc.PoseQC):
        result = table.populate(ptask if table is not qc.PoseQC else task, suppress_errors=True)
        assert not result["error_list"], (table.__name__, result["error_list"])
    expected_slots = sorted(zip(slots["individual"], slots["body_part"], strict=True))
    for part in (pp.CleanedTrajectory.BodyPart, pp.Kinematics.BodyPart):
        rows = (part & ptask).to_dicts()
        assert sorted((r["individual"], r["body_part"]) for r in rows) == expected_slots, part.__name__
    assert sorted(r["individual"] for r in (pp.Kinematics.Individual & ptask).to_dicts()) == [
        "mouse1",
        "mouse2",
        "single",
    ]


# ---------------------------------------------------------------------- element-deeplabcut's calls
def test_element_training_params_are_mapped_or_refused(pipeline):
    """element's param sets (the whole config plus DLC 2.x arguments) map to PyTorch's meaning;
    what has none is refused, every such key named, and nothing inserted."""
    train = pipeline.train
    config = YAML(typ="safe", pure=True).load((OPENFIELD / "config.yaml").read_text())
    element = {**config, "shuffle": 1, "trainingsetindex": 0, "maxiters": "5", "scorer_legacy": "False"}
    before = len(train.TrainingParamSet())
    with pytest.raises(ValueError, match=r"'maxiters' \(TensorFlow iterations; give 'epochs'") as err:
        train.TrainingParamSet.insert_new_params("element", element | {"allow_growth": True})
    assert "'allow_growth'" in str(err.value) and "'Task'" not in str(err.value)
    assert len(train.TrainingParamSet()) == before

    mapped = {k: v for k, v in element.items() if k != "maxiters"} | {
        "epochs": "5",
        "displayiters": 10,
        "max_snapshots_to_keep": 3,
        "gputouse": 0,
        "keepdeconvweights": True,
    }
    idx = train.TrainingParamSet.insert_new_params("element mapped", mapped)
    stored = (train.TrainingParamSet & {"paramset_idx": idx}).fetch1("params")
    assert stored == {
        "shuffle": 1,
        "trainingsetindex": 0,
        "epochs": 5,
        "batch_size": config["batch_size"],  # element passed the config's batch_size to training
        "iteration": 0,
        "device": "cuda:0",
        "pytorch_cfg_updates": {"train_settings.display_iters": 10, "runner.snapshots.max_snapshots": 3},
    }
    # The same params again are the same set; our own form of them too.
    assert train.TrainingParamSet.insert_new_params("again", mapped) == idx
    assert train.TrainingParamSet.insert_new_params("ours", stored) == idx


def test_element_model_and_task_calls(
    pipeline, tf_model, tf_project, raw_root, new_session, camera, monkeypatch
):
    """insert_new_model(prompt=True) takes "yes" as element's did; insert_estimation_task takes
    element 0.1's (key, task_mode, params) and skip_duplicates."""
    from workflow_deeplabcut import dlc

    model = pipeline.model
    copy = raw_root / "legacy-prompt" / "openfield-Pranav-2018-10-30"
    shutil.copytree(tf_project.parent, copy)
    dlc.edit_config(copy, {"project_path": str(copy)})
    answers = iter(["no", "yes"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(answers))
    assert model.Model.insert_new_model("tf-asked", copy, shuffle=1, trainingsetindex=0, prompt=True) == {}
    assert not model.Model & {"model_name": "tf-asked"}
    assert model.Model.insert_new_model("tf-asked", copy, shuffle=1, trainingsetindex=0, prompt=True) == {
        "model_name": "tf-asked"
    }

    rec = {**new_session("element"), "recording_id": 1}
    task = insert_load_task(pipeline, rec, camera, tf_model, raw_root, NFRAMES)
    (model.PoseEstimationTask & task).delete_quick()
    key = model.PoseEstimationTask.insert_estimation_task(task, task_mode="load", params={"scorer": SCORER})
    assert key == task
    row = (model.PoseEstimationTask & task).fetch1()
    assert row["task_mode"] == "load" and row["pose_estimation_params"] == {"scorer": SCORER}
    assert model.PoseEstimationTask.insert_estimation_task(task, skip_duplicates=True) == task
    assert len(model.PoseEstimationTask & task) == 1
    (model.PoseEstimationTask & task).delete_quick()  # its folder holds no outputs: not work for `run`


def test_multi_animal_file_imports(pipeline, raw_root, new_session, camera):
    """A DeepLabCut multi-animal file with unique body parts (`_el.h5`, HDF key `tracks`, and its
    CSV) imports as an external estimation with the file's own slots, values bit-equal (movement
    alone refuses it: its individuals x body parts is no full grid)."""
    from workflow_deeplabcut import imports

    model = pipeline.model
    folder = raw_root / "ma-import"
    frame = write_output(folder, "rec1", SCORER, 11, "_el", key="tracks")
    rec = {**new_session("ma-import"), "recording_id": 1}
    model.VideoRecording.insert1({**rec, "device": camera})
    model.VideoRecording.File.insert1({**rec, "file_id": 0, "file_path": "videos/rec1.mp4"})
    model.RecordingInfo.insert1(
        {
            **rec,
            "px_height": 480,
            "px_width": 640,
            "nframes": NFRAMES,
            "fps": 30.0,
            "recording_duration": 4 / 3,
        },
        allow_direct_insert=True,
    )
    for suffix in ("h5", "csv"):
        key = imports.import_pose_file(
            folder / f"rec1{SCORER}_el.{suffix}", "DeepLabCut", rec, f"ma-{suffix}"
        )
        slots = (model.PoseEstimation.BodyPartPosition & key).to_dicts()
        assert len(slots) == 7 and {(s["individual"], s["body_part"]) for s in slots} >= {
            ("single", "tailbase")
        }
        got = model.PoseEstimation.get_trajectory(key)
        assert list(got.columns.droplevel(0)) == list(frame.columns.droplevel(0)), suffix
        assert np.array_equal(got.to_numpy(), frame.to_numpy(), equal_nan=True), suffix
        assert (model.PoseEstimation & key).fetch1("scorer") == SCORER
