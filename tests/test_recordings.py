"""Recordings as they really are: rotation, variable frame rate, names with glob characters,
prefixes, and models whose project moved."""

import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import PROJECT_ROOT

from workflow_deeplabcut import imports, nwb, plots, synthetic, video
from workflow_deeplabcut.errors import ConfigurationError, InputError


def ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


@pytest.fixture(scope="module")
def rotated_video(raw_root):
    """The synthetic video (128 x 64 after cropping) stored upright, displayed turned by 90 degrees."""
    spec = synthetic.SyntheticSpec(n_frames=20)
    frames = synthetic.render_frames(spec)[:, :, :64]  # 128 high, 64 wide: a visible shape
    folder = raw_root / "rotated"
    folder.mkdir(exist_ok=True)
    plain = synthetic.write_video(folder / "plain.mp4", np.ascontiguousarray(frames), spec.fps)
    turned = folder / "turned.mp4"
    subprocess.run(
        [
            ffmpeg(),
            "-y",
            "-loglevel",
            "error",
            "-display_rotation",
            "90",
            "-i",
            str(plain),
            "-c",
            "copy",
            str(turned),
        ],
        check=True,
    )
    return turned


def test_rotation_gives_the_displayed_size(pipeline, new_session, camera, rotated_video, tmp_path):
    import cv2

    info = video.probe(rotated_video)
    assert (info.width, info.height, info.rotation) == (128, 64, 90)
    capture = cv2.VideoCapture(str(rotated_video))  # what DeepLabCut reads
    ok, frame = capture.read()
    assert ok and frame.shape[:2] == (info.height, info.width)
    model = pipeline.model
    rec = model.VideoRecording.insert_recording(new_session("rot"), 1, camera, [rotated_video])
    model.RecordingInfo.populate(rec)
    row = (model.RecordingInfo & rec).fetch1()
    assert (row["px_width"], row["px_height"], row["rotation"]) == (128, 64, 90)
    # The labeled video is drawn on the frames as displayed.
    tracks = {"p": {"x": np.full(20, 100.0), "y": np.full(20, 10.0), "likelihood": np.ones(20)}}
    out = plots.labeled_video([rotated_video], tracks, tmp_path / "l.mp4", pcutoff=0.5, fps=30.0)
    assert out == 20
    drawn = video.probe(tmp_path / "l.mp4")
    assert (drawn.width, drawn.height) == (128, 64)


def test_variable_frame_rate_times_reach_kinematics_qc_and_nwb(
    pipeline, new_session, camera, raw_root, processed_root
):
    """Frames at irregular times: speeds computed with the real times are constant."""
    model, postprocess, qc = pipeline.model, pipeline.postprocess, pipeline.qc
    rng = np.random.default_rng(5)
    n = 90
    steps = rng.choice([0.02, 0.033, 0.05, 0.1], size=n - 1)
    times = np.round(np.concatenate([[0.0], np.cumsum(steps)]), 3)
    spec = synthetic.SyntheticSpec(n_frames=n)
    folder = raw_root / "vfr"
    folder.mkdir(exist_ok=True)
    path = synthetic.write_video(folder / "vfr.mp4", synthetic.render_frames(spec), 30.0, times=times)
    rec = model.VideoRecording.insert_recording(new_session("vfr"), 1, camera, [path])
    model.RecordingInfo.populate(rec)
    stored = model.RecordingInfo.timestamps(rec)
    np.testing.assert_allclose(stored, times, atol=1e-6)
    # A body part moving at 100 px/s along x, in real time.
    import pandas as pd

    columns = pd.MultiIndex.from_product([["dot"], ["x", "y", "likelihood"]], names=["bodyparts", "coords"])
    frame = pd.DataFrame(np.column_stack([10 + 100 * times, np.full(n, 50.0), np.ones(n)]), columns=columns)
    h5 = synthetic.write_dlc_h5(frame, folder / "vfr_DLC_dot.h5")
    key = imports.import_pose_file(h5, "DeepLabCut", rec, "vfr-dot")
    ds = model.PoseEstimation.get_dataset(key)
    np.testing.assert_allclose(ds.time.values, times, atol=1e-6)
    idx = postprocess.PostprocessParamSet.insert_new_params(
        "raw, px", {"likelihood_threshold": 0.5, "max_gap": 0}
    )
    postprocess.PostprocessTask.generate(key, idx)
    postprocess.CleanedTrajectory.populate(key)
    postprocess.Kinematics.populate(key)
    speed = postprocess.Kinematics.get_dataset({**key, "pp_paramset_idx": idx}).speed.values.ravel()
    np.testing.assert_allclose(speed[np.isfinite(speed)], 100.0, rtol=1e-3)
    with_mean_fps = np.abs(np.diff(10 + 100 * times)) * (n - 1) / times[-1]
    assert np.abs(with_mean_fps - 100).max() > 50  # what a mean rate would have given
    qc.PoseQC.populate(key)
    qc.QCPlots.populate(key)
    assert qc.QCPlots & key
    out = nwb.export_session(
        {k: rec[k] for k in ("subject", "session_datetime")},
        processed_root / "vfr" / "vfr.nwb",
        postprocessed=True,
    )
    from pynwb import NWBHDF5IO

    with NWBHDF5IO(str(out), "r") as io:
        behavior = io.read().processing["behavior"]
        series = behavior["vfr-dot_recording1"].pose_estimation_series["dot"]
        np.testing.assert_allclose(series.timestamps[:], times, atol=1e-6)
        assert series.rate is None


