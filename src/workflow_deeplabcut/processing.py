"""Automated and distributed processing: populate in order, status, workers, recovery, retries.

Workers on many machines share one database server and coordinate through DataJoint's job
reservation (one ``~~<table>`` job table per computed table): a key is reserved atomically
before its ``make`` runs, so every key is computed once.

What keeps a fleet of workers going (each piece has a test in ``tests/test_faults.py``):

- **Database restarts.** A worker whose connection is lost logs one line, reconnects with a
  bounded exponential backoff and carries on; a job whose transaction died is put back to
  ``pending`` (its own reservations are released after every reconnect, and the error a lost
  connection leaves is retried as transient).
- **Killed workers.** Every worker registers in ``jobs.Worker`` (host, pid, token) and a
  background thread renews its heartbeat. A reservation is orphaned when its database
  connection is gone, or, after a server restart (when connection ids mean nothing: MariaDB
  reuses them), when its worker's heartbeat is stale; :func:`recover_orphans` puts it back.
- **Failed jobs.** Errors with a transient cause (lost connection, disk full) are retried
  automatically up to ``max_retries`` times, with a growing delay; ``retry`` re-pends any
  error on request; ``jobs.JobAttempt`` counts the attempts, which :func:`status` shows.
- **Starting together.** Job tables are declared under a server-side lock.
- **Stopping.** SIGTERM or SIGINT aborts the job in progress (its insert is one transaction, so
  nothing is half-written) and puts it back to ``pending``.

Workers come in three classes (:data:`WORK_CLASSES`): ``gpu`` workers take GPU work (training,
evaluation, trigger-mode inference: :func:`gpu_parts`) first and the rest when none is left;
``cpu`` workers never take GPU work; ``all`` workers take everything in dependency order. By
default (``auto``) a worker with a GPU (``CUDA_VISIBLE_DEVICES``, which SLURM sets for
``--gres=gpu``) is a ``gpu`` worker, and one without is ``all``, or ``cpu`` when the setting
``gpu_only`` says GPU work needs a GPU.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import platform
import re
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import datajoint as dj

from . import database, quality, rules
from .errors import DatabaseError, InputError

logger = logging.getLogger(__name__)

INTERRUPTED = ("SystemExit", "KeyboardInterrupt")
#: Seconds without a heartbeat after which a worker counts as gone (after a server restart).
HEARTBEAT_TIMEOUT = float(os.environ.get("WORKFLOW_DLC_HEARTBEAT_TIMEOUT", 60))
#: Automatic retries of a job that failed for a transient cause.
MAX_RETRIES = int(os.environ.get("WORKFLOW_DLC_MAX_RETRIES", 3))
#: Delay before the first automatic retry (doubled at each further one), seconds.
RETRY_DELAY = float(os.environ.get("WORKFLOW_DLC_RETRY_DELAY", 5))
#: Longest a worker keeps trying to reconnect to a database that is down, seconds.
RECONNECT_FOR = float(os.environ.get("WORKFLOW_DLC_RECONNECT_FOR", 600))

#: Error messages that mean the cause may pass: the database went away, the disk was full.
TRANSIENT = re.compile(
    "|".join(
        [
            r"LostConnectionError",
            r"lost connection",
            r"server has gone away",
            r"server closed the connection",
            r"terminating connection",
            r"connection (?:was )?lost",
            r"could not connect",
            r"can't connect",
            r"connection refused",
            r"the database system is (?:starting up|shutting down|in recovery)",
            r"no space left on device",
            r"errno 28\b",
            r"disk quota exceeded",
            r"errno 122\b",
            r"could not extend file",
            r"disk full",
        ]
    ),
    re.IGNORECASE,
)


#: What a worker may take: ``auto`` resolves to one of the others (:func:`resolve_work`).
WORK_CLASSES = ("auto", "all", "cpu", "gpu")


def is_transient(message: str) -> bool:
    """Return True when a job's error message has a cause that may pass (see :data:`TRANSIENT`)."""
    return bool(TRANSIENT.search(message or ""))


# ------------------------------------------------------------------------------ tables
def computed_tables() -> dict:
    """Return the pipeline's auto-populated tables by name, in dependency order."""
    from .pipeline import model, postprocess, qc, refine, threed, train

    return {
        "ModelTraining": train.ModelTraining,
        "ModelRegistration": model.ModelRegistration,
        "RecordingInfo": model.RecordingInfo,
        "Calibration": threed.Calibration,
        "ModelEvaluation": model.ModelEvaluation,
        "PoseEstimation": model.PoseEstimation,
        "CleanedTrajectory": postprocess.CleanedTrajectory,
        "Kinematics": postprocess.Kinematics,
        "SocialMeasures": postprocess.SocialMeasures,
        "PoseQC": qc.PoseQC,
        "QCPlots": qc.QCPlots,
        "IdentityQC": qc.IdentityQC,
        "LabeledVideo": qc.LabeledVideo,
        "ExtractedFrames": refine.ExtractedFrames,
        "OutlierFrames": refine.OutlierFrames,
        "HeldOutError": refine.HeldOutError,
    }


