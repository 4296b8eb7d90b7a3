"""Exports: one pose estimation in DeepLabCut's file layout, and the pipeline diagram."""

from __future__ import annotations

import shutil
from pathlib import Path

FORMATS = {".csv": "csv", ".h5": "hdf5", ".hdf5": "hdf5"}


def export_trajectory(key: dict, path: str | Path) -> Path:
    """Write one pose estimation as DeepLabCut writes its outputs (``.csv`` or ``.h5``).

    The columns are DeepLabCut's ``scorer/bodyparts/coords`` (the scorer level holds the model
    name); an HDF5 file uses DeepLabCut's key ``df_with_missing``.

    Raises
    ------
    ValueError
        If ``key`` matches no pose estimation or several, or the suffix is not .csv/.h5.
    """
    from .pipeline import model

    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise ValueError(f"{path.name}: choose a .csv or .h5 file name.")
    matches = len(model.PoseEstimation & key)
    if matches == 0:
        raise ValueError(
            f"No pose estimation matches {key}; `workflow-deeplabcut status` lists what is done."
        )
    trajectory = model.PoseEstimation.get_trajectory(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    if FORMATS[path.suffix.lower()] == "csv":
        trajectory.to_csv(path)
    else:
        trajectory.to_hdf(path, key="df_with_missing", mode="w", format="fixed")
    return path


def write_diagram(path: str | Path) -> Path:
    """Draw the whole pipeline: SVG or PNG with Graphviz, or Mermaid text (``.mmd``).

    Without Graphviz's ``dot`` program, an SVG/PNG request writes Mermaid text next to it
    (``<name>.mmd``) instead. Returns the file written.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".svg", ".png", ".mmd"):
        raise ValueError(f"{path.name}: choose .svg, .png or .mmd (Mermaid text).")
    diagram = pipeline_diagram()
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix != ".mmd" and shutil.which("dot") is None:
        path = path.with_suffix(".mmd")
        suffix = ".mmd"
    if suffix == ".mmd":
        path.write_text(diagram.make_mermaid())
    elif suffix == ".svg":
        path.write_text(diagram.svg_string())
    else:
        path.write_bytes(diagram.make_png().getvalue())
    return path


def pipeline_diagram():
    """Return the ``datajoint.Diagram`` of every schema of the pipeline, tables named ``schema.Table``."""
    import datajoint as dj

    from .pipeline import SCHEMAS

    diagram = None
    for module in SCHEMAS.values():
        part = dj.Diagram(module.schema, context=dict(SCHEMAS))  # names read "lab.User", not "module.User"
        diagram = part if diagram is None else diagram + part
    return diagram
