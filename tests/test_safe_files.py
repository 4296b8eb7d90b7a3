"""No code runs from a data file: crafted pose files, meta pickles and snapshots are refused.

Each crafted file carries a payload that creates a marker file when unpickled. Every test first
proves its file is really harmful (the unrestricted reader creates the marker), then that the
pipeline refuses it with a clear message, writes nothing and leaves the marker uncreated.
"""

import os
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tables
import torch

from workflow_deeplabcut import imports, safe_io, synthetic
from workflow_deeplabcut.errors import UnsafeFileError

SRC = Path(__file__).resolve().parents[1] / "src" / "workflow_deeplabcut"


class Payload:
    """Unpickling this calls ``open(marker, "w")``: the marker file appears."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def craft_h5_attribute(h5: Path, marker: Path) -> None:
    """Add a pickled payload as an attribute of the frame's group (PyTables pickles it)."""
    with tables.open_file(h5, "a") as f:
        f.get_node("/df_with_missing")._v_attrs.note = Payload(marker)


def craft_h5_object_rows(h5: Path, marker: Path) -> None:
    """Add an ObjectAtom array whose row is the pickled payload."""
    with tables.open_file(h5, "a") as f:
        rows = f.create_vlarray("/df_with_missing", "extra", tables.ObjectAtom())
        rows.append(Payload(marker))


def test_the_payloads_are_real(tmp_path):
    """Unrestricted readers run the payloads: pandas.read_hdf, pickle.load, torch.load."""
    h5 = synthetic.write_dlc_outputs(tmp_path, "v", ["a"], 5)
    craft_h5_attribute(h5, tmp_path / "m1")
    pd.read_hdf(h5)
    assert (tmp_path / "m1").exists()
    meta = tmp_path / "meta.pickle"
    meta.write_bytes(pickle.dumps({"data": Payload(tmp_path / "m2")}))
    pickle.loads(meta.read_bytes())
    assert (tmp_path / "m2").exists()
    snapshot = tmp_path / "s.pt"
    torch.save({"model": {"w": torch.zeros(2)}, "extra": Payload(tmp_path / "m3")}, snapshot)
    # In a fresh process: this one forces weights-only loading once DeepLabCut is imported.
    env = {k: v for k, v in os.environ.items() if not k.startswith("TORCH_")}
    code = f"import torch; torch.load({str(snapshot)!r}, weights_only=False)"
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
    assert (tmp_path / "m3").exists()


def load_task_with_outputs(pipeline, session, camera, video, model_name, seed):
    """A load-mode task whose output folder holds DeepLabCut-layout outputs; returns (recording, key, h5)."""
    model = pipeline.model
    rec = model.VideoRecording.insert_recording(session, 1, camera, [video])
    model.RecordingInfo.populate(rec)
    key = {**rec, "model_name": model_name}
    folder = model.PoseEstimationTask.infer_output_dir(key, mkdir=True)
    h5 = synthetic.write_dlc_outputs(folder, "synthetic", list(synthetic.BODY_PARTS), 300, seed=seed)
    return rec, key, h5


@pytest.mark.parametrize("craft", [craft_h5_attribute, craft_h5_object_rows])
def test_crafted_h5_is_refused_in_load_mode(
    pipeline, new_session, camera, synthetic_video, model_name, tmp_path, craft
):
    model = pipeline.model
    marker = tmp_path / "marker"
    rec, key, h5 = load_task_with_outputs(
        pipeline, new_session("evilh5"), camera, synthetic_video, model_name, 1
    )
    craft(h5, marker)
    model.PoseEstimationTask.generate(rec, model_name, task_mode="load")
    result = model.PoseEstimation.populate(key, suppress_errors=True)
    assert not marker.exists()
    ((_, message),) = result["error_list"]
    assert "UnsafeFileError" in message and h5.name in message and "refused" in message, message
    assert not model.PoseEstimation & key and not model.PoseEstimation.BodyPartPosition & key


