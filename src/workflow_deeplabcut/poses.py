"""Pure computations on pose trajectories, built on `movement <https://movement.neuroinformatics.dev>`_.

Nothing here touches the database: the ``postprocess`` and ``qc`` schemas fetch arrays, call
these functions and insert what they return. Trajectories travel as ``movement`` poses datasets
(dims ``time, space, keypoints, individuals``; variables ``position`` and ``confidence``), so
the filtering and kinematics are movement's own functions, not a rewrite of them.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from . import safe_io
from .errors import InputError, PoseFileError

#: Post-processing parameters, their defaults and what they mean.
POSTPROCESS_PARAMS = {
    "likelihood_threshold": (
        "model",
        "drop points whose likelihood is below this; 'model': the model's own pcutoff (config.yaml)",
    ),
    "max_missing": (0.5, "quality gate: flag a trajectory with a body part missing in more of its frames"),
    "max_gap": (
        10,
        "fill gaps of at most this many frames by linear interpolation; 0 = never, None = every gap",
    ),
    "smoothing": ("none", "'none', 'median' (rolling median) or 'savgol' (Savitzky-Golay)"),
    "window": (5, "smoothing window in frames (odd, >= 3)"),
    "polyorder": (2, "Savitzky-Golay polynomial order (< window)"),
    "px_per_cm": (None, "spatial scale; positions and kinematics in cm when set, pixels otherwise"),
    "centroid_body_parts": ("all", "body parts averaged into the centroid ('all' or a list)"),
    "heading_body_parts": (None, "[rear, front]: heading is the direction rear -> front"),
}

#: Formats that :func:`load_external` reads, by the name the CLI and the tables use.
EXTERNAL_SOFTWARE = {
    "DeepLabCut": "DeepLabCut",
    "SLEAP": "SLEAP",
    "LightningPose": "LightningPose",
    "NWB": "NWB",
    "Anipose": "Anipose",  # anipose's 3D CSV (triangulated positions)
}


class PostprocessParamsError(InputError):
    """A post-processing parameter set is invalid; the message names the key and the fix."""


def check_postprocess_params(params: dict) -> dict:
    """Validate post-processing parameters and return them complete, with defaults filled in.

    Parameters
    ----------
    params : dict
        Any keys of :data:`POSTPROCESS_PARAMS`.

    Returns
    -------
    dict
        All keys of :data:`POSTPROCESS_PARAMS`, in canonical form.

    Raises
    ------
    PostprocessParamsError
        Naming the offending key, the value and what would be accepted.
    """
    if not isinstance(params, dict):
        raise PostprocessParamsError(f"Post-processing params must be a dict, not {type(params).__name__}.")
    unknown = set(params) - set(POSTPROCESS_PARAMS)
    if unknown:
        accepted = "; ".join(f"{k} (default {d!r}): {h}" for k, (d, h) in POSTPROCESS_PARAMS.items())
        raise PostprocessParamsError(
            f"Unknown post-processing param(s) {sorted(unknown)}. Accepted: {accepted}."
        )
    p = {k: params.get(k, default) for k, (default, _) in POSTPROCESS_PARAMS.items()}

    def bad(key, why):
        return PostprocessParamsError(f"Post-processing param {key}={p[key]!r}: {why}")

    if p["likelihood_threshold"] != "model":
        if not _is_number(p["likelihood_threshold"]) or p["likelihood_threshold"] < 0:
            raise bad(
                "likelihood_threshold", "give a number >= 0 (e.g. 0.6), or 'model' for the model's pcutoff."
            )
        p["likelihood_threshold"] = float(p["likelihood_threshold"])
    if not _is_number(p["max_missing"]) or not 0 <= p["max_missing"] <= 1:
        raise bad("max_missing", "give a fraction of the frames, from 0 to 1.")
    p["max_missing"] = float(p["max_missing"])
    if p["max_gap"] is not None and (not _is_int(p["max_gap"]) or p["max_gap"] < 0):
        raise bad("max_gap", "give a whole number of frames >= 0, or None to fill every gap.")
    if p["smoothing"] not in ("none", "median", "savgol"):
        raise bad("smoothing", "choose 'none', 'median' or 'savgol'.")
    if not _is_int(p["window"]) or p["window"] < 3 or p["window"] % 2 == 0:
        raise bad("window", "give an odd whole number of frames >= 3.")
    if not _is_int(p["polyorder"]) or not 0 <= p["polyorder"] < p["window"]:
        raise bad("polyorder", f"give a whole number from 0 to window - 1 ({p['window'] - 1}).")
    if p["px_per_cm"] is not None:
        if not _is_number(p["px_per_cm"]) or p["px_per_cm"] <= 0:
            raise bad("px_per_cm", "give the number of pixels per centimetre (> 0), or None.")
        p["px_per_cm"] = float(p["px_per_cm"])
    parts = p["centroid_body_parts"]
    if parts != "all":
        if isinstance(parts, str):
            parts = [parts]
        if not isinstance(parts, list | tuple) or not parts or not all(isinstance(b, str) for b in parts):
            raise bad("centroid_body_parts", "give 'all' or a non-empty list of body part names.")
        p["centroid_body_parts"] = sorted(set(parts))
    heading = p["heading_body_parts"]
    if heading is not None:
        if (
            not isinstance(heading, list | tuple)
            or len(heading) != 2
            or not all(isinstance(b, str) for b in heading)
            or heading[0] == heading[1]
        ):
            raise bad("heading_body_parts", "give two different body parts [rear, front], or None.")
        p["heading_body_parts"] = list(heading)
    return p


def _is_int(value) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, int | float | np.number) and not isinstance(value, bool) and math.isfinite(value)


def check_body_parts(params: dict, available: list[str], where: str) -> None:
    """Raise if the params name body parts that an estimation lacks.

    Parameters
    ----------
    params : dict
        Checked params (:func:`check_postprocess_params`).
    available : list of str
        The estimation's body parts.
    where : str
        What to name in the message (e.g. the estimation's key).
    """
    named = list(params["heading_body_parts"] or [])
    if params["centroid_body_parts"] != "all":
        named += params["centroid_body_parts"]
    missing = sorted(set(named) - set(available))
    if missing:
        raise PostprocessParamsError(
            f"The post-processing params name body part(s) {missing}, which {where} does not have "
            f"(it has {sorted(available)}); use a parameter set with its body parts."
        )


# ------------------------------------------------------------------------------ datasets
def to_dataset(
    positions: dict[tuple[str, str], dict[str, np.ndarray]],
    time: float | np.ndarray | None,
    source_software: str = "DeepLabCut",
    first_frame: int | None = None,
) -> xr.Dataset:
    """Build a movement poses dataset from per-(individual, body part) arrays.

    Parameters
    ----------
    positions : dict
        ``{(individual, body_part): {"x_pos", "y_pos", "likelihood"}}`` (and ``z_pos`` for 3D
        positions); every array has one value per frame.
    time : float, array or None
        The frame rate (``time`` in seconds at that rate), each frame's time in seconds (a
        variable-frame-rate recording), or None (``time`` in frames).
    source_software : str
        Recorded in the dataset's attributes.
    first_frame : int, optional
        For a window of a recording: the recording's frame number of the arrays' first value.
        ``time`` then starts at that frame's time, and ``time``, if frame times, holds the whole
        recording's (they are cut to the window).

    Returns
    -------
    xarray.Dataset
        ``position`` (time, space, keypoints, individuals) and ``confidence``.
    """
    from movement.io import load_poses

    individuals = sorted({i for i, _ in positions})
    parts = sorted({b for _, b in positions})
    first = next(iter(positions.values()))
    n = len(first["x_pos"])
    axes = ("x_pos", "y_pos", "z_pos") if "z_pos" in first else ("x_pos", "y_pos")
    pos = np.full((n, len(axes), len(parts), len(individuals)), np.nan)
    conf = np.full((n, len(parts), len(individuals)), np.nan)
    for (ind, part), arrays in positions.items():
        i, k = individuals.index(ind), parts.index(part)
        for d, axis in enumerate(axes):
            pos[:, d, k, i] = arrays[axis]
        if arrays.get("likelihood") is not None:
            conf[:, k, i] = arrays["likelihood"]
    times = None if time is None or np.isscalar(time) else np.asarray(time, dtype=np.float64)
    if times is not None and first_frame is not None:
        times = times[first_frame : first_frame + n]
    if times is not None and len(times) != n:
        raise InputError(f"{len(times)} frame times were given for {n} frames; they must match.")
    ds = load_poses.from_numpy(
        pos,
        conf,
        individual_names=individuals,
        keypoint_names=parts,
        fps=None if times is not None else time,
        source_software=source_software,
    )
    if times is not None:
        ds = ds.assign_coords(time=times)
        ds.attrs.update(time_unit="seconds", fps=float(1 / np.median(np.diff(times))) if n > 1 else None)
    elif first_frame and time:
        ds = ds.assign_coords(time=ds.time + first_frame / time)
    return ds


def dataset_poses(
    ds: xr.Dataset, single_name: str
) -> tuple[list[tuple[str, str]], tuple[str, ...], np.ndarray]:
    """Lay a movement poses dataset out as a stored pose array.

    Parameters
    ----------
    ds : xarray.Dataset
        A 2D or 3D poses dataset.
    single_name : str
        The name given to the individual when the dataset holds exactly one.

    Returns
    -------
    slots : list of (str, str)
        (individual, body part) per slot, individuals outermost.
    coords : tuple of str
        ``("x", "y", "likelihood")``, or ``("x", "y", "z", "likelihood")`` for 3D data.
    values : numpy.ndarray
        (frames, slots, len(coords)) float64: the positions and the confidence.
    """
    n_space = ds.sizes.get("space", 2)
    if n_space not in (2, 3):
        raise PoseFileError(f"Pose data must be 2D or 3D; this dataset has {n_space} spatial axes.")
    individuals = [str(i) for i in ds.individuals.values]
    names = [single_name] if len(individuals) == 1 else individuals
    parts = [str(p) for p in ds.keypoints.values]
    n = ds.sizes["time"]
    position = ds.position.transpose("time", "individuals", "keypoints", "space").values
    confidence = ds.confidence.transpose("time", "individuals", "keypoints").values
    values = np.empty((n, len(individuals), len(parts), n_space + 1), dtype=np.float64)
    values[..., :n_space] = position
    values[..., n_space] = confidence
    slots = [(name, part) for name in names for part in parts]
    coords = ("x", "y", "z", "likelihood") if n_space == 3 else ("x", "y", "likelihood")
    return slots, coords, values.reshape(n, len(slots), n_space + 1)


def load_external(path: Path, software: str, fps: float | None = None, **kwargs) -> xr.Dataset:
    """Read pose data made by another tool with movement's loaders, running no code from it.

    A DeepLabCut ``.h5`` is read by :func:`~workflow_deeplabcut.safe_io.read_pandas_hdf` (not
    ``pandas.read_hdf``, which unpickles) and handed to movement as a DataFrame; the other
    formats go to movement's loaders, which read them with h5py, pynwb or CSV parsers.

    Parameters
    ----------
    path : Path
        The file: DeepLabCut ``.h5``/``.csv``, SLEAP analysis ``.h5`` or ``.slp``, Lightning
        Pose ``.csv``, or NWB with ndx-pose.
    software : str
        One of :data:`EXTERNAL_SOFTWARE`.
    fps : float, optional
        Frame rate, so the time coordinate is in seconds.
    **kwargs
        Passed to the loader (for NWB: ``processing_module_key``, ``pose_estimation_key``).

    Returns
    -------
    xarray.Dataset
        A movement poses dataset.

    Raises
    ------
    PoseFileError
        If the file is missing or cannot be read as ``software``'s pose data.
    UnsafeFileError
        If reading it would run code.
    """
    from movement.io import load_dataset, load_poses

    if software not in EXTERNAL_SOFTWARE:
        raise PoseFileError(f"Unknown pose software {software!r}; choose one of {sorted(EXTERNAL_SOFTWARE)}.")
    path = Path(path)
    if not path.is_file():
        raise PoseFileError(f"Pose file {path} does not exist; check the path.")
    dlc_file = software == "DeepLabCut" and path.suffix.lower() in (".h5", ".hdf5", ".csv")
    if dlc_file or (path.suffix.lower() in (".h5", ".hdf5") and software == "LightningPose"):
        frame = _read_dlc_style(path)  # an unsafe file is refused as such (UnsafeFileError)
        try:
            slots = None
            if "individuals" in frame.columns.names:
                frame, slots = _as_grid(frame)
            ds = load_poses.from_dlc_style_df(frame, fps=fps, source_software=EXTERNAL_SOFTWARE[software])
        except (ValueError, KeyError, TypeError, IndexError) as err:
            raise PoseFileError(f"{path} could not be read as {software} pose data: {err}") from None
        if slots is not None:
            ds.attrs["file_slots"] = slots  # the file's own (individual, body part) pairs, in order
        return ds
    try:
        return load_dataset(path, source_software=EXTERNAL_SOFTWARE[software], fps=fps, **kwargs)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise PoseFileError(f"{path} could not be read as {software} pose data: {err}") from None


def _read_dlc_style(path: Path) -> pd.DataFrame:
    """Read a DeepLabCut-style ``.h5`` (without unpickling, :mod:`.safe_io`) or ``.csv`` pose file."""
    if path.suffix.lower() != ".csv":
        return safe_io.read_pandas_hdf(path)  # raises UnsafeFileError itself
    with open(path, newline="") as fh:
        fh.readline()
        multi = fh.readline().startswith("individuals")
    header = [0, 1, 2, 3] if multi else [0, 1, 2]
    try:  # round-trip precision: the file's values exactly
        return pd.read_csv(path, header=header, index_col=0, float_precision="round_trip")
    except (ValueError, IndexError) as err:
        raise PoseFileError(f"{path} could not be read as a DeepLabCut pose CSV: {err}") from None


def _as_grid(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """Give a multi-animal frame every individual x body part (NaN where the file has none).

    DeepLabCut's unique body parts belong to the individual ``single`` only; movement needs a
    full grid. Returns the frame and the file's own (individual, body part) pairs, in order, so
    that the cells added here are not stored.
    """
    names = list(frame.columns.names)
    i_ind, i_bp, i_c = names.index("individuals"), names.index("bodyparts"), names.index("coords")
    slots = list(dict.fromkeys((str(c[i_ind]), str(c[i_bp])) for c in frame.columns))
    individuals = list(dict.fromkeys(s[0] for s in slots))
    parts = list(dict.fromkeys(s[1] for s in slots))
    coords = list(dict.fromkeys(str(c[i_c]) for c in frame.columns))
    scorer = frame.columns.get_level_values(0)[0]
    full = pd.MultiIndex.from_product([[scorer], individuals, parts, coords], names=names)
    return (frame if frame.columns.equals(full) else frame.reindex(columns=full)), slots


def anipose_quality(path: Path, body_parts: list[str], unit: str = "mm") -> dict:
    """Read the per-point ``_error`` and ``_ncams`` columns of an anipose 3D CSV.

    Returns
    -------
    dict
        The values of a ``model.PoseEstimation.Triangulated`` row, columns in ``body_parts``
        order; a column anipose did not write is NaN (error) or 0 (cameras).
    """
    import pandas as pd

    frame = pd.read_csv(path)
    n = len(frame)
    error = np.full((n, len(body_parts)), np.nan, dtype=np.float32)
    ncams = np.zeros((n, len(body_parts)), dtype=np.int8)
    for k, part in enumerate(body_parts):
        if f"{part}_error" in frame:
            error[:, k] = frame[f"{part}_error"].to_numpy(dtype=np.float32)
        if f"{part}_ncams" in frame:
            ncams[:, k] = np.nan_to_num(frame[f"{part}_ncams"].to_numpy(dtype=float)).astype(np.int8)
    done = ncams >= 2
    return {
        "reprojection_error": error,
        "n_cameras": ncams,
        "median_reprojection_error": float(np.nanmedian(error[done])) if done.any() else None,
        "fraction_triangulated": float(done.mean()) if done.size else 0.0,
        "unit": unit,
        "warning": "",
    }


def without_jit(func):
    """Run ``func`` with xarray's numbagg acceleration off and bottleneck on.

    numbagg's kernels are compiled by numba on their first call in every process: 12–20 s on
    a 2-core machine before the first median or nan-reduction, on every CLI command and worker
    start. Bottleneck (compiled ahead of time) computes the same statistics, and provides the
    gap filling movement's path length needs.
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with xr.set_options(use_numbagg=False, use_bottleneck=True):
            return func(*args, **kwargs)

    return wrapper


