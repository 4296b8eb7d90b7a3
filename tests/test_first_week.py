"""A lab's first week with its own data (issue 17): one ingest and one run, checked configs and
videos, flagged bad models, nothing left behind."""

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import FAST_TRAINING, project_copy

from workflow_deeplabcut import ingest
from workflow_deeplabcut.settings import get_settings, to_relative

pytestmark = pytest.mark.dlc


def write(folder, name, text):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text.strip() + "\n")


def test_one_ingest_one_run_from_files_to_trajectories(
    pipeline, tmp_path, synthetic_project, synthetic_video, raw_root
):
    """The model row names a project whose training is still to run: it waits, then registers.

    The project's own pcutoff (0.4) is the one QC and cleaning apply; the run's summary lists
    the quality gates' warnings apart from errors.
    """
    from typer.testing import CliRunner

    from workflow_deeplabcut import dlc
    from workflow_deeplabcut.cli import app

    config = project_copy(synthetic_project, raw_root / "first-week")
    dlc.edit_config(config, {"pcutoff": 0.4})
    folder = tmp_path / "metadata"
    project = to_relative(config.parent)
    labels = to_relative(next(config.parent.glob("labeled-data/*/CollectedData_*.h5")))
    params = {**FAST_TRAINING, "shuffle": 7, "epochs": 2, "save_epochs": 2}
    write(folder, "devices.csv", "device,modality\nfw-cam,video")
    write(folder, "labs.csv", "lab,lab_name,time_zone\nfw-lab,First Week Lab,Europe/Berlin")
    write(
        folder,
        "subjects.csv",
        "subject,sex,subject_birth_date,species,lab\nfw-m1,F,2025-01-10,Mus musculus,fw-lab",
    )
    write(folder, "sessions.csv", "subject,session_datetime\nfw-m1,2025-07-01 09:00:00")
    write(
        folder,
        "recordings.csv",
        "subject,session_datetime,recording_id,device,file_id,file_path\n"
        f"fw-m1,2025-07-01 09:00:00,1,fw-cam,0,{to_relative(synthetic_video)}",
    )
    write(folder, "training_videosets.csv", f"video_set_id,file_id,file_path\n77,0,{labels}")
    write(
        folder,
        "training_params.yaml",
        f"- {{paramset_idx: 77, paramset_desc: one go, params: {json.dumps(params)}}}",
    )
    write(
        folder, "training_tasks.csv", f"video_set_id,paramset_idx,training_id,project_path\n77,77,1,{project}"
    )
    write(
        folder,
        "models.csv",
        f"model_name,config_path,shuffle,trainingsetindex\nfw-model,{project}/config.yaml,7,0",
    )
    write(
        folder,
        "pose_tasks.csv",
        "subject,session_datetime,recording_id,model_name\nfw-m1,2025-07-01 09:00:00,1,fw-model",
    )
    write(folder, "postprocess_params.yaml", "- {pp_paramset_idx: 77, pp_paramset_desc: median, params: {}}")
    write(
        folder,
        "postprocess_tasks.csv",
        "subject,session_datetime,recording_id,model_name,pp_paramset_idx\n"
        "fw-m1,2025-07-01 09:00:00,1,fw-model,77",
    )
    model = pipeline.model
    plan = ingest.ingest(folder)
    assert plan.counts()["PendingModel"] == 1 and "Model" not in plan.counts()
    assert not model.Model & {"model_name": "fw-model"}
    assert len(model.PendingModel.PoseTask & {"model_name": "fw-model"}) == 1
    assert ingest.ingest(folder).counts() == {}  # again: nothing new, nothing refused

    result = CliRunner().invoke(app, ["run"])
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if "fw-" in line and "warning" not in line]
    assert not errors, result.output
    assert re.search(r"table\s*┃\s*computed\s*┃\s*errors\s*┃\s*warnings", result.output), result.output
    # Quiet: DeepLabCut's output went to one log per job, named in the summary.
    logs = get_settings().processed_data_dir / "logs"
    assert f"DeepLabCut's output: one log per job under {logs}" in result.output
    training_log = next((logs / "ModelTraining").glob("77_77_1.log")).read_text()
    assert "ModelTraining {'video_set_id': 77" in training_log and len(training_log.splitlines()) > 10
    assert not set(training_log.splitlines()[1:]) & set(result.output.splitlines()) - {""}
    key = {"subject": "fw-m1", "model_name": "fw-model"}
    row = (model.Model & {"model_name": "fw-model"}).fetch1()
    assert (row["shuffle"], row["paramset_idx"]) == (7, 77)
    assert (pipeline.train.ModelTraining & {"video_set_id": 77}).fetch1("snapshotindex") == row[
        "snapshotindex"
    ]
    assert len(model.PoseEstimation & key) == 1
    cleaned = (pipeline.postprocess.CleanedTrajectory & key).fetch1()
    qc = (pipeline.qc.PoseQC & key & {"qc_paramset_idx": 0}).fetch1()
    assert cleaned["likelihood_threshold"] == qc["pcutoff_used"] == 0.4  # the model's own
    evaluation = (model.ModelEvaluation & key).fetch1()
    assert bool(evaluation["warning"]) == (evaluation["test_error"] > 0.01 * np.hypot(128, 128))
    assert bool(qc["warning"]) == (qc["fraction_below_pcutoff"] > 0.5)
    missing = max(r["n_missing"] for r in (pipeline.postprocess.CleanedTrajectory.BodyPart & key).to_dicts())
    assert bool(cleaned["warning"]) == (missing > 150)
    for row in (evaluation, qc, cleaned):  # every warning stored is in the run's summary
        assert not row["warning"] or " ".join(row["warning"].split()[:6]) in " ".join(result.output.split())
    trajectory = model.PoseEstimation.get_trajectory(key)
    assert len(trajectory) == model.PoseEstimation.info(key)["nframes"] > 0
    assert ingest.ingest(folder).counts() == {}  # after the run too

    # The NWB file made from it has the species and the lab's time zone: no best-practice violation.
    from pynwb import NWBHDF5IO

    from workflow_deeplabcut import nwb

    path = nwb.export_session({"subject": "fw-m1"}, tmp_path / "fw.nwb")
    with NWBHDF5IO(str(path), "r") as io:
        file = io.read()
        assert file.subject.species == "Mus musculus"
        assert file.session_start_time.isoformat() == "2025-07-01T09:00:00+02:00"
    messages = nwb.inspect(path)
    assert nwb.summary(messages).startswith("0 critical, 0 best-practice violation(s)"), messages


