"""Schema ``model``: video recordings, DeepLabCut models, evaluation and pose estimation."""

from __future__ import annotations

import contextlib
import datetime as _dt
import re
from pathlib import Path, PurePosixPath

import datajoint as dj
import numpy as np
import pandas as pd

from . import (  # noqa: F401  (lab, train resolve "-> lab.Device", "-> train.X")
    dlc,
    joblog,
    lab,
    posestore,  # noqa: F401  (registers <npyfile@store> before the tables are declared)
    quality,
    session,
    subject,
    superanimal,
    train,
    video,
)
from .database import STORE
from .errors import InputError, PoseFileError
from .rows import PoseWindow, load_array, one_key, pose_window
from .settings import find_full_path, get_settings, to_relative

schema = dj.Schema()

#: ``Model.engine`` of models registered with :meth:`Model.insert_external_model`.
EXTERNAL_ENGINE = "external"
#: ``Model.engine`` of models made with DeepLabCut projects (3.x PyTorch and 2.x TensorFlow).
DLC_ENGINES = ("pytorch", dlc.TF_ENGINE)
#: DeepLabCut's p-cutoff when a project's config gives none.
DEFAULT_PCUTOFF = 0.6


def _config_dict(dlc_config) -> tuple[dict, Path]:
    """Read a config.yaml path (file or folder) into a checked dict and its project folder."""
    if isinstance(dlc_config, dict):
        if not dlc_config.get("project_path"):
            raise dlc.DLCConfigError("A config dict needs 'project_path'; or pass the config.yaml path.")
        path = dlc.config_path_of(dlc_config["project_path"])
        return dlc.read_config(path) | dlc_config, path.parent
    given = Path(dlc_config).expanduser()
    if not given.is_absolute() and not given.exists():
        # Relative to a data root, as element-deeplabcut took it (when not relative to here).
        try:
            given = find_full_path(given)
        except (FileNotFoundError, InputError):
            pass  # read_config names the missing file
    path = dlc.config_path_of(given.resolve())
    return dlc.read_config(path), path.parent


@schema
class VideoRecording(dj.Manual):
    definition = """
    -> session.Session
    recording_id: int32
    ---
    -> lab.Device
    """

    class File(dj.Part):
        definition = """
        -> master
        file_id: int32
        ---
        file_path: varchar(255)  # filepath of video, relative to root data directory
        """

    @classmethod
    def insert_recording(
        cls, session_key: dict, recording_id: int, device: str, files: list[str | Path]
    ) -> dict:
        """Insert a recording and its files in one transaction, after checking every file.

        Parameters
        ----------
        session_key : dict
            Primary key of a ``session.Session``.
        recording_id : int
            Recording number within the session.
        device : str
            A ``lab.Device``.
        files : list of str or Path
            Video files, absolute or relative to a data root, in playing order.

        Returns
        -------
        dict
            The recording's primary key.
        """
        key = {**one_key(session.Session, session_key), "recording_id": recording_id}
        relative = [to_relative(f) if Path(f).is_absolute() else Path(f).as_posix() for f in files]
        # Probing now gives a clear error at insert rather than a failed populate later.
        video.probe_recording([find_full_path(rel) for rel in relative])
        if cls & key:
            raise dj.errors.DuplicateError(
                f"Recording {key} already exists; use another recording_id or delete it first."
            )
        with cls.connection.transaction:
            cls.insert1({**key, "device": device})
            cls.File.insert([{**key, "file_id": i, "file_path": p} for i, p in enumerate(relative)])
        return key

    @classmethod
    def video_paths(cls, key: dict) -> list[Path]:
        """Return the absolute paths of a recording's files, in file_id order."""
        rows = sorted((cls.File & key).to_dicts(), key=lambda r: r["file_id"])
        return [find_full_path(r["file_path"]) for r in rows]


@schema
class RecordingInfo(dj.Imported):
    definition = """
    -> VideoRecording
    ---
    px_height: int32  # frame height in pixels, as displayed (and analysed)
    px_width: int32  # frame width in pixels, as displayed (and analysed)
    nframes: int32  # frames in all files of the recording
    fps: float64  # frames per second (29.97 stays 29.97); the mean rate of a variable-rate video
    recording_datetime=null: datetime  # the container's creation time (UTC), if recorded
    recording_duration: float64  # seconds
    rotation=0: int16  # display rotation in degrees anticlockwise (the stored frames are turned)
    frame_times=null: <npy@workflow_dlc>  # seconds from the first frame; variable frame rate only
    """

    @property
    def key_source(self):
        """Recordings that have files."""
        return VideoRecording & VideoRecording.File

    def make(self, key):
        """Probe the recording's files (every frame's time) and store their combined properties."""
        self.insert1({**key, **video.probe_recording(VideoRecording.video_paths(key), timestamps=True)})

    @classmethod
    def time_base(cls, key: dict) -> float | np.ndarray:
        """Return the frame rate of a constant-rate recording, or every frame's time in seconds."""
        row = (cls & one_key(cls, key)).fetch1()
        if row["frame_times"] is not None:
            return np.asarray(load_array(row["frame_times"]), dtype=np.float64)
        return float(row["fps"])

    @classmethod
    def timestamps(cls, key: dict) -> np.ndarray:
        """Return each frame's time in seconds from the first frame.

        The container's presentation times for a variable-frame-rate recording, otherwise
        ``frame / fps``.
        """
        row = (cls & one_key(cls, key)).fetch1()
        if row["frame_times"] is not None:
            return np.asarray(load_array(row["frame_times"]), dtype=np.float64)
        return np.arange(row["nframes"]) / row["fps"]


@schema
class BodyPart(dj.Lookup):
    definition = """
    body_part: varchar(32)
    ---
    body_part_description="": varchar(1000)
    """

    @classmethod
    def extract_new_body_parts(cls, dlc_config, verbose: bool = True) -> list[str]:
        """Return the body parts of a DLC config that the table does not hold yet."""
        cfg = dlc_config if isinstance(dlc_config, dict) else dlc.read_config(dlc_config)
        known = {k["body_part"] for k in cls.keys()}
        new = [bp for bp in dlc.body_parts(cfg) if bp not in known]
        if verbose:
            print(f"Existing body parts: {sorted(known)}\nNew body parts: {new}")
        return new

    @classmethod
    def insert_from_config(
        cls, dlc_config, descriptions: dict | list | None = None, prompt: bool = False
    ) -> list[str]:
        """Insert the new body parts of a DLC config, with descriptions paired by name; return them.

        Parameters
        ----------
        dlc_config : str, Path or dict
            The project's ``config.yaml`` (or the config itself).
        descriptions : dict or list, optional
            ``{body_part: description}``; or a list with one description per body part of the
            config, in the config's order. Body parts already in the table keep theirs.
        prompt : bool
            Ask on stdin before inserting (element-deeplabcut's default); "y" or "yes" inserts.

        Raises
        ------
        InputError
            When a description names a body part the config lacks, or a list's length differs
            from the config's body parts.
        """
        cfg = dlc_config if isinstance(dlc_config, dict) else dlc.read_config(dlc_config)
        parts = dlc.body_parts(cfg)
        if descriptions is None:
            descriptions = {}
        elif isinstance(descriptions, list | tuple):
            if len(descriptions) != len(parts):
                raise InputError(
                    f"Got {len(descriptions)} descriptions for the config's {len(parts)} body parts {parts}; "
                    "give one per body part in the config's order, or a dict {body_part: description}."
                )
            descriptions = dict(zip(parts, descriptions, strict=True))
        unknown = sorted(set(descriptions) - set(parts))
        if unknown:
            raise InputError(
                f"Descriptions name body parts {unknown} that the config lacks (it has {parts})."
            )
        new = cls.extract_new_body_parts(cfg, verbose=False)
        if (
            prompt
            and new
            and input(f"Insert {len(new)} new body part(s) {new}? [y/N] ").strip().lower()
            not in (
                "y",
                "yes",
            )
        ):
            print("Nothing inserted.")
            return []
        cls.insert([{"body_part": b, "body_part_description": descriptions.get(b, "")} for b in new])
        return new


