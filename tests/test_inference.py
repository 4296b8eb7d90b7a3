"""Our inference engine (workflow_deeplabcut.inference) against DeepLabCut's analyze_videos.

The same snapshot of the synthetic model (trained through train.ModelTraining) runs through
both; the files must match: same scorer, columns, index and values (bit-equal on CPU, where
both feed the model the same contiguous float32 batches), the same ``_meta.pickle`` fields,
and DeepLabCut's own tools must read ours. The real 640x480 example is compared in
test_openfield.py.
"""

import logging
import pickle
import shutil

import numpy as np
import pandas as pd
import pytest

from workflow_deeplabcut import dlc, inference
from workflow_deeplabcut.errors import DeepLabCutError
from workflow_deeplabcut.video import VideoError

pytestmark = pytest.mark.dlc

BATCH = 8


def _meta(folder):
    return pickle.loads(next(folder.glob("*_meta.pickle")).read_bytes())["data"]


@pytest.fixture(scope="module")
def reference(trained, synthetic_project, synthetic_video, tmp_path_factory):
    """DeepLabCut's analyze_videos on the synthetic video, batch 8, last snapshot."""
    import deeplabcut

    out = tmp_path_factory.mktemp("dlc-reference")
    deeplabcut.analyze_videos(
        str(synthetic_project),
        [str(synthetic_video)],
        shuffle=1,
        destfolder=str(out),
        snapshot_index=-1,
        device="cpu",
        batch_size=BATCH,
    )
    return out


def _engine(project, video, out, batch=BATCH, channels_last=None):
    return inference.analyze_videos(
        project,
        [video],
        out,
        shuffle=1,
        trainingsetindex=0,
        snapshotindex=-1,
        device="cpu",
        batch_size=batch,
        channels_last=channels_last,
    )


@pytest.mark.parametrize(
    ("batch", "channels_last"),
    [(BATCH, False), (BATCH, None), (7, None)],
    ids=["same-batches-bit-equal", "default-layout", "ragged-batches"],
)
def test_engine_matches_analyze_videos(
    reference, synthetic_project, synthetic_video, tmp_path, batch, channels_last
):
    """Same files, same numbers: bit-equal with DeepLabCut's layout and batches, else within rounding.

    The default layout on CPU is channels-last (faster); batch 7 leaves a ragged last batch.
    """
    [result] = _engine(synthetic_project, synthetic_video, tmp_path, batch, channels_last)
    [theirs] = [p for p in reference.glob("*.h5")]
    assert result.h5.name == theirs.name  # same scorer in the name
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in reference.iterdir())
    a, b = pd.read_hdf(theirs), pd.read_hdf(result.h5)
    assert a.columns.equals(b.columns) and a.index.equals(b.index)
    assert (a.dtypes == b.dtypes).all()
    xy = a.columns.get_level_values("coords") != "likelihood"
    diff = np.abs(a.to_numpy(np.float64) - b.to_numpy(np.float64))
    assert diff[:, xy].max() <= 0.01 and diff[:, ~xy].max() <= 1e-4, (diff[:, xy].max(), diff[:, ~xy].max())
    bit_equal = batch == BATCH and channels_last is False
    if bit_equal:
        np.testing.assert_array_equal(a.to_numpy(), b.to_numpy())

    ours, dlcs = _meta(tmp_path), _meta(reference)
    assert ours.keys() == dlcs.keys()
    timing = {"start", "stop", "run_duration", "batch_size"}
    assert {k: v for k, v in ours.items() if k not in timing} == {
        k: v for k, v in dlcs.items() if k not in timing
    }
    assert ours["batch_size"] == batch
    full_ours = pickle.loads(next(tmp_path.glob("*_full.pickle")).read_bytes())
    full_dlc = pickle.loads(next(reference.glob("*_full.pickle")).read_bytes())
    assert full_ours.keys() == full_dlc.keys()
    assert pickle.dumps(full_ours["metadata"]) == pickle.dumps(full_dlc["metadata"])  # holds arrays
    if bit_equal:
        assert pickle.dumps(full_ours) == pickle.dumps(full_dlc)