def test_bad_time_zone_is_a_problem(pipeline, tmp_path):
    folder = tmp_path / "metadata"
    write(folder, "labs.csv", "lab,lab_name,time_zone\ntz-lab,TZ,Berlin")
    write(folder, "subjects.csv", "subject,sex,subject_birth_date,lab\ntz-m1,F,2025-01-10,tz-lab2")
    with pytest.raises(ingest.IngestError) as err:
        ingest.ingest(folder)
    text = str(err.value)
    assert "labs.csv:2: time_zone: 'Berlin' is not a time zone; give an IANA name" in text
    assert "subjects.csv:2: lab: unknown Lab {'lab': 'tz-lab2'}; add it to labs.csv" in text
    assert not pipeline.lab.Lab & {"lab": "tz-lab"}


# ------------------------------------------------------------------------ videos that lie
def _truncated(synthetic_video, folder):
    """The synthetic video re-muxed with its index first, then cut: 300 frames in the header."""
    import av

    folder.mkdir(parents=True, exist_ok=True)
    full = folder / "full.mp4"
    with (
        av.open(str(synthetic_video)) as src,
        av.open(str(full), "w", options={"movflags": "faststart"}) as dst,
    ):
        stream = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.size:
                packet.stream = stream
                dst.mux(packet)
    cut = folder / "cut.mp4"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    return full, cut


