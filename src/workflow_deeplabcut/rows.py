"""Rows ↔ arrays: the one place that turns table rows into numpy arrays and back.

Schemas, the NWB adapter and QC all read pose arrays through these functions, so the rules
live once: ``<npy>`` references are memory-mapped when the store is a local folder, a key must
match exactly one row, and a non-finite number is stored as NULL (MySQL has no NaN).
"""

from __future__ import annotations

import math

import numpy as np

from .errors import InputError

#: The per-frame arrays of a ``PoseEstimation.BodyPartPosition`` row.
POSITION_ARRAYS = ("x_pos", "y_pos", "likelihood")


def one_key(table, key: dict) -> dict:
    """Return the primary key of the one row of ``table`` that ``key`` matches.

    Raises
    ------
    InputError
        If ``key`` matches no row or several (the message says how many).
    """
    keys = (table & key).keys()
    if len(keys) != 1:
        name = getattr(table, "__name__", type(table).__name__)
        raise InputError(f"{name} has {len(keys)} rows matching {key}; give a key that matches one.")
    return keys[0]


def load_array(ref) -> np.ndarray:
    """Load an ``<npy>`` reference (memory-mapped when the store is a local folder)."""
    if ref is None or isinstance(ref, np.ndarray):
        return ref
    try:
        return ref.load(mmap_mode="r")
    except (AttributeError, NotImplementedError, ValueError):
        return np.asarray(ref)


def nullable(value) -> float | None:
    """Return ``value`` as a float, or None when it is missing or not finite (stored as NULL)."""
    return None if value is None or not math.isfinite(value) else float(value)


def part_arrays(rows: list[dict], attrs=POSITION_ARRAYS) -> dict[tuple[str, str], dict[str, np.ndarray]]:
    """Map ``(individual, body_part)`` to the loaded arrays ``attrs`` of each part-table row."""
    return {(r["individual"], r["body_part"]): {a: load_array(r[a]) for a in attrs} for r in rows}


def tracks(rows: list[dict]) -> dict[str, dict[str, np.ndarray]]:
    """Label each row's ``x``, ``y``, ``likelihood`` by body part (``individual/part`` if several)."""
    rows = sorted(rows, key=lambda r: (r["individual"], r["body_part"]))
    multi = len({r["individual"] for r in rows}) > 1
    return {
        (f"{r['individual']}/{r['body_part']}" if multi else r["body_part"]): {
            "x": load_array(r["x_pos"]),
            "y": load_array(r["y_pos"]),
            "likelihood": load_array(r["likelihood"]),
        }
        for r in rows
    }


def trajectory_frame(scorer: str, rows: list[dict]):
    """Build a DeepLabCut-style DataFrame from ``BodyPartPosition`` rows.

    Columns ``(scorer, [individuals,] bodyparts, coords)``; the ``individuals`` level appears
    when the rows hold several individuals. Indexed by frame.
    """
    import pandas as pd

    rows = sorted(rows, key=lambda r: (r["individual"], r["body_part"]))
    multi = len({r["individual"] for r in rows}) > 1
    arrays, columns = [], []
    for row in rows:
        coords = ["x", "y"] + (["z"] if row.get("z_pos") is not None else []) + ["likelihood"]
        for coord in coords:
            attr = "likelihood" if coord == "likelihood" else f"{coord}_pos"
            arrays.append(load_array(row[attr]))
            individual = (row["individual"],) if multi else ()
            columns.append((scorer, *individual, row["body_part"], coord))
    names = ["scorer", *(["individuals"] if multi else []), "bodyparts", "coords"]
    index = load_array(rows[0]["frame_index"]) if rows else np.array([], dtype=np.int32)
    return pd.DataFrame(
        np.column_stack(arrays) if arrays else np.empty((len(index), 0)),
        index=pd.Index(index, name="frame_index"),
        columns=pd.MultiIndex.from_tuples(columns, names=names),
    )


__all__ = [
    "one_key",
    "load_array",
    "nullable",
    "part_arrays",
    "tracks",
    "trajectory_frame",
    "POSITION_ARRAYS",
]