@schema
class Model(dj.Manual):
    definition = """
    model_name: varchar(64)  # user-friendly model name
    ---
    task: varchar(32)  # task in the config yaml
    date: varchar(16)  # date in the config yaml
    iteration: int32  # iteration/version of this model
    snapshotindex: int32  # which snapshot for prediction (resolved at registration, >= 0)
    shuffle: int32  # which shuffle of the training dataset
    trainingsetindex: int32  # which training set fraction to generate model
    engine="pytorch": varchar(16)  # DeepLabCut engine
    scorer: varchar(255)  # scorer/network name - DLC's get_scorer_name()
    config_template: <blob>  # dictionary of the config for analyze_videos()
    project_path: varchar(255)  # DLC's project_path in config relative to root
    model_prefix="": varchar(32)
    model_description="": varchar(1000)
    -> [nullable] train.TrainingParamSet
    unique index (project_path, task, date, iteration, shuffle, snapshotindex, trainingsetindex, engine, model_prefix)
    """

    class BodyPart(dj.Part):
        definition = """
        -> master
        -> BodyPart
        """

    class Individual(dj.Part):
        definition = """
        # an animal a multi-animal model tells apart (config.yaml's individuals); none: single-animal
        -> master
        individual: varchar(32)
        ---
        individual_index: int16  # its place in config.yaml's individuals
        """

    class UniqueBodyPart(dj.Part):
        definition = """
        # a body part of no individual (config.yaml's uniquebodyparts): estimated under 'single'
        -> master
        -> BodyPart
        """

    @classmethod
    def individuals(cls, key: dict) -> list[str]:
        """Return a model's individuals in config order; empty for a single-animal model."""
        rows = (cls.Individual & {"model_name": key["model_name"]}).to_dicts()
        return [r["individual"] for r in sorted(rows, key=lambda r: r["individual_index"])]

    @classmethod
    def insert_new_model(
        cls,
        model_name: str,
        dlc_config,
        *,
        shuffle: int,
        trainingsetindex: int,
        model_description: str = "",
        model_prefix: str = "",
        paramset_idx: int | None = None,
        prompt: bool = False,
        params: dict | None = None,
    ) -> dict:
        """Register a trained DeepLabCut model, its body parts and its scorer, in one transaction.

        Parameters
        ----------
        model_name : str
            A unique name.
        dlc_config : str, Path or dict
            The project's ``config.yaml`` (or folder), or a config dict with ``project_path``.
        shuffle, trainingsetindex : int
            Which shuffle and training fraction.
        model_description, model_prefix : str
            Free text; DeepLabCut model prefix.
        paramset_idx : int, optional
            The ``train.TrainingParamSet`` the model was trained with.
        prompt : bool
            Ask for confirmation on stdin before inserting.
        params : dict, optional
            Overrides of config values, e.g. ``{"snapshotindex": 2}``.

        Returns
        -------
        dict
            The model's primary key.
        """
        row, parts = cls.build_model(
            model_name,
            dlc_config,
            shuffle=shuffle,
            trainingsetindex=trainingsetindex,
            model_description=model_description,
            model_prefix=model_prefix,
            paramset_idx=paramset_idx,
            params=params,
        )
        if prompt:
            print("\n".join(f"{k}: {v}" for k, v in row.items() if k != "config_template"))
            print(f"body parts: {parts}")
            if input("Insert this model? [y/N] ").strip().lower() not in ("y", "yes"):
                print("Nothing inserted.")
                return {}
        with cls.connection.transaction:
            cls.insert_built(row, parts)
        return {"model_name": model_name}

    @classmethod
    def build_model(
        cls,
        model_name: str,
        dlc_config,
        *,
        shuffle: int,
        trainingsetindex: int,
        model_description: str = "",
        model_prefix: str = "",
        paramset_idx: int | None = None,
        params: dict | None = None,
    ) -> tuple[dict, list[str]]:
        """Check a model and compute its row and body parts, writing nothing.

        Same parameters as :meth:`insert_new_model`; returns ``(row, body_parts)`` for
        :meth:`insert_built`.
        """
        cfg, project = _config_dict(dlc_config)
        params = dict(params or {})
        cfg = cfg | params | {"project_path": str(project)}
        if "engine" in params:  # asked for; else the engine the shuffle was trained with
            engine = str(params["engine"]).lower()
            engine = {"torch": "pytorch", "tf": dlc.TF_ENGINE}.get(engine, engine)
        else:
            engine = dlc.shuffle_engine(cfg, shuffle, trainingsetindex, model_prefix)
        if engine not in ("pytorch", dlc.TF_ENGINE):
            raise dlc.DLCConfigError(
                f"{project}: engine {engine!r} is not a DeepLabCut engine; use 'pytorch' (DeepLabCut 3) "
                "or 'tensorflow' (DeepLabCut 2.x models, whose outputs load but do not run here)."
            )
        if cls & {"model_name": model_name}:
            raise dj.errors.DuplicateError(
                f"A model named {model_name!r} exists already; choose another name or delete it."
            )
        if engine == dlc.TF_ENGINE:
            trained = dlc.tf_model(cfg, shuffle, trainingsetindex, int(cfg["snapshotindex"]), model_prefix)
            if trained["body_parts"] and trained["body_parts"] != dlc.body_parts(cfg):
                raise dlc.DLCConfigError(
                    f"{dlc.config_path_of(project)} lists body parts {dlc.body_parts(cfg)}, but the "
                    f"TensorFlow shuffle {shuffle} was trained on {trained['body_parts']}: DeepLabCut's "
                    "body parts must not change after training. Restore them in config.yaml."
                )
            snapshot_name, snapshotindex = trained["snapshot"], trained["snapshotindex"]
            scorer = trained["scorer"]
        else:
            snapshots = dlc.list_snapshots(dlc.model_folder(cfg, shuffle, trainingsetindex, model_prefix))
            dlc.check_trained_body_parts(cfg, shuffle, trainingsetindex, model_prefix)
            snapshot = dlc.resolve_snapshot(
                cfg, shuffle, trainingsetindex, int(cfg["snapshotindex"]), model_prefix
            )
            snapshotindex = snapshots.index(snapshot)
            snapshot_name = snapshot.name
            scorer = dlc.scorer_name(cfg, shuffle, trainingsetindex, snapshotindex, model_prefix)
        row = {
            "model_name": model_name,
            "task": cfg["Task"],
            "date": str(cfg["date"]),
            "iteration": int(cfg["iteration"]),
            "snapshotindex": snapshotindex,
            "shuffle": shuffle,
            "trainingsetindex": trainingsetindex,
            "engine": engine,
            "scorer": scorer,
            "config_template": cfg
            | {"snapshotindex": snapshotindex}
            | ({"engine": engine} if engine == dlc.TF_ENGINE else {}),
            "project_path": to_relative(project),
            "model_prefix": model_prefix,
            "model_description": model_description,
            "paramset_idx": paramset_idx,
        }
        unique_attrs = (
            "project_path",
            "task",
            "date",
            "iteration",
            "shuffle",
            "snapshotindex",
            "trainingsetindex",
            "engine",
            "model_prefix",
        )
        unique = {k: row[k] for k in unique_attrs}
        if cls & unique:
            other = (cls & unique).keys()[0]["model_name"]
            raise dj.errors.DuplicateError(
                f"This DeepLabCut model (shuffle {shuffle}, snapshot {snapshot_name}) is already "
                f"registered as {other!r}; use that name."
            )
        return row, dlc.body_parts(cfg)

    @classmethod
    def insert_external_model(
        cls,
        model_name: str,
        body_parts: list[str],
        source_software: str,
        *,
        model_description: str = "",
        scorer: str | None = None,
    ) -> dict:
        """Register a model whose outputs were made elsewhere (SLEAP, Lightning Pose, NWB, ...).

        Its estimations are imported (:meth:`PoseEstimationTask.generate_import`), never run.
        It has ``engine="external"``, ``task`` = the software, ``project_path`` =
        ``external/<model_name>`` (there is no DeepLabCut project) and zero shuffle, snapshot
        and iteration. Registering the same name, software and body parts again is a no-op.

        Parameters
        ----------
        model_name : str
            A unique name.
        body_parts : list of str
            The body parts (keypoints) its outputs hold.
        source_software : str
            The software that made the outputs, e.g. ``SLEAP``.
        model_description, scorer : str
            Free text; the scorer recorded with estimations (default: the model name).

        Returns
        -------
        dict
            The model's primary key.
        """
        parts = sorted(set(body_parts))
        if not parts or not all(isinstance(b, str) and 0 < len(b) <= 32 for b in parts):
            raise InputError(f"Body parts must be names of 1 to 32 characters, got {body_parts!r}.")
        key = {"model_name": model_name}
        if cls & key:
            row = (cls & key).fetch1("engine", "task")
            have = sorted(r["body_part"] for r in (cls.BodyPart & key).to_dicts())
            if row == (EXTERNAL_ENGINE, source_software[:32]) and have == parts:
                return key
            raise dj.errors.DuplicateError(
                f"A model named {model_name!r} exists already (engine {row[0]}, body parts {have}); "
                "choose another name for these outputs."
            )
        template = {"engine": EXTERNAL_ENGINE, "source_software": source_software, "bodyparts": parts}
        row = _projectless_row(
            model_name, EXTERNAL_ENGINE, source_software, scorer or model_name, template, model_description
        )
        with cls.connection.transaction:
            cls.insert_built(row, parts)
        return key

    @classmethod
    def insert_triangulation_model(
        cls, model_name: str, body_parts: list[str], *, model_description: str = ""
    ) -> dict:
        """Register the model of 3D estimations triangulated from 2D ones (``threed``).

        It has ``engine="triangulation"`` and no project; registering the same name with the
        same body parts again is a no-op.
        """
        from .threed import ENGINE

        parts = sorted(set(body_parts))
        key = {"model_name": model_name}
        if cls & key:
            engine = (cls & key).fetch1("engine")
            have = sorted(r["body_part"] for r in (cls.BodyPart & key).to_dicts())
            if engine == ENGINE and have == parts:
                return key
            raise dj.errors.DuplicateError(
                f"A model named {model_name!r} exists already (engine {engine}, body parts {have}); "
                "choose another name for the 3D model."
            )
        template = {"engine": ENGINE, "bodyparts": parts}
        row = _projectless_row(
            model_name,
            ENGINE,
            ENGINE,
            model_name,
            template,
            model_description or "triangulated from 2D views",
        )
        # threed.TriangulationTask.insert_task registers it inside its own transaction.
        with contextlib.nullcontext() if cls.connection.in_transaction else cls.connection.transaction:
            cls.insert_built(row, parts)
        return key

    @classmethod
    def insert_superanimal_model(
        cls,
        model_name: str,
        superanimal: str = "superanimal_topviewmouse",
        pose_model: str = "hrnet_w32",
        detector: str = "fasterrcnn_resnet50_fpn_v2",
        *,
        max_individuals: int = 1,
        pcutoff: float = DEFAULT_PCUTOFF,
        model_description: str = "",
    ) -> dict:
        """Register one of DeepLabCut's SuperAnimal models: pose estimation without training.

        Its estimations run DeepLabCut's ``video_inference_superanimal`` in trigger mode (see
        :mod:`workflow_deeplabcut.superanimal` for where the weights come from). It has
        ``engine="superanimal"``, ``task`` = the SuperAnimal, the SuperAnimal's body parts, and
        individuals ``animal0`` ... up to ``max_individuals``. Registering the same name with
        the same choice again is a no-op.

        Parameters
        ----------
        model_name : str
            A unique name.
        superanimal : str
            E.g. ``superanimal_topviewmouse``, ``superanimal_quadruped``.
        pose_model, detector : str
            DeepLabCut model-zoo networks, e.g. ``hrnet_w32`` and ``fasterrcnn_resnet50_fpn_v2``.
        max_individuals : int
            Animals per frame.
        pcutoff : float
            The model's p-cutoff (QC and cleaning use it by default).
        model_description : str
            Free text.

        Returns
        -------
        dict
            The model's primary key.
        """
        from . import superanimal as zoo

        zoo.model_zoo_entry(superanimal, pose_model)  # refuses what the model zoo does not offer
        zoo.model_zoo_entry(superanimal, detector)
        if not isinstance(max_individuals, int) or max_individuals < 1:
            raise InputError(f"max_individuals must be a whole number >= 1, not {max_individuals!r}.")
        parts = zoo.body_parts(superanimal)
        template = {
            "engine": zoo.ENGINE,
            "superanimal": superanimal,
            "model_name": pose_model,
            "detector_name": detector,
            "max_individuals": max_individuals,
            "bodyparts": parts,
            "pcutoff": float(pcutoff),
        }
        key = {"model_name": model_name}
        if cls & key:
            old = (cls & key).fetch1("config_template")
            if old == template:
                return key
            raise dj.errors.DuplicateError(
                f"A model named {model_name!r} exists already; choose another name."
            )
        row = _projectless_row(
            model_name,
            zoo.ENGINE,
            superanimal,
            zoo.scorer(superanimal, pose_model, detector),
            template,
            model_description,
            f"{superanimal}_{pose_model}_{detector}_{max_individuals}",
        )
        with cls.connection.transaction:
            cls.insert_built(row, parts)
        return key

    @classmethod
    def insert_built(cls, row: dict, parts: list[str]) -> None:
        """Insert a row from :meth:`build_model` with its body parts (call inside a transaction)."""
        BodyPart.insert([{"body_part": bp} for bp in parts], skip_duplicates=True)
        cls.insert1(row)
        name = {"model_name": row["model_name"]}
        cls.BodyPart.insert([{**name, "body_part": bp} for bp in parts])
        cfg = row.get("config_template") or {}
        if cfg.get("multianimalproject"):
            cls.Individual.insert(
                [
                    {**name, "individual": i, "individual_index": k}
                    for k, i in enumerate(cfg.get("individuals") or [])
                ]
            )
            cls.UniqueBodyPart.insert([{**name, "body_part": bp} for bp in cfg.get("uniquebodyparts") or []])

    @classmethod
    def relocate(cls, model_name: str, dlc_config) -> tuple[str, str]:
        """Point a registered model at its DeepLabCut project's new folder (it was moved or copied).

        The project there must hold the same model: task, date, iteration and body parts as
        registered, and the registered snapshot with the same scorer name.

        Parameters
        ----------
        model_name : str
            A registered DeepLabCut model.
        dlc_config : str or Path
            The project's ``config.yaml`` (or folder) at its new place, inside a data root.

        Returns
        -------
        tuple of str
            The old and the new ``project_path`` (relative to a root).

        Raises
        ------
        InputError
            When the model does not exist, is external, or the project there is another one.
        """
        rows = (cls & {"model_name": model_name}).to_dicts()
        if not rows:
            raise InputError(f"No model named {model_name!r}; `Model.keys()` lists the registered ones.")
        row = rows[0]
        if row["engine"] != "pytorch":
            raise InputError(
                f"Model {model_name!r} is {row['engine']} ({row['task']}): it has no project to relocate."
            )
        cfg, project = _config_dict(dlc_config)
        cfg = cfg | {"project_path": str(project)}
        registered = {"Task": row["task"], "date": row["date"], "iteration": row["iteration"]}
        found = {"Task": cfg["Task"], "date": str(cfg["date"]), "iteration": int(cfg["iteration"])}
        parts = sorted(r["body_part"] for r in (cls.BodyPart & {"model_name": model_name}).to_dicts())
        differences = [
            f"{k} {found[k]!r} (registered {registered[k]!r})"
            for k in registered
            if found[k] != registered[k]
        ]
        if sorted(dlc.body_parts(cfg)) != parts:
            differences.append(f"body parts {sorted(dlc.body_parts(cfg))} (registered {parts})")
        if not differences:
            folder = dlc.model_folder(cfg, row["shuffle"], row["trainingsetindex"], row["model_prefix"])
            snapshots = dlc.list_snapshots(folder)
            if row["snapshotindex"] >= len(snapshots):
                differences.append(f"no snapshot {row['snapshotindex']} in {folder}")
            else:
                scorer = dlc.scorer_name(
                    cfg, row["shuffle"], row["trainingsetindex"], row["snapshotindex"], row["model_prefix"]
                )
                if scorer != row["scorer"]:
                    differences.append(f"scorer {scorer!r} (registered {row['scorer']!r})")
        if differences:
            raise InputError(
                f"{project} is not the project of model {model_name!r}: " + "; ".join(differences) + ". "
                "Give the config.yaml of the moved project, or register this one as a new model."
            )
        new = to_relative(project)
        cls.update1(
            {
                "model_name": model_name,
                "project_path": new,
                "config_template": row["config_template"] | {"project_path": str(project)},
            }
        )
        return row["project_path"], new

    @classmethod
    def pcutoff(cls, key: dict) -> float:
        """Return a model's own p-cutoff: its config's ``pcutoff``, else DeepLabCut's default 0.6."""
        template = (cls & {"model_name": key["model_name"]}).fetch1("config_template")
        value = template.get("pcutoff")
        return float(value) if value is not None else DEFAULT_PCUTOFF

    @classmethod
    def project_config(cls, key: dict) -> Path:
        """Return the absolute ``config.yaml`` path of a model's project."""
        return dlc.config_path_of(find_full_path((cls & key).fetch1("project_path")))


