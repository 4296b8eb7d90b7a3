"""DeepLabCut's SuperAnimal models: pose estimation without training (the model-zoo adapter).

A SuperAnimal model (e.g. ``superanimal_topviewmouse`` with pose network ``hrnet_w32`` and
detector ``fasterrcnn_resnet50_fpn_v2``) is registered as a ``Model`` of engine
``superanimal`` (:meth:`~workflow_deeplabcut.model.Model.insert_superanimal_model`); trigger-mode
``PoseEstimation`` runs it with DeepLabCut's own ``video_inference_superanimal``, and its
``.h5`` outputs are read like any other DeepLabCut output.

Weights are found where DeepLabCut and the hubs keep them, never downloaded in tests:

- the two snapshots (pose network, detector) in the Hugging Face cache (``HF_HOME``), under the
  repository DeepLabCut's model zoo names (dlclibrary's list), or in DeepLabCut's own
  ``modelzoo/checkpoints`` folder; else downloaded with ``huggingface_hub`` when the network
  allows (``HF_HUB_OFFLINE=1`` never downloads);
- the detector's ImageNet backbone, which torchvision loads when DeepLabCut builds the
  detector, in torch's hub cache (``TORCH_HOME``).
"""

from __future__ import annotations

import inspect
import logging
from pathlib import Path

from .dlc import DLCConfigError, staged

logger = logging.getLogger(__name__)

ENGINE = "superanimal"


def model_zoo_entry(superanimal: str, name: str) -> tuple[str, str]:
    """Return the Hugging Face repository and file of a SuperAnimal snapshot (dlclibrary's list).

    Raises
    ------
    DLCConfigError
        For a SuperAnimal or network that DeepLabCut's model zoo does not offer.
    """
    from dlclibrary.dlcmodelzoo.modelzoo_download import _load_pytorch_models

    offered = _load_pytorch_models()
    models = {m: url for kind in (offered.get(superanimal) or {}).values() for m, url in kind.items()}
    if name not in models:
        known = ", ".join(sorted(offered)) if superanimal not in offered else ", ".join(sorted(models))
        raise DLCConfigError(f"DeepLabCut's model zoo has no {superanimal}_{name}; it offers {known}.")
    parts = str(models[name]).split("/")
    return "/".join(parts[:2]), parts[-1]


def find_weights(superanimal: str, name: str, *, download: bool = True) -> Path:
    """Return the local snapshot of a SuperAnimal network (pose model or detector).

    Raises
    ------
    DLCConfigError
        When it is nowhere local and cannot be downloaded; the message says how to fetch it.
    """
    import huggingface_hub
    from huggingface_hub import constants

    repo, filename = model_zoo_entry(superanimal, name)
    cached = huggingface_hub.try_to_load_from_cache(repo, filename)
    if isinstance(cached, str):
        return Path(cached)
    zoo = _checkpoints() / f"{superanimal}_{name}.pt"
    if zoo.is_file():
        return zoo
    if download and not constants.HF_HUB_OFFLINE:
        try:
            return Path(huggingface_hub.hf_hub_download(repo, filename, etag_timeout=10))
        except Exception as err:  # offline, firewalled, rate-limited: all mean "not available"
            logger.info("Could not download %s/%s: %s", repo, filename, err)
    raise DLCConfigError(
        f"The SuperAnimal weights {superanimal}_{name} ({repo}/{filename}) are not in the Hugging "
        f"Face cache ({constants.HF_HUB_CACHE}) nor in DeepLabCut's model zoo folder ({zoo.parent}), "
        'and could not be downloaded. Fetch them once where there is internet: python -c "from '
        f"huggingface_hub import hf_hub_download; hf_hub_download('{repo}', '{filename}')\", then "
        "copy that machine's ~/.cache/huggingface here (or point HF_HOME at a copy)."
    )