def test_crafted_meta_pickle_is_refused(pipeline, new_session, camera, synthetic_video, model_name, tmp_path):
    model = pipeline.model
    marker = tmp_path / "marker"
    rec, key, h5 = load_task_with_outputs(
        pipeline, new_session("evilmeta"), camera, synthetic_video, model_name, 2
    )
    meta = h5.with_name(h5.stem + "_meta.pickle")
    meta.write_bytes(pickle.dumps({"data": {"fps": 30.0, "Scorer": Payload(marker)}}))
    model.PoseEstimationTask.generate(rec, model_name, task_mode="load")
    result = model.PoseEstimation.populate(key, suppress_errors=True)
    assert not marker.exists()
    ((_, message),) = result["error_list"]
    assert "UnsafeFileError" in message and meta.name in message and "reference to io.open" in message, (
        message
    )
    assert not model.PoseEstimation & key
    # The same output with DeepLabCut's own (plain) meta file is accepted.
    meta.write_bytes(
        pickle.dumps({"data": {"fps": 30.0, "Scorer": h5.stem[len("synthetic") :], "nframes": 300}})
    )
    result = model.PoseEstimation.populate(key, suppress_errors=True)
    assert not result["error_list"], result["error_list"]
    assert len(model.PoseEstimation.BodyPartPosition & key) == len(synthetic.BODY_PARTS)


def test_crafted_h5_import_is_refused_and_leaves_nothing(pipeline, noisy, raw_root, tmp_path):
    model = pipeline.model
    marker = tmp_path / "marker"
    h5 = raw_root / "evil-import" / "evil.h5"
    h5.parent.mkdir(exist_ok=True)
    synthetic.write_dlc_h5(noisy["frame"], h5)
    craft_h5_attribute(h5, marker)
    recording = {k: noisy["key"][k] for k in ("subject", "session_datetime", "recording_id")}
    with pytest.raises(UnsafeFileError, match="refused"):
        imports.import_pose_file(h5, "DeepLabCut", recording, "evil-import")
    assert not marker.exists()
    assert not model.Model & {"model_name": "evil-import"}
    assert not model.PoseEstimationTask & {"model_name": "evil-import"}


def test_crafted_snapshot_is_refused_before_training(
    pipeline, trained, synthetic_project, raw_root, tmp_path
):
    """A training that starts from a crafted snapshot (init_weights) fails before DeepLabCut runs."""
    from workflow_deeplabcut.settings import to_relative

    train = pipeline.train
    marker = tmp_path / "marker"
    snapshot = raw_root / "evil-snapshot.pt"
    torch.save({"model": {"w": torch.zeros(2)}, "metadata": Payload(marker)}, snapshot)
    with pytest.raises(UnsafeFileError, match="weights only"):
        safe_io.check_snapshot(snapshot)
    params = {**(train.TrainingParamSet & trained).fetch1("params"), "init_weights": to_relative(snapshot)}
    params["shuffle"] = 7  # were the refusal to fail, the shared trained shuffle stays untouched
    idx = train.TrainingParamSet.insert_new_params("crafted init", params)
    key = {**trained, "paramset_idx": idx, "training_id": 99}
    train.TrainingTask.insert1({**key, "project_path": to_relative(synthetic_project.parent)})
    result = train.ModelTraining.populate(key, suppress_errors=True)
    assert not marker.exists()
    ((_, message),) = result["error_list"]
    assert "UnsafeFileError" in message and "evil-snapshot.pt" in message, message
    assert not train.ModelTraining & key


