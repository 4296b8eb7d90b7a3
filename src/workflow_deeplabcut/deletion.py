"""Delete rows with their files (``workflow-deeplabcut delete``).

DataJoint's cascading delete removes a row and every row that depends on it, but not the files
those rows stand for. Deleting here also removes, after the rows are gone:

- the arrays the rows keep in the store (``<npy@...>``, ``<npyfile@...>``);
- QC pictures (``qc.QCPlots``, ``qc.IdentityQC``) and labeled videos (``qc.LabeledVideo``);
- the DeepLabCut outputs of trigger-mode estimations (the files the pipeline wrote for the
  recording's videos, and its run record) — never the outputs of load mode or imports, which
  are the lab's own files.

The files are listed before the rows are deleted (in one transaction, DataJoint's cascade) and
removed after the commit; a file that cannot be removed is reported, and ``gc`` removes any
store file left behind.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from .errors import InputError

logger = logging.getLogger(__name__)


@dataclass
class DeletionPlan:
    """What :func:`delete` removes (or, with ``dry_run``, would remove)."""

    rows: dict = field(default_factory=dict)  # table name -> rows
    files: list[Path] = field(default_factory=list)  # under the processed root
    store_paths: list[str] = field(default_factory=list)  # relative to the store
    removed: int = 0  # files and store paths removed
    failed: list[str] = field(default_factory=list)  # could not be removed (why)
    dry_run: bool = True


def _classes() -> dict:
    from . import pipeline

    return pipeline.tables()


def find_table(name: str):
    """Return the pipeline table called ``name`` (``Session``, ``PoseEstimation``, ``Model``...)."""
    import difflib

    by_name = {}
    for cls in _classes().values():
        by_name.setdefault(cls.__name__, cls)
    if name in by_name:
        return by_name[name]
    close = difflib.get_close_matches(name, list(by_name), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise InputError(f"No table named {name!r}.{hint} Tables: {', '.join(sorted(by_name))}.")


def plan(table, restriction: dict) -> DeletionPlan:
    """List the rows a delete of ``table & restriction`` cascades to, and their files.

    Raises
    ------
    InputError
        When the restriction matches no row, or is empty.
    """
    import datajoint as dj

    if not restriction:
        raise InputError(
            f"Give the {table.__name__} rows to delete as NAME=VALUE pairs; deleting a whole table "
            "is not offered here."
        )
    selected = table & restriction
    if not selected:
        raise InputError(f"{table.__name__} has no row matching {restriction}; nothing to delete.")
    classes = _classes()
    result = DeletionPlan()
    for restricted in dj.Diagram.cascade(selected):
        cls = classes.get(restricted.full_table_name)
        count = len(restricted)
        if cls is None or not count:
            continue
        result.rows[_qualified(cls)] = count
        rows = (cls & restricted.keys()).to_dicts()
        result.store_paths += [v.path for r in rows for v in r.values() if _stored(v)]
        result.files += _files(cls, rows)
    result.files = sorted(set(result.files))
    result.store_paths = sorted(set(result.store_paths))
    return result


def delete(table, restriction: dict, *, dry_run: bool = False) -> DeletionPlan:
    """Delete ``table & restriction`` and everything that depends on it, with their files.

    Parameters
    ----------
    table : DataJoint table class
        E.g. ``session.Session`` (see :func:`find_table`).
    restriction : dict
        Which rows, e.g. ``{"subject": "m1"}``.
    dry_run : bool
        Only list the rows and files.

    Returns
    -------
    DeletionPlan
    """
    result = plan(table, restriction)
    result.dry_run = dry_run
    if dry_run:
        return result
    (table & restriction).delete(prompt=False, part_integrity="cascade")
    _remove(result)
    return result


def _qualified(cls) -> str:
    master = getattr(cls, "master", None)
    return f"{master.__name__}.{cls.__name__}" if master is not None else cls.__name__


def _stored(value) -> bool:
    """Whether a fetched value is a reference to a file in the store (lazy, nothing read)."""
    return hasattr(value, "path") and hasattr(value, "store") and isinstance(value.path, str)


def _files(cls, rows: list[dict]) -> list[Path]:
    """Files under the processed root that these rows stand for."""
    from . import dlc
    from .pipeline import model, qc
    from .settings import get_settings

    root = get_settings().processed_data_dir
    files = []
    if cls is qc.QCPlots:
        for row in rows:
            files += list(qc.QCPlots.row_paths(row).values())
    elif cls is qc.IdentityQC.Individual:
        files += [root / row["identity_plot"] for row in rows]
    elif cls is qc.LabeledVideo:
        files += [root / row["labeled_video_path"] for row in rows]
    elif cls is model.PoseEstimation:
        for row in rows:
            key = {k: row[k] for k in model.PoseEstimationTask.primary_key}
            task = (model.PoseEstimationTask & key).fetch1()
            if task["task_mode"] != "trigger" or (task["pose_estimation_params"] or {}).get("source_file"):
                continue  # the lab's own files
            folder = root / row["output_dir"]
            stems = [PurePosixPath(r["file_path"]).stem for r in (model.VideoRecording.File & key).to_dicts()]
            if folder.is_dir():
                files += [
                    p
                    for p in folder.iterdir()
                    if p.is_file() and (p.name == dlc.RUN_RECORD or any(p.name.startswith(s) for s in stems))
                ]
    return [f for f in files if f.exists()]


def _remove(result: DeletionPlan) -> None:
    from datajoint.gc import GarbageCollector

    from .database import STORE
    from .pipeline import SCHEMAS

    for path in result.files:
        try:
            path.unlink()
            result.removed += 1
        except OSError as err:
            result.failed.append(f"{path}: {err}")
    for folder in sorted({p.parent for p in result.files}, key=lambda p: len(p.parts), reverse=True):
        for empty in (folder, folder.parent):
            try:
                empty.rmdir()  # only when empty: other results stay
            except OSError:
                pass
    collector = GarbageCollector(*[m.schema for m in SCHEMAS.values()], store=STORE)
    for path in result.store_paths:
        try:
            if collector.delete_schema_path(path):
                result.removed += 1
            else:
                result.failed.append(f"{path}: not removed from the store (gc removes it later)")
        except Exception as err:  # a store backend may raise its own errors; gc removes them later
            result.failed.append(f"{path}: {err}")
    if result.failed:
        logger.warning("%d file(s) not removed: %s", len(result.failed), "; ".join(result.failed[:5]))


__all__ = ["DeletionPlan", "delete", "find_table", "plan"]
