"""Automated and distributed processing: populate in order, status, workers, job recovery.

Workers on many machines share one database server and coordinate through DataJoint's job
reservation (one ``~~<table>`` job table per computed table): a key is reserved atomically
before its ``make`` runs, so every key is computed once.

A worker that receives SIGTERM or SIGINT aborts its job (nothing is written: the insert is one
transaction) and puts the job back to ``pending``. A worker killed with SIGKILL leaves its job
``reserved``; :func:`recover_orphans` re-pends every reservation whose database connection no
longer exists (and, with ``orphan_timeout``, any reservation older than that), and every worker
calls it at the start of each round.
"""

from __future__ import annotations

import logging
import os
import platform
import signal
import time
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)

INTERRUPTED = ("SystemExit", "KeyboardInterrupt")


def computed_tables() -> dict:
    """Return the pipeline's auto-populated tables by name, in dependency order."""
    from .pipeline import model, postprocess, qc, train

    return {
        "ModelTraining": train.ModelTraining,
        "RecordingInfo": model.RecordingInfo,
        "ModelEvaluation": model.ModelEvaluation,
        "PoseEstimation": model.PoseEstimation,
        "CleanedTrajectory": postprocess.CleanedTrajectory,
        "Kinematics": postprocess.Kinematics,
        "PoseQC": qc.PoseQC,
        "QCPlots": qc.QCPlots,
        "LabeledVideo": qc.LabeledVideo,
    }


def select_tables(names: list[str] | None = None) -> dict:
    """Return the named computed tables (all when ``names`` is empty), in dependency order.

    Raises
    ------
    ValueError
        Naming an unknown table and listing the known ones.
    """
    tables = computed_tables()
    if not names:
        return tables
    lowered = {n.lower(): n for n in tables}
    unknown = [n for n in names if n.split(".")[-1].lower() not in lowered]
    if unknown:
        raise ValueError(f"Unknown table(s) {unknown}; choose from {list(tables)}.")
    wanted = {lowered[n.split(".")[-1].lower()] for n in names}
    return {name: table for name, table in tables.items() if name in wanted}


@dataclass
class RunResult:
    """What one table's populate did."""

    table: str
    success: int = 0
    errors: list = field(default_factory=list)  # (key, message)


def run(
    tables: list[str] | None = None,
    restriction: dict | None = None,
    *,
    reserve_jobs: bool = False,
    display_progress: bool = True,
    max_calls: int | None = None,
) -> list[RunResult]:
    """Populate the computed tables in dependency order, collecting errors instead of stopping.

    Parameters
    ----------
    tables : list of str, optional
        Table names (default: all, see :func:`computed_tables`).
    restriction : dict, optional
        Restrict every table's keys, e.g. ``{"subject": "m1"}`` (attributes a table lacks are
        ignored by DataJoint).
    reserve_jobs : bool
        Coordinate with other workers through the job tables.
    display_progress : bool
        Show a progress bar per table.
    max_calls : int, optional
        At most this many ``make`` calls per table.

    Returns
    -------
    list of RunResult
    """
    results = []
    for name, table in select_tables(tables).items():
        restrictions = [restriction] if restriction else []
        out = table.populate(
            *restrictions,
            reserve_jobs=reserve_jobs,
            suppress_errors=True,
            display_progress=display_progress,
            max_calls=max_calls,
        )
        errors = [(key, str(message)) for key, message in out["error_list"]]
        results.append(RunResult(name, out["success_count"], errors))
    return results


def status(tables: list[str] | None = None) -> list[dict]:
    """Return, per computed table, how many keys are done, pending, reserved and failed.

    ``pending`` counts keys ready to compute (their inputs exist) that are neither done nor
    reserved; ``errors`` lists each failed key with its message.
    """
    rows = []
    for name, table in select_tables(tables).items():
        todo = table.key_source - table
        jobs = table.jobs
        declared = jobs.is_declared
        reserved = len(jobs.reserved) if declared else 0
        errors = [
            {
                "key": {k: _plain(v) for k, v in job.items() if k in table.primary_key},
                "message": job["error_message"],
            }
            for job in (jobs.errors.to_dicts() if declared else [])
        ]
        rows.append(
            {
                "table": name,
                "done": len(table()),
                "pending": max(len(todo) - reserved - len(errors), 0),
                "reserved": reserved,
                "errors": errors,
            }
        )
    return rows


