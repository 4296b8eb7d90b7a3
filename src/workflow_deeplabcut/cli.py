"""The ``workflow-deeplabcut`` command: thin wrappers over the library.

Results go to standard output; log lines and errors go to standard error. Every error is one
line (``Error: ...``); ``--debug`` (or ``WORKFLOW_DLC_DEBUG=1``) shows the traceback instead.
"""

from __future__ import annotations

import functools
import json
import os
import traceback
from pathlib import Path

import click
import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    help="DeepLabCut 3 pose estimation as a reproducible DataJoint pipeline.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="The embedded database (or the configured server).", no_args_is_help=True)
app.add_typer(db_app, name="db")
# soft_wrap: long lines (paths above all) are never broken, so they can be copied and pasted.
console = Console(soft_wrap=True)
errors = Console(stderr=True, soft_wrap=True)
_debug = {"on": os.environ.get("WORKFLOW_DLC_DEBUG", "").lower() in ("1", "true", "yes")}


@app.callback()
def _options(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks instead of one-line errors."),
    verbose: bool = typer.Option(
        False,
        "--verbose",
        "-v",
        help="Show DeepLabCut's own output instead of writing it to one log file per job.",
    ),
) -> None:
    """DeepLabCut 3 pose estimation as a reproducible DataJoint pipeline."""
    if debug:
        _debug["on"] = True
    if verbose:
        os.environ["WORKFLOW_DLC_VERBOSE"] = "1"


def _fail(message: str) -> None:
    errors.print(f"[red]Error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def _one_line(err: Exception) -> str:
    """Render an exception as one line: ours by their message, others with their type."""
    from .errors import WorkflowError

    text = " ".join(str(err).split()) or type(err).__name__
    if isinstance(err, WorkflowError | ValueError | FileNotFoundError):
        return text
    frames = traceback.extract_tb(err.__traceback__)
    where = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno} in {frames[-1].name}" if frames else ""
    return f"{type(err).__name__}: {text}{where} (run with --debug for the traceback)"


def _guarded(func):
    """Turn any exception of a command into one line on standard error and exit status 1."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (typer.Exit, typer.Abort, click.exceptions.ClickException):
            raise
        except Exception as err:
            if _debug["on"]:
                raise
            _fail(_one_line(err))

    return wrapper


def command(group: typer.Typer = app, name: str | None = None):
    """Register a command whose errors are reported on one line."""

    def register(func):
        return group.command(name)(_guarded(func))

    return register


@command()
def demo(
    directory: Path = typer.Option(None, help="Where to write the demo data [default: <data home>/demo]."),
    fresh: bool = typer.Option(False, "--fresh", help="Start clean: delete the demo's rows and folder."),
    epochs: int = typer.Option(None, min=1, help="Training epochs [default: 30; --multi-animal: 60]."),
    prefix: str = typer.Option("workflow_dlc_demo_", help="Schema prefix of the demo's own tables."),
    multi_animal: bool = typer.Option(
        False, "--multi-animal", help="Two look-alike animals whose paths cross: train, track, who is who."
    ),
) -> None:
    """Run the whole pipeline on a generated example, on the embedded database.

    Generates a synthetic video with known trajectories and a labeled DeepLabCut project,
    trains a small model on CPU, registers and evaluates it, estimates poses, cleans them,
    computes kinematics and QC pictures, exports NWB and reports the errors. A second run
    reuses what is there. With --multi-animal: a video of two animals, a multi-animal project,
    tracking, identity QC and distances between the animals.

    Example: workflow-deeplabcut demo --fresh
    """
    from .demo import DEMO_PREFIX, run_demo

    if multi_animal:
        _multi_animal_demo(directory, fresh, epochs, prefix)
        return
    report = run_demo(
        directory,
        fresh=fresh,
        epochs=epochs or 30,
        prefix=prefix,
        progress=lambda m: console.print(f"[cyan]>[/cyan] {m}"),
    )
    table = Table(title="Pipeline tables")
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, rows in report.tables.items():
        table.add_row(name, str(rows))
    console.print(table)
    console.print(
        f"Evaluation: train error {report.train_error:.2f} px, test error {report.test_error:.2f} px"
    )
    for part, err in report.truth_error.items():
        console.print(f"Median error against the ground truth, {part}: {err:.2f} px")
    for part, speed in report.speed.items():
        console.print(
            f"Median speed, {part}: {speed:.2f} cm/s (true {report.true_speed:.2f} cm/s; demo scale 10 px/cm)"
        )
    for part, fraction in report.qc.items():
        console.print(f"QC, {part}: {fraction:.1%} of frames below p-cutoff")
    console.print(f"Trajectory plot: {report.plot}")
    for name, path in report.qc_plots.items():
        console.print(f"QC picture ({name}): {path}")
    console.print(f"Labeled video: {report.labeled_video}")
    console.print(f"NWB file: {report.nwb}")
    console.print(f"nwbinspector: {report.nwb_summary}")
    console.print(f"DeepLabCut outputs: {report.output_dir}")
    console.print(f"Demo data: {report.directory}")
    command = "workflow-deeplabcut serve --demo" + (f" --directory {report.directory}" if directory else "")
    command += f" --prefix {prefix}" if prefix != DEMO_PREFIX else ""
    console.print(
        f"See it in the browser: {command}  (then open http://127.0.0.1:8050/)",
        soft_wrap=True,
        highlight=False,
    )


def _multi_animal_demo(directory, fresh: bool, epochs: int | None, prefix: str) -> None:
    from .demo import MULTI_ANIMAL_TRAINING, run_multi_animal_demo

    report = run_multi_animal_demo(
        directory,
        fresh=fresh,
        epochs=epochs or MULTI_ANIMAL_TRAINING["epochs"],
        prefix=prefix,
        progress=lambda m: console.print(f"[cyan]>[/cyan] {m}"),
    )
    table = Table(title="Multi-animal tables (this session)")
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, rows in report.tables.items():
        table.add_row(name, str(rows))
    console.print(table)
    mean_ap = f", test mAP {report.test_map:.1f}" if report.test_map is not None else ""
    console.print(f"Evaluation: test error {report.test_error:.2f} px{mean_ap}")
    for track, animal in report.who_is_who.items():
        console.print(f"Track {track} is subject {animal}")
    for animal, err in report.truth_error.items():
        console.print(f"Median error against the ground truth, {animal}: {err:.2f} px (frames where apart)")
    for animal, coverage in report.coverage.items():
        console.print(f"Present in {coverage:.1%} of frames: {animal}")
    console.print(f"Identity swaps: {report.swaps} (identity QC); {report.truth_swaps} against the truth")
    console.print(f"Median distance between the animals' centroids: {report.centroid_distance:.2f} cm")
    for animal, path in report.identity_plots.items():
        console.print(f"Identity picture ({animal}): {path}")
    console.print(f"Tracks over the truth: {report.plot}")
    console.print(f"NWB file: {report.nwb} ({report.nwb_critical} critical nwbinspector messages)")


@command(db_app, "status")
def db_status(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Show where the database is and whether it runs (never the password).

    Example: workflow-deeplabcut db status --json
    """
    from . import database

    if database.uses_embedded():
        info = {"kind": "embedded", **database.embedded_status()}
    else:
        target = database.current_target(embedded=False)
        info = {
            "kind": "server",
            "backend": target.backend,
            "host": target.host,
            "port": target.port,
            "user": target.user,
        }
        try:
            database.connect()
            info["reachable"] = True
        except database.DatabaseUnreachableError as err:
            info["reachable"], info["error"] = False, str(err)
    if as_json:
        print(json.dumps(info, indent=1))
        return
    for key, value in info.items():
        console.print(f"{key:>12}: {value}")


