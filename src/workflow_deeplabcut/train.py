"""Schema ``train``: DeepLabCut 3 model training inside the pipeline."""

import logging

import datajoint as dj

from . import dlc, joblog
from .paramsets import insert_hashed, params_hash  # noqa: F401  (params_hash is public here)
from .settings import find_full_path, to_relative

schema = dj.Schema()
logger = logging.getLogger(__name__)

_IGNORED_CONFIG_KEYS = ("project_path", "video_sets")
#: Keys of a DeepLabCut ``config.yaml`` (2.x and 3.x). element-deeplabcut's param sets hold the
#: whole config beside the training arguments; these describe the project, which the training
#: task names, so a param set leaves them out (``batch_size`` and ``iteration`` excepted: they
#: are training options here, as element passed them to training).
DLC_CONFIG_KEYS = frozenset(
    "SuperAnimalConversionTables Task TrainingFraction alphavalue bodyparts colormap config_version "
    "corner2move2 croppedtraining cropping date default_augmenter default_net_type default_track_method "
    "detector_batch_size detector_snapshotindex dotsize engine identity individuals move2corner "
    "multianimalbodyparts multianimalproject numframes2pick pcutoff pose_config_path project_path resnet "
    "scorer skeleton skeleton_color snapshotindex start stop uniquebodyparts video_sets x1 x2 y1 y2".split()
)
#: DeepLabCut 2.x / element-deeplabcut training arguments with no PyTorch meaning, and what to give.
_REFUSED_ELEMENT_KEYS = {
    "maxiters": "TensorFlow iterations; give 'epochs' (passes over the training images)",
    "max_iters": "TensorFlow iterations; give 'epochs'",
    "saveiters": "TensorFlow iterations; give 'save_epochs'",
    "save_iters": "TensorFlow iterations; give 'save_epochs'",
    "allow_growth": "a TensorFlow GPU memory option; PyTorch needs none",
    "autotune": "a TensorFlow option; PyTorch needs none",
    "superanimal_name": "TensorFlow SuperAnimal transfer learning; register a SuperAnimal model "
    "(Model.insert_superanimal_model) or give init_weights",
    "superanimal_transfer_learning": "TensorFlow SuperAnimal transfer learning",
    "detector_epochs": "top-down detector training is not run by this pipeline",
    "detector_save_epochs": "top-down detector training is not run by this pipeline",
    "detector_path": "top-down detector training is not run by this pipeline",
    "pose_threshold": "top-down detector training is not run by this pipeline",
}
_FALSE_WORDS = ("false", "f", "no", "n", "0", "")


