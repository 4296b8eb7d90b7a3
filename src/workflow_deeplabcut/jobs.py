"""Schema ``jobs``: the workers that process the pipeline, and the failed attempts of its jobs.

DataJoint's own job tables (``~~<table>``) hold each key's status and reservation (host, pid,
connection id). These two tables add what recovery and retries need beyond that:

- :class:`Worker`: one row per worker process (``worker``, ``run --reserve``), with a token, its
  host and pid, when it started and a heartbeat its background thread renews. After a database
  restart connection ids mean nothing (MariaDB reuses them), and the heartbeat tells which
  reservations still have a living owner.
- :class:`JobAttempt`: how many times a job failed and was put back (automatically for
  transient causes, or by ``workflow-deeplabcut retry``), shown by ``status``.
- :class:`WorkerContext`: what kind of work a worker takes (``cpu``, ``gpu`` or ``all``), the
  GPUs it was given and, under SLURM, its job, so ``status`` can say which job holds which
  reservation.
- :class:`Submission`: the SLURM job arrays of workers that ``workflow-deeplabcut submit``
  submitted, with the last state seen of their tasks.
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


@schema
class WorkerContext(dj.Manual):
    definition = """
    # where a worker runs and what it takes (one row per jobs.Worker row, same token)
    worker_token: char(32)
    ---
    work: enum('all', 'cpu', 'gpu')  # cpu: no GPU work; gpu: GPU work first, then the rest
    gpus="": varchar(255)  # the GPUs it may use (CUDA_VISIBLE_DEVICES), empty: none
    slurm_cluster="": varchar(64)
    slurm_job="": varchar(64)  # e.g. 1234_5 (array job 1234, task 5); empty outside SLURM
    """


@schema
class Submission(dj.Manual):
    definition = """
    # a SLURM job array of workers submitted by `workflow-deeplabcut submit`
    slurm_cluster: varchar(64)
    slurm_job_id: int64  # the array's job id
    ---
    submitted: datetime(3)  # server time
    submitted_by: varchar(255)  # user@host
    work: enum('all', 'cpu', 'gpu')
    workers: int32  # array tasks
    gpus_per_worker: int32
    partition: varchar(255)
    time_limit="": varchar(32)
    tables="": varchar(1000)  # --table options (empty: every table)
    restriction="": varchar(2047)  # --key options, as JSON
    script: varchar(1023)  # the sbatch script's path
    log: varchar(1023)  # where each task writes its output (a file name pattern of sbatch)
    states="": varchar(2047)  # last states seen, as JSON {task: state}
    finished: bool  # every task has ended
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


__all__ = ["schema", "Worker", "JobAttempt", "WorkerContext", "Submission", "key_hash", "key_text"]