def gpu_parts() -> dict:
    """Return the GPU work of the pipeline: table name → restriction (None: the whole table).

    Training and evaluation run the network on every image; trigger-mode pose estimation runs
    it on every frame. Load-mode estimation, post-processing, QC and NWB need no GPU.
    """
    return {"ModelTraining": None, "ModelEvaluation": None, "PoseEstimation": "task_mode = 'trigger'"}


def work_items(selected: dict) -> list[tuple]:
    """Split the selected tables into (name, table, restriction, class) items, in dependency order.

    ``class`` is ``gpu`` or ``cpu``; a table with both (``PoseEstimation``) gives two items.
    """
    items = []
    for name, table in selected.items():
        part = gpu_parts().get(name, "")
        if part is None:
            items.append((name, table, None, "gpu"))
        elif part:
            items.append((name, table, part, "gpu"))
            items.append((name, table, f"NOT ({part})", "cpu"))
        else:
            items.append((name, table, None, "cpu"))
    return items


def visible_gpus() -> list[str]:
    """Return the GPUs this process may use.

    ``CUDA_VISIBLE_DEVICES`` when it is set (SLURM sets it to the GPUs of ``--gres=gpu``, and
    PyTorch then sees only those), otherwise the GPUs the NVIDIA driver lists. No CUDA library
    is loaded.
    """
    value = os.environ.get("CUDA_VISIBLE_DEVICES")
    if value is not None:
        ids = [v.strip() for v in value.split(",") if v.strip()]
        return [] if not ids or ids == ["-1"] or "NoDevFiles" in value else ids
    driver = Path("/proc/driver/nvidia/gpus")
    return sorted(p.name for p in driver.iterdir()) if driver.is_dir() else []


def resolve_work(work: str = "auto") -> str:
    """Return the class of work a worker takes (``all``, ``cpu`` or ``gpu``; see the module doc).

    Raises
    ------
    InputError
        For a class not in :data:`WORK_CLASSES`.
    """
    from .settings import get_settings

    if work not in WORK_CLASSES:
        raise InputError(f"Unknown class of work {work!r}; choose from {', '.join(WORK_CLASSES)}.")
    if work != "auto":
        return work
    if visible_gpus():
        return "gpu"
    return "cpu" if get_settings().gpu_only else "all"


def pending_work(tables: list[str] | None = None, restriction: dict | None = None) -> dict:
    """Count the keys ready to compute (inputs present, not done, not failed) by class of work.

    Returns
    -------
    dict
        ``{"gpu": n, "cpu": m}``.
    """
    selected = select_tables(tables)
    typed = check_restriction(selected, restriction)
    counts = {"gpu": 0, "cpu": 0}
    for _name, table, part, kind in work_items(applicable(selected, typed)):
        todo = table.key_source
        for condition in (typed, part):
            if condition:
                todo = todo & condition
        todo = todo - table
        if table.jobs.is_declared:  # the job table's keys have another lineage than the table's
            todo = todo.restrict(dj.Not(table.jobs.errors.proj()), semantic_check=False)
        counts[kind] += len(todo)
    return counts


def select_tables(names: list[str] | None = None) -> dict:
    """Return the named computed tables (all when ``names`` is empty), in dependency order.

    Raises
    ------
    InputError
        Naming an unknown table and listing the known ones.
    """
    tables = computed_tables()
    if not names:
        return tables
    lowered = {n.lower(): n for n in tables}
    unknown = [n for n in names if n.split(".")[-1].lower() not in lowered]
    if unknown:
        raise InputError(f"Unknown table(s) {unknown}; choose from {list(tables)}.")
    wanted = {lowered[n.split(".")[-1].lower()] for n in names}
    return {name: table for name, table in tables.items() if name in wanted}


def check_restriction(tables: dict, restriction: dict | None) -> dict | None:
    """Check a restriction against the selected tables and convert its values to their types.

    Each attribute must belong to at least one selected table's key source (otherwise DataJoint
    would ignore it and the restriction would silently select everything), and each value must
    be valid for that attribute's type.

    Raises
    ------
    InputError
        Naming the unknown attribute (with the known ones) or the bad value.
    """
    if not restriction:
        return None
    known: dict = {}
    for table in tables.values():
        heading = table.key_source.heading
        for name in heading.names:
            known.setdefault(name, (table, name))
    typed = {}
    for name, value in restriction.items():
        if name not in known:
            raise InputError(
                f"No selected table has the attribute {name!r} (restriction {name}={value}); "
                f"known attributes: {sorted(known)}."
            )
        table, _ = known[name]
        typed.update(rules.check_key(table.key_source, {name: value}))
    return typed


