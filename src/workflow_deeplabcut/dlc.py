"""DeepLabCut 3 (PyTorch engine) adapter: the only module that calls DeepLabCut.

Tables call these functions; nothing here touches the database. ``deeplabcut`` is imported
lazily, inside the functions that need it, because importing it takes seconds.
Nothing here downloads weights: training starts from random weights (or a given snapshot)
unless the caller asks otherwise.
"""

from __future__ import annotations

import contextlib
import csv
import glob
import hashlib
import io
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from ruamel.yaml import YAML

from . import safe_io
from .errors import DeepLabCutError

logger = logging.getLogger(__name__)

REQUIRED_CONFIG_KEYS = ("Task", "date", "iteration", "snapshotindex", "TrainingFraction", "scorer")
#: Training parameters understood by :func:`train` (besides ``shuffle``/``trainingsetindex``).
TRAINING_OPTIONS = {
    "net_type": "DeepLabCut network, e.g. 'resnet_50' (default: the project's default_net_type)",
    "epochs": "number of training epochs",
    "batch_size": "training batch size",
    "save_epochs": "save a snapshot every N epochs",
    "device": "'auto', 'cpu' or 'cuda' (default 'auto')",
    "backbone": "timm backbone name replacing the net's, e.g. 'resnet10t' (heads resized)",
    "seed": "random seed for weights and training (default 42)",
    "init_weights": "'auto' (default: the backbone's pretrained ImageNet weights when cached or "
    "downloadable, else random with a warning), 'pretrained' (or an error), 'random', or a snapshot "
    ".pt path relative to a data root",
    "pytorch_cfg_updates": "dict of dotted pytorch_config.yaml keys to values",
    "dataloader_workers": "data-loading worker processes (default: on a GPU, cores - 1 up to 8; on CPU 0)",
    "iteration": "the project iteration to train (default: config.yaml's); set by refine.Iteration",
    "max_test_error_fraction": "quality gate: flag the model when its test error passes this fraction "
    "of the frame diagonal (default 0.01)",
}
#: Values of the training param ``init_weights`` other than a snapshot path.
INIT_CHOICES = ("auto", "pretrained", "random")
SINGLE_INDIVIDUAL = "individual_0"
RUN_RECORD = ".workflow_dlc_run.json"
#: Inference engines a pose estimation task can ask for (``engine`` in its params).
ENGINES = ("auto", "workflow", "deeplabcut")
#: ``Model.engine`` of DeepLabCut 2.x (TensorFlow) models: their outputs load, they do not run.
TF_ENGINE = "tensorflow"
#: Multi-animal trackers: DeepLabCut's ``track_method`` and the suffix of its track files.
TRACKERS = {"box": "bx", "ellipse": "el", "skeleton": "sk"}
#: Task params of a multi-animal trigger task (see :func:`tracking_params`).
TRACKING_OPTIONS = {
    "track_method": "'box', 'ellipse' or 'skeleton' (default: config.yaml's default_track_method)",
    "n_tracks": "how many animals to stitch tracks for (default: every individual in config.yaml)",
    "tracker": "inference_cfg.yaml values for the tracker, e.g. {'max_age': 5, 'boundingboxslack': 20} "
    "(default: the shuffle's test/inference_cfg.yaml)",
    "min_length": "tracklets shorter than this are left out of stitching (default 10)",
    "max_gap": "the longest gap in frames stitching may bridge (default: DeepLabCut's)",
}
#: The tracker values a task records (DeepLabCut's inference_cfg.yaml keys).
TRACKER_KEYS = (
    "boundingboxslack",
    "iou_threshold",
    "max_age",
    "min_hits",
    "pafthreshold",
    "pcutoff",
    "topktoretain",
    "minimalnumberofconnections",
    "variant",
    "method",
    "withid",
)
#: Load-mode task params that choose among a folder's outputs (see :func:`choose_output`).
OUTPUT_CHOICES = {
    "scorer": "the scorer (network name) of the outputs to load, e.g. "
    "'DLC_resnet50_openfieldOct30shuffle1_1030000'",
    "snapshot": "the training iterations (TensorFlow) or epoch (PyTorch) that ends the scorer",
    "filtered": "load DeepLabCut's filterpredictions output (<video><scorer>_filtered.h5); default False",
    "tracks": "multi-animal tracks: '' (default: the plain file, else '_el'), 'el', 'bx' or 'sk'",
}


class DLCConfigError(DeepLabCutError):
    """A DeepLabCut project or its config.yaml is missing, unreadable or incomplete."""


class DLCOutputError(DeepLabCutError):
    """DeepLabCut output files are missing, ambiguous or inconsistent."""


def _import_deeplabcut():
    os.environ.setdefault("MPLBACKEND", "Agg")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # Every torch.load in this process loads weights only, whatever a pytorch_config.yaml says
    # (runner.load_weights_only) or DeepLabCut passes: a snapshot cannot run code.
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    os.environ.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)
    os.environ["TORCH_LOAD_WEIGHTS_ONLY"] = "true"
    import deeplabcut

    return deeplabcut


# --------------------------------------------------------------------------- config.yaml
def config_path_of(project: str | Path) -> Path:
    """Return the ``config.yaml`` of a project folder (or the path itself if it is a file)."""
    project = Path(project)
    return project / "config.yaml" if project.is_dir() else project


