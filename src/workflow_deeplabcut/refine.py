"""Schema ``refine``: DeepLabCut's refinement loop as rows.

DeepLabCut is used in a loop: extract frames, label them, train, analyze videos, extract
outlier frames, correct them, merge, train the next iteration. Each step here is a row, and
every file is written in DeepLabCut's own project layout, so the project opens in DeepLabCut's
labelling GUI (napari-deeplabcut) at any step:

- :class:`Project`: a DeepLabCut project whose loop is recorded.
- :class:`FrameExtraction` → :class:`ExtractedFrames` (+``Frame``): DeepLabCut's frame
  selection (``kmeans`` or ``uniform``) on a registered recording; the frames are written as
  ``labeled-data/<video>/imgNNNN.png`` and the video is added to ``video_sets``.
- :class:`LabelSet` (+``Label``): labels imported from ``CollectedData_<scorer>.h5``/``.csv``
  (DeepLabCut's GUI, napari-deeplabcut) or a plain CSV (frame, body part, x, y), checked, then
  written into the project's ``CollectedData_<scorer>.h5``. A *held-out* label set is kept out
  of training (written as ``HeldOut_<scorer>.h5``) and measures every model.
- :class:`OutlierTask` → :class:`OutlierFrames` (+``Frame``): DeepLabCut's outlier criteria
  (``jump``, ``uncertain``, ``fitting``, ``list``) on a pose estimation, each frame with its
  reason and score; the chosen frames are extracted into the project with the model's
  predictions as ``machinelabels-iter<N>.h5``, ready to be corrected.
- :class:`Iteration` (+``LabelSet``, ``OutlierSet``): DeepLabCut's ``merge_datasets``, then a
  training task for iteration *n* (``train.ModelTraining`` creates its dataset and trains it)
  and the model it registers (``model.ModelRegistration``), with its lineage.
- :class:`HeldOutError`: each estimation's error on a held-out label set of its recording;
  :func:`compare` lines the iterations up.

Several iterations live in one project: every model is trained, evaluated and run at its own
iteration (:func:`workflow_deeplabcut.dlc.config_at_iteration`), whatever ``config.yaml``
says now.
"""

from __future__ import annotations

import datetime as _dt
import re
from pathlib import Path

import datajoint as dj
import numpy as np
import pandas as pd

from . import dlc, model, safe_io, train
from .errors import InputError
from .paramsets import insert_hashed, params_hash
from .rows import one_key
from .settings import find_full_path, to_relative

schema = dj.Schema()

#: Frame extraction params (DeepLabCut's ``extract_frames`` options) and their defaults.
EXTRACTION_DEFAULTS = {
    "algorithm": "kmeans",  # or "uniform"
    "numframes": 20,  # DeepLabCut's numframes2pick
    "start": 0.0,  # fraction of the video
    "stop": 1.0,
    "crop": None,  # [x1, x2, y1, y2] in px: frames are cropped so (labels in the crop's coordinates)
    "cluster_step": 1,
    "cluster_resizewidth": 30,
    "cluster_color": False,
    "seed": 0,  # uniform selection draws at random
}
#: Outlier params (DeepLabCut's ``extract_outlier_frames`` options) and their defaults.
OUTLIER_DEFAULTS = {
    "algorithm": "jump",  # "jump", "uncertain", "fitting" or "list"
    "epsilon": 20.0,  # px: jump between frames (jump) or deviation from the ARIMA fit (fitting)
    "p_bound": 0.01,  # likelihood below which a point is uncertain
    "ARdegree": 3,
    "MAdegree": 1,
    "alpha": 0.01,
    "frames": None,  # the frames of "list"
    "comparison_body_parts": "all",
    "numframes": 20,  # how many of the candidates to extract
    "extraction": "kmeans",  # how to pick them: "kmeans" or "uniform"
    "cluster_resizewidth": 30,
    "cluster_color": False,
    "seed": 0,
}
_OUTLIER_ALGORITHMS = ("jump", "uncertain", "fitting", "list")
_IMAGE = re.compile(r"^img(\d+)\.png$")


def check_params(params: dict, defaults: dict, what: str) -> dict:
    """Return ``params`` completed with ``defaults``, refusing unknown keys and bad values.

    Parameters
    ----------
    params : dict
        The given params.
    defaults : dict
        :data:`EXTRACTION_DEFAULTS` or :data:`OUTLIER_DEFAULTS`.
    what : str
        ``"extraction"`` or ``"outlier"`` (named in messages; picks the algorithms allowed).

    Returns
    -------
    dict
        Every key of ``defaults``.

    Raises
    ------
    InputError
        Naming the key and what it accepts.
    """
    if not isinstance(params, dict):
        raise InputError(f"{what} params must be a dict, not {type(params).__name__}.")
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise InputError(f"Unknown {what} param(s) {unknown}; accepted: {sorted(defaults)}.")
    out = defaults | params
    algorithms = _OUTLIER_ALGORITHMS if what == "outlier" else ("kmeans", "uniform")
    if out["algorithm"] not in algorithms:
        raise InputError(f"{what} algorithm must be one of {algorithms}, not {out['algorithm']!r}.")
    if out.get("extraction", "kmeans") not in ("kmeans", "uniform"):
        raise InputError(f"extraction must be 'kmeans' or 'uniform', not {out['extraction']!r}.")
    if isinstance(out["numframes"], bool) or not isinstance(out["numframes"], int) or out["numframes"] < 1:
        raise InputError(f"numframes must be a positive integer, not {out['numframes']!r}.")
    if what == "extraction" and not 0 <= out["start"] < out["stop"] <= 1:
        raise InputError(
            f"start and stop must satisfy 0 <= start < stop <= 1, not {out['start']}, {out['stop']}."
        )
    crop = out.get("crop")
    if crop is not None and (
        not isinstance(crop, list | tuple)
        or len(crop) != 4
        or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in crop)
        or not (crop[0] < crop[1] and crop[2] < crop[3])
    ):
        raise InputError(f"crop must be [x1, x2, y1, y2] in px with x1 < x2 and y1 < y2, not {crop!r}.")
    if what == "outlier" and out["algorithm"] == "list":
        frames = out["frames"]
        if not frames or not all(isinstance(f, int) and not isinstance(f, bool) and f >= 0 for f in frames):
            raise InputError("The 'list' algorithm needs 'frames': a non-empty list of frame numbers.")
    return out


def _hashed_contents(idx: str, rows: list[tuple[int, str, dict]], defaults: dict) -> list[dict]:
    return [
        {idx: i, "paramset_desc": d, "param_set_hash": params_hash(defaults | p), "params": defaults | p}
        for i, d, p in rows
    ]