def test_truncated_video_is_refused_at_registration(
    pipeline, synthetic_video, raw_root, new_session, camera, tmp_path
):
    from workflow_deeplabcut.video import VideoError, probe

    full, cut = _truncated(synthetic_video, raw_root / "truncated")
    assert probe(full).nframes == 300
    with pytest.raises(
        VideoError, match=r"cut\.mp4: its header gives 300 frames but only \d+ are in the file"
    ):
        pipeline.model.VideoRecording.insert_recording(new_session("tr"), 1, camera, [cut])
    assert not pipeline.model.VideoRecording.File & {"file_path": to_relative(cut)}
    folder = tmp_path / "metadata"
    write(folder, "subjects.csv", "subject,sex,subject_birth_date\ntr-m1,F,2025-01-10")
    write(folder, "sessions.csv", "subject,session_datetime\ntr-m1,2025-07-01 09:00:00")
    write(
        folder,
        "recordings.csv",
        "subject,session_datetime,recording_id,device,file_id,file_path\n"
        f"tr-m1,2025-07-01 09:00:00,1,{camera},0,{to_relative(cut)}",
    )
    with pytest.raises(ingest.IngestError, match=r"recordings.csv:2: file_path: .*truncated") as err:
        ingest.ingest(folder)
    assert len(err.value.problems) == 1 and not pipeline.subject.Subject & {"subject": "tr-m1"}


# ------------------------------------------------------------ configs that changed after training
def test_bad_training_fraction_is_refused_at_ingest(pipeline, synthetic_project, raw_root, tmp_path):
    from workflow_deeplabcut import dlc

    config = raw_root / "fraction" / "config.yaml"
    config.parent.mkdir(parents=True)
    text = synthetic_project.read_text()
    config.write_text(text + "\nTrainingFraction:\n- ninety\n" if "TrainingFraction" not in text else text)
    dlc.edit_config(config, {"TrainingFraction": ["ninety"]})
    folder = tmp_path / "metadata"
    write(folder, "training_videosets.csv", "video_set_id,file_id,file_path\n78,0," + to_relative(config))
    write(
        folder,
        "training_params.yaml",
        "- {paramset_idx: 78, paramset_desc: f, params: {shuffle: 1, trainingsetindex: 0}}",
    )
    write(
        folder,
        "training_tasks.csv",
        f"video_set_id,paramset_idx,training_id,project_path\n78,78,1,{to_relative(config.parent)}",
    )
    with pytest.raises(
        ingest.IngestError, match=r"training_tasks.csv:2: project_path: .*TrainingFraction.*'ninety'"
    ):
        ingest.ingest(folder)
    assert not pipeline.train.TrainingTask & {"video_set_id": 78}
    dlc.edit_config(config, {"TrainingFraction": [0.8]})
    write(
        folder,
        "training_params.yaml",
        "- {paramset_idx: 78, paramset_desc: f, params: {shuffle: 1, trainingsetindex: 2}}",
    )
    with pytest.raises(ingest.IngestError, match=r"trainingsetindex 2 is out of range"):
        ingest.ingest(folder)


# --------------------------------------------------------------------------- nothing left behind
def test_quality_gates_name_the_figure_the_gate_and_the_fix():
    from workflow_deeplabcut import quality

    assert quality.model_warning(1.7, (128, 128), 0.01) == ""
    text = quality.model_warning(27.0, (640, 480), 0.01)
    assert text.startswith("test error 27.0 px is 3.4% of the 640x480 frame's diagonal (gate 1.0%, 8.0 px)")
    assert "pretrained weights" in text
    assert quality.model_warning(None, (640, 480), 0.01) == quality.model_warning(27.0, None, 0.01) == ""
    assert quality.estimation_warning(0.5, "snout", 0.4, 0.5) == ""
    assert quality.estimation_warning(1.0, "snout", 0.4, 0.5).startswith(
        "100% of points are below the p-cutoff 0.4 (gate 50%; worst: snout)"
    )
    assert quality.trajectory_warning({"snout": 150, "tail": 10}, 300, 0.4, 0.5) == ""
    assert quality.trajectory_warning({"snout": 300, "tail": 10}, 300, 0.4, 0.5).startswith(
        "snout is missing in 300 of 300 frames (100%, gate 50%) after dropping points below likelihood 0.4"
    )


