"""Schema ``qc``: quality metrics, QC pictures and labeled videos of pose estimations.

``PoseQC`` runs for every ``model.PoseEstimation`` and every ``QCParamSet`` (one default set
ships with the schema), so metrics are queryable across sessions, e.g.
``qc.PoseQC.BodyPart & "fraction_below_pcutoff > 0.2"``. ``QCPlots`` writes three PNG files
per estimation under the processed root. ``LabeledVideo`` is optional: it runs only for the
estimations given a ``LabeledVideoTask``.
"""

from __future__ import annotations

import re
from pathlib import Path

import datajoint as dj
import numpy as np

from . import identity, model, plots, poses, quality
from .posestore import load_stored
from .rows import load_array, nullable, pose_window
from .settings import find_full_path, get_settings, to_relative

schema = dj.Schema()


@schema
class QCParamSet(dj.Lookup):
    definition = """
    # what counts as a low-confidence point and as an implausible jump
    qc_paramset_idx: int16
    ---
    qc_paramset_desc: varchar(128)
    pcutoff=null: float64  # likelihood below which a point is low-confidence; null: the model's own
    max_jump_px: float64  # a move of more pixels between consecutive confident frames is a jump (3D: units)
    max_below_pcutoff=0.5: float64  # quality gate: flag an estimation with more points below
    """
    contents = [
        {
            "qc_paramset_idx": 0,
            "qc_paramset_desc": "the model's own p-cutoff; jumps over 30 px per frame; flag over 50% below",
            "pcutoff": None,
            "max_jump_px": 30.0,
            "max_below_pcutoff": 0.5,
        }
    ]

    @classmethod
    def resolve_pcutoff(cls, key: dict) -> float:
        """Return the p-cutoff a QC of ``key`` applies: the set's, or the model's own when null."""
        value = (cls & key).fetch1("pcutoff")
        return float(value) if value is not None else model.Model.pcutoff(key)


@schema
class PoseQC(dj.Computed):
    definition = """
    # quality metrics of one pose estimation
    -> model.PoseEstimation
    -> QCParamSet
    ---
    nframes: int32
    fraction_below_pcutoff: float64  # over all body parts and individuals
    worst_body_part: varchar(32)  # the part with the largest fraction below p-cutoff
    n_jumps: int32  # over all body parts and individuals
    pcutoff_used=null: float64  # the p-cutoff applied (the param set's, or the model's own)
    warning="": varchar(512)  # quality gate: set when too many points are below the p-cutoff
    """

    class BodyPart(dj.Part):
        definition = """
        -> master
        -> model.PoseEstimation.BodyPartPosition
        ---
        fraction_below_pcutoff: float64
        longest_gap: int32  # longest run of consecutive low-confidence frames
        longest_gap_start: int32  # its first frame (-1 if there is none)
        n_jumps: int32  # implausible jumps between consecutive confident frames
        median_likelihood=null: float64
        """

    def make(self, key):
        """Fetch the trajectory and the thresholds, compute the metrics, insert them."""
        params = (QCParamSet & key).fetch1()
        pcutoff = QCParamSet.resolve_pcutoff(key)
        window = model.PoseEstimation.window(key)

        parts = []
        for (individual, body_part), arrays in window.arrays().items():
            metrics = poses.qc_metrics(
                *(np.asarray(arrays[a], dtype=np.float64) for a in ("x_pos", "y_pos", "likelihood")),
                pcutoff,
                params["max_jump_px"],
                z=np.asarray(arrays["z_pos"], dtype=np.float64) if "z_pos" in arrays else None,
            )
            metrics["median_likelihood"] = nullable(metrics["median_likelihood"])
            parts.append({**key, "individual": individual, "body_part": body_part, **metrics})
        worst = max(parts, key=lambda p: p["fraction_below_pcutoff"])
        below = sum(p["fraction_below_pcutoff"] for p in parts) / len(parts)

        self.insert1(
            {
                **key,
                "nframes": (model.PoseEstimation & key).fetch1("nframes"),
                "fraction_below_pcutoff": below,
                "worst_body_part": worst["body_part"],
                "n_jumps": sum(p["n_jumps"] for p in parts),
                "pcutoff_used": pcutoff,
                "warning": quality.estimation_warning(
                    below, worst["body_part"], pcutoff, params["max_below_pcutoff"]
                )[:512],
            }
        )
        self.BodyPart.insert(parts)


