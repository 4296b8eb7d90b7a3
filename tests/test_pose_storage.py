"""Pose storage: one array per estimation, DeepLabCut's bytes, windows that read only themselves."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pandas as pd
import pytest
from conftest import PROJECT_ROOT, insert_load_task, insert_model_row

from workflow_deeplabcut import dlc, synthetic
from workflow_deeplabcut.errors import InputError
from workflow_deeplabcut.posestore import FileRanges

PARTS = ["nose", "ear_left", "ear_right", "tail_base"]
N = 900


@pytest.fixture(scope="module")
def stored(pipeline, new_session, camera, processed_root):
    """One load-mode estimation of a 900-frame DeepLabCut output, float32 as DeepLabCut 3 writes."""
    name = insert_model_row(pipeline, "storage", PARTS)
    session_key = new_session("storage")
    rec = {**session_key, "recording_id": 1}
    out = processed_root / "storage" / "rec1"
    h5 = synthetic.write_dlc_outputs(out, "rec1", PARTS, N, seed=3)
    frame = pd.read_hdf(h5).astype(np.float32)
    frame.to_hdf(h5, key="df_with_missing", format="fixed", mode="w")
    task = insert_load_task(pipeline, rec, camera, name, out, N)
    pipeline.model.PoseEstimation.populate(task)
    return {"key": task, "h5": h5, "frame": pd.read_hdf(h5)}


def _store_file(pipeline, key):
    ref = (pipeline.model.PoseEstimation & key).fetch1("poses")
    return ref, ref._backend._full_path(ref.path)


def test_one_file_holding_deeplabcuts_bytes(pipeline, stored):
    ref, path = _store_file(pipeline, stored["key"])
    assert ref.shape == (N, len(PARTS), 3) and ref.dtype == np.float32
    # One .npy for the whole estimation (not five per body part).
    folder = os.path.dirname(path)
    assert [f for f in os.listdir(folder) if f.endswith(".npy")] == [os.path.basename(path)]
    with h5py.File(stored["h5"], "r") as f:
        raw = f["df_with_missing/block0_values"][()].tobytes()
    stored_bytes = np.load(path, mmap_mode="r")
    assert stored_bytes.tobytes() == raw  # bit for bit, float32 kept
    traj = pipeline.model.PoseEstimation.get_trajectory(stored["key"])
    np.testing.assert_array_equal(traj.to_numpy(), stored["frame"].to_numpy())
    assert [c[1:] for c in traj.columns] == [c[1:] for c in stored["frame"].columns]
    assert traj.index[0] == 0 and traj.index[-1] == N - 1
    slots = (pipeline.model.PoseEstimation.BodyPartPosition & stored["key"]).to_dicts()
    assert sorted((r["slot"], r["body_part"]) for r in slots) == list(enumerate(PARTS))


def test_windows_read_only_their_frames_and_parts(pipeline, stored):
    model = pipeline.model
    window = model.PoseEstimation.window(stored["key"], 300, 360)
    assert isinstance(window.values, np.memmap) and window.nframes == 60  # a view of the file
    window = model.PoseEstimation.window(stored["key"], 300, 360, ["ear_right", "ear_left"])
    assert isinstance(window.values, np.memmap)  # neighbouring slots: still a view
    window = model.PoseEstimation.window(stored["key"], 300, 360, ["tail_base", "nose"])
    assert window.slots == [("individual_0", "nose"), ("individual_0", "tail_base")]
    assert window.values.shape == (60, 2, 3)  # the 60 frames of the two slots only are copied
    part = model.PoseEstimation.get_trajectory(stored["key"], ["tail_base", "nose"], start=300, stop=360)
    expected = stored["frame"].iloc[300:360][
        [c for c in stored["frame"].columns if c[1] in ("nose", "tail_base")]
    ]
    np.testing.assert_array_equal(part.to_numpy(), expected.to_numpy())
    assert list(part.index) == list(range(300, 360))
    ds = model.PoseEstimation.get_dataset(stored["key"], start=300, stop=360)
    assert ds.sizes["time"] == 60 and ds.time.values[0] == pytest.approx(10.0)
    np.testing.assert_array_equal(
        ds.position.sel(keypoints="ear_left", space="x").values.ravel(),
        stored["frame"].iloc[300:360][(stored["frame"].columns[0][0], "ear_left", "x")].to_numpy(),
    )


def test_info_reads_no_array(pipeline, stored):
    model = pipeline.model
    _, path = _store_file(pipeline, stored["key"])
    moved = path + ".away"
    shutil.move(path, moved)
    try:
        info = model.PoseEstimation.info(stored["key"])
        with pytest.raises(FileNotFoundError):
            model.PoseEstimation.window(stored["key"])
    finally:
        shutil.move(moved, path)
    assert info["nframes"] == N and info["shape"] == (N, len(PARTS), 3) and info["fps"] == 30.0
    assert info["body_parts"] == sorted(PARTS) and info["coords"] == ("x", "y", "likelihood")


@pytest.mark.parametrize(
    "window, message",
    [
        ({"start": 50, "stop": 50}, "0 <= start < stop"),
        ({"start": 0, "stop": N + 1}, "0 <= start < stop"),
        ({"start": -5}, "0 <= start < stop"),
        ({"body_parts": ["wing"]}, "Unknown body part"),
    ],
)
def test_bad_windows_are_refused(pipeline, stored, window, message):
    with pytest.raises(InputError, match=message):
        pipeline.model.PoseEstimation.get_trajectory(stored["key"], **window)


def test_outputs_of_several_videos_are_copied_in_order(tmp_path):
    first = synthetic.write_dlc_outputs(tmp_path, "part1", PARTS, 120, seed=1)
    second = synthetic.write_dlc_outputs(tmp_path, "part2", PARTS, 80, seed=2)
    out = dlc.read_outputs(tmp_path, ["part1", "part2"])
    assert isinstance(out.poses, FileRanges) and len(out.poses.pieces) == 2
    both = pd.concat([pd.read_hdf(first), pd.read_hdf(second)]).to_numpy()
    np.testing.assert_array_equal(out.array().reshape(200, -1), both)
    assert out.nframes == 200 and out.slots == [("individual_0", p) for p in PARTS]


@pytest.mark.parametrize(
    "layout",
    ["table", "compressed", "columns shuffled"],
)
def test_other_pandas_layouts_are_read_then_stored(tmp_path, layout):
    """Files not laid out as DeepLabCut's own are read (not copied) and give the same values."""
    h5 = synthetic.write_dlc_outputs(tmp_path, "rec", PARTS, 150, seed=4)
    frame = pd.read_hdf(h5)
    h5.unlink()
    if layout == "table":
        frame.to_hdf(h5, key="df_with_missing", format="table")
    elif layout == "compressed":
        frame.to_hdf(h5, key="df_with_missing", format="fixed", complevel=5, complib="zlib")
    else:
        frame[list(reversed(frame.columns))].to_hdf(h5, key="df_with_missing", format="fixed")
    out = dlc.read_outputs(tmp_path, ["rec"])
    assert isinstance(out.poses, np.ndarray)
    assert out.slots == [
        ("individual_0", p) for p in (PARTS if layout != "columns shuffled" else PARTS[::-1])
    ]
    for k, (_, part) in enumerate(out.slots):
        for j, coord in enumerate(out.coords):
            np.testing.assert_array_equal(
                out.poses[:, k, j], frame[(frame.columns[0][0], part, coord)].to_numpy()
            )