class _ParamSet:
    """``insert_new_params`` of a hashed param set checked against its defaults."""

    _idx: str
    _defaults: dict
    _what: str

    @classmethod
    def insert_new_params(cls, paramset_desc: str, params: dict, paramset_idx: int | None = None) -> int:
        """Insert (or find) a param set, checked against the defaults; return its index.

        Raises
        ------
        InputError
            For an unknown key or a bad value (see :func:`check_params`).
        """
        params = check_params(params, cls._defaults, cls._what)
        attrs = (cls._idx, "paramset_desc", "param_set_hash", "params")
        return insert_hashed(cls, attrs, paramset_desc, params, paramset_idx)


@schema
class Project(dj.Manual):
    definition = """
    # a DeepLabCut project whose labelling loop is recorded here
    project_name: varchar(64)
    ---
    project_path: varchar(255)  # the project folder, relative to a data root
    scorer: varchar(64)  # config.yaml's scorer: label files of another scorer are refused
    unique index (project_path)
    """

    @classmethod
    def insert_project(cls, project_name: str, dlc_config) -> dict:
        """Register a single-animal DeepLabCut project (its ``config.yaml`` or folder).

        Raises
        ------
        InputError
            For a multi-animal project, or a project registered under another name.
        """
        path = dlc.config_path_of(dlc_config)
        cfg = dlc.read_config(path)
        if cfg.get("multianimalproject"):
            raise InputError(
                f"{path} is a multi-animal project; the refinement loop covers single-animal ones."
            )
        row = {
            "project_name": project_name,
            "project_path": to_relative(path.parent),
            "scorer": cfg["scorer"],
        }
        existing = (cls & {"project_path": row["project_path"]}).to_dicts()
        if existing and existing[0]["project_name"] != project_name:
            raise InputError(
                f"{path.parent} is registered already as project {existing[0]['project_name']!r}."
            )
        if not existing:
            with cls.connection.transaction:
                model.BodyPart.insert_from_config(cfg)
                cls.insert1(row)
        return {"project_name": project_name}

    @classmethod
    def config(cls, key: dict) -> Path:
        """Return the absolute ``config.yaml`` of a project."""
        return dlc.config_path_of(find_full_path((cls & key).fetch1("project_path")))


@schema
class ExtractionParamSet(_ParamSet, dj.Lookup):
    definition = """
    # how frames to label are picked (DeepLabCut's extract_frames options)
    extraction_paramset_idx: int16
    ---
    paramset_desc: varchar(128)
    param_set_hash: char(32)
    unique index (param_set_hash)
    params: <blob>  # refine.EXTRACTION_DEFAULTS's keys
    """
    contents = _hashed_contents(
        "extraction_paramset_idx",
        [
            (0, "kmeans, 20 frames (DeepLabCut's default)", {}),
            (1, "uniform, 20 frames", {"algorithm": "uniform"}),
        ],
        EXTRACTION_DEFAULTS,
    )
    _idx, _defaults, _what = "extraction_paramset_idx", EXTRACTION_DEFAULTS, "extraction"


@schema
class FrameExtraction(dj.Manual):
    definition = """
    # frames of a recording to extract into a project for labelling
    -> Project
    -> model.VideoRecording
    -> ExtractionParamSet
    """


@schema
class ExtractedFrames(dj.Computed):
    definition = """
    # frames picked by DeepLabCut's frame selection, written as labeled-data/<video>/imgNNNN.png
    -> FrameExtraction
    ---
    video_stem: varchar(255)  # the labeled-data folder
    n_frames: int32
    crop_x=0: int32  # the crop's left edge: x in the video = x in the image + crop_x
    crop_y=0: int32  # the crop's top edge
    """

    class Frame(dj.Part):
        definition = """
        -> master
        frame_index: int32
        ---
        image_path: varchar(255)  # relative to the project folder
        """

    def make_fetch(self, key):
        """Fetch the project, the recording's video and the params."""
        config = Project.config(key)
        video = _single_video(key)
        return str(config), str(video), (ExtractionParamSet & key).fetch1("params")

    def make_compute(self, key, config, video, params):
        """Pick the frames and write them into the project, outside any transaction."""
        frames = select_frames(Path(video), params)
        images = write_frames(Path(config), Path(video), frames, params.get("crop"))
        return Path(video).stem, images, params.get("crop") or [0, 0, 0, 0]

    def make_insert(self, key, stem, images, crop):
        """Record the frames."""
        self.insert1(
            {**key, "video_stem": stem, "n_frames": len(images), "crop_x": crop[0], "crop_y": crop[2]}
        )
        self.Frame.insert([{**key, "frame_index": f, "image_path": p} for f, p in images.items()])


@schema
class OutlierParamSet(_ParamSet, dj.Lookup):
    definition = """
    # which frames of an estimation are outliers (DeepLabCut's extract_outlier_frames options)
    outlier_paramset_idx: int16
    ---
    paramset_desc: varchar(128)
    param_set_hash: char(32)
    unique index (param_set_hash)
    params: <blob>  # refine.OUTLIER_DEFAULTS's keys
    """
    contents = _hashed_contents(
        "outlier_paramset_idx",
        [
            (0, "jump > 20 px (DeepLabCut's default)", {}),
            (1, "uncertain: likelihood < 0.01", {"algorithm": "uncertain"}),
            (2, "fitting: ARIMA deviation > 20 px", {"algorithm": "fitting"}),
        ],
        OUTLIER_DEFAULTS,
    )
    _idx, _defaults, _what = "outlier_paramset_idx", OUTLIER_DEFAULTS, "outlier"


@schema
class OutlierTask(dj.Manual):
    definition = """
    # outlier frames to find in an estimation by a model of the project
    -> Project
    -> model.PoseEstimation
    -> OutlierParamSet
    """

    @classmethod
    def insert_task(cls, project_name: str, estimation: dict, outlier_paramset_idx: int = 0) -> dict:
        """Check and insert an outlier task; return its key.

        Raises
        ------
        InputError
            If the estimation is not by a DeepLabCut model of this project, or is 3D.
        """
        est = one_key(model.PoseEstimation, estimation)
        _check_project_model(project_name, est["model_name"])
        if (model.PoseEstimation & est).fetch1("coords") != "x,y,likelihood":
            raise InputError(f"Estimation {est} is not 2D; outlier frames are extracted from 2D estimations.")
        if not OutlierParamSet & {"outlier_paramset_idx": outlier_paramset_idx}:
            raise InputError(
                f"OutlierParamSet {outlier_paramset_idx} does not exist; insert it with insert_new_params."
            )
        key = {"project_name": project_name, **est, "outlier_paramset_idx": outlier_paramset_idx}
        cls.insert1(key, skip_duplicates=True)
        return key