# ------------------------------------------------------------------------------ cleaning
def _valid(position: xr.DataArray) -> xr.DataArray:
    return position.notnull().all("space")


@without_jit
def clean(ds: xr.Dataset, params: dict) -> tuple[xr.DataArray, dict[tuple[str, str], dict[str, int]]]:
    """Filter by likelihood, interpolate short gaps, smooth, and scale to cm.

    Parameters
    ----------
    ds : xarray.Dataset
        A movement poses dataset.
    params : dict
        Checked params (:func:`check_postprocess_params`).

    Returns
    -------
    position : xarray.DataArray
        The cleaned positions, in cm when ``px_per_cm`` is set (attribute ``space_unit``).
    counts : dict
        Per ``(individual, body_part)``: ``n_low_likelihood`` (points removed by the
        threshold), ``n_interpolated`` (points filled), ``n_smoothing_removed`` (points that
        smoothing turned into gaps) and ``n_missing`` (gaps left).
    """
    from movement import filtering

    position = ds.position
    before = _valid(position)
    filtered = filtering.filter_by_confidence(
        position, ds.confidence, threshold=params["likelihood_threshold"]
    )
    after_filter = _valid(filtered)
    if params["max_gap"] == 0:
        filled = filtered
    else:
        filled = filtering.interpolate_over_time(filtered, method="linear", max_gap=params["max_gap"])
    after_fill = _valid(filled)
    if params["smoothing"] == "median":
        # A majority of the window must be present: isolated points are not invented.
        smoothed = filtering.rolling_filter(
            filled, params["window"], statistic="median", min_periods=params["window"] // 2 + 1
        )
        smoothed = smoothed.where(after_fill)
    elif params["smoothing"] == "savgol":
        smoothed = filtering.savgol_filter(
            filled, params["window"], polyorder=params["polyorder"], mode="nearest"
        )
    else:
        smoothed = filled
    after_smooth = _valid(smoothed)
    smoothed = smoothed.where(after_smooth)  # a point is either complete or missing
    unit = ds.attrs.get("space_unit") or "px"
    if params["px_per_cm"] and unit != "px":
        raise PostprocessParamsError(
            f"px_per_cm scales pixels, but these positions are in {unit} already (a 3D "
            "estimation): use a parameter set without px_per_cm."
        )
    if params["px_per_cm"]:
        from movement.transforms import scale

        smoothed = scale(smoothed, factor=1 / params["px_per_cm"], space_unit="cm")
    smoothed.attrs["space_unit"] = "cm" if params["px_per_cm"] else unit

    def count(mask):
        return mask.sum("time").astype(int)

    tallies = {
        "n_low_likelihood": count(before & ~after_filter),
        "n_interpolated": count(after_fill & ~after_filter),
        "n_smoothing_removed": count(after_fill & ~after_smooth),
        "n_missing": count(~after_smooth),
    }
    counts = {}
    for ind in ds.individuals.values:
        for part in ds.keypoints.values:
            counts[(str(ind), str(part))] = {
                name: int(t.sel(individuals=ind, keypoints=part)) for name, t in tallies.items()
            }
    return smoothed, counts