def read_config(path: str | Path) -> dict:
    """Read and check a DeepLabCut project's ``config.yaml``.

    Parameters
    ----------
    path : str or Path
        The ``config.yaml`` or its project folder.

    Returns
    -------
    dict
        The configuration as plain Python objects.

    Raises
    ------
    DLCConfigError
        If the file is missing, is not YAML, or lacks a required key.
    """
    path = config_path_of(path)
    if not path.is_file():
        raise DLCConfigError(f"DeepLabCut config not found: {path}. Give a project's config.yaml.")
    try:
        cfg = YAML(typ="safe", pure=True).load(path.read_text())
    except Exception as err:  # ruamel raises many parser error types
        raise DLCConfigError(f"{path} is not valid YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(cfg, dict):
        raise DLCConfigError(f"{path} is not a DeepLabCut config (expected a YAML mapping).")
    missing = [k for k in REQUIRED_CONFIG_KEYS if cfg.get(k) is None]
    if not body_parts(cfg):
        missing.append("bodyparts")
    if missing:
        raise DLCConfigError(
            f"{path} lacks the key(s) {missing}; a DeepLabCut config.yaml defines them "
            "(recreate it with deeplabcut.create_new_project, or add the keys)."
        )
    fractions = cfg["TrainingFraction"]
    if not isinstance(fractions, list) or not fractions:
        raise DLCConfigError(f"{path}: TrainingFraction must be a non-empty list, e.g. [0.95].")
    bad = [f for f in fractions if not _fraction(f, low_open=True)]
    if bad:
        raise DLCConfigError(
            f"{path}: TrainingFraction must list fractions of the labeled frames used for "
            f"training, numbers in (0, 1] such as 0.95; {bad[0]!r} is not."
        )
    if "pcutoff" in cfg and not _fraction(cfg["pcutoff"]):
        raise DLCConfigError(
            f"{path}: pcutoff must be a likelihood in [0, 1], e.g. 0.6; not {cfg['pcutoff']!r}."
        )
    return cfg


def _fraction(value, low_open: bool = False) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return (0 < value if low_open else 0 <= value) and value <= 1


def frame_size(cfg: dict) -> tuple[int, int] | None:
    """Return the largest (width, height) of a project's videos, from their ``crop`` in config.yaml.

    DeepLabCut writes ``crop: x1, x2, y1, y2`` for every video it adds; None when no video has one.
    """
    sizes = []
    for entry in (cfg.get("video_sets") or {}).values():
        crop = (entry or {}).get("crop") if isinstance(entry, dict) else None
        try:
            x1, x2, y1, y2 = (int(float(v)) for v in str(crop).split(","))
        except ValueError:
            continue
        if x2 > x1 and y2 > y1:
            sizes.append((x2 - x1, y2 - y1))
    return max(sizes, key=lambda s: s[0] * s[1]) if sizes else None


def check_trained_body_parts(cfg: dict, shuffle: int, trainingsetindex: int, modelprefix: str = "") -> None:
    """Refuse a project whose config lists other body parts than its shuffle was trained on.

    DeepLabCut names its outputs' columns after the trained model; a body part renamed,
    added or removed in ``config.yaml`` after training would make every estimation disagree
    with the registered model, after the whole run.

    Raises
    ------
    DLCConfigError
        Naming both lists and the fix.
    """
    meta = read_model_config(cfg, shuffle, trainingsetindex, modelprefix).get("metadata") or {}
    trained = list(meta.get("bodyparts") or []) + list(meta.get("unique_bodyparts") or [])
    listed = body_parts(cfg)
    if trained and trained != listed:
        raise DLCConfigError(
            f"{config_path_of(cfg['project_path'])} lists body parts {listed}, but shuffle "
            f"{shuffle} was trained on {trained}: DeepLabCut's body parts must not change after "
            "training. Restore them in config.yaml, or train a new shuffle with the new ones."
        )


def body_parts(cfg: dict) -> list[str]:
    """Return the body parts a project tracks (multi-animal: multi + unique parts)."""
    if cfg.get("multianimalproject"):
        return list(cfg.get("multianimalbodyparts") or []) + list(cfg.get("uniquebodyparts") or [])
    parts = cfg.get("bodyparts")
    return list(parts) if isinstance(parts, list) else []


def edit_config(path: str | Path, updates: dict) -> None:
    """Change top-level keys of a ``config.yaml`` in place, keeping its comments."""
    path = config_path_of(path)
    round_trip = YAML()  # ruamel's round-trip loader: keeps comments, never constructs Python objects
    data = round_trip.load(path.read_text())
    for key, value in updates.items():
        data[key] = value
    with open(path, "w") as fh:
        round_trip.dump(data, fh)


@contextlib.contextmanager
def config_at_iteration(config: str | Path, iteration: int | None):
    """Yield a ``config.yaml`` of the project at ``iteration`` (the project's own when it is so).

    DeepLabCut reads the iteration from ``config.yaml``, one per project; a project whose
    loop has moved on (``refine.Iteration``) still trains, evaluates and runs the models of
    earlier iterations through a private copy of its config, in the project folder (so
    DeepLabCut's ``project_path`` stays right), removed afterwards. The project's own config
    is not edited: other workers may be using it.
    """
    path = relocate_project(config)
    if iteration is None or int(read_config(path)["iteration"]) == int(iteration):
        yield path
        return
    fd, name = tempfile.mkstemp(
        prefix=f".config-iteration-{int(iteration)}-", suffix=".yaml", dir=path.parent
    )
    os.close(fd)
    copy = Path(name)
    try:
        shutil.copyfile(path, copy)
        edit_config(copy, {"iteration": int(iteration)})
        yield copy
    finally:
        copy.unlink(missing_ok=True)


def relocate_project(config: str | Path) -> Path:
    """Make a copied or moved project usable where it now is.

    Rewrites ``project_path`` in ``config.yaml`` (and in every ``pytorch_config.yaml``) when
    it differs from the folder the file is in.

    Returns
    -------
    Path
        The project's ``config.yaml``.
    """
    path = config_path_of(config).resolve()
    project = path.parent
    cfg = read_config(path)
    if str(cfg.get("project_path")) != str(project):
        logger.info("Project moved: rewriting project_path to %s", project)
        edit_config(path, {"project_path": str(project)})
    for model_cfg in project.glob("dlc-models-pytorch/iteration-*/*/train/pytorch_config.yaml"):
        round_trip = YAML()
        data = round_trip.load(model_cfg.read_text())
        meta = data.get("metadata") or {}
        if meta.get("project_path") != str(project) or meta.get("pose_config_path") != str(model_cfg):
            meta["project_path"] = str(project)
            meta["pose_config_path"] = str(model_cfg)
            with open(model_cfg, "w") as fh:
                round_trip.dump(data, fh)
    return path


def create_project(
    task: str,
    scorer: str,
    video: str | Path,
    working_dir: str | Path,
    *,
    bodyparts: list[str],
    individuals: list[str] | None = None,
    unique_bodyparts: list[str] = (),
) -> Path:
    """Create a PyTorch DeepLabCut project holding a copy of one video.

    With ``individuals`` the project is multi-animal: ``bodyparts`` become its
    ``multianimalbodyparts`` and the skeleton links them in order.

    Returns
    -------
    Path
        The new project's ``config.yaml``.
    """
    deeplabcut = _import_deeplabcut()
    chatter = io.StringIO()  # DeepLabCut prints a dozen lines of advice: keep them for the log
    with contextlib.redirect_stdout(chatter):
        config = deeplabcut.create_new_project(
            task,
            scorer,
            [str(video)],
            working_directory=str(working_dir),
            copy_videos=True,
            multianimal=individuals is not None,
        )
    logger.debug("deeplabcut.create_new_project: %s", chatter.getvalue())
    if config == "nothingcreated" or config is None:
        raise DLCConfigError(f"DeepLabCut created no project for {video} in {working_dir}.")
    if individuals is None:
        edit_config(config, {"bodyparts": list(bodyparts), "engine": "pytorch"})
    else:
        edit_config(
            config,
            {
                "engine": "pytorch",
                "individuals": list(individuals),
                "multianimalbodyparts": list(bodyparts),
                "uniquebodyparts": list(unique_bodyparts),
                "skeleton": [list(pair) for pair in zip(bodyparts[:-1], bodyparts[1:], strict=True)],
            },
        )
    return Path(config)


# --------------------------------------------------------------------------- models
def train_fraction(cfg: dict, trainingsetindex: int) -> float:
    """Return ``TrainingFraction[trainingsetindex]``, with a clear error when out of range."""
    fractions = cfg["TrainingFraction"]
    if not 0 <= trainingsetindex < len(fractions):
        raise DLCConfigError(
            f"trainingsetindex {trainingsetindex} is out of range: the project's "
            f"TrainingFraction is {fractions} (indices 0..{len(fractions) - 1})."
        )
    return float(fractions[trainingsetindex])


def model_folder(cfg: dict, shuffle: int, trainingsetindex: int, modelprefix: str = "") -> Path:
    """Return the absolute folder of one shuffle's PyTorch model."""
    from deeplabcut.core.engine import Engine
    from deeplabcut.utils.auxiliaryfunctions import get_model_folder

    relative = get_model_folder(
        train_fraction(cfg, trainingsetindex),
        shuffle,
        cfg,
        engine=Engine.PYTORCH,
        modelprefix=modelprefix,
    )
    return Path(cfg["project_path"]) / relative


# --------------------------------------------------------------------------- DeepLabCut 2.x
def tf_model_folder(cfg: dict, shuffle: int, trainingsetindex: int, modelprefix: str = "") -> Path:
    """Return the absolute folder of one shuffle's DeepLabCut 2.x (TensorFlow) model."""
    from deeplabcut.core.engine import Engine
    from deeplabcut.utils.auxiliaryfunctions import get_model_folder

    relative = get_model_folder(
        train_fraction(cfg, trainingsetindex), shuffle, cfg, engine=Engine.TF, modelprefix=modelprefix
    )
    return Path(cfg["project_path"]) / relative


def list_tf_snapshots(model_dir: Path) -> list[str]:
    """Return a TensorFlow model's snapshots (``snapshot-<iterations>``), fewest iterations first.

    DeepLabCut 2.x writes each as ``.index``, ``.meta`` and ``.data-*`` files; the ``.index``
    file names it, as DeepLabCut's own ``get_snapshots_from_folder`` reads them.
    """
    train_dir = Path(model_dir) / "train"
    if not train_dir.is_dir():
        return []
    names = [p.stem for p in train_dir.glob("snapshot-*.index")]
    names = [n for n in names if n.split("-", 1)[1].isdigit()]
    return sorted(names, key=lambda n: int(n.split("-", 1)[1]))


def shuffle_engine(cfg: dict, shuffle: int, trainingsetindex: int, modelprefix: str = "") -> str:
    """Return ``pytorch`` or ``tensorflow``: the engine whose trained snapshots the shuffle has.

    DeepLabCut 2.x projects keep TensorFlow models under ``dlc-models``, DeepLabCut 3's PyTorch
    ones under ``dlc-models-pytorch``; a shuffle trained by both goes by the config's
    ``engine`` (DeepLabCut 2.x configs have none: TensorFlow). Without any snapshot:
    ``pytorch`` (registration then says to train it).
    """
    torch_trained = bool(list_snapshots(model_folder(cfg, shuffle, trainingsetindex, modelprefix)))
    tf_trained = bool(list_tf_snapshots(tf_model_folder(cfg, shuffle, trainingsetindex, modelprefix)))
    if torch_trained and tf_trained:
        return "pytorch" if str(cfg.get("engine") or TF_ENGINE).lower() in ("pytorch", "torch") else TF_ENGINE
    return TF_ENGINE if tf_trained else "pytorch"


def tf_model(
    cfg: dict, shuffle: int, trainingsetindex: int, snapshotindex: int, modelprefix: str = ""
) -> dict:
    """Describe a trained DeepLabCut 2.x (TensorFlow) shuffle, reading only its YAML files.

    Returns
    -------
    dict
        ``snapshot`` (its name), ``snapshotindex`` (resolved, >= 0), ``iterations``, ``scorer``
        and ``legacy_scorer`` (DeepLabCut's own names, ``DLC_…`` and the pre-2.1 ``DeepCut_…``),
        ``body_parts`` (as trained: ``all_joints_names`` of its ``pose_cfg.yaml``).

    Raises
    ------
    DLCConfigError
        When the shuffle has no TensorFlow snapshot, the index is out of range, or its
        ``pose_cfg.yaml`` is missing.
    """
    from deeplabcut.core.engine import Engine
    from deeplabcut.utils.auxiliaryfunctions import get_scorer_name

    folder = tf_model_folder(cfg, shuffle, trainingsetindex, modelprefix)
    snapshots = list_tf_snapshots(folder)
    if not snapshots:
        raise DLCConfigError(
            f"Shuffle {shuffle} (trainingsetindex {trainingsetindex}) of {cfg['project_path']} has "
            f"no TensorFlow snapshot (snapshot-*.index) in {folder / 'train'}."
        )
    if isinstance(snapshotindex, bool) or not isinstance(snapshotindex, int):
        raise DLCConfigError(f"snapshotindex must be a whole number (-1: the last), not {snapshotindex!r}.")
    try:
        snapshot = snapshots[snapshotindex]
    except IndexError:
        raise DLCConfigError(
            f"snapshotindex {snapshotindex} is out of range: shuffle {shuffle} has "
            f"{len(snapshots)} TensorFlow snapshot(s) ({snapshots})."
        ) from None
    pose_cfg = folder / "train" / "pose_cfg.yaml"
    if not pose_cfg.is_file():
        raise DLCConfigError(
            f"{pose_cfg} is missing: the TensorFlow model of shuffle {shuffle} is incomplete."
        )
    iterations = int(snapshot.split("-", 1)[1])
    scorer, legacy = get_scorer_name(
        cfg,
        shuffle,
        train_fraction(cfg, trainingsetindex),
        trainingsiterations=iterations,
        modelprefix=modelprefix,
        engine=Engine.TF,
    )
    trained = YAML(typ="safe", pure=True).load(pose_cfg.read_text()) or {}
    return {
        "snapshot": snapshot,
        "snapshotindex": snapshots.index(snapshot),
        "iterations": iterations,
        "scorer": scorer,
        "legacy_scorer": legacy,
        "body_parts": [str(b) for b in trained.get("all_joints_names") or []],
    }


def legacy_scorers(scorer: str) -> tuple[str, ...]:
    """Return a scorer and its DeepLabCut < 2.1 spelling (``DeepCut_…`` for ``DLC_…``)."""
    return (scorer, "DeepCut" + scorer[3:]) if scorer.startswith("DLC_") else (scorer,)


def ensure_training_dataset(
    config: str | Path,
    shuffle: int,
    trainingsetindex: int,
    net_type: str | None = None,
    modelprefix: str = "",
) -> Path:
    """Create the shuffle's training dataset unless it exists.

    Returns
    -------
    Path
        The shuffle's ``train/pytorch_config.yaml``.
    """
    path = config_path_of(config)
    cfg = read_config(path)
    pytorch_cfg = model_folder(cfg, shuffle, trainingsetindex, modelprefix) / "train" / "pytorch_config.yaml"
    if pytorch_cfg.exists():
        return pytorch_cfg
    deeplabcut = _import_deeplabcut()
    from deeplabcut.core.engine import Engine

    if not list((path.parent / "labeled-data").glob("*/CollectedData_*.h5")):
        raise DLCConfigError(
            f"{path.parent} has no labeled frames (labeled-data/*/CollectedData_*.h5); label "
            "frames before training."
        )
    deeplabcut.create_training_dataset(
        str(path),
        Shuffles=[shuffle],
        net_type=net_type or cfg.get("default_net_type"),
        engine=Engine.PYTORCH,
        userfeedback=False,
    )
    if not pytorch_cfg.exists():
        raise DLCConfigError(
            f"DeepLabCut made no training dataset for shuffle {shuffle} in {path.parent}: check "
            "that every labeled video is listed in video_sets and its scorer matches config's."
        )
    return pytorch_cfg


def _backbone_updates(pytorch_cfg: dict, backbone: str) -> dict:
    """Dotted updates that swap the backbone for a timm model and resize the heads."""
    import timm

    kind = ((pytorch_cfg.get("model") or {}).get("backbone") or {}).get("type")
    if kind not in (None, "ResNet", "HRNet", "CSPNeXt"):
        raise DLCConfigError(
            f"The training param 'backbone' cannot replace {pytorch_cfg.get('net_type')}'s {kind} "
            "backbone (its heads read that backbone's own stages). For a small multi-animal model "
            "train net_type 'resnet_50' (bottom-up, part-affinity fields) with the backbone "
            "override, or leave 'backbone' out."
        )

    channels = timm.create_model(backbone, pretrained=False, num_classes=0).num_features
    updates = {"model.backbone.model_name": backbone, "model.backbone_output_channels": channels}
    for head, head_cfg in (pytorch_cfg["model"].get("heads") or {}).items():
        for section in ("heatmap_config", "locref_config", "paf_config"):
            if section in head_cfg:
                sizes = list(head_cfg[section]["channels"])
                sizes[0] = channels
                updates[f"model.heads.{head}.{section}.channels"] = sizes
    return updates


def _initial_weights(pytorch_cfg_path: Path, seed: int, pretrained: bool = False) -> Path:
    """Save the configured model's starting weights: random, or with its pretrained backbone.

    The model is built by DeepLabCut's own ``PoseModel.build``; with ``pretrained`` its
    backbone loads ImageNet weights the way DeepLabCut's training does (timm, from the
    Hugging Face hub's cache or by download). The heads are random (``seed``).
    """
    import torch
    from deeplabcut.pose_estimation_pytorch.config import read_config_as_dict
    from deeplabcut.pose_estimation_pytorch.models import PoseModel

    model_cfg = read_config_as_dict(pytorch_cfg_path)
    torch.manual_seed(seed)
    model = PoseModel.build(model_cfg["model"], pretrained_backbone=pretrained)
    kind = "pretrained" if pretrained else "random"
    path = pytorch_cfg_path.parent / f"init-{kind}-seed{seed}.pt"
    torch.save({"model": model.state_dict()}, path)
    return path


def pretrained_source(pytorch_cfg: dict) -> str | None:
    """Return the Hugging Face repository of a model's pretrained backbone weights (timm's).

    None when the backbone is not a timm model with published weights.
    """
    import timm.models

    name = ((pytorch_cfg.get("model") or {}).get("backbone") or {}).get("model_name")
    if not name:
        return None
    try:
        return timm.models.get_pretrained_cfg(name).hf_hub_id or None
    except Exception:  # timm raises several types for unknown names
        return None


def find_pretrained(repo: str, *, download: bool = True) -> Path | None:
    """Return the cached weights file of a hub repository, downloading it when allowed and possible.

    Looks where timm looks (``model.safetensors``, then ``pytorch_model.bin``) in the Hugging
    Face cache (``HF_HOME``/``HF_HUB_CACHE``). ``HF_HUB_OFFLINE=1`` never downloads.
    """
    import huggingface_hub
    from huggingface_hub import constants

    for filename in ("model.safetensors", "pytorch_model.bin"):
        found = huggingface_hub.try_to_load_from_cache(repo, filename)
        if isinstance(found, str):
            return Path(found)
    if not download or constants.HF_HUB_OFFLINE:
        return None
    try:
        return Path(huggingface_hub.hf_hub_download(repo, "model.safetensors", etag_timeout=10))
    except Exception as err:  # offline, firewalled, rate-limited: every failure means "not available"
        logger.info("Could not download %s: %s", repo, err)
        return None


def _unavailable(repo: str | None, backbone: str | None) -> str:
    from huggingface_hub import constants

    if repo is None:
        return f"No pretrained weights for backbone {backbone}: timm publishes none under that name."
    return (
        f"No pretrained weights for backbone {backbone}: {repo} is not in the Hugging Face cache "
        f"({constants.HF_HUB_CACHE}) and could not be downloaded."
    )


def random_weights_warning(repo: str | None, backbone: str | None) -> str:
    """Return the warning given when training falls back to random weights: what to expect, the fix."""
    return (
        f"{_unavailable(repo, backbone)} Training starts from RANDOM "
        "weights, which needs many more epochs for the same accuracy (on DeepLabCut's openfield "
        "example, 5 epochs from random weights gave a 27 px test error). To start from ImageNet "
        'weights, fetch them once where there is internet: python -c "import timm; '
        f"timm.create_model('{repo.split('/')[-1] if repo else backbone}', pretrained=True)\", then "
        "copy that machine's ~/.cache/huggingface here (or point HF_HOME at a copy). Set "
        "init_weights: random to choose random weights without this warning."
    )


def loader_settings(device: str | None, workers: int | None = None, cores: int | None = None) -> dict:
    """DeepLabCut's data-loader settings for training on ``device``.

    DeepLabCut loads and augments training images in the training process by default
    (``dataloader_workers: 0``): on a GPU the model then waits for the CPU. On a GPU we use
    ``cores - 1`` workers (at most 8) and pinned memory; on a CPU the workers would compete
    with the training itself for the same cores, so none.

    Parameters
    ----------
    device : str
        ``auto``, ``cpu``, ``cuda``... as given to training.
    workers : int, optional
        Asked-for worker count (overrides the default).
    cores : int, optional
        CPU cores available; default those this process may use.
    """
    gpu = device not in ("cpu",) and (device != "auto" or _cuda_available())
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if workers is None:
        workers = min(8, max(cores - 1, 0)) if gpu else 0
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 0:
        raise DLCConfigError(f"dataloader_workers must be a whole number >= 0, not {workers!r}.")
    return {"train_settings.dataloader_workers": workers, "train_settings.dataloader_pin_memory": bool(gpu)}


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def set_dotted(config: dict, key: str, value) -> None:
    """Set ``config["a"]["b"] = value`` for the dotted key ``"a.b"`` (creating levels)."""
    *path, last = key.split(".")
    node = config
    for part in path:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[last] = value


@dataclass(frozen=True)
class TrainingResult:
    """What a training run left behind."""

    latest_snapshot: int  # epoch of the newest snapshot
    snapshot_path: Path
    snapshotindex: int  # its index in DeepLabCut's snapshot list
    pytorch_config: dict
    init_weights: str = ""  # what training started from: pretrained <repo>, random, snapshot <name>


def list_snapshots(model_dir: Path) -> list[Path]:
    """Return the pose snapshots of a model folder in DeepLabCut's order (best last)."""
    from deeplabcut.pose_estimation_pytorch.apis.utils import get_model_snapshots
    from deeplabcut.pose_estimation_pytorch.task import Task

    train_dir = Path(model_dir) / "train"
    if not train_dir.exists():
        return []
    try:
        return [s.path for s in get_model_snapshots("all", train_dir, Task.BOTTOM_UP)]
    except ValueError:
        return []


def snapshot_epoch(path: Path) -> int:
    """Return the epoch encoded in a snapshot name (``snapshot-050.pt``, ``snapshot-best-050.pt``)."""
    return int(Path(path).stem.rsplit("-", 1)[-1])


def train(
    config: str | Path,
    *,
    shuffle: int,
    trainingsetindex: int,
    params: dict,
    modelprefix: str = "",
    init_snapshot: Path | None = None,
) -> TrainingResult:
    """Train one shuffle of a project (creating its dataset if needed) and point the project at it.

    Parameters
    ----------
    config : str or Path
        The project's ``config.yaml`` (or folder); a moved project is relocated first.
    shuffle, trainingsetindex : int
        Which shuffle and training fraction.
    params : dict
        Options from :data:`TRAINING_OPTIONS`.
    modelprefix : str
        DeepLabCut model prefix.
    init_snapshot : Path, optional
        Weights to start from; default: as ``params["init_weights"]`` says (see
        :data:`TRAINING_OPTIONS`).

    Returns
    -------
    TrainingResult
    """
    path = relocate_project(config)
    check_project_files(path.parent, [init_snapshot] if init_snapshot else [])
    net_type = str(params.get("net_type") or read_config(path).get("default_net_type") or "")
    if params.get("backbone") and net_type.startswith("dlcrnet"):
        # Refused before the dataset is made: that would edit the project's shared files.
        _backbone_updates(
            {"net_type": net_type, "model": {"backbone": {"type": "DLCRNet"}}}, params["backbone"]
        )
    before = _training_files(path.parent)
    settings = _settings_files(path.parent, shuffle)
    try:
        with config_at_iteration(path, params.get("iteration")) as at_iteration:
            return _train(at_iteration, shuffle, trainingsetindex, params, modelprefix, init_snapshot)
    except BaseException:
        _remove_new_training_files(path.parent, before, shuffle)
        _restore(settings)
        raise


def _settings_files(project: Path, shuffle: int) -> dict[Path, bytes]:
    """Return the bytes of the YAML files a training of ``shuffle`` edits: its model's configs.

    ``config.yaml`` is not among them: training edits it only once it succeeded, and another
    shuffle's training may edit it meanwhile.
    """
    import re

    mine = re.compile(rf"shuffle{shuffle}(?!\d)")
    files = [
        p
        for p in (project / "dlc-models-pytorch").rglob("*.yaml")
        if mine.search(p.relative_to(project).as_posix())
    ]
    return {p: p.read_bytes() for p in files if p.is_file()}


def _restore(files: dict[Path, bytes]) -> None:
    """Put back the files a failed training changed: the next training starts from them as they were."""
    changed = [p for p, data in files.items() if not p.is_file() or p.read_bytes() != data]
    for path in changed:
        path.write_bytes(files[path])
    if changed:
        logger.info("Training failed: restored %s as they were before it.", [p.name for p in changed])


def _training_files(project: Path) -> set[Path]:
    return {
        p for folder in ("training-datasets", "dlc-models-pytorch") for p in (project / folder).rglob("*")
    }


def _remove_new_training_files(project: Path, before: set[Path], shuffle: int) -> None:
    """Remove what a failed training of ``shuffle`` created: its dataset, model folder, snapshots.

    Files of other shuffles are left alone (another worker may be training one), as are files
    that were there before.
    """
    import re

    mine = re.compile(rf"shuffle{shuffle}(?!\d)")
    other = re.compile(r"shuffle\d+")
    new = sorted(_training_files(project) - before, key=lambda p: len(p.parts), reverse=True)
    removed = 0
    for path in new:
        rel = path.relative_to(project).as_posix()
        if path.is_file() and mine.search(rel):
            path.unlink(missing_ok=True)
            removed += 1
    for path in new:  # deepest first: folders this training created, once nothing else is in them
        if path.is_dir() and path.exists():
            inside = [p for p in path.rglob("*") if p.is_file()]
            theirs = [p for p in inside if p in before or other.search(p.relative_to(project).as_posix())]
            if not theirs:
                shutil.rmtree(path, ignore_errors=True)
                removed += 1
    if removed:
        logger.info(
            "Training failed: removed %d file(s) and folder(s) it had created in %s", removed, project
        )


def _train(path: Path, shuffle, trainingsetindex, params, modelprefix, init_snapshot) -> TrainingResult:
    pytorch_cfg_path = ensure_training_dataset(
        path, shuffle, trainingsetindex, params.get("net_type"), modelprefix
    )
    relocate_project(path)
    deeplabcut = _import_deeplabcut()
    from deeplabcut.pose_estimation_pytorch.config import read_config_as_dict

    seed = int(params.get("seed", 42))
    updates = {"train_settings.seed": seed} | loader_settings(
        params.get("device", "auto"), params.get("dataloader_workers")
    )
    if params.get("backbone"):
        updates |= _backbone_updates(read_config_as_dict(pytorch_cfg_path), params["backbone"])
    updates |= dict(params.get("pytorch_cfg_updates") or {})
    # Write the updates first so the random weights are built for the final architecture.
    pytorch_cfg = read_config_as_dict(pytorch_cfg_path)
    for key, value in updates.items():
        set_dotted(pytorch_cfg, key, value)
    with open(pytorch_cfg_path, "w") as fh:
        YAML().dump(pytorch_cfg, fh)
    start, init = _starting_weights(pytorch_cfg_path, pytorch_cfg, seed, params, init_snapshot)
    deeplabcut.train_network(
        str(path),
        shuffle=shuffle,
        trainingsetindex=trainingsetindex,
        modelprefix=modelprefix,
        device=params.get("device", "auto"),
        epochs=params.get("epochs"),
        batch_size=params.get("batch_size"),
        save_epochs=params.get("save_epochs"),
        snapshot_path=str(start),
        pytorch_cfg_updates=updates,
    )
    snapshots = list_snapshots(pytorch_cfg_path.parent.parent)
    regular = [s for s in snapshots if "best" not in s.stem]
    if not regular:
        raise DLCOutputError(f"Training left no snapshot in {pytorch_cfg_path.parent}.")
    latest = max(regular, key=snapshot_epoch)
    index = snapshots.index(latest)
    edit_config(path, {"snapshotindex": index})
    return TrainingResult(snapshot_epoch(latest), latest, index, read_config_as_dict(pytorch_cfg_path), init)


def _starting_weights(pytorch_cfg_path, pytorch_cfg, seed, params, init_snapshot) -> tuple[Path, str]:
    """Choose and save the weights training starts from; return them and what they are."""
    if init_snapshot is not None:
        return Path(init_snapshot), f"snapshot {Path(init_snapshot).name}"
    choice = params.get("init_weights") or "auto"
    if choice == "random":
        return _initial_weights(pytorch_cfg_path, seed), "random"
    repo = pretrained_source(pytorch_cfg)
    backbone = ((pytorch_cfg.get("model") or {}).get("backbone") or {}).get("model_name")
    if repo is not None and find_pretrained(repo) is not None:
        return _initial_weights(pytorch_cfg_path, seed, pretrained=True), f"pretrained {repo}"
    if choice == "pretrained":
        raise DLCConfigError(
            f"{_unavailable(repo, backbone)} Fetch them (see init_weights: auto's warning), or "
            "choose init_weights: auto or random."
        )
    logger.warning(random_weights_warning(repo, backbone))
    return _initial_weights(pytorch_cfg_path, seed), "random (no pretrained weights available)"


def scorer_name(
    cfg: dict, shuffle: int, trainingsetindex: int, snapshotindex: int, modelprefix: str = ""
) -> str:
    """Return DeepLabCut's scorer name for a shuffle and snapshot (as in its output files)."""
    from deeplabcut.pose_estimation_pytorch.apis.utils import get_scorer_name

    return get_scorer_name(
        cfg,
        shuffle,
        train_fraction(cfg, trainingsetindex),
        snapshot_index=snapshotindex,
        modelprefix=modelprefix,
    )


def resolve_snapshot(
    cfg: dict, shuffle: int, trainingsetindex: int, snapshotindex: int, modelprefix: str = ""
) -> Path:
    """Return the snapshot file that ``snapshotindex`` selects (-1: the last one)."""
    snapshots = list_snapshots(model_folder(cfg, shuffle, trainingsetindex, modelprefix))
    if not snapshots:
        raise DLCConfigError(
            f"Shuffle {shuffle} (trainingsetindex {trainingsetindex}) of {cfg['project_path']} "
            "has no trained snapshot; train it first (train.ModelTraining)."
        )
    try:
        return snapshots[snapshotindex]
    except IndexError:
        raise DLCConfigError(
            f"snapshotindex {snapshotindex} is out of range: shuffle {shuffle} has "
            f"{len(snapshots)} snapshot(s) ({[s.name for s in snapshots]})."
        ) from None


# --------------------------------------------------------------------------- evaluation
def evaluate(
    config: str | Path,
    *,
    shuffle: int,
    trainingsetindex: int,
    snapshotindex: int,
    modelprefix: str = "",
    device: str = "cpu",
) -> dict:
    """Run DeepLabCut's evaluation of one snapshot and read its results.

    Returns
    -------
    dict
        ``train_iterations`` (epochs), ``train_error``, ``test_error``, ``p_cutoff``,
        ``train_error_p``, ``test_error_p`` (pixels), from the newest results file.
    """
    path = relocate_project(config)
    cfg = read_config(path)
    snapshot = resolve_snapshot(cfg, shuffle, trainingsetindex, snapshotindex, modelprefix)
    check_project_files(path.parent, [snapshot])
    deeplabcut = _import_deeplabcut()
    deeplabcut.evaluate_network(
        str(path),
        shuffles=[shuffle],
        trainingsetindex=trainingsetindex,
        modelprefix=modelprefix,
        snapshots_to_evaluate=[snapshot.stem],
        device=device,
    )
    return read_evaluation(path.parent, cfg, shuffle, trainingsetindex, snapshot)


def read_evaluation(project: Path, cfg: dict, shuffle: int, trainingsetindex: int, snapshot: Path) -> dict:
    """Read one snapshot's row from the newest ``*-results.csv`` of the project's evaluations."""
    folder = Path(project) / "evaluation-results-pytorch" / f"iteration-{cfg['iteration']}"
    files = sorted(folder.glob("*-results.csv"), key=lambda f: f.stat().st_mtime_ns)
    if not files:
        raise DLCOutputError(f"No evaluation results in {folder}; did evaluation run?")
    table = pd.read_csv(files[-1])
    table.columns = [c.strip() for c in table.columns]
    fraction = train_fraction(cfg, trainingsetindex)
    fraction_col = table.columns[0]  # "%Training dataset" in DeepLabCut 3.0
    rows = table[
        (table["Shuffle number"] == shuffle)
        & np.isclose(table[fraction_col], fraction)
        & (table["Training epochs"] == snapshot_epoch(snapshot))
    ]
    if rows.empty:
        raise DLCOutputError(f"{files[-1]} has no row for shuffle {shuffle}, {snapshot.name}.")
    row = rows.iloc[-1]
    pcut = [c for c in table.columns if c.startswith("train rmse_pcutoff")]

    def value(col):
        return float(row[col]) if col in row and pd.notna(row[col]) else None

    return {
        "train_iterations": int(row["Training epochs"]),
        "train_error": value("train rmse"),
        "test_error": value("test rmse"),
        "p_cutoff": float(cfg.get("pcutoff", 0.6)),
        "train_error_p": value(pcut[0]) if pcut else value("train rmse_pcutoff"),
        "test_error_p": value("test rmse_pcutoff"),
        # DeepLabCut 3's keypoint mAP/mAR (%): for a multi-animal model, how well it assembles animals
        "metrics": {
            f"{split}_{m.lower()}": value(f"{split} {m}")
            for split in ("train", "test")
            for m in ("mAP", "mAR")
        },
    }


# --------------------------------------------------------------------------- inference
def run_signature(config_template: dict, snapshot: Path, videos: list[Path], params: dict) -> str:
    """Hash everything that determines an inference run's outputs."""
    parts = {
        "config": config_template,
        "snapshot": [str(snapshot), snapshot.stat().st_size, snapshot.stat().st_mtime_ns],
        "videos": [[str(v), v.stat().st_size, v.stat().st_mtime_ns] for v in videos],
        "params": params,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def analyze(
    config: str | Path,
    videos: list[Path],
    output_dir: Path,
    *,
    shuffle: int,
    trainingsetindex: int,
    snapshotindex: int,
    modelprefix: str = "",
    params: dict | None = None,
    check: Callable[[Path], None] | None = None,
) -> bool:
    """Run DeepLabCut inference on videos into ``output_dir``, unless unchanged inputs ran before.

    A record of the inputs (``.workflow_dlc_run.json``) is written next to the outputs; when
    it matches and the outputs exist, DeepLabCut is not run again.

    The run writes into a staging folder beside ``output_dir``; its files are moved into
    ``output_dir`` only when the run and ``check(staging_folder)`` succeed, so a failed run
    leaves no output behind (and no earlier output is overwritten).

    ``params`` are ``analyze_videos`` keyword arguments plus ``engine``: ``auto`` (default)
    runs our batched engine (:mod:`.inference`, same model and output files) where it covers
    the model and options, and ``analyze_videos`` otherwise, saying why in the log;
    ``workflow`` insists on our engine; ``deeplabcut`` always runs ``analyze_videos``.

    Returns
    -------
    bool
        True if inference ran, False if earlier outputs were reused.

    Raises
    ------
    DLCConfigError
        For an unknown ``engine``, or ``engine='workflow'`` with a model or option it does
        not cover.
    """
    params = dict(params or {})
    engine = params.pop("engine", "auto")
    if engine not in ENGINES:
        raise DLCConfigError(f"engine must be one of {ENGINES}, not {engine!r} (pose estimation params).")
    path = relocate_project(config)
    cfg = read_config(path)
    check_trained_body_parts(cfg, shuffle, trainingsetindex, modelprefix)
    snapshot = resolve_snapshot(cfg, shuffle, trainingsetindex, snapshotindex, modelprefix)
    # The snapshot itself is hashed; project_path and snapshotindex change without changing results.
    signature = run_signature(
        cfg | {"project_path": None, "snapshotindex": None},
        snapshot,
        videos,
        params if engine == "auto" else params | {"engine": engine},
    )
    record = output_dir / RUN_RECORD
    if record.exists() and json.loads(record.read_text()).get("signature") == signature:
        try:
            scorer = scorer_name(cfg, shuffle, trainingsetindex, snapshotindex, modelprefix)
            find_outputs(output_dir, [v.stem for v in videos], prefer=(scorer,))
            return False
        except DLCOutputError:
            pass
    safe_io.check_snapshot(snapshot)
    with staged(output_dir, check) as staging:
        ran = _run_inference(
            path, cfg, videos, staging, shuffle, trainingsetindex, snapshotindex, modelprefix, params, engine
        )
    # The record goes last: outputs without it are never taken for a finished run.
    (output_dir / RUN_RECORD).write_text(
        json.dumps({"signature": signature, "snapshot": snapshot.name, "engine": ran}, indent=1)
    )
    return True


@contextlib.contextmanager
def staged(output_dir: Path, check: Callable[[Path], None] | None = None):
    """Yield a staging folder beside ``output_dir``; move its files into ``output_dir`` on success.

    Success means the block ended without an exception and ``check(staging)`` passed. Either
    way the staging folder is removed: a failed run leaves no file, and overwrites none.
    """
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.partial-", dir=output_dir.parent))
    try:
        yield staging
        if check is not None:
            check(staging)
        output_dir.mkdir(exist_ok=True)
        for file in sorted(staging.iterdir()):
            os.replace(file, output_dir / file.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def tracking_params(
    cfg: dict, shuffle: int, trainingsetindex: int, params: dict, modelprefix: str = ""
) -> dict:
    """Return a multi-animal task's tracking params, checked, with every default filled in.

    The defaults are DeepLabCut's: the project's ``default_track_method``, every individual,
    the shuffle's ``test/inference_cfg.yaml`` (its built-in values when the file is missing),
    ``min_length`` 10. The result is what the task records (see :data:`TRACKING_OPTIONS`).

    Raises
    ------
    DLCConfigError
        For a single-animal project, an unknown tracker or tracker key, or ``n_tracks`` out of
        range; each names the fix.
    """
    asked = {k: params[k] for k in TRACKING_OPTIONS if params.get(k) is not None}
    if not cfg.get("multianimalproject"):
        if asked or params.get("auto_track"):
            raise DLCConfigError(
                f"The task params {sorted(asked) or ['auto_track']} are for multi-animal models, but "
                f"{cfg.get('Task')} is a single-animal project: drop them, or pair the task with a "
                "multi-animal model."
            )
        return {}
    if params.get("auto_track") is False:
        raise DLCConfigError(
            "auto_track: False would leave a multi-animal model's detections untracked (DeepLabCut "
            "writes no pose file then); drop it: tracking is part of the task."
        )
    individuals = list(cfg.get("individuals") or [])
    method = asked.get("track_method", cfg.get("default_track_method") or "ellipse")
    if method not in TRACKERS:
        raise DLCConfigError(f"track_method must be one of {sorted(TRACKERS)}, not {method!r}.")
    n_tracks = asked.get("n_tracks", len(individuals))
    if isinstance(n_tracks, bool) or not isinstance(n_tracks, int) or not 1 <= n_tracks <= len(individuals):
        raise DLCConfigError(
            f"n_tracks must be a whole number from 1 to {len(individuals)} (the project's individuals "
            f"{individuals}), not {n_tracks!r}."
        )
    tracker = asked.get("tracker") or {}
    if not isinstance(tracker, dict) or set(tracker) - set(TRACKER_KEYS):
        raise DLCConfigError(
            f"tracker must be a dict of DeepLabCut inference_cfg.yaml values with keys among "
            f"{list(TRACKER_KEYS)}, not {tracker!r}."
        )
    inference_cfg = model_folder(cfg, shuffle, trainingsetindex, modelprefix) / "test" / "inference_cfg.yaml"
    if inference_cfg.is_file():
        with open(inference_cfg) as fh:
            defaults = dict(YAML(typ="safe", pure=True).load(fh) or {})
    else:
        from deeplabcut.utils.auxfun_multianimal import form_default_inferencecfg

        defaults = dict(form_default_inferencecfg(cfg))
    resolved = {k: defaults[k] for k in TRACKER_KEYS if k in defaults} | tracker
    min_length = asked.get("min_length", 10)
    if isinstance(min_length, bool) or not isinstance(min_length, int) or min_length < 1:
        raise DLCConfigError(f"min_length must be a whole number >= 1, not {min_length!r}.")
    out = {"track_method": method, "n_tracks": n_tracks, "tracker": resolved, "min_length": min_length}
    if "max_gap" in asked:
        out["max_gap"] = asked["max_gap"]
    return out


class TrackingError(DLCOutputError):
    """DeepLabCut's tracking made no track of a multi-animal video."""


def _track(
    path, cfg, videos, output_dir, shuffle, trainingsetindex, snapshotindex, modelprefix, tracking
) -> None:
    """Turn a multi-animal model's detections in ``output_dir`` into tracks, as DeepLabCut does.

    DeepLabCut's own two steps, with the task's tracker values passed in (the project's
    ``inference_cfg.yaml`` is neither read for them nor written): ``convert_detections2tracklets``
    then ``stitch_tracklets`` to ``n_tracks``. They write ``<video><scorer>_<el|bx|sk>.h5``.
    """
    deeplabcut = _import_deeplabcut()
    # The PyTorch engine's own function: DeepLabCut's top-level one drops snapshot_index.
    from deeplabcut.pose_estimation_pytorch.apis.tracklets import convert_detections2tracklets

    method = tracking["track_method"]
    chatter = io.StringIO()
    with contextlib.redirect_stdout(chatter):
        convert_detections2tracklets(
            str(path),
            [str(v) for v in videos],
            shuffle=shuffle,
            trainingsetindex=trainingsetindex,
            destfolder=str(output_dir),
            inferencecfg=dict(tracking["tracker"]),
            modelprefix=modelprefix,
            track_method=method,
            snapshot_index=snapshotindex,
            overwrite=True,
        )
        stitch = {k: tracking[k] for k in ("min_length", "max_gap") if k in tracking}
        try:
            deeplabcut.stitch_tracklets(
                str(path),
                [str(v) for v in videos],
                shuffle=shuffle,
                trainingsetindex=trainingsetindex,
                n_tracks=tracking["n_tracks"],
                destfolder=str(output_dir),
                modelprefix=modelprefix,
                track_method=method,
                snapshot_index=snapshotindex,
                **stitch,
            )
        except OSError as err:
            if "Tracklets are empty" not in str(err):
                raise
            other = (
                "the task params {'track_method': 'box', 'tracker': {'boundingboxslack': 20, "
                "'max_age': 5, 'iou_threshold': 0.3}} (ellipses need more than three body parts), "
                if method != "box"
                else "a looser tracker (e.g. 'tracker': {'boundingboxslack': 20, 'max_age': 5, "
                "'iou_threshold': 0.3}), "
            )
            raise TrackingError(
                f"DeepLabCut's {method} tracker made no tracklet of {tracking['min_length']} frames or "
                f"more in {[Path(v).name for v in videos]}: the model finds too few whole animals "
                f"frame to frame, or the tracker is too strict for them. Try {other}a lower "
                "'min_length', or a better model (more labels or epochs)."
            ) from None
    logger.debug("DeepLabCut tracking: %s", chatter.getvalue())


def _run_inference(
    path, cfg, videos, output_dir, shuffle, trainingsetindex, snapshotindex, modelprefix, params, engine
) -> str:
    """Run our engine or ``analyze_videos`` into ``output_dir``; return which ran."""
    deeplabcut = _import_deeplabcut()
    tracking = {}
    if cfg.get("multianimalproject"):
        tracking = tracking_params(cfg, shuffle, trainingsetindex, params, modelprefix)
        params = {k: v for k, v in params.items() if k not in TRACKING_OPTIONS and k != "auto_track"}
    ran = "deeplabcut"
    if engine != "deeplabcut":
        from . import inference

        reason = inference.unsupported_reason(
            read_model_config(cfg, shuffle, trainingsetindex, modelprefix), cfg, params
        )
        if reason is None:
            inference.analyze_videos(
                path,
                videos,
                output_dir,
                shuffle=shuffle,
                trainingsetindex=trainingsetindex,
                snapshotindex=snapshotindex,
                modelprefix=modelprefix,
                **params,
            )
            ran = "workflow"
        elif engine == "workflow":
            raise DLCConfigError(f"engine 'workflow' does not cover this model: {reason}. Use engine 'auto'.")
        else:
            logger.warning("Running DeepLabCut's analyze_videos, not our engine: %s.", reason)
    if ran == "deeplabcut":
        from .inference import ENGINE_ONLY_OPTIONS

        ours_only = sorted(set(params) & ENGINE_ONLY_OPTIONS)
        if ours_only:
            logger.warning("analyze_videos does not take %s (our engine's options): left out.", ours_only)
            params = {k: v for k, v in params.items() if k not in ours_only}
        # The snapshot is passed explicitly: config.yaml is shared by every worker and is not edited.
        deeplabcut.analyze_videos(
            str(path),
            [str(v) for v in videos],
            shuffle=shuffle,
            trainingsetindex=trainingsetindex,
            modelprefix=modelprefix,
            destfolder=str(output_dir),
            overwrite=True,
            snapshot_index=snapshotindex,
            **params,
            **({"auto_track": False} if tracking else {}),
        )
    if tracking:
        _track(path, cfg, videos, output_dir, shuffle, trainingsetindex, snapshotindex, modelprefix, tracking)
    return ran


def read_model_config(cfg: dict, shuffle: int, trainingsetindex: int, modelprefix: str = "") -> dict:
    """Read a shuffle's ``train/pytorch_config.yaml`` as a plain dict."""
    from deeplabcut.pose_estimation_pytorch.config import read_config_as_dict

    path = model_folder(cfg, shuffle, trainingsetindex, modelprefix) / "train" / "pytorch_config.yaml"
    if not path.is_file():
        raise DLCConfigError(
            f"{path} is missing: shuffle {shuffle} was not created or trained in this project."
        )
    return read_config_as_dict(path)


@dataclass
class PoseOutput:
    """DeepLabCut outputs of one recording: where their values are, and how they are laid out.

    ``poses`` is a (frames, slots, coords) array, a slot being one individual's body part
    (``slots``, in the files' column order) and ``coords`` ``x, y[, z], likelihood``. It is a
    :class:`~workflow_deeplabcut.posestore.FileRanges` (the files' own bytes, stored by copying
    them) when the files hold their values as one plain block, an array otherwise.
    """

    scorer: str
    nframes: int
    slots: list[tuple[str, str]]
    coords: tuple[str, ...]
    poses: object  # numpy.ndarray or posestore.FileRanges
    h5_files: list[Path]

    @property
    def body_parts(self) -> set[str]:
        """The body parts present in the outputs."""
        return {bp for _, bp in self.slots}

    def array(self) -> np.ndarray:
        """Return the (frames, slots, coords) values in memory."""
        return self.poses if isinstance(self.poses, np.ndarray) else self.poses.load()


@dataclass(frozen=True)
class OutputFile:
    """One DeepLabCut pose ``.h5`` of a video: ``<video stem><scorer>[_<tracks>][_filtered].h5``."""

    path: Path
    scorer: str
    filtered: bool
    tracks: str  # '' (single-animal, or multi-animal assembled), 'el', 'bx' or 'sk' (tracklets)

    @property
    def snapshot(self) -> int | None:
        """The number that ends the scorer: training iterations (TF) or epoch (PyTorch)."""
        tail = self.scorer.rsplit("_", 1)[-1].rsplit("-", 1)[-1]
        return int(tail) if tail.isdigit() else None

    @property
    def meta(self) -> Path:
        """The ``_meta.pickle`` DeepLabCut writes beside the unfiltered output of the same run."""
        return self.path.with_name(self.path.name[: -len(self._suffix)] + "_meta.pickle")

    @property
    def _suffix(self) -> str:
        return (f"_{self.tracks}" if self.tracks else "") + ("_filtered" if self.filtered else "") + ".h5"


def output_candidates(output_dir: Path, stem: str) -> list[OutputFile]:
    """Return every DeepLabCut pose output of one video in a folder, by name, sorted.

    Both namings are found: ``DLC_…`` (DeepLabCut >= 2.1, and 3.x) and ``DeepCut_…`` (before
    2.1); so are ``_filtered`` and multi-animal ``_el``/``_bx``/``_sk`` files. Video names
    are matched literally: ``[``, ``*`` or ``?`` in a name are not patterns.
    """
    found = []
    for path in Path(output_dir).glob(f"{glob.escape(stem)}*.h5"):
        rest = path.name[len(stem) : -3]
        if not rest.startswith(("DLC", "DeepCut")) or rest.endswith("_skeleton"):
            continue
        filtered = rest.endswith("_filtered")
        if filtered:
            rest = rest[: -len("_filtered")]
        tracks = ""
        head, _, tail = rest.rpartition("_")
        if head and tail in ("el", "bx", "sk"):
            rest, tracks = head, tail
        found.append(OutputFile(path, rest, filtered, tracks))
    return sorted(found, key=lambda c: c.path.name)


def check_output_choice(choice: dict) -> dict:
    """Return the load-mode output choice (:data:`OUTPUT_CHOICES`) of task params, checked."""
    picked = {k: choice[k] for k in OUTPUT_CHOICES if choice.get(k) is not None}
    if "scorer" in picked and not isinstance(picked["scorer"], str):
        raise DLCOutputError(
            f"The task param 'scorer' must be a scorer name (str), not {picked['scorer']!r}."
        )
    snapshot = picked.get("snapshot")
    if snapshot is not None and (isinstance(snapshot, bool) or not isinstance(snapshot, int) or snapshot < 0):
        raise DLCOutputError(f"The task param 'snapshot' must be a whole number >= 0, not {snapshot!r}.")
    if "filtered" in picked and not isinstance(picked["filtered"], bool):
        raise DLCOutputError(f"The task param 'filtered' must be True or False, not {picked['filtered']!r}.")
    if picked.get("tracks", "") not in ("", "el", "bx", "sk"):
        raise DLCOutputError(
            f"The task param 'tracks' must be '', 'el', 'bx' or 'sk', not {picked['tracks']!r}."
        )
    return picked


def choose_output(
    candidates: list[OutputFile],
    stem: str,
    output_dir: Path,
    prefer: tuple[str, ...] = (),
    choice: dict | None = None,
) -> OutputFile:
    """Pick the one output of a video to load, deterministically, or say why none can be.

    The rules, in order: ``filtered`` (default False) keeps filtered or unfiltered files;
    ``scorer``, when given, keeps that scorer's; otherwise the scorers in ``prefer`` (the
    model's, in either DeepLabCut spelling) are kept when the folder has them; ``snapshot``
    keeps the scorers that end with it; ``tracks``, when given, keeps those tracks, else the
    plain file wins over ``_el`` tracks, which win over ``_bx``/``_sk`` tracklets.

    Raises
    ------
    DLCOutputError
        When no file is left (listing the folder's outputs of the video) or several are
        (listing them and the task params that choose).
    """
    choice = check_output_choice(choice or {})
    names = [c.path.name for c in candidates]
    if not candidates:
        detections = sorted(p.name for p in Path(output_dir).glob(f"{glob.escape(stem)}DLC*_full.pickle"))
        if detections:  # a multi-animal run whose detections were never tracked
            raise DLCOutputError(
                f"{output_dir} holds multi-animal detections of {stem} ({detections[0]}) but no tracks "
                "(<video><scorer>_el.h5): they were never tracked. Run the task in 'trigger' mode (it "
                "tracks), or DeepLabCut's convert_detections2tracklets and stitch_tracklets on them first."
            )
        raise DLCOutputError(
            f"No DeepLabCut output {stem}DLC*.h5 in {output_dir}; run the task in 'trigger' "
            "mode, or put analyze_videos outputs there."
        )
    pool = [c for c in candidates if c.filtered == choice.get("filtered", False)]
    if "scorer" in choice:
        pool = [c for c in pool if c.scorer in legacy_scorers(choice["scorer"])]
    else:
        preferred = [c for c in pool if c.scorer in prefer]
        pool = preferred or pool
    if "snapshot" in choice:
        pool = [c for c in pool if c.snapshot == choice["snapshot"]]
    if "tracks" in choice:
        pool = [c for c in pool if c.tracks == choice["tracks"]]
    else:
        for rank in ([""], ["el"], ["bx", "sk"]):
            if any(c.tracks in rank for c in pool):
                pool = [c for c in pool if c.tracks in rank]
                break
    if not pool:
        raise DLCOutputError(
            f"No DeepLabCut output of {stem} in {output_dir} matches the task's choice {choice or '(none)'} "
            f"(unfiltered by default); the folder holds {names}. Change the task's "
            "pose_estimation_params (scorer, snapshot, filtered, tracks)."
        )
    if len(pool) > 1:
        raise DLCOutputError(
            f"Several DeepLabCut outputs for {stem} in {output_dir}: {[c.path.name for c in pool]}. "
            "Choose one with the task's pose_estimation_params, e.g. "
            f"{{'scorer': {pool[-1].scorer!r}}} (also 'snapshot', 'filtered', 'tracks'), or keep "
            "one per video."
        )
    return pool[0]


def find_outputs(
    output_dir: Path,
    video_stems: list[str],
    infix: str = "DLC*",
    *,
    prefer: tuple[str, ...] = (),
    choice: dict | None = None,
) -> list[Path]:
    """Return one DeepLabCut ``.h5`` per video, in the videos' order (see :func:`choose_output`).

    ``infix`` other than the default is the exact text between the stem and ``.h5`` of
    outputs named otherwise (SuperAnimal outputs: ``_<scorer>``).
    """
    if infix != "DLC*":
        found = []
        for stem in video_stems:
            path = Path(output_dir) / f"{stem}{infix}.h5"
            if not path.is_file():
                raise DLCOutputError(
                    f"No output {path.name} in {output_dir}; run the task in 'trigger' mode."
                )
            found.append(path)
        return found
    return [
        choose_output(output_candidates(output_dir, stem), stem, output_dir, prefer, choice).path
        for stem in video_stems
    ]


def _check_columns(columns: pd.Index, path: Path) -> None:
    """Refuse columns that are not DeepLabCut's ``scorer/[individuals/]bodyparts/coords``."""
    names = list(columns.names)
    if names[:1] != ["scorer"] or names[-2:] != ["bodyparts", "coords"] or len(names) not in (3, 4):
        raise DLCOutputError(
            f"{path} is not a DeepLabCut pose file: its column levels are {names}, expected "
            "scorer, [individuals,] bodyparts, coords."
        )
    unknown = set(columns.get_level_values("coords")) - {"x", "y", "z", "likelihood"}
    if unknown:
        raise DLCOutputError(f"{path} has unknown coordinates {sorted(unknown)}; expected x, y, likelihood.")


def read_pose_frame(path: Path) -> pd.DataFrame:
    """Read one DeepLabCut pose ``.h5`` without unpickling anything (see :mod:`.safe_io`).

    Raises
    ------
    UnsafeFileError
        If the file would run code when read by pandas, or is not a pandas HDF5 frame.
    DLCOutputError
        If its columns are not DeepLabCut's ``scorer/[individuals/]bodyparts/coords``.
    """
    frame = safe_io.read_pandas_hdf(path)
    _check_columns(frame.columns, path)
    return frame


def pose_layout(columns: pd.Index, path) -> tuple[list[tuple[str, str]], tuple[str, ...], np.ndarray | None]:
    """Split DeepLabCut's columns into slots (individual, body part) and coordinates.

    Returns
    -------
    slots : list of (str, str)
        In order of first appearance; the individual is ``individual_0`` in single-animal files.
    coords : tuple of str
        ``x, y[, z], likelihood``.
    order : numpy.ndarray or None
        The column permutation that groups each slot's coordinates in that order; None when
        the columns are already so (DeepLabCut's own layout).

    Raises
    ------
    DLCOutputError
        If a slot lacks a coordinate or repeats one.
    """
    levels = list(columns.names)
    slots: dict[tuple[str, str], dict[str, int]] = {}
    for i, name in enumerate(columns):
        named = dict(zip(levels, name, strict=True))
        slot = (str(named.get("individuals", SINGLE_INDIVIDUAL)), str(named["bodyparts"]))
        coords = slots.setdefault(slot, {})
        if named["coords"] in coords:
            raise DLCOutputError(f"{path}: {slot[0]}/{slot[1]} has two {named['coords']!r} columns.")
        coords[named["coords"]] = i
    order_of = {"x": 0, "y": 1, "z": 2, "likelihood": 3}
    wanted = tuple(sorted(next(iter(slots.values()), {}), key=order_of.__getitem__))
    for slot, coords in slots.items():
        if set(coords) != set(wanted):
            raise DLCOutputError(
                f"{path}: {slot[0]}/{slot[1]} has coordinates {sorted(coords)}, the others {list(wanted)}."
            )
    order = np.array([coords[c] for coords in slots.values() for c in wanted], dtype=np.intp)
    identity = bool(np.array_equal(order, np.arange(len(order))))
    return list(slots), wanted, None if identity else order


def file_scorer(path: Path) -> str:
    """Return the scorer that a DeepLabCut ``.h5`` or ``.csv`` pose file names (its first column level)."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        with open(path, newline="") as fh:
            first = next(csv.reader(fh), [])
        if len(first) < 2 or first[0] != "scorer":
            raise DLCOutputError(f"{path} is not a DeepLabCut pose CSV: its first row is not 'scorer, …'.")
        return first[1]
    block = safe_io.pandas_hdf_block(path)
    columns = block.columns if block is not None else read_pose_frame(path).columns
    _check_columns(columns, path)
    return str(columns.get_level_values(0)[0])


def _meta_of(h5: Path) -> Path | None:
    """Return the ``_meta.pickle`` of a DeepLabCut output (one per run, beside filtered and track files)."""
    base = h5.stem.removesuffix("_filtered")
    head, _, tail = base.rpartition("_")
    base = head if head and tail in ("el", "bx", "sk") else base
    meta = h5.with_name(base + "_meta.pickle")
    if not meta.exists():
        meta = h5.with_name(base + "includingmetadata.pickle")  # DeepLabCut 2.0's name for it
    return meta if meta.exists() else None


def _is_tracks(h5: Path) -> bool:
    """Whether an output is multi-animal tracks (``_el``/``_bx``/``_sk``): rows only where tracked."""
    return h5.stem.removesuffix("_filtered").rpartition("_")[2] in ("el", "bx", "sk")


def _all_frames(frame: pd.DataFrame, h5: Path) -> pd.DataFrame:
    """Give a tracks file one row per video frame: DeepLabCut leaves out frames before and after tracks.

    The frame count is the run's ``_meta.pickle`` ``nframes``; without one, the last row's.
    """
    index = pd.to_numeric(pd.Index(frame.index), errors="coerce")
    if index.isna().any():
        raise DLCOutputError(f"{h5}: its rows are not frame numbers; is it a DeepLabCut tracks file?")
    n = _video_frames(h5) or (int(index.max()) + 1 if len(index) else 0)
    if len(index) and (index.min() < 0 or index.max() >= n):
        raise DLCOutputError(f"{h5}: frame numbers {index.min()}..{index.max()} are outside its video's {n}.")
    frame = frame.set_axis(index.astype(int), axis=0)
    return frame.reindex(range(n))


def _video_frames(h5: Path) -> int | None:
    """Return the frame count a run's ``_meta.pickle`` records, or None."""
    meta = _meta_of(h5)
    content = safe_io.load_pickle(meta) if meta is not None else {}
    data = (content.get("data") if isinstance(content, dict) else None) or {}
    return int(data["nframes"]) if data.get("nframes") else None


def _read_tracks_table(h5: Path):
    """Read a ``table``-format tracks file chunk by chunk straight into a (frames, slots, coords) array.

    DeepLabCut's stitcher writes tracks in pandas' ``table`` format, with rows only where
    tracked, beside the run's ``_meta.pickle`` (the video's frame count). Each chunk is copied
    once into the array (NaN where no row): the read holds about the array, not a DataFrame
    and its copies as well. Returns None for another layout or without the frame count.
    """
    n = _video_frames(h5)
    if n is None:
        return None
    chunks = safe_io.read_pandas_table_chunks(h5)
    head = next(chunks, None)
    if head is None:
        return None
    columns, _ = head
    _check_columns(columns, h5)
    slots, coords, order = pose_layout(columns, h5)
    poses = None
    for index, values in chunks:
        if poses is None:
            poses = np.full((n, len(slots), len(coords)), np.nan, dtype=values.dtype)
        if len(index) and (index.min() < 0 or index.max() >= n):
            raise DLCOutputError(
                f"{h5}: frame numbers {index.min()}..{index.max()} are outside its video's {n}."
            )
        values = (values if order is None else values[:, order]).reshape(len(index), len(slots), len(coords))
        if len(index) and index[-1] - index[0] == len(index) - 1 and (np.diff(index) == 1).all():
            poses[index[0] : index[-1] + 1] = values  # consecutive frames: a plain copy
        else:
            poses[index] = values
    if poses is None:
        poses = np.full((n, len(slots), len(coords)), np.nan)
    return columns, slots, coords, poses


def _check_meta(h5: Path, scorer: str) -> None:
    """Read the output's ``_meta.pickle`` (if any) safely and check it belongs to the ``.h5``."""
    meta = _meta_of(h5)
    if meta is None:
        return
    data = safe_io.load_pickle(meta)
    recorded = (data.get("data") or {}).get("Scorer") if isinstance(data, dict) else None
    if recorded is not None and str(recorded) != scorer:
        raise DLCOutputError(
            f"{meta.name} names the scorer {recorded!r} but {h5.name} holds {scorer!r}: the two come "
            "from different runs. Remove the stale file."
        )


def read_outputs(
    output_dir: Path,
    video_stems: list[str],
    infix: str = "DLC*",
    *,
    prefer: tuple[str, ...] = (),
    choice: dict | None = None,
) -> PoseOutput:
    """Locate and check the DeepLabCut outputs of a recording's videos (concatenated in order).

    The ``.h5`` files are scanned with h5py and their ``_meta.pickle`` read with the restricted
    unpickler: a crafted output cannot run code, it is refused. When every file holds its
    values as one plain block (DeepLabCut's own ``.h5``), nothing is read: the result points
    at those bytes, which the store copies as they are. Otherwise the frames are read.

    Parameters
    ----------
    output_dir : Path
        Folder holding ``<stem>DLC_*.h5`` files (and their ``_meta.pickle``).
    video_stems : list of str
        The recording's video file stems, in order.
    infix, prefer, choice
        As for :func:`find_outputs`: which file of each video, when the folder holds several.

    Returns
    -------
    PoseOutput
    """
    from .posestore import FileRanges

    files = find_outputs(output_dir, video_stems, infix, prefer=prefer, choice=choice)
    if all(_is_tracks(f) for f in files):
        read = [_read_tracks_table(f) for f in files]
        if all(r is not None for r in read):
            return _tracks_output(output_dir, files, read)
    blocks = [safe_io.pandas_hdf_block(f) for f in files]
    tracks = any(_is_tracks(f) for f in files)  # their rows need counting against the video's frames
    plain = (
        not tracks
        and all(blocks)
        and all(b.columns.equals(blocks[0].columns) and b.dtype == blocks[0].dtype for b in blocks)
    )
    if plain:
        for f, b in zip(files, blocks, strict=True):
            _check_columns(b.columns, f)
        columns_list = [b.columns for b in blocks]
    else:
        frames = [_all_frames(read_pose_frame(f), f) if _is_tracks(f) else read_pose_frame(f) for f in files]
        columns_list = [df.columns for df in frames]
    scorers = {c.get_level_values(0)[0] for c in columns_list}
    if len(scorers) != 1:
        raise DLCOutputError(f"Outputs in {output_dir} come from several scorers {sorted(scorers)}.")
    scorer = str(scorers.pop())
    for h5 in files:
        _check_meta(h5, scorer)
    slots, coords, order = pose_layout(columns_list[0], files[0])
    if plain and order is None:
        n = sum(b.nrows for b in blocks)
        pieces = tuple((str(f), b.offset, b.nbytes) for f, b in zip(files, blocks, strict=True))
        poses = FileRanges(blocks[0].dtype, (n, len(slots), len(coords)), pieces)
    else:
        if plain:
            frames = [read_pose_frame(f) for f in files]
        data = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        values = data.to_numpy()
        n = len(values)
        if order is not None:
            values = values[:, order]
        poses = np.ascontiguousarray(values).reshape(n, len(slots), len(coords))
    return PoseOutput(scorer, n, slots, coords, poses, files)


def _tracks_output(output_dir: Path, files: list[Path], read: list) -> PoseOutput:
    """Put the tracks of a recording's videos (from :func:`_read_tracks_table`) together."""
    layouts = {(tuple(r[1]), r[2]) for r in read}
    scorers = {str(r[0].get_level_values(0)[0]) for r in read}
    if len(scorers) != 1 or len(layouts) != 1:
        raise DLCOutputError(
            f"Outputs in {output_dir} come from several scorers or layouts {sorted(scorers)}."
        )
    scorer = scorers.pop()
    for h5 in files:
        _check_meta(h5, scorer)
    poses = read[0][3] if len(read) == 1 else np.concatenate([r[3] for r in read])
    return PoseOutput(scorer, len(poses), read[0][1], read[0][2], poses, files)


# --------------------------------------------------------------------------- vetting
def check_project_files(project: Path, snapshots: list[Path] = ()) -> None:
    """Refuse a project whose files would run code when DeepLabCut reads them.

    DeepLabCut reads labeled data and training sets with ``pandas.read_hdf`` and ``pickle``,
    and snapshots with ``torch.load``; every such file it may open is checked first
    (:func:`~workflow_deeplabcut.safe_io.check_hdf`, :func:`~workflow_deeplabcut.safe_io.load_pickle`,
    :func:`~workflow_deeplabcut.safe_io.check_snapshot`).

    Raises
    ------
    UnsafeFileError
        Naming the first offending file.
    """
    project = Path(project)
    for h5 in sorted(project.glob("labeled-data/*/*.h5")) + sorted(project.glob("training-datasets/**/*.h5")):
        safe_io.check_hdf(h5)
    for pickled in sorted(project.glob("training-datasets/**/*.pickle")):
        safe_io.load_pickle(pickled)
    for snapshot in snapshots:
        safe_io.check_snapshot(snapshot)
