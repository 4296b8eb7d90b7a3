"""What the dashboard shows, as plain Python data: one function per page, no HTTP here.

Every function only reads (the dashboard's connection is read-only, see
:func:`workflow_deeplabcut.dashboard.app.make_read_only`). Arrays are read through
:mod:`workflow_deeplabcut.rows`; long series are reduced by :func:`minmax_downsample` before
they leave the server.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass

import numpy as np

from ..rows import load_array

#: A body part (or an estimation) is flagged when more of its frames than this are below p-cutoff.
FLAG_BELOW_PCUTOFF = 0.2
#: Sessions per page of the sessions list.
PAGE_SIZE = 50
#: Columns the sessions list can be sorted by.
SESSION_SORTS = ("subject", "session_datetime", "n_recordings", "n_estimations", "worst_below_pcutoff")
#: Buckets of the trajectory plot: each series is sent as at most twice this many points.
DEFAULT_BUCKETS = 1000


class NotFound(LookupError):
    """A key in a URL names no row."""


# ------------------------------------------------------------------------------ keys in URLs
def parse_session_key(params) -> dict:
    """Read ``subject`` and ``session_datetime`` (ISO 8601) from query parameters.

    Raises
    ------
    NotFound
        If either is missing or the date is not ISO 8601.
    """
    subject, when = params.get("subject"), params.get("session_datetime")
    if not subject or not when:
        raise NotFound("a session is named by subject and session_datetime")
    try:
        moment = dt.datetime.fromisoformat(when)
    except ValueError:
        raise NotFound(f"session_datetime {when!r} is not an ISO 8601 date and time") from None
    return {"subject": subject, "session_datetime": moment}


def parse_estimation_key(params) -> dict:
    """Read a pose estimation's key (session, ``recording_id``, ``model_name``) from query parameters."""
    key = parse_session_key(params)
    try:
        recording = int(params.get("recording_id", ""))
    except ValueError:
        raise NotFound("recording_id must be a whole number") from None
    if not params.get("model_name"):
        raise NotFound("a pose estimation is named by its session, recording_id and model_name")
    return {**key, "recording_id": recording, "model_name": params["model_name"]}


def url_params(key: dict) -> dict:
    """Return the query parameters that name ``key`` (dates in ISO 8601)."""
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in key.items()}


# ------------------------------------------------------------------------------ overview
def overview(max_errors: int = 20) -> dict:
    """Per computed table: done, pending, reserved and failed; live workers; the latest errors."""
    from .. import processing

    tables = processing.status()
    errors = sorted(
        ({"table": row["table"], **error} for row in tables for error in row["errors"]),
        key=lambda e: str(e.get("when") or ""),
        reverse=True,
    )[:max_errors]
    return {
        "tables": [
            {k: row[k] for k in ("table", "done", "pending", "reserved")} | {"errors": len(row["errors"])}
            for row in tables
        ],
        "workers": processing.workers(),
        "errors": errors,
        "generated": dt.datetime.now().isoformat(timespec="seconds"),
    }


# ------------------------------------------------------------------------------ sessions list
@dataclass
class SessionFilter:
    """The sessions list's filters, sort order and page."""

    subject: str = ""
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    model: str = ""
    flagged: bool = False
    sort: str = "session_datetime"
    descending: bool = True
    page: int = 1

    @classmethod
    def from_params(cls, params) -> SessionFilter:
        """Read the filters from query parameters; unreadable values fall back to the defaults."""

        def date(name):
            try:
                return dt.date.fromisoformat(params.get(name, "")) if params.get(name) else None
            except ValueError:
                return None

        sort = params.get("sort", "session_datetime")
        try:
            page = max(1, int(params.get("page", 1)))
        except ValueError:
            page = 1
        return cls(
            subject=params.get("subject", "").strip(),
            date_from=date("date_from"),
            date_to=date("date_to"),
            model=params.get("model", "").strip(),
            flagged=params.get("flagged", "") in ("1", "on", "true"),
            sort=sort if sort in SESSION_SORTS else "session_datetime",
            descending=params.get("order", "desc") != "asc",
            page=page,
        )


