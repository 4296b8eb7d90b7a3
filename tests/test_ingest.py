"""Ingest from files: everything checked first, all problems reported, one transaction, idempotent."""

import json

import pytest

from workflow_deeplabcut import ingest
from workflow_deeplabcut.settings import to_relative


def write(folder, name, text):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text.strip() + "\n")


@pytest.fixture
def example(tmp_path, synthetic_project, synthetic_video, trained, model_name):
    """A complete, valid set of files, the README's example with this run's paths."""
    folder = tmp_path / "metadata"
    project = to_relative(synthetic_project.parent)
    video = to_relative(synthetic_video)
    labels = to_relative(next(synthetic_project.parent.glob("labeled-data/*/CollectedData_*.h5")))
    write(folder, "devices.csv", "device,modality,description\ntop-cam,video,overhead camera")
    write(
        folder,
        "subjects.csv",
        """
subject,sex,subject_birth_date,subject_description
ing-m1,F,2025-01-10,first mouse
ing-m2,M,2025-02-11,
""",
    )
    write(
        folder,
        "sessions.csv",
        """
subject,session_datetime,session_note
ing-m1,2025-06-01 10:00:00,open field day 1
ing-m2,2025-06-02 11:30:00,
""",
    )
    write(
        folder,
        "recordings.csv",
        f"""
subject,session_datetime,recording_id,device,file_id,file_path
ing-m1,2025-06-01 10:00:00,1,top-cam,0,{video}
ing-m2,2025-06-02 11:30:00,1,top-cam,0,{video}
""",
    )
    write(folder, "training_videosets.csv", f"video_set_id,file_id,file_path\n70,0,{labels}")
    write(
        folder,
        "training_params.yaml",
        """
- paramset_idx: 70
  paramset_desc: resnet10t, 5 epochs
  params: {shuffle: 3, trainingsetindex: 0, epochs: 5, backbone: resnet10t, device: cpu}
""",
    )
    write(
        folder, "training_tasks.csv", f"video_set_id,paramset_idx,training_id,project_path\n70,70,1,{project}"
    )
    write(
        folder,
        "models.csv",
        f"""
model_name,config_path,shuffle,trainingsetindex,model_description,params
ing-model,{project}/config.yaml,1,0,registered from a file,"{{""snapshotindex"": 0}}"
""",
    )
    write(
        folder,
        "pose_tasks.csv",
        """
subject,session_datetime,recording_id,model_name,task_mode,params
ing-m1,2025-06-01 10:00:00,1,ing-model,trigger,"{""batch_size"": 4}"
ing-m2,2025-06-02 11:30:00,1,ing-model,trigger,
""",
    )
    write(
        folder,
        "postprocess_params.yaml",
        """
- pp_paramset_idx: 70
  pp_paramset_desc: median 5, 12.5 px/cm
  params: {smoothing: median, window: 5, px_per_cm: 12.5, heading_body_parts: [tail, head]}
""",
    )
    write(
        folder,
        "postprocess_tasks.csv",
        """
subject,session_datetime,recording_id,model_name,pp_paramset_idx
ing-m1,2025-06-01 10:00:00,1,ing-model,70
ing-m2,2025-06-02 11:30:00,1,ing-model,70
""",
    )
    return folder


def test_ingest_then_reingest_is_a_no_op(pipeline, example):
    plan = ingest.ingest(example)
    counts = plan.counts()
    assert counts == {
        "Device": 1,
        "Subject": 2,
        "Session": 2,
        "SessionNote": 1,
        "VideoRecording": 2,
        "File": 3,
        "VideoSet": 1,
        "TrainingParamSet": 1,
        "TrainingTask": 1,
        "PoseEstimationTask": 2,
        "PostprocessParamSet": 1,
        "PostprocessTask": 2,
        "Model": 1,
    }
    pp = pipeline.postprocess
    assert (pp.PostprocessParamSet & {"pp_paramset_idx": 70}).fetch1("pp_params")["px_per_cm"] == 12.5
    assert len(pp.PostprocessTask & {"model_name": "ing-model"}) == 2
    model = pipeline.model
    assert (model.Model & {"model_name": "ing-model"}).fetch1("shuffle") == 1
    task = (model.PoseEstimationTask & {"subject": "ing-m1"}).fetch1()
    assert task["pose_estimation_params"] == {"batch_size": 4} and task["task_mode"] == "trigger"
    assert (pipeline.train.TrainingParamSet & {"paramset_idx": 70}).fetch1("params")["epochs"] == 5
    again = ingest.ingest(example)
    assert again.counts() == {} and again.skipped >= 18