@schema
class PendingModel(dj.Manual):
    definition = """
    # a model to register once its training task has trained it (ingest's models.csv)
    model_name: varchar(64)  # the Model's name once registered
    ---
    -> train.TrainingTask
    model_description="": varchar(1000)
    config_params=null: <blob>  # overrides of config values, as Model.insert_new_model's params
    """

    class PoseTask(dj.Part):
        definition = """
        # a pose-estimation task to create when the model is registered
        -> master
        -> VideoRecording
        ---
        task_mode="trigger": enum('load', 'trigger')
        pose_estimation_output_dir="": varchar(255)  # relative to the processed root
        pose_estimation_params=null: <blob>
        """


@schema
class ModelRegistration(dj.Computed):
    definition = """
    # a PendingModel registered as a Model (with its pose and post-processing tasks)
    -> PendingModel
    """

    @property
    def key_source(self):
        """Pending models whose training has run."""
        return (PendingModel & train.ModelTraining).proj()

    def make(self, key):
        """Register the trained model, then create the tasks that waited for it."""
        from . import postprocess

        pending = (PendingModel & key).fetch1()
        task = (train.TrainingTask & pending).fetch1()
        params = (train.TrainingParamSet & pending).fetch1("params")
        snapshotindex = (train.ModelTraining & pending).fetch1("snapshotindex")
        row, parts = Model.build_model(
            key["model_name"],
            find_full_path(task["project_path"]),
            shuffle=params["shuffle"],
            trainingsetindex=params["trainingsetindex"],
            model_description=pending["model_description"],
            model_prefix=task["model_prefix"],
            paramset_idx=pending["paramset_idx"],
            params={"snapshotindex": snapshotindex, **(pending["config_params"] or {})},
        )
        Model.insert_built(row, parts)
        self.insert1(key)
        for pose_task in (PendingModel.PoseTask & key).to_dicts():
            PoseEstimationTask.insert1(pose_task)
        for pp_task in (postprocess.PendingPostprocessTask & key).keys():
            postprocess.PostprocessTask.insert1(pp_task)