def sessions(filters: SessionFilter) -> dict:
    """One row per session: recordings, estimations, models and the worst QC fraction.

    Returns
    -------
    dict
        ``rows`` (this page), ``total`` (matching sessions), ``page``, ``pages``,
        ``subjects`` and ``models`` (for the filter menus).
    """
    import pandas as pd

    from ..pipeline import model, qc, session

    frame = pd.DataFrame(session.Session.to_dicts(), columns=["subject", "session_datetime"])
    frame["session_datetime"] = pd.to_datetime(frame["session_datetime"])  # also when there is none
    session_cols = ["subject", "session_datetime"]
    recordings = pd.DataFrame(model.VideoRecording.keys(), columns=[*session_cols, "recording_id"])
    estimations = pd.DataFrame(
        model.PoseEstimation.keys(), columns=[*session_cols, "recording_id", "model_name"]
    )
    quality = pd.DataFrame(
        qc.PoseQC.proj("fraction_below_pcutoff").to_dicts(),
        columns=[*session_cols, "recording_id", "model_name", "qc_paramset_idx", "fraction_below_pcutoff"],
    )
    for table in (recordings, estimations, quality):  # typed even when empty, for the joins
        table["session_datetime"] = pd.to_datetime(table["session_datetime"])
    models = sorted(set(estimations["model_name"]))
    subjects = sorted(set(frame["subject"]))

    counts = recordings.groupby(session_cols).size().rename("n_recordings")
    per = estimations.groupby(session_cols)
    frame = frame.join(counts, on=session_cols).join(per.size().rename("n_estimations"), on=session_cols)
    frame = frame.join(
        per["model_name"].agg(lambda names: ", ".join(sorted(set(names)))).rename("models"), on=session_cols
    )
    frame = frame.join(
        quality.groupby(session_cols)["fraction_below_pcutoff"].max().rename("worst_below_pcutoff"),
        on=session_cols,
    )
    frame[["n_recordings", "n_estimations"]] = frame[["n_recordings", "n_estimations"]].fillna(0).astype(int)
    frame["models"] = frame["models"].fillna("")

    if filters.subject:
        frame = frame[frame["subject"].str.contains(filters.subject, case=False, regex=False)]
    if filters.date_from:
        frame = frame[frame["session_datetime"].dt.date >= filters.date_from]
    if filters.date_to:
        frame = frame[frame["session_datetime"].dt.date <= filters.date_to]
    if filters.model:
        with_model = estimations.loc[
            estimations["model_name"] == filters.model, session_cols
        ].drop_duplicates()
        frame = frame.merge(with_model, on=session_cols)
    if filters.flagged:
        frame = frame[frame["worst_below_pcutoff"] > FLAG_BELOW_PCUTOFF]

    frame = frame.sort_values(
        [filters.sort, "subject", "session_datetime"],
        ascending=[not filters.descending, True, True],
        na_position="last",
        kind="stable",
    )
    total = len(frame)
    pages = max(1, math.ceil(total / PAGE_SIZE))
    page = min(filters.page, pages)
    chunk = frame.iloc[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    rows = [
        {
            "subject": r.subject,
            "session_datetime": r.session_datetime.to_pydatetime(),
            "n_recordings": r.n_recordings,
            "n_estimations": r.n_estimations,
            "models": r.models,
            "worst_below_pcutoff": None if pd.isna(r.worst_below_pcutoff) else float(r.worst_below_pcutoff),
            "flagged": bool(r.worst_below_pcutoff > FLAG_BELOW_PCUTOFF)
            if not pd.isna(r.worst_below_pcutoff)
            else False,
        }
        for r in chunk.itertuples()
    ]
    return {
        "rows": rows,
        "total": total,
        "page": page,
        "pages": pages,
        "subjects": subjects,
        "models": models,
    }


# ------------------------------------------------------------------------------ one session
def session_page(key: dict) -> dict:
    """Everything the session page shows: recordings, estimations with QC, pictures, videos, kinematics."""
    from ..pipeline import model, qc, session, subject

    found = (session.Session & key).keys()
    if len(found) != 1:
        raise NotFound(f"no session {key['subject']} {key['session_datetime']}")
    key = found[0]
    notes = (session.SessionNote & key).to_dicts()
    page = {
        "key": key,
        "subject": (subject.Subject & key).fetch1(),
        "note": notes[0]["session_note"] if notes else "",
        "recordings": [],
        "estimations": [],
    }
    infos = {r["recording_id"]: r for r in (model.RecordingInfo & key).to_dicts()}
    files = {}
    for r in (model.VideoRecording.File & key).to_dicts():
        files.setdefault(r["recording_id"], []).append(r["file_path"])
    for rec in (model.VideoRecording & key).to_dicts():
        info = infos.get(rec["recording_id"], {})
        page["recordings"].append(
            {
                "recording_id": rec["recording_id"],
                "device": rec["device"],
                "files": files.get(rec["recording_id"], []),
                **{
                    k: info.get(k)
                    for k in (
                        "px_width",
                        "px_height",
                        "nframes",
                        "fps",
                        "recording_duration",
                        "recording_datetime",
                    )
                },
            }
        )

    qc_rows = {}
    for r in (qc.PoseQC & key).to_dicts():
        qc_rows.setdefault((r["recording_id"], r["model_name"]), []).append(r)
    qc_parts = {}
    for r in (qc.PoseQC.BodyPart & key).to_dicts():
        qc_parts.setdefault((r["recording_id"], r["model_name"]), []).append(r)
    pictures = {}
    for r in (qc.QCPlots & key).to_dicts():
        pictures.setdefault((r["recording_id"], r["model_name"]), []).append(r)
    videos = {}
    drawing = qc.LabeledVideoParams.proj("start_frame", "labeled_video_desc")  # its fps is the request's
    for r in (qc.LabeledVideo * drawing & key).to_dicts():
        videos.setdefault((r["recording_id"], r["model_name"]), []).append(r)
    kinematics = _kinematics(key)

    for est in (model.PoseEstimation & key).to_dicts():
        ident = (est["recording_id"], est["model_name"])
        est_key = {**key, "recording_id": est["recording_id"], "model_name": est["model_name"]}
        info = infos.get(est["recording_id"], {})
        page["estimations"].append(
            {
                "key": est_key,
                "params": url_params(est_key),
                "scorer": est["scorer"],
                "nframes": est["nframes"],
                "fps": info.get("fps"),
                "pose_estimation_time": est["pose_estimation_time"],
                "qc": [
                    {**r, "flagged": r["fraction_below_pcutoff"] > FLAG_BELOW_PCUTOFF}
                    for r in sorted(qc_rows.get(ident, []), key=lambda r: r["qc_paramset_idx"])
                ],
                "qc_parts": [
                    {**r, "flagged": r["fraction_below_pcutoff"] > FLAG_BELOW_PCUTOFF}
                    for r in sorted(
                        qc_parts.get(ident, []),
                        key=lambda r: (r["qc_paramset_idx"], r["individual"], r["body_part"]),
                    )
                ],
                "pictures": [
                    {
                        k: r[k]
                        for k in (
                            "qc_paramset_idx",
                            "trajectory_plot",
                            "likelihood_plot",
                            "likelihood_histogram",
                        )
                    }
                    for r in pictures.get(ident, [])
                ],
                "videos": [
                    {
                        "path": r["labeled_video_path"],
                        "start_frame": r["start_frame"],
                        "fps": r["fps"],
                        "nframes": r["nframes"],
                        "description": r["labeled_video_desc"],
                    }
                    for r in sorted(videos.get(ident, []), key=lambda r: r["labeled_video_idx"])
                ],
                "kinematics": kinematics.get(ident, []),
            }
        )
    return page


def _kinematics(key: dict) -> dict:
    """Per estimation: path length and median speed of each body part, per post-processing set."""
    from ..pipeline import postprocess

    out = {}
    rows = (postprocess.Kinematics.BodyPart * postprocess.Kinematics & key).to_dicts()
    for r in sorted(rows, key=lambda r: (r["pp_paramset_idx"], r["individual"], r["body_part"])):
        speed = load_array(r["speed"])
        finite = speed[np.isfinite(speed)] if speed is not None else np.array([])
        out.setdefault((r["recording_id"], r["model_name"]), []).append(
            {
                "pp_paramset_idx": r["pp_paramset_idx"],
                "individual": r["individual"],
                "body_part": r["body_part"],
                "path_length": r["path_length"],
                "median_speed": float(np.median(finite)) if finite.size else None,
                "unit": f"{r['space_unit']}/{r['time_unit']}",
                "space_unit": r["space_unit"],
            }
        )
    return out


# ------------------------------------------------------------------------------ trajectories
def minmax_downsample(values: np.ndarray, buckets: int) -> np.ndarray:
    """Pick the frames that keep a series' shape on a plot ``buckets`` pixel columns wide.

    Per bucket of consecutive frames, the frames of its smallest and largest finite value
    (in time order); a bucket with no finite value keeps its first frame, so gaps still show.
    A series of at most ``2 * buckets`` values is kept whole.

    Parameters
    ----------
    values : numpy.ndarray
        One series (NaN where missing).
    buckets : int
        Number of buckets (about the plot's width in pixels).

    Returns
    -------
    numpy.ndarray
        Sorted indices into ``values``, at most ``2 * buckets`` of them.
    """
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    if buckets < 1:
        raise ValueError("buckets must be at least 1")
    if n <= 2 * buckets:
        return np.arange(n)
    size = math.ceil(n / buckets)
    rows = math.ceil(n / size)
    padded = np.full(rows * size, np.nan)
    padded[:n] = values
    grid = padded.reshape(rows, size)
    finite = np.isfinite(grid)
    low = np.where(finite, grid, np.inf).argmin(axis=1)
    high = np.where(finite, grid, -np.inf).argmax(axis=1)
    start = np.arange(rows) * size
    empty = ~finite.any(axis=1)
    low[empty] = 0
    high[empty] = 0
    picks = np.concatenate([start + low, start + high])
    return np.unique(picks[picks < n])


def _json_numbers(values: np.ndarray, digits: int) -> list:
    """Round for the wire; NaN becomes null (a gap in the plot)."""
    rounded = np.round(np.asarray(values, dtype=np.float64), digits).astype(object)
    rounded[~np.isfinite(np.asarray(values, dtype=np.float64))] = None
    return rounded.tolist()


def trajectory(
    key: dict,
    start: float | None = None,
    stop: float | None = None,
    buckets: int = DEFAULT_BUCKETS,
) -> dict:
    """One estimation's x, y and likelihood over time, reduced for a plot.

    Parameters
    ----------
    key : dict
        Names one ``model.PoseEstimation``.
    start, stop : float, optional
        The time window in seconds (the whole recording by default).
    buckets : int
        Each series is sent as at most ``2 * buckets`` points (:func:`minmax_downsample`).

    Returns
    -------
    dict
        ``nframes``, ``fps``, ``duration``, ``window`` (first and last frame sent) and
        ``series``: per individual and body part, ``x``, ``y`` and ``likelihood`` each as
        ``{"t": seconds, "v": values}``.
    """
    from ..pipeline import model

    matches = (model.PoseEstimation & key).keys()
    if len(matches) != 1:
        raise NotFound(f"no pose estimation {url_params(key)}")
    match = matches[0]
    times = model.RecordingInfo.timestamps(match)
    fps = float((model.RecordingInfo & match).fetch1("fps"))
    first = 0 if start is None else int(np.searchsorted(times, start, side="left"))
    last = len(times) if stop is None else int(np.searchsorted(times, stop, side="right"))
    first, last = max(0, min(first, len(times) - 1)), max(first + 1, min(last, len(times)))
    window = times[first:last]
    series = []
    arrays = model.PoseEstimation.window(match, first, last).arrays()
    for (individual, body_part), row in sorted(arrays.items()):
        entry = {"individual": individual, "body_part": body_part}
        for attr, name, digits in (("x_pos", "x", 2), ("y_pos", "y", 2), ("likelihood", "likelihood", 4)):
            values = np.asarray(row[attr], dtype=np.float64)
            picks = minmax_downsample(values, buckets)
            entry[name] = {"t": _json_numbers(window[picks], 4), "v": _json_numbers(values[picks], digits)}
        series.append(entry)
    return {
        "nframes": int(len(times)),
        "fps": fps,
        "duration": float(times[-1]) if len(times) else 0.0,
        "window": [first, last - 1],
        "series": series,
    }


# ------------------------------------------------------------------------------ models
def models() -> list[dict]:
    """Each model with its training parameters, body parts, skeleton and evaluation."""
    from ..pipeline import model, train

    params = {r["paramset_idx"]: r for r in train.TrainingParamSet.to_dicts()}
    parts = {}
    for r in model.Model.BodyPart.to_dicts():
        parts.setdefault(r["model_name"], []).append(r["body_part"])
    evaluations = {r["model_name"]: r for r in model.ModelEvaluation.to_dicts()}
    out = []
    for m in sorted(
        model.Model.to_dicts(), key=lambda r: (r["project_path"], r["iteration"], r["model_name"])
    ):
        template = m.get("config_template") or {}
        paramset = params.get(m.get("paramset_idx"))
        body_parts = sorted(parts.get(m["model_name"], []))
        # DeepLabCut's new projects carry a placeholder skeleton (bodypart1-bodypart2, ...).
        edges = [list(pair) for pair in (template.get("skeleton") or []) if len(pair) == 2]
        skeleton = [pair for pair in edges if set(pair) <= set(body_parts)]
        out.append(
            {
                **{
                    k: m[k]
                    for k in ("model_name", "task", "date", "iteration", "shuffle", "trainingsetindex")
                },
                **{
                    k: m[k]
                    for k in ("snapshotindex", "engine", "scorer", "project_path", "model_description")
                },
                "body_parts": body_parts,
                "skeleton": skeleton,
                "skeleton_foreign": len(edges) - len(skeleton),
                "pcutoff": template.get("pcutoff"),
                "paramset_desc": paramset["paramset_desc"] if paramset else "",
                "params": json.dumps(paramset["params"], indent=1, sort_keys=True, default=str)
                if paramset
                else "",
                "evaluation": evaluations.get(m["model_name"]),
            }
        )
    return out


def iterations(rows: list[dict]) -> list[dict]:
    """Line up the evaluated models of each project by iteration (for the models page)."""
    projects = {}
    for m in rows:
        projects.setdefault((m["project_path"], m["task"], m["date"]), []).append(m)
    return [
        {
            "project": project,
            "task": task,
            "date": date,
            "models": sorted(members, key=lambda m: (m["iteration"], m["shuffle"], m["model_name"])),
        }
        for (project, task, date), members in sorted(projects.items())
    ]
