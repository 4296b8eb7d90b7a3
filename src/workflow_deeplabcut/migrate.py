"""Bring a database written by an earlier version up to this one (``workflow-deeplabcut migrate``).

Importing the pipeline against an older database refuses to go on (:func:`require_current`)
and names this command: the old tables would otherwise be used with the new code, half
working. The migration, each step idempotent (a migration stopped halfway is finished by
running it again), on MySQL/MariaDB and PostgreSQL alike:

1. ``RecordingInfo`` gains ``rotation`` (0) and ``frame_times`` (null: a constant frame rate).
2. ``PoseEstimation`` keeps its positions in one array per estimation (``poses``, frames ×
   slots × coords) instead of five ``.npy`` files per body part: for each estimation the old
   arrays are stacked, in (individual, body part) order, bit for bit, and written through the
   store; each ``BodyPartPosition`` row gets its ``slot``. Then the old columns are dropped
   and the old files removed.
3. Quality gates: ``ModelEvaluation``, ``PoseQC`` and ``CleanedTrajectory`` gain ``warning``
   (empty for rows computed before), ``PoseQC`` and ``CleanedTrajectory`` the p-cutoff /
   likelihood threshold they applied (null before); ``QCParamSet`` gains ``max_below_pcutoff``
   (0.5) and its ``pcutoff`` may be null (the model's own). Existing rows keep their values:
   the shipped set 0 keeps p-cutoff 0.6 in a migrated database. ``ModelTraining`` gains
   ``init_weights`` (empty for trainings before).
4. The migrated tables' comments become this version's.

Stop the workers of the older version first: they would write rows of the old shape.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

import numpy as np

from .errors import DatabaseError

logger = logging.getLogger(__name__)

#: Set while :func:`migrate` imports the pipeline: the import must not refuse an old database.
_migrating = False

_OLD_POSITION_COLUMNS = ("frame_index", "x_pos", "y_pos", "z_pos", "likelihood")


@dataclass
class MigrationReport:
    """What :func:`migrate` found to do (and did, unless ``dry_run``)."""

    steps: list[str] = field(default_factory=list)
    estimations: int = 0  # pose estimations converted (or to convert)
    files_removed: int = 0
    dry_run: bool = True


def pending_steps() -> list[str]:
    """Describe what the connected database lacks, in this version's terms (empty: current)."""
    from .pipeline import model

    steps = []
    missing = [a for a in ("rotation", "frame_times") if a not in _columns(model.RecordingInfo)]
    if missing:
        steps.append(f"RecordingInfo: add {', '.join(missing)}")
    part = _columns(model.PoseEstimation.BodyPartPosition)
    # The old columns go last: while they are there, the migration has not finished.
    if "slot" not in part or "x_pos" in part or "poses" not in _columns(model.PoseEstimation):
        steps.append("PoseEstimation: one pose array per estimation instead of five files per body part")
    for table, names in _gate_columns().items():
        missing = [n for n in names if n not in _columns(table)]
        if missing:
            steps.append(f"{table.__name__}: add {', '.join(missing)}")
    return steps


def _gate_columns() -> dict:
    """Columns added by step 3 (quality gates, and what a training started from), by table."""
    from .pipeline import model, postprocess, qc, train

    return {
        train.ModelTraining: ("init_weights",),
        model.ModelEvaluation: ("warning",),
        qc.QCParamSet: ("max_below_pcutoff",),
        qc.PoseQC: ("pcutoff_used", "warning"),
        postprocess.CleanedTrajectory: ("likelihood_threshold", "warning"),
        postprocess.CleanedTrajectory.BodyPart: ("z_pos",),
        qc.QCPlots: ("reprojection_plot",),
    }


def refuse_element_schemas(conn) -> None:
    """Refuse a prefix whose schemas hold element-deeplabcut's tables, before anything is declared.

    element-deeplabcut's tables share their names with this pipeline's (the tutorial's), so
    activating there would declare this pipeline's other tables among them. Its
    ``__model_training`` has no ``pytorch_config``, which this pipeline's always had.

    Raises
    ------
    DatabaseError
        Naming the prefix and ``migrate --from-element``.
    """
    from .settings import get_settings, with_prefix

    rows = conn.query(
        "SELECT column_name FROM information_schema.columns WHERE table_schema=%s AND table_name=%s",
        args=(with_prefix("train"), "__model_training"),
    ).fetchall()
    columns = {str(r[0]) for r in rows}
    if columns and "pytorch_config" not in columns:
        prefix = get_settings().prefix
        raise DatabaseError(
            f"The schemas of prefix {prefix!r} hold element-deeplabcut's tables, not this pipeline's "
            f"({with_prefix('train')}.__model_training has no pytorch_config); nothing was declared "
            "there. Give this pipeline its own prefix (WORKFLOW_DLC_PREFIX) and carry the rows over "
            f"with `workflow-deeplabcut migrate --from-element {prefix}` (`--dry-run` first)."
        )


