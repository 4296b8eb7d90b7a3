"""Ingest a lab's description of its experiments from CSV or YAML files.

A directory (or one file) may hold any of these files, each ``.csv`` or ``.yaml``/``.yml``
(a YAML file is a list of mappings with the same keys as the CSV columns; ``params`` columns
hold JSON in CSV and a mapping in YAML). They are read in this order:

=====================  ==================================================================
file                   columns (``[optional]``)
=====================  ==================================================================
``devices``            device, modality, [description]
``subjects``           subject, sex (M/F/U), subject_birth_date (YYYY-MM-DD),
                       [subject_nickname], [subject_description]
``sessions``           subject, session_datetime (YYYY-MM-DD HH:MM:SS), [session_dir],
                       [session_note]
``recordings``         subject, session_datetime, recording_id, device, file_id, file_path
``training_videosets`` video_set_id, file_id, file_path
``training_params``    paramset_idx, paramset_desc, params
``training_tasks``     video_set_id, paramset_idx, training_id, project_path, [model_prefix]
``models``             model_name, config_path, shuffle, trainingsetindex, [paramset_idx],
                       [model_description], [model_prefix], [params]
``pose_tasks``         subject, session_datetime, recording_id, model_name, [task_mode],
                       [output_dir], [params]
``postprocess_params`` pp_paramset_idx, pp_paramset_desc, params (see poses.POSTPROCESS_PARAMS)
``postprocess_tasks``  subject, session_datetime, recording_id, model_name, pp_paramset_idx
=====================  ==================================================================

Paths may be absolute or relative to a data root; they must lie inside the roots and exist.
Everything is checked first and every problem is reported (file, line, column, why); only
then is everything written, in one transaction. Rows that already exist with the same content
are skipped, so ingesting the same files twice changes nothing; a row whose key exists with
other content is a problem.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ORDER = (
    "devices",
    "subjects",
    "sessions",
    "recordings",
    "training_videosets",
    "training_params",
    "training_tasks",
    "models",
    "pose_tasks",
    "postprocess_params",
    "postprocess_tasks",
)
SUFFIXES = (".csv", ".yaml", ".yml")


@dataclass(frozen=True)
class Problem:
    """One reason a file cannot be ingested."""

    file: str
    line: int
    column: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.column + ': ' if self.column else ''}{self.message}"


class IngestError(ValueError):
    """The files have problems; nothing was written. ``problems`` lists them all."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__(f"{len(problems)} problem(s), nothing written:\n" + "\n".join(map(str, problems)))


@dataclass
class _Row:
    file: str
    line: int
    values: dict


@dataclass
class Plan:
    """What ingest will write: per table, rows to insert (existing identical rows left out)."""

    inserts: list = field(default_factory=list)  # (table, row) in order
    skipped: int = 0
    models: list = field(default_factory=list)  # (row, body_parts)

    def counts(self) -> dict:
        """Rows to insert per table name."""
        out: dict = {}
        for table, _ in self.inserts:
            out[table.__name__] = out.get(table.__name__, 0) + 1
        for _ in self.models:
            out["Model"] = out.get("Model", 0) + 1
        return out