@schema
class OutlierFrames(dj.Computed):
    definition = """
    # frames where the model is likely wrong, extracted into the project for correction
    -> OutlierTask
    ---
    video_stem: varchar(255)  # the labeled-data folder
    n_candidates: int32  # frames that met the criterion and were not in the project already
    n_frames: int32  # frames extracted (up to numframes of the candidates)
    machine_labels: varchar(255)  # the model's predictions for them, relative to the project
    """

    class Frame(dj.Part):
        definition = """
        -> master
        frame_index: int32
        ---
        reason: varchar(16)  # the algorithm that flagged it
        score=null: float64  # largest jump (px), lowest likelihood, or ARIMA deviation (px); null for list
        image_path: varchar(255)  # relative to the project folder
        """

    def make_fetch(self, key):
        """Fetch the project, the video, the model's scorer and iteration, and the params."""
        config = Project.config(key)
        mdl = (model.Model & {"model_name": key["model_name"]}).fetch1()
        rec = {a: key[a] for a in model.VideoRecording.primary_key}
        mine = {"project_name": key["project_name"], **rec}
        extracted = [
            r["frame_index"] for t in (ExtractedFrames, OutlierFrames) for r in (t.Frame & mine).keys()
        ]
        return (
            str(config),
            str(_single_video(key)),
            mdl["scorer"],
            mdl["iteration"],
            (OutlierParamSet & key).fetch1("params"),
            sorted(set(extracted)),
        )

    def make_compute(self, key, config, video, scorer, iteration, params, extracted):
        """Find the outliers, pick frames among them, write them and the predictions."""
        # The stored array is read here, not fetched: an estimation's poses never change.
        frame = model.PoseEstimation.get_trajectory({k: key[k] for k in model.PoseEstimation.primary_key})
        frame.columns = frame.columns.set_levels([scorer], level="scorer")
        candidates, scores = find_outliers(frame, params)
        # A frame in the project already (to label, labelled or held out) is not offered again.
        candidates = np.setdiff1d(candidates, extracted)
        picked = (
            select_frames(Path(video), params | {"algorithm": params["extraction"]}, candidates)
            if len(candidates)
            else []
        )
        images = write_frames(Path(config), Path(video), picked)
        machine = write_machine_labels(Path(config), Path(video).stem, frame, images, iteration)
        rows = [
            {"frame_index": f, "reason": params["algorithm"], "score": _score(scores, f), "image_path": p}
            for f, p in images.items()
        ]
        return Path(video).stem, len(candidates), rows, machine

    def make_insert(self, key, stem, n_candidates, rows, machine):
        """Record the outlier frames."""
        self.insert1(
            {
                **key,
                "video_stem": stem,
                "n_candidates": n_candidates,
                "n_frames": len(rows),
                "machine_labels": machine,
            }
        )
        self.Frame.insert([{**key, **r} for r in rows])


@schema
class LabelSet(dj.Manual):
    definition = """
    # labels imported into a project: from DeepLabCut's GUI, napari-deeplabcut or a plain CSV
    -> Project
    label_set_id: int32
    ---
    scorer: varchar(64)  # the project's scorer
    labeled_by="": varchar(64)  # who labelled
    labeled_at: datetime  # when the label file was last written (its modification time)
    imported_at: datetime
    source_file: varchar(255)  # as given
    held_out=0: bool  # kept out of training; measures models (HeldOutError)
    n_labels: int32  # labelled points (body part x frame, visible ones)
    """

    class Label(dj.Part):
        definition = """
        -> master
        -> model.VideoRecording
        frame_index: int32
        -> model.BodyPart
        ---
        x: float64  # px
        y: float64  # px
        """

    @classmethod
    def import_labels(
        cls,
        project_name: str,
        path,
        *,
        labeled_by: str = "",
        held_out: bool = False,
        video: str | None = None,
    ) -> dict:
        """Import a label file, check it, record it and write it into the project, in one transaction.

        Parameters
        ----------
        project_name : str
            A :class:`Project`.
        path : str or Path
            ``CollectedData_<scorer>.h5`` or ``.csv`` (DeepLabCut's layout), or a plain CSV with
            columns ``frame, bodypart, x, y`` (and ``video``, the video's stem, when the project
            has frames of several videos).
        labeled_by : str
            Who labelled.
        held_out : bool
            Keep these labels out of training; they measure the models (:class:`HeldOutError`).
        video : str, optional
            The video's stem, for a plain CSV without a ``video`` column.

        Returns
        -------
        dict
            The label set's key.

        Raises
        ------
        InputError
            For a file of another scorer, body parts not in the config, frames never extracted,
            coordinates outside the image, or no label at all: nothing is written.
        """
        if not Project & {"project_name": project_name}:
            raise InputError(
                f"Project {project_name!r} is not registered; use refine.Project.insert_project."
            )
        project = (Project & {"project_name": project_name}).fetch1()
        config = Project.config(project)
        cfg = dlc.read_config(config)
        path = Path(path)
        labels, scorer = read_labels(path, video)
        if scorer is not None and scorer != project["scorer"]:
            raise InputError(
                f"{path} holds labels of scorer {scorer!r}; project {project_name!r} labels as "
                f"{project['scorer']!r} (config.yaml). Relabel, or rename the scorer in the file."
            )
        unknown = sorted(set(labels["bodypart"]) - set(dlc.body_parts(cfg)))
        if unknown:
            raise InputError(f"{path}: body part(s) {unknown} are not in {config} ({dlc.body_parts(cfg)}).")
        frames = _project_frames(project_name)
        merged = labels.merge(frames, on=["video_stem", "frame_index"], how="left")
        missing = merged[merged["image_path"].isna()][["video_stem", "frame_index"]].drop_duplicates()
        if len(missing):
            shown = ", ".join(f"{s} frame {f}" for s, f in missing.head(5).itertuples(index=False))
            raise InputError(
                f"{path}: {len(missing)} labelled frame(s) were never extracted into project "
                f"{project_name!r} ({shown}); extract them first (FrameExtraction or OutlierTask)."
            )
        _check_inside(merged, Path(config).parent, path)
        visible = merged.dropna(subset=["x", "y"])
        if visible.empty:
            raise InputError(f"{path} holds no labelled point.")
        label_set_id = (
            max((k["label_set_id"] for k in (cls & {"project_name": project_name}).keys()), default=0) + 1
        )
        key = {"project_name": project_name, "label_set_id": label_set_id}
        recording_attrs = model.VideoRecording.primary_key
        with cls.connection.transaction:
            model.BodyPart.insert_from_config(cfg)  # parts added to the config since
            cls.insert1(
                {
                    **key,
                    "scorer": project["scorer"],
                    "labeled_by": labeled_by[:64],
                    "labeled_at": _dt.datetime.fromtimestamp(path.stat().st_mtime).replace(microsecond=0),
                    "imported_at": _dt.datetime.now().replace(microsecond=0),
                    "source_file": str(path)[-255:],
                    "held_out": bool(held_out),
                    "n_labels": len(visible),
                }
            )
            cls.Label.insert(
                [
                    {
                        **key,
                        **{a: r[a] for a in recording_attrs},
                        "frame_index": int(r["frame_index"]),
                        "body_part": r["bodypart"],
                        "x": float(r["x"]),
                        "y": float(r["y"]),
                    }
                    for r in visible.to_dict("records")
                ]
            )
            for stem in sorted(set(visible["video_stem"])):
                write_collected_data(project_name, stem, held_out=bool(held_out))
        return key