@pytest.mark.dlc
def test_video_name_with_glob_characters(
    pipeline, new_session, camera, synthetic_video, raw_root, model_name
):
    """A video called ``trial[1].mp4`` is analysed by DeepLabCut and its output is found."""
    model = pipeline.model
    folder = raw_root / "brackets"
    folder.mkdir(exist_ok=True)
    path = folder / "trial[1] *?.mp4"
    shutil.copy(synthetic_video, path)
    rec = model.VideoRecording.insert_recording(new_session("glob"), 1, camera, [path])
    model.RecordingInfo.populate(rec)
    key = model.PoseEstimationTask.generate(rec, model_name, task_mode="trigger")
    result = model.PoseEstimation.populate(key, suppress_errors=True)
    assert not result["error_list"], result["error_list"]
    assert len(model.PoseEstimation.BodyPartPosition & key) == len(synthetic.BODY_PARTS)


def test_prefix_with_capitals_is_refused():
    from workflow_deeplabcut import settings

    with pytest.raises(ConfigurationError, match="Try 'lab_dlc_'"):
        settings.check_prefix("Lab_DLC_")
    before = settings.get_settings().prefix
    with pytest.raises(ConfigurationError, match="pg_"):
        settings.configure(prefix="pg_lab_")
    assert settings.get_settings().prefix == before  # a refused value changes nothing
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJ_")}
    env["WORKFLOW_DLC_PREFIX"] = "Lab_DLC_"
    proc = subprocess.run(
        [sys.executable, "-m", "workflow_deeplabcut.cli", "status"],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        env=env,
        timeout=120,
    )
    assert (
        proc.returncode == 1 and "Schema prefix 'Lab_DLC_'" in proc.stderr and "Traceback" not in proc.stderr
    )


@pytest.mark.dlc
def test_relocate_a_moved_model(pipeline, trained, synthetic_project, raw_root, tmp_path):
    from typer.testing import CliRunner

    from workflow_deeplabcut.cli import app

    model = pipeline.model
    first = raw_root / "moving" / "a"
    shutil.copytree(synthetic_project.parent, first)
    model.Model.insert_new_model("moving", first / "config.yaml", shuffle=1, trainingsetindex=0)
    second = raw_root / "moving" / "b"
    first.rename(second)
    with pytest.raises(FileNotFoundError):
        model.Model.project_config({"model_name": "moving"})
    other = raw_root / "moving" / "other"
    shutil.copytree(second, other)
    text = (other / "config.yaml").read_text().replace("- tail", "- nose")
    (other / "config.yaml").write_text(text)
    with pytest.raises(InputError, match="is not the project of model 'moving'.*body parts"):
        model.Model.relocate("moving", other)
    result = CliRunner().invoke(app, ["relocate-model", "moving", str(second / "config.yaml")])
    assert result.exit_code == 0, result.output
    assert (model.Model & {"model_name": "moving"}).fetch1("project_path") == "moving/b"
    assert model.Model.project_config({"model_name": "moving"}) == second / "config.yaml"
    model.ModelEvaluation.populate({"model_name": "moving"})  # DeepLabCut runs from the new place
    assert model.ModelEvaluation & {"model_name": "moving"}


def test_body_part_descriptions_pair_by_name(pipeline):
    body = pipeline.model.BodyPart
    config = {"bodyparts": ["bp_snout", "bp_ear", "bp_tail"], "multianimalproject": False}
    with pytest.raises(InputError, match="lacks"):
        body.insert_from_config(config, {"bp_nose": "misspelt"})
    with pytest.raises(InputError, match="one per body part"):
        body.insert_from_config(config, ["only one"])
    body.insert1({"body_part": "bp_ear", "body_part_description": "already known"})
    new = body.insert_from_config(config, {"bp_tail": "base of the tail", "bp_snout": "tip of the nose"})
    assert new == ["bp_snout", "bp_tail"]
    described = {
        r["body_part"]: r["body_part_description"] for r in (body & "body_part like 'bp_%%'").to_dicts()
    }
    assert described == {
        "bp_snout": "tip of the nose",
        "bp_ear": "already known",
        "bp_tail": "base of the tail",
    }


def test_json_outputs_parse(pipeline):
    """``status --json`` and ``db status --json`` print JSON alone on standard output."""
    import json

    for args in (["status", "--json", "--table", "RecordingInfo"], ["db", "status", "--json"]):
        proc = subprocess.run(
            [sys.executable, "-m", "workflow_deeplabcut.cli", *args],
            capture_output=True,
            text=True,
            cwd=PROJECT_ROOT,
            env=dict(os.environ),
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        json.loads(proc.stdout)  # the connection line went to stderr


def test_errors_are_one_line_unless_debug(tmp_path):
    code = textwrap.dedent(
        """
        import sys
        from workflow_deeplabcut.cli import app
        sys.argv = ["workflow-deeplabcut", *sys.argv[1:]]
        app()
        """
    )
    missing = tmp_path / "nothing-here"
    args = [sys.executable, "-c", code]
    env = dict(os.environ)
    plain = subprocess.run(
        [*args, "ingest", str(missing)], capture_output=True, text=True, env=env, cwd=PROJECT_ROOT
    )
    assert plain.returncode == 1
    assert plain.stderr.strip().splitlines()[-1].startswith("Error: Nothing to ingest at")
    assert "Traceback" not in plain.stderr
    debug = subprocess.run(
        [*args, "--debug", "ingest", str(missing)], capture_output=True, text=True, env=env, cwd=PROJECT_ROOT
    )
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "FileNotFoundError" in debug.stderr