# ------------------------------------------------------------------------------ kinematics
@without_jit
def social_distances(position: xr.DataArray, centroid: xr.DataArray, part_pairs: list) -> dict:
    """Distances between every two individuals, per frame, with movement's ``compute_pairwise_distances``.

    Parameters
    ----------
    position : xarray.DataArray
        ``(time, space, keypoints, individuals)`` positions.
    centroid : xarray.DataArray
        ``(time, space, individuals)`` centroids (same individuals).
    part_pairs : list
        ``[[part_a, part_b], ...]``: each measured from ``part_a`` of one animal to ``part_b``
        of the other, both ways round.

    Returns
    -------
    dict
        ``centroid``: ``{(a, b): distances}``; ``parts``: ``{(a, b, part_a, part_b): distances}``,
        for each pair of individuals ``a < b`` in the given order; float64 arrays per frame.
    """
    from movement.kinematics import compute_pairwise_distances

    names = [str(i) for i in position.individuals.values]
    out = {"centroid": {}, "parts": {}}
    for k, a in enumerate(names):
        for b in names[k + 1 :]:
            between = {a: b}
            out["centroid"][(a, b)] = np.ascontiguousarray(
                compute_pairwise_distances(centroid, "individuals", between).values, dtype=np.float64
            )
            if not part_pairs:
                continue
            matrix = compute_pairwise_distances(position, "individuals", between)  # (time, a's parts, b's)
            for pa, pb in part_pairs:
                for one, other in {(pa, pb), (pb, pa)}:
                    out["parts"][(a, b, one, other)] = np.ascontiguousarray(
                        matrix.sel({a: one, b: other}).values, dtype=np.float64
                    )
    return out


