"""Files no row references: found, reported and removed (``workflow-deeplabcut gc``).

Two kinds of files outlive their rows:

- arrays in the DataJoint store (``<npyfile@workflow_dlc>``, ``<npy@workflow_dlc>``): a worker
  killed inside its insert leaves the ``.npy`` files it wrote, and deleting rows leaves theirs.
  DataJoint's own garbage collector (:class:`datajoint.gc.GarbageCollector`) lists them, per
  schema;
- QC pictures and labeled videos under the processed root, whose ``qc.QCPlots``,
  ``qc.IdentityQC`` or ``qc.LabeledVideo`` row was deleted.

A file younger than ``min_age`` is never removed: it may belong to an insert that has not
committed yet. A file that a row references is never removed.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from datajoint.gc import GarbageCollector
from datajoint.hash_registry import delete_path

from .database import STORE
from .errors import DatabaseError
from .settings import get_settings

logger = logging.getLogger(__name__)

#: Files younger than this are left alone by default (seconds).
MIN_AGE = 3600.0


@dataclass
class GarbageReport:
    """What :func:`collect_garbage` found (and removed unless ``dry_run``)."""

    orphans: list[str] = field(default_factory=list)  # store-relative or absolute paths
    orphan_bytes: int = 0
    young: int = 0  # orphans left alone because they are newer than min_age
    removed: int = 0
    referenced: int = 0
    dry_run: bool = True


def _age(path: Path, now: float) -> float:
    try:
        return now - path.stat().st_mtime
    except OSError:
        return 0.0


def collect_garbage(*, dry_run: bool = True, min_age: float = MIN_AGE) -> GarbageReport:
    """Find the files of uncommitted or deleted rows; remove them unless ``dry_run``.

    Parameters
    ----------
    dry_run : bool
        Only report.
    min_age : float
        Leave files younger than this many seconds (an insert may be in progress).

    Returns
    -------
    GarbageReport

    Raises
    ------
    DatabaseError
        If the store could not be listed completely (nothing is removed then).
    """
    from .pipeline import SCHEMAS, qc

    report = GarbageReport(dry_run=dry_run)
    now = time.time()
    collector = GarbageCollector(*[m.schema for m in SCHEMAS.values()], store=STORE)
    found = collector.collect(dry_run=True)
    if found["scan_errors"]:
        raise DatabaseError(
            f"The store could not be listed completely: {found['scan_errors']}; nothing removed."
        )
    report.referenced = found["schema_paths_referenced"] + found["hash_paths_referenced"]
    root = Path(collector.backend._full_path(""))
    for kind in ("schema", "hash"):
        for path in found[f"orphaned_{kind}_paths"]:
            full = root / path
            if _age(full, now) < min_age:
                report.young += 1
                continue
            report.orphans.append(path)
            report.orphan_bytes += full.stat().st_size if full.exists() else 0
            if not dry_run:
                if kind == "schema":
                    done = collector.delete_schema_path(path)
                else:
                    done = delete_path(path, STORE, config=collector.config)
                report.removed += int(bool(done))

    processed = get_settings().processed_data_dir
    referenced = set()
    for row in qc.QCPlots.to_dicts():
        referenced.update(qc.QCPlots.row_paths(row).values())
    referenced.update(processed / r["labeled_video_path"] for r in qc.LabeledVideo.to_dicts())
    referenced.update(processed / r["identity_plot"] for r in qc.IdentityQC.Individual.to_dicts())
    report.referenced += len(referenced)
    candidates = [p for p in processed.rglob("qc*_*.png") if p.parent.name == "qc"]
    candidates += [p for p in processed.rglob("identity*_*.png") if p.parent.name == "qc"]
    candidates += [p for p in processed.rglob("*_labeled*.mp4") if p.parent.name == "labeled"]
    for path in sorted(candidates):
        if path in referenced:
            continue
        if _age(path, now) < min_age:
            report.young += 1
            continue
        report.orphans.append(str(path))
        report.orphan_bytes += path.stat().st_size
        if not dry_run:
            path.unlink(missing_ok=True)
            report.removed += 1
    if report.orphans:
        logger.info(
            "%d orphaned file(s), %d bytes%s",
            len(report.orphans),
            report.orphan_bytes,
            "" if dry_run else f"; removed {report.removed}",
        )
    return report


__all__ = ["GarbageReport", "collect_garbage", "MIN_AGE"]