@schema
class ModelEvaluation(dj.Computed):
    definition = """
    -> Model
    ---
    train_iterations: int32  # training epochs of the evaluated snapshot
    train_error=null: float64  # train RMSE (px)
    test_error=null: float64  # test RMSE (px)
    p_cutoff=null: float64  # likelihood cutoff used
    train_error_p=null: float64  # train RMSE (px) with p-cutoff
    test_error_p=null: float64  # test RMSE (px) with p-cutoff
    warning="": varchar(512)  # quality gate: set when the test error is large for the frames
    """

    class Metrics(dj.Part):
        definition = """
        # DeepLabCut 3's keypoint mAP and mAR (percent, OKS-based): for multi-animal models, how well whole animals are found
        -> master
        ---
        train_map=null: float64
        train_mar=null: float64
        test_map=null: float64
        test_mar=null: float64
        """

    @property
    def key_source(self):
        """DeepLabCut models: external models have no project to evaluate."""
        return Model & {"engine": "pytorch"}

    def make_fetch(self, key):
        """Fetch the model's coordinates and its quality gate."""
        row = (Model & key).fetch1()
        params = (train.TrainingParamSet & row).to_dicts() if row["paramset_idx"] is not None else []
        gate = (params[0]["params"] if params else {}).get("max_test_error_fraction")
        return [
            {
                k: row[k]
                for k in (
                    "project_path",
                    "iteration",
                    "shuffle",
                    "trainingsetindex",
                    "snapshotindex",
                    "model_prefix",
                )
            },
            gate if gate is not None else quality.MAX_TEST_ERROR_FRACTION,
        ]

    def make_compute(self, key, model, gate):
        """Run DeepLabCut's evaluation, outside any transaction; judge the test error."""
        config = dlc.config_path_of(find_full_path(model["project_path"]))
        with (
            joblog.captured("ModelEvaluation", key),
            dlc.config_at_iteration(config, model["iteration"]) as at,
        ):
            results = dlc.evaluate(
                at,
                shuffle=model["shuffle"],
                trainingsetindex=model["trainingsetindex"],
                snapshotindex=model["snapshotindex"],
                modelprefix=model["model_prefix"],
                device="cpu" if not _cuda() else "auto",
            )
        size = dlc.frame_size(dlc.read_config(config))
        return [{**results, "warning": quality.model_warning(results["test_error"], size, gate)[:512]}]

    def make_insert(self, key, results):
        """Store the errors, and DeepLabCut's mAP/mAR when its results file has them."""
        metrics = results.pop("metrics", None) or {}
        self.insert1({**key, **results})
        if any(v is not None for v in metrics.values()):
            self.Metrics.insert1({**key, **metrics})


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@schema
class PoseEstimationTask(dj.Manual):
    definition = """
    # a video recording to be analysed by a model
    -> VideoRecording
    -> Model
    ---
    task_mode="load": enum('load', 'trigger')  # load existing outputs, or run DeepLabCut
    pose_estimation_output_dir="": varchar(255)  # relative to the processed root; "" = inferred
    pose_estimation_params=null: <blob>  # extra keyword arguments of analyze_videos
    """

    @classmethod
    def infer_output_dir(cls, key: dict, relative: bool = False, mkdir: bool = False) -> Path:
        """Return the default output folder of a task.

        It is ``<processed root>/<subject>/<session_datetime>/recording_<id>/<model_name>``, so
        it is unique per recording and model.
        """
        key = {
            **one_key(session.Session, key),
            "recording_id": key["recording_id"],
            "model_name": key["model_name"],
        }
        stamp = pd.Timestamp(key["session_datetime"]).strftime("%Y%m%d-%H%M%S")
        model = re.sub(r"[^A-Za-z0-9_.-]+", "-", key["model_name"])
        rel = Path(str(key["subject"])) / stamp / f"recording_{key['recording_id']}" / model
        full = get_settings().processed_data_dir / rel
        if mkdir:
            full.mkdir(parents=True, exist_ok=True)
        return rel if relative else full

    @classmethod
    def output_dir(cls, key: dict) -> Path:
        """Return the absolute output folder of an existing task (stored or inferred)."""
        stored = (cls & key).fetch1("pose_estimation_output_dir")
        if not stored:
            return cls.infer_output_dir(key)
        root = get_settings().processed_data_dir
        full = (root / stored).resolve()
        to_relative(full, roots=(root,))  # refuses paths that climb out of the root
        return full

    @classmethod
    def generate(
        cls,
        video_recording_key: dict,
        model_name: str,
        *,
        task_mode: str | None = None,
        analyze_videos_params: dict | None = None,
        output_dir: str | Path | None = None,
    ) -> dict:
        """Insert a pose-estimation task for a recording and a model.

        Parameters
        ----------
        video_recording_key : dict
            A ``VideoRecording`` key.
        model_name : str
            A registered ``Model``.
        task_mode : {'load', 'trigger'}, optional
            Default: ``load`` when the output folder already holds DeepLabCut outputs for the
            recording's videos, ``trigger`` otherwise.
        analyze_videos_params : dict, optional
            Inference options: ``engine`` (``auto``, ``workflow`` or ``deeplabcut``, see
            :func:`workflow_deeplabcut.dlc.analyze`), ``batch_size``, ``device``,
            ``channels_last``, ``compile``, ``save_as_csv``, or any other
            ``deeplabcut.analyze_videos`` argument (which makes ``auto`` run DeepLabCut's).
        output_dir : str or Path, optional
            Output folder under the processed root; default :meth:`infer_output_dir`.

        Returns
        -------
        dict
            The task's primary key.
        """
        key = {**one_key(VideoRecording, video_recording_key), "model_name": model_name}
        if not Model & {"model_name": model_name}:
            raise InputError(f"No model named {model_name!r}; register it with Model.insert_new_model.")
        root = get_settings().processed_data_dir
        if output_dir is None:
            rel = ""
            full = cls.infer_output_dir(key, mkdir=True)
        else:
            rel = to_relative(output_dir, roots=(root,))
            full = root / rel
        if task_mode is None:
            # Any DeepLabCut output there, even one that needs choosing, means load: running
            # DeepLabCut would write into a folder the lab keeps its outputs in.
            stems = [PurePosixPath(r["file_path"]).stem for r in (VideoRecording.File & key).to_dicts()]
            found = any(dlc.output_candidates(full, stem) for stem in stems)
            task_mode = "load" if found else "trigger"
        if task_mode not in ("load", "trigger"):
            raise InputError(f"task_mode must be 'load' or 'trigger', not {task_mode!r}.")
        if analyze_videos_params is not None and not isinstance(analyze_videos_params, dict):
            raise InputError("analyze_videos_params must be a dict of analyze_videos arguments.")
        choice = dlc.check_output_choice(analyze_videos_params or {})
        if task_mode == "trigger":
            if choice:
                raise InputError(
                    f"The task params {sorted(choice)} choose among existing outputs (load mode); a "
                    "trigger-mode task writes its model's own. Drop them, or use task_mode='load'."
                )
            refuse_tensorflow_run((Model & {"model_name": model_name}).fetch1())
        analyze_videos_params = _with_tracking(model_name, task_mode, analyze_videos_params)
        cls.insert1(
            {
                **key,
                "task_mode": task_mode,
                "pose_estimation_output_dir": rel,
                "pose_estimation_params": analyze_videos_params,
            }
        )
        return key

    @classmethod
    def insert_estimation_task(
        cls,
        key: dict,
        model_name: str | None = None,
        *,
        task_mode: str | None = None,
        params: dict | None = None,
        analyze_videos_params: dict | None = None,
        relative: bool = True,
        mkdir: bool = True,
        skip_duplicates: bool = False,
    ) -> dict:
        """Insert a task the way element-deeplabcut's calls do.

        Both element signatures: 0.1's ``(key, task_mode, params)`` and 0.2+'s, which is
        :meth:`generate`'s. ``key`` holds the recording and, unless ``model_name`` is given, the model. ``params``
        is element 0.1's name for ``analyze_videos_params``. ``relative`` and ``mkdir`` are
        accepted and have no effect: the output folder is always stored relative to the
        processed root and made when inferred. With ``skip_duplicates``, an existing task is
        kept and its key returned. See :meth:`generate`.
        """
        model_name = model_name or key.get("model_name")
        task_mode = task_mode or key.get("task_mode")  # element's notebooks put it in the key
        if not model_name:
            raise InputError("Give the model: insert_estimation_task({**recording_key, 'model_name': ...}).")
        if params is not None and analyze_videos_params is not None:
            raise InputError("Give params or analyze_videos_params, not both (they are the same).")
        recording = {k: v for k, v in key.items() if k not in ("model_name", "task_mode")}
        existing = cls & {**one_key(VideoRecording, recording), "model_name": model_name}
        if skip_duplicates and existing:
            return existing.keys()[0]
        return cls.generate(
            recording,
            model_name,
            task_mode=task_mode,
            analyze_videos_params=params if params is not None else analyze_videos_params,
        )

    @classmethod
    def generate_import(
        cls,
        video_recording_key: dict,
        model_name: str,
        path: str | Path,
        software: str,
        *,
        loader_params: dict | None = None,
    ) -> dict:
        """Insert a task that imports pose data made elsewhere, read with movement's loaders.

        Parameters
        ----------
        video_recording_key : dict
            The ``VideoRecording`` the pose data was estimated on.
        model_name : str
            A model registered with :meth:`Model.insert_external_model` (or a DeepLabCut model,
            for DeepLabCut outputs made outside the pipeline).
        path : str or Path
            The file, inside a data root (raw or processed).
        software : str
            ``DeepLabCut``, ``SLEAP``, ``LightningPose`` or ``NWB``.
        loader_params : dict, optional
            For NWB: ``processing_module_key`` and ``pose_estimation_key``.

        Returns
        -------
        dict
            The task's primary key.
        """
        from . import poses

        if software not in poses.EXTERNAL_SOFTWARE:
            raise PoseFileError(
                f"Unknown pose software {software!r}; choose one of {sorted(poses.EXTERNAL_SOFTWARE)}."
            )
        key = {**one_key(VideoRecording, video_recording_key), "model_name": model_name}
        if not Model & {"model_name": model_name}:
            raise InputError(f"No model named {model_name!r}; register it with Model.insert_external_model.")
        full = Path(path).expanduser().resolve()
        if not full.is_file():
            raise FileNotFoundError(f"Pose file {full} does not exist.")
        if cls & key:
            raise dj.errors.DuplicateError(
                f"Recording {key} already has a pose estimation task for model {model_name!r}; "
                "import under another model name, or delete that task first."
            )
        params = {
            "source_file": to_relative(full),
            "source_software": software,
            "loader": loader_params or {},
        }
        cls.insert1(
            {**key, "task_mode": "load", "pose_estimation_output_dir": "", "pose_estimation_params": params}
        )
        return key