def applicable(selected: dict, restriction: dict | None) -> dict:
    """Return the selected tables whose keys have every restricted attribute.

    A table without one of them has no key that matches (``subject=m1`` names no model
    training); DataJoint would ignore the attribute and select every key of that table.
    """
    if not restriction:
        return selected
    return {n: t for n, t in selected.items() if set(restriction) <= set(t.key_source.heading.names)}


def ensure_job_tables(tables: dict) -> None:
    """Declare missing job tables under a server-side lock (workers may start together)."""
    missing = [t for t in tables.values() if not t.jobs.is_declared]
    if missing:
        with database.declaration_lock("jobs"):
            for table in missing:
                if not table.jobs.is_declared:
                    table.jobs.declare()


# ------------------------------------------------------------------------------ reconnecting
def with_reconnect(action: Callable, *, on_reconnect: Callable | None = None, say=logger.warning):
    """Run ``action()``; when the database connection is lost, reconnect with backoff and run it again.

    The backoff doubles from 1 s to 30 s and gives up after :data:`RECONNECT_FOR` seconds with a
    :class:`~workflow_deeplabcut.errors.DatabaseError`. Each wait is logged on one line.
    """
    started = None
    attempt = 0
    while True:
        try:
            return action()
        except Exception as err:
            if not database.is_connection_error(err):
                raise
            started = started or time.monotonic()
            reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
            while True:
                attempt += 1
                wait = min(30.0, 2.0 ** (attempt - 1))
                if time.monotonic() - started + wait > RECONNECT_FOR:
                    raise DatabaseError(
                        f"The database stayed unreachable for {RECONNECT_FOR:.0f} s ({reason}); giving up. "
                        "Restart the worker when the server is back."
                    ) from None
                say(f"database connection lost ({reason}); reconnecting in {wait:.0f} s (attempt {attempt})")
                time.sleep(wait)
                try:
                    database.reconnect()
                except Exception as again:
                    if not database.is_connection_error(again):
                        raise
                    reason = str(again).strip().splitlines()[0][:200]
                    continue
                say(f"database connection restored after {attempt} attempt(s)")
                started, attempt = None, 0  # the next loss starts its own backoff
                break
            if on_reconnect is not None:
                on_reconnect()


# ------------------------------------------------------------------------------ workers
class WorkerSession:
    """Register this process in ``jobs.Worker`` and keep its heartbeat while it works.

    Use as a context manager around work done with job reservation. The heartbeat thread uses a
    connection of its own, renews the row every ``timeout / 6`` seconds and reconnects by itself.
    """

    def __init__(
        self,
        tables: list[str] | None = None,
        heartbeat_timeout: float = HEARTBEAT_TIMEOUT,
        work: str = "all",
    ):
        from .pipeline import jobs

        self.Worker = jobs.Worker
        self.Context = jobs.WorkerContext
        self.work = work
        self.token = uuid.uuid4().hex
        self.host = platform.node()
        self.pid = os.getpid()
        self.tables = ",".join(tables or [])
        self.interval = max(0.2, heartbeat_timeout / 6)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> WorkerSession:
        with_reconnect(self._register)
        self._thread = threading.Thread(target=self._beat, name="workflow-dlc-heartbeat", daemon=True)
        self._thread.start()
        return self

    def _register(self) -> None:
        now, _ = database.server_times()
        conn = database.connect()
        old = (
            self.Worker
            & f"state != 'running' AND heartbeat < '{now - dt.timedelta(days=7):%Y-%m-%d %H:%M:%S}'"
        )
        tokens = old.keys()
        if tokens:
            (self.Context & tokens).delete_quick()
            old.delete_quick()
        self.Worker.insert1(
            {
                "worker_token": self.token,
                "host": self.host[:255],
                "pid": self.pid,
                "started": now,
                "heartbeat": now,
                "state": "running",
                "db_user": conn.get_user()[:255],
                "tables": self.tables[:1000],
            },
            skip_duplicates=True,  # registering again after a lost connection
        )
        self.Context.insert1(
            {"worker_token": self.token, "work": self.work, **placement()}, skip_duplicates=True
        )

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        stopped = {"worker_token": self.token, "state": "stopped"}
        try:
            try:
                self.Worker.update1(stopped)
            except Exception as err:
                if not database.is_connection_error(err):
                    raise
                database.reconnect()  # one more try, not a wait: the process is ending
                self.Worker.update1(stopped)
        except Exception as err:  # the database is gone: the row goes stale by itself
            logger.warning("Could not mark worker %s stopped: %s", self.token[:8], err)

    def _beat(self) -> None:
        conn = None
        table = self.Worker.full_table_name
        while not self._stop.wait(self.interval):
            try:
                if conn is None:
                    conn = _new_connection()
                conn.query(
                    f"UPDATE {table} SET heartbeat = CURRENT_TIMESTAMP(3) WHERE worker_token = %s",
                    (self.token,),
                    reconnect=False,
                )
            except Exception as err:  # the server is down: try again at the next beat
                logger.debug("heartbeat failed: %s", err)
                conn = None
        if conn is not None:
            conn.close()

    def release_own(self, tables: dict) -> int:
        """Put back to pending every reservation this host and pid hold (we are between jobs)."""
        released = 0
        for table in tables.values():
            if not table.jobs.is_declared:
                continue
            for job in (table.jobs.reserved & {"host": self.host, "pid": self.pid}).to_dicts():
                released += _repend(table.jobs, job)
        return released