@schema
class Iteration(dj.Manual):
    definition = """
    # one iteration of a project: the labels it trains on, and the model it trains
    -> Project
    iteration: int32  # DeepLabCut's iteration
    ---
    -> [nullable] model.Model.proj(parent_model="model_name")
    -> train.TrainingTask
    trained_model: varchar(64)  # the model its training task registers (model.ModelRegistration)
    started_at: datetime
    """

    class LabelSet(dj.Part):
        definition = """
        # a label set in this iteration's training data
        -> master
        -> LabelSet
        """

    class OutlierSet(dj.Part):
        definition = """
        # outlier frames whose corrections this iteration trains on
        -> master
        -> OutlierFrames
        """

    @classmethod
    def start(
        cls,
        project_name: str,
        paramset_idx: int,
        *,
        parent_model: str | None = None,
        model_name: str | None = None,
    ) -> dict:
        """Start the project's next iteration: merge the labels, create its training task.

        The first iteration trains on the project's label sets as they are (no parent). Each
        later one needs the parent model (of the iteration before) and label sets imported
        since: it runs DeepLabCut's ``merge_datasets`` (the project's iteration becomes *n*),
        then records a training task (``train.ModelTraining`` creates the dataset and trains
        at iteration *n*) and a pending model that ``model.ModelRegistration`` registers.

        Parameters
        ----------
        project_name : str
            A :class:`Project`.
        paramset_idx : int
            The ``train.TrainingParamSet`` to train with (its ``iteration`` is set to *n*).
        parent_model : str, optional
            The model whose outliers were corrected; required after the first iteration.
        model_name : str, optional
            The new model's name; default ``<project>-iteration-<n>``.

        Returns
        -------
        dict
            The iteration's key.

        Raises
        ------
        InputError
            When nothing changed since the last iteration, the parent is not the last
            iteration's model, or a labelled folder lacks its labels: nothing is written.
        """
        project = (Project & {"project_name": project_name}).to_dicts()
        if not project:
            raise InputError(
                f"Project {project_name!r} is not registered; use refine.Project.insert_project."
            )
        config = Project.config(project[0])
        cfg = dlc.read_config(config)
        done = (cls & {"project_name": project_name}).to_dicts()
        training_sets = LabelSet & {"project_name": project_name} & "NOT held_out"
        used = {k["label_set_id"] for k in (cls.LabelSet & {"project_name": project_name}).keys()}
        new = sorted(k["label_set_id"] for k in training_sets.keys() if k["label_set_id"] not in used)
        if not done:
            n = int(cfg["iteration"])
            if parent_model is not None:
                raise InputError(
                    f"Project {project_name!r} has no iteration yet: its first has no parent model."
                )
        else:
            last = max(done, key=lambda r: r["iteration"])
            n = last["iteration"] + 1
            if parent_model is None:
                raise InputError(
                    f"Iteration {n} of {project_name!r} refines a model: give parent_model "
                    f"(iteration {last['iteration']}'s is {last['trained_model']!r})."
                )
            if int(cfg["iteration"]) > n:
                raise InputError(
                    f"{config} is at iteration {cfg['iteration']}, past this pipeline's next ({n}): the "
                    "project moved on outside the pipeline. Set its iteration back, or register it anew."
                )
            if parent_model != last["trained_model"]:
                raise InputError(
                    f"parent_model {parent_model!r} is not iteration {last['iteration']}'s model "
                    f"({last['trained_model']!r}); the next iteration refines the last one."
                )
        if not new:
            raise InputError(
                f"Nothing changed in {project_name!r} since iteration {n - 1}: import the corrected "
                "labels (LabelSet.import_labels) before merging."
                if done
                else f"Project {project_name!r} has no labels to train on; import some "
                "(LabelSet.import_labels)."
            )
        if done and not model.Model & {"model_name": parent_model}:
            raise InputError(
                f"Iteration {last['iteration']}'s model {parent_model!r} is not trained and registered "
                "yet: run ModelTraining and ModelRegistration (`run`) first."
            )
        _check_labelled_folders(project_name, config)
        model_name = model_name or f"{project_name}-iteration-{n}"[:64]
        if model.Model & {"model_name": model_name} or model.PendingModel & {"model_name": model_name}:
            raise InputError(f"A model named {model_name!r} exists already; choose another model_name.")
        base = (train.TrainingParamSet & {"paramset_idx": paramset_idx}).to_dicts()
        if not base:
            raise InputError(f"train.TrainingParamSet {paramset_idx} does not exist.")
        params = base[0]["params"] | {"iteration": n}
        stems = sorted({r["video_stem"] for r in _training_label_rows(project_name)})
        files = [
            to_relative(Path(config).parent / "labeled-data" / s / f"CollectedData_{project[0]['scorer']}.h5")
            for s in stems
        ]
        outliers = (
            (OutlierFrames & {"project_name": project_name, "model_name": parent_model}).keys()
            if done
            else []
        )
        key = {"project_name": project_name, "iteration": n}
        with cls.connection.transaction:
            idx = train.TrainingParamSet.insert_new_params(
                f"{base[0]['paramset_desc']}"[:100] + f", iteration {n}", params
            )
            video_set_id = max((k["video_set_id"] for k in train.VideoSet.keys()), default=0) + 1
            train.VideoSet.insert1({"video_set_id": video_set_id})
            train.VideoSet.File.insert(
                [{"video_set_id": video_set_id, "file_id": i, "file_path": f} for i, f in enumerate(files)]
            )
            task = {"video_set_id": video_set_id, "paramset_idx": idx, "training_id": 1}
            train.TrainingTask.insert1({**task, "project_path": project[0]["project_path"]})
            model.PendingModel.insert1(
                {
                    "model_name": model_name,
                    **task,
                    "model_description": f"{project_name}, iteration {n}",
                    "config_params": {"iteration": n},
                }
            )
            cls.insert1(
                {
                    **key,
                    "parent_model": parent_model,
                    **task,
                    "trained_model": model_name,
                    "started_at": _dt.datetime.now().replace(microsecond=0),
                }
            )
            cls.LabelSet.insert([{**key, "label_set_id": i} for i in sorted(used | set(new))])
            cls.OutlierSet.insert([{**key, **o} for o in outliers])
            if done:
                _merge_datasets(config, n)
        return key

    @classmethod
    def lineage(cls, model_name: str) -> dict:
        """Return a model's iteration, parent model, label sets and outlier sets."""
        rows = (cls & {"trained_model": model_name}).to_dicts()
        if not rows:
            raise InputError(f"Model {model_name!r} was not trained by a refinement iteration.")
        key = {k: rows[0][k] for k in ("project_name", "iteration")}
        return {
            **key,
            "parent_model": rows[0]["parent_model"],
            "label_sets": sorted(k["label_set_id"] for k in (cls.LabelSet & key).keys()),
            "outlier_sets": (cls.OutlierSet & key).keys(),
        }