def test_training_set_pickles_are_vetted(synthetic_project, tmp_path):
    """DeepLabCut unpickles its Documentation_data pickle: a crafted one is refused first."""
    from workflow_deeplabcut import dlc

    project = synthetic_project.parent
    dlc.check_project_files(project)  # DeepLabCut's own files pass
    docs = sorted(project.glob("training-datasets/**/Documentation_data-*.pickle"))
    assert docs
    evil = tmp_path / "project"
    shutil.copytree(project, evil, ignore=shutil.ignore_patterns("*.mp4", "*.png", "dlc-models*"))
    target = next(evil.glob("training-datasets/**/Documentation_data-*.pickle"))
    target.write_bytes(pickle.dumps([Payload(tmp_path / "marker"), [], [], 0.8]))
    with pytest.raises(UnsafeFileError, match="reference to io.open"):
        dlc.check_project_files(evil)
    assert not (tmp_path / "marker").exists()


def test_safe_reader_matches_pandas_on_real_files(openfield_source, tmp_path):
    """The h5py reader gives what pandas gives, on DeepLabCut's files and pandas' layouts."""
    labels = openfield_source / "labeled-data" / "m4s1" / "CollectedData_Pranav.h5"
    pd.testing.assert_frame_equal(
        safe_io.read_pandas_hdf(labels), pd.read_hdf(labels), check_index_type=False
    )
    columns = pd.MultiIndex.from_product([["s"], ["a", "b"], ["x", "y", "likelihood"]])
    columns.names = ["scorer", "bodyparts", "coords"]
    frame = pd.DataFrame(np.random.default_rng(0).random((50, 6)), columns=columns)
    for layout in ("fixed", "table"):
        path = tmp_path / f"{layout}.h5"
        frame.to_hdf(path, key="df_with_missing", format=layout)
        pd.testing.assert_frame_equal(safe_io.read_pandas_hdf(path), frame, check_index_type=False)
    text = pd.DataFrame({"name": ["a", "b"]})
    text.to_hdf(tmp_path / "text.h5", key="df_with_missing", format="fixed")
    with pytest.raises(UnsafeFileError, match="only numbers are read"):
        safe_io.read_pandas_hdf(tmp_path / "text.h5")


def test_no_unsafe_reader_in_the_package():
    """The rule, on the source: no pickle.load, read_hdf, unsafe yaml, eval, shell=True, torch.load."""
    forbidden = {
        r"\bpickle\.loads?\(": "pickle.load: use safe_io.load_pickle",
        r"\bread_hdf\(": "pandas.read_hdf unpickles: use safe_io.read_pandas_hdf",
        r"\byaml\.load\(": "yaml.load: use yaml.safe_load",
        r"\byaml\.unsafe_load|\bUnsafeLoader|yaml\.Loader\b": "an unsafe YAML loader",
        r"YAML\(typ=['\"]unsafe": "ruamel's unsafe loader",
        r"(?<![\w.])eval\(|(?<![\w.])exec\(": "eval/exec",
        r"shell\s*=\s*True": "a shell",
        r"\bos\.system\(": "a shell",
    }
    found = []
    for path in sorted(SRC.rglob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#")[0]
            for pattern, why in forbidden.items():
                if re.search(pattern, code):
                    found.append(f"{path.name}:{number}: {why}: {line.strip()}")
            if "torch.load(" in code and "weights_only=True" not in code:
                found.append(f"{path.name}:{number}: torch.load without weights_only=True")
    assert not found, "\n".join(found)


def test_deeplabcut_names_stay_inert(tmp_path):
    """DeepLabCut's meta files name its enums: read as inert values, never imported or called."""

    class CallsDeepLabCut:
        def __reduce__(self):
            from deeplabcut.utils import auxiliaryfunctions

            return (auxiliaryfunctions.write_pickle, (str(tmp_path / "marker"), 1))

    path = tmp_path / "meta.pickle"
    path.write_bytes(pickle.dumps({"data": {"net": CallsDeepLabCut(), "fps": 30.0}}))
    data = safe_io.load_pickle(path)
    assert isinstance(data["data"]["net"], safe_io.Opaque) and data["data"]["fps"] == 30.0
    assert "write_pickle" in repr(data["data"]["net"])
    assert not (tmp_path / "marker").exists()
