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

The checks are declarative: :data:`SPECS` says which table (and attribute) each column fills,
and the rules come from the table definitions themselves (:mod:`.rules`: integer ranges,
``varchar`` lengths, ``enum`` values, dates), and references from their foreign keys. Nothing
is dropped in silence: an unknown file or column, a time zone, a NUL byte or an over-long name
is a problem. YAML values are read as written (``no`` stays the text ``no``), and a CSV saved
with a byte-order mark reads as any other.

Paths may be absolute or relative to a data root; they must lie inside the roots and exist.
Everything is checked first and every problem is reported (file, line, column, why); only
then is everything written, in one transaction. Rows that already exist with the same content
are skipped, so ingesting the same files twice changes nothing; a row whose key exists with
other content is a problem.
"""

from __future__ import annotations

import csv
import datetime as dt
import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import yaml

from . import rules
from .errors import InputError

SUFFIXES = (".csv", ".yaml", ".yml")


@dataclass(frozen=True)
class Target:
    """One table a file's row fills: ``columns`` maps file columns to the table's attributes.

    ``when`` names a column whose presence makes the row fill this table (optional tables,
    e.g. a session's note); ``None`` means always.
    """

    table: str  # "module.Class" or "module.Class.Part"
    columns: dict
    when: str | None = None


@dataclass(frozen=True)
class Spec:
    """How one kind of file maps onto the pipeline's tables."""

    targets: tuple[Target, ...] = ()
    paths: dict = field(default_factory=dict)  # column -> "file" (must exist), "video", "processed"
    params: tuple[str, ...] = ()  # columns holding a JSON object / YAML mapping
    defaults: dict = field(default_factory=dict)  # column -> value when empty (overrides the table's)
    hashed: tuple | None = None  # param-set lookups: (table, (idx, desc, hash, params), check function)
    model: bool = False  # models: registered through Model.build_model


def _same(*names: str) -> dict:
    return {n: n for n in names}


_SESSION = ("subject", "session_datetime")
_RECORDING = (*_SESSION, "recording_id")

#: The ingest files, in the order they are read (later files may refer to earlier ones).
SPECS: dict[str, Spec] = {
    "labs": Spec(
        (Target("lab.Lab", _same("lab", "lab_name", "address", "time_zone")),),
        defaults={"time_zone": "UTC"},
    ),
    "devices": Spec((Target("lab.Device", _same("device", "modality", "description")),)),
    "subjects": Spec(
        (
            Target(
                "subject.Subject",
                _same("subject", "sex", "subject_birth_date", "subject_nickname", "subject_description"),
            ),
            Target("subject.Species", _same("species"), when="species"),
            Target("subject.Subject.Species", _same("subject", "species"), when="species"),
            Target("subject.Subject.Lab", _same("subject", "lab"), when="lab"),
        )
    ),
    "sessions": Spec(
        (
            Target("session.Session", _same(*_SESSION)),
            Target("session.SessionDirectory", _same(*_SESSION, "session_dir"), when="session_dir"),
            Target("session.SessionNote", _same(*_SESSION, "session_note"), when="session_note"),
        ),
        paths={"session_dir": "file"},
    ),
    "recordings": Spec(
        (
            Target("model.VideoRecording", _same(*_RECORDING, "device")),
            Target("model.VideoRecording.File", _same(*_RECORDING, "file_id", "file_path")),
        ),
        paths={"file_path": "video"},
    ),
    "training_videosets": Spec(
        (
            Target("train.VideoSet", _same("video_set_id")),
            Target("train.VideoSet.File", _same("video_set_id", "file_id", "file_path")),
        ),
        paths={"file_path": "file"},
    ),
    "training_params": Spec(
        (Target("train.TrainingParamSet", _same("paramset_idx", "paramset_desc")),),
        params=("params",),
        hashed=("train.TrainingParamSet", ("paramset_idx", "paramset_desc", "param_set_hash", "params")),
    ),
    "training_tasks": Spec(
        (
            Target(
                "train.TrainingTask",
                _same("video_set_id", "paramset_idx", "training_id", "project_path", "model_prefix"),
            ),
        ),
        paths={"project_path": "file"},
    ),
    "models": Spec(
        (
            Target(
                "model.Model",
                {
                    **_same("model_name", "shuffle", "trainingsetindex", "paramset_idx"),
                    **_same("model_description", "model_prefix"),
                    "config_path": None,
                },
            ),
        ),
        paths={"config_path": "file"},
        params=("params",),
        model=True,
    ),
    "pose_tasks": Spec(
        (
            Target(
                "model.PoseEstimationTask",
                {
                    **_same(*_RECORDING, "model_name", "task_mode"),
                    "output_dir": "pose_estimation_output_dir",
                    "params": "pose_estimation_params",
                },
            ),
        ),
        paths={"output_dir": "processed"},
        params=("params",),
        defaults={"task_mode": "trigger"},
    ),
    "postprocess_params": Spec(
        (Target("postprocess.PostprocessParamSet", _same("pp_paramset_idx", "pp_paramset_desc")),),
        params=("params",),
        hashed=(
            "postprocess.PostprocessParamSet",
            ("pp_paramset_idx", "pp_paramset_desc", "pp_param_set_hash", "pp_params"),
        ),
    ),
    "postprocess_tasks": Spec(
        (Target("postprocess.PostprocessTask", _same(*_RECORDING, "model_name", "pp_paramset_idx")),)
    ),
}
ORDER = tuple(SPECS)


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


class IngestError(InputError):
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


# ------------------------------------------------------------------------------ files
def _expected_names() -> list[str]:
    return [k + ".csv" for k in ORDER]


def find_files(path: str | Path) -> dict[str, Path]:
    """Return the ingestible files at ``path`` by kind (a directory, or a single file).

    Raises
    ------
    IngestError
        For a ``.csv``/``.yaml`` file whose name is not an ingest file (with the closest
        name), two files of one kind, or nothing to ingest.
    FileNotFoundError
        If ``path`` does not exist.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Nothing to ingest at {path}: no such file or directory.")
    candidates = (
        [path] if path.is_file() else sorted(p for p in path.iterdir() if p.suffix.lower() in SUFFIXES)
    )
    found, problems = {}, []
    for file in candidates:
        if file.stem not in SPECS or file.suffix.lower() not in SUFFIXES:
            close = difflib.get_close_matches(file.stem, ORDER, n=1)
            hint = f"did you mean {close[0]}{file.suffix}? " if close else ""
            problems.append(
                Problem(file.name, 0, "", f"unknown file; {hint}ingest files are {_expected_names()}")
            )
            continue
        if file.stem in found:
            problems.append(
                Problem(
                    file.name,
                    0,
                    "",
                    f"both {found[file.stem].name} and {file.name} describe {file.stem}; keep one",
                )
            )
            continue
        found[file.stem] = file
    if problems:
        raise IngestError(problems)
    if not found:
        raise IngestError(
            [Problem(str(path), 0, "", f"no ingestible file; expected some of {_expected_names()}")]
        )
    return found


def read_rows(file: Path) -> list[_Row]:
    """Read a CSV (line numbers as in the file) or YAML list (each item's line) into rows of text.

    CSV: UTF-8, with or without a byte-order mark. YAML: scalars are kept as written (``no``,
    ``007`` and ``2025-01-10`` stay text; the column's type converts them), mappings (params) are
    read as YAML; an empty value or ``null`` is missing.

    Raises
    ------
    ValueError
        When the file is not UTF-8 text, not CSV, or not a YAML list of mappings.
    """
    try:
        text = file.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(f"not UTF-8 text ({err.reason} at byte {err.start}); save it as UTF-8") from None
    if file.suffix.lower() == ".csv":
        reader = csv.DictReader(text.splitlines(keepends=True))
        rows = []
        for row in reader:
            values = {
                (k or "").strip(): (v or "").strip() if isinstance(v, str) else v for k, v in row.items()
            }
            rows.append(_Row(file.name, reader.line_num, values))
        header = [(h or "").strip() for h in (reader.fieldnames or [])]
        return [_Row(file.name, 1, {"__header__": header}), *rows]
    return _read_yaml(file.name, text)


def _read_yaml(name: str, text: str) -> list[_Row]:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return []
        if not isinstance(node, yaml.SequenceNode):
            raise ValueError("a YAML ingest file is a list of mappings (each item starts with '- ')")
        rows = []
        for item in node.value:
            if not isinstance(item, yaml.MappingNode):
                raise ValueError(f"line {item.start_mark.line + 1}: each item is a mapping of column: value")
            values = {}
            for key_node, value_node in item.value:
                key = str(key_node.value).strip()
                if isinstance(value_node, yaml.ScalarNode):
                    empty = value_node.tag == "tag:yaml.org,2002:null" and not value_node.style
                    values[key] = "" if empty else value_node.value
                else:
                    values[key] = loader.construct_object(value_node, deep=True)
            rows.append(_Row(name, item.start_mark.line + 1, values))
        return rows
    finally:
        loader.dispose()


# ------------------------------------------------------------------------------ checking
class _Checker:
    """Checks rows of every file against the files and the database, collecting problems."""

    def __init__(self, pipeline):
        self.p = pipeline
        self.problems: list[Problem] = []
        self.plan = Plan()
        self.planned: dict = {}  # (table name, key tuple) -> row, for cross-file references
        self.by_full_name = pipeline.tables()
        self.feeds = {}  # table class name -> the file that fills it
        for kind, spec in SPECS.items():
            for target in spec.targets:
                self.feeds.setdefault(self.table(target.table).__name__, kind)

    def table(self, dotted: str):
        obj = self.p
        for part in dotted.split("."):
            obj = getattr(obj, part)
        return obj

    def problem(self, row: _Row, column: str, message: str) -> None:
        self.problems.append(Problem(row.file, row.line, column, message))

    # -- rows ---------------------------------------------------------------------------
    def add(self, row: _Row, table, values: dict) -> None:
        """Plan an insert; skip an identical existing row; a conflicting one is a problem."""
        key = {k: values[k] for k in table.primary_key}
        ident = (table.__name__, tuple(str(key[k]) for k in table.primary_key))
        if ident in self.planned:
            if self.planned[ident] != values:
                self.problem(row, "", f"{table.__name__} {key} appears twice with different content")
            return
        self.planned[ident] = values
        existing = (table & key).to_dicts()
        if existing:
            old = existing[0]
            diff = [k for k, v in values.items() if k in old and _norm(old[k]) != _norm(v)]
            if diff:
                self.problem(
                    row,
                    diff[0],
                    f"{table.__name__} {key} exists with {diff[0]}={_norm(old[diff[0]])!r}, not "
                    f"{_norm(values[diff[0]])!r}",
                )
            else:
                self.plan.skipped += 1
            return
        self.plan.inserts.append((table, values))

    def known(self, table, key: dict) -> bool:
        ident = (table.__name__, tuple(str(key[k]) for k in table.primary_key if k in key))
        return ident in self.planned or bool(table & key)

    def references(self, row: _Row, table, values: dict, same_row: set) -> None:
        """Every foreign key of ``table`` must point at a row in the database or the files."""
        for parent_name, info in table.parents(foreign_key_info=True):
            parent = self.by_full_name.get(parent_name)
            if parent is None or parent.__name__ in same_row:
                continue
            key = {parent_attr: values.get(attr) for attr, parent_attr in info["attr_map"].items()}
            if any(v is None for v in key.values()) or self.known(parent, key):
                continue
            feed = self.feeds.get(parent.__name__)
            fix = f"add it to {feed}.csv" if feed else "insert it first"
            self.problem(row, list(info["attr_map"])[-1], f"unknown {parent.__name__} {key}; {fix}")


def _norm(value):
    if isinstance(value, dt.datetime):
        return value.replace(microsecond=0).isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def _columns(spec: Spec) -> list[str]:
    names = []
    for target in spec.targets:
        names.extend(c for c in target.columns if c not in names)
    names.extend(c for c in spec.params if c not in names)
    return names


def _column_rule(c: _Checker, spec: Spec, column: str) -> rules.Rule | None:
    """Return the rule of the attribute a column fills (the first target that has it)."""
    for target in spec.targets:
        attr = target.columns.get(column)
        if attr is not None:
            table = c.table(target.table)
            if attr in table.heading.names:
                rule = rules.rule_for(table, attr)
                if target.when is not None or column in spec.defaults:
                    return rules.Rule(rule.name, rule.kind, rule.length, rule.bits, rule.choices, True)
                return rule
    return None


def _convert(c: _Checker, spec: Spec, row: _Row) -> dict:
    """Check and convert one row's columns; return ``{column: value}`` (None when empty)."""
    out = {}
    for column in _columns(spec):
        raw = row.values.get(column)
        empty = raw is None or (isinstance(raw, str) and raw.strip() == "")
        if empty and column in spec.defaults:
            raw, empty = spec.defaults[column], False
        rule = _column_rule(c, spec, column)
        if empty:
            required = rule is not None and not rule.optional and column not in spec.params
            if column in ("config_path",) or (column in spec.params and spec.hashed):
                required = True
            if required:
                c.problem(row, column, "missing value")
            out[column] = None
            continue
        try:
            if column in spec.params:
                out[column] = _params(raw)
            elif column in spec.paths:
                out[column] = _path(c, row, column, str(raw), spec.paths[column], rule)
            elif rule is not None:
                out[column] = rule.convert(raw)
                if column == "time_zone":
                    _check_time_zone(out[column])
            else:
                out[column] = rules.check_text(str(raw))
        except (ValueError, FileNotFoundError) as err:
            c.problem(row, column, str(err))
            out[column] = None
    return out


def _check_time_zone(name: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"{name!r} is not a time zone; give an IANA name such as Europe/London or America/New_York"
        ) from None


def _params(raw) -> dict:
    value = json.loads(raw) if isinstance(raw, str) else raw
    if not isinstance(value, dict):
        raise ValueError(f"{raw!r} is not a JSON object (CSV) or a mapping (YAML)")
    return value


def _path(c: _Checker, row: _Row, column: str, raw: str, kind: str, rule: rules.Rule | None) -> str:
    from .settings import find_full_path, get_settings, to_relative
    from .video import VideoError, probe

    rules.check_text(raw)
    if kind == "processed":
        root = get_settings().processed_data_dir
        rel = to_relative(raw if Path(raw).is_absolute() else root / raw, roots=(root,))
    else:
        rel = to_relative(raw) if Path(raw).is_absolute() else Path(raw).as_posix()
        full = find_full_path(rel)
        if kind == "video":
            try:
                probe(full)
            except VideoError as err:
                raise ValueError(str(err)) from None
    if rule is not None and rule.length is not None:
        rules.check_text(rel, rule.length)
    return rel


def _check_file(kind: str, rows: list[_Row], c: _Checker) -> None:
    spec = SPECS[kind]
    expected = _columns(spec)

    def unknown_columns(row: _Row, names) -> None:
        for name in names:
            if name in expected:
                continue
            close = difflib.get_close_matches(name, expected, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            c.problem(row, name or "(empty)", f"unknown column; {hint}{kind} has {', '.join(expected)}")

    for row in rows:
        header = row.values.get("__header__")
        if header is not None:  # a CSV's first line: its columns, once
            unknown_columns(row, header)
            for name in sorted({h for h in header if header.count(h) > 1}):
                c.problem(row, name, "this column appears twice")
            continue
        if row.file.lower().endswith(".csv"):
            extra = row.values.pop("", None)
            if extra:
                c.problem(row, "", f"this line has {len(extra)} more field(s) than the header: {extra}")
        else:
            unknown_columns(row, list(row.values))
        values = _convert(c, spec, row)
        if kind == "training_tasks":
            _check_training_project(c, row, values)
        if spec.hashed:
            _hashed_params(c, row, spec, values)
        elif spec.model:
            _check_model(c, row, values)
        else:
            _plan_targets(c, row, spec, values)


#: Tasks on a model still to train wait in these tables until ``ModelRegistration`` runs.
_WAITING = {
    "model.PoseEstimationTask": "model.PendingModel.PoseTask",
    "postprocess.PostprocessTask": "postprocess.PendingPostprocessTask",
}


def _is_pending(c: _Checker, model_name) -> bool:
    """Whether a model is to be registered after its training (in these files or before)."""
    model = c.p.model
    if model_name is None or c.known(model.Model, {"model_name": model_name}):
        return False
    return c.known(model.PendingModel, {"model_name": model_name})


def _plan_targets(c: _Checker, row: _Row, spec: Spec, values: dict) -> None:
    targets = [t for t in spec.targets if t.when is None or values.get(t.when) is not None]
    if _is_pending(c, values.get("model_name")):
        targets = [Target(_WAITING.get(t.table, t.table), t.columns, t.when) for t in targets]
    same_row = {c.table(t.table).__name__ for t in targets}
    for target in targets:
        table = c.table(target.table)
        record = {
            attr: values[col] for col, attr in target.columns.items() if attr and values.get(col) is not None
        }
        c.references(row, table, record, same_row - {table.__name__})
        if all(record.get(k) is not None for k in table.primary_key):
            c.add(row, table, record)


def _hashed_params(c: _Checker, row: _Row, spec: Spec, values: dict) -> None:
    """Plan a hashed parameter-set row: checked params, and no copy under another index."""
    from .paramsets import params_hash
    from .poses import check_postprocess_params
    from .train import check_training_params

    table_name, (idx_attr, desc_attr, hash_attr, params_attr) = spec.hashed
    table = c.table(table_name)
    check = check_training_params if idx_attr == "paramset_idx" else check_postprocess_params
    params = values.get("params")
    if params is None:
        return
    try:
        params = check(params)
    except ValueError as err:
        c.problem(row, "params", str(err))
        return
    digest = params_hash(params)
    idx = values.get(idx_attr)
    other = (table & {hash_attr: digest}).keys()
    if other and other[0][idx_attr] != idx:
        c.problem(
            row, "params", f"these params already exist as {idx_attr} {other[0][idx_attr]}; use that index"
        )
    if idx is not None and values.get(desc_attr) is not None:
        c.add(
            row, table, {idx_attr: idx, desc_attr: values[desc_attr], hash_attr: digest, params_attr: params}
        )


def _check_model(c: _Checker, row: _Row, values: dict) -> None:
    import datajoint as dj

    from .dlc import DLCConfigError
    from .settings import find_full_path

    model = c.p.model.Model
    c.references(row, model, {"paramset_idx": values.get("paramset_idx")}, set())
    name, config = values.get("model_name"), values.get("config_path")
    args = {
        "shuffle": values.get("shuffle"),
        "trainingsetindex": values.get("trainingsetindex"),
        "paramset_idx": values.get("paramset_idx"),
        "model_description": values.get("model_description") or "",
        "model_prefix": values.get("model_prefix") or "",
        "params": values.get("params"),
    }
    if None in (name, config, args["shuffle"], args["trainingsetindex"]):
        return
    existing = (model & {"model_name": name}).to_dicts()
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
            c.problem(row, "model_name", f"model {name!r} exists with other content")
        return
    tasks = _untrained_tasks(c, config, args)
    if len(tasks) > 1:
        c.problem(
            row,
            "paramset_idx",
            f"{len(tasks)} training tasks train this shuffle ({', '.join(map(str, tasks))}); "
            "give the paramset_idx of the one this model comes from",
        )
        return
    if tasks:
        _plan_pending_model(c, row, values, args, tasks[0])
        return
    try:
        built = model.build_model(name, find_full_path(config), **args)
    except (DLCConfigError, dj.errors.DuplicateError, ValueError, FileNotFoundError) as err:
        hint = ""
        if "no trained snapshot" in str(err):
            hint = (
                " Or add the training task that trains it to training_tasks.csv (same project, "
                "and params with this shuffle and trainingsetindex): the model is then registered "
                "when its training has run."
            )
        c.problem(row, "config_path", str(err) + hint)
        return
    c.planned[("Model", (name,))] = built[0]
    c.plan.models.append(built)


def _project_of(path: str) -> str:
    """Return the project folder of a config.yaml path or folder (both relative to a root)."""
    rel = PurePosixPath(path)
    return str(rel.parent if rel.suffix in (".yaml", ".yml") else rel)


def _untrained_tasks(c: _Checker, config: str, args: dict) -> list[dict]:
    """Training tasks (files or database) not yet run that train this model's project and shuffle."""
    train = c.p.train
    project = _project_of(config)
    tasks = {
        tuple(v[k] for k in train.TrainingTask.primary_key): v
        for (table, _), v in c.planned.items()
        if table == "TrainingTask"
    }
    for v in (train.TrainingTask & {"project_path": project}).to_dicts():
        tasks.setdefault(tuple(v[k] for k in train.TrainingTask.primary_key), v)
    found = []
    for task in tasks.values():
        if _project_of(task.get("project_path") or "") != project:
            continue
        if (task.get("model_prefix") or "") != args["model_prefix"]:
            continue
        if args["paramset_idx"] is not None and task["paramset_idx"] != args["paramset_idx"]:
            continue
        key = {k: task[k] for k in train.TrainingTask.primary_key}
        if train.ModelTraining & key:
            continue
        params = _training_params(c, task["paramset_idx"])
        if (params.get("shuffle"), params.get("trainingsetindex")) == (
            args["shuffle"],
            args["trainingsetindex"],
        ):
            found.append(key)
    return found


def _training_params(c: _Checker, paramset_idx) -> dict:
    """Return a training parameter set's params, from the files or the database ({} if unknown)."""
    planned = c.planned.get(("TrainingParamSet", (str(paramset_idx),)))
    if planned:
        return planned["params"]
    rows = (c.p.train.TrainingParamSet & {"paramset_idx": paramset_idx}).to_dicts()
    return rows[0]["params"] if rows else {}


def _check_training_project(c: _Checker, row: _Row, values: dict) -> None:
    """Check a training task's project: a valid config that has the task's training fraction."""
    from .dlc import DLCConfigError, read_config, train_fraction
    from .settings import find_full_path

    if values.get("project_path") is None:
        return
    try:
        cfg = read_config(find_full_path(values["project_path"]))
        params = _training_params(c, values.get("paramset_idx"))
        if "trainingsetindex" in params:
            train_fraction(cfg, params["trainingsetindex"])
    except (DLCConfigError, FileNotFoundError) as err:
        c.problem(row, "project_path", str(err))


def _plan_pending_model(c: _Checker, row: _Row, values: dict, args: dict, task: dict) -> None:
    """Plan a model that its (not yet run) training task makes: registered once trained."""
    from .dlc import DLCConfigError, read_config
    from .settings import find_full_path

    try:
        read_config(find_full_path(values["config_path"]))  # checked now, not after the training
    except (DLCConfigError, ValueError, FileNotFoundError) as err:
        c.problem(row, "config_path", str(err))
        return
    record = {
        "model_name": values["model_name"],
        **task,
        "model_description": args["model_description"],
        "config_params": args["params"],
    }
    c.add(row, c.p.model.PendingModel, record)


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
            except (ValueError, yaml.YAMLError, csv.Error) as err:
                checker.problems.append(Problem(files[kind].name, 0, "", f"cannot be read: {err}"))
                continue
            _check_file(kind, rows, checker)
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