@schema
class PoseEstimation(dj.Computed):
    definition = """
    -> PoseEstimationTask
    ---
    pose_estimation_time: datetime  # when the outputs were written (h5 modification time)
    output_dir: varchar(255)  # where the outputs are, relative to the processed root
    scorer: varchar(255)  # the scorer named in the outputs
    nframes: int32
    coords: varchar(32)  # the last axis of poses: 'x,y,likelihood' (2D) or 'x,y,z,likelihood' (3D)
    poses: <npyfile@workflow_dlc>  # (frame, slot, coord) positions in px, as the source wrote them
    """

    class BodyPartPosition(dj.Part):
        definition = """
        # one body part of one individual: its slot in the master's poses array
        -> master
        individual: varchar(32)  # 'individual_0' in single-animal projects
        -> Model.BodyPart
        ---
        slot: int16  # index along the second axis of PoseEstimation.poses
        """

    class Triangulated(dj.Part):
        definition = """
        # how a 3D estimation (threed.TriangulationTask) was triangulated, per point
        -> master
        ---
        reprojection_error: <npy@workflow_dlc>  # (frames, slots) mean px over the views used; NaN if none
        n_cameras: <npy@workflow_dlc>  # (frames, slots) views used (int8)
        median_reprojection_error=null: float64  # px, over the triangulated points
        fraction_triangulated: float64  # points seen by two or more views
        unit: varchar(8)  # of x, y and z: the calibration board's unit
        warning="": varchar(1000)  # quality gate: set when the median reprojection error is too large
        """

    @property
    def key_source(self):
        """Tasks whose recording has been probed; 3D tasks once every view is estimated."""
        from . import threed

        ready = PoseEstimationTask & RecordingInfo
        return ready.restrict(dj.Not(threed.TriangulationTask.waiting()), semantic_check=False)

    def make_fetch(self, key):
        """Fetch the task, the model, the videos, the expected frame count and the output folder.

        For a 3D task (``threed``), fetch instead the calibrated cameras, the parameters and
        references to the views' stored poses.
        """
        task = (PoseEstimationTask & key).fetch1()
        if (task["pose_estimation_params"] or {}).get("triangulation"):
            from . import threed

            # Same tuple shape; the views' inputs take the place of the videos (no model, parts
            # or frame count: the views' estimations carry them).
            inputs = threed.triangulation_inputs(key)
            return task, None, None, inputs, None, str(PoseEstimationTask.output_dir(key))
        model = (Model & key).fetch1()
        template = model.pop("config_template")
        if model["engine"] == superanimal.ENGINE:
            model["superanimal"] = template  # what to run: there is no project
        parts = sorted(r["body_part"] for r in (Model.BodyPart & key).to_dicts())
        # A multi-animal DeepLabCut model's individuals (those registered before they were rows: its config's)
        model["multi_animal"] = bool(template.get("multianimalproject")) and model["engine"] in DLC_ENGINES
        # ... and a DeepLabCut model whose config says it is single-animal (a bare row says nothing)
        model["single_animal"] = (
            model["engine"] in DLC_ENGINES and "Task" in template and not model["multi_animal"]
        )
        model["individuals"] = (
            (Model.individuals(key) or list(template.get("individuals") or []))
            if model["multi_animal"]
            else []
        )
        files = sorted((VideoRecording.File & key).to_dicts(), key=lambda r: r["file_id"])
        videos = [r["file_path"] for r in files]  # relative: load mode needs only their names
        nframes = (RecordingInfo & key).fetch1("nframes")
        output_dir = str(PoseEstimationTask.output_dir(key))
        return task, model, parts, videos, nframes, output_dir

    def make_compute(self, key, task, model, parts, videos, nframes, output_dir):
        """Run DeepLabCut (trigger mode) and read its outputs, outside any transaction (no queries)."""
        output_dir = Path(output_dir)
        if (task["pose_estimation_params"] or {}).get("triangulation"):
            return self._triangulate(task, videos, output_dir)  # ``videos``: the views' inputs
        source = (task["pose_estimation_params"] or {}).get("source_file")
        if source is not None:
            return self._read_import(task, model, parts, nframes, output_dir)
        if model["engine"] == EXTERNAL_ENGINE:
            raise dlc.DLCConfigError(
                f"Model {model['model_name']!r} is external ({model['task']}): it cannot run. Import "
                "its outputs with PoseEstimationTask.generate_import (CLI: import-pose)."
            )
        if task["task_mode"] == "trigger":
            refuse_tensorflow_run(model)
        stems = [PurePosixPath(v).stem for v in videos]
        zoo = model["engine"] == superanimal.ENGINE
        infix = f"_{model['scorer']}" if zoo else "DLC*"
        task_params = task["pose_estimation_params"] or {}
        which = {
            "prefer": dlc.legacy_scorers(model["scorer"]),  # the model's own file, when there are several
            "choice": task_params if task["task_mode"] == "load" else None,
        }
        if task["task_mode"] == "trigger" and task_params.get("track_method"):
            which["choice"] = {"tracks": dlc.TRACKERS[task_params["track_method"]]}  # this run's tracks

        def check(folder: Path) -> None:
            out = dlc.read_outputs(folder, stems, infix, **which)
            self._check_outputs(out, task, model, parts, videos, nframes, folder)

        if task["task_mode"] == "trigger" and zoo:
            with joblog.captured("PoseEstimation", key):
                superanimal.analyze(
                    model["superanimal"],
                    [find_full_path(v) for v in videos],
                    output_dir,
                    task["pose_estimation_params"] or {},
                    check=check,
                )
        elif task["task_mode"] == "trigger":
            config = dlc.config_path_of(find_full_path(model["project_path"]))
            with (
                joblog.captured("PoseEstimation", key),
                dlc.config_at_iteration(config, model["iteration"]) as at,
            ):
                dlc.analyze(
                    at,
                    [find_full_path(v) for v in videos],
                    output_dir,
                    shuffle=model["shuffle"],
                    trainingsetindex=model["trainingsetindex"],
                    snapshotindex=model["snapshotindex"],
                    modelprefix=model["model_prefix"],
                    params=task["pose_estimation_params"] or {},
                    check=check,  # on the new outputs, before they replace anything
                )
        out = dlc.read_outputs(output_dir, stems, infix, **which)
        self._check_outputs(out, task, model, parts, videos, nframes, output_dir)
        made = max(f.stat().st_mtime for f in out.h5_files)
        master = {
            "pose_estimation_time": _dt.datetime.fromtimestamp(made).replace(microsecond=0),
            "output_dir": to_relative(output_dir, roots=(get_settings().processed_data_dir,)),
            "scorer": out.scorer,
            "nframes": out.nframes,
            "coords": ",".join(out.coords),
            "poses": out.poses,  # the .h5 files' own bytes, copied into the store at insert
        }
        return master, _slot_rows(out.slots)

    @staticmethod
    def _check_outputs(out, task, model, parts, videos, nframes, output_dir) -> None:
        """Refuse outputs of another model or of other videos, naming the cause."""
        if task["task_mode"] == "trigger" and out.scorer != model["scorer"]:
            raise dlc.DLCOutputError(
                f"DeepLabCut wrote outputs as {out.scorer!r} but model {model['model_name']!r} is "
                f"{model['scorer']!r}; the project's snapshots changed since registration."
            )
        individuals = {i for i, _ in out.slots}
        known = set(model.get("individuals") or ()) | {"single"}
        if model.get("multi_animal") and not individuals <= known:
            raise dlc.DLCOutputError(
                f"The outputs in {output_dir} hold individuals {sorted(individuals)} but model "
                f"{model['model_name']!r} has {model['individuals']}: they come from another project. "
                "Remove them, or pair the task with the model that made them."
            )
        if model.get("single_animal") and len(individuals) > 1:
            raise dlc.DLCOutputError(
                f"The outputs in {output_dir} hold several individuals {sorted(individuals)} but model "
                f"{model['model_name']!r} is single-animal: they come from a multi-animal model. "
                "Register that model and pair the task with it."
            )
        if out.body_parts != set(parts):
            raise dlc.DLCOutputError(
                f"The outputs in {output_dir} hold body parts {sorted(out.body_parts)} but model "
                f"{model['model_name']!r} has {parts}: they come from another model. Remove "
                "them, or pair the task with the model that made them."
            )
        if out.nframes != nframes:
            # A video that changed since it was probed (e.g. truncated by a new copy) is the cause.
            video.probe_recording([find_full_path(v) for v in videos])
            if task["task_mode"] == "trigger":
                raise dlc.DLCOutputError(
                    f"DeepLabCut read {out.nframes} frames but RecordingInfo has {nframes}: the "
                    "videos changed since they were probed. Delete the recording's RecordingInfo "
                    "row and populate it again."
                )
            raise dlc.DLCOutputError(
                f"The outputs in {output_dir} have {out.nframes} frames but the recording has "
                f"{nframes}: they come from other videos. Remove them and run in trigger mode."
            )

    @staticmethod
    def _read_import(task, model, parts, nframes, output_dir):
        """Read an imported file with movement and check it against the model and recording."""
        from . import poses

        params = task["pose_estimation_params"]
        path = find_full_path(params["source_file"])
        ds = poses.load_external(path, params["source_software"], **params.get("loader", {}))
        slots, coords, values = poses.dataset_poses(ds, dlc.SINGLE_INDIVIDUAL)
        if ds.attrs.get("file_slots"):  # a multi-animal file's own slots, not movement's full grid
            where = {slot: k for k, slot in enumerate(slots)}
            keep = [where[tuple(slot)] for slot in ds.attrs["file_slots"]]
            slots, values = [slots[k] for k in keep], values[:, keep, :]
        found = sorted({b for _, b in slots})
        if found != parts:
            raise PoseFileError(
                f"{path} holds body parts {found} but model {model['model_name']!r} has {parts}; "
                "register a model with these body parts."
            )
        if ds.sizes["time"] != nframes:
            raise PoseFileError(
                f"{path} has {ds.sizes['time']} frames but the recording has {nframes}: it was made "
                "from other videos."
            )
        # A DeepLabCut file keeps the scorer it names (the network that made it).
        scorer = dlc.file_scorer(path) if params["source_software"] == "DeepLabCut" else model["scorer"]
        output_dir.mkdir(parents=True, exist_ok=True)
        master = {
            "pose_estimation_time": _dt.datetime.fromtimestamp(path.stat().st_mtime).replace(microsecond=0),
            "output_dir": to_relative(output_dir, roots=(get_settings().processed_data_dir,)),
            "scorer": scorer,
            "nframes": nframes,
            "coords": ",".join(coords),
            "poses": values,
        }
        if params["source_software"] == "Anipose":
            unit = params.get("loader", {}).get("unit", "mm")
            return master, _slot_rows(slots), poses.anipose_quality(path, [b for _, b in slots], unit)
        return master, _slot_rows(slots)

    @staticmethod
    def _triangulate(task, inputs, output_dir):
        """Triangulate the views of a 3D task (``threed``): positions, then their quality."""
        from . import threed

        slots, coords, values, quality = threed.triangulate_windows(inputs)
        output_dir.mkdir(parents=True, exist_ok=True)
        master = {
            "pose_estimation_time": _dt.datetime.now().replace(microsecond=0),
            "output_dir": to_relative(output_dir, roots=(get_settings().processed_data_dir,)),
            "scorer": task["model_name"],
            "nframes": int(values.shape[0]),
            "coords": ",".join(coords),
            "poses": values.reshape(values.shape[0], len(slots), len(coords)),
        }
        return master, _slot_rows(slots), quality

    def make_insert(self, key, master, slots, triangulated=None):
        """Insert the master row (its pose array written to the store) and one row per slot."""
        self.insert1({**key, **master})
        self.BodyPartPosition.insert([{**key, **row} for row in slots])
        if triangulated is not None:
            self.Triangulated.insert1({**key, **triangulated})

    @classmethod
    def window(
        cls, key: dict, start: int | None = None, stop: int | None = None, body_parts="all"
    ) -> PoseWindow:
        """Return frames ``start`` to ``stop`` of one pose estimation, reading only those.

        Parameters
        ----------
        key : dict
            Must identify exactly one ``PoseEstimation``.
        start, stop : int, optional
            Frame numbers, as in ``range(start, stop)``; default the whole recording.
        body_parts : "all", str or list of str
            Which body parts to keep.

        Returns
        -------
        PoseWindow
            The values are a memory-mapped view where the store is a local folder.
        """
        return cls._window(_one_estimation(cls, key), start, stop, body_parts)

    @classmethod
    def _window(cls, match: dict, start, stop, body_parts) -> PoseWindow:
        poses_ref, coords = (cls & match).fetch1("poses", "coords")
        parts = (cls.BodyPartPosition & match).to_dicts()
        return pose_window(poses_ref, parts, coords, start, stop, body_parts)

    @classmethod
    def info(cls, key: dict) -> dict:
        """Describe one pose estimation without reading its array.

        Returns
        -------
        dict
            ``nframes``, ``fps``, ``individuals``, ``body_parts`` (sorted), ``coords``, ``shape``
            (frames, slots, coords), ``dtype`` and ``scorer``.
        """
        match = _one_estimation(cls, key)
        master = (cls & match).fetch1()
        parts = (cls.BodyPartPosition & match).to_dicts()
        return {
            "nframes": master["nframes"],
            "fps": float((RecordingInfo & match).fetch1("fps")),
            "individuals": sorted({r["individual"] for r in parts}),
            "body_parts": sorted({r["body_part"] for r in parts}),
            "coords": tuple(master["coords"].split(",")),
            "shape": tuple(master["poses"].shape),
            "dtype": str(master["poses"].dtype),
            "scorer": master["scorer"],
        }

    @classmethod
    def get_trajectory(
        cls, key: dict, body_parts="all", start: int | None = None, stop: int | None = None
    ) -> pd.DataFrame:
        """Return one pose estimation (or a window of it) as a DeepLabCut-style DataFrame.

        Parameters
        ----------
        key : dict
            Must identify exactly one ``PoseEstimation``.
        body_parts : "all" or list of str
            Which body parts to return.
        start, stop : int, optional
            Frame numbers, as in ``range(start, stop)``: only those frames are read.

        Returns
        -------
        pandas.DataFrame
            Indexed by frame number; columns ``(scorer, bodyparts, coords)`` with coords ``x``,
            ``y`` (``z`` for 3D) and ``likelihood``, in the outputs' order, and an
            ``individuals`` level after ``scorer`` when the estimation has several
            individuals. The scorer level is the model name.
        """
        match = _one_estimation(cls, key)
        return cls._window(match, start, stop, body_parts).frame(match["model_name"])

    @classmethod
    def get_dataset(cls, key: dict, start: int | None = None, stop: int | None = None, body_parts="all"):
        """Return one pose estimation (or a window of it) as a movement poses dataset (xarray).

        ``position`` (time, space, keypoints, individuals) in pixels and ``confidence`` (the
        likelihood); the ``time`` coordinate is each frame's time in seconds
        (:meth:`RecordingInfo.timestamps`: the container's own for a variable frame rate).
        ``start`` and ``stop`` are frame numbers, as in ``range(start, stop)``.
        """
        from . import poses

        match = _one_estimation(cls, key)
        window = cls._window(match, start, stop, body_parts)
        software = "DeepLabCut" if (Model & match).fetch1("engine") != EXTERNAL_ENGINE else "external"
        ds = poses.to_dataset(
            window.arrays(), RecordingInfo.time_base(match), software, first_frame=window.start
        )
        units = (cls.Triangulated & match).to_dicts()
        # 3D positions are in the calibration board's unit (its row says which).
        unit = units[0]["unit"] if units else "mm" if "z" in window.coords else "px"
        ds.attrs.update(space_unit=unit, **{k: str(v) for k, v in match.items()})
        return ds


