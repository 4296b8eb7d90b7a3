"""The SLURM adapter: submit job arrays of workers, read their state, cancel them.

``submit`` writes one sbatch script per class of worker and submits it as a job array of
``workflow-deeplabcut worker --once`` tasks:

- without GPU workers, one array of ``all`` workers (they take every job);
- with ``gpu_workers``, an array of ``gpu`` workers (``--gres=gpu:N``; GPU work first, then the
  rest) beside an array of ``cpu`` workers (never GPU work): two classes from one submission.

Each script carries the environment explicitly: the virtual environment's Python, the folder
``submit`` ran in (where DataJoint finds ``datajoint.json``), the workflow's settings (prefix,
data roots, store, database mode) and DataJoint's host, port, backend and user. The password is
never written: the job inherits it from the submitting shell (``--export=ALL``) or reads it from
``.secrets/`` as any process does. Each array is recorded in ``jobs.Submission``, so
``status`` shows its tasks' states (``squeue``, then ``scontrol``, then ``sacct``) from any
machine of the cluster, and ``cancel`` finds it.

Before anything is submitted, what workers on other nodes could not reach is refused: the
embedded database (a socket on this machine), a database host that is this machine's loopback,
and data folders or the Python environment on a local file system. Partitions made only of
this machine skip those checks.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import logging
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigurationError, InputError, SchedulerError

logger = logging.getLogger(__name__)

COMMANDS = ("sbatch", "squeue", "scancel", "sinfo", "scontrol")
#: States after which a task runs no more.
FINAL_STATES = {
    "BOOT_FAIL",
    "CANCELLED",
    "COMPLETED",
    "DEADLINE",
    "FAILED",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "PREEMPTED",
    "REVOKED",
    "SPECIAL_EXIT",
    "TIMEOUT",
}
#: SLURM's time formats: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS.
TIME_PATTERN = re.compile(r"^(?:\d+-\d+(?::\d+(?::\d+)?)?|\d+(?::\d+(?::\d+)?)?)$")
MEMORY_PATTERN = re.compile(r"^\d+[KMGT]?$", re.IGNORECASE)
#: File systems that every node of a cluster can mount as the same tree.
SHARED_FILESYSTEMS = {
    "afs",
    "beegfs",
    "ceph",
    "cephfs",
    "cifs",
    "fuse.beegfs",
    "fuse.ceph",
    "fuse.glusterfs",
    "fuse.juicefs",
    "fuse.sshfs",
    "gfs2",
    "glusterfs",
    "gpfs",
    "lustre",
    "nfs",
    "nfs4",
    "ocfs2",
    "panfs",
    "smb3",
    "smbfs",
    "wekafs",
}
LOOPBACK = re.compile(r"^(?:localhost|localhost\.localdomain|ip6-localhost|127(?:\.\d+){3}|::1)$")
#: The worker's sleep between rounds when it waits for other workers' results.
WORKER_SLEEP = 10


# ------------------------------------------------------------------------------ SLURM commands
def require() -> None:
    """Check that SLURM's commands are on PATH.

    Raises
    ------
    ConfigurationError
        Naming the missing commands and where to run ``submit``.
    """
    missing = [c for c in COMMANDS if shutil.which(c) is None]
    if missing:
        raise ConfigurationError(
            f"SLURM is not available here: {', '.join(missing)} not on PATH. Run this on a login "
            "node of the cluster, where `sbatch` works (some clusters need `module load slurm`)."
        )


def _run(args: list[str], *, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        require()
        raise
    except subprocess.TimeoutExpired as err:
        raise SchedulerError(
            f"`{shlex.join(args)}` did not answer in {timeout:.0f} s; is slurmctld up?"
        ) from err
    if check and proc.returncode:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise SchedulerError(
            f"`{shlex.join(args)}` failed (exit {proc.returncode}): {' '.join(detail)[:500]}"
        )
    return proc


def cluster_name() -> str:
    """Return the cluster's name (``ClusterName`` of slurm.conf)."""
    for line in _run(["scontrol", "show", "config"]).stdout.splitlines():
        name, _, value = line.partition("=")
        if name.strip() == "ClusterName":
            return value.strip()
    return ""