def from_element_params(params: dict) -> dict:
    """Map element-deeplabcut / DeepLabCut 2.x training params to this pipeline's.

    What has a PyTorch meaning is mapped: ``displayiters``/``display_iters`` and
    ``max_snapshots_to_keep`` become ``pytorch_cfg_updates`` (``train_settings.display_iters``,
    ``runner.snapshots.max_snapshots``), ``gputouse`` N becomes ``device`` ``cuda:N``,
    ``snapshot_path`` becomes ``init_weights``, ``scorer_legacy`` false and
    ``keepdeconvweights`` true (PyTorch's only behaviour) are dropped, string integers
    (``"5"``) become integers, and the ``config.yaml`` keys (:data:`DLC_CONFIG_KEYS`) are left
    out, with a log line. Params already in this pipeline's form pass unchanged.

    Raises
    ------
    ValueError
        Listing every key with no PyTorch meaning and what to give instead; nothing is
        dropped silently.
    """
    if not isinstance(params, dict):
        raise ValueError(f"Training params must be a dict, not {type(params).__name__}.")
    out, refused, config_keys = {}, {}, []
    updates = dict(params.get("pytorch_cfg_updates") or {})
    for key, value in params.items():
        if key in DLC_CONFIG_KEYS:
            config_keys.append(key)
        elif key in _REFUSED_ELEMENT_KEYS:
            refused[key] = _REFUSED_ELEMENT_KEYS[key]
        elif key in ("displayiters", "display_iters"):
            updates["train_settings.display_iters"] = _as_int(value, key)
        elif key == "max_snapshots_to_keep":
            updates["runner.snapshots.max_snapshots"] = None if value is None else _as_int(value, key)
        elif key == "gputouse":
            if value is not None:
                out["device"] = f"cuda:{_as_int(value, key)}"
        elif key == "snapshot_path":
            if value:
                out["init_weights"] = str(value)
        elif key == "scorer_legacy":
            if str(value).strip().lower() not in _FALSE_WORDS:
                refused[key] = "DeepCut_ scorer names are TensorFlow's; PyTorch models have one naming"
        elif key == "keepdeconvweights":
            if str(value).strip().lower() in _FALSE_WORDS:
                refused[key] = "PyTorch training from a snapshot keeps its head weights"
        elif key != "pytorch_cfg_updates":
            out[key] = value
    if refused:
        raise ValueError(
            "Training params with no meaning for DeepLabCut 3's PyTorch engine: "
            + "; ".join(f"'{k}' ({why})" for k, why in refused.items())
            + ". Remove or replace them."
        )
    for key in ("shuffle", "trainingsetindex", "epochs", "save_epochs", "batch_size", "iteration", "seed"):
        if isinstance(out.get(key), str) and out[key].strip().lstrip("-").isdigit():
            out[key] = int(out[key])  # element's notebooks wrote some as strings ("5")
    if updates:
        out["pytorch_cfg_updates"] = updates
    if config_keys:
        logger.info(
            "Training params: left out the config.yaml keys %s; the project's config.yaml gives them.",
            sorted(config_keys),
        )
    return out


def _as_int(value, key: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"Training param '{key}' must be a whole number, not {value!r}.") from None


def check_training_params(params: dict) -> dict:
    """Check a training parameter set and return it without config-only keys.

    Raises
    ------
    ValueError
        If ``shuffle`` or ``trainingsetindex`` is missing or not an integer, or a key is
        unknown (the message lists the accepted keys).
    """
    if not isinstance(params, dict):
        raise ValueError(f"Training params must be a dict, not {type(params).__name__}.")
    params = {k: v for k, v in params.items() if k not in _IGNORED_CONFIG_KEYS}
    for required in ("shuffle", "trainingsetindex"):
        if required not in params:
            raise ValueError(
                f"Training params lack '{required}'; add it, e.g. "
                "{'shuffle': 1, 'trainingsetindex': 0, ...}."
            )
        if isinstance(params[required], bool) or not isinstance(params[required], int):
            raise ValueError(f"Training param '{required}' must be an integer, got {params[required]!r}.")
    unknown = set(params) - {"shuffle", "trainingsetindex"} - set(dlc.TRAINING_OPTIONS)
    if unknown:
        accepted = "; ".join(f"{k}: {v}" for k, v in dlc.TRAINING_OPTIONS.items())
        raise ValueError(f"Unknown training param(s) {sorted(unknown)}. Accepted: {accepted}.")
    iteration = params.get("iteration")
    if iteration is not None and (
        isinstance(iteration, bool) or not isinstance(iteration, int) or iteration < 0
    ):
        raise ValueError(f"Training param 'iteration' must be a non-negative integer, not {iteration!r}.")
    gate = params.get("max_test_error_fraction")
    if gate is not None and (
        isinstance(gate, bool) or not isinstance(gate, int | float) or not 0 < gate <= 1
    ):
        raise ValueError(
            f"Training param 'max_test_error_fraction' must be a fraction in (0, 1], not {gate!r}."
        )
    return params