@schema
class IndividualMapping(dj.Manual):
    definition = """
    # who is who: an individual (track) of a multi-animal pose estimation is this subject
    -> PoseEstimation
    individual: varchar(32)  # as BodyPartPosition names it, e.g. DeepLabCut's 'animal1'
    ---
    -> subject.Subject.proj(animal="subject")
    unique index (subject, session_datetime, recording_id, model_name, animal)
    """

    @classmethod
    def map(cls, key: dict, mapping: dict[str, str]) -> list[dict]:
        """Say which subject each individual of one pose estimation is, in one transaction.

        Parameters
        ----------
        key : dict
            Restricts ``PoseEstimation`` to one estimation.
        mapping : dict
            ``{individual: subject}``; individuals left out stay unmapped.

        Returns
        -------
        list of dict
            The inserted rows.

        Raises
        ------
        InputError
            For an individual the estimation does not have (DeepLabCut's ``single`` is no
            animal), a subject that is not in ``subject.Subject``, a subject given twice or
            already mapped in this estimation, or an individual already mapped; nothing is
            inserted then.
        """
        est = _one_estimation(PoseEstimation, key)
        have = sorted(
            {r["individual"] for r in (PoseEstimation.BodyPartPosition & est).to_dicts()} - {"single"}
        )
        unknown = sorted(set(mapping) - set(have))
        if unknown:
            raise InputError(f"The estimation has no individual(s) {unknown}; it has {have}.")
        missing = sorted({s for s in mapping.values() if not subject.Subject & {"subject": s}})
        if missing:
            raise InputError(f"No subject(s) {missing} in subject.Subject; insert them first.")
        existing = {r["individual"]: r["animal"] for r in (cls & est).to_dicts()}
        again = sorted(set(mapping) & set(existing))
        if again:
            raise InputError(
                f"Individual(s) {again} are mapped already ({ {i: existing[i] for i in again} }); "
                "delete those rows first to change them."
            )
        seen: dict[str, str] = {}
        for individual, animal in [*existing.items(), *mapping.items()]:
            if animal in seen:
                raise InputError(
                    f"Subject {animal!r} is mapped to both {seen[animal]!r} and {individual!r} in this "
                    "estimation: one animal is one track."
                )
            seen[animal] = individual
        rows = [{**est, "individual": i, "animal": a} for i, a in mapping.items()]
        with cls.connection.transaction:
            cls.insert(rows)
        return rows

    @classmethod
    def labels(cls, key: dict, individuals: list[str]) -> list[str]:
        """Return each individual's label: ``'animal1 = mouse-7'`` where mapped, else its name."""
        est = {k: key[k] for k in PoseEstimation.primary_key}
        mapped = {r["individual"]: r["animal"] for r in (cls & est).to_dicts()}
        return [f"{i} = {mapped[i]}" if i in mapped else i for i in individuals]