def test_every_problem_reported_nothing_written(pipeline, example, tmp_path, raw_root):
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in example.iterdir():
        (bad / f.name).write_text(f.read_text())
    write(
        bad,
        "subjects.csv",
        """
subject,sex,subject_birth_date
bad-m1,X,2025-13-40
bad-m2,F,2025-01-01
bad-m2,M,2025-01-01
,F,2025-01-01
""",
    )
    write(
        bad,
        "sessions.csv",
        "subject,session_datetime\nbad-m1,2025-06-01 10:00:00\nnobody,2025-06-01 10:00:00",
    )
    (tmp_path / "outside.mp4").write_bytes(b"x")
    write(
        bad,
        "recordings.csv",
        f"""
subject,session_datetime,recording_id,device,file_id,file_path
bad-m1,2025-06-01 10:00:00,abc,top-cam,0,{tmp_path / "outside.mp4"}
bad-m1,2025-06-01 10:00:00,2,no-such-cam,0,missing.mp4
""",
    )
    write(
        bad,
        "postprocess_params.yaml",
        """
- pp_paramset_idx: 71
  pp_paramset_desc: even window
  params: {smoothing: median, window: 4}
""",
    )
    write(
        bad,
        "postprocess_tasks.csv",
        """
subject,session_datetime,recording_id,model_name,pp_paramset_idx
ing-m1,2025-06-01 10:00:00,1,ing-model,99
ing-m1,2025-06-01 10:00:00,7,ing-model,70
""",
    )
    tables = [
        pipeline.postprocess.PostprocessParamSet,
        pipeline.subject.Subject,
        pipeline.session.Session,
        pipeline.model.VideoRecording,
        pipeline.lab.Device,
        pipeline.model.Model,
        pipeline.train.TrainingParamSet,
    ]
    before = [len(t()) for t in tables]
    with pytest.raises(ingest.IngestError) as info:
        ingest.ingest(bad)
    text = str(info.value)
    expected = [
        "subjects.csv:2: sex: 'X' is not one of M, F, U",
        "subjects.csv:2: subject_birth_date: '2025-13-40' is not a date YYYY-MM-DD",
        "subjects.csv:4: Subject {'subject': 'bad-m2'} appears twice with different content",
        "subjects.csv:5: subject: missing value",
        "sessions.csv:3: subject: unknown Subject {'subject': 'nobody'}; add it to subjects.csv",
        "recordings.csv:2: recording_id: 'abc' is not an integer",
        "recordings.csv:2: file_path: ",  # outside the roots
        "recordings.csv:3: device: unknown Device {'device': 'no-such-cam'}; add it to devices.csv",
        "recordings.csv:3: file_path: missing.mp4 was not found under any data root",
        "postprocess_params.yaml:1: params: Post-processing param window=4: give an odd",
        "postprocess_tasks.csv:2: pp_paramset_idx: unknown PostprocessParamSet {'pp_paramset_idx': 99}",
        "postprocess_tasks.csv:3: model_name: unknown PoseEstimationTask",
    ]
    for line in expected:
        assert line in text, (line, text)
    assert "outside the data roots" in text
    assert [len(t()) for t in tables] == before


def test_conflict_with_database_and_cli(pipeline, example, tmp_path):
    from typer.testing import CliRunner

    from workflow_deeplabcut.cli import app

    ingest.ingest(example)
    changed = tmp_path / "changed"
    write(changed, "subjects.csv", "subject,sex,subject_birth_date\ning-m1,M,2025-01-10")
    result = CliRunner().invoke(app, ["ingest", str(changed)])
    assert result.exit_code == 1
    assert "subjects.csv:2: sex: Subject {'subject': 'ing-m1'} exists with sex='F', not 'M'" in result.output
    ok = CliRunner().invoke(app, ["ingest", str(example), "--dry-run"])
    assert ok.exit_code == 0 and "would insert: nothing" in ok.output, ok.output
    assert json.loads(json.dumps(ingest.find_files(example), default=str))


# ----------------------------------------------------------------- nothing dropped in silence
def problems_of(folder) -> str:
    with pytest.raises(ingest.IngestError) as info:
        ingest.ingest(folder)
    return str(info.value)


def test_misspelt_file_and_columns_are_problems(pipeline, tmp_path):
    folder = tmp_path / "typos"
    write(folder, "session.csv", "subject,session_datetime\nt-m1,2025-06-01 10:00:00")
    text = problems_of(folder)
    assert "session.csv: unknown file; did you mean sessions.csv?" in text
    (folder / "session.csv").unlink()
    write(
        folder,
        "subjects.csv",
        "subjcet,sex,subject_birth_date,colour\nt-m1,F,2025-01-10,brown\nt-m2,F,2025-01-10,x,extra",
    )
    text = problems_of(folder)
    assert "subjects.csv:1: subjcet: unknown column; did you mean 'subject'?" in text
    assert "subjects.csv:1: colour: unknown column" in text
    assert "subjects.csv:3: this line has 1 more field(s) than the header: ['extra']" in text
    assert not pipeline.subject.Subject & "subject like 't-m%%'"