def partitions() -> dict[str, dict]:
    """Return the cluster's partitions: name → ``{"nodes": [...], "default": bool}``."""
    found: dict[str, dict] = {}
    for line in _run(["sinfo", "-h", "-a", "-N", "-o", "%P|%N"]).stdout.splitlines():
        name, _, node = line.strip().partition("|")
        if not name:
            continue
        entry = found.setdefault(name.rstrip("*"), {"nodes": [], "default": False})
        entry["default"] |= name.endswith("*")
        if node and node not in entry["nodes"]:
            entry["nodes"].append(node)
    return found


def check_partition(name: str | None, known: dict[str, dict]) -> str:
    """Return the partition to use (the default one for None).

    Raises
    ------
    InputError
        For a partition the cluster does not have, listing those it has.
    """
    if name is None:
        defaults = [p for p, entry in known.items() if entry["default"]]
        if not defaults:
            raise InputError(
                f"The cluster has no default partition; choose one with --partition ({sorted(known)})."
            )
        return defaults[0]
    if name not in known:
        raise InputError(f"Unknown partition {name!r}; the cluster has {sorted(known)}.")
    return name


# ------------------------------------------------------------------------------ reachability
def _this_host(node: str) -> bool:
    names = {socket.gethostname(), socket.getfqdn(), os.uname().nodename}
    names |= {n.split(".")[0] for n in names}
    return node in names or node.split(".")[0] in names


def filesystem(path: Path) -> str:
    """Return the type of the file system that holds ``path`` (from /proc/mounts)."""
    path = Path(path).resolve()
    while not path.exists() and path != path.parent:
        path = path.parent
    best, kind = "", "unknown"
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return kind
    for line in mounts:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        if (str(path) == point or str(path).startswith(point.rstrip("/") + "/")) and len(point) >= len(best):
            best, kind = point, fields[2]
    return kind


def check_reachable(partition: str, nodes: list[str], *, assume_shared: bool = False) -> None:
    """Refuse a configuration that workers on the partition's other nodes could not reach.

    Parameters
    ----------
    partition, nodes
        The partition and its nodes; when every node is this machine, nothing is checked.
    assume_shared : bool
        Trust that the data folders and the environment are the same paths on every node
        (e.g. a bind mount of a kind not recognised); the database is checked anyway.

    Raises
    ------
    ConfigurationError
        Listing every problem and its fix.
    """
    import datajoint as dj

    from . import database
    from .settings import get_settings

    others = [n for n in nodes if not _this_host(n)]
    if not others:
        return
    settings = get_settings()
    problems = []
    if database.uses_embedded(settings):
        problems.append(
            "the database is the embedded PostgreSQL, a socket on this machine only: use a "
            "database server that every node reaches (DJ_HOST/DJ_PORT/DJ_BACKEND or datajoint.json)"
        )
    else:
        host = str(dj.config["database.host"] or "")
        if host.startswith("/") or LOOPBACK.match(host):
            problems.append(
                f"the database host {host!r} is this machine itself: give the server's network "
                "name or address (DJ_HOST or datajoint.json)"
            )
    if not assume_shared:
        paths = [("data root", root) for root in settings.root_data_dirs]
        store = (dj.config.stores.get(database.STORE) or {}).get("location") or settings.store_dir
        paths += [
            ("processed-data folder", settings.processed_data_dir),
            ("store", Path(store)),
            ("Python environment", Path(sys.prefix)),
        ]
        for label, path in paths:
            kind = filesystem(path)
            if kind not in SHARED_FILESYSTEMS:
                problems.append(
                    f"the {label} {path} is on a local file system ({kind}): put it on storage "
                    "every node mounts at the same path (NFS, Lustre, GPFS, ...)"
                )
    if problems:
        extra = (
            "" if assume_shared else " (or pass --assume-shared if those paths are the same on every node)"
        )
        raise ConfigurationError(
            f"Workers on partition {partition!r} may run on other nodes ({', '.join(others[:5])}), "
            f"which could not reach what this machine uses: {'; '.join(problems)}. Nothing was "
            f"submitted; fix the settings{extra}, or choose a partition of this machine only."
        )