def placement() -> dict:
    """Return this process's GPUs and, under SLURM, its cluster and job (``1234_5`` for array tasks)."""
    env = os.environ
    job = env.get("SLURM_JOB_ID", "")
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        job = f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return {
        "gpus": ",".join(visible_gpus())[:255],
        "slurm_cluster": env.get("SLURM_CLUSTER_NAME", "")[:64] if job else "",
        "slurm_job": job[:64],
    }


def _new_connection() -> dj.Connection:
    """Open a second connection with DataJoint's settings (for the heartbeat thread)."""
    config = dj.config
    return dj.Connection(
        config["database.host"],
        config["database.user"],
        config["database.password"],
        config["database.port"],
        config["database.use_tls"],
    )


def _repend(jobs, job: dict, delay: float = 0.0) -> bool:
    """Put one job back to pending, if its row is still the one seen (a full job row).

    Workers recover and retry concurrently: the row is replaced only when it still has the
    status, owner and times that were read, so a job another worker has already put back (and
    perhaps reserved again) is left alone. Returns whether this call put it back.
    """
    key = {k: job[k] for k in jobs.primary_key}
    seen = {k: job[k] for k in ("status", "host", "pid", "connection_id", "reserved_time") if k in job}
    priority = jobs.connection._config.jobs.default_priority
    row = {**key, "status": "pending", "priority": priority}
    if delay > 0:
        row["scheduled_time"] = database.server_times()[0] + dt.timedelta(seconds=delay)
    with jobs.connection.transaction:
        if not (jobs & key & _unchanged(seen)).delete_quick(get_count=True):
            return False
        jobs.insert1(row)
    return True


def _unchanged(seen: dict):
    """Restrict to rows that still have the seen values (NULL as NULL)."""
    conditions = []
    for name, value in seen.items():
        if value is None:
            conditions.append(f"{name} IS NULL")
        else:
            conditions.append({name: value})
    return dj.AndList(conditions)


def recover_orphans(
    tables: list[str] | None = None,
    orphan_timeout: float | None = None,
    heartbeat_timeout: float = HEARTBEAT_TIMEOUT,
) -> int:
    """Put back to ``pending`` the reservations of workers that are gone.

    A reservation is orphaned when

    - its worker (``jobs.Worker``, matched by host, pid and start time) has stopped or was lost;
    - or the server restarted after it was made (connection ids start again, and MariaDB
      reuses them) and its worker's heartbeat is older than ``heartbeat_timeout`` (workers get
      that long after a restart to beat again); an unregistered reservation is then orphaned;
    - or, otherwise, the database connection that made it no longer exists;
    - or, with ``orphan_timeout``, it is older than that many seconds (a hung worker).

    Its transaction was rolled back by the server, so no partial row exists.

    Returns
    -------
    int
        How many jobs were put back.
    """
    from .pipeline import jobs as jobs_schema

    selected = [t for t in select_tables(tables).values() if t.jobs.is_declared]
    reserved = {t: t.jobs.reserved.to_dicts() for t in selected}
    recovered = 0
    if any(reserved.values()):
        now, server_start = database.server_times()
        live = database.live_connections()
        grace = (now - server_start).total_seconds() < heartbeat_timeout
        stale_before = now - dt.timedelta(seconds=heartbeat_timeout)
        workers = jobs_schema.Worker.to_dicts()
        for table, rows in reserved.items():
            for job in rows:
                key = {k: job[k] for k in table.primary_key}
                when = job["reserved_time"]
                owners = [
                    w
                    for w in workers
                    if w["host"] == job["host"]
                    and w["pid"] == job["pid"]
                    and (when is None or w["started"] <= when)
                ]
                owner = max(owners, key=lambda w: w["started"]) if owners else None
                if owner is not None and owner["state"] != "running":
                    gone, why = True, f"its worker {owner['worker_token'][:8]} {owner['state']}"
                elif when is None or when < server_start:
                    alive = owner is not None and (grace or owner["heartbeat"] >= stale_before)
                    gone, why = not alive, "the server restarted and its worker's heartbeat is stale"
                else:
                    gone, why = int(job["connection_id"] or 0) not in live, "its worker's connection is gone"
                if gone and _repend(table.jobs, job):
                    recovered += 1
                    logger.warning("Recovered %s of %s (%s)", key, table.__name__, why)
        if not grace:
            lost = (
                jobs_schema.Worker
                & "state = 'running'"
                & f"heartbeat < '{stale_before:%Y-%m-%d %H:%M:%S.%f}'"
            )
            for row in lost.keys():
                jobs_schema.Worker.update1({**row, "state": "lost"})
    if orphan_timeout:
        for table in selected:
            recovered += table.jobs.refresh(orphan_timeout=orphan_timeout, stale_timeout=0)["orphaned"]
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
                released += _repend(jobs, job)
    return released