def test_bom_yaml_text_and_unicode_are_kept(pipeline, tmp_path):
    folder = tmp_path / "kept"
    folder.mkdir()
    # Excel's "CSV UTF-8" starts with a byte-order mark.
    (folder / "devices.csv").write_bytes(
        "device,modality,description\r\nbom-cam,video,Kamera µ-Objektiv 🐭\r\n".encode("utf-8-sig")
    )
    write(
        folder,
        "subjects.yaml",
        """
- subject: no
  sex: F
  subject_birth_date: 2025-01-10
  subject_nickname: 007
  subject_description: yes
""",
    )
    result = ingest.ingest(folder)
    assert result.counts() == {"Device": 1, "Subject": 1}
    device = (pipeline.lab.Device & {"device": "bom-cam"}).fetch1()
    assert device["modality"] == "video" and device["description"] == "Kamera µ-Objektiv 🐭"
    subject = (pipeline.subject.Subject & {"subject": "no"}).fetch1()
    assert (subject["subject_nickname"], subject["subject_description"]) == ("007", "yes")
    assert ingest.ingest(folder).counts() == {}


def test_values_the_database_would_change_or_refuse(pipeline, tmp_path):
    folder = tmp_path / "values"
    long_name = "m" * 33
    write(
        folder,
        "subjects.csv",
        f"""
subject,sex,subject_birth_date,subject_description
{long_name},F,2025-01-10,
v-m1,F,2025-01-10,
""",
    )
    write(
        folder,
        "sessions.csv",
        """
subject,session_datetime
v-m1,2025-06-01 10:00:00+02:00
v-m1,2025-06-01T10:00:00Z
v-m1,2025-06-01 10:00:00.250
v-m1,2025-06-01
""",
    )
    write(folder, "devices.csv", "device,modality\nv-cam,video")
    (folder / "devices.csv").write_text("device,modality,description\nv-cam,video,nul\x00byte\n")
    write(
        folder,
        "pose_tasks.csv",
        """
subject,session_datetime,recording_id,model_name,task_mode
v-m1,2025-06-01 10:00:00,2147483648,x,trigger
v-m1,2025-06-01 10:00:00,1,x,analyse
""",
    )
    text = problems_of(folder)
    assert f"subjects.csv:2: subject: '{long_name}'" in text and "33 characters long; at most 32 fit" in text
    assert "sessions.csv:2: session_datetime: '2025-06-01 10:00:00+02:00' has a time zone" in text
    assert "sessions.csv:3: session_datetime: '2025-06-01T10:00:00Z' has a time zone" in text
    assert "sessions.csv:4: session_datetime: '2025-06-01 10:00:00.250' has fractions of a second" in text
    assert "sessions.csv:5: session_datetime: '2025-06-01' is not a date and time" in text
    assert "devices.csv:2: description: 'nul\\x00byte' contains a NUL byte" in text
    assert "pose_tasks.csv:2: recording_id: 2147483648 is out of range" in text
    assert "pose_tasks.csv:3: task_mode: 'analyse' is not one of load, trigger" in text
    assert not pipeline.subject.Subject & {"subject": "v-m1"}


def test_cli_restrictions_are_checked(pipeline):
    from typer.testing import CliRunner

    from workflow_deeplabcut import processing
    from workflow_deeplabcut.cli import app

    runner = CliRunner()
    typo = runner.invoke(app, ["run", "--table", "RecordingInfo", "-k", "subjet=m1"])
    assert typo.exit_code == 1
    assert "No selected table has the attribute 'subjet'" in typo.output and "subject" in typo.output
    wrong = runner.invoke(app, ["run", "--table", "PoseEstimation", "-k", "recording_id=one"])
    assert wrong.exit_code == 1 and "recording_id='one': 'one' is not an integer" in wrong.output
    when = runner.invoke(app, ["retry", "-k", "session_datetime=yesterday"])
    assert when.exit_code == 1 and "is not a date and time" in when.output
    typed = processing.check_restriction(
        processing.select_tables(["PoseEstimation"]),
        {"recording_id": "3", "session_datetime": "2025-01-01 12:00:00"},
    )
    assert typed["recording_id"] == 3 and typed["session_datetime"].year == 2025
    unknown = runner.invoke(app, ["export-trajectory", "modle_name=x", "-o", "x.csv"])
    assert unknown.exit_code == 1 and "PoseEstimation has no attribute 'modle_name'" in unknown.output