@schema
class HeldOutError(dj.Computed):
    definition = """
    # an estimation's error on a held-out label set of its recording
    -> model.PoseEstimation
    -> LabelSet
    ---
    n_points: int32  # labelled points compared
    median_error: float64  # px
    mean_error: float64  # px
    rmse: float64  # px
    max_error: float64  # px
    """

    @property
    def key_source(self):
        """2D estimations of recordings that a held-out label set has labels of."""
        labelled = LabelSet.Label.proj() & (LabelSet & "held_out").proj()
        estimations = (model.PoseEstimation & "coords = 'x,y,likelihood'").proj()
        return (estimations * (LabelSet & "held_out").proj()) & labelled.proj()

    def make(self, key):
        """Compare the estimation with the labels at the labelled frames."""
        est = {k: key[k] for k in model.PoseEstimation.primary_key}
        labels = (LabelSet.Label & key).to_pandas().reset_index()
        # Labels are in their image's coordinates: a cropped frame's are shifted back.
        rec = model.VideoRecording.primary_key
        frames = _project_frames(key["project_name"])[[*rec, "frame_index", "crop_x", "crop_y"]]
        labels = labels.merge(frames, on=[*rec, "frame_index"], how="left")
        labels["x"] = labels["x"] + labels["crop_x"].fillna(0)
        labels["y"] = labels["y"] + labels["crop_y"].fillna(0)
        frame = model.PoseEstimation.get_trajectory(est)
        frame.columns = frame.columns.droplevel("scorer")
        errors = label_errors(frame, labels)
        if not len(errors):
            raise InputError(
                f"Held-out label set {key['label_set_id']} shares no body part with estimation {est}."
            )
        self.insert1(
            {
                **key,
                "n_points": len(errors),
                "median_error": float(np.median(errors)),
                "mean_error": float(np.mean(errors)),
                "rmse": float(np.sqrt(np.mean(errors**2))),
                "max_error": float(np.max(errors)),
            }
        )


def compare(project_name: str) -> pd.DataFrame:
    """Line up a project's iterations: labels, train/test error, held-out error, QC.

    Returns
    -------
    pandas.DataFrame
        One row per iteration (and held-out recording): ``iteration``, ``model_name``,
        ``parent_model``, ``n_label_sets``, ``n_labels``, ``train_error``, ``test_error`` (px,
        ``model.ModelEvaluation``), ``held_out_median_error``/``held_out_rmse`` (px,
        :class:`HeldOutError`, per held-out label set), and ``fraction_below_pcutoff`` and
        ``n_jumps`` of the model's estimations of the same recordings (``qc.PoseQC``).
    """
    from . import qc

    rows = []
    for it in (Iteration & {"project_name": project_name}).to_dicts():
        key = {"project_name": project_name, "iteration": it["iteration"]}
        sets = (LabelSet & (Iteration.LabelSet & key).proj()).to_dicts()
        row = {
            "iteration": it["iteration"],
            "model_name": it["trained_model"],
            "parent_model": it["parent_model"],
            "n_label_sets": len(sets),
            "n_labels": sum(s["n_labels"] for s in sets),
        }
        ev = (model.ModelEvaluation & {"model_name": it["trained_model"]}).to_dicts()
        row |= {
            "train_error": ev[0]["train_error"] if ev else None,
            "test_error": ev[0]["test_error"] if ev else None,
        }
        held = (HeldOutError & {"model_name": it["trained_model"], "project_name": project_name}).to_dicts()
        if not held:
            rows.append(row)
        for h in held:
            rec = {a: h[a] for a in model.VideoRecording.primary_key}
            q = (qc.PoseQC & rec & {"model_name": it["trained_model"]}).to_dicts()
            rows.append(
                row
                | {
                    "held_out_set": h["label_set_id"],
                    "recording_id": h["recording_id"],
                    "held_out_median_error": h["median_error"],
                    "held_out_rmse": h["rmse"],
                    "fraction_below_pcutoff": q[0]["fraction_below_pcutoff"] if q else None,
                    "n_jumps": q[0]["n_jumps"] if q else None,
                }
            )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- pure functions
def find_outliers(frame: pd.DataFrame, params: dict) -> tuple[np.ndarray, np.ndarray | None]:
    """Return the frames DeepLabCut's outlier criterion flags, and each frame's score.

    The criteria are ``extract_outlier_frames``'s: ``uncertain`` (any body part's likelihood
    below ``p_bound``; score: the lowest likelihood), ``jump`` (any body part moving more than
    ``epsilon`` px from the frame before; score: the largest jump), ``fitting`` (DeepLabCut's
    ARIMA fit, ``compute_deviations``: mean deviation above ``epsilon``, or the
    ``2 * numframes`` most deviant frames when too few are; score: the deviation) and ``list``.

    Parameters
    ----------
    frame : pandas.DataFrame
        DeepLabCut's layout: columns ``(scorer, bodyparts, coords)``, one row per frame.
    params : dict
        Checked outlier params (:data:`OUTLIER_DEFAULTS`).

    Returns
    -------
    candidates : numpy.ndarray
        Sorted frame numbers.
    scores : numpy.ndarray or None
        One per frame of the estimation (None for ``list``).
    """
    parts = params["comparison_body_parts"]
    all_parts = list(dict.fromkeys(frame.columns.get_level_values("bodyparts")))
    parts = (
        all_parts
        if parts == "all"
        else [p for p in ([parts] if isinstance(parts, str) else parts) if p in all_parts]
    )
    if not parts:
        raise InputError(
            f"comparison_body_parts {params['comparison_body_parts']!r} names no body part of {all_parts}."
        )
    sub = frame.loc[:, frame.columns.get_level_values("bodyparts").isin(parts)]
    algorithm = params["algorithm"]
    if algorithm == "uncertain":
        p = sub.xs("likelihood", level="coords", axis=1).to_numpy()
        scores = p.min(axis=1)
        return np.flatnonzero((p < params["p_bound"]).any(axis=1)), scores
    if algorithm == "jump":
        xy = sub.drop(columns="likelihood", level="coords")
        sq = (xy.diff(axis=0) ** 2).T.groupby(level="bodyparts").sum().T.to_numpy()
        sq[0] = np.nan  # DeepLabCut's diff leaves the first frame NaN: never a jump
        scores = np.sqrt(np.nanmax(np.where(np.isnan(sq), -np.inf, sq), axis=1).clip(min=0))
        return np.flatnonzero((sq > params["epsilon"] ** 2).any(axis=1)), scores
    if algorithm == "fitting":
        from deeplabcut.refine_training_dataset.outlier_frames import compute_deviations

        d, _ = compute_deviations(
            sub, "", params["p_bound"], params["alpha"], params["ARdegree"], params["MAdegree"]
        )
        ind = np.flatnonzero(d > params["epsilon"])
        if len(ind) < params["numframes"] * 2 and len(d) > params["numframes"] * 2:
            ind = np.sort(np.argsort(d)[::-1][: params["numframes"] * 2])
        return ind, np.asarray(d, float)
    frames = np.asarray(sorted(set(params["frames"])), int)
    outside = frames[frames >= len(frame)]
    if len(outside):
        raise InputError(
            f"Outlier frames {outside.tolist()} are beyond the estimation's {len(frame)} frames."
        )
    return frames, None