def find_files(path: str | Path) -> dict[str, Path]:
    """Return the ingestible files at ``path`` by kind (a directory, or a single file)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Nothing to ingest at {path}: no such file or directory.")
    candidates = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.suffix in SUFFIXES)
    found = {}
    for file in candidates:
        if file.stem not in ORDER or file.suffix not in SUFFIXES:
            if path.is_file():
                raise ValueError(f"{file.name}: unknown file; name it one of {[k + '.csv' for k in ORDER]}.")
            continue
        if file.stem in found:
            raise ValueError(f"Both {found[file.stem].name} and {file.name} describe {file.stem}; keep one.")
        found[file.stem] = file
    if not found:
        raise ValueError(f"No ingestible file in {path}; expected some of {[k + '.csv' for k in ORDER]}.")
    return found


def read_rows(file: Path) -> list[_Row]:
    """Read a CSV (line numbers as in the file) or YAML list (item numbers) into rows."""
    if file.suffix == ".csv":
        with open(file, newline="") as fh:
            reader = csv.DictReader(fh)
            return [
                _Row(file.name, reader.line_num, {k.strip(): (v or "").strip() for k, v in row.items() if k})
                for row in reader
            ]
    data = yaml.safe_load(file.read_text()) or []
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise ValueError(f"{file.name}: a YAML ingest file is a list of mappings.")
    return [_Row(file.name, i + 1, dict(item)) for i, item in enumerate(data)]


class _Checker:
    """Checks rows of every file against the files and the database, collecting problems."""

    def __init__(self, pipeline):
        self.p = pipeline
        self.problems: list[Problem] = []
        self.plan = Plan()
        self.planned: dict = {}  # (table name, key tuple) -> row, for cross-file references

    # -- values -------------------------------------------------------------------------
    def value(self, row: _Row, column: str, kind=str, required=True, default=None):
        raw = row.values.get(column)
        if raw is None or raw == "":
            if required:
                self.problems.append(Problem(row.file, row.line, column, "missing value"))
            return default
        try:
            if kind is int:
                if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                    raise ValueError
                return int(raw)
            if kind is dt.date:
                return raw if isinstance(raw, dt.date) else dt.date.fromisoformat(str(raw))
            if kind is dt.datetime:
                return raw if isinstance(raw, dt.datetime) else dt.datetime.fromisoformat(str(raw))
            if kind is dict:
                value = json.loads(raw) if isinstance(raw, str) else raw
                if not isinstance(value, dict):
                    raise ValueError
                return value
            return str(raw)
        except (ValueError, TypeError):
            expected = {
                int: "an integer",
                dt.date: "a date YYYY-MM-DD",
                dt.datetime: "a date and time YYYY-MM-DD HH:MM:SS",
                dict: "a JSON object",
            }.get(kind, "text")
            self.problems.append(Problem(row.file, row.line, column, f"{raw!r} is not {expected}"))
            return default

    def relative_path(self, row: _Row, column: str, must_exist=True):
        from .settings import PathOutsideRootsError, find_full_path, to_relative

        raw = self.value(row, column)
        if raw is None:
            return None
        try:
            rel = to_relative(raw) if Path(raw).is_absolute() else Path(raw).as_posix()
            if must_exist:
                find_full_path(rel)
            return rel
        except (PathOutsideRootsError, FileNotFoundError) as err:
            self.problems.append(Problem(row.file, row.line, column, str(err)))
            return None

    # -- rows ---------------------------------------------------------------------------
    def add(self, row: _Row, table, values: dict, key_names: list[str]) -> None:
        """Plan an insert; skip an identical existing row; a conflicting one is a problem."""
        key = {k: values[k] for k in key_names}
        ident = (table.__name__, tuple(str(key[k]) for k in key_names))
        if ident in self.planned:
            if self.planned[ident] != values:
                self.problems.append(
                    Problem(
                        row.file, row.line, "", f"{table.__name__} {key} appears twice with different content"
                    )
                )
            return
        self.planned[ident] = values
        existing = (table & key).to_dicts()
        if existing:
            old = existing[0]
            diff = [k for k, v in values.items() if k in old and _norm(old[k]) != _norm(v)]
            if diff:
                self.problems.append(
                    Problem(
                        row.file,
                        row.line,
                        diff[0],
                        f"{table.__name__} {key} exists with "
                        f"{diff[0]}={_norm(old[diff[0]])!r}, not {_norm(values[diff[0]])!r}",
                    )
                )
            else:
                self.plan.skipped += 1
            return
        self.plan.inserts.append((table, values))

    def known(self, table, key: dict) -> bool:
        ident = (table.__name__, tuple(str(v) for v in key.values()))
        return ident in self.planned or bool(table & key)

    def require(self, row: _Row, table, key: dict, column: str, fix: str) -> None:
        if all(v is not None for v in key.values()) and not self.known(table, key):
            self.problems.append(
                Problem(row.file, row.line, column, f"unknown {table.__name__} {key}; {fix}")
            )


def _norm(value):
    if isinstance(value, dt.datetime):
        return value.replace(microsecond=0).isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def _check(kind: str, rows: list[_Row], c: _Checker) -> None:
    p = c.p
    for row in rows:
        v = c.value
        if kind == "devices":
            c.add(
                row,
                p.lab.Device,
                {
                    "device": v(row, "device"),
                    "modality": v(row, "modality"),
                    "description": v(row, "description", required=False, default=""),
                },
                ["device"],
            )
        elif kind == "subjects":
            sex = v(row, "sex")
            if sex is not None and sex not in ("M", "F", "U"):
                c.problems.append(Problem(row.file, row.line, "sex", f"{sex!r} is not one of M, F, U"))
            c.add(
                row,
                p.subject.Subject,
                {
                    "subject": v(row, "subject"),
                    "sex": sex,
                    "subject_birth_date": v(row, "subject_birth_date", dt.date),
                    "subject_nickname": v(row, "subject_nickname", required=False, default=""),
                    "subject_description": v(row, "subject_description", required=False, default=""),
                },
                ["subject"],
            )
        elif kind == "sessions":
            key = {"subject": v(row, "subject"), "session_datetime": v(row, "session_datetime", dt.datetime)}
            c.require(
                row, p.subject.Subject, {"subject": key["subject"]}, "subject", "add it to subjects.csv"
            )
            c.add(row, p.session.Session, key, list(key))
            if row.values.get("session_dir"):
                c.add(
                    row,
                    p.session.SessionDirectory,
                    {**key, "session_dir": c.relative_path(row, "session_dir")},
                    list(key),
                )
            if row.values.get("session_note"):
                c.add(row, p.session.SessionNote, {**key, "session_note": v(row, "session_note")}, list(key))
        elif kind == "recordings":
            key = {
                "subject": v(row, "subject"),
                "session_datetime": v(row, "session_datetime", dt.datetime),
                "recording_id": v(row, "recording_id", int),
            }
            session_key = {k: key[k] for k in ("subject", "session_datetime")}
            c.require(row, p.session.Session, session_key, "session_datetime", "add it to sessions.csv")
            device = v(row, "device")
            c.require(row, p.lab.Device, {"device": device}, "device", "add it to devices.csv")
            c.add(row, p.model.VideoRecording, {**key, "device": device}, list(key))
            path = c.relative_path(row, "file_path")
            if path is not None:
                _check_video(row, path, c)
            c.add(
                row,
                p.model.VideoRecording.File,
                {**key, "file_id": v(row, "file_id", int), "file_path": path},
                [*key, "file_id"],
            )
        elif kind == "training_videosets":
            key = {"video_set_id": v(row, "video_set_id", int)}
            c.add(row, p.train.VideoSet, key, list(key))
            c.add(
                row,
                p.train.VideoSet.File,
                {**key, "file_id": v(row, "file_id", int), "file_path": c.relative_path(row, "file_path")},
                ["video_set_id", "file_id"],
            )
        elif kind == "training_params":
            from .train import check_training_params

            _hashed_params(
                row,
                c,
                check_training_params,
                p.train.TrainingParamSet,
                ("paramset_idx", "paramset_desc", "param_set_hash", "params"),
            )
        elif kind == "postprocess_params":
            from .poses import check_postprocess_params

            _hashed_params(
                row,
                c,
                check_postprocess_params,
                p.postprocess.PostprocessParamSet,
                ("pp_paramset_idx", "pp_paramset_desc", "pp_param_set_hash", "pp_params"),
            )
        elif kind == "training_tasks":
            key = {
                "video_set_id": v(row, "video_set_id", int),
                "paramset_idx": v(row, "paramset_idx", int),
                "training_id": v(row, "training_id", int),
            }
            c.require(
                row,
                p.train.VideoSet,
                {"video_set_id": key["video_set_id"]},
                "video_set_id",
                "add it to training_videosets.csv",
            )
            c.require(
                row,
                p.train.TrainingParamSet,
                {"paramset_idx": key["paramset_idx"]},
                "paramset_idx",
                "add it to training_params",
            )
            c.add(
                row,
                p.train.TrainingTask,
                {
                    **key,
                    "project_path": c.relative_path(row, "project_path"),
                    "model_prefix": v(row, "model_prefix", required=False, default=""),
                },
                list(key),
            )
        elif kind == "models":
            _check_model(row, c)
        elif kind == "pose_tasks":
            key = {
                "subject": v(row, "subject"),
                "session_datetime": v(row, "session_datetime", dt.datetime),
                "recording_id": v(row, "recording_id", int),
                "model_name": v(row, "model_name"),
            }
            rec = {k: key[k] for k in ("subject", "session_datetime", "recording_id")}
            c.require(row, p.model.VideoRecording, rec, "recording_id", "add it to recordings.csv")
            c.require(
                row, p.model.Model, {"model_name": key["model_name"]}, "model_name", "add it to models.csv"
            )
            mode = v(row, "task_mode", required=False, default="trigger")
            if mode not in ("load", "trigger"):
                c.problems.append(
                    Problem(row.file, row.line, "task_mode", f"{mode!r} is not 'load' or 'trigger'")
                )
            out = v(row, "output_dir", required=False, default="")
            if out:
                out = _processed_relative(row, out, c)
            c.add(
                row,
                p.model.PoseEstimationTask,
                {
                    **key,
                    "task_mode": mode,
                    "pose_estimation_output_dir": out or "",
                    "pose_estimation_params": v(row, "params", dict, required=False),
                },
                list(key),
            )
        elif kind == "postprocess_tasks":
            key = {
                "subject": v(row, "subject"),
                "session_datetime": v(row, "session_datetime", dt.datetime),
                "recording_id": v(row, "recording_id", int),
                "model_name": v(row, "model_name"),
            }
            c.require(row, p.model.PoseEstimationTask, key, "model_name", "add it to pose_tasks.csv")
            idx = v(row, "pp_paramset_idx", int)
            params_key = {"pp_paramset_idx": idx}
            c.require(
                row,
                p.postprocess.PostprocessParamSet,
                params_key,
                "pp_paramset_idx",
                "add it to postprocess_params",
            )
            c.add(row, p.postprocess.PostprocessTask, {**key, **params_key}, [*key, "pp_paramset_idx"])


def _hashed_params(row: _Row, c: _Checker, check, table, attrs: tuple[str, str, str, str]) -> None:
    """Plan a hashed parameter-set row: checked params, and no copy under another index."""
    from .paramsets import params_hash

    idx_attr, desc_attr, hash_attr, params_attr = attrs
    params = c.value(row, "params", dict)
    try:
        params = check(params) if params is not None else None
    except ValueError as err:
        c.problems.append(Problem(row.file, row.line, "params", str(err)))
        params = None
    if params is None:
        return
    digest = params_hash(params)
    idx = c.value(row, idx_attr, int)
    other = (table & {hash_attr: digest}).keys()
    if other and other[0][idx_attr] != idx:
        c.problems.append(
            Problem(
                row.file,
                row.line,
                "params",
                f"these params already exist as {idx_attr} {other[0][idx_attr]}; use that index",
            )
        )
    c.add(
        row,
        table,
        {idx_attr: idx, desc_attr: c.value(row, desc_attr), hash_attr: digest, params_attr: params},
        [idx_attr],
    )


def _processed_relative(row: _Row, out: str, c: _Checker):
    from .settings import PathOutsideRootsError, get_settings, to_relative

    root = get_settings().processed_data_dir
    try:
        return to_relative(out if Path(out).is_absolute() else root / out, roots=(root,))
    except PathOutsideRootsError as err:
        c.problems.append(Problem(row.file, row.line, "output_dir", str(err)))
        return None


def _check_video(row: _Row, path: str, c: _Checker) -> None:
    from .settings import find_full_path
    from .video import VideoError, probe

    try:
        probe(find_full_path(path))
    except VideoError as err:
        c.problems.append(Problem(row.file, row.line, "file_path", str(err)))


def _check_model(row: _Row, c: _Checker) -> None:
    import datajoint as dj

    from .dlc import DLCConfigError
    from .settings import find_full_path

    v = c.value
    name = v(row, "model_name")
    config = c.relative_path(row, "config_path")
    args = {
        "shuffle": v(row, "shuffle", int),
        "trainingsetindex": v(row, "trainingsetindex", int),
        "paramset_idx": v(row, "paramset_idx", int, required=False),
        "model_description": v(row, "model_description", required=False, default=""),
        "model_prefix": v(row, "model_prefix", required=False, default=""),
        "params": v(row, "params", dict, required=False),
    }
    if args["paramset_idx"] is not None:
        c.require(
            row,
            c.p.train.TrainingParamSet,
            {"paramset_idx": args["paramset_idx"]},
            "paramset_idx",
            "add it to training_params",
        )
    if None in (name, config, args["shuffle"], args["trainingsetindex"]):
        return
    existing = (c.p.model.Model & {"model_name": name}).to_dicts()
    if existing:
        old = existing[0]
        project = Path(config).parent.as_posix() if Path(config).suffix in (".yaml", ".yml") else config
        if (old["project_path"], old["shuffle"], old["trainingsetindex"]) == (
            project,
            args["shuffle"],
            args["trainingsetindex"],
        ):
            c.plan.skipped += 1
        else:
            c.problems.append(
                Problem(row.file, row.line, "model_name", f"model {name!r} exists with other content")
            )
        return
    try:
        built = c.p.model.Model.build_model(name, find_full_path(config), **args)
    except (DLCConfigError, dj.errors.DuplicateError, ValueError, FileNotFoundError) as err:
        c.problems.append(Problem(row.file, row.line, "config_path", str(err)))
        return
    c.planned[("Model", (name,))] = built[0]
    c.plan.models.append(built)


def plan(path: str | Path) -> Plan:
    """Check the files at ``path`` against each other and the database; write nothing.

    Raises
    ------
    IngestError
        Listing every problem found.
    """
    from . import pipeline

    checker = _Checker(pipeline)
    files = find_files(path)
    for kind in ORDER:
        if kind in files:
            try:
                rows = read_rows(files[kind])
            except (ValueError, yaml.YAMLError, csv.Error, UnicodeDecodeError) as err:
                checker.problems.append(Problem(files[kind].name, 0, "", f"cannot be read: {err}"))
                continue
            _check(kind, rows, checker)
    if checker.problems:
        raise IngestError(checker.problems)
    return checker.plan


def ingest(path: str | Path, *, dry_run: bool = False) -> Plan:
    """Check, then write everything in one transaction (unless ``dry_run``).

    Returns
    -------
    Plan
        What was (or, with ``dry_run``, would be) inserted; ``plan.skipped`` counts rows that
        already existed unchanged.

    Raises
    ------
    IngestError
        Listing every problem; nothing is written.
    """
    from . import pipeline

    result = plan(path)
    if dry_run:
        return result
    with pipeline.model.schema.connection.transaction:
        models_inserted = False
        for table, row in result.inserts:
            if not models_inserted and table in (
                pipeline.model.PoseEstimationTask,
                pipeline.postprocess.PostprocessTask,
            ):
                _insert_models(result, pipeline)
                models_inserted = True
            table.insert1(row, allow_direct_insert=True)
        if not models_inserted:
            _insert_models(result, pipeline)
    return result


def _insert_models(result: Plan, pipeline) -> None:
    for row, parts in result.models:
        pipeline.model.Model.insert_built(row, parts)