def _folder(key: dict, sub: str) -> Path:
    """Return ``<processed root>/<the estimation output dir>/<sub>``."""
    return get_settings().processed_data_dir / (model.PoseEstimation & key).fetch1("output_dir") / sub


def _title(key: dict) -> str:
    return f"{key['subject']} {key['session_datetime']} recording {key['recording_id']} · {key['model_name']}"


@schema
class QCPlots(dj.Computed):
    definition = """
    # QC pictures (800 x 500 PNG), relative to the processed root
    -> PoseQC
    ---
    trajectory_plot: varchar(255)
    likelihood_plot: varchar(255)
    likelihood_histogram: varchar(255)
    reprojection_plot=null: varchar(255)  # 3D estimations: reprojection error and cameras used
    """

    def make(self, key):
        """Fetch the trajectory, draw the pictures (three; four for 3D), insert their paths."""
        pcutoff = QCParamSet.resolve_pcutoff(key)
        info = (model.RecordingInfo & key).fetch1()
        window = model.PoseEstimation.window(key)
        tracks = window.tracks()
        folder = _folder(key, "qc")
        title = _title(key)
        stem = f"qc{key['qc_paramset_idx']}"
        triangulated = (model.PoseEstimation.Triangulated & key).to_dicts()
        files = {}
        if "z" in window.coords:
            unit = triangulated[0]["unit"] if triangulated else "mm"
            files["trajectory_plot"] = plots.trajectory_plot_3d(
                window.tracks(("x", "y", "z")), pcutoff, unit, title, folder / f"{stem}_trajectory.png"
            )
        else:
            files["trajectory_plot"] = plots.trajectory_plot(
                tracks,
                pcutoff,
                (info["px_width"], info["px_height"]),
                title,
                folder / f"{stem}_trajectory.png",
            )
        if triangulated:
            labels = list(tracks)
            files["reprojection_plot"] = plots.reprojection_plot(
                load_array(triangulated[0]["reprojection_error"]),
                load_array(triangulated[0]["n_cameras"]),
                labels,
                title,
                folder / f"{stem}_reprojection.png",
            )
        files |= {
            "likelihood_plot": plots.likelihood_plot(
                tracks, pcutoff, model.RecordingInfo.time_base(key), title, folder / f"{stem}_likelihood.png"
            ),
            "likelihood_histogram": plots.likelihood_histogram(
                tracks, pcutoff, title, folder / f"{stem}_likelihood_histogram.png"
            ),
        }

        root = get_settings().processed_data_dir
        self.insert1({**key, **{k: to_relative(p, roots=(root,)) for k, p in files.items()}})

    @classmethod
    def paths(cls, key: dict) -> dict[str, Path]:
        """Return the absolute paths of one row's pictures."""
        return cls.row_paths((cls & key).fetch1())

    @staticmethod
    def row_paths(row: dict) -> dict[str, Path]:
        """Return the absolute paths of the pictures a fetched row names."""
        root = get_settings().processed_data_dir
        names = ("trajectory_plot", "likelihood_plot", "likelihood_histogram", "reprojection_plot")
        return {k: root / row[k] for k in names if row.get(k)}


@schema
class LabeledVideoParams(dj.Lookup):
    definition = """
    # how to draw a labeled video
    labeled_video_idx: int16
    ---
    labeled_video_desc: varchar(128)
    pcutoff: float64  # points below this likelihood are not drawn
    start_frame=0: int32
    n_frames=null: int32  # null = to the end of the recording
    fps=null: float64  # output frame rate; null = the recording's
    dot_radius=4: int32  # pixels
    """
    contents = [
        {
            "labeled_video_idx": 0,
            "labeled_video_desc": "whole recording, points above 0.6",
            "pcutoff": 0.6,
            "start_frame": 0,
            "n_frames": None,
            "fps": None,
            "dot_radius": 4,
        }
    ]


@schema
class LabeledVideoTask(dj.Manual):
    definition = """
    # a pose estimation to draw onto its video (may be declared before the estimation runs)
    -> model.PoseEstimationTask
    -> LabeledVideoParams
    """