def test_deeplabcut_and_load_mode_read_engine_outputs(
    reference, synthetic_project, synthetic_video, tmp_path
):
    """DeepLabCut's create_labeled_video and our load-mode reader take the engine's files."""
    import deeplabcut

    [result] = _engine(synthetic_project, synthetic_video, tmp_path)
    video = tmp_path / synthetic_video.name
    shutil.copy2(synthetic_video, video)
    done = deeplabcut.create_labeled_video(
        str(synthetic_project), [str(video)], shuffle=1, destfolder=str(tmp_path), snapshot_index=-1
    )
    assert done == [True]
    labeled = [p for p in tmp_path.glob("*_labeled.mp4")]
    assert labeled and labeled[0].stat().st_size > 10_000
    out = dlc.read_outputs(tmp_path, [synthetic_video.stem])
    assert out.nframes == 300 and out.scorer in result.h5.name
    assert out.body_parts == {"head", "tail"}


def test_truncated_video_names_file_and_frame(trained, synthetic_project, synthetic_video, tmp_path):
    """A recording cut off mid-stream (header: 300 frames): a clear error and no output at all."""
    import av
    import cv2

    cap = cv2.VideoCapture(str(synthetic_video))
    frames = []
    while (read := cap.read())[0]:
        frames.append(read[1])
    full = tmp_path / "full.mp4"
    with av.open(str(full), "w", options={"movflags": "faststart"}) as container:  # index first
        stream = container.add_stream("mpeg4", rate=30)
        stream.width = stream.height = 128
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")))
        container.mux(stream.encode())
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full.read_bytes()[: int(full.stat().st_size * 0.6)])
    out = tmp_path / "out"
    with pytest.raises(VideoError, match=r"cut\.mp4 stopped decoding at frame \d+ of the 300") as err:
        _engine(synthetic_project, cut, out)
    assert "re-encode" in str(err.value)
    assert list(out.iterdir()) == []


def test_snapshot_that_does_not_fit_the_config(trained, synthetic_project, synthetic_video, tmp_path):
    """A pytorch_config.yaml edited after training: refused, naming both files; nothing written."""
    from deeplabcut.pose_estimation_pytorch.config import read_config_as_dict
    from ruamel.yaml import YAML

    project = tmp_path / "project"
    shutil.copytree(synthetic_project.parent, project)
    dlc.relocate_project(project)
    cfg = dlc.read_config(project / "config.yaml")
    pytorch_cfg_path = dlc.model_folder(cfg, 1, 0) / "train" / "pytorch_config.yaml"
    pytorch_cfg = read_config_as_dict(pytorch_cfg_path)
    pytorch_cfg["model"]["heads"]["bodypart"]["heatmap_config"]["channels"][0] = 256  # not what was trained
    with open(pytorch_cfg_path, "w") as fh:
        YAML().dump(pytorch_cfg, fh)
    out = tmp_path / "out"
    with pytest.raises(
        DeepLabCutError, match=r"snapshot-\d+\.pt does not fit the model described by .*pytorch_config"
    ):
        _engine(project / "config.yaml", synthetic_video, out)
    assert not out.exists() or list(out.iterdir()) == []


def test_engine_choice_and_fallback(trained, synthetic_project, synthetic_video, tmp_path, caplog):
    """auto runs ours where covered and analyze_videos (logged) where not; 'workflow' refuses."""
    common = {"shuffle": 1, "trainingsetindex": 0, "snapshotindex": -1}
    ours = {"device": "cpu", "channels_last": False}  # DeepLabCut's layout: bit-equal outputs
    assert dlc.analyze(synthetic_project, [synthetic_video], tmp_path / "a", **common, params=ours)
    assert '"engine": "workflow"' in (tmp_path / "a" / dlc.RUN_RECORD).read_text()

    options = {"device": "cpu", "in_random_order": False}  # an option only DeepLabCut has
    with caplog.at_level(logging.WARNING, logger="workflow_deeplabcut.dlc"):
        assert dlc.analyze(synthetic_project, [synthetic_video], tmp_path / "b", **common, params=options)
    assert "analyze_videos options ['in_random_order']" in caplog.text
    assert '"engine": "deeplabcut"' in (tmp_path / "b" / dlc.RUN_RECORD).read_text()
    np.testing.assert_array_equal(
        pd.read_hdf(next((tmp_path / "a").glob("*.h5"))).to_numpy(),
        pd.read_hdf(next((tmp_path / "b").glob("*.h5"))).to_numpy(),
    )
    with pytest.raises(DeepLabCutError, match="engine 'workflow' does not cover this model"):
        dlc.analyze(
            synthetic_project,
            [synthetic_video],
            tmp_path / "c",
            **common,
            params={**options, "engine": "workflow"},
        )
    # Our engine's own options are left out, not passed to analyze_videos (which would fail).
    forced = {"device": "cpu", "channels_last": True, "engine": "deeplabcut"}
    with caplog.at_level(logging.WARNING, logger="workflow_deeplabcut.dlc"):
        assert dlc.analyze(synthetic_project, [synthetic_video], tmp_path / "e", **common, params=forced)
    assert '"engine": "deeplabcut"' in (tmp_path / "e" / dlc.RUN_RECORD).read_text()
    assert "left out" in caplog.text
    with pytest.raises(DeepLabCutError, match="engine must be one of"):
        dlc.analyze(synthetic_project, [synthetic_video], tmp_path / "d", **common, params={"engine": "fast"})


