"""DeepLabCut's files around training and pose runs (issue 17): checked before anything runs,
pretrained weights from the hub's cache, nothing left behind by a failure.

These exercise the DeepLabCut adapter, not the database: they run in the embedded run only.
"""

import functools

import pytest
from conftest import FAST_TRAINING, hub_cache, project_copy

pytestmark = pytest.mark.dlc


def test_body_parts_renamed_after_training(
    pipeline, trained, synthetic_project, synthetic_video, raw_root, tmp_path
):
    """Registration and inference refuse before running anything, naming both lists."""
    from workflow_deeplabcut import dlc

    config = project_copy(synthetic_project, raw_root / "renamed")
    dlc.edit_config(config, {"bodyparts": ["nose", "tail"]})
    with pytest.raises(
        dlc.DLCConfigError,
        match=r"lists body parts \['nose', 'tail'\], but shuffle 1 was trained on \['head', 'tail'\]",
    ):
        pipeline.model.Model.insert_new_model("renamed", config, shuffle=1, trainingsetindex=0)
    assert not pipeline.model.Model & {"model_name": "renamed"}
    out = tmp_path / "out"
    with pytest.raises(dlc.DLCConfigError, match="must not change after training"):
        dlc.analyze(config, [synthetic_video], out, shuffle=1, trainingsetindex=0, snapshotindex=-1)
    assert not out.exists()


def test_failed_pose_run_leaves_no_outputs(trained, synthetic_project, synthetic_video, raw_root, tmp_path):
    """Outputs are staged: a run refused after writing them leaves nothing, and keeps what was there."""
    from workflow_deeplabcut import dlc

    config = project_copy(synthetic_project, raw_root / "staged-run")
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("the user's")

    def refuse(folder):
        assert sorted(p.suffix for p in folder.iterdir() if p.suffix == ".h5") == [".h5"]
        raise dlc.DLCOutputError("refused by the check")

    run = functools.partial(
        dlc.analyze, config, [synthetic_video], out, shuffle=1, trainingsetindex=0, snapshotindex=-1
    )
    with pytest.raises(dlc.DLCOutputError, match="refused by the check"):
        run(params={"device": "cpu", "batch_size": 8}, check=refuse)
    assert [p.name for p in out.parent.iterdir()] == ["out"] and [p.name for p in out.iterdir()] == [
        "keep.txt"
    ]
    assert run(params={"device": "cpu", "batch_size": 8})
    assert len(dlc.find_outputs(out, [synthetic_video.stem])) == 1 and (out / dlc.RUN_RECORD).exists()
    assert [p.name for p in out.parent.iterdir()] == ["out"]


# ------------------------------------------------------------------------- pretrained weights
def test_pretrained_backbone_loads_from_the_hub_cache(trained, synthetic_project, raw_root, caplog):
    """init_weights auto: random with a loud warning while the weights are missing (offline), then
    DeepLabCut's own loading (timm, hub cache) once they are cached; 'pretrained' insists."""
    import safetensors.torch
    import timm
    import torch

    from workflow_deeplabcut import dlc

    config = project_copy(synthetic_project, raw_root / "pretrained")
    cfg = dlc.read_config(config)
    pytorch_cfg_path = dlc.model_folder(cfg, 1, 0) / "train" / "pytorch_config.yaml"
    pytorch_cfg = dlc.read_model_config(cfg, 1, 0)
    repo = dlc.pretrained_source(pytorch_cfg)
    assert repo == "timm/resnet10t.c3_in1k"

    with caplog.at_level("WARNING"):
        start, init = dlc._starting_weights(pytorch_cfg_path, pytorch_cfg, 0, {}, None)
    assert init == "random (no pretrained weights available)" and start.name == "init-random-seed0.pt"
    assert (
        "Training starts from RANDOM weights" in caplog.text
        and "timm.create_model('resnet10t.c3_in1k'" in caplog.text
    )
    with pytest.raises(dlc.DLCConfigError, match=r"resnet10t.c3_in1k is not in the Hugging Face cache"):
        dlc._starting_weights(pytorch_cfg_path, pytorch_cfg, 0, {"init_weights": "pretrained"}, None)

    torch.manual_seed(123)
    weights = timm.create_model("resnet10t", pretrained=False).state_dict()
    hub_cache(repo, "model.safetensors", safetensors.torch.save(weights))
    result = dlc.train(
        config,
        shuffle=1,
        trainingsetindex=0,
        params={**FAST_TRAINING, "epochs": 1, "save_epochs": 1, "init_weights": "auto"},
    )
    assert result.init_weights == f"pretrained {repo}"
    started = torch.load(pytorch_cfg_path.parent / "init-pretrained-seed0.pt", map_location="cpu")["model"]
    backbone = {
        k.removeprefix("backbone.model."): v for k, v in started.items() if k.startswith("backbone.model.")
    }
    shared = sorted(set(backbone) & set(weights))
    assert len(shared) > 50
    assert all(torch.equal(backbone[k], weights[k]) for k in shared)  # the cache's weights, loaded by DLC


def test_failed_training_leaves_no_dataset_or_model_folder(
    pipeline, synthetic_project, raw_root, monkeypatch
):
    """A training that fails after DeepLabCut made its dataset removes what it made, and only that."""
    from workflow_deeplabcut import dlc

    config = project_copy(synthetic_project, raw_root / "failed-training")
    project = config.parent
    before = {
        p for folder in ("training-datasets", "dlc-models-pytorch") for p in (project / folder).rglob("*")
    }
    text = config.read_text()
    params = {
        **FAST_TRAINING,
        "shuffle": 9,
        "pytorch_cfg_updates": {"runner.optimizer.type": "NoSuchOptimizer"},
    }
    made = []
    cleanup = dlc._remove_new_training_files

    def spy(project, before, shuffle):
        made.extend(dlc._training_files(project) - before)
        cleanup(project, before, shuffle)

    monkeypatch.setattr(dlc, "_remove_new_training_files", spy)
    with pytest.raises(Exception, match="NoSuchOptimizer"):
        dlc.train(config, shuffle=9, trainingsetindex=0, params=params)
    assert any(p.name == "pytorch_config.yaml" for p in made)  # it failed after making its dataset
    after = {
        p for folder in ("training-datasets", "dlc-models-pytorch") for p in (project / folder).rglob("*")
    }
    assert after == before, sorted(str(p.relative_to(project)) for p in after ^ before)
    assert config.read_text() == text


def test_failed_training_of_an_existing_shuffle_restores_its_configs(trained, synthetic_project, raw_root):
    """A training that fails after rewriting an existing shuffle's pytorch_config.yaml (a backbone,
    updates) puts it back byte for byte, so the next training does not inherit the failed one's
    settings (issue 10: a DLCRNet backbone override left the project broken)."""
    from workflow_deeplabcut import dlc

    config = project_copy(synthetic_project, raw_root / "failed-retraining")
    cfg = dlc.read_config(config)
    folder = dlc.model_folder(cfg, 1, 0)
    yamls = {p: p.read_bytes() for p in folder.rglob("*.yaml")}
    assert folder / "train" / "pytorch_config.yaml" in yamls
    params = {
        **FAST_TRAINING,
        "backbone": "resnet18",
        "pytorch_cfg_updates": {"runner.optimizer.type": "NoSuchOptimizer"},
    }
    with pytest.raises(Exception, match="NoSuchOptimizer"):
        dlc.train(config, shuffle=1, trainingsetindex=0, params=params)
    assert {p: p.read_bytes() for p in folder.rglob("*.yaml")} == yamls