# ------------------------------------------------------------------------------ scripts
@dataclass
class Request:
    """What to submit (the options of ``workflow-deeplabcut submit``)."""

    workers: int = 1
    gpu_workers: int = 0
    gpus_per_worker: int = 1
    partition: str | None = None
    gpu_partition: str | None = None
    time: str | None = None
    cpus: int | None = None
    mem: str | None = None
    tables: list[str] = field(default_factory=list)
    restriction: dict = field(default_factory=dict)
    options: list[str] = field(default_factory=list)  # extra sbatch options, after the settings'
    assume_shared: bool = False

    def check(self) -> None:
        """Refuse impossible values before SLURM sees them.

        Raises
        ------
        InputError
            Naming the option and a valid form.
        """
        if self.workers < 0 or self.gpu_workers < 0 or self.workers + self.gpu_workers == 0:
            raise InputError("Ask for at least one worker (--workers N and/or --gpu-workers N).")
        if self.gpu_workers and self.gpus_per_worker < 1:
            raise InputError("--gpus-per-worker must be at least 1 for GPU workers.")
        if self.time is not None and not TIME_PATTERN.match(self.time):
            raise InputError(
                f"--time {self.time!r} is not a SLURM time: use minutes, HH:MM:SS or "
                "D-HH:MM:SS (e.g. 2:00:00)."
            )
        if self.mem is not None and not MEMORY_PATTERN.match(self.mem):
            raise InputError(f"--mem {self.mem!r} is not a SLURM size: use e.g. 16G or 8000M.")
        if self.cpus is not None and self.cpus < 1:
            raise InputError("--cpus must be at least 1.")
        for option in self.options:
            if not option.startswith("-") or "\n" in option:
                raise InputError(f"{option!r} is not an sbatch option (e.g. --account=mylab).")


def _minutes(limit: str) -> float:
    days, _, rest = limit.rpartition("-") if "-" in limit else ("0", "", limit)
    parts = [int(p) for p in rest.split(":")]
    if "-" in limit:  # D-HH[:MM[:SS]]
        hours, minutes, seconds = (parts + [0, 0])[:3]
    elif len(parts) == 3:
        hours, minutes, seconds = parts
    elif len(parts) == 2:
        hours, minutes, seconds = 0, *parts
    else:
        hours, minutes, seconds = 0, parts[0], 0
    return int(days or 0) * 1440 + hours * 60 + minutes + seconds / 60


def environment() -> dict[str, str]:
    """Return the variables a worker needs to see this process's database and files (no password)."""
    import datajoint as dj

    from . import database
    from .settings import get_settings

    settings = get_settings()
    embedded = database.uses_embedded(settings)
    env = {
        "WORKFLOW_DLC_PREFIX": settings.prefix,
        "WORKFLOW_DLC_ROOT_DATA_DIR": os.pathsep.join(str(r) for r in settings.root_data_dirs),
        "WORKFLOW_DLC_PROCESSED_DIR": str(settings.processed_data_dir),
        "WORKFLOW_DLC_STORE_DIR": str(settings.store_dir),
        "WORKFLOW_DLC_DATABASE": "embedded" if embedded else "server",
        "WORKFLOW_DLC_GPU_ONLY": "true" if settings.gpu_only else "false",
    }
    if embedded:
        env["WORKFLOW_DLC_EMBEDDED_DIR"] = str(settings.embedded_dir)
    else:
        for name, var in (
            ("database.host", "DJ_HOST"),
            ("database.port", "DJ_PORT"),
            ("database.backend", "DJ_BACKEND"),
            ("database.user", "DJ_USER"),
        ):
            value = dj.config[name]
            if value not in (None, ""):
                env[var] = str(value)
    return env