def select_frames(video: Path, params: dict, candidates=None) -> list[int]:
    """Pick frames with DeepLabCut's own selection (``kmeans`` or ``uniform``), seeded.

    Parameters
    ----------
    video : Path
        The video file.
    params : dict
        ``algorithm``, ``numframes``, ``seed``, optionally ``start``, ``stop``, ``crop`` and the
        ``cluster_*`` options (:data:`EXTRACTION_DEFAULTS`).
    candidates : array-like of int, optional
        Restrict the choice to these frames (outliers), as DeepLabCut's ``Index`` argument does.

    Returns
    -------
    list of int
        Sorted frame numbers (kmeans may return fewer than ``numframes``).
    """
    from deeplabcut.utils import frameselectiontools
    from deeplabcut.utils.auxfun_videos import VideoWriter

    cap = VideoWriter(str(video))
    try:
        if params.get("crop"):
            _crop(cap, params["crop"], video)
        state = np.random.get_state()
        np.random.seed(params["seed"])
        try:
            index = None if candidates is None else np.asarray(candidates, int)
            if params["algorithm"] == "uniform":
                picked = frameselectiontools.UniformFramescv2(
                    cap, params["numframes"], params.get("start", 0.0), params.get("stop", 1.0), index
                )
            else:
                picked = frameselectiontools.KmeansbasedFrameselectioncv2(
                    cap,
                    params["numframes"],
                    params.get("start", 0.0),
                    params.get("stop", 1.0),
                    index,
                    step=params.get("cluster_step", 1),
                    resizewidth=params["cluster_resizewidth"],
                    color=params["cluster_color"],
                )
        finally:
            np.random.set_state(state)
    finally:
        cap.close()
    return sorted({int(f) for f in picked})


def image_name(frame_index: int, nframes: int) -> str:
    """Return DeepLabCut's name of an extracted frame.

    Parameters
    ----------
    frame_index : int
        The frame number.
    nframes : int
        The video's frame count: the number is zero-padded to ``ceil(log10(nframes))`` digits.

    Returns
    -------
    str
        ``img<padded number>.png``.
    """
    width = int(np.ceil(np.log10(nframes))) if nframes > 1 else 1
    return f"img{str(frame_index).zfill(width)}.png"


def _crop(cap, crop, video: Path) -> None:
    width, height = cap.dimensions
    if crop[1] > width or crop[3] > height:
        raise InputError(f"crop {list(crop)} goes past {video}'s {width}x{height} frames.")
    cap.set_bbox(*crop)


def write_frames(config: Path, video: Path, frames: list[int], crop=None) -> dict[int, str]:
    """Write frames as ``labeled-data/<stem>/imgNNNN.png`` (kept if there) and list the video in the config.

    Parameters
    ----------
    config : Path
        The project's ``config.yaml``.
    video : Path
        The video file.
    frames : list of int
        Frame numbers.
    crop : list of int, optional
        ``[x1, x2, y1, y2]``: write that part of each frame, as DeepLabCut's ``extract_frames``
        does with cropping on; recorded as the video's crop in ``video_sets``.

    Returns
    -------
    dict
        Frame number → image path relative to the project folder.
    """
    from deeplabcut.utils.auxfun_videos import VideoWriter
    from PIL import Image

    project = config.parent
    folder = project / "labeled-data" / video.stem
    folder.mkdir(parents=True, exist_ok=True)
    cap = VideoWriter(str(video))
    try:
        nframes, (width, height) = len(cap), cap.dimensions
        if crop:
            _crop(cap, crop, video)
        images = {}
        for f in frames:
            path = folder / image_name(f, nframes)
            if not path.exists():
                cap.set_to_frame(f)
                image = cap.read_frame(crop=bool(crop))
                if image is None:
                    raise InputError(f"{video}: frame {f} could not be read.")
                tmp = path.with_suffix(".partial.png")
                Image.fromarray(np.ascontiguousarray(image)).save(tmp)
                tmp.replace(path)
            images[f] = path.relative_to(project).as_posix()
    finally:
        cap.close()
    _add_video(config, video, crop or [0, width, 0, height], replace=bool(crop))
    return images


def write_machine_labels(
    config: Path, stem: str, frame: pd.DataFrame, images: dict[int, str], iteration: int
) -> str:
    """Write the model's predictions for extracted frames as DeepLabCut's ``machinelabels-iter<N>.h5``.

    Parameters
    ----------
    config : Path
        The project's ``config.yaml``.
    stem : str
        The video's stem (its ``labeled-data`` folder).
    frame : pandas.DataFrame
        The estimation, DeepLabCut's layout, one row per frame.
    images : dict
        Frame number → image path relative to the project.
    iteration : int
        The model's iteration (in the file name, as DeepLabCut names it).

    Returns
    -------
    str
        The file, relative to the project ("" when there are no frames).
    """
    folder = config.parent / "labeled-data" / stem
    path = folder / f"machinelabels-iter{iteration}.h5"
    if not images:
        return ""
    picked = frame.loc[sorted(images)].copy()
    picked.index = pd.MultiIndex.from_tuples([tuple(images[f].split("/")) for f in sorted(images)])
    if path.exists():
        old = safe_io.read_pandas_hdf(path)
        picked = pd.concat([old, picked])
        picked = picked[~picked.index.duplicated(keep="first")]
    picked.to_hdf(path, key="df_with_missing", mode="w")
    picked.to_csv(folder / "machinelabels.csv")
    return path.relative_to(config.parent).as_posix()


