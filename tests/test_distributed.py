"""Distributed processing: several workers, one database, every key computed exactly once.

Runs on every backend (the embedded PostgreSQL, and from test_backends.py on the PostgreSQL
and MariaDB servers). Workers are real ``workflow-deeplabcut worker`` processes.
"""

import os
import re
import signal
import subprocess
import sys
import time

import pytest
from conftest import PROJECT_ROOT, insert_load_task, insert_model_row

from workflow_deeplabcut import synthetic

N_JOBS = 12
PARTS = ["nose", "left_ear", "right_ear"]


def start_worker(*args):
    return subprocess.Popen(
        [sys.executable, "-m", "workflow_deeplabcut.cli", "worker", "--table", "PoseEstimation", *args],
        cwd=PROJECT_ROOT,
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def jobs_done(output: str) -> int:
    return int(re.search(r"worker finished: (\d+) job", output).group(1))


@pytest.fixture
def batch(pipeline, new_session, camera, processed_root):
    """N_JOBS load-mode pose estimations of DeepLabCut outputs (20,000 frames each)."""
    model = pipeline.model
    insert_model_row(pipeline, "batch", PARTS)
    session = new_session("batch")
    keys = []
    for i in range(N_JOBS):
        folder = processed_root / "batch" / f"rec{i}"
        synthetic.write_dlc_outputs(folder, f"rec{i}", PARTS, 20_000, seed=i)
        keys.append(
            insert_load_task(pipeline, {**session, "recording_id": i}, camera, "batch", folder, 20_000)
        )
    yield keys
    (model.Model & {"model_name": "batch"}).delete(prompt=False)


def test_workers_compute_every_key_once(pipeline, batch):
    model = pipeline.model
    workers = [start_worker("--once", "-k", "model_name=batch") for _ in range(3)]
    outputs = [w.communicate(timeout=600) for w in workers]
    assert all(w.returncode == 0 for w in workers), [o[1][-2000:] for o in outputs]
    done = [jobs_done(out) for out, _ in outputs]
    assert sum(done) == N_JOBS, done  # no key twice, none lost
    assert len(model.PoseEstimation & batch) == N_JOBS
    assert len(model.PoseEstimation.BodyPartPosition & batch) == N_JOBS * len(PARTS)
    jobs = model.PoseEstimation.jobs
    assert not jobs.reserved & batch and not jobs.errors & batch


def wait_for_reservation(table, key, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if table.jobs.reserved & key:
            return
        time.sleep(0.2)
    raise AssertionError(f"no worker reserved {key} within {timeout} s")


@pytest.fixture(scope="module")
def long_video(synthetic_video, raw_root):
    """The synthetic video ten times over (3,000 frames): inference must still be running when
    the test signals the worker, even with our engine (about 2 s for the 300 frames alone)."""
    import av
    import numpy as np

    with av.open(str(synthetic_video)) as container:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    target = raw_root / "long" / "synthetic_long.mp4"
    target.parent.mkdir(parents=True, exist_ok=True)
    return synthetic.write_video(target, np.tile(frames, (10, 1, 1, 1)), 30.0)


@pytest.mark.dlc
def test_interrupted_and_killed_workers(pipeline, new_session, camera, long_video, model_name):
    """SIGTERM puts the job back; SIGKILL leaves a reservation that is recovered; nothing partial."""
    from workflow_deeplabcut import processing

    model = pipeline.model
    rec = model.VideoRecording.insert_recording(new_session("kill"), 1, camera, [long_video])
    model.RecordingInfo.populate(rec)
    key = model.PoseEstimationTask.generate(rec, model_name, task_mode="trigger")

    # SIGTERM while DeepLabCut works: the job goes back to pending, the worker exits cleanly.
    only = ("-k", f"subject={rec['subject']}")
    proc = start_worker("--once", *only)
    wait_for_reservation(model.PoseEstimation, key)
    time.sleep(2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    assert "1 interrupted job(s) put back to pending" in err  # progress lines go to stderr
    assert not model.PoseEstimation & key
    assert model.PoseEstimation.jobs.pending & key

    # SIGKILL: no chance to clean up; the reservation stays until recovered.
    proc = start_worker("--once", *only)
    wait_for_reservation(model.PoseEstimation, key)
    time.sleep(2)
    proc.kill()
    proc.wait(timeout=60)
    assert not model.PoseEstimation & key and not model.PoseEstimation.BodyPartPosition & key
    assert model.PoseEstimation.jobs.reserved & key
    deadline = time.time() + 30
    recovered = 0
    while not recovered and time.time() < deadline:  # the server notices the dead connection
        recovered = processing.recover_orphans(["PoseEstimation"])
        time.sleep(0.5)
    assert recovered == 1
    assert model.PoseEstimation.jobs.pending & key

    # A new worker finishes the job.
    proc = start_worker("--once", *only)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]
    assert model.PoseEstimation & key
    assert len(model.PoseEstimation.BodyPartPosition & key) == 2


def test_run_and_status_commands(pipeline, batch):
    import json

    from typer.testing import CliRunner

    from workflow_deeplabcut.cli import app

    runner = CliRunner()
    subject = batch[0]["subject"]
    before = json.loads(runner.invoke(app, ["status", "--json", "--table", "PoseEstimation"]).stdout)[
        "tables"
    ]
    assert before[0]["table"] == "PoseEstimation" and before[0]["pending"] >= N_JOBS
    result = runner.invoke(app, ["run", "--table", "PoseEstimation", "--key", f"subject={subject}"])
    assert result.exit_code == 0, result.output
    assert len(pipeline.model.PoseEstimation & batch) == N_JOBS
    after = json.loads(runner.invoke(app, ["status", "--json", "--table", "PoseEstimation"]).stdout)["tables"]
    assert after[0]["done"] == before[0]["done"] + N_JOBS
    assert after[0]["pending"] == before[0]["pending"] - N_JOBS
    bad = runner.invoke(app, ["status", "--table", "NoSuchTable"])
    assert bad.exit_code == 1 and "Unknown table(s) ['NoSuchTable']; choose from" in bad.output


def test_restriction_leaves_out_tables_without_its_attributes(pipeline, batch):
    """``subject=...`` selects no model evaluation: DataJoint alone would select every one."""
    from workflow_deeplabcut import processing

    subject = {"subject": batch[0]["subject"]}
    assert processing.pending_work(["ModelEvaluation"])["gpu"] >= 1  # the batch model is unevaluated
    assert processing.pending_work(["ModelEvaluation", "PoseEstimation"], subject) == {
        "gpu": 0,
        "cpu": N_JOBS,
    }
    results = processing.run(["ModelEvaluation", "PoseEstimation"], subject, display_progress=False)
    assert [(r.table, r.success, r.errors) for r in results] == [("PoseEstimation", N_JOBS, [])]
    assert not pipeline.model.ModelEvaluation & {"model_name": "batch"}


STOP_DURING_IMPORT = """
import os, pathlib, signal, sys, tempfile, threading, time
from workflow_deeplabcut import processing

signal.signal(signal.SIGTERM, processing.stop_handler)
folder = tempfile.mkdtemp()
slow = "import time\\nfor _ in range(20):\\n    time.sleep(0.1)\\nDONE = True\\n"
pathlib.Path(folder, "slowmod.py").write_text(slow)
sys.path.insert(0, folder)
threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM)).start()
try:
    import slowmod
    print("imported", slowmod.DONE, flush=True)
    time.sleep(10)
except SystemExit as stop:
    print("stopped:", stop, "| slowmod imported:", "slowmod" in sys.modules)
"""


def test_stop_signal_waits_for_an_import_to_finish():
    """SIGTERM during an import stops the worker after it, not inside (torch can abort there)."""
    proc = subprocess.run(
        [sys.executable, "-c", STOP_DURING_IMPORT], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines() == ["imported True", "stopped: signal 15 | slowmod imported: True"]


def test_worker_classes_follow_gpus_and_settings(monkeypatch):
    """auto: gpu with a GPU (CUDA_VISIBLE_DEVICES), else all, or cpu when gpu_only is set."""
    from workflow_deeplabcut import processing, settings

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert processing.visible_gpus() == ["2", "3"] and processing.resolve_work() == "gpu"
    for none in ("", "-1", "NoDevFiles"):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", none)
        assert processing.visible_gpus() == [] and processing.resolve_work() == "all"
    monkeypatch.setenv("WORKFLOW_DLC_GPU_ONLY", "yes")
    settings.configure()  # re-read the environment
    try:
        assert settings.get_settings().gpu_only and processing.resolve_work() == "cpu"
        assert processing.resolve_work("all") == "all"
        with pytest.raises(processing.InputError, match="Unknown class of work 'tpu'"):
            processing.resolve_work("tpu")
        monkeypatch.setenv("WORKFLOW_DLC_GPU_ONLY", "perhaps")
        with pytest.raises(settings.ConfigurationError, match="gpu_only='perhaps'.*use true or false"):
            settings.configure()
        monkeypatch.setenv("WORKFLOW_DLC_GPU_ONLY", "false")
        monkeypatch.setenv("WORKFLOW_DLC_SLURM_OPTIONS", "--account=lab; --qos=long")
        assert settings.configure().slurm_options == ("--account=lab", "--qos=long")
        monkeypatch.setenv("WORKFLOW_DLC_SLURM_OPTIONS", "account=lab")
        with pytest.raises(settings.ConfigurationError, match="'account=lab'"):
            settings.configure()
    finally:
        monkeypatch.delenv("WORKFLOW_DLC_GPU_ONLY")
        monkeypatch.delenv("WORKFLOW_DLC_SLURM_OPTIONS")
        settings.configure()


@pytest.mark.dlc
def test_cpu_worker_leaves_gpu_work(pipeline, new_session, camera, synthetic_video, model_name, batch):
    """With gpu_only set, a worker without a GPU does the load-mode jobs and no trigger-mode job."""
    model = pipeline.model
    rec = model.VideoRecording.insert_recording(new_session("gpuonly"), 1, camera, [synthetic_video])
    model.RecordingInfo.populate(rec)
    trigger = model.PoseEstimationTask.generate(rec, model_name, task_mode="trigger")
    env = {**os.environ, "WORKFLOW_DLC_GPU_ONLY": "true", "CUDA_VISIBLE_DEVICES": ""}
    both = [f"subject={rec['subject']}", f"subject={batch[0]['subject']}"]
    procs = [
        subprocess.run(
            [
                sys.executable,
                "-m",
                "workflow_deeplabcut.cli",
                "worker",
                "--once",
                "-t",
                "PoseEstimation",
                "-k",
                k,
            ],
            cwd=PROJECT_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        for k in both
    ]
    assert all(p.returncode == 0 for p in procs), [p.stderr[-2000:] for p in procs]
    assert "took cpu work" in procs[0].stdout and "(0 GPU work, 0 CPU work" in procs[0].stdout
    assert not model.PoseEstimation & trigger  # left for a GPU worker
    assert f"(0 GPU work, {N_JOBS} CPU work; took cpu work)" in procs[1].stdout
    assert len(model.PoseEstimation & batch) == N_JOBS
    (model.PoseEstimationTask & trigger).delete(prompt=False)
