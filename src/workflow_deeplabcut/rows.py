"""Rows ↔ arrays: the one place that turns table rows into numpy arrays and back.

Schemas, the NWB adapter and QC all read pose arrays through these functions, so the rules
live once: ``<npy>`` references are memory-mapped when the store is a local folder, a key must
match exactly one row, and a non-finite number is stored as NULL (MySQL has no NaN).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import InputError

#: How :meth:`PoseWindow.arrays` names each coordinate's array.
_NAMES = {"x": "x_pos", "y": "y_pos", "z": "z_pos", "likelihood": "likelihood"}


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


@dataclass
class PoseWindow:
    """Frames ``start`` to ``start + nframes`` of one pose estimation, for some of its slots.

    Attributes
    ----------
    values : numpy.ndarray
        (frames, slots, coords), a view of the stored array (memory-mapped from a local
        store: only the frames and slots used are read from disk).
    slots : list of (str, str)
        (individual, body part) of each slot, in stored order.
    coords : tuple of str
        ``x, y[, z], likelihood``.
    start : int
        The first frame's number.
    """

    values: np.ndarray
    slots: list[tuple[str, str]]
    coords: tuple[str, ...]
    start: int = 0

    @property
    def nframes(self) -> int:
        """Number of frames in the window."""
        return int(self.values.shape[0])

    @property
    def multi(self) -> bool:
        """Whether the slots belong to several individuals."""
        return len({i for i, _ in self.slots}) > 1

    def arrays(self) -> dict[tuple[str, str], dict[str, np.ndarray]]:
        """Map (individual, body part) to its ``x_pos``, ``y_pos`` (``z_pos``), ``likelihood`` views."""
        return {
            slot: {_NAMES[c]: self.values[:, k, j] for j, c in enumerate(self.coords)}
            for k, slot in enumerate(self.slots)
        }

    def tracks(self, axes: tuple[str, ...] = ("x", "y")) -> dict[str, dict[str, np.ndarray]]:
        """Label each slot's ``axes`` (``x``, ``y``; ``z`` too for 3D) and ``likelihood`` by body part.

        Labels are the body part, or ``individual/part`` when there are several individuals.
        """
        multi = self.multi
        return {
            (f"{ind}/{part}" if multi else part): {
                **{a: self.values[:, k, self.coords.index(a)] for a in axes},
                "likelihood": self.values[:, k, self.coords.index("likelihood")],
            }
            for k, (ind, part) in enumerate(self.slots)
        }

    def frame(self, scorer: str):
        """Return a DeepLabCut-style DataFrame (a copy), indexed by frame number.

        Columns ``(scorer, [individuals,] bodyparts, coords)`` in stored order; the
        ``individuals`` level appears when the slots hold several individuals.
        """
        import pandas as pd

        multi = self.multi
        columns = [
            (scorer, *((ind,) if multi else ()), part, coord)
            for ind, part in self.slots
            for coord in self.coords
        ]
        names = ["scorer", *(["individuals"] if multi else []), "bodyparts", "coords"]
        n = self.nframes
        return pd.DataFrame(
            np.array(self.values.reshape(n, -1), dtype=np.float64),
            index=pd.RangeIndex(self.start, self.start + n, name="frame_index"),
            columns=pd.MultiIndex.from_tuples(columns, names=names),
        )


def frame_range(n: int, start=None, stop=None) -> tuple[int, int]:
    """Check a window of frames ``range(start, stop)`` of an ``n``-frame recording; return it.

    Raises
    ------
    InputError
        If the window is empty or leaves the recording.
    """
    first = 0 if start is None else int(start)
    last = n if stop is None else int(stop)
    whole = start is None and stop is None
    if not (0 <= first <= last <= n and (first < last or whole)):
        raise InputError(
            f"Frames {first} to {last} are not within this recording's 0 to {n}; "
            f"give 0 <= start < stop <= {n}."
        )
    return first, last


def pose_window(poses, parts: list[dict], coords: str, start=None, stop=None, body_parts="all") -> PoseWindow:
    """Cut a window out of a stored pose array.

    Parameters
    ----------
    poses : NpyRef or numpy.ndarray
        The estimation's (frames, slots, coords) array.
    parts : list of dict
        Its ``BodyPartPosition`` rows (``individual``, ``body_part``, ``slot``).
    coords : str
        The estimation's ``coords`` (comma-separated).
    start, stop : int, optional
        Frame numbers, as in ``range(start, stop)``; default the whole recording.
    body_parts : "all", str or list of str
        Which body parts (of every individual) to keep.

    Raises
    ------
    InputError
        If a body part is unknown or the frame range is empty or outside the recording.
    """
    parts = sorted(parts, key=lambda r: r["slot"])
    if body_parts != "all":
        wanted = [body_parts] if isinstance(body_parts, str) else list(body_parts)
        known = {r["body_part"] for r in parts}
        unknown = set(wanted) - known
        if unknown:
            raise InputError(f"Unknown body part(s) {sorted(unknown)}; this estimation has {sorted(known)}.")
        parts = [r for r in parts if r["body_part"] in set(wanted)]
    values = load_array(poses)
    first, last = frame_range(int(values.shape[0]), start, stop)
    values = values[first:last]
    slots = [r["slot"] for r in parts]
    if slots != list(range(values.shape[1])):
        contiguous = slots == list(range(slots[0], slots[-1] + 1)) if slots else False
        values = values[:, slots[0] : slots[-1] + 1] if contiguous else values[:, slots]
    return PoseWindow(
        values, [(r["individual"], r["body_part"]) for r in parts], tuple(coords.split(",")), first
    )


__all__ = [
    "one_key",
    "load_array",
    "nullable",
    "PoseWindow",
    "pose_window",
    "frame_range",
]
