"""Bring an element-deeplabcut database in: ``workflow-deeplabcut migrate --from-element PREFIX``.

element-deeplabcut 0.2–0.4 (with element-lab, element-animal and element-session, as its
workflow declared them) runs on DataJoint 0.14 and MySQL/MariaDB; DataJoint 2 cannot attach to
its schemas. This module reads them over a read-only connection (plain SQL, DataJoint 0.14's
blob format decoded by DataJoint's own ``blob.unpack``) and writes this pipeline's rows into the
configured database: devices, subjects, sessions, recordings with their files and properties,
body parts, training parameter sets, video sets, training tasks and trainings, models with
their body parts, evaluations, pose-estimation tasks and pose estimations (the per-body-part
arrays stacked into one ``poses`` array per estimation, bit for bit).

- It never writes to the source: the session is read-only and only ``SELECT`` is sent.
- It is idempotent and resumable: a row whose key is already in the target is left as it is;
  each table's new rows go in one transaction (pose estimations one per transaction).
- What it cannot carry is reported with the reason and never half-written: a file path that
  climbs out of the data root, training params with no PyTorch meaning (DeepLabCut 2.x's
  ``maxiters``; the models trained with them keep no ``paramset_idx``), a key that holds other
  values in the target (param sets, models), an estimation whose frame indices are not
  0..n-1. Rows that depend on a row not carried are reported too.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import numpy as np

from .errors import DatabaseError, InputError

logger = logging.getLogger(__name__)

#: The tables read, in the order they are carried: (report name, source schema, source table).
SOURCE_TABLES = (
    ("Device", "lab", "#device"),
    ("Subject", "subject", "subject"),
    ("Session", "session", "session"),
    ("VideoRecording", "model", "video_recording"),
    ("VideoRecording.File", "model", "video_recording__file"),
    ("RecordingInfo", "model", "_recording_info"),
    ("BodyPart", "model", "#body_part"),
    ("TrainingParamSet", "train", "#training_param_set"),
    ("VideoSet", "train", "video_set"),
    ("VideoSet.File", "train", "video_set__file"),
    ("TrainingTask", "train", "training_task"),
    ("ModelTraining", "train", "__model_training"),
    ("Model", "model", "model"),
    ("Model.BodyPart", "model", "model__body_part"),
    ("ModelEvaluation", "model", "__model_evaluation"),
    ("PoseEstimationTask", "model", "pose_estimation_task"),
    ("PoseEstimation", "model", "__pose_estimation"),
)
_REQUIRED = (
    ("model", "model"),
    ("model", "__pose_estimation__body_part_position"),
    ("train", "__model_training"),
)
MIGRATED_TRAINING = "migrated from element-deeplabcut"


class ElementSourceError(DatabaseError):
    """The element-deeplabcut database cannot be read: unreachable, or not element's."""


@dataclass(frozen=True)
class ElementSource:
    """Where an element-deeplabcut database is: a MySQL/MariaDB server and a schema prefix."""

    prefix: str
    host: str = "127.0.0.1"
    port: int = 3306
    user: str = "root"
    password: str = ""


@dataclass
class ElementReport:
    """What a migration did (or, dry, would do): per table, and every row it did not carry."""

    dry_run: bool
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    skipped: list[dict] = field(default_factory=list)  # {"table", "key", "why"}
    notes: list[dict] = field(default_factory=list)  # carried, with something to know

    def count(self, table: str, what: str, n: int = 1) -> None:
        """Add ``n`` to a table's count ``what`` (source, inserted, present, skipped)."""
        self.counts.setdefault(table, {"source": 0, "inserted": 0, "present": 0, "skipped": 0})[what] += n

    def skip(self, table: str, key: dict, why: str) -> None:
        """Record a row not carried, and why."""
        self.count(table, "skipped")
        self.skipped.append({"table": table, "key": _plain(key), "why": why})

    def note(self, table: str, key: dict, what: str) -> None:
        """Record something to know about a row that was carried."""
        self.notes.append({"table": table, "key": _plain(key), "note": what})

    @property
    def inserted(self) -> int:
        """Rows inserted (or, dry, to insert), over all tables."""
        return sum(c["inserted"] for c in self.counts.values())

    def to_json(self) -> str:
        """Return the report as JSON (``--report``)."""
        return json.dumps(
            {"dry_run": self.dry_run, "counts": self.counts, "skipped": self.skipped, "notes": self.notes},
            indent=1,
            default=str,
        )


