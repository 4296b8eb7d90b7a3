"""Workers on a real SLURM cluster: `submit`, `status`, `cancel`, GPU-aware classes, time limits.

``scripts/slurm-local.sh`` starts a one-node cluster (Debian's slurm-wlm, munge) for this
module, with two fake GPUs (SLURM hands them out and sets ``CUDA_VISIBLE_DEVICES``) and a
second partition with a node that never answers. Workers are real ``workflow-deeplabcut
worker`` processes started by slurmd, on the MariaDB server (this module runs only in the
MariaDB run: ``WORKFLOW_DLC_TEST_BACKEND=mariadb pytest tests/test_slurm.py``). Skipped only
where SLURM is not installed, never in CI.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import IN_CI, PROJECT_ROOT, free_port, insert_load_task, insert_model_row
from typer.testing import CliRunner

from workflow_deeplabcut import synthetic
from workflow_deeplabcut.cli import app

PARTS = ["nose", "left_ear", "right_ear"]
DONE = re.compile(r"worker finished: (\d+) job\(s\) done \((\d+) GPU work, (\d+) CPU work; took (\w+) work\)")
runner = CliRunner()


@pytest.fixture(scope="module")
def cluster(workdir):
    """A running one-node SLURM cluster; SLURM_CONF points at it while the module runs."""
    if shutil.which("slurmctld") is None or shutil.which("munged") is None:
        message = "SLURM is not installed (scripts/test-services.sh installs slurm-wlm and munge)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    folder = workdir / "slurm-cluster"
    script = PROJECT_ROOT / "scripts" / "slurm-local.sh"
    env = {
        **os.environ,
        "WDLC_SLURMCTLD_PORT": str(free_port()),
        "WDLC_SLURMD_PORT": str(free_port()),
    }
    started = subprocess.run(
        ["bash", str(script), "start", str(folder)], env=env, capture_output=True, text=True
    )
    assert started.returncode == 0, started.stdout + started.stderr
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(folder / "slurm.conf")
    yield folder
    subprocess.run(["bash", str(script), "stop", str(folder)], env=env, capture_output=True)
    if previous is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = previous


def cli(*args) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def submit(*args) -> list[int]:
    code, output = cli("submit", *args)
    assert code == 0, output
    return [int(j) for j in re.findall(r"submitted job array (\d+)", output)]


def wait_finished(job_ids: list[int], timeout: float = 600, watch=None) -> list[dict]:
    """Poll ``slurm.jobs_status`` until every task of the jobs has ended; call ``watch`` meanwhile."""
    from workflow_deeplabcut import slurm

    deadline = time.time() + timeout
    while time.time() < deadline:
        jobs = {j["job"]: j for j in slurm.jobs_status() if j["job"] in job_ids}
        if len(jobs) == len(job_ids) and all(j["finished"] for j in jobs.values()):
            return list(jobs.values())
        if watch is not None:
            watch()
        time.sleep(0.5)
    raise AssertionError(f"SLURM jobs {job_ids} did not finish in {timeout} s: {slurm.jobs_status()}")


def logs(processed_root: Path, job_id: int) -> dict[str, str]:
    return {
        p.name: p.read_text() for p in sorted((processed_root / "slurm" / "logs").glob(f"*-{job_id}_*.out"))
    }


def load_task(pipeline, session, recording_id, camera, folder: Path) -> dict:
    """A load-mode estimation of the 2,000-frame DeepLabCut outputs in ``folder``."""
    return insert_load_task(
        pipeline, {**session, "recording_id": recording_id}, camera, "slurm", folder, 2_000
    )


@pytest.fixture(scope="module")
def slurm_model(pipeline):
    yield insert_model_row(pipeline, "slurm", PARTS)
    (pipeline.model.Model & {"model_name": "slurm"}).delete(prompt=False)


# ------------------------------------------------------------------------------ refusals
def test_submit_refuses_what_cannot_work(pipeline, cluster, workdir):
    """No SLURM, an unknown partition, other nodes that could not reach the database or files."""
    from workflow_deeplabcut import settings, slurm

    # No SLURM on PATH: a clear error, nothing submitted.
    bare = {**os.environ, "PATH": str(Path(sys.executable).parent)}
    proc = subprocess.run(
        [sys.executable, "-m", "workflow_deeplabcut.cli", "submit", "--workers", "2"],
        env=bare,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert "SLURM is not available here: sbatch, squeue, scancel, sinfo, scontrol not on PATH" in proc.stderr

    code, output = cli("submit", "--partition", "nope")
    assert code == 1 and "Unknown partition 'nope'; the cluster has ['debug', 'remote']" in output
    code, output = cli("submit", "--time", "two hours")
    assert code == 1 and "--time 'two hours' is not a SLURM time" in output
    code, output = cli("submit", "--workers", "0")
    assert code == 1 and "Ask for at least one worker" in output

    # 'remote' has a node other than this machine: the loopback server and local folders fail.
    code, output = cli("submit", "--partition", "remote")
    assert code == 1, output
    assert "may run on other nodes (wdlc-remote-node)" in output
    assert "the database host '127.0.0.1' is this machine itself" in output
    assert f"the store {settings.get_settings().store_dir} is on a local file system" in output
    code, output = cli("submit", "--partition", "remote", "--assume-shared")
    assert code == 1 and "is this machine itself" in output and "local file system" not in output
    # The embedded database is a socket of this machine.
    settings.configure(database="embedded")
    try:
        with pytest.raises(settings.ConfigurationError, match="the database is the embedded PostgreSQL"):
            slurm.check_reachable("remote", ["wdlc-remote-node"], assume_shared=True)
    finally:
        settings.configure(database=None)
    # A GPU partition that does not exist is refused too; nothing was ever recorded.
    code, output = cli("submit", "--gpu-workers", "1", "--gpu-partition", "gpu")
    assert code == 1 and "Unknown partition 'gpu'" in output
    assert not pipeline.jobs.Submission()


def test_dry_run_prints_two_classes(pipeline, cluster, slurm_model):
    code, output = cli(
        "submit", "--dry-run", "-n", "3", "--gpu-workers", "2", "--gpus-per-worker", "1",
        "--time", "2:00:00", "--mem", "4G", "--cpus", "2", "--sbatch=--comment=lab",
        "--table", "PoseEstimation", "--key", "subject=nobody",
    )  # fmt: skip
    assert code == 0, output
    gpu, cpu = output.split("#!/bin/bash")[1:]
    assert "#SBATCH --array=0-1" in gpu and "#SBATCH --gres=gpu:1" in gpu and "--work gpu" in gpu
    assert "#SBATCH --array=0-2" in cpu and "gres" not in cpu and "--work cpu" in cpu
    for text in (gpu, cpu):
        assert "#SBATCH --time=2:00:00" in text and "#SBATCH --signal=B:TERM@120" in text
        assert "#SBATCH --mem=4G" in text and "#SBATCH --cpus-per-task=2" in text
        assert "#SBATCH --comment=lab" in text
        assert "--table PoseEstimation --key subject=nobody" in text
        assert f"export WORKFLOW_DLC_PREFIX={os.environ['WORKFLOW_DLC_PREFIX']}" in text
        assert "export DJ_HOST=127.0.0.1" in text and "DJ_PASS" not in text
    assert not pipeline.jobs.Submission()  # a dry run records nothing
    assert not (Path(os.environ["WORKFLOW_DLC_PROCESSED_DIR"]) / "slurm").exists()
    code, output = cli("submit", "--key", "subject=nobody")  # and no model training or evaluation
    assert code == 0 and "nothing to do: no job is ready; nothing submitted" in output


# ------------------------------------------------------------------------------ real work
def test_gpu_and_cpu_workers_finish_everything_once(
    pipeline, cluster, slurm_model, new_session, camera, processed_root, model_name, synthetic_video
):
    """Load mode, one trigger-mode job and post-processing by one GPU and one CPU worker."""
    model, pp = pipeline.model, pipeline.postprocess
    session = new_session("slurm")
    keys = []
    for i in range(5):
        folder = processed_root / "slurm-run" / f"rec{i}"
        synthetic.write_dlc_outputs(folder, f"rec{i}", PARTS, 2_000, seed=i)
        keys.append(load_task(pipeline, session, i, camera, folder))
    rec = model.VideoRecording.insert_recording(session, 10, camera, [synthetic_video])
    model.RecordingInfo.populate(rec)
    keys.append(model.PoseEstimationTask.generate(rec, model_name, task_mode="trigger"))
    idx = pp.PostprocessParamSet.insert_new_params("slurm test", {"max_gap": 5})
    for key in keys:
        pp.PostprocessTask.generate(key, idx)
    only = {"subject": session["subject"]}
    tables = ["--table", "PoseEstimation", "--table", "CleanedTrajectory", "--table", "Kinematics"]

    job_ids = submit("-n", "1", "--gpu-workers", "1", *tables, "--key", f"subject={session['subject']}")
    assert len(job_ids) == 2
    gpu_job, cpu_job = job_ids
    seen = set()

    def watch():  # which SLURM task holds which reservation, while they work
        from workflow_deeplabcut import processing

        for row in processing.status(["PoseEstimation", "CleanedTrajectory"]):
            seen.update(held["slurm_job"] for held in row["reserved_by"])

    finished = wait_finished(job_ids, watch=watch)
    assert {j["job"]: j["counts"] for j in finished} == {gpu_job: {"COMPLETED": 1}, cpu_job: {"COMPLETED": 1}}
    assert seen & {f"{gpu_job}_0", f"{cpu_job}_0"}, seen  # status named the SLURM task

    # Everything is done, once.
    computed = len(model.PoseEstimation & only) + len(pp.CleanedTrajectory & only) + len(pp.Kinematics & only)
    assert computed == 3 * len(keys)
    assert len(model.PoseEstimation.BodyPartPosition & only) == 5 * len(PARTS) + 2
    for table in (model.PoseEstimation, pp.CleanedTrajectory, pp.Kinematics):
        assert not table.jobs.reserved & only and not table.jobs.errors & only
    texts = {**logs(processed_root, gpu_job), **logs(processed_root, cpu_job)}
    results = {name: DONE.search(text) for name, text in texts.items()}
    assert all(results.values()), texts
    assert sum(int(m.group(1)) for m in results.values()) == computed  # no key twice
    gpu_log = next(m for name, m in results.items() if f"-{gpu_job}_" in name)
    cpu_log = next(m for name, m in results.items() if f"-{cpu_job}_" in name)
    assert gpu_log.group(4) == "gpu" and int(gpu_log.group(2)) == 1  # the trigger-mode job
    assert cpu_log.group(4) == "cpu" and int(cpu_log.group(2)) == 0  # never GPU work
    gpu_text = next(t for n, t in texts.items() if f"-{gpu_job}_" in n)
    assert "takes gpu work; GPUs: 0" in gpu_text  # CUDA_VISIBLE_DEVICES from --gres=gpu:1

    # status shows the submissions with their tasks' final states.
    code, output = cli("status", "--json", "--table", "PoseEstimation")
    assert code == 0, output
    shown = {j["job"]: j for j in json.loads(output)["slurm"]}
    assert shown[gpu_job]["work"] == "gpu" and shown[gpu_job]["counts"] == {"COMPLETED": 1}
    assert shown[cpu_job]["work"] == "cpu" and shown[cpu_job]["tasks"]["0"]["state"] == "COMPLETED"


def test_time_limit_and_cancel_return_the_job(
    pipeline, cluster, slurm_model, new_session, camera, processed_root
):
    """A worker stuck on a file hits its time limit, then is cancelled; the job is done once at last.

    One output is a named pipe: opening it blocks (like a file on a stalled network file
    system) until SLURM ends the worker at its time limit. Whether the worker puts the job back
    on SIGTERM or is killed by the SIGKILL that follows, the next submission takes it again.
    """
    model = pipeline.model
    session = new_session("slurmtl")
    only = {"subject": session["subject"]}
    keys = []
    for i in range(4):
        folder = processed_root / "slurm-tl" / f"rec{i}"
        h5 = synthetic.write_dlc_outputs(folder, f"rec{i}", PARTS, 2_000, seed=i)
        if i == 0:
            stuck, real = h5, h5.with_suffix(".real")
            h5.rename(real)
            os.mkfifo(stuck)
        keys.append(load_task(pipeline, session, i, camera, folder))
    stuck_key = keys[0]
    key_args = ("--table", "PoseEstimation", "--key", f"subject={session['subject']}")

    # 1. Time limit: one worker hangs on the pipe, the other finishes the rest.
    first = submit("-n", "2", "--time", "1", *key_args)
    [job] = wait_finished(first, timeout=300)
    assert job["counts"] == {"COMPLETED": 1, "TIMEOUT": 1}, job
    assert len(model.PoseEstimation & only) == 3 and not model.PoseEstimation & stuck_key

    # 2. The next submission recovers the job, hangs on it again, and is cancelled.
    second = submit("-n", "1", *key_args)

    def held_by_second():
        from workflow_deeplabcut import processing

        [row] = processing.status(["PoseEstimation"])
        return any(h["slurm_job"] == f"{second[0]}_0" for h in row["reserved_by"])

    deadline = time.time() + 120
    while not held_by_second() and time.time() < deadline:
        time.sleep(0.5)
    assert held_by_second(), "the new worker did not take the job back"
    code, output = cli("cancel", str(second[0]))
    assert code == 0, output
    assert f"cancelled SLURM job(s) {second[0]}" in output
    assert not model.PoseEstimation.jobs.reserved & stuck_key  # back to pending
    code, output = cli("status", "--json", "--table", "PoseEstimation")
    shown = {j["job"]: j for j in json.loads(output)["slurm"]}
    assert shown[second[0]]["counts"] == {"CANCELLED": 1}
    code, output = cli("cancel", "999999")
    assert code == 1 and "were not submitted by this pipeline" in output

    # 3. The file arrives: the third submission finishes the job, and nothing ran twice.
    stuck.unlink()
    real.rename(stuck)
    third = submit("-n", "1", *key_args)
    wait_finished(third)
    assert len(model.PoseEstimation & only) == 4
    assert len(model.PoseEstimation.BodyPartPosition & only) == 4 * len(PARTS)
    assert not model.PoseEstimation.jobs.reserved & only and not model.PoseEstimation.jobs.errors & only
    done = [
        int(m.group(1))
        for job_id in first + second + third
        for text in logs(processed_root, job_id).values()
        if (m := DONE.search(text))
    ]
    assert sum(done) == 4, done  # the killed and cancelled workers printed nothing: they did nothing