def _with_tracking(model_name: str, task_mode: str, params: dict | None) -> dict | None:
    """Return a task's params with a multi-animal model's tracking resolved and recorded.

    A trigger task of a multi-animal model records its tracker (``track_method``,
    ``n_tracks``, ``tracker``, ``min_length``: see :data:`dlc.TRACKING_OPTIONS`) with every
    default filled in from the project, so the row says how its tracks were made. Tracking
    params on a single-animal model, or on a load task, are refused.
    """
    model = (Model & {"model_name": model_name}).fetch1()
    params = dict(params or {})
    asked = sorted(k for k in (*dlc.TRACKING_OPTIONS, "auto_track") if k in params)
    multi = model["engine"] in DLC_ENGINES and bool(
        (model["config_template"] or {}).get("multianimalproject")
    )
    if task_mode == "load" or not multi:
        if asked:
            why = (
                f"model {model_name!r} is single-animal"
                if not multi
                else "a load task reads tracks already made (choose them with 'tracks')"
            )
            raise InputError(f"The task params {asked} set multi-animal tracking, but {why}: drop them.")
        return params or None
    cfg = dlc.read_config(Model.project_config({"model_name": model_name})) | {
        "iteration": model["iteration"]
    }
    tracking = dlc.tracking_params(
        cfg, model["shuffle"], model["trainingsetindex"], params, model["model_prefix"]
    )
    return {k: v for k, v in params.items() if k != "auto_track"} | tracking