def test_pipeline_import_loads_no_heavy_library(pipeline):
    """Importing the pipeline (tables declared) pulls in no engine: DeepLabCut, torch, NWB, movement."""
    code = (
        "import sys, workflow_deeplabcut.pipeline; "
        "print(sorted(m for m in ('deeplabcut', 'torch', 'pynwb', 'movement', 'cv2', 'matplotlib', 'numba') "
        "if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        env=dict(os.environ),
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_an_array_file_cut_short_is_never_stored(tmp_path):
    """A write that stops early (a full disk, a source cut short) raises; nothing is renamed in."""
    from workflow_deeplabcut.posestore import check_npy, write_npy

    source = tmp_path / "values.bin"
    source.write_bytes(np.arange(100, dtype=np.float64).tobytes())
    ranges = FileRanges(np.dtype(np.float64), (50, 2, 1), ((str(source), 0, 800),))
    with open(tmp_path / "whole.npy", "wb") as f:
        write_npy(f, ranges)
    check_npy(tmp_path / "whole.npy", np.float64, (50, 2, 1))
    np.testing.assert_array_equal(np.load(tmp_path / "whole.npy").ravel(), np.arange(100.0))
    cut = tmp_path / "cut.npy"
    cut.write_bytes((tmp_path / "whole.npy").read_bytes()[:-8])
    with pytest.raises(OSError, match="incomplete array file"):
        check_npy(cut, np.float64, (50, 2, 1))
    source.write_bytes(source.read_bytes()[:400])  # the source shrank after it was checked
    with pytest.raises(OSError, match="ended 400 bytes before"), open(tmp_path / "short.npy", "wb") as f:
        write_npy(f, ranges)


def _multi_animal_frame(n: int, seed: int = 0) -> pd.DataFrame:
    """A DeepLabCut multi-animal output: two mice with nose and tail, and one unique part."""
    names = ["scorer", "individuals", "bodyparts", "coords"]
    coords = ["x", "y", "likelihood"]
    columns = pd.MultiIndex.from_product(
        [["DLC_ma"], ["mouse1", "mouse2"], ["nose", "tail"], coords], names=names
    )
    columns = columns.append(
        pd.MultiIndex.from_product([["DLC_ma"], ["single"], ["corner"], coords], names=names)
    )
    return pd.DataFrame(np.random.default_rng(seed).random((n, len(columns))), columns=columns)


def test_multi_animal_outputs_are_stored_per_individual(pipeline, new_session, camera, processed_root):
    name = insert_model_row(pipeline, "ma-storage", ["nose", "tail", "corner"])
    rec = {**new_session("ma"), "recording_id": 1}
    out = processed_root / "ma" / "rec1"
    out.mkdir(parents=True)
    frame = _multi_animal_frame(240)
    frame.to_hdf(out / "rec1DLC_ma.h5", key="df_with_missing", format="fixed")
    task = insert_load_task(pipeline, rec, camera, name, out, 240)
    model = pipeline.model
    model.PoseEstimation.populate(task)
    slots = sorted(
        (r["slot"], r["individual"], r["body_part"])
        for r in (model.PoseEstimation.BodyPartPosition & task).to_dicts()
    )
    assert [s[1:] for s in slots] == [
        ("mouse1", "nose"),
        ("mouse1", "tail"),
        ("mouse2", "nose"),
        ("mouse2", "tail"),
        ("single", "corner"),
    ]
    traj = model.PoseEstimation.get_trajectory(task)
    assert traj.columns.names == ["scorer", "individuals", "bodyparts", "coords"]
    np.testing.assert_array_equal(traj.to_numpy(), frame.to_numpy())
    nose = model.PoseEstimation.get_trajectory(task, "nose", start=10, stop=20)
    assert set(nose.columns.get_level_values("individuals")) == {"mouse1", "mouse2"}
    ds = model.PoseEstimation.get_dataset(task)
    assert list(ds.individuals.values) == ["mouse1", "mouse2", "single"]
    pipeline.qc.PoseQC.populate(task)
    assert len(pipeline.qc.PoseQC.BodyPart & task) == 5


def test_3d_outputs_keep_z(tmp_path):
    names = ["scorer", "bodyparts", "coords"]
    columns = pd.MultiIndex.from_product(
        [["DLC_3d"], ["nose", "tail"], ["x", "y", "z", "likelihood"]], names=names
    )
    frame = pd.DataFrame(np.random.default_rng(1).random((30, 8)), columns=columns)
    frame.to_hdf(tmp_path / "recDLC_3d.h5", key="df_with_missing", format="fixed")
    out = dlc.read_outputs(tmp_path, ["rec"])
    assert out.coords == ("x", "y", "z", "likelihood") and isinstance(out.poses, FileRanges)
    from workflow_deeplabcut.rows import PoseWindow

    window = PoseWindow(out.array(), out.slots, out.coords)
    np.testing.assert_array_equal(
        window.arrays()[("individual_0", "tail")]["z_pos"], frame[("DLC_3d", "tail", "z")]
    )
    np.testing.assert_array_equal(window.frame("DLC_3d").to_numpy(), frame.to_numpy())


def test_a_file_without_descriptor_gets_the_same_bytes(tmp_path):
    """An object store's file (no descriptor, as fsspec's): the ranges go through a buffer."""
    import io

    from workflow_deeplabcut.posestore import write_npy

    h5 = synthetic.write_dlc_outputs(tmp_path, "rec", PARTS, 64, seed=5)
    out = dlc.read_outputs(tmp_path, ["rec"])
    buffer = io.BytesIO()
    write_npy(buffer, out.poses)
    buffer.seek(0)
    np.testing.assert_array_equal(np.load(buffer).reshape(64, -1), pd.read_hdf(h5).to_numpy())