# ------------------------------------------------------------------------------ retries
def _count_attempt(target: str, key: dict, message: str) -> int:
    """Record one more put-back of a failed job; return its retries so far."""
    from .pipeline import jobs as jobs_schema

    row_key = {"target": target, "key_hash": jobs_schema.key_hash(key)}
    existing = (jobs_schema.JobAttempt & row_key).to_dicts()
    retries = existing[0]["retries"] + 1 if existing else 1
    values = {
        **row_key,
        "retries": retries,
        "last_error": message[:2047],
        "key_text": jobs_schema.key_text(key)[:2047],
    }
    if existing:
        jobs_schema.JobAttempt.update1(values)
    else:
        jobs_schema.JobAttempt.insert1(values)
    return retries


def attempts(target: str, key: dict) -> int:
    """Return how many times a job has failed so far (1 for a first failure)."""
    from .pipeline import jobs as jobs_schema

    rows = (jobs_schema.JobAttempt & {"target": target, "key_hash": jobs_schema.key_hash(key)}).to_dicts()
    return (rows[0]["retries"] if rows else 0) + 1


def retry(
    tables: list[str] | None = None,
    restriction: dict | None = None,
    *,
    transient_only: bool = False,
    max_retries: int | None = None,
    delay: float = 0.0,
) -> int:
    """Put failed jobs back to ``pending``, counting the attempt.

    Parameters
    ----------
    tables : list of str, optional
        Which computed tables (default all).
    restriction : dict, optional
        Only the jobs matching this key (checked like ``run``'s).
    transient_only : bool
        Only errors with a transient cause (:func:`is_transient`).
    max_retries : int, optional
        Leave jobs that were already put back this many times.
    delay : float
        Seconds before the jobs may run; doubled for every earlier retry of the job.

    Returns
    -------
    int
        Jobs put back.
    """
    selected = select_tables(tables)
    restriction = check_restriction(selected, restriction)
    count = 0
    for name, table in applicable(selected, restriction).items():
        if not table.jobs.is_declared:
            continue
        errors = table.jobs.errors
        if restriction:  # by the keys that match (the restriction may name non-key attributes)
            errors = errors.restrict((table.key_source & restriction).proj(), semantic_check=False)
        for job in errors.to_dicts():
            message = job["error_message"] or ""
            if message.startswith(INTERRUPTED) or (transient_only and not is_transient(message)):
                continue
            key = {k: job[k] for k in table.primary_key}
            done = attempts(name, key) - 1
            if max_retries is not None and done >= max_retries:
                continue
            if not _repend(table.jobs, job, delay * 2**done):
                continue  # another worker put it back first
            _count_attempt(name, key, message)
            count += 1
            logger.warning("Retrying %s of %s (attempt %d): %s", key, name, done + 2, message[:200])
    return count


# ------------------------------------------------------------------------------ run
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
    max_retries: int = MAX_RETRIES,
) -> list[RunResult]:
    """Populate the computed tables in dependency order, collecting errors instead of stopping.

    A lost database connection is waited out (reconnect with backoff); a key that failed for a
    transient cause is tried again, up to ``max_retries`` times.

    Parameters
    ----------
    tables : list of str, optional
        Table names (default: all, see :func:`computed_tables`).
    restriction : dict, optional
        Restrict every table's keys, e.g. ``{"subject": "m1"}``; an attribute that no selected
        table has, or a value of the wrong type, is refused (:func:`check_restriction`), and
        tables without one of the attributes are left out (:func:`applicable`).
    reserve_jobs : bool
        Coordinate with other workers through the job tables (this process registers as a worker).
    display_progress : bool
        Show a progress bar per table.
    max_calls : int, optional
        At most this many ``make`` calls per table.
    max_retries : int
        Further attempts for a key whose error is transient.

    Returns
    -------
    list of RunResult
    """
    selected = select_tables(tables)
    typed = check_restriction(selected, restriction)
    selected = applicable(selected, typed)
    if not reserve_jobs:
        return [
            _run_table(name, table, typed, False, display_progress, max_calls, max_retries)
            for name, table in selected.items()
        ]
    ensure_job_tables(selected)
    with WorkerSession(tables):
        return [
            _run_table(name, table, typed, True, display_progress, max_calls, max_retries)
            for name, table in selected.items()
        ]