def _plain(key: dict) -> dict:
    return {k: (v.isoformat(sep=" ") if hasattr(v, "isoformat") else v) for k, v in key.items()}


class ElementReader:
    """A read-only connection to an element-deeplabcut database."""

    def __init__(self, source: ElementSource):
        import pymysql

        self.source = source
        self._layout: dict[tuple[str, str], dict[str, str] | None] = {}
        try:
            self.conn = pymysql.connect(
                host=source.host,
                port=int(source.port),
                user=source.user,
                password=source.password,
                autocommit=True,
                charset="utf8mb4",
                connect_timeout=10,
            )
        except pymysql.MySQLError as err:
            raise ElementSourceError(
                f"Cannot reach the element-deeplabcut database at {source.user}@{source.host}:{source.port} "
                f"({err.args[-1] if err.args else err}). Check --host, --port, --user and the password "
                "(WORKFLOW_DLC_ELEMENT_PASS)."
            ) from None
        with self.conn.cursor() as cur:
            cur.execute("SET SESSION TRANSACTION READ ONLY")  # the server refuses any write from here
        missing = [f"{source.prefix}{s}.{t}" for s, t in _REQUIRED if not self.has(s, t)]
        if missing:
            raise ElementSourceError(
                f"{source.host} holds no element-deeplabcut database at prefix {source.prefix!r}: "
                f"{missing} not found. Give the prefix its schemas share (e.g. 'neuro_' for neuro_model)."
            )

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    def _columns(self, schema: str, table: str) -> dict[str, str] | None:
        """Return a table's column types (None: no such table), asked once per table."""
        key = (schema, table)
        if key not in self._layout:
            with self.conn.cursor() as cur:
                cur.execute(
                    "SELECT column_name, data_type FROM information_schema.columns "
                    "WHERE table_schema=%s AND table_name=%s",
                    (self.source.prefix + schema, table),
                )
                found = {str(name): str(kind).lower() for name, kind in cur.fetchall()}
            self._layout[key] = found or None
        return self._layout[key]

    def has(self, schema: str, table: str) -> bool:
        """Whether ``<prefix><schema>.<table>`` exists."""
        return self._columns(schema, table) is not None

    def rows(self, schema: str, table: str, where: dict | None = None) -> list[dict]:
        """Return a table's rows (``where``: equal values), blobs decoded; [] if it does not exist."""
        from datajoint import blob

        if not self.has(schema, table):
            return []
        blobs = {name for name, kind in self._columns(schema, table).items() if kind.endswith("blob")}
        sql = f"SELECT * FROM `{self.source.prefix}{schema}`.`{table}`"
        args = ()
        if where:
            sql += " WHERE " + " AND ".join(f"`{k}`=%s" for k in where)
            args = tuple(where.values())
        import pymysql.cursors

        with self.conn.cursor(pymysql.cursors.DictCursor) as cur:
            cur.execute(sql, args)
            out = cur.fetchall()
        for row in out:
            for name in blobs:
                if row[name] is not None:
                    row[name] = blob.unpack(row[name], squeeze=False)
        return out


def migrate_element(source: ElementSource, *, dry_run: bool = False) -> ElementReport:
    """Carry an element-deeplabcut database's rows into this pipeline's database (see the module).

    Parameters
    ----------
    source : ElementSource
        The element database: server and schema prefix.
    dry_run : bool
        Read and check everything; write nothing.

    Returns
    -------
    ElementReport

    Raises
    ------
    ElementSourceError
        When the server cannot be reached, or holds no element-deeplabcut schemas at the prefix.
    InputError
        When the source is this pipeline's own database.
    """
    import datajoint as dj

    from .pipeline import lab, model
    from .settings import get_settings

    ours = (str(dj.config["database.host"] or ""), str(dj.config["database.backend"] or ""))
    if (
        source.prefix == get_settings().prefix
        and ours[0] in (source.host, "localhost")
        and ours[1] == "mysql"
    ):
        raise InputError(
            f"The source prefix {source.prefix!r} is this pipeline's own on the same server; give the "
            "element database's prefix, or set this pipeline's (WORKFLOW_DLC_PREFIX) to another."
        )
    reader = ElementReader(source)
    try:
        report = ElementReport(dry_run=dry_run)
        _Migration(reader, report, dry_run, lab=lab, model=model).run()
        return report
    finally:
        reader.close()