def test_compiled_model_gives_the_same_poses(trained, synthetic_project, synthetic_video, tmp_path):
    """torch.compile (its 'eager' backend: Dynamo's graph capture, no code generation, fast on
    CPU) through dlc.analyze; batch 7 leaves a ragged last batch, run padded to the compiled shape."""
    common = {"shuffle": 1, "trainingsetindex": 0, "snapshotindex": -1}
    plain = {"device": "cpu", "batch_size": 7, "channels_last": False}
    dlc.analyze(synthetic_project, [synthetic_video], tmp_path / "plain", **common, params=plain)
    dlc.analyze(
        synthetic_project,
        [synthetic_video],
        tmp_path / "compiled",
        **common,
        params={**plain, "compile": "eager"},
    )
    assert '"engine": "workflow"' in (tmp_path / "compiled" / dlc.RUN_RECORD).read_text()
    a = pd.read_hdf(next((tmp_path / "plain").glob("*.h5")))
    b = pd.read_hdf(next((tmp_path / "compiled").glob("*.h5")))
    assert len(b) == 300
    np.testing.assert_allclose(b.to_numpy(), a.to_numpy(), rtol=0, atol=1e-4)
    loaded = inference.load_model(synthetic_project, **common, device="cpu", compile="eager")
    assert loaded.compiled and loaded.forward is not loaded.model


@pytest.mark.parametrize(
    ("model_cfg", "project_cfg", "options", "reason"),
    [
        ({"method": "bu"}, {"multianimalproject": True}, {}, "multi-animal"),
        ({"method": "td"}, {}, {}, "only bottom-up"),
        (
            {"method": "bu", "data": {"inference": {"normalize_images": True, "resize": {"height": 256}}}},
            {},
            {},
            "resize",
        ),
        ({"method": "bu"}, {"cropping": True}, {}, "crops videos"),
        ({"method": "bu"}, {}, {"dynamic": (True, 0.5, 10)}, "dynamic"),
    ],
)
def test_unsupported_models_fall_back(model_cfg, project_cfg, options, reason):
    cfg = {
        "model": {"heads": {"bodypart": {}}},
        "metadata": {},
        "data": {"inference": {"normalize_images": True}},
    }
    assert inference.unsupported_reason(cfg | {"method": "bu"}, {}, {"batch_size": 4}) is None
    assert reason in inference.unsupported_reason(cfg | model_cfg, project_cfg, options)


def test_loader_settings():
    """Training data loading: workers and pinned memory on a GPU, none on a CPU; checked input."""
    assert dlc.loader_settings("cpu", cores=16) == {
        "train_settings.dataloader_workers": 0,
        "train_settings.dataloader_pin_memory": False,
    }
    assert dlc.loader_settings("cuda", cores=16)["train_settings.dataloader_workers"] == 8
    assert dlc.loader_settings("cuda", cores=4) == {
        "train_settings.dataloader_workers": 3,
        "train_settings.dataloader_pin_memory": True,
    }
    assert dlc.loader_settings("cuda", workers=2, cores=16)["train_settings.dataloader_workers"] == 2
    with pytest.raises(DeepLabCutError, match="dataloader_workers"):
        dlc.loader_settings("cuda", workers=-1)
