"""Schema ``jobs``: the workers that process the pipeline, and the failed attempts of its jobs.

DataJoint's own job tables (``~~<table>``) hold each key's status and reservation (host, pid,
connection id). These two tables add what recovery and retries need beyond that:

- :class:`Worker`: one row per worker process (``worker``, ``run --reserve``), with a token, its
  host and pid, when it started and a heartbeat its background thread renews. After a database
  restart connection ids mean nothing (MariaDB reuses them), and the heartbeat tells which
  reservations still have a living owner.
- :class:`JobAttempt`: how many times a job failed and was put back (automatically for
  transient causes, or by ``workflow-deeplabcut retry``), shown by ``status``.
"""

from __future__ import annotations

import hashlib
import json

import datajoint as dj

schema = dj.Schema()


@schema
class Worker(dj.Manual):
    definition = """
    # a process that computes jobs with DataJoint's job reservation
    worker_token: char(32)  # random, one per process
    ---
    host: varchar(255)
    pid: int32
    started: datetime(3)  # server time
    heartbeat: datetime(3)  # server time of the last sign of life
    state: enum('running', 'stopped', 'lost')
    db_user="": varchar(255)
    tables="": varchar(1000)  # what it works on (empty: every table)
    """


@schema
class JobAttempt(dj.Manual):
    definition = """
    # failures of one job of a computed table, across retries
    target: varchar(64)  # the computed table's class name, e.g. PoseEstimation
    key_hash: char(32)  # MD5 of the job's primary key (canonical JSON)
    ---
    retries: int32  # times the failed job was put back to pending
    last_error="": varchar(2047)
    key_text="": varchar(2047)  # the primary key, readable
    """


def key_hash(key: dict) -> str:
    """Return the MD5 of a primary key's canonical JSON (dates as ISO text)."""
    return hashlib.md5(key_text(key).encode()).hexdigest()


def key_text(key: dict) -> str:
    """Return a primary key as canonical, readable JSON."""
    return json.dumps(
        {k: v.isoformat(sep=" ") if hasattr(v, "isoformat") else v for k, v in sorted(key.items())},
        sort_keys=True,
        default=str,
    )


__all__ = ["schema", "Worker", "JobAttempt", "key_hash", "key_text"]
