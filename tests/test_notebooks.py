"""The notebooks run top to bottom (in order) against this run's embedded database."""

import nbformat
import pytest
from conftest import PROJECT_ROOT
from nbclient import NotebookClient

NOTEBOOKS = sorted((PROJECT_ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb"))
#: element-deeplabcut's and its workflow's notebooks, with only the edits the README's guide lists.
ELEMENT_NOTEBOOKS = sorted((PROJECT_ROOT / "docs" / "element").glob("*.ipynb"))


def test_there_are_six_notebooks():
    assert [p.stem[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04", "05", "06"]


@pytest.mark.dlc
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, pipeline):
    _, text = _run(path)
    if path.stem.startswith("03"):
        errors = [
            float(t.split("ground truth ")[1].split()[0]) for t in text.splitlines() if "ground truth" in t
        ]
        assert len(errors) == 2 and max(errors) < 3
    if path.stem.startswith("04"):
        assert "(nothing: ingest is idempotent)" in text and "problem(s), nothing written" in text
    if path.stem.startswith("06"):
        speeds = [
            line.split("median speed ")[1].split() for line in text.splitlines() if "median speed" in line
        ]
        assert len(speeds) == 2
        for measured, _, _, _, true, _ in speeds:
            assert abs(float(measured) / float(true) - 1) < 0.05, speeds
        assert "nwbinspector critical: 0" in text


def _run(path):
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(
        notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    ).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    return notebook, "".join(o.get("text", "") for o in outputs)


@pytest.mark.dlc
@pytest.mark.parametrize("path", ELEMENT_NOTEBOOKS, ids=[p.stem for p in ELEMENT_NOTEBOOKS])
def test_element_notebook_runs(path, pipeline, monkeypatch):
    """element's notebooks run here with their edits, each marked `# edit:` in a code cell.

    Each runs on a prefix of its own, as in a lab's new database (their keys are the same).
    """
    import os

    prefix = f"{os.environ['WORKFLOW_DLC_PREFIX']}el{ELEMENT_NOTEBOOKS.index(path)}_"
    monkeypatch.setenv("WORKFLOW_DLC_PREFIX", prefix)  # the kernel inherits it
    notebook, text = _run(path)
    sources = "\n".join(c.source for c in notebook.cells if c.cell_type == "code")
    assert "# edit:" in sources
    if path.stem == "tutorial":
        assert "equal to the DeepLabCut 2.x file: True" in text and "engine: tensorflow" in text
    if path.stem == "03-Process":
        errors = [float(t.split(": ")[1].split()[0]) for t in text.splitlines() if "ground truth" in t]
        assert len(errors) == 2 and max(errors) < 3, errors