# --------------------------------------------------------------------------------- delete
def test_delete_a_session_with_its_files(
    pipeline, model_name, synthetic_video, new_session, camera, processed_root
):
    """Dry run lists rows and files and removes nothing; the delete removes both; the model stays."""
    from typer.testing import CliRunner

    from workflow_deeplabcut import processing, storage
    from workflow_deeplabcut.cli import app

    model, pp, qc = pipeline.model, pipeline.postprocess, pipeline.qc
    rec = model.VideoRecording.insert_recording(new_session("del"), 1, camera, [synthetic_video])
    pose = model.PoseEstimationTask.generate(rec, model_name, task_mode="trigger")
    idx = pp.PostprocessParamSet.insert_new_params("delete test", {"max_gap": 0})
    pp.PostprocessTask.generate(pose, idx)
    qc.LabeledVideoTask.insert1({**pose, "labeled_video_idx": 0})
    results = processing.run(restriction={"subject": rec["subject"]}, display_progress=False)
    assert not [r.errors for r in results if r.errors]
    session = {"subject": rec["subject"], "session_datetime": str(rec["session_datetime"])}
    output = processed_root / (model.PoseEstimation & pose).fetch1("output_dir")
    pictures = list(qc.QCPlots.paths({**pose, "qc_paramset_idx": 0}).values())
    labeled = qc.LabeledVideo.path({**pose, "labeled_video_idx": 0})
    arrays = [r["x_pos"].path for r in (pp.CleanedTrajectory.BodyPart & pose).to_dicts()]
    root = Path(storage.get_settings().store_dir)
    assert arrays and all((root / a).exists() for a in arrays)
    store = storage.collect_garbage(dry_run=True, min_age=0)
    outputs = sorted(p.name for p in output.iterdir() if p.is_file())
    assert any(n.endswith(".h5") for n in outputs) and ".workflow_dlc_run.json" in outputs

    args = ["delete", *(f"{k}={v}" for k, v in session.items())]
    dry = CliRunner().invoke(app, [*args, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    flat = "".join(dry.output.split())
    assert "woulddelete1row(s)ofPoseEstimation" in flat and "woulddelete1row(s)ofLabeledVideo" in flat
    assert all("".join(str(p).split()) in flat for p in (*pictures, labeled))
    assert len(model.PoseEstimation & pose) == 1 and labeled.exists() and all(p.exists() for p in pictures)

    done = CliRunner().invoke(app, [*args, "--yes"])
    assert done.exit_code == 0, done.output
    assert not pipeline.session.Session & session and not model.PoseEstimation & pose
    assert not labeled.exists() and not any(p.exists() for p in pictures)
    assert not [p for p in output.glob("*") if p.is_file() and p.name in outputs]
    assert model.Model & {"model_name": model_name}  # upstream rows stay
    assert not [a for a in arrays if (root / a).exists()]
    after = storage.collect_garbage(dry_run=True, min_age=0)
    assert len(after.orphans) <= len(store.orphans)  # no file of the deleted rows left for gc
    bad = CliRunner().invoke(app, [*args, "--yes"])
    assert bad.exit_code == 1 and "no row matching" in bad.output


def test_a_command_says_nothing_but_its_answer(pipeline):
    """No MariaDB or native-type warnings (on the MariaDB run: the real server)."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "workflow_deeplabcut.cli", "status"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stderr
    noise = [line for line in result.stderr.splitlines() if "Warning" in line or "Native type" in line]
    assert not noise, result.stderr
    assert "ModelRegistration" in result.stdout and "warnings" in result.stdout