def detector_backbone(detector: str) -> Path | None:
    """Return where torch's hub cache keeps the ImageNet weights of a detector's backbone.

    DeepLabCut builds a torchvision detector with its default ``weights_backbone``, which
    torchvision loads from ``TORCH_HOME/hub/checkpoints`` (downloading it when missing). None
    when the detector has no such backbone.
    """
    import torch
    from torchvision.models import detection

    builder = getattr(detection, detector, None)
    if builder is None:
        return None
    parameter = inspect.signature(builder).parameters.get("weights_backbone")
    weights = getattr(parameter, "default", None)
    url = getattr(weights, "url", None)
    if not url:
        return None
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def body_parts(superanimal: str) -> list[str]:
    """Return the body parts of a SuperAnimal (DeepLabCut's project config for it)."""
    from deeplabcut.pose_estimation_pytorch.modelzoo.utils import get_super_animal_project_config_path
    from ruamel.yaml import YAML

    from .dlc import body_parts as parts_of

    path = get_super_animal_project_config_path(superanimal)
    if not path.is_file():
        raise DLCConfigError(f"DeepLabCut has no SuperAnimal {superanimal!r} (no {path.name}).")
    return parts_of(YAML(typ="safe", pure=True).load(path.read_text()))


def scorer(superanimal: str, model_name: str, detector: str) -> str:
    """Return the scorer DeepLabCut names a SuperAnimal run's outputs with."""
    from deeplabcut.modelzoo.utils import get_super_animal_scorer

    return get_super_animal_scorer(
        superanimal, f"{superanimal}_{model_name}.pt", f"{superanimal}_{detector}.pt"
    )


def analyze(template: dict, videos: list[Path], output_dir: Path, params: dict, check=None) -> None:
    """Run a SuperAnimal model on videos with DeepLabCut's ``video_inference_superanimal``.

    Writes ``<video stem>_<scorer>.h5`` per video into ``output_dir``, staged: a failed run
    (or a failed ``check``) leaves nothing. ``params``: ``device`` (default ``auto``),
    ``batch_size`` and ``detector_batch_size`` (default 1).
    """
    import deeplabcut

    superanimal, model_name, detector = (template[k] for k in ("superanimal", "model_name", "detector_name"))
    pose_weights = find_weights(superanimal, model_name)
    detector_weights = find_weights(superanimal, detector)
    backbone = detector_backbone(detector)
    if backbone is not None and not backbone.is_file():
        from huggingface_hub import constants

        if constants.HF_HUB_OFFLINE:
            raise DLCConfigError(
                f"The detector {detector} needs its ImageNet backbone weights ({backbone.name}) in "
                f"torch's hub cache ({backbone.parent}), and this machine is offline: copy that "
                "file there from a machine where torchvision has downloaded it."
            )
    unknown = set(params) - {"device", "batch_size", "detector_batch_size"}
    if unknown:
        raise DLCConfigError(
            "SuperAnimal pose estimation takes device, batch_size and detector_batch_size, not "
            f"{sorted(unknown)}."
        )
    with staged(output_dir, check) as folder:
        deeplabcut.video_inference_superanimal(
            [str(v) for v in videos],
            superanimal,
            model_name=model_name,
            detector_name=detector,
            dest_folder=str(folder),
            max_individuals=int(template.get("max_individuals", 1)),
            device=params.get("device", "auto"),
            batch_size=int(params.get("batch_size", 1)),
            detector_batch_size=int(params.get("detector_batch_size", 1)),
            customized_pose_checkpoint=str(pose_weights),
            customized_detector_checkpoint=str(detector_weights),
            create_labeled_video=False,
            plot_bboxes=False,
            video_adapt=False,
        )
        for extra in folder.glob("*_before_adapt.json"):
            extra.unlink()  # DeepLabCut's raw predictions as JSON: the .h5 holds the same


def _checkpoints() -> Path:
    from deeplabcut.pose_estimation_pytorch.modelzoo.utils import get_snapshot_folder_path

    return get_snapshot_folder_path()


__all__ = [
    "ENGINE",
    "analyze",
    "body_parts",
    "detector_backbone",
    "find_weights",
    "model_zoo_entry",
    "scorer",
]