def read_labels(path: Path, video: str | None = None) -> tuple[pd.DataFrame, str | None]:
    """Read a label file into long form: ``video_stem, frame_index, bodypart, x, y``.

    Returns
    -------
    labels : pandas.DataFrame
        One row per frame and body part (NaN x, y: not visible).
    scorer : str or None
        The file's scorer (None for a plain CSV).
    """
    if not path.is_file():
        raise InputError(f"Label file {path} does not exist.")
    if path.suffix == ".h5":
        wide = safe_io.read_pandas_hdf(path)
    elif path.suffix == ".csv":
        first = path.read_text().split("\n", 1)[0].split(",")[0].strip()
        if first == "scorer":
            head = pd.read_csv(path, header=None, nrows=4)
            n_index = (
                3 if head.iloc[3, :3].isna().sum() == 0 and str(head.iloc[3, 0]) == "labeled-data" else 1
            )
            wide = pd.read_csv(path, header=[0, 1, 2], index_col=list(range(n_index)))
        else:
            return _plain_labels(path, video), None
    else:
        raise InputError(
            f"{path}: label files are DeepLabCut's .h5/.csv or a plain .csv, not {path.suffix!r}."
        )
    names = list(wide.columns.names)
    if names != ["scorer", "bodyparts", "coords"]:
        raise InputError(
            f"{path} is not single-animal DeepLabCut labels: column levels {names}, expected "
            "scorer, bodyparts, coords."
        )
    scorers = sorted(set(wide.columns.get_level_values("scorer")))
    if len(scorers) != 1:
        raise InputError(f"{path} holds labels of several scorers {scorers}; import one at a time.")
    rows = []
    for idx in wide.index:
        parts = idx if isinstance(idx, tuple) else tuple(str(idx).replace("\\", "/").split("/"))
        stem, name = str(parts[-2]), str(parts[-1])
        match = _IMAGE.match(name)
        if not match:
            raise InputError(
                f"{path}: row {idx!r} does not name an extracted frame (labeled-data/<video>/imgNNNN.png)."
            )
        rows.append((stem, int(match.group(1))))
    wide = wide.droplevel("scorer", axis=1)
    stacked = []
    for part in dict.fromkeys(wide.columns.get_level_values("bodyparts")):
        xy = wide[part]
        for (stem, f), x, y in zip(rows, xy["x"].to_numpy(float), xy["y"].to_numpy(float), strict=True):
            stacked.append({"video_stem": stem, "frame_index": f, "bodypart": part, "x": x, "y": y})
    return pd.DataFrame(stacked), scorers[0]


def _plain_labels(path: Path, video: str | None) -> pd.DataFrame:
    table = pd.read_csv(path)
    table.columns = [c.strip().lower().replace("_", "").replace(" ", "") for c in table.columns]
    table = table.rename(
        columns={"framenumber": "frame", "frameindex": "frame", "bodyparts": "bodypart", "videostem": "video"}
    )
    needed = {"frame", "bodypart", "x", "y"}
    if not needed <= set(table.columns):
        raise InputError(
            f"{path}: a plain label CSV has columns frame, bodypart, x, y (and video); it has "
            f"{list(table.columns)}."
        )
    if "video" not in table.columns:
        if video is None:
            raise InputError(f"{path} has no 'video' column: give the video's stem (video=...).")
        table["video"] = video
    if not pd.api.types.is_integer_dtype(table["frame"]) or (table["frame"] < 0).any():
        raise InputError(f"{path}: 'frame' must hold frame numbers (non-negative integers).")
    return pd.DataFrame(
        {
            "video_stem": table["video"].astype(str),
            "frame_index": table["frame"].astype(int),
            "bodypart": table["bodypart"].astype(str),
            "x": pd.to_numeric(table["x"], errors="raise").astype(float),
            "y": pd.to_numeric(table["y"], errors="raise").astype(float),
        }
    )


def label_errors(frame: pd.DataFrame, labels: pd.DataFrame) -> np.ndarray:
    """Return the Euclidean errors (px) of an estimation at the labelled points it has.

    Parameters
    ----------
    frame : pandas.DataFrame
        The estimation: columns ``(bodyparts, coords)``, one row per frame.
    labels : pandas.DataFrame
        ``frame_index``, ``body_part``, ``x``, ``y`` in the video's coordinates.

    Returns
    -------
    numpy.ndarray
        One error per label whose body part and frame the estimation has (and did not lose).
    """
    parts = set(frame.columns.get_level_values("bodyparts"))
    labels = labels[labels["body_part"].isin(parts) & (labels["frame_index"] < len(frame))]
    px = np.array(
        [frame.at[f, (b, "x")] for f, b in zip(labels["frame_index"], labels["body_part"], strict=True)],
        float,
    )
    py = np.array(
        [frame.at[f, (b, "y")] for f, b in zip(labels["frame_index"], labels["body_part"], strict=True)],
        float,
    )
    errors = np.hypot(px - labels["x"].to_numpy(float), py - labels["y"].to_numpy(float))
    return errors[np.isfinite(errors)]  # a point the estimate lacks is not compared


# --------------------------------------------------------------------------- helpers
def _score(scores, f: int):
    if scores is None or not np.isfinite(scores[f]):
        return None
    return float(scores[f])


def _single_video(key: dict) -> Path:
    videos = model.VideoRecording.video_paths({a: key[a] for a in model.VideoRecording.primary_key})
    if len(videos) != 1:
        raise InputError(
            f"Recording {key} has {len(videos)} files; frames are extracted from single-file recordings "
            "(DeepLabCut names labelled frames after one video)."
        )
    return videos[0]


def _check_project_model(project_name: str, model_name: str) -> None:
    mdl = (model.Model & {"model_name": model_name}).fetch1()
    project = (Project & {"project_name": project_name}).to_dicts()
    if not project:
        raise InputError(f"Project {project_name!r} is not registered; use refine.Project.insert_project.")
    if mdl["engine"] != "pytorch" or mdl["project_path"] != project[0]["project_path"]:
        raise InputError(
            f"Model {model_name!r} was not trained in project {project_name!r} "
            f"({project[0]['project_path']}); outlier frames go into the model's own project."
        )


def _project_frames(project_name: str) -> pd.DataFrame:
    """Every frame extracted into a project (frame sets and outliers), with its recording."""
    rec = model.VideoRecording.primary_key
    rows = []
    for table in (ExtractedFrames, OutlierFrames):
        masters = {
            tuple(m[a] for a in table.primary_key): m
            for m in (table & {"project_name": project_name}).to_dicts()
        }
        for r in (table.Frame & {"project_name": project_name}).to_dicts():
            master = masters[tuple(r[a] for a in table.primary_key)]
            rows.append(
                {
                    "video_stem": master["video_stem"],
                    "frame_index": r["frame_index"],
                    "image_path": r["image_path"],
                    "crop_x": master.get("crop_x", 0),  # outlier frames are whole frames
                    "crop_y": master.get("crop_y", 0),
                    **{a: r[a] for a in rec},
                }
            )
    columns = ["video_stem", "frame_index", "image_path", "crop_x", "crop_y", *rec]
    return pd.DataFrame(rows, columns=columns).drop_duplicates(["video_stem", "frame_index"])


