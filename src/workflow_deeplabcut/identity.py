"""Identity quality of multi-animal tracks: presence, fragments and swaps (pure functions).

An individual is *present* in a frame when at least ``min_parts`` of its body parts have a
likelihood at or above the p-cutoff; its position there is the mean of those parts (its
centroid). A *fragment* is a run of consecutive frames where it is present.

An *identity swap* between individuals ``a`` and ``b`` is a frame ``t`` where both are present,
both were present at an earlier frame ``s`` (the last such frame, at most ``max_gap`` frames
back), and exchanging their labels explains the move much better than keeping them::

    keep = |a_t - a_s| + |b_t - b_s|
    swap = |a_t - b_s| + |b_t - a_s|
    swap < swap_ratio * keep   and   keep > min_swap_px

Two tracks that exchange positions between consecutive frames (what a tracker's identity
error looks like) pass both tests; two animals that merely come close do not, because their
own moves stay small.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Defaults of the identity QC parameters (``qc.IdentityParamSet``).
DEFAULTS = {"min_parts": 1, "swap_ratio": 0.5, "min_swap_px": 5.0, "max_gap": 5}


@dataclass(frozen=True)
class Swap:
    """One identity-swap event."""

    frame: int
    individual_a: str
    individual_b: str
    keep_px: float  # the move when labels are kept
    swap_px: float  # the move when labels are exchanged


def centroids(xy: np.ndarray, likelihood: np.ndarray, pcutoff: float, min_parts: int = 1):
    """Return each individual's centroid and presence per frame.

    Parameters
    ----------
    xy : numpy.ndarray
        ``(frames, individuals, parts, 2)`` positions.
    likelihood : numpy.ndarray
        ``(frames, individuals, parts)``; NaN counts as not seen.
    pcutoff : float
        The likelihood a body part needs to count.
    min_parts : int
        Body parts an individual needs to be present.

    Returns
    -------
    centroid : numpy.ndarray
        ``(frames, individuals, 2)``, NaN where absent.
    present : numpy.ndarray
        ``(frames, individuals)`` booleans.
    """
    seen = (np.nan_to_num(likelihood, nan=-1.0) >= pcutoff) & np.isfinite(xy).all(axis=-1)
    present = seen.sum(axis=-1) >= max(int(min_parts), 1)
    weights = seen[..., None].astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        centroid = np.nansum(np.where(seen[..., None], xy, 0.0), axis=2) / weights.sum(axis=2)
    centroid[~present] = np.nan
    return centroid, present


def fragments(present: np.ndarray) -> int:
    """Count the runs of consecutive ``True`` in a 1-D presence array."""
    p = np.asarray(present, dtype=bool)
    return int(p[0]) + int(np.count_nonzero(p[1:] & ~p[:-1])) if p.size else 0


def find_swaps(
    centroid: np.ndarray,
    present: np.ndarray,
    names: list[str],
    *,
    swap_ratio: float = DEFAULTS["swap_ratio"],
    min_swap_px: float = DEFAULTS["min_swap_px"],
    max_gap: int = DEFAULTS["max_gap"],
) -> list[Swap]:
    """Return the identity swaps between every pair of individuals (see the module docstring).

    Parameters
    ----------
    centroid, present : numpy.ndarray
        From :func:`centroids`.
    names : list of str
        The individuals, in the arrays' order.
    swap_ratio, min_swap_px, max_gap
        The thresholds.

    Returns
    -------
    list of Swap
        Sorted by frame, then by pair.
    """
    events = []
    n = len(names)
    for a in range(n):
        for b in range(a + 1, n):
            both = np.flatnonzero(present[:, a] & present[:, b])
            if both.size < 2:
                continue
            s, t = both[:-1], both[1:]
            near = (t - s) <= max_gap
            s, t = s[near], t[near]
            pa, pb = centroid[:, a], centroid[:, b]
            keep = np.linalg.norm(pa[t] - pa[s], axis=-1) + np.linalg.norm(pb[t] - pb[s], axis=-1)
            swap = np.linalg.norm(pa[t] - pb[s], axis=-1) + np.linalg.norm(pb[t] - pa[s], axis=-1)
            hit = (swap < swap_ratio * keep) & (keep > min_swap_px)
            events += [
                Swap(int(f), names[a], names[b], float(k), float(w))
                for f, k, w in zip(t[hit], keep[hit], swap[hit], strict=True)
            ]
    return sorted(events, key=lambda e: (e.frame, e.individual_a, e.individual_b))


def plant_swaps(array: np.ndarray, frames: list[int], a: int = 0, b: int = 1) -> np.ndarray:
    """Exchange individuals ``a`` and ``b`` from each of ``frames`` on (a tracker's identity errors).

    ``array`` has individuals on its second axis; a copy is returned. Each frame in ``frames``
    is one swap event: the labels flip there and stay flipped until the next.
    """
    out = np.array(array, copy=True)
    for f in sorted(frames):
        out[f:, [a, b]] = out[f:, [b, a]]
    return out
