"""The specification: the tutorial in ../shared/seed/ runs as written, with its outputs."""

import ast
import os
import re

import pytest
from conftest import PROJECT_ROOT

SEED_DIR = PROJECT_ROOT.parent / "shared" / "seed"

# The tutorial's code cells, verbatim; test_cells_are_the_seeds checks each is in the seed.
CELLS = [
    "import os\nif os.path.basename(os.getcwd())=='notebooks': os.chdir('..')\n"
    "assert os.path.basename(os.getcwd())=='workflow-deeplabcut', (\"Please move to the \"\n"
    '+ "workflow directory")',
    "import datajoint as dj\nfrom workflow_deeplabcut.pipeline import lab, subject, session, train, model",
    "out['schemas'] = dj.list_schemas()",
    "out['tables'] = train.schema.list_tables()",
    "out['diagram_train'] = dj.Diagram(train)",
    "out['diagram_model'] = dj.Diagram(model) - 1",
    "out['files'] = model.VideoRecording.File()",
    "out['heading'] = model.Model.heading",
    "out['task'] = train.TrainingTask.describe()",
    "out['diagram_elements'] = dj.Diagram(lab) + dj.Diagram(subject) + dj.Diagram(session)",
    "out['session'] = session.Session.describe()",
]


@pytest.fixture(scope="module")
def seed_text():
    files = sorted(SEED_DIR.glob("*.txt"))
    if not files:
        pytest.fail(f"No seed tutorial found in {SEED_DIR}")
    return files[0].read_text()


@pytest.fixture(scope="module")
def out(pipeline, tmp_path_factory):
    """Run the cells in a folder named like the tutorial expects; collect their values."""
    cwd = tmp_path_factory.mktemp("seed") / "workflow-deeplabcut"
    cwd.mkdir()
    before = os.getcwd()
    os.chdir(cwd)
    namespace = {"out": {}}
    try:
        for cell in CELLS:
            exec(compile(cell, "<seed>", "exec"), namespace)
    finally:
        os.chdir(before)
    return namespace["out"] | {"namespace": namespace}


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def test_cells_are_the_seeds(seed_text):
    for cell in CELLS:
        code = cell.split("] = ", 1)[-1] if cell.startswith("out[") else cell
        assert _norm(code) in _norm(seed_text), code


def test_list_schemas(out):
    prefix = os.environ["WORKFLOW_DLC_PREFIX"]
    for name in ("lab", "subject", "session", "train", "model"):
        assert prefix + name in out["schemas"]


def test_train_tables_exactly(out, seed_text):
    expected = ast.literal_eval(re.search(r"\['#training_param_set'[^\]]*\]", seed_text).group(0))
    assert out["tables"] == expected


def test_diagrams(out, pipeline):
    train_nodes = {n for n in out["diagram_train"].nodes_to_show}
    assert len(train_nodes) == 5
    model_tables = [
        pipeline.model.VideoRecording,
        pipeline.model.Model,
        pipeline.model.PoseEstimation,
        pipeline.model.RecordingInfo,
        pipeline.model.ModelEvaluation,
    ]
    shown = out["diagram_model"].nodes_to_show
    assert {t.full_table_name for t in model_tables} <= shown
    # "- 1" adds the direct upstream tables: the session and the training parameters.
    assert pipeline.session.Session.full_table_name in shown
    assert pipeline.train.TrainingParamSet.full_table_name in shown
    mermaid = out["diagram_train"].make_mermaid()
    assert "TrainingTask" in mermaid and "ModelTraining" in mermaid
    assert pipeline.subject.Subject.full_table_name in out["diagram_elements"].nodes_to_show


def test_video_recording_file_columns(out, seed_text):
    expected = re.search(r"subject \| session_datetime \| recording_id \| file_id \| file_path", seed_text)
    assert expected
    assert list(out["files"].heading.names) == [
        "subject",
        "session_datetime",
        "recording_id",
        "file_id",
        "file_path",
    ]
    assert len(out["files"]) == 0 or out["files"].heading.primary_key[:3] == [
        "subject",
        "session_datetime",
        "recording_id",
    ]


def test_model_heading_order(out, seed_text):
    heading_text = seed_text.rsplit("model.Model.heading", 1)[1].split("train.TrainingTask")[0]
    seed_names = re.findall(r"(?:^|\s|#\s)(\w+)(?:=\S*)?\s:\s", heading_text)
    ours = [n for n in out["heading"].names if n != "engine"]
    assert ours == seed_names
    assert out["heading"].primary_key == ["model_name"]
    assert out["heading"].attributes["engine"].default.strip('"') == "pytorch"
    assert out["heading"].attributes["model_prefix"].default == '""'


def test_training_task_describe(out, seed_text):
    match = re.search(r"'(# Specification for a DLC model training instance\\n.*?)'\n", seed_text)
    expected = match.group(1).encode().decode("unicode_escape")
    # DataJoint 2 shows core types: the tutorial's ``int`` is ``int32``.
    assert _norm(out["task"]) == _norm(expected.replace(": int ", ": int32 "))


def test_session_describe(out, seed_text):
    expected = re.search(r"'(-> subject\.Subject\\n.*?)'", seed_text).group(1)
    assert _norm(out["session"]) == _norm(expected.encode().decode("unicode_escape"))