def _check_inside(merged: pd.DataFrame, project: Path, path: Path) -> None:
    """Refuse coordinates outside the labelled image."""
    from PIL import Image

    sizes = {}
    for stem, group in merged.groupby("video_stem"):
        with Image.open(project / group["image_path"].iloc[0]) as image:
            sizes[stem] = image.size
    width = merged["video_stem"].map(lambda s: sizes[s][0])
    height = merged["video_stem"].map(lambda s: sizes[s][1])
    bad = merged[(merged["x"] < 0) | (merged["y"] < 0) | (merged["x"] > width) | (merged["y"] > height)]
    if len(bad):
        r = bad.iloc[0]
        raise InputError(
            f"{path}: {len(bad)} label(s) lie outside the image, e.g. {r['bodypart']} at ({r['x']:.1f}, "
            f"{r['y']:.1f}) in {r['video_stem']} frame {r['frame_index']} ({sizes[r['video_stem']][0]}x"
            f"{sizes[r['video_stem']][1]} px)."
        )


def _training_label_rows(project_name: str, held_out: bool = False) -> list[dict]:
    sets = (LabelSet & {"project_name": project_name} & ("held_out" if held_out else "NOT held_out")).proj()
    frames = _project_frames(project_name)
    attrs = [*model.VideoRecording.primary_key, "frame_index"]
    by_frame = {tuple(str(r[a]) for a in attrs): r for r in frames.to_dict("records")}
    rows = []
    for label in (LabelSet.Label & sets).to_dicts():
        frame = by_frame[tuple(str(label[a]) for a in attrs)]
        rows.append(label | {"video_stem": frame["video_stem"], "image_path": frame["image_path"]})
    return sorted(rows, key=lambda r: r["label_set_id"])


def write_collected_data(project_name: str, stem: str, held_out: bool = False) -> Path:
    """Write a video's labels as DeepLabCut's ``CollectedData_<scorer>.h5`` and ``.csv``; return the .h5.

    Labels in the file that no label set holds (labelled outside the pipeline) are kept; a
    frame labelled by several label sets takes the latest. Held-out labels go to
    ``HeldOut_<scorer>.h5`` instead, which DeepLabCut does not train on.

    Parameters
    ----------
    project_name : str
        A :class:`Project`.
    stem : str
        The video's stem (its ``labeled-data`` folder).
    held_out : bool
        Write the held-out labels instead.
    """
    project = (Project & {"project_name": project_name}).fetch1()
    config = Project.config(project)
    parts = dlc.body_parts(dlc.read_config(config))
    scorer = project["scorer"]
    folder = config.parent / "labeled-data" / stem
    name = f"{'HeldOut' if held_out else 'CollectedData'}_{scorer}"
    rows = [r for r in _training_label_rows(project_name, held_out) if r["video_stem"] == stem]
    columns = pd.MultiIndex.from_product(
        [[scorer], parts, ["x", "y"]], names=["scorer", "bodyparts", "coords"]
    )
    latest: dict[tuple, dict] = {}
    for r in rows:  # by label set: a later set's frame replaces the earlier one whole
        index = tuple(r["image_path"].split("/"))
        if index not in latest or latest[index]["label_set_id"] != r["label_set_id"]:
            latest[index] = {"label_set_id": r["label_set_id"], "points": {}}
        latest[index]["points"][r["body_part"]] = (r["x"], r["y"])
    data = np.full((len(latest), len(columns)), np.nan)
    for i, entry in enumerate(latest.values()):
        for part, (x, y) in entry["points"].items():
            j = parts.index(part)
            data[i, 2 * j : 2 * j + 2] = (x, y)
    frame = pd.DataFrame(data, index=pd.MultiIndex.from_tuples(list(latest)), columns=columns)
    path = folder / f"{name}.h5"
    if path.exists() and not held_out:
        old = safe_io.read_pandas_hdf(path)
        if list(old.columns.names) == list(columns.names):
            old.index = pd.MultiIndex.from_tuples(
                [i if isinstance(i, tuple) else tuple(str(i).split("/")) for i in old.index]
            )
            old = old.reindex(columns=columns)
            frame = pd.concat([old[~old.index.isin(frame.index)], frame])
    frame = frame.sort_index()
    tmp = folder / f".{name}.partial.h5"
    frame.to_hdf(tmp, key="df_with_missing", mode="w")
    tmp.replace(path)
    frame.to_csv(folder / f"{name}.csv")
    return path


def _add_video(config: Path, video: Path, crop, replace: bool = False) -> None:
    """List a video in ``video_sets`` (DeepLabCut trains only on labelled videos listed there).

    ``replace`` sets the crop of a video listed already (as ``extract_frames`` with a crop does).
    """
    cfg = dlc.read_config(config)
    sets = dict(cfg.get("video_sets") or {})
    text = ", ".join(str(int(c)) for c in crop)
    listed = [v for v in sets if Path(v).stem == video.stem]
    if listed and (not replace or all((sets[v] or {}).get("crop") == text for v in listed)):
        return
    for v in listed or [str(video)]:
        sets[v] = {**(sets.get(v) or {}), "crop": text}
    dlc.edit_config(config, {"video_sets": sets})


def _check_labelled_folders(project_name: str, config: Path) -> None:
    """DeepLabCut's merge check: every folder with frames to train on must have its labels."""
    scorer = (Project & {"project_name": project_name}).fetch1("scorer")
    held = {r["video_stem"] for r in _training_label_rows(project_name, held_out=True)}
    trained = {r["video_stem"] for r in _training_label_rows(project_name)}
    folders = [
        p
        for p in (config.parent / "labeled-data").iterdir()
        if p.is_dir() and "_labeled" not in p.name and not p.name.startswith(".")
    ]
    unlabelled = [p.name for p in folders if not (p / f"CollectedData_{scorer}.h5").is_file()]
    if unlabelled:
        why = [f"{s} (held-out labels only)" if s in held and s not in trained else s for s in unlabelled]
        raise InputError(
            f"labeled-data folder(s) {why} of project {project_name!r} have no CollectedData_{scorer}.h5: "
            "DeepLabCut's merge_datasets refuses them. Import labels for their frames, or remove the folders."
        )


def _merge_datasets(config: Path, iteration: int) -> None:
    """Run DeepLabCut's ``merge_datasets``: the project's iteration becomes ``iteration``."""
    deeplabcut = dlc._import_deeplabcut()
    deeplabcut.merge_datasets(str(config), forceiterate=iteration)
    found = int(dlc.read_config(config)["iteration"])
    if found != iteration:
        raise dlc.DLCConfigError(
            f"DeepLabCut's merge_datasets left {config} at iteration {found}, not {iteration}."
        )