def script(
    request: Request,
    *,
    work: str,
    count: int,
    partition: str,
    name: str,
    log: str,
    env: dict[str, str],
    options: tuple[str, ...] = (),
) -> str:
    """Return the sbatch script of one array of ``count`` workers of class ``work``."""
    lines = [
        "#!/bin/bash",
        "# Written by `workflow-deeplabcut submit`: a job array of pipeline workers.",
        f"#SBATCH --job-name={name}",
        f"#SBATCH --array=0-{count - 1}",
        f"#SBATCH --partition={partition}",
        f"#SBATCH --output={log}",
        "#SBATCH --export=ALL",
    ]
    if request.time:
        lines.append(f"#SBATCH --time={request.time}")
        if _minutes(request.time) >= 10:  # time to put the job in progress back before the kill
            lines.append("#SBATCH --signal=B:TERM@120")
    if request.cpus:
        lines.append(f"#SBATCH --cpus-per-task={request.cpus}")
    if request.mem:
        lines.append(f"#SBATCH --mem={request.mem}")
    if work == "gpu":
        lines.append(f"#SBATCH --gres=gpu:{request.gpus_per_worker}")
    lines += [f"#SBATCH {o}" for o in (*options, *request.options)]
    worker = [sys.executable, "-m", "workflow_deeplabcut.cli", "worker", "--once", "--work", work]
    worker += ["--sleep", str(WORKER_SLEEP)]
    for table in request.tables:
        worker += ["--table", table]
    for attr, value in request.restriction.items():
        worker += ["--key", f"{attr}={value}"]
    lines += ["", "set -eo pipefail", f"cd {shlex.quote(os.getcwd())}"]
    if sys.prefix != sys.base_prefix and (Path(sys.prefix) / "bin" / "activate").exists():
        lines.append(f"source {shlex.quote(str(Path(sys.prefix) / 'bin' / 'activate'))}")
    lines += [f"export {var}={shlex.quote(value)}" for var, value in env.items()]
    lines += [
        "# exec: the worker itself receives SLURM's signals (SIGTERM puts its job back)",
        "exec " + shlex.join(worker),
        "",
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------ submit
def plan(request: Request) -> list[dict]:
    """Check everything and return the arrays to submit, without submitting.

    Returns
    -------
    list of dict
        One per array: ``work``, ``count``, ``partition``, ``script`` (text), ``path``
        (where it will be written), ``log``, ``pending`` (ready jobs of its class).

    Raises
    ------
    ConfigurationError, InputError
        No SLURM, an unknown partition, a configuration other nodes could not reach, a bad
        option. Nothing is written.
    """
    from . import processing
    from .settings import get_settings

    request.check()
    require()
    known = partitions()
    cpu_partition = check_partition(request.partition, known)
    gpu_partition = check_partition(request.gpu_partition or request.partition, known)
    if request.workers:
        check_reachable(cpu_partition, known[cpu_partition]["nodes"], assume_shared=request.assume_shared)
    if request.gpu_workers:
        check_reachable(gpu_partition, known[gpu_partition]["nodes"], assume_shared=request.assume_shared)

    settings = get_settings()
    processing.select_tables(request.tables)
    pending = processing.pending_work(request.tables or None, request.restriction or None)
    env = environment()
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    folder = settings.processed_data_dir / "slurm"
    short = settings.prefix.rstrip("_")[:20]
    arrays = []
    if request.gpu_workers:
        classes = [("gpu", request.gpu_workers, gpu_partition), ("cpu", request.workers, cpu_partition)]
    else:
        classes = [("all", request.workers, cpu_partition)]
    for work, count, partition in classes:
        if not count:
            continue
        name = f"wdlc-{short}-{work}"
        log = str(folder / "logs" / f"{name}-%A_%a.out")
        text = script(
            request,
            work=work,
            count=count,
            partition=partition,
            name=name,
            log=log,
            env=env,
            options=settings.slurm_options,
        )
        pending_here = pending["gpu"] + pending["cpu"] if work in ("all", "gpu") else pending["cpu"]
        arrays.append(
            {
                "work": work,
                "count": count,
                "partition": partition,
                "script": text,
                "path": folder / f"{stamp}-{work}.sbatch",
                "log": log,
                "pending": pending_here,
            }
        )
    return arrays


def submit(request: Request, *, dry_run: bool = False) -> list[dict]:
    """Submit the arrays of :func:`plan` with ``sbatch`` and record them in ``jobs.Submission``.

    With ``dry_run`` nothing is written or submitted. Without any ready job, nothing is
    submitted either (each array's ``job_id`` is then None).

    Returns
    -------
    list of dict
        :func:`plan`'s arrays, each with ``job_id`` (None when not submitted).
    """
    from . import database
    from .pipeline import jobs

    arrays = plan(request)
    nothing = sum(a["pending"] for a in arrays) == 0
    for array in arrays:
        array["job_id"] = None
    if dry_run or nothing:
        return arrays
    cluster = cluster_name()
    for array in arrays:
        array["path"].parent.mkdir(parents=True, exist_ok=True)
        Path(array["log"]).parent.mkdir(parents=True, exist_ok=True)
        array["path"].write_text(array["script"])
        out = _run(["sbatch", "--parsable", str(array["path"])]).stdout.strip()
        job_id = int(out.split(";")[0])
        array["job_id"] = job_id
        jobs.Submission.insert1(
            {
                "slurm_cluster": cluster[:64],
                "slurm_job_id": job_id,
                "submitted": database.server_times()[0],
                "submitted_by": f"{getpass.getuser()}@{socket.gethostname()}"[:255],
                "work": array["work"],
                "workers": array["count"],
                "gpus_per_worker": request.gpus_per_worker if array["work"] == "gpu" else 0,
                "partition": array["partition"][:255],
                "time_limit": (request.time or "")[:32],
                "tables": ",".join(request.tables)[:1000],
                "restriction": json.dumps(request.restriction, default=str)[:2047],
                "script": str(array["path"])[:1023],
                "log": array["log"][:1023],
                "states": "",
                "finished": False,
            }
        )
    return arrays


# ------------------------------------------------------------------------------ state
def _task_states(job_ids: list[int]) -> dict[int, dict[str, dict]]:
    """Ask SLURM for each array's tasks: job id → {task: {"state", "node", "elapsed", "reason"}}.

    ``squeue`` (which keeps finished jobs for ``MinJobAge``) first, then ``scontrol`` for jobs
    it no longer lists, then ``sacct`` where accounting runs. Jobs SLURM no longer knows are
    left out.
    """
    found: dict[int, dict[str, dict]] = {}
    if not job_ids:
        return found
    fmt = "%F|%K|%T|%N|%M|%r"
    proc = _run(
        ["squeue", "-h", "-r", "-t", "all", "-j", ",".join(map(str, job_ids)), "-o", fmt], check=False
    )
    lines = proc.stdout.splitlines() if proc.returncode == 0 else []
    if proc.returncode:  # one unknown id fails the whole call: ask one at a time
        for job in job_ids:
            single = _run(["squeue", "-h", "-r", "-t", "all", "-j", str(job), "-o", fmt], check=False)
            lines += single.stdout.splitlines() if single.returncode == 0 else []
    for line in lines:
        array, task, state, node, elapsed, reason = (line.split("|") + [""] * 6)[:6]
        if not array.strip().isdigit():
            continue
        task = "0" if task in ("N/A", "") else task
        found.setdefault(int(array), {})[task] = {
            "state": state.split()[0],
            "node": node,
            "elapsed": elapsed,
            "reason": "" if reason in ("None", "(null)") else reason,
        }
    for job in set(job_ids) - set(found):
        tasks = _scontrol_states(job) or _sacct_states(job)
        if tasks:
            found[job] = tasks
    return found


def _scontrol_states(job: int) -> dict[str, dict]:
    proc = _run(["scontrol", "-o", "show", "job", str(job)], check=False)
    tasks = {}
    for line in proc.stdout.splitlines() if proc.returncode == 0 else []:
        values = dict(item.split("=", 1) for item in line.split() if "=" in item)
        task = values.get("ArrayTaskId", "0")
        if not task.isdigit():
            continue
        tasks[task] = {
            "state": values.get("JobState", "UNKNOWN"),
            "node": values.get("NodeList", ""),
            "elapsed": values.get("RunTime", ""),
            "reason": "",
        }
    return tasks


def _sacct_states(job: int) -> dict[str, dict]:
    if shutil.which("sacct") is None:
        return {}
    proc = _run(
        ["sacct", "-n", "-P", "-X", "-j", str(job), "--format=JobID,State,NodeList,Elapsed"], check=False
    )
    tasks = {}
    for line in proc.stdout.splitlines() if proc.returncode == 0 else []:
        job_id, state, node, elapsed = (line.split("|") + [""] * 4)[:4]
        _, _, task = job_id.partition("_")
        if task.isdigit() or not task:
            tasks[task or "0"] = {"state": state.split()[0], "node": node, "elapsed": elapsed, "reason": ""}
    return tasks


def jobs_status(*, include_finished_days: float = 7) -> list[dict]:
    """Return the pipeline's SLURM submissions with their tasks' states, refreshing what changed.

    Unfinished submissions are asked of SLURM (when it is on PATH); finished ones show their
    last states. A submission SLURM no longer knows, with no task seen running, is marked
    ``gone``.

    Returns
    -------
    list of dict
        ``job``, ``work``, ``workers``, ``partition``, ``submitted``, ``counts`` (state →
        tasks), ``tasks`` (task → state, node, elapsed, reason), ``log``, ``finished``.
    """
    from . import database
    from .pipeline import jobs

    now, _ = database.server_times()
    since = now - dt.timedelta(days=include_finished_days)
    rows = (jobs.Submission & [{"finished": False}, f"submitted >= '{since:%Y-%m-%d %H:%M:%S}'"]).to_dicts()
    cluster, live_ids, live = None, [], {}
    if any(not r["finished"] for r in rows) and shutil.which("scontrol"):
        try:
            cluster = cluster_name()
            live_ids = [
                r["slurm_job_id"] for r in rows if not r["finished"] and r["slurm_cluster"] == cluster
            ]
            live = _task_states(live_ids)
        except SchedulerError as err:  # status still shows what was recorded
            logger.warning("SLURM did not answer, showing the last states seen: %s", err)
            cluster, live_ids, live = None, [], {}
    result = []
    for row in sorted(rows, key=lambda r: r["submitted"]):
        known = json.loads(row["states"] or "{}")
        tasks = {t: dict(v) if isinstance(v, dict) else {"state": v} for t, v in known.items()}
        job = row["slurm_job_id"]
        if job in live:
            tasks = live[job]
        elif job in live_ids and tasks:  # SLURM forgot it: unfinished tasks ended unseen
            tasks = {t: v if v["state"] in FINAL_STATES else {**v, "state": "GONE"} for t, v in tasks.items()}
        elif job in live_ids:
            tasks = {str(i): {"state": "GONE"} for i in range(row["workers"])}
        finished = len(tasks) >= row["workers"] and all(
            v["state"] in FINAL_STATES | {"GONE"} for v in tasks.values()
        )
        states = json.dumps({t: v["state"] for t, v in sorted(tasks.items())})[:2047]
        if not row["finished"] and (states != (row["states"] or "{}") or finished):
            jobs.Submission.update1(
                {
                    "slurm_cluster": row["slurm_cluster"],
                    "slurm_job_id": job,
                    "states": states,
                    "finished": finished,
                }
            )
        counts: dict[str, int] = {}
        for value in tasks.values():
            counts[value["state"]] = counts.get(value["state"], 0) + 1
        result.append(
            {
                "job": job,
                "cluster": row["slurm_cluster"],
                "work": row["work"],
                "workers": row["workers"],
                "gpus_per_worker": row["gpus_per_worker"],
                "partition": row["partition"],
                "submitted": row["submitted"].isoformat(sep=" "),
                "counts": counts,
                "tasks": tasks,
                "log": row["log"],
                "finished": finished,
            }
        )
    return result


# ------------------------------------------------------------------------------ cancel
def cancel(job_ids: list[int] | None = None, *, wait: float = 60.0) -> dict:
    """Cancel the pipeline's unfinished SLURM arrays (or the given ones) and return their jobs.

    ``scancel`` sends SIGTERM: each worker puts its job in progress back to ``pending`` and
    exits. After the tasks have ended (up to ``wait`` seconds), reservations of workers killed
    before they could do so are recovered too.

    Returns
    -------
    dict
        ``cancelled`` (job ids), ``recovered`` (reservations put back after the tasks ended),
        ``still_running`` (tasks not ended within ``wait``).

    Raises
    ------
    InputError
        For a job id that is not one of the pipeline's submissions.
    """
    from . import processing
    from .pipeline import jobs

    require()
    cluster = cluster_name()
    mine = jobs.Submission & {"slurm_cluster": cluster}
    if job_ids:
        known = {r["slurm_job_id"] for r in mine.to_dicts()}
        unknown = sorted(set(job_ids) - known)
        if unknown:
            raise InputError(
                f"Job(s) {unknown} were not submitted by this pipeline on cluster {cluster!r}; "
                f"its submissions: {sorted(known)[-20:]}."
            )
        targets = sorted(set(job_ids))
    else:
        targets = [r["slurm_job_id"] for r in (mine & {"finished": False}).to_dicts()]
    if targets:
        _run(["scancel", *map(str, targets)])
    deadline = time.monotonic() + wait
    running: list[str] = []
    while targets:
        states = _task_states(targets)
        running = [
            f"{job}_{task}"
            for job, tasks in states.items()
            for task, value in tasks.items()
            if value["state"] not in FINAL_STATES
        ]
        if not running or time.monotonic() > deadline:
            break
        time.sleep(1)
    recovered = processing.recover_orphans() if targets and not running else 0
    jobs_status()
    return {"cancelled": targets, "recovered": recovered, "still_running": running}


__all__ = [
    "Request",
    "cancel",
    "check_partition",
    "check_reachable",
    "cluster_name",
    "environment",
    "filesystem",
    "jobs_status",
    "partitions",
    "plan",
    "require",
    "script",
    "submit",
]