def _run_table(name, table, restriction, reserve, display_progress, max_calls, max_retries) -> RunResult:
    result = RunResult(name)
    restrictions = [restriction] if restriction else []
    # A 3D estimation is made from 2D estimations of the same table: those waiting for theirs
    # are populated again once this pass has made them.
    waiting = _waiting_3d() if name == "PoseEstimation" else []
    _populate(result, name, table, restrictions, reserve, display_progress, max_calls, max_retries)
    if waiting:
        followup = restrictions + [waiting]
        _populate(result, name, table, followup, reserve, display_progress, max_calls, max_retries)
    return result


def _waiting_3d() -> list[dict]:
    """Return the keys of the 3D pose estimations whose views are not all estimated yet."""
    from .pipeline import model, threed

    return (model.PoseEstimationTask & threed.TriangulationTask.waiting()).keys()


def _populate(result, name, table, restrictions, reserve, display_progress, max_calls, max_retries) -> None:
    """Populate, trying keys that failed for a transient cause again; add to ``result``."""
    for attempt in range(max_retries + 1):
        out = with_reconnect(
            lambda restrictions=restrictions: table.populate(
                *restrictions,
                reserve_jobs=reserve,
                suppress_errors=True,
                display_progress=display_progress,
                max_calls=max_calls,
            )
        )
        result.success += out["success_count"]
        errors = [(key, str(message)) for key, message in out["error_list"]]
        again = (
            [(key, message) for key, message in errors if is_transient(message)]
            if attempt < max_retries
            else []
        )
        result.errors.extend(error for error in errors if error not in again)
        if not again:
            break
        for key, message in again:
            if reserve:
                job = (table.jobs & {k: key[k] for k in table.primary_key}).to_dicts()
                if job and _repend(table.jobs, job[0]):
                    _count_attempt(name, key, message)
        logger.warning("%s: %d transient error(s); trying again (attempt %d)", name, len(again), attempt + 2)
        time.sleep(RETRY_DELAY * 2**attempt)
        restrictions = [[key for key, _ in again]]


# ------------------------------------------------------------------------------ status
def status(tables: list[str] | None = None) -> list[dict]:
    """Return, per computed table, how many keys are done, pending, reserved and failed.

    ``pending`` counts keys ready to compute (their inputs exist) that are neither done nor
    reserved; ``reserved`` lists who holds each reservation; ``errors`` lists each failed key
    with its message and how many times it failed (``attempts``).
    """
    rows = []
    owners = _owners()
    for name, table in select_tables(tables).items():
        key_source, jobs = _status_parts(table)
        todo = key_source - table
        declared = jobs.is_declared
        reserved = jobs.reserved.to_dicts() if declared else []
        errors = []
        for job in jobs.errors.to_dicts() if declared else []:
            key = {k: job[k] for k in table.primary_key}
            errors.append(
                {
                    "key": {k: _plain(v) for k, v in key.items()},
                    "message": job["error_message"],
                    "attempts": attempts(name, key),
                    "transient": is_transient(job["error_message"]),
                    "when": _plain(job.get("completed_time") or job.get("reserved_time")),
                }
            )
        rows.append(
            {
                "table": name,
                "done": len(table()),
                "pending": max(len(todo) - len(reserved) - len(errors), 0),
                "reserved": len(reserved),
                "reserved_by": [
                    {
                        "key": {k: _plain(job[k]) for k in table.primary_key},
                        "host": job["host"],
                        "pid": job["pid"],
                        "since": _plain(job["reserved_time"]),
                        **owners.get((job["host"], job["pid"]), {"worker": "", "slurm_job": ""}),
                    }
                    for job in reserved
                ],
                "errors": errors,
                "warnings": [
                    {"key": {k: _plain(v) for k, v in w.key.items()}, "message": w.message}
                    for w in quality.collect(only=name)
                ],
            }
        )
    return rows


_STATUS_PARTS: dict = {}


def _status_parts(table) -> tuple:
    """Return ``(key_source, jobs)`` of a computed table, built once per connection.

    DataJoint builds both anew at every attribute access (heading and dependency queries,
    20-40 ms per table), which made ``status`` and the dashboard's overview slow. A jobs
    table is kept only once it exists.
    """
    key = (id(table.connection), table.full_table_name)
    parts = _STATUS_PARTS.get(key)
    if parts is None:
        parts = (table.key_source, table.jobs)
        if parts[1].is_declared:
            _STATUS_PARTS[key] = parts
    return parts