@without_jit
def kinematics(position: xr.DataArray, params: dict) -> xr.Dataset:
    """Velocity, speed, acceleration, centroid, heading and distance travelled.

    Parameters
    ----------
    position : xarray.DataArray
        Cleaned positions (time, space, keypoints, individuals); the time coordinate is in
        seconds or frames, and derivatives are per that unit.
    params : dict
        Checked params: ``centroid_body_parts`` and ``heading_body_parts`` are used.

    Returns
    -------
    xarray.Dataset
        Per body part ``velocity``, ``acceleration`` (time, space, keypoints, individuals),
        ``speed`` (time, keypoints, individuals) and ``path_length`` (keypoints, individuals);
        per individual ``centroid`` (time, space, individuals), ``centroid_speed``,
        ``heading`` (radians, anticlockwise from the image's +x axis as seen on screen; NaN
        when no heading parts are set) and ``distance`` (the centroid's path length).
    """
    from movement.kinematics import compute_acceleration, compute_path_length, compute_speed, compute_velocity

    out = xr.Dataset()
    out["velocity"] = compute_velocity(position)
    out["speed"] = compute_speed(position)
    out["acceleration"] = compute_acceleration(position)
    out["path_length"] = _path_length(position, compute_path_length)
    parts = params["centroid_body_parts"]
    chosen = position if parts == "all" else position.sel(keypoints=parts)
    # Strict mean: the centroid exists only where every chosen part does, so it cannot jump
    # when one part drops out.
    centroid = chosen.mean("keypoints", skipna=False)
    out["centroid"] = centroid
    out["centroid_speed"] = compute_speed(centroid)
    out["distance"] = _path_length(centroid, compute_path_length)
    heading = params["heading_body_parts"]
    if heading:
        rear, front = (position.sel(keypoints=b, drop=True) for b in heading)
        vector = front - rear
        # Image y points down; negate it so angles turn anticlockwise as seen on screen.
        out["heading"] = np.arctan2(-vector.sel(space="y"), vector.sel(space="x"))
    else:
        out["heading"] = xr.full_like(centroid.isel(space=0, drop=True), np.nan)
    out.attrs["space_unit"] = position.attrs.get("space_unit", "px")
    out.attrs["time_unit"] = "s" if position.attrs.get("time_unit") == "seconds" else "frame"
    return out