def require_current() -> None:
    """Raise if the database was written by an earlier version (called when the pipeline loads).

    Raises
    ------
    DatabaseError
        Naming what is out of date and the command that migrates it.
    """
    if _migrating:
        return
    steps = pending_steps()
    if steps:
        raise DatabaseError(
            "This database was written by an earlier version of workflow-deeplabcut ("
            + "; ".join(steps)
            + "). Stop the workers of that version, then run `workflow-deeplabcut migrate` once "
            "(`--dry-run` lists the steps)."
        )


def migrate(*, dry_run: bool = False) -> MigrationReport:
    """Migrate the configured database to this version's tables (see the module).

    Parameters
    ----------
    dry_run : bool
        Only report the steps and the number of estimations to convert.

    Returns
    -------
    MigrationReport
    """
    global _migrating
    _migrating = True
    try:
        from .pipeline import model
    finally:
        _migrating = False

    report = MigrationReport(steps=pending_steps(), dry_run=dry_run)
    old_layout = "x_pos" in _columns(model.PoseEstimation.BodyPartPosition)
    if old_layout or "poses" not in _columns(model.PoseEstimation):
        report.estimations = len(model.PoseEstimation())
    if dry_run or not report.steps:
        return report

    info = model.RecordingInfo
    for name in ("rotation", "frame_times"):
        if name not in _columns(info):
            _add_column(info, _definition_line(info, name))
    _reset_heading(info)

    est, part = model.PoseEstimation, model.PoseEstimation.BodyPartPosition
    for name in ("coords", "poses"):
        if name not in _columns(est):
            _add_column(est, _nullable(_definition_line(est, name)))
    if "slot" not in _columns(part):
        _add_column(part, _nullable(_definition_line(part, "slot")))
    _reset_heading(est)
    _reset_heading(part)

    old_files = []
    for key in (est & "poses IS NULL").keys():
        old_files += _convert(est, part, key)
    for table, name in ((est, "coords"), (est, "poses"), (part, "slot")):
        _set_not_null(table, _definition_line(table, name))
    for name in _OLD_POSITION_COLUMNS:
        if name in _columns(part):
            quoted = part.connection.adapter.quote_identifier(name)
            part.connection.query(f"ALTER TABLE {part.full_table_name} DROP COLUMN {quoted}")
    _set_table_comment(part)
    gates = _gate_columns()
    for table, names in gates.items():
        if table.__name__ == "QCParamSet" and "max_below_pcutoff" not in _columns(table):
            _drop_not_null(table, _definition_line(table, "pcutoff"))  # before the column: idempotent
        for name in names:
            if name not in _columns(table):
                _add_column(table, _definition_line(table, name))
    for table in (info, est, part, *gates):
        _reset_heading(table)
        _refresh_comments(table)
        _reset_heading(table)
    report.files_removed = _remove_files(old_files)
    logger.info("Migrated: %s", "; ".join(report.steps))
    return report


# ------------------------------------------------------------------------------ helpers
def _columns(table) -> set[str]:
    """Return the table's columns as the database has them now (not a cached heading)."""
    conn = table.connection
    schema, name = conn.adapter.split_full_table_name(table.full_table_name)
    rows = conn.query(conn.adapter.get_columns_sql(schema, name), as_dict=True).fetchall()
    return {conn.adapter.parse_column_info(r)["name"] for r in rows}


def _reset_heading(table) -> None:
    from datajoint.heading import Heading

    cls = table if isinstance(table, type) else type(table)
    cls._heading = Heading(table_info=cls.heading.table_info)


def _definition_line(table, name: str) -> str:
    """Return the line that declares ``name`` in this version's definition of the table."""
    for line in table.definition.splitlines():
        if re.match(rf"\s*{re.escape(name)}\s*(=|:)", line):
            return line.strip()
    raise DatabaseError(f"{table.__name__} declares no attribute {name!r}.")  # a bug, not input


def _nullable(line: str) -> str:
    """Return the same attribute, nullable (added to a table with rows, filled, then required)."""
    name, rest = line.split(":", 1)
    return f"{name.split('=')[0].strip()}=null:{rest}"


def _compile(table, line: str) -> tuple[str, str, str | None]:
    from datajoint.declare import compile_attribute

    name, sql, _store, comment = compile_attribute(line, False, [], {}, table.connection.adapter)
    return name, sql, comment