def workers() -> list[dict]:
    """Return the registered workers that run now.

    Each with its host, pid, start, seconds since its heartbeat, tables, class of work, GPUs
    and SLURM job (empty outside SLURM).
    """
    from .pipeline import jobs as jobs_schema

    now, _ = database.server_times()
    contexts = {c["worker_token"]: c for c in jobs_schema.WorkerContext.to_dicts()}
    rows = []
    for w in (jobs_schema.Worker & "state = 'running'").to_dicts():
        context = contexts.get(w["worker_token"], {})
        rows.append(
            {
                "worker": w["worker_token"][:8],
                "host": w["host"],
                "pid": w["pid"],
                "started": _plain(w["started"]),
                "heartbeat_age_s": round((now - w["heartbeat"]).total_seconds(), 1),
                "tables": w["tables"] or "all",
                "work": context.get("work", "all"),
                "gpus": context.get("gpus", ""),
                "slurm_job": context.get("slurm_job", ""),
            }
        )
    return rows


def _owners() -> dict:
    """Map (host, pid) of each running worker to its short token and SLURM job."""
    return {(w["host"], w["pid"]): {"worker": w["worker"], "slurm_job": w["slurm_job"]} for w in workers()}


def _plain(value):
    return value.isoformat(sep=" ") if hasattr(value, "isoformat") else value


# ------------------------------------------------------------------------------ the worker loop
@dataclass
class WorkerResult:
    """What a worker did before it stopped."""

    done: int = 0
    failed: int = 0  # jobs left in error by this worker (after automatic retries)
    recovered: int = 0
    interrupted: bool = False
    work: str = "all"  # the class of work it took (see resolve_work)
    by_work: dict = field(default_factory=lambda: {"gpu": 0, "cpu": 0})  # jobs done, by class