def refuse_tensorflow_run(model: dict) -> None:
    """Refuse to run a DeepLabCut 2.x (TensorFlow) model, saying how to get one that runs."""
    if model["engine"] != dlc.TF_ENGINE:
        return
    raise dlc.DLCConfigError(
        f"Model {model['model_name']!r} is a DeepLabCut 2.x TensorFlow model: this pipeline runs "
        "DeepLabCut 3's PyTorch engine, so it loads this model's outputs (task_mode='load', with "
        "the outputs in the task's folder) but cannot run it on videos. To run on new videos, "
        "train a PyTorch model from the same labels: a train.TrainingParamSet with a new shuffle "
        f"(e.g. {{'shuffle': {model['shuffle'] + 1}, 'trainingsetindex': {model['trainingsetindex']}, ...}}; "
        "the TensorFlow shuffle's training set is kept), a TrainingTask on the project, "
        "ModelTraining.populate(), then Model.insert_new_model."
    )


def _projectless_row(
    model_name: str, engine: str, task: str, scorer: str, template: dict, description: str, place: str = ""
) -> dict:
    """Return the ``Model`` row of a model without a DeepLabCut project (external, SuperAnimal).

    Its ``project_path`` is ``<engine>/<place or model name>``; shuffle, snapshot and
    iteration are zero.
    """
    return {
        "model_name": model_name,
        "task": task[:32],
        "date": "",
        "iteration": 0,
        "snapshotindex": 0,
        "shuffle": 0,
        "trainingsetindex": 0,
        "engine": engine,
        "scorer": scorer,
        "config_template": template,
        "project_path": f"{engine}/{place or model_name}",
        "model_prefix": "",
        "model_description": description,
        "paramset_idx": None,
    }


def _one_estimation(table, key: dict) -> dict:
    matches = (table & key).keys()
    if len(matches) != 1:
        raise InputError(
            f"The key {key} matches {len(matches)} pose estimations; give one that "
            "identifies exactly one (recording and model_name)."
        )
    return matches[0]


def _slot_rows(slots: list[tuple[str, str]]) -> list[dict]:
    return [{"individual": i, "body_part": b, "slot": k} for k, (i, b) in enumerate(slots)]


__all__ = [
    "schema",
    "VideoRecording",
    "RecordingInfo",
    "BodyPart",
    "Model",
    "ModelEvaluation",
    "PoseEstimationTask",
    "PoseEstimation",
    "IndividualMapping",
    "STORE",
    "EXTERNAL_ENGINE",
]