@schema
class LabeledVideo(dj.Computed):
    definition = """
    # the recording with the estimated body parts drawn on it (our own overlay, MPEG-4)
    -> LabeledVideoTask
    -> model.PoseEstimation
    ---
    labeled_video_path: varchar(255)  # relative to the processed root
    nframes: int32
    fps: float64
    """

    def make_fetch(self, key):
        """Fetch the drawing parameters, the recording, its video files and where the arrays are."""
        params = (LabeledVideoParams & key).fetch1()
        info = {k: v for k, v in (model.RecordingInfo & key).fetch1().items() if k in ("fps", "rotation")}
        videos = [str(p) for p in model.VideoRecording.video_paths(key)]
        folder = str(_folder(key, "labeled"))
        # The array's store reference (its path names its content) and the slots: cheap to
        # compare before the insert; make_compute reads the array from the store, not the database.
        poses_ref, coords = (model.PoseEstimation & key).fetch1("poses", "coords")
        slots = sorted(
            (model.PoseEstimation.BodyPartPosition & key).to_dicts(),
            key=lambda r: r["slot"],
        )
        ref = {"path": poses_ref.path, "coords": coords, "slots": slots}
        return params, info, videos, folder, ref

    def make_compute(self, key, params, info, videos, folder, ref):
        """Draw the video, outside any transaction and without queries (it takes a while)."""
        fps = params["fps"] or info["fps"]
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(videos[0]).stem)
        path = Path(folder) / f"{stem}_labeled{key['labeled_video_idx']}.mp4"
        written = plots.labeled_video(
            [Path(v) for v in videos],
            pose_window(load_stored(ref["path"]), ref["slots"], ref["coords"]).tracks(),
            path,
            pcutoff=params["pcutoff"],
            start=params["start_frame"],
            nframes=params["n_frames"],
            fps=fps,
            radius=params["dot_radius"],
        )
        rel = to_relative(path, roots=(get_settings().processed_data_dir,))
        return ({"labeled_video_path": rel, "nframes": written, "fps": fps},)

    def make_insert(self, key, row):
        """Insert the video's path."""
        self.insert1({**key, **row})

    @classmethod
    def path(cls, key: dict) -> Path:
        """Return the absolute path of one labeled video."""
        root = get_settings().processed_data_dir
        return find_full_path((cls & key).fetch1("labeled_video_path"), roots=(root,))


@schema
class IdentityParamSet(dj.Lookup):
    definition = """
    # what counts as an animal's presence and as an identity swap (see workflow_deeplabcut.identity)
    identity_paramset_idx: int16
    ---
    identity_paramset_desc: varchar(128)
    pcutoff=null: float64  # likelihood a body part needs to count; null: the model's own
    min_parts: int16  # body parts seen for the animal to be present in a frame
    swap_ratio: float64  # a swap: exchanging two animals' labels explains the move this much better
    min_swap_px: float64  # ... and keeping them means a move of more pixels than this
    max_gap: int16  # frames back a swap test may look for the last frame both were present
    min_coverage=0.9: float64  # quality gate: flag an animal present in fewer frames
    max_swaps=0: int32  # quality gate: flag an estimation with more swaps
    """
    contents = [
        {
            "identity_paramset_idx": 0,
            "identity_paramset_desc": "model p-cutoff; 1 part; swap if 2x better and > 5 px; flag < 90%",
            "pcutoff": None,
            **identity.DEFAULTS,
            "min_coverage": 0.9,
            "max_swaps": 0,
        }
    ]