@schema
class TrainingParamSet(dj.Lookup):
    definition = """
    # parameters of a DeepLabCut training run
    paramset_idx: int16
    ---
    paramset_desc: varchar(128)
    param_set_hash: char(32)  # MD5 of the canonical JSON of params
    unique index (param_set_hash)
    params: <blob>  # shuffle, trainingsetindex and the options of dlc.TRAINING_OPTIONS
    """

    @classmethod
    def insert_new_params(cls, paramset_desc: str, params: dict, paramset_idx: int | None = None) -> int:
        """Insert a parameter set unless the same parameters exist already.

        Parameters
        ----------
        paramset_desc : str
            Description.
        params : dict
            Must hold ``shuffle`` and ``trainingsetindex``; other keys from
            :data:`workflow_deeplabcut.dlc.TRAINING_OPTIONS`. element-deeplabcut's params
            (the project config plus DeepLabCut 2.x training arguments) are mapped first
            (:func:`from_element_params`).
        paramset_idx : int, optional
            Index to use; default one more than the largest.

        Returns
        -------
        int
            The index of the (new or existing) parameter set.

        Raises
        ------
        ValueError
            On invalid params, or when the same params exist under another index, or the
            index holds other params.
        """
        params = check_training_params(from_element_params(params))
        attrs = ("paramset_idx", "paramset_desc", "param_set_hash", "params")
        return insert_hashed(cls, attrs, paramset_desc, params, paramset_idx)


@schema
class VideoSet(dj.Manual):
    definition = """
    # a set of files (labeled data, videos) used to train a model
    video_set_id: int32
    """

    class File(dj.Part):
        definition = """
        -> master
        file_id: int32
        ---
        file_path: varchar(255)  # relative to a data root
        """


@schema
class TrainingTask(dj.Manual):
    definition = """
    # Specification for a DLC model training instance
    -> VideoSet
    -> TrainingParamSet
    training_id: int32
    ---
    model_prefix="": varchar(32)
    project_path="": varchar(255)  # DLC's project_path in config relative to root
    """


@schema
class ModelTraining(dj.Computed):
    definition = """
    -> TrainingTask
    ---
    latest_snapshot: int32  # training epochs of the newest snapshot
    snapshot_path: varchar(255)  # that snapshot, relative to a data root
    snapshotindex: int32  # its index in DeepLabCut's snapshot list, now set in config.yaml
    config_template: <blob>  # the project config after training
    pytorch_config: <blob>  # the pytorch_config.yaml used
    init_weights="": varchar(255)  # what training started from: pretrained <hub repo>, random, snapshot
    """

    def make_fetch(self, key):
        """Fetch the task, its parameters and its training files."""
        task = (TrainingTask & key).fetch1()
        params = (TrainingParamSet & key).fetch1("params")
        files = sorted(r["file_path"] for r in (VideoSet.File & key).to_dicts())
        return task["project_path"], task["model_prefix"], params, files

    def make_compute(self, key, project_path, model_prefix, params, files):
        """Train with DeepLabCut, outside any transaction."""
        if not project_path:
            raise ValueError(
                f"TrainingTask {key} has no project_path; set it to the DLC project folder, "
                "relative to a data root."
            )
        for file in files:
            find_full_path(file)
        config = dlc.config_path_of(find_full_path(project_path))
        init = params.get("init_weights")
        with joblog.captured("ModelTraining", key):
            result = dlc.train(
                config,
                shuffle=params["shuffle"],
                trainingsetindex=params["trainingsetindex"],
                params=params,
                modelprefix=model_prefix,
                init_snapshot=find_full_path(init) if init not in (None, *dlc.INIT_CHOICES) else None,
            )
        cfg = dlc.read_config(config) | {"training_filelist_datajoint": files}
        if params.get("iteration") is not None:
            cfg["iteration"] = params["iteration"]  # trained at this iteration, whatever config.yaml says
        return (
            result.latest_snapshot,
            to_relative(result.snapshot_path),
            result.snapshotindex,
            cfg,
            result.pytorch_config,
            result.init_weights,
        )

    def make_insert(self, key, latest, snapshot_path, snapshotindex, cfg, pytorch_config, init_weights):
        """Record the training run."""
        self.insert1(
            {
                **key,
                "latest_snapshot": latest,
                "snapshot_path": snapshot_path,
                "snapshotindex": snapshotindex,
                "config_template": cfg,
                "pytorch_config": pytorch_config,
                "init_weights": init_weights[:255],
            }
        )