class _Migration:
    """One pass over the source tables, in dependency order."""

    def __init__(self, reader: ElementReader, report: ElementReport, dry_run: bool, *, lab, model):
        from .pipeline import session, subject, train

        self.read, self.report, self.dry = reader, report, dry_run
        self.lab, self.subject, self.session, self.train, self.model = lab, subject, session, train, model
        self.lost: dict[str, set[tuple]] = {}  # keys not carried, per table: their dependents follow

    # ------------------------------------------------------------------ helpers
    def _lose(self, name: str, key: dict, why: str) -> None:
        self.lost.setdefault(name, set()).add(tuple(sorted(key.items())))
        self.report.skip(name, key, why)

    def _is_lost(self, name: str, key: dict) -> bool:
        return tuple(sorted(key.items())) in self.lost.get(name, set())

    def _carry(self, name: str, table, rows: list[dict], *, direct: bool = False) -> None:
        """Insert the rows whose keys are not in ``table`` yet, in one transaction; count them."""
        pk = table.primary_key
        present = {tuple(k[a] for a in pk) for k in table.keys()}
        new = []
        for row in rows:
            key = tuple(row[a] for a in pk)
            if key in present:
                self.report.count(name, "present")
            else:
                new.append(row)
                present.add(key)
        self.report.count(name, "inserted", len(new))
        if new and not self.dry:
            with table.connection.transaction:
                table.insert(new, allow_direct_insert=direct)

    def _source(self, name: str) -> list[dict]:
        schema, table = next((s, t) for n, s, t in SOURCE_TABLES if n == name)
        rows = self.read.rows(schema, table)
        self.report.count(name, "source", len(rows))
        return rows

    # ------------------------------------------------------------------ the tables
    def run(self) -> None:
        self.devices()
        self.subjects_sessions()
        self.recordings()
        self.training()
        self.models()
        self.estimations()
        # element 0.3+ keeps the labeled videos it made; they are files, remade here on demand.
        for r in self.read.rows("model", "__labeled_video"):
            key = {k: r[k] for k in ("subject", "session_datetime", "recording_id", "model_name")}
            self.report.count("LabeledVideo", "source")
            self.report.skip(
                "LabeledVideo",
                key,
                "labeled videos are files, not carried: make them with plots.labeled_video",
            )

    def devices(self) -> None:
        rows = self._source("Device")
        used = {str(r["device"]) for r in self.read.rows("model", "video_recording")}
        carried = [
            {
                "device": str(r["device"])[:32],
                "modality": str(r.get("modality") or "video")[:64],
                "description": str(r.get("description") or "")[:256],
            }
            for r in rows
        ]
        for device in sorted(used - {r["device"] for r in carried}):
            carried.append({"device": device, "modality": "video", "description": "migrated from element"})
            self.report.note("Device", {"device": device}, "not in the source's lab.Device; added as video")
        self._carry("Device", self.lab.Device, carried)

    def subjects_sessions(self) -> None:
        subjects = [
            {
                "subject": r["subject"],
                "subject_nickname": r.get("subject_nickname") or "",
                "sex": r["sex"],
                "subject_birth_date": r["subject_birth_date"],
                "subject_description": r.get("subject_description") or "",
            }
            for r in self._source("Subject")
        ]
        self._carry("Subject", self.subject.Subject, subjects)
        sessions = [
            {"subject": r["subject"], "session_datetime": r["session_datetime"]}
            for r in self._source("Session")
        ]
        self._carry("Session", self.session.Session, sessions)

    def recordings(self) -> None:
        model = self.model
        files = self._source("VideoRecording.File")
        recordings = self._source("VideoRecording")
        rec_key = ("subject", "session_datetime", "recording_id")
        for f in files:
            path = PurePosixPath(str(f["file_path"]).replace("\\", "/"))
            if path.is_absolute() or ".." in path.parts:
                key = {k: f[k] for k in rec_key}
                if not self._is_lost("VideoRecording", key):
                    self._lose(
                        "VideoRecording",
                        key,
                        f"file {f['file_path']!r} is not inside a data root (absolute, or climbs out "
                        "with '..'); move the video under a root and insert the recording with "
                        "VideoRecording.insert_recording",
                    )
        self._carry(
            "VideoRecording",
            model.VideoRecording,
            [
                {**{k: r[k] for k in rec_key}, "device": str(r["device"])}
                for r in recordings
                if not self._is_lost("VideoRecording", {k: r[k] for k in rec_key})
            ],
        )
        kept = [f for f in files if not self._is_lost("VideoRecording", {k: f[k] for k in rec_key})]
        self._dependents("VideoRecording.File", files, kept, rec_key, "VideoRecording")
        self._carry(
            "VideoRecording.File",
            model.VideoRecording.File,
            [
                {**{k: f[k] for k in rec_key}, "file_id": f["file_id"], "file_path": f["file_path"]}
                for f in kept
            ],
        )
        infos = self._source("RecordingInfo")
        kept = [r for r in infos if not self._is_lost("VideoRecording", {k: r[k] for k in rec_key})]
        self._dependents("RecordingInfo", infos, kept, rec_key, "VideoRecording")
        self._carry(
            "RecordingInfo",
            model.RecordingInfo,
            [
                {
                    **{k: r[k] for k in rec_key},
                    "px_height": r["px_height"],
                    "px_width": r["px_width"],
                    "nframes": r["nframes"],
                    "fps": float(r["fps"])
                    if r["fps"] is not None
                    else r["nframes"] / r["recording_duration"],
                    "recording_datetime": r.get("recording_datetime"),
                    "recording_duration": float(r["recording_duration"]),
                }
                for r in kept
            ],
            direct=True,
        )
        parts = [
            {"body_part": r["body_part"], "body_part_description": r.get("body_part_description") or ""}
            for r in self._source("BodyPart")
        ]
        self._carry("BodyPart", model.BodyPart, parts)

    def _dependents(self, name: str, rows: list[dict], kept: list[dict], key_attrs, parent: str) -> None:
        """Report the rows left out because their parent was."""
        kept_ids = {id(r) for r in kept}
        for r in rows:
            if id(r) not in kept_ids:
                self._lose(name, {k: r[k] for k in key_attrs}, f"its {parent} was not carried")

    def training(self) -> None:
        from .paramsets import params_hash
        from .train import check_training_params, from_element_params

        train = self.train
        carried = []
        by_hash = {r["param_set_hash"]: r["paramset_idx"] for r in train.TrainingParamSet.to_dicts()}
        by_idx = {r["paramset_idx"]: r["param_set_hash"] for r in train.TrainingParamSet.to_dicts()}
        for r in self._source("TrainingParamSet"):
            key = {"paramset_idx": r["paramset_idx"]}
            try:
                params = check_training_params(from_element_params(dict(r["params"])))
            except ValueError as err:
                self._lose("TrainingParamSet", key, str(err))
                continue
            digest = params_hash(params)
            if by_idx.get(r["paramset_idx"], digest) != digest:
                self._lose("TrainingParamSet", key, "this paramset_idx holds other params in the target")
                continue
            if by_hash.get(digest, r["paramset_idx"]) != r["paramset_idx"]:
                self._lose(
                    "TrainingParamSet",
                    key,
                    f"the same params are paramset_idx {by_hash[digest]} in the target",
                )
                continue
            carried.append(
                {
                    "paramset_idx": r["paramset_idx"],
                    "paramset_desc": str(r["paramset_desc"])[:128],
                    "param_set_hash": digest,
                    "params": params,
                }
            )
        self._carry("TrainingParamSet", train.TrainingParamSet, carried)
        self._carry(
            "VideoSet",
            train.VideoSet,
            [{"video_set_id": r["video_set_id"]} for r in self._source("VideoSet")],
        )
        self._carry(
            "VideoSet.File",
            train.VideoSet.File,
            [
                {"video_set_id": r["video_set_id"], "file_id": r["file_id"], "file_path": r["file_path"]}
                for r in self._source("VideoSet.File")
            ],
        )
        task_key = ("video_set_id", "paramset_idx", "training_id")
        tasks = []
        for r in self._source("TrainingTask"):
            key = {k: r[k] for k in task_key}
            if self._is_lost("TrainingParamSet", {"paramset_idx": r["paramset_idx"]}):
                self._lose("TrainingTask", key, "its TrainingParamSet was not carried")
                continue
            tasks.append(
                {
                    **key,
                    "model_prefix": r.get("model_prefix") or "",
                    "project_path": r.get("project_path") or "",
                }
            )
        self._carry("TrainingTask", train.TrainingTask, tasks)
        trainings = []
        for r in self._source("ModelTraining"):
            key = {k: r[k] for k in task_key}
            if self._is_lost("TrainingTask", key) or self._is_lost(
                "TrainingParamSet", {"paramset_idx": r["paramset_idx"]}
            ):
                self._lose("ModelTraining", key, "its TrainingTask was not carried")
                continue
            template = r["config_template"] if isinstance(r["config_template"], dict) else {}
            trainings.append(
                {
                    **key,
                    "latest_snapshot": int(r["latest_snapshot"]),
                    "snapshot_path": "",
                    "snapshotindex": int(template.get("snapshotindex", -1)),
                    "config_template": template,
                    "pytorch_config": {},
                    "init_weights": MIGRATED_TRAINING,
                }
            )
        self._carry("ModelTraining", train.ModelTraining, trainings, direct=True)

    def models(self) -> None:
        model = self.model
        rows = []
        for r in self._source("Model"):
            paramset = r.get("paramset_idx")
            if paramset is not None and self._is_lost("TrainingParamSet", {"paramset_idx": paramset}):
                self.report.note(
                    "Model",
                    {"model_name": r["model_name"]},
                    f"paramset_idx {paramset} not carried: left NULL",
                )
                paramset = None
            template = r["config_template"] if isinstance(r["config_template"], dict) else {}
            rows.append(
                {
                    "model_name": r["model_name"],
                    "task": r["task"],
                    "date": r["date"],
                    "iteration": r["iteration"],
                    "snapshotindex": r["snapshotindex"],
                    "shuffle": r["shuffle"],
                    "trainingsetindex": r["trainingsetindex"],
                    # element-deeplabcut before 0.3 had only DeepLabCut 2.x's TensorFlow engine
                    "engine": str(r.get("engine") or "tensorflow"),
                    "scorer": r["scorer"],
                    "config_template": template,
                    "project_path": r["project_path"],
                    "model_prefix": r.get("model_prefix") or "",
                    "model_description": r.get("model_description") or "",
                    "paramset_idx": paramset,
                }
            )
        unique = ("project_path", "task", "date", "iteration", "shuffle", "snapshotindex", "trainingsetindex")
        taken = {
            tuple(m[k] for k in (*unique, "engine", "model_prefix")): m["model_name"]
            for m in model.Model.to_dicts()
        }
        kept = []
        for row in rows:
            other = taken.get(tuple(row[k] for k in (*unique, "engine", "model_prefix")))
            if other is not None and other != row["model_name"]:
                self._lose(
                    "Model", {"model_name": row["model_name"]}, f"the same model is {other!r} in the target"
                )
            else:
                kept.append(row)
        self._carry("Model", model.Model, kept)

        def carried(r):
            return not self._is_lost("Model", {"model_name": r["model_name"]})

        self._carry(
            "Model.BodyPart",
            model.Model.BodyPart,
            [
                {"model_name": r["model_name"], "body_part": r["body_part"]}
                for r in self._source("Model.BodyPart")
                if carried(r)
            ],
        )
        evaluations = [
            {
                "model_name": r["model_name"],
                "train_iterations": int(r["train_iterations"]),
                **{
                    k: r.get(k)
                    for k in ("train_error", "test_error", "p_cutoff", "train_error_p", "test_error_p")
                },
            }
            for r in self._source("ModelEvaluation")
            if carried(r)
        ]
        self._carry("ModelEvaluation", model.ModelEvaluation, evaluations, direct=True)

    def estimations(self) -> None:
        model = self.model
        task_key = ("subject", "session_datetime", "recording_id", "model_name")
        rec_key = task_key[:3]
        tasks = []
        for r in self._source("PoseEstimationTask"):
            key = {k: r[k] for k in task_key}
            if self._is_lost("VideoRecording", {k: r[k] for k in rec_key}):
                self._lose("PoseEstimationTask", key, "its VideoRecording was not carried")
                continue
            if self._is_lost("Model", {"model_name": r["model_name"]}):
                self._lose("PoseEstimationTask", key, "its Model was not carried")
                continue
            tasks.append(
                {
                    **key,
                    "task_mode": r["task_mode"],
                    "pose_estimation_output_dir": r.get("pose_estimation_output_dir") or "",
                    "pose_estimation_params": r.get("pose_estimation_params"),
                }
            )
        self._carry("PoseEstimationTask", model.PoseEstimationTask, tasks)
        outputs = {tuple(t[k] for k in task_key): t["pose_estimation_output_dir"] for t in tasks}
        models = {m["model_name"]: m for m in model.Model.to_dicts()}
        present = {tuple(k[a] for a in task_key) for k in model.PoseEstimation.keys()}
        for r in self._source("PoseEstimation"):
            key = {k: r[k] for k in task_key}
            if self._is_lost("PoseEstimationTask", key) or self._is_lost(
                "VideoRecording", {k: r[k] for k in rec_key}
            ):
                self._lose("PoseEstimation", key, "its PoseEstimationTask was not carried")
                continue
            if tuple(key.values()) in present:
                self.report.count("PoseEstimation", "present")
                continue
            parts = self.read.rows("model", "__pose_estimation__body_part_position", key)
            m = models.get(key["model_name"]) or {}
            try:
                poses, slots = stack_positions(parts, (m.get("config_template") or {}).get("bodyparts"))
            except ValueError as err:
                self._lose("PoseEstimation", key, str(err))
                continue
            master = {
                **key,
                "pose_estimation_time": r["pose_estimation_time"],
                "output_dir": outputs.get(tuple(key.values()), ""),
                "scorer": m.get("scorer", ""),
                "nframes": int(poses.shape[0]),
                "coords": "x,y,z,likelihood" if poses.shape[2] == 4 else "x,y,likelihood",
                "poses": poses,
            }
            self.report.count("PoseEstimation", "inserted")
            if self.dry:
                continue
            with model.PoseEstimation.connection.transaction:
                model.PoseEstimation.insert1(master, allow_direct_insert=True)
                model.PoseEstimation.BodyPartPosition.insert(
                    [
                        {**key, "individual": ind, "body_part": bp, "slot": i}
                        for i, (ind, bp) in enumerate(slots)
                    ],
                    allow_direct_insert=True,
                )