@command(db_app, "start")
def db_start() -> None:
    """Start the embedded PostgreSQL and keep it running until `db stop`.

    Example: workflow-deeplabcut db start
    """
    from . import database

    if not database.uses_embedded():
        _fail("A database server is configured (DJ_HOST or datajoint.json); nothing embedded to start.")
    server = database.start_embedded(keep_running=True)
    console.print(f"Embedded PostgreSQL running, socket in {server.socket_dir}")


@command(db_app, "stop")
def db_stop() -> None:
    """Stop the embedded PostgreSQL.

    Example: workflow-deeplabcut db stop
    """
    from . import database

    console.print("Stopped." if database.stop_embedded() else "It was not running.")


def parse_key(items: list[str] | None) -> dict:
    """Turn ``["subject=m1", "recording_id=1"]`` into a dict of text values.

    The values are converted by the attributes' own types where the key is used
    (:func:`workflow_deeplabcut.rules.check_key`, :func:`workflow_deeplabcut.processing.check_restriction`).
    """
    key = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise typer.BadParameter(f"{item!r} is not NAME=VALUE (e.g. subject=m1)")
        key[name.strip()] = value.strip()
    return key


def _pipeline():
    """Connect (an unreachable server becomes a one-line error through the command guard)."""
    from . import pipeline

    return pipeline


#: Quality warnings ``run`` prints at most (``status`` lists every one).
MAX_WARNINGS_SHOWN = 20
#: The tables whose jobs run DeepLabCut (their output goes to a log file per job).
_DLC_TABLES = ("ModelTraining", "ModelEvaluation", "PoseEstimation")

TablesOption = typer.Option(None, "--table", "-t", help="Only this computed table (repeatable).")
KeyOption = typer.Option(None, "--key", "-k", help="Restrict to NAME=VALUE (repeatable).")
RetriesOption = typer.Option(
    None,
    "--max-retries",
    min=0,
    help="Automatic retries of transient failures [default: WORKFLOW_DLC_MAX_RETRIES or 3].",
)