@schema
class IdentityQC(dj.Computed):
    definition = """
    # identity quality of a multi-animal pose estimation: presence, fragments, swaps
    -> model.PoseEstimation
    -> IdentityParamSet
    ---
    n_individuals: int16
    n_swaps: int32  # identity-swap events over all pairs of individuals
    min_coverage: float64  # the lowest fraction of frames an individual is present in
    pcutoff_used: float64
    warning="": varchar(512)  # quality gate: set when an animal is often missing or identities swap
    """

    class Individual(dj.Part):
        definition = """
        -> master
        individual: varchar(32)
        ---
        coverage: float64  # fraction of frames the individual is present in
        n_fragments: int32  # runs of consecutive frames it is present in
        n_swaps: int32  # swap events it takes part in
        identity_plot: varchar(255)  # its path in its own colour, swaps marked (processed root)
        """

    class Swap(dj.Part):
        definition = """
        # one identity-swap event: from this frame on, the two tracks' animals are exchanged
        -> master
        frame_index: int32
        individual_a: varchar(32)
        individual_b: varchar(32)
        ---
        keep_px: float64  # the two animals' move if the labels are kept
        swap_px: float64  # ... and if they are exchanged
        """

    @property
    def key_source(self):
        """Estimations with two or more individuals (DeepLabCut's 'single' is not one)."""
        animals = model.PoseEstimation.BodyPartPosition & "individual != 'single'"
        many = model.PoseEstimation.aggr(animals, n_individuals="count(distinct individual)")
        return ((model.PoseEstimation & (many & "n_individuals > 1").proj()) * IdentityParamSet).proj()

    def make(self, key):
        """Fetch the tracks, find presence, fragments and swaps, draw a picture per animal, insert."""
        params = (IdentityParamSet & key).fetch1()
        pcutoff = params["pcutoff"] if params["pcutoff"] is not None else model.Model.pcutoff(key)
        names, xy, likelihood = identity_arrays(key)
        centroid, present = identity.centroids(xy, likelihood, pcutoff, params["min_parts"])
        swaps = identity.find_swaps(
            centroid,
            present,
            names,
            swap_ratio=params["swap_ratio"],
            min_swap_px=params["min_swap_px"],
            max_gap=params["max_gap"],
        )
        info = (model.RecordingInfo & key).fetch1()
        labels = model.IndividualMapping.labels(key, names)
        folder = _folder(key, "qc")
        root = get_settings().processed_data_dir
        rows = []
        for k, name in enumerate(names):
            mine = [e.frame for e in swaps if name in (e.individual_a, e.individual_b)]
            picture = plots.identity_plot(
                centroid,
                k,
                labels,
                mine,
                (info["px_width"], info["px_height"]),
                _title(key),
                folder / f"identity{key['identity_paramset_idx']}_{re.sub(r'[^A-Za-z0-9_-]', '_', name)}.png",
            )
            rows.append(
                {
                    **key,
                    "individual": name,
                    "coverage": float(present[:, k].mean()),
                    "n_fragments": identity.fragments(present[:, k]),
                    "n_swaps": len(mine),
                    "identity_plot": to_relative(picture, roots=(root,)),
                }
            )
        low = [r["individual"] for r in rows if r["coverage"] < params["min_coverage"]]
        warning = []
        if low:
            warning.append(f"{low} present in fewer than {params['min_coverage']:.0%} of frames")
        if len(swaps) > params["max_swaps"]:
            warning.append(f"{len(swaps)} identity swap(s) (first at frame {swaps[0].frame})")
        self.insert1(
            {
                **key,
                "n_individuals": len(names),
                "n_swaps": len(swaps),
                "min_coverage": min(r["coverage"] for r in rows),
                "pcutoff_used": float(pcutoff),
                "warning": "; ".join(warning)[:512],
            }
        )
        self.Individual.insert(rows)
        self.Swap.insert(
            {
                **key,
                "frame_index": e.frame,
                "individual_a": e.individual_a,
                "individual_b": e.individual_b,
                "keep_px": e.keep_px,
                "swap_px": e.swap_px,
            }
            for e in swaps
        )


def identity_arrays(key: dict) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Return an estimation's animals (not 'single'), ``(frames, animals, parts, 2)`` and likelihoods."""
    arrays = model.PoseEstimation.window(key).arrays()
    names = sorted({i for i, _ in arrays if i != "single"})
    parts = sorted({b for i, b in arrays if i != "single"})
    n = len(next(iter(arrays.values()))["x_pos"])
    xy = np.full((n, len(names), len(parts), 2), np.nan)
    likelihood = np.full((n, len(names), len(parts)), np.nan)
    for (ind, part), a in arrays.items():
        if ind != "single":
            i, j = names.index(ind), parts.index(part)
            xy[:, i, j, 0], xy[:, i, j, 1] = a["x_pos"], a["y_pos"]
            likelihood[:, i, j] = a["likelihood"]
    return names, xy, likelihood


__all__ = [
    "IdentityParamSet",
    "IdentityQC",
    "schema",
    "QCParamSet",
    "PoseQC",
    "QCPlots",
    "LabeledVideoParams",
    "LabeledVideoTask",
    "LabeledVideo",
]