def stack_positions(parts: list[dict], order: list | None) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """Stack element's per-body-part arrays into (frames, slots, coords), bit for bit.

    Body parts go in the model config's order (then any others, sorted); coordinates are
    ``x, y, likelihood``, with ``z`` after ``y`` when any part has one.

    Raises
    ------
    ValueError
        When there is no body part, the arrays differ in length, or ``frame_index`` is not
        0..n-1 (a gap would shift every later frame).
    """
    if not parts:
        raise ValueError("the estimation has no BodyPartPosition rows")
    rank = {bp: i for i, bp in enumerate(order or [])}
    parts = sorted(parts, key=lambda r: (rank.get(r["body_part"], len(rank)), r["body_part"]))
    three_d = any(r.get("z_pos") is not None for r in parts)
    coords = ("x_pos", "y_pos", "z_pos", "likelihood") if three_d else ("x_pos", "y_pos", "likelihood")
    n = len(np.ravel(parts[0]["x_pos"]))
    columns = []
    for r in parts:
        frames = np.ravel(r["frame_index"])
        if len(frames) != n or not np.array_equal(frames, np.arange(n)):
            raise ValueError(
                f"body part {r['body_part']!r}: frame_index is not 0..{n - 1} (length {len(frames)}); "
                "the arrays cannot be stacked frame by frame"
            )
        for c in coords:
            values = np.full(n, np.nan) if r.get(c) is None else np.ravel(r[c]).astype(np.float64, copy=False)
            if len(values) != n:
                raise ValueError(f"body part {r['body_part']!r}: {c} has {len(values)} values, not {n}")
            columns.append(values)
    poses = np.stack(columns, axis=1).reshape(n, len(parts), len(coords))
    from .dlc import SINGLE_INDIVIDUAL

    return np.ascontiguousarray(poses), [(SINGLE_INDIVIDUAL, r["body_part"]) for r in parts]