@command(name="run")
def run_command(
    tables: list[str] = TablesOption,
    key: list[str] = KeyOption,
    reserve: bool = typer.Option(False, "--reserve", help="Reserve jobs, to run beside workers."),
    max_retries: int = RetriesOption,
) -> None:
    """Populate every computed table in dependency order; errors are collected, then summarised.

    An attribute that no selected table has, or a value of the wrong type, is refused. Exit
    status 1 when any job failed.

    Example: workflow-deeplabcut run --table PoseEstimation --key subject=m1
    """
    from . import joblog, processing, quality
    from .settings import get_settings

    _pipeline()
    retries = processing.MAX_RETRIES if max_retries is None else max_retries
    restriction = parse_key(key) or None
    results = processing.run(tables, restriction, reserve_jobs=reserve, max_retries=retries)
    flagged: dict = {}
    for warning in quality.collect(
        processing.check_restriction(processing.select_tables(tables), restriction)
    ):
        flagged.setdefault(warning.table, []).append(warning)
    summary = Table(title="run")
    for column in ("table", "computed", "errors", "warnings"):
        summary.add_column(column)
    for result in results:
        summary.add_row(
            result.table,
            str(result.success),
            str(len(result.errors)),
            str(len(flagged.get(result.table, []))),
        )
    console.print(summary)
    for result in results:
        for failed_key, message in result.errors:
            errors.print(
                f"[red]{result.table}[/red] {failed_key}: {message}", highlight=False, soft_wrap=True
            )
    ran_dlc = any(r.success or r.errors for r in results if r.table in _DLC_TABLES)
    if ran_dlc and not joblog.verbose():
        logs = get_settings().processed_data_dir / "logs"
        errors.print(
            f"DeepLabCut's output: one log per job under {logs} (--verbose shows it)", highlight=False
        )
    shown = [w for result in results for w in flagged.get(result.table, [])]
    for warning in shown[:MAX_WARNINGS_SHOWN]:
        errors.print(
            f"[yellow]warning[/yellow] {warning.table} {warning.key}: {warning.message}",
            highlight=False,
            soft_wrap=True,
        )
    if len(shown) > MAX_WARNINGS_SHOWN:
        errors.print(f"... and {len(shown) - MAX_WARNINGS_SHOWN} more warnings: `status` lists them all")
    if any(r.errors for r in results):
        raise typer.Exit(1)


@command()
def worker(
    tables: list[str] = TablesOption,
    key: list[str] = KeyOption,
    sleep: float = typer.Option(30.0, help="Seconds to wait when there is no work."),
    max_jobs: int = typer.Option(None, "--max-jobs", min=1, help="Stop after this many jobs."),
    once: bool = typer.Option(False, "--once", help="Stop when no work is left (batch schedulers)."),
    orphan_timeout: float = typer.Option(
        None, help="Also recover reservations older than this many seconds (hung workers)."
    ),
    heartbeat_timeout: float = typer.Option(
        None, help="Seconds without a heartbeat before a worker counts as gone [default: 60]."
    ),
    max_retries: int = RetriesOption,
    work: str = typer.Option(
        "auto",
        "--work",
        help="Which jobs: auto, all, cpu (no GPU work) or gpu (GPU work first) [auto: gpu with a "
        "GPU, else all, or cpu when gpu_only is set].",
    ),
) -> None:
    """Process jobs with DataJoint's job reservation until stopped (one per cluster node).

    A lost database connection is waited out (reconnect with backoff). SIGTERM/SIGINT abort the
    job in progress and put it back to pending. Reservations of killed workers are recovered at
    the start of every round; transient failures (lost connection, disk full) are retried.
    Exit status 1 when a job this worker ran is left failed.

    Example: workflow-deeplabcut worker --once --max-jobs 10
    """
    from . import processing

    # A worker may start while the database restarts: wait for it like for a lost connection.
    processing.with_reconnect(_pipeline, say=lambda m: errors.print(m, highlight=False, soft_wrap=True))
    processing.select_tables(tables)
    result = processing.worker(
        tables,
        parse_key(key) or None,
        sleep=sleep,
        max_jobs=max_jobs,
        once=once,
        orphan_timeout=orphan_timeout,
        heartbeat_timeout=processing.HEARTBEAT_TIMEOUT if heartbeat_timeout is None else heartbeat_timeout,
        max_retries=processing.MAX_RETRIES if max_retries is None else max_retries,
        work=work,
        report=lambda m: errors.print(m, highlight=False, soft_wrap=True),
    )
    console.print(
        f"worker finished: {result.done} job(s) done ({result.by_work['gpu']} GPU work, "
        f"{result.by_work['cpu']} CPU work; took {result.work} work), {result.failed} failed",
        highlight=False,
    )
    if result.failed:
        raise typer.Exit(1)


@command()
def status(
    tables: list[str] = TablesOption,
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts (only JSON on stdout)."),
) -> None:
    """Show, per computed table, keys done, pending, reserved and failed (with attempts), and the workers.

    Example: workflow-deeplabcut status --json
    """
    from . import processing, slurm

    _pipeline()
    rows = processing.status(tables)
    alive = processing.workers()
    cluster = slurm.jobs_status()
    if as_json:
        print(json.dumps({"tables": rows, "workers": alive, "slurm": cluster}, indent=1, default=str))
        return
    table = Table(title="status")
    for column in ("table", "done", "pending", "reserved", "errors", "warnings"):
        table.add_column(column, justify="left" if column == "table" else "right")
    for row in rows:
        counts = (row["done"], row["pending"], row["reserved"], len(row["errors"]), len(row["warnings"]))
        table.add_row(row["table"], *map(str, counts))
    console.print(table)
    for row in rows:
        for error in row["errors"]:
            console.print(
                f"[red]{row['table']}[/red] {error['key']} (attempt {error['attempts']}): {error['message']}",
                highlight=False,
                soft_wrap=True,
            )
    for row in rows:
        for warning in row["warnings"]:
            console.print(
                f"[yellow]warning[/yellow] {row['table']} {warning['key']}: {warning['message']}",
                highlight=False,
                soft_wrap=True,
            )
    for row in rows:
        for held in row["reserved_by"]:
            where = (
                f"SLURM job {held['slurm_job']}" if held["slurm_job"] else f"{held['host']} pid {held['pid']}"
            )
            console.print(
                f"{row['table']} {held['key']} reserved by {where}", highlight=False, soft_wrap=True
            )
    for w in alive:
        slurm_job = f", SLURM job {w['slurm_job']}" if w["slurm_job"] else ""
        console.print(
            f"worker {w['worker']} on {w['host']} pid {w['pid']} ({w['work']} work{slurm_job}): "
            f"last heartbeat {w['heartbeat_age_s']} s ago",
            highlight=False,
        )
    for job in cluster:
        counts = ", ".join(f"{n} {state.lower()}" for state, n in sorted(job["counts"].items()))
        console.print(
            f"SLURM job {job['job']} ({job['workers']} {job['work']} worker(s), partition "
            f"{job['partition']}, submitted {job['submitted'][:19]}): {counts or 'no state yet'}",
            highlight=False,
            soft_wrap=True,
        )