def worker(
    tables: list[str] | None = None,
    restriction: dict | None = None,
    *,
    sleep: float = 30.0,
    max_jobs: int | None = None,
    once: bool = False,
    orphan_timeout: float | None = None,
    heartbeat_timeout: float = HEARTBEAT_TIMEOUT,
    max_retries: int = MAX_RETRIES,
    retry_delay: float = RETRY_DELAY,
    work: str = "auto",
    report=None,
) -> WorkerResult:
    """Process jobs until stopped: the loop a cluster node runs.

    Each round recovers orphaned jobs, puts transient failures back (up to ``max_retries``
    times, after ``retry_delay`` seconds, doubled each time), then populates every table with
    job reservation. With ``once`` it stops when a round finds nothing to do and no retry is
    scheduled; otherwise it sleeps and tries again. A lost database connection is waited out.
    SIGTERM and SIGINT abort the job in progress, put it back to ``pending`` and return.

    Parameters
    ----------
    tables : list of str, optional
        Which tables to work on (default all).
    restriction : dict, optional
        Only keys matching this (checked like ``run``'s), e.g. ``{"subject": "m1"}``.
    sleep : float
        Seconds between rounds that found no work.
    max_jobs : int, optional
        Stop after this many successful jobs.
    once : bool
        Stop when there is no work left instead of waiting for more.
    orphan_timeout : float, optional
        Also recover reservations older than this (seconds).
    heartbeat_timeout : float
        Seconds without a heartbeat after which a worker counts as gone (after a server restart).
    max_retries, retry_delay
        Automatic retries of transient failures.
    work : str
        Which class of work to take: ``auto`` (default), ``all``, ``cpu`` or ``gpu`` (see the
        module docstring). A ``cpu`` or ``gpu`` worker with ``once`` also waits while other
        workers hold CPU jobs, since their results may make new work for it.
    report : callable, optional
        Called with a message after each round.

    Returns
    -------
    WorkerResult
    """
    say = report or (lambda message: None)
    selected = select_tables(tables)
    typed = with_reconnect(lambda: check_restriction(selected, restriction), say=say)
    result = WorkerResult(work=resolve_work(work))
    gpus = visible_gpus()
    say(f"worker: takes {result.work} work; GPUs: {','.join(gpus) if gpus else 'none'}")
    if result.work == "gpu" and not gpus:
        say("worker: no GPU is visible (CUDA_VISIBLE_DEVICES, NVIDIA driver): GPU work runs on the CPU")

    previous = {s: signal.signal(s, stop_handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        with_reconnect(lambda: ensure_job_tables(selected), say=say)
        with WorkerSession(tables, heartbeat_timeout, result.work) as me:
            with_reconnect(lambda: me.release_own(selected), say=say)
            while True:
                worked, waiting = with_reconnect(
                    lambda: _round(
                        selected,
                        typed,
                        result,
                        max_jobs,
                        orphan_timeout,
                        heartbeat_timeout,
                        max_retries,
                        retry_delay,
                    ),
                    on_reconnect=lambda: me.release_own(selected),
                    say=say,
                )
                if not worked and once and not waiting and result.work != "all":
                    waiting = with_reconnect(lambda: _work_may_come(selected, typed, me), say=say) and min(
                        sleep, 10.0
                    )
                say(
                    f"round: {worked} job(s) processed, {result.recovered} recovered, "
                    f"{result.done} done in all"
                )
                if max_jobs is not None and result.done >= max_jobs:
                    break
                if not worked:
                    if once and not waiting:
                        break
                    time.sleep(min(sleep, waiting) if waiting else sleep)
            result.failed = with_reconnect(lambda: _failed_by(selected, me), say=say)
    except SystemExit:
        released = release_interrupted(tables)
        result.interrupted = True
        say(f"stopped: {result.done} job(s) done, {released} interrupted job(s) put back to pending")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return result


def _round(
    selected, restriction, result, max_jobs, orphan_timeout, heartbeat_timeout, max_retries, retry_delay
):
    """Recover, retry transient failures, populate; return (jobs processed, seconds to the next retry).

    A ``gpu`` worker makes a first pass over GPU work only and, when it found none, a second
    over everything; a ``cpu`` worker passes over CPU work only; an ``all`` worker over all.
    """
    names = list(selected)
    result.recovered += recover_orphans(names, orphan_timeout, heartbeat_timeout)
    retry(names, restriction, transient_only=True, max_retries=max_retries, delay=retry_delay)
    items = work_items(applicable(selected, restriction))
    passes = {
        "all": [items],
        "cpu": [[i for i in items if i[3] == "cpu"]],
        "gpu": [[i for i in items if i[3] == "gpu"], items],
    }[result.work]
    worked = 0
    for chosen in passes:
        for _name, table, part, kind in chosen:
            remaining = None if max_jobs is None else max_jobs - result.done
            if remaining is not None and remaining <= 0:
                break
            if kind == "gpu" and "deeplabcut" not in sys.modules and _ready(table, restriction, part):
                _preload_deeplabcut()
            out = table.populate(
                *[r for r in (restriction, part) if r],
                reserve_jobs=True,
                suppress_errors=True,
                display_progress=False,
                max_calls=remaining,
            )
            result.done += out["success_count"]
            result.by_work[kind] += out["success_count"]
            worked += out["success_count"] + len(out["error_list"])
        if worked:
            break
    return worked, _next_scheduled(selected)


def stop_handler(signum, frame) -> None:
    """Stop the worker on SIGTERM/SIGINT by raising SystemExit, but never in the middle of an import.

    An exception raised while a C extension (torch) initialises can abort the whole process
    (exit by SIGABRT, no clean-up); inside an import the signal is sent again 0.5 s later.
    """
    if _importing(frame):
        threading.Timer(0.5, os.kill, (os.getpid(), signum)).start()
        return
    raise SystemExit(f"signal {signum}")  # DataJoint records it as "SystemExit: ..."


def _importing(frame) -> bool:
    """Whether ``frame`` (where a signal arrived) is inside an import."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _ready(table, restriction, part) -> bool:
    """Whether some key of ``table`` (within the restrictions) waits to be computed."""
    todo = table.key_source
    for condition in (restriction, part):
        if condition:
            todo = todo & condition
    return bool(todo - table)


def _preload_deeplabcut() -> None:
    """Import DeepLabCut (and torch) before a GPU job is reserved, not inside its ``make``.

    Inside ``populate`` DataJoint's own SIGTERM handler raises at once, and an exception in the
    middle of torch's import can abort the process; out here :func:`worker`'s handler waits for
    the import to finish.
    """
    from . import dlc

    dlc._import_deeplabcut()


def _work_may_come(selected, restriction, me) -> bool:
    """Whether a ``cpu``/``gpu`` worker that found nothing should wait rather than stop.

    It waits while another worker holds a CPU job (short, and its result may be this
    worker's next input, e.g. a probed recording for inference). It never waits for GPU jobs,
    which may last hours: their results are post-processed by the GPU workers themselves (their
    second pass) or by the next submission.
    """
    for _name, table, part, kind in work_items(applicable(selected, restriction)):
        if kind != "cpu" or not table.jobs.is_declared:
            continue
        held = table.jobs.reserved & restriction if restriction else table.jobs.reserved
        keys = [
            {k: job[k] for k in table.primary_key}
            for job in held.to_dicts()
            if (job["host"], job["pid"]) != (me.host, me.pid)
        ]
        if keys and (part is None or table.key_source & part & keys):
            return True
    return False


def _next_scheduled(selected) -> float | None:
    """Seconds until the earliest pending job that is scheduled later (a retry), or None."""
    now, _ = database.server_times()
    soonest = None
    for table in selected.values():
        if not table.jobs.is_declared:
            continue
        later = table.jobs.pending & f"scheduled_time > '{now:%Y-%m-%d %H:%M:%S.%f}'"
        for job in later.to_dicts():
            wait = max((job["scheduled_time"] - now).total_seconds(), 0.1)
            soonest = wait if soonest is None else min(soonest, wait)
    return soonest


def _failed_by(selected, me) -> int:
    failed = 0
    for table in selected.values():
        if table.jobs.is_declared:
            errors = (table.jobs.errors & {"host": me.host, "pid": me.pid}).to_dicts()
            failed += sum(1 for job in errors if not job["error_message"].startswith(INTERRUPTED))
    return failed