def _path_length(data: xr.DataArray, compute_path_length) -> xr.DataArray:
    """Path length with movement; all-NaN tracks give NaN instead of a warning storm."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return compute_path_length(data, nan_policy="ffill", nan_warn_threshold=1.0)


# ------------------------------------------------------------------------------ quality control
def longest_run(mask: np.ndarray) -> tuple[int, int]:
    """Return (length, start) of the longest run of True in a 1-D boolean array ((0, -1) if none)."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return 0, -1
    padded = np.concatenate([[False], mask, [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    starts, ends = edges[0::2], edges[1::2]
    i = int(np.argmax(ends - starts))
    return int(ends[i] - starts[i]), int(starts[i])


@without_jit
def qc_metrics(
    x: np.ndarray,
    y: np.ndarray,
    likelihood: np.ndarray,
    pcutoff: float,
    max_jump_px: float,
    z: np.ndarray | None = None,
) -> dict:
    """Quality metrics of one body part's trajectory.

    Parameters
    ----------
    x, y, likelihood : numpy.ndarray
        One value per frame, in pixels (3D: in the calibration's unit, with ``z``).
    pcutoff : float
        Points below this likelihood are low-confidence (a NaN likelihood counts as low).
    max_jump_px : float
        A move of more than this many pixels between two consecutive confident frames is an
        implausible jump (3D: in the calibration's unit).
    z : numpy.ndarray, optional
        The third coordinate of a 3D estimation.

    Returns
    -------
    dict
        ``fraction_below_pcutoff``, ``longest_gap`` (frames), ``longest_gap_start`` (frame,
        -1 if none), ``n_jumps``, ``median_likelihood``.
    """
    likelihood = np.asarray(likelihood, dtype=float)
    low = ~(likelihood >= pcutoff) | ~np.isfinite(x) | ~np.isfinite(y)
    if z is not None:
        low |= ~np.isfinite(z)
    gap, start = longest_run(low)
    step = (
        np.hypot(np.diff(x), np.diff(y))
        if z is None
        else np.sqrt(np.diff(x) ** 2 + np.diff(y) ** 2 + np.diff(z) ** 2)
    )
    both = ~low[1:] & ~low[:-1]
    n = len(likelihood)
    return {
        "fraction_below_pcutoff": float(low.mean()) if n else 0.0,
        "longest_gap": gap,
        "longest_gap_start": start,
        "n_jumps": int(np.count_nonzero(both & (step > max_jump_px))),
        "median_likelihood": float(np.nanmedian(likelihood)) if np.isfinite(likelihood).any() else math.nan,
    }
