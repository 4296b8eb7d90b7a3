"""The workflow-deeplabcut command, through its entry point."""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import PROJECT_ROOT, free_port
from typer.testing import CliRunner

from workflow_deeplabcut.cli import app

runner = CliRunner()


def _commands(typer_app, prefix=()):
    import typer.main

    group = typer.main.get_command(typer_app)
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            for sub in command.commands:
                yield (*prefix, name, sub)
        else:
            yield (*prefix, name)


def test_every_command_has_help_with_an_example():
    commands = list(_commands(app))
    assert ("demo",) in commands and ("db", "status") in commands
    for command in commands:
        result = runner.invoke(app, [*command, "--help"])
        assert result.exit_code == 0, command
        assert "Example: workflow-deeplabcut" in result.output, command
        assert " ".join(command) in result.output.split("Example:")[1], command


def test_db_status_json(pipeline):
    result = runner.invoke(app, ["db", "status", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["kind"] == "embedded" and info["running"] is True and info["size_bytes"] > 0
    assert "password" not in result.output.lower()


def run_cli(*args, timeout=900):
    return subprocess.run(
        [sys.executable, "-m", "workflow_deeplabcut.cli", *args],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        env=dict(os.environ),
        timeout=timeout,
    )


@pytest.mark.dlc
def test_multi_animal_demo(workdir):
    """Two animals whose paths cross: trained, tracked, told apart; errors and swaps reported."""
    prefix = os.environ["WORKFLOW_DLC_PREFIX"] + "demo_ma_"
    out = run_cli("demo", "--multi-animal", "--directory", str(workdir / "demo-ma"), "--prefix", prefix)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    lines = out.stdout.splitlines()
    errors = {
        line.split(",")[1].split(":")[0].strip(): float(line.rsplit(":", 1)[1].split()[0])
        for line in lines
        if line.startswith("Median error against the ground truth")
    }
    assert set(errors) == {"demo-pair-1", "demo-pair-2"} and max(errors.values()) <= 3, errors
    (swaps,) = [line for line in lines if line.startswith("Identity swaps:")]
    found, truth = (int(n) for n in re.findall(r"(\d+) (?:\(identity QC\)|against)", swaps))
    assert found <= 2 and truth <= 2, swaps
    assert len([line for line in lines if line.startswith("Track ")]) == 2
    pictures = [line.rsplit(": ", 1)[1] for line in lines if line.startswith("Identity picture")]
    assert len(pictures) == 2 and all(Path(p).read_bytes()[:4] == b"\x89PNG" for p in pictures)
    assert "(0 critical nwbinspector messages)" in out.stdout
    print(out.stdout)


def test_demo_runs_then_reuses(workdir):
    prefix = os.environ["WORKFLOW_DLC_PREFIX"] + "demo_"  # this run's own: runs may share a server
    first = run_cli("demo", "--directory", str(workdir / "demo"), "--epochs", "30", "--prefix", prefix)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "Median error against the ground truth, head" in first.stdout
    errors = [
        float(line.rsplit(":", 1)[1].split()[0])
        for line in first.stdout.splitlines()
        if line.startswith("Median error")
    ]
    assert len(errors) == 2 and max(errors) < 3
    plots = list((workdir / "demo" / "processed").rglob("trajectory.png"))
    assert len(plots) == 1 and plots[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    assert Image.open(plots[0]).size == (500, 500)
    speeds = [line for line in first.stdout.splitlines() if line.startswith("Median speed")]
    assert len(speeds) == 2
    for line in speeds:
        measured, true = (float(x) for x in re.findall(r"([\d.]+) cm/s", line))
        assert measured == pytest.approx(true, rel=0.05), line
    assert "nwbinspector: 0 critical" in first.stdout
    assert (workdir / "demo" / "demo-session.nwb").is_file()
    assert len(list((workdir / "demo" / "processed").rglob("qc0_*.png"))) == 3
    second = run_cli("demo", "--directory", str(workdir / "demo"), "--prefix", prefix)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "Training a small" in second.stdout  # the step is visited...
    assert "Generating a synthetic video" not in second.stdout  # ...but nothing is remade
    assert "Saving results" not in second.stdout  # DeepLabCut did not run again
    import av

    (video,) = (workdir / "demo" / "processed").rglob("*_labeled0.mp4")
    with av.open(str(video)) as container:
        assert container.streams.video[0].codec_context.name == "h264"  # browsers play it
    # The printed dashboard command serves the demo's session, with its labeled video.
    (line,) = [line for line in second.stdout.splitlines() if line.startswith("See it in the browser:")]
    command = line.split(":", 1)[1].split("(")[0].split()
    assert command[:3] == ["workflow-deeplabcut", "serve", "--demo"]
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "workflow_deeplabcut.cli", *command[1:], "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        import httpx

        page = None
        for _ in range(300):
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/sessions?subject=demo-mouse")
                break
            except httpx.ConnectError:
                time.sleep(0.2)
        assert page is not None and page.status_code == 200
        link = re.search(r'href="(/session\?[^"]+)"', page.text).group(1).replace("&amp;", "&")
        session_page = httpx.get(f"http://127.0.0.1:{port}{link}")
        src = re.search(r'<video[^>]+src="([^"]+)"', session_page.text).group(1)
        assert httpx.get(f"http://127.0.0.1:{port}{src}").content == video.read_bytes()
    finally:
        server.terminate()
        server.wait(10)


@pytest.fixture
def loaded_estimation(pipeline, new_session, camera, synthetic_video, model_name):
    """A pose estimation imported in load mode from DeepLabCut-layout files."""
    from workflow_deeplabcut import synthetic

    model = pipeline.model
    rec = model.VideoRecording.insert_recording(new_session("exp"), 1, camera, [synthetic_video])
    model.RecordingInfo.populate(rec)
    key = {**rec, "model_name": model_name}
    folder = model.PoseEstimationTask.infer_output_dir(key, mkdir=True)
    synthetic.write_dlc_outputs(folder, "synthetic", list(synthetic.BODY_PARTS), 300, seed=3)
    model.PoseEstimationTask.generate(rec, model_name)
    model.PoseEstimation.populate(key)
    return key


def test_export_trajectory(pipeline, loaded_estimation, tmp_path):
    import pandas as pd

    args = [f"{k}={v}" for k, v in loaded_estimation.items()]
    expected = pipeline.model.PoseEstimation.get_trajectory(loaded_estimation)
    for name in ("out.h5", "out.csv"):
        result = runner.invoke(app, ["export-trajectory", *args, "-o", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
    h5 = pd.read_hdf(tmp_path / "out.h5", "df_with_missing")
    pd.testing.assert_frame_equal(h5, expected)
    csv = pd.read_csv(tmp_path / "out.csv", header=[0, 1, 2], index_col=0)
    assert csv.shape == expected.shape and list(csv.columns) == list(expected.columns)
    assert abs(csv.to_numpy() - expected.to_numpy()).max() < 1e-9
    missing = runner.invoke(app, ["export-trajectory", "subject=nobody", "-o", str(tmp_path / "x.csv")])
    assert missing.exit_code == 1 and "No pose estimation matches {'subject': 'nobody'}" in missing.output
    assert not (tmp_path / "x.csv").exists()


def test_diagram(pipeline, tmp_path, monkeypatch):
    from PIL import Image

    result = runner.invoke(app, ["diagram", str(tmp_path / "p.png")])
    assert result.exit_code == 0, result.output
    image = Image.open(tmp_path / "p.png")
    assert image.format == "PNG" and image.size[0] > 200 and image.size[1] > 200
    assert runner.invoke(app, ["diagram", str(tmp_path / "p.svg")]).exit_code == 0
    assert "<svg" in (tmp_path / "p.svg").read_text() and "PoseEstimation" in (tmp_path / "p.svg").read_text()
    monkeypatch.setenv("PATH", str(tmp_path))  # no Graphviz: Mermaid text instead
    result = runner.invoke(app, ["diagram", str(tmp_path / "q.png")])
    assert result.exit_code == 0 and "Mermaid text instead" in result.output
    assert "flowchart" in (tmp_path / "q.mmd").read_text() and not (tmp_path / "q.png").exists()


def test_db_start_keeps_running_until_stop(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJ_", "WORKFLOW_DLC_"))}
    env["WORKFLOW_DLC_EMBEDDED_DIR"] = str(tmp_path / "pg")

    def cli(*args):
        proc = subprocess.run(
            [sys.executable, "-m", "workflow_deeplabcut.cli", *args],
            capture_output=True,
            text=True,
            cwd=PROJECT_ROOT,
            env=env,
            timeout=180,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc.stdout

    assert "Embedded PostgreSQL running" in cli("db", "start")
    assert json.loads(cli("db", "status", "--json"))["running"] is True  # outlived its starter
    assert "Stopped." in cli("db", "stop")
    assert json.loads(cli("db", "status", "--json"))["running"] is False


def test_unreachable_server_is_a_clear_message():
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJ_")}
    env.update(
        DJ_HOST="127.0.0.1",
        DJ_PORT="9",
        DJ_BACKEND="postgresql",
        DJ_USER="lab",
        DJ_PASS="hunter2",
        WORKFLOW_DLC_DATABASE="server",
    )
    proc = subprocess.run(
        [sys.executable, "-m", "workflow_deeplabcut.cli", "status"],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 1
    assert "Cannot connect to the postgresql at 127.0.0.1:9 (user lab)" in proc.stderr.replace("\n", " ")
    assert proc.stderr.strip().splitlines()[-1].startswith("Error:") and not proc.stdout.strip()
    assert "Traceback" not in proc.stdout + proc.stderr and "hunter2" not in proc.stdout + proc.stderr


def test_export_nwb_and_import_pose(pipeline, noisy, processed_root, new_session, camera):
    """``export-nwb`` writes and checks a file; ``import-pose`` brings it back as a new model."""
    from pynwb import NWBHDF5IO

    session = [f"subject={noisy['key']['subject']}", f"session_datetime={noisy['key']['session_datetime']}"]
    out = processed_root / "cli" / "session.nwb"
    result = runner.invoke(app, ["export-nwb", *session, str(out)])
    assert result.exit_code == 0, result.output
    assert "nwbinspector:" in result.output and " 0 critical" in result.output
    assert "1 best-practice violation(s)" in result.output  # the subject has no species
    with NWBHDF5IO(str(out), "r") as io:
        assert "noisy_recording1" in io.read().processing["behavior"].data_interfaces
    again = runner.invoke(app, ["export-nwb", *session, str(out)])
    assert again.exit_code == 1 and "exists" in again.output
    bad = runner.invoke(app, ["export-nwb", "subject=nobody", str(processed_root / "x.nwb")])
    assert bad.exit_code == 1 and "matches 0 sessions" in bad.output

    args = [
        "import-pose",
        str(out),
        "-s",
        "NWB",
        "-m",
        "cli-import",
        "--pose-estimation-key",
        "noisy_recording1",
    ]
    result = runner.invoke(app, [*args, *(f"-k{kv}" for kv in [*session, "recording_id=1"])])
    assert result.exit_code == 0, result.output
    key = {**noisy["key"], "model_name": "cli-import"}
    imported = pipeline.model.PoseEstimation.get_trajectory(key).to_numpy()
    original = pipeline.model.PoseEstimation.get_trajectory(noisy["key"]).to_numpy()
    np.testing.assert_array_equal(imported, original)
    missing = runner.invoke(app, ["import-pose", "nothing.h5", "-s", "SLEAP", "-m", "x", "-k", "subject=y"])
    assert missing.exit_code == 1 and "Error" in missing.output