def _plain(value):
    return value.isoformat(sep=" ") if hasattr(value, "isoformat") else value


def _live_connections(connection) -> set[int]:
    """Return the ids of the connections the database server has open now."""
    if connection.adapter.backend == "postgresql":
        query = "SELECT pid FROM pg_stat_activity"
    else:
        query = "SELECT ID FROM information_schema.PROCESSLIST"
    return {int(row[0]) for row in connection.query(query).fetchall()}


def _repend(jobs, key: dict) -> None:
    priority = jobs.connection._config.jobs.default_priority
    (jobs & key).delete_quick()
    jobs.insert1({**key, "status": "pending", "priority": priority})


def recover_orphans(tables: list[str] | None = None, orphan_timeout: float | None = None) -> int:
    """Put back to ``pending`` the reservations of workers that are gone.

    A reservation is orphaned when the database connection that made it no longer exists
    (its worker was killed, e.g. with SIGKILL, or lost its machine), or, when
    ``orphan_timeout`` is given, when it is older than that many seconds (a hung worker).
    Its transaction was rolled back by the server, so no partial row exists.

    Returns
    -------
    int
        How many jobs were put back.
    """
    recovered = 0
    for table in select_tables(tables).values():
        jobs = table.jobs
        if not jobs.is_declared or not len(jobs.reserved):
            continue
        live = _live_connections(table.connection)
        for job in jobs.reserved.to_dicts():
            key = {k: job[k] for k in table.primary_key}
            gone = int(job["connection_id"] or 0) not in live
            if gone:
                _repend(jobs, key)
                recovered += 1
                logger.warning("Recovered %s of %s (its worker's connection is gone)", key, table.__name__)
        if orphan_timeout:
            recovered += jobs.refresh(orphan_timeout=orphan_timeout, stale_timeout=0)["orphaned"]
    return recovered


def release_interrupted(tables: list[str] | None = None) -> int:
    """Put back to ``pending`` the jobs this process abandoned on SIGTERM/SIGINT."""
    released = 0
    host, pid = platform.node(), os.getpid()
    for table in select_tables(tables).values():
        jobs = table.jobs
        if not jobs.is_declared:
            continue
        for job in (jobs.errors & {"host": host, "pid": pid}).to_dicts():
            if job["error_message"].startswith(INTERRUPTED):
                _repend(jobs, {k: job[k] for k in table.primary_key})
                released += 1
    return released


def worker(
    tables: list[str] | None = None,
    *,
    sleep: float = 30.0,
    max_jobs: int | None = None,
    once: bool = False,
    orphan_timeout: float | None = None,
    report=None,
) -> int:
    """Process jobs until stopped: the loop a cluster node runs.

    Each round recovers orphaned jobs, then populates every table with job reservation. With
    ``once`` it stops when a round finds nothing to do; otherwise it sleeps and tries again.
    SIGTERM and SIGINT abort the job in progress, put it back to ``pending`` and return.

    Parameters
    ----------
    tables : list of str, optional
        Which tables to work on (default all).
    sleep : float
        Seconds between rounds that found no work.
    max_jobs : int, optional
        Stop after this many successful jobs.
    once : bool
        Stop when there is no work left instead of waiting for more.
    orphan_timeout : float, optional
        Also recover reservations older than this (seconds).
    report : callable, optional
        Called with a message after each round.

    Returns
    -------
    int
        Jobs completed successfully.
    """
    say = report or (lambda message: None)

    def stop(signum, frame):
        raise SystemExit(f"signal {signum}")  # DataJoint records it as "SystemExit: ..."

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    done = 0
    try:
        while True:
            recovered = recover_orphans(tables, orphan_timeout)
            worked = 0
            for table in select_tables(tables).values():
                remaining = None if max_jobs is None else max_jobs - done
                if remaining is not None and remaining <= 0:
                    break
                out = table.populate(
                    reserve_jobs=True, suppress_errors=True, display_progress=False, max_calls=remaining
                )
                done += out["success_count"]
                worked += out["success_count"] + len(out["error_list"])
            say(f"round: {worked} job(s) processed, {recovered} recovered, {done} done in all")
            if max_jobs is not None and done >= max_jobs:
                return done
            if not worked:
                if once:
                    return done
                time.sleep(sleep)
    except SystemExit:
        released = release_interrupted(tables)
        say(f"stopped: {done} job(s) done, {released} interrupted job(s) put back to pending")
        return done
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