@command()
def retry(
    tables: list[str] = TablesOption,
    key: list[str] = KeyOption,
    transient_only: bool = typer.Option(False, "--transient", help="Only lost connections, full disks."),
) -> None:
    """Put failed jobs back to pending (workers or `run --reserve` compute them again).

    Example: workflow-deeplabcut retry --table PoseEstimation --key subject=m1
    """
    from . import processing

    _pipeline()
    count = processing.retry(tables, parse_key(key) or None, transient_only=transient_only)
    console.print(f"{count} failed job(s) put back to pending")


@command()
def submit(
    workers: int = typer.Option(
        1, "--workers", "-n", min=0, help="CPU workers (all work without --gpu-workers)."
    ),
    gpu_workers: int = typer.Option(
        0, "--gpu-workers", min=0, help="GPU workers (GPU work first, then the rest)."
    ),
    gpus_per_worker: int = typer.Option(
        1, "--gpus-per-worker", min=1, help="GPUs of each GPU worker (--gres)."
    ),
    partition: str = typer.Option(None, "--partition", "-p", help="Partition [default: the cluster's]."),
    gpu_partition: str = typer.Option(
        None, "--gpu-partition", help="Partition of GPU workers [--partition]."
    ),
    time: str = typer.Option(None, "--time", help="Time limit of each worker, e.g. 4:00:00."),
    cpus: int = typer.Option(None, "--cpus", min=1, help="CPUs of each worker (--cpus-per-task)."),
    mem: str = typer.Option(None, "--mem", help="Memory of each worker, e.g. 16G."),
    tables: list[str] = TablesOption,
    key: list[str] = KeyOption,
    sbatch: list[str] = typer.Option(None, "--sbatch", help="Extra sbatch option, e.g. --sbatch=--qos=long."),
    assume_shared: bool = typer.Option(
        False, "--assume-shared", help="Data folders and the environment are the same paths on every node."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the sbatch script(s); submit nothing."),
) -> None:
    """Submit SLURM job arrays of workers (`worker --once`) for the pending work.

    With --gpu-workers, two arrays: GPU workers (--gres=gpu:N) and CPU workers that never take
    GPU work. Settings' slurm_options are added to every script. Refused before anything is
    submitted: no SLURM here, an unknown partition, a database or folders that workers on
    other nodes could not reach.

    Example: workflow-deeplabcut submit --workers 8 --gpu-workers 2 --time 8:00:00 --mem 16G
    """
    from . import slurm

    request = slurm.Request(
        workers=workers,
        gpu_workers=gpu_workers,
        gpus_per_worker=gpus_per_worker,
        partition=partition,
        gpu_partition=gpu_partition,
        time=time,
        cpus=cpus,
        mem=mem,
        tables=list(tables or []),
        restriction=parse_key(key),
        options=list(sbatch or []),
        assume_shared=assume_shared,
    )
    arrays = slurm.submit(request, dry_run=dry_run)
    if dry_run:
        for array in arrays:
            typer.echo(f"# {array['path']} ({array['pending']} ready job(s) of its class)")
            typer.echo(array["script"])
        return
    if all(a["job_id"] is None for a in arrays):
        console.print("nothing to do: no job is ready; nothing submitted")
        return
    for array in arrays:
        console.print(
            f"submitted job array {array['job_id']}: {array['count']} {array['work']} worker(s) on "
            f"partition {array['partition']}; logs {array['log']}",
            highlight=False,
            soft_wrap=True,
        )


@command()
def cancel(
    job_ids: list[int] = typer.Argument(None, help="Job ids [default: every unfinished submission]."),
    wait: float = typer.Option(60.0, help="Seconds to wait for the workers to stop."),
) -> None:
    """Cancel the pipeline's SLURM workers; their reservations go back to pending.

    Example: workflow-deeplabcut cancel 1234
    """
    from . import slurm

    _pipeline()
    result = slurm.cancel(list(job_ids or []), wait=wait)
    if not result["cancelled"]:
        console.print("no unfinished submission to cancel")
        return
    console.print(
        f"cancelled SLURM job(s) {', '.join(map(str, result['cancelled']))}; "
        f"{result['recovered']} reservation(s) of killed workers put back to pending",
        highlight=False,
    )
    if result["still_running"]:
        errors.print(f"still running after {wait:g} s: {', '.join(result['still_running'])}", highlight=False)
        raise typer.Exit(1)


@command(name="gc")
def garbage_collect(
    dry_run: bool = typer.Option(False, "--dry-run", help="Only list what would be removed."),
    min_age: float = typer.Option(3600.0, help="Leave files younger than this many seconds."),
) -> None:
    """Remove files that no row references: pose arrays of uncommitted or deleted rows, stale QC pictures.

    Example: workflow-deeplabcut gc --dry-run
    """
    from . import storage

    _pipeline()
    report = storage.collect_garbage(dry_run=dry_run, min_age=min_age)
    for path in report.orphans:
        console.print(f"{'would remove' if dry_run else 'removed'} {path}", highlight=False)
    console.print(
        f"{len(report.orphans)} orphaned file(s), {report.orphan_bytes} bytes; "
        f"{'nothing removed (dry run)' if dry_run else f'{report.removed} removed'}; "
        f"{report.young} younger than {min_age:g} s left alone; {report.referenced} referenced"
    )


@command()
def delete(
    items: list[str] = typer.Argument(..., help="NAME=VALUE pairs that select the rows."),
    table: str = typer.Option(
        "Session", "--table", "-t", help="The table to delete from (and its dependents)."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only list the rows and files."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Delete rows, every row that depends on them, and their files (outputs, pictures, arrays).

    DeepLabCut outputs are removed only where the pipeline wrote them (trigger mode); the
    outputs of load mode and imported files are the lab's own and stay.

    Example: workflow-deeplabcut delete subject=m1 session_datetime="2025-06-01 10:00:00" --dry-run
    """
    from . import deletion, rules

    _pipeline()
    target = deletion.find_table(table)
    restriction = rules.check_key(target, parse_key(items))
    found = deletion.plan(target, restriction)
    verb = "would delete" if dry_run else "deletes"
    for name, count in found.rows.items():
        console.print(f"{verb} {count} row(s) of {name}", highlight=False)
    for path in found.files:
        console.print(f"{verb} file {path}", highlight=False, soft_wrap=True)
    console.print(f"{verb} {len(found.store_paths)} stored array file(s)", highlight=False)
    if dry_run:
        return
    if not yes and not typer.confirm("Delete these rows and files?", default=False):
        console.print("Nothing deleted.")
        return
    done = deletion.delete(target, restriction)
    console.print(f"deleted {sum(done.rows.values())} row(s) and {done.removed} file(s)", highlight=False)
    for problem in done.failed:
        errors.print(f"[yellow]not removed[/yellow] {problem}", highlight=False, soft_wrap=True)


@command(name="migrate")
def migrate_command(
    dry_run: bool = typer.Option(False, "--dry-run", help="Only list the steps (write nothing)."),
    from_element: str = typer.Option(
        None,
        "--from-element",
        help="Instead: read the element-deeplabcut database of this schema prefix (e.g. 'neuro_').",
    ),
    host: str = typer.Option("127.0.0.1", help="--from-element: its MySQL/MariaDB server."),
    port: int = typer.Option(3306, help="--from-element: the server's port."),
    user: str = typer.Option("root", help="--from-element: the user (password: WORKFLOW_DLC_ELEMENT_PASS)."),
    report_file: Path = typer.Option(
        None, "--report", help="--from-element: write the full report (JSON) here."
    ),
) -> None:
    """Bring an earlier version's database up to this one, or carry an element-deeplabcut one in.

    Without --from-element: migrate this pipeline's own tables in place (stop its workers
    first). With it: read the element database (never writing to it) and insert its rows here;
    what cannot be carried is listed with the reason. Running it again inserts nothing new.

    Example: workflow-deeplabcut migrate --dry-run

    Example: workflow-deeplabcut migrate --from-element neuro_ --host db.lab --user alice --dry-run
    """
    if from_element is not None:
        _migrate_element(from_element, host, port, user, dry_run, report_file)
        return
    from . import migrate

    report = migrate.migrate(dry_run=dry_run)
    if not report.steps:
        console.print("The database is up to date; nothing to migrate.")
        return
    for step in report.steps:
        console.print(f"{'would migrate' if dry_run else 'migrated'}: {step}", highlight=False)
    console.print(
        f"{report.estimations} pose estimation(s) "
        + (
            "to convert (dry run: nothing written)"
            if dry_run
            else f"converted; {report.files_removed} old file(s) removed"
        )
    )


def _migrate_element(
    prefix: str, host: str, port: int, user: str, dry_run: bool, report_file: Path | None
) -> None:
    import os

    from .element import ElementSource, migrate_element

    _pipeline()
    source = ElementSource(prefix, host, port, user, os.environ.get("WORKFLOW_DLC_ELEMENT_PASS", ""))
    report = migrate_element(source, dry_run=dry_run)
    table = Table(
        title=f"element-deeplabcut {prefix}* -> this pipeline"
        + (" (dry run: nothing written)" if dry_run else "")
    )
    for column in (
        "table",
        "in source",
        "would insert" if dry_run else "inserted",
        "already here",
        "not carried",
    ):
        table.add_column(column, justify="left" if column == "table" else "right")
    for name, c in report.counts.items():
        table.add_row(name, str(c["source"]), str(c["inserted"]), str(c["present"]), str(c["skipped"]))
    console.print(table)
    for skipped in report.skipped:
        console.print(
            f"[yellow]not carried[/yellow] {skipped['table']} {skipped['key']}: {skipped['why']}",
            highlight=False,
        )
    for note in report.notes:
        console.print(f"note: {note['table']} {note['key']}: {note['note']}", highlight=False)
    if report_file is not None:
        report_file.write_text(report.to_json())
        console.print(f"report: {report_file}")


@command()
def ingest(
    path: Path = typer.Argument(..., help="A directory of CSV/YAML files, or one file."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check only; write nothing."),
) -> None:
    """Ingest subjects, sessions, recordings, training sets, params, models and pose tasks.

    Every file is checked first and every problem reported (file:line: column: why); only
    then is everything written, in one transaction. Re-ingesting the same files is a no-op.
    File formats: see the README ("Describe your experiments in files").

    Example: workflow-deeplabcut ingest ./metadata --dry-run
    """
    from . import ingest as ingest_module

    _pipeline()
    try:
        result = ingest_module.ingest(path, dry_run=dry_run)
    except ingest_module.IngestError as err:
        errors.print(f"[red]{len(err.problems)} problem(s); nothing was written:[/red]")
        for problem in err.problems:
            typer.echo(f"  {problem}", err=True)  # one line each, never wrapped: people grep these
        raise typer.Exit(1) from None
    verb = "would insert" if dry_run else "inserted"
    counts = result.counts()
    console.print(f"{verb}: " + (", ".join(f"{n} {t}" for t, n in counts.items()) or "nothing"))
    console.print(f"unchanged rows skipped: {result.skipped}")


@command(name="export-trajectory")
def export_trajectory(
    key: list[str] = typer.Argument(..., help="NAME=VALUE pairs naming one pose estimation."),
    output: Path = typer.Option(..., "--output", "-o", help="A .csv or .h5 file."),
) -> None:
    """Write one pose estimation in DeepLabCut's layout (CSV or HDF5).

    Example: workflow-deeplabcut export-trajectory subject=m1 recording_id=1 model_name=v1 -o m1.h5
    """
    from . import export, rules

    pipeline = _pipeline()
    path = export.export_trajectory(rules.check_key(pipeline.model.PoseEstimation, parse_key(key)), output)
    console.print(f"wrote {path}")


@command(name="export-nwb")
def export_nwb(
    items: list[str] = typer.Argument(..., help="NAME=VALUE pairs naming one session, then OUT.nwb."),
    postprocessed: bool = typer.Option(True, help="Include post-processed trajectories."),
    training_labels: bool = typer.Option(False, "--training-labels", help="Include DLC labeled frames."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing file."),
    check: bool = typer.Option(True, help="Run nwbinspector on the file and report what it finds."),
) -> None:
    """Write a session's pose estimations to an NWB file (ndx-pose), checked by nwbinspector.

    Example: workflow-deeplabcut export-nwb subject=m1 "session_datetime=2025-01-01 12:00:00" m1.nwb
    """
    from . import nwb, rules

    if len(items) < 2 or not items[-1].endswith(".nwb"):
        _fail("Give the session as NAME=VALUE pairs, then the output file ending in .nwb.")
    pipeline = _pipeline()
    path = nwb.export_session(
        rules.check_key(pipeline.session.Session, parse_key(items[:-1])),
        Path(items[-1]),
        postprocessed=postprocessed,
        training_labels=training_labels,
        overwrite=overwrite,
    )
    console.print(f"wrote {path}")
    if check:
        messages = nwb.inspect(path)
        for m in messages:
            console.print(f"nwbinspector {m.importance.name}: {m.check_function_name}: {m.message}")
        critical = [m for m in messages if m.importance.name == "CRITICAL"]
        console.print(f"nwbinspector: {nwb.summary(messages)}")
        if critical:
            raise typer.Exit(1)


@command(name="register-superanimal")
def register_superanimal(
    name: str = typer.Argument(..., help="A name for the model."),
    superanimal: str = typer.Option("superanimal_topviewmouse", help="Which SuperAnimal."),
    pose_model: str = typer.Option("hrnet_w32", help="Its pose network (DeepLabCut's model zoo)."),
    detector: str = typer.Option("fasterrcnn_resnet50_fpn_v2", help="Its detector."),
    max_individuals: int = typer.Option(1, min=1, help="Animals per frame."),
    pcutoff: float = typer.Option(0.6, min=0.0, max=1.0, help="The model's p-cutoff."),
) -> None:
    """Register one of DeepLabCut's SuperAnimal models: pose estimation without training.

    Its weights are taken from the Hugging Face cache or DeepLabCut's model zoo folder, or
    downloaded at the first pose estimation when the network allows.

    Example: workflow-deeplabcut register-superanimal topview --pose-model hrnet_w32
    """
    pipeline = _pipeline()
    key = pipeline.model.Model.insert_superanimal_model(
        name, superanimal, pose_model, detector, max_individuals=max_individuals, pcutoff=pcutoff
    )
    parts = len(pipeline.model.Model.BodyPart & key)
    console.print(f"registered {name}: {superanimal} ({pose_model}, {detector}), {parts} body parts")


@command(name="import-pose")
def import_pose(
    path: Path = typer.Argument(..., help="The pose file (inside a data root)."),
    software: str = typer.Option(..., "--software", "-s", help="DeepLabCut, SLEAP, LightningPose or NWB."),
    model: str = typer.Option(..., "--model", "-m", help="Model name (registered as external if new)."),
    key: list[str] = KeyOption,
    pose_estimation_key: str = typer.Option(None, help="NWB: the PoseEstimation object's name."),
    processing_module_key: str = typer.Option("behavior", help="NWB: the processing module."),
) -> None:
    """Import pose data made elsewhere as a PoseEstimation of an external model.

    The recording (--key) must exist; the model is registered with the file's body parts.

    Example: workflow-deeplabcut import-pose m1.h5 -s SLEAP -m sleap-v1 -k subject=m1 -k recording_id=1
    """
    from . import imports, rules

    pipeline = _pipeline()
    loader = {}
    if software == "NWB":
        loader = {"processing_module_key": processing_module_key}
        if pose_estimation_key:
            loader["pose_estimation_key"] = pose_estimation_key
    recording = rules.check_key(pipeline.model.VideoRecording, parse_key(key))
    done = imports.import_pose_file(path, software, recording, model, loader_params=loader)
    console.print(f"imported {path} as {done}")


@command(name="relocate-model")
def relocate_model(
    model_name: str = typer.Argument(..., help="A registered model."),
    config: Path = typer.Argument(..., help="The project's config.yaml (or folder) where it is now."),
) -> None:
    """Point a registered model at its DeepLabCut project's new place (after the folder moved).

    The project there must be the same model: task, date, iteration, shuffle, body parts and the
    registered snapshot are checked.

    Example: workflow-deeplabcut relocate-model openfield-v1 /data/raw/moved/openfield/config.yaml
    """
    pipeline = _pipeline()
    old, new = pipeline.model.Model.relocate(model_name, config)
    console.print(f"model {model_name!r}: project {old} -> {new}")


@command()
def diagram(output: Path = typer.Argument(Path("pipeline.svg"), help="A .svg, .png or .mmd file.")) -> None:
    """Draw the pipeline's tables and dependencies (Mermaid text where Graphviz is absent).

    Example: workflow-deeplabcut diagram pipeline.png
    """
    from . import export

    _pipeline()
    path = export.write_diagram(output)
    note = " (Graphviz's dot was not found: Mermaid text instead)" if path.suffix != output.suffix else ""
    console.print(f"wrote {path}{note}")


@command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Address to bind; any other than loopback needs a token."),
    port: int = typer.Option(8050, min=1, max=65535, help="TCP port."),
    token: str = typer.Option(
        None,
        envvar="WORKFLOW_DLC_DASHBOARD_TOKEN",
        help="Token every request must carry [default: none on loopback, else generated and printed once].",
    ),
    demo: bool = typer.Option(False, "--demo", help="Show the demo's data (its prefix and folders)."),
    directory: Path = typer.Option(None, help="The demo's folder, with --demo [default: as `demo`]."),
    prefix: str = typer.Option(None, help="Schema prefix [default: the setting; with --demo, the demo's]."),
) -> None:
    """Serve the read-only web dashboard: status, sessions, trajectories, QC, videos, models.

    Example: workflow-deeplabcut serve --demo   (then open http://127.0.0.1:8050/)
    """
    import logging

    from . import settings
    from .dashboard.app import serve as run_server

    if demo:
        from .demo import DEMO_PREFIX, default_directory

        folder = Path(directory or default_directory()).expanduser().resolve()
        settings.configure(
            prefix=prefix or DEMO_PREFIX,
            root_data_dirs=[folder / "raw"],
            processed_data_dir=folder / "processed",
        )
    elif prefix:
        settings.configure(prefix=prefix)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    log = logging.getLogger("workflow_deeplabcut.dashboard")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    run_server(host, port, token, say=lambda line: console.print(line, soft_wrap=True, highlight=False))


# --------------------------------------------------------------------------- refine
refine_app = typer.Typer(
    help="DeepLabCut's refinement loop as rows: frames out, labels in, outliers, next iteration.",
    no_args_is_help=True,
)
app.add_typer(refine_app, name="refine")


def _populate(table, key: dict) -> None:
    """Populate one key; a failed make is an error of this command."""
    result = table.populate(key, suppress_errors=True)
    if result["error_list"]:
        failed = result["error_list"][0]
        _fail(f"{table.__name__}: {failed[1] if isinstance(failed, tuple) else failed}")
    if not table & key:
        _fail(f"{table.__name__} has nothing to compute for {key}: are its inputs there?")


def _recording(key: list[str]) -> dict:
    from .rows import one_key
    from .rules import check_key

    model = _pipeline().model
    return one_key(model.VideoRecording, check_key(model.VideoRecording, parse_key(key)))


@command(refine_app, "project")
def refine_project(
    name: str = typer.Argument(..., help="A name for the project."),
    config: Path = typer.Argument(..., help="The DeepLabCut project's config.yaml (or folder)."),
) -> None:
    """Register a DeepLabCut project whose refinement loop is recorded.

    Example: workflow-deeplabcut refine project mice ~/dlc/mice-me-2026-01-01/config.yaml
    """
    _pipeline().refine.Project.insert_project(name, config)
    console.print(f"Project {name!r} registered.")


@command(refine_app, "extract")
def refine_extract(
    project: str = typer.Argument(..., help="The project."),
    key: list[str] = typer.Option(..., "--key", "-k", help="The recording: NAME=VALUE (repeatable)."),
    params: int = typer.Option(0, "--params", help="refine.ExtractionParamSet index (0: kmeans, 20 frames)."),
) -> None:
    """Extract frames of a recording into the project for labelling (DeepLabCut's selection).

    Example: workflow-deeplabcut refine extract mice -k subject=m1 -k recording_id=1 --params 1
    """
    refine = _pipeline().refine
    task = {"project_name": project, **_recording(key), "extraction_paramset_idx": params}
    refine.FrameExtraction.insert1(task, skip_duplicates=True)
    _populate(refine.ExtractedFrames, task)
    row = (refine.ExtractedFrames & task).fetch1()
    console.print(f"{row['n_frames']} frame(s) in labeled-data/{row['video_stem']} of project {project!r}.")


@command(refine_app, "import-labels")
def refine_import_labels(
    project: str = typer.Argument(..., help="The project."),
    file: Path = typer.Argument(..., help="CollectedData_<scorer>.h5/.csv, or a CSV: frame, bodypart, x, y."),
    labeled_by: str = typer.Option("", "--labeled-by", help="Who labelled."),
    held_out: bool = typer.Option(False, "--held-out", help="Keep out of training; measure models with it."),
    video: str = typer.Option(None, "--video", help="The video's stem, for a CSV without a video column."),
) -> None:
    """Import labels (or corrections) into the project's label sets and CollectedData file.

    Example: workflow-deeplabcut refine import-labels mice labels.csv --labeled-by ana --video m1
    """
    refine = _pipeline().refine
    key = refine.LabelSet.import_labels(project, file, labeled_by=labeled_by, held_out=held_out, video=video)
    n = (refine.LabelSet & key).fetch1("n_labels")
    console.print(f"Label set {key['label_set_id']}: {n} labelled point(s).")


@command(refine_app, "outliers")
def refine_outliers(
    project: str = typer.Argument(..., help="The project."),
    model_name: str = typer.Option(..., "--model", "-m", help="The model whose estimation is checked."),
    key: list[str] = typer.Option(..., "--key", "-k", help="The recording: NAME=VALUE (repeatable)."),
    params: int = typer.Option(0, "--params", help="refine.OutlierParamSet index (0: jump > 20 px)."),
) -> None:
    """Find a pose estimation's outlier frames and extract them into the project for correction.

    Example: workflow-deeplabcut refine outliers mice -m mice-iteration-0 -k subject=m1 -k recording_id=1
    """
    refine = _pipeline().refine
    task = refine.OutlierTask.insert_task(project, {**_recording(key), "model_name": model_name}, params)
    _populate(refine.OutlierFrames, task)
    row = (refine.OutlierFrames & task).fetch1()
    console.print(
        f"{row['n_frames']} of {row['n_candidates']} outlier frame(s) extracted into "
        f"labeled-data/{row['video_stem']}; predictions in {row['machine_labels'] or '-'}."
    )


@command(refine_app, "next-iteration")
def refine_next_iteration(
    project: str = typer.Argument(..., help="The project."),
    training_params: int = typer.Option(..., "--training-params", help="train.TrainingParamSet index."),
    parent: str = typer.Option(None, "--parent", help="The model refined (after the first iteration)."),
    model_name: str = typer.Option(None, "--model-name", help="Name of the new model."),
    train_now: bool = typer.Option(True, "--train/--no-train", help="Train, register and evaluate it now."),
) -> None:
    """Merge the labels, start the next iteration, and train, register and evaluate its model.

    Example: workflow-deeplabcut refine next-iteration mice --training-params 1 --parent mice-iteration-0
    """
    pipeline = _pipeline()
    refine, train, model = pipeline.refine, pipeline.train, pipeline.model
    key = refine.Iteration.start(project, training_params, parent_model=parent, model_name=model_name)
    row = (refine.Iteration & key).fetch1()
    console.print(f"Iteration {row['iteration']} of {project!r}: model {row['trained_model']!r}.")
    if train_now:
        task = {k: row[k] for k in train.TrainingTask.primary_key}
        _populate(train.ModelTraining, task)
        _populate(model.ModelRegistration, {"model_name": row["trained_model"]})
        _populate(model.ModelEvaluation, {"model_name": row["trained_model"]})
        ev = (model.ModelEvaluation & {"model_name": row["trained_model"]}).fetch1()
        console.print(
            f"Trained: train error {ev['train_error']:.2f} px, test error {ev['test_error']:.2f} px."
        )


@command(refine_app, "compare")
def refine_compare(
    project: str = typer.Argument(..., help="The project."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (one object per row)."),
) -> None:
    """Line up the project's iterations: labels, train/test error, held-out error, QC.

    Example: workflow-deeplabcut refine compare mice --json
    """
    import json

    frame = _pipeline().refine.compare(project)
    if as_json:
        typer.echo(json.dumps(json.loads(frame.to_json(orient="records")), indent=1))
        return
    table = Table(title=f"iterations of {project}")
    for column in frame.columns:
        table.add_column(str(column))
    for values in frame.itertuples(index=False):
        table.add_row(*[f"{v:.3g}" if isinstance(v, float) else str(v) for v in values])
    console.print(table)


def main() -> None:
    """Entry point of the ``workflow-deeplabcut`` command."""
    app()


if __name__ == "__main__":
    main()