def _add_column(table, line: str) -> None:
    conn = table.connection
    name, sql, comment = _compile(table, line)
    conn.query(f"ALTER TABLE {table.full_table_name} ADD COLUMN {sql}")
    if comment:
        ddl = conn.adapter.column_comment_ddl(table.full_table_name, name, comment)
        if ddl:
            conn.query(ddl)


def _set_not_null(table, line: str) -> None:
    conn = table.connection
    name, sql, _ = _compile(table, line)
    if conn.adapter.backend == "postgresql":
        quoted = conn.adapter.quote_identifier(name)
        # and without the DEFAULT NULL it was added with, as declared
        conn.query(
            f"ALTER TABLE {table.full_table_name} ALTER COLUMN {quoted} SET NOT NULL, "
            f"ALTER COLUMN {quoted} DROP DEFAULT"
        )
    else:
        conn.query(f"ALTER TABLE {table.full_table_name} MODIFY COLUMN {sql}")


def _drop_not_null(table, line: str) -> None:
    conn = table.connection
    name, sql, _ = _compile(table, line)
    if conn.adapter.backend == "postgresql":
        quoted = conn.adapter.quote_identifier(name)
        conn.query(f"ALTER TABLE {table.full_table_name} ALTER COLUMN {quoted} DROP NOT NULL")
    else:
        conn.query(f"ALTER TABLE {table.full_table_name} MODIFY COLUMN {sql}")


def _refresh_comments(table) -> None:
    """Give the table's secondary attributes the comments this version declares."""
    conn = table.connection
    attributes = table.heading.attributes
    for line in table.definition.split("---", 1)[-1].splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "->")):
            continue
        name, sql, comment = _compile(table, line)
        declared = line.split("#", 1)[1].strip() if "#" in line else ""
        if name not in attributes or attributes[name].in_key or attributes[name].comment == declared:
            continue
        ddl = conn.adapter.column_comment_ddl(table.full_table_name, name, comment) if comment else None
        conn.query(ddl or f"ALTER TABLE {table.full_table_name} MODIFY COLUMN {sql}")


def _set_table_comment(table) -> None:
    """Give the table the comment its definition declares now."""
    conn = table.connection
    first = table.definition.strip().splitlines()[0].strip()
    comment = first[1:].strip() if first.startswith("#") else ""
    ddl = conn.adapter.table_comment_ddl(table.full_table_name, comment)
    conn.query(ddl or f"ALTER TABLE {table.full_table_name} COMMENT = {conn.adapter.quote_string(comment)}")


def _convert(est, part, key: dict) -> list[str]:
    """Stack one estimation's per-body-part arrays into its pose array; return the old files' paths."""
    rows = sorted((part & key).to_dicts(), key=lambda r: (r["individual"], r["body_part"]))
    if not rows:
        raise DatabaseError(f"Pose estimation {key} has no body part rows; delete it and run it again.")
    has_z = any(r.get("z_pos") is not None for r in rows)
    coords = ("x", "y", "z", "likelihood") if has_z else ("x", "y", "likelihood")
    attrs = [{"x": "x_pos", "y": "y_pos", "z": "z_pos", "likelihood": "likelihood"}[c] for c in coords]
    n = len(rows[0]["x_pos"])
    values = np.empty((n, len(rows), len(coords)), dtype=np.float64)
    old_files = []
    for k, row in enumerate(rows):
        for j, attr in enumerate(attrs):
            values[:, k, j] = np.asarray(row[attr])  # the stored float64 values, unchanged
        for attr in _OLD_POSITION_COLUMNS:
            ref = row.get(attr)
            if ref is not None and hasattr(ref, "path"):
                old_files.append(ref.path)
    with est.connection.transaction:
        est.update1({**key, "poses": values, "coords": ",".join(coords)})
        for k, row in enumerate(rows):
            part.update1({**{a: row[a] for a in part.primary_key}, "slot": k})
    return old_files


def _remove_files(paths: list[str]) -> int:
    """Remove the old arrays from the store (after the commit; a failure leaves them to ``gc``)."""
    import datajoint as dj
    from datajoint.hash_registry import get_store_backend

    from .database import STORE

    backend = get_store_backend(STORE, config=dj.config)
    removed = 0
    for path in paths:
        try:
            backend.remove(path)
            removed += 1
        except OSError as err:
            logger.warning("Could not remove %s (run `workflow-deeplabcut gc` later): %s", path, err)
    return removed


__all__ = ["MigrationReport", "migrate", "pending_steps", "refuse_element_schemas", "require_current"]
