"""Schema ``postprocess``: cleaned trajectories and kinematics, with their parameters as rows.

``PostprocessParamSet`` holds how to clean (likelihood threshold, gap filling, smoothing, scale)
and what to derive (centroid and heading body parts); ``PostprocessTask`` pairs it with a
``model.PoseEstimationTask``, so it can be declared before the estimation exists;
``CleanedTrajectory`` (once the ``model.PoseEstimation`` exists) and ``Kinematics`` are computed
by ``populate``.
The computations are :mod:`workflow_deeplabcut.poses` (movement's filters and kinematics).
"""

from __future__ import annotations

import datajoint as dj
import numpy as np
import pandas as pd
import xarray as xr

from . import model, poses, quality
from .paramsets import insert_hashed
from .rows import frame_range, load_array, nullable, one_key

schema = dj.Schema()


@schema
class PostprocessParamSet(dj.Lookup):
    definition = """
    # how to clean trajectories and derive kinematics (keys: poses.POSTPROCESS_PARAMS)
    pp_paramset_idx: int16
    ---
    pp_paramset_desc: varchar(128)
    pp_param_set_hash: char(32)  # MD5 of the canonical JSON of the complete params
    unique index (pp_param_set_hash)
    pp_params: <blob>
    """

    @classmethod
    def insert_new_params(cls, desc: str, params: dict, pp_paramset_idx: int | None = None) -> int:
        """Insert a post-processing parameter set unless the same parameters exist already.

        Parameters
        ----------
        desc : str
            Description.
        params : dict
            Keys of :data:`workflow_deeplabcut.poses.POSTPROCESS_PARAMS`; missing keys take
            their defaults, so ``{}`` and the explicit defaults are the same set.
        pp_paramset_idx : int, optional
            Index to use; default one more than the largest.

        Returns
        -------
        int
            The index of the (new or existing) parameter set.
        """
        params = poses.check_postprocess_params(params)
        attrs = ("pp_paramset_idx", "pp_paramset_desc", "pp_param_set_hash", "pp_params")
        return insert_hashed(cls, attrs, desc, params, pp_paramset_idx)


@schema
class PostprocessTask(dj.Manual):
    definition = """
    # clean a pose estimation with a parameter set (may be declared before the estimation runs)
    -> model.PoseEstimationTask
    -> PostprocessParamSet
    """

    @classmethod
    def generate(cls, pose_estimation_key: dict, pp_paramset_idx: int) -> dict:
        """Insert a task after checking that the params fit the model's body parts.

        Parameters
        ----------
        pose_estimation_key : dict
            Identifies one ``model.PoseEstimationTask`` (its estimation need not exist yet:
            ``CleanedTrajectory`` runs once it does).
        pp_paramset_idx : int
            A ``PostprocessParamSet``.

        Returns
        -------
        dict
            The task's primary key.
        """
        matches = (model.PoseEstimationTask & pose_estimation_key).keys()
        if len(matches) != 1:
            raise ValueError(
                f"The key {pose_estimation_key} matches {len(matches)} pose estimation tasks; give one "
                "that identifies exactly one (recording and model_name)."
            )
        params_row = PostprocessParamSet & {"pp_paramset_idx": pp_paramset_idx}
        if not params_row:
            raise ValueError(
                f"No post-processing parameter set {pp_paramset_idx}; insert one with "
                "PostprocessParamSet.insert_new_params."
            )
        key = {**matches[0], "pp_paramset_idx": pp_paramset_idx}
        parts = [r["body_part"] for r in (model.Model.BodyPart & matches[0]).keys()]
        poses.check_body_parts(params_row.fetch1("pp_params"), parts, f"model {matches[0]['model_name']!r}")
        cls.insert1(key, skip_duplicates=True)
        return key


@schema
class PendingPostprocessTask(dj.Manual):
    definition = """
    # a PostprocessTask to create when its pending model is registered (ingest)
    -> model.PendingModel.PoseTask
    -> PostprocessParamSet
    """


@schema
class CleanedTrajectory(dj.Computed):
    definition = """
    # trajectories after likelihood filtering, gap filling, smoothing and scaling
    -> PostprocessTask
    -> model.PoseEstimation
    ---
    space_unit: varchar(8)  # 'cm' when the params give px_per_cm, else 'px'; 3D: the calibration's
    fps: float64  # of the recording: the time base of the kinematics
    nframes: int32
    likelihood_threshold=null: float64  # the threshold applied (the params', or the model's pcutoff)
    warning="": varchar(512)  # quality gate: set when a body part is missing too often
    """

    class BodyPart(dj.Part):
        definition = """
        -> master
        -> model.PoseEstimation.BodyPartPosition
        ---
        x_pos: <npy@workflow_dlc>  # in space_unit; NaN where missing
        y_pos: <npy@workflow_dlc>
        z_pos=null: <npy@workflow_dlc>  # 3D estimations only
        n_low_likelihood: int32  # points removed by the likelihood threshold
        n_interpolated: int32  # points filled by interpolation
        n_smoothing_removed: int32  # points the smoothing turned into gaps
        n_missing: int32  # points missing in the result
        """

    def make(self, key):
        """Fetch the raw trajectory, clean it with movement, insert the result."""
        params = poses.check_postprocess_params((PostprocessParamSet & key).fetch1("pp_params"))
        if params["likelihood_threshold"] == "model":
            params["likelihood_threshold"] = model.Model.pcutoff(key)
        raw = model.PoseEstimation.get_dataset(key)
        poses.check_body_parts(params, [str(k) for k in raw.keypoints.values], f"pose estimation {key}")

        cleaned, counts = poses.clean(raw, params)
        # The dataset is a grid of individuals x body parts; with DeepLabCut's unique body parts
        # (individual 'single') some cells are no slot of the estimation: they are not rows.
        slots = {
            (r["individual"], r["body_part"])
            for r in (model.PoseEstimation.BodyPartPosition & key).to_dicts()
        }
        counts = {slot: c for slot, c in counts.items() if slot in slots}
        fps = raw.attrs["fps"]

        nframes = cleaned.sizes["time"]
        several = len({ind for ind, _ in counts}) > 1
        missing = {
            (f"{ind}/{part}" if several else part): c["n_missing"] for (ind, part), c in counts.items()
        }
        warning = quality.trajectory_warning(
            missing, nframes, params["likelihood_threshold"], params["max_missing"]
        )
        self.insert1(
            {
                **key,
                "space_unit": cleaned.attrs["space_unit"],
                "fps": fps,
                "nframes": nframes,
                "likelihood_threshold": params["likelihood_threshold"],
                "warning": warning[:512],
            }
        )
        self.BodyPart.insert(
            {
                **key,
                "individual": ind,
                "body_part": part,
                "x_pos": np.ascontiguousarray(cleaned.sel(individuals=ind, keypoints=part, space="x").values),
                "y_pos": np.ascontiguousarray(cleaned.sel(individuals=ind, keypoints=part, space="y").values),
                "z_pos": np.ascontiguousarray(cleaned.sel(individuals=ind, keypoints=part, space="z").values)
                if "z" in cleaned.space
                else None,
                **counts[(ind, part)],
            }
            for (ind, part) in sorted(counts)
        )

    @classmethod
    def get_dataset(cls, key: dict, start: int | None = None, stop: int | None = None) -> xr.Dataset:
        """Return one cleaned trajectory (or frames ``range(start, stop)`` of it) as a movement dataset.

        ``position`` is the cleaned position (in ``attrs['space_unit']``), ``confidence`` the
        raw likelihood, and the ``time`` coordinate is in seconds. A window reads only its frames.
        """
        match = one_key(cls, key)
        master = (cls & match).fetch1()
        first, last = frame_range(master["nframes"], start, stop)
        rows = (cls.BodyPart & match).to_dicts()
        raw = {
            slot: arrays["likelihood"]
            for slot, arrays in model.PoseEstimation.window(match, first, last).arrays().items()
        }
        arrays = {
            (r["individual"], r["body_part"]): {
                "x_pos": load_array(r["x_pos"])[first:last],
                "y_pos": load_array(r["y_pos"])[first:last],
                **({"z_pos": load_array(r["z_pos"])[first:last]} if r.get("z_pos") is not None else {}),
                "likelihood": raw[(r["individual"], r["body_part"])],
            }
            for r in rows
        }
        ds = poses.to_dataset(arrays, model.RecordingInfo.time_base(match), first_frame=first)
        ds.attrs.update(space_unit=master["space_unit"], **{k: str(v) for k, v in match.items()})
        return ds

    @classmethod
    def get_dataframe(cls, key: dict, start: int | None = None, stop: int | None = None) -> pd.DataFrame:
        """Return one cleaned trajectory as a DeepLabCut-style DataFrame (one row per frame).

        Columns are ``(scorer, individuals, bodyparts, coords)`` with coords ``x``, ``y`` and
        ``likelihood`` (the raw one); the scorer level is the model name. Indexed by frame
        number; ``start``/``stop`` select frames ``range(start, stop)``.
        """
        from movement.io import save_poses

        ds = cls.get_dataset(key, start, stop)
        frame = save_poses.to_dlc_style_df(ds, split_individuals=False)
        frame.columns = frame.columns.set_levels([ds.attrs["model_name"]], level="scorer")
        first = int(start or 0)
        frame.index = pd.RangeIndex(first, first + len(frame), name="frame_index")
        return frame


@schema
class Kinematics(dj.Computed):
    definition = """
    # velocity, speed, acceleration, centroid, heading and distance travelled
    -> CleanedTrajectory
    ---
    space_unit: varchar(8)  # 'cm' or 'px'
    time_unit: varchar(8)  # 's' (the recording's fps is always known here)
    """

    class BodyPart(dj.Part):
        definition = """
        -> master
        -> CleanedTrajectory.BodyPart
        ---
        velocity: <npy@workflow_dlc>  # (nframes, 2 or 3): x, y (, z) in space_unit/time_unit
        speed: <npy@workflow_dlc>  # (nframes,)
        acceleration: <npy@workflow_dlc>  # (nframes, 2 or 3) in space_unit/time_unit^2
        path_length=null: float64  # in space_unit; null when the part is never seen
        """

    class Individual(dj.Part):
        definition = """
        -> master
        individual: varchar(32)
        ---
        centroid: <npy@workflow_dlc>  # (nframes, 2 or 3) mean of the centroid body parts
        centroid_speed: <npy@workflow_dlc>  # (nframes,)
        heading: <npy@workflow_dlc>  # (nframes,) radians, anticlockwise on screen; NaN if unset
        distance=null: float64  # the centroid's path length, in space_unit
        """

    def make(self, key):
        """Fetch the cleaned trajectory, compute kinematics with movement, insert them."""
        params = (PostprocessParamSet & key).fetch1("pp_params")
        ds = CleanedTrajectory.get_dataset(key)

        kin = poses.kinematics(
            ds.position.assign_attrs(space_unit=ds.attrs["space_unit"], time_unit="seconds"), params
        )

        slots = {(r["individual"], r["body_part"]) for r in (CleanedTrajectory.BodyPart & key).to_dicts()}
        self.insert1({**key, "space_unit": kin.attrs["space_unit"], "time_unit": kin.attrs["time_unit"]})
        self.BodyPart.insert(
            {
                **key,
                "individual": str(ind),
                "body_part": str(part),
                "velocity": _values(kin.velocity, ind, part, ("time", "space")),
                "speed": _values(kin.speed, ind, part, ("time",)),
                "acceleration": _values(kin.acceleration, ind, part, ("time", "space")),
                "path_length": nullable(float(kin.path_length.sel(individuals=ind, keypoints=part))),
            }
            for ind in kin.individuals.values
            for part in kin.keypoints.values
            if (str(ind), str(part)) in slots  # the grid's cells that are body parts of the estimation
        )
        self.Individual.insert(
            {
                **key,
                "individual": str(ind),
                "centroid": _values(kin.centroid, ind, None, ("time", "space")),
                "centroid_speed": _values(kin.centroid_speed, ind, None, ("time",)),
                "heading": _values(kin.heading, ind, None, ("time",)),
                "distance": nullable(float(kin.distance.sel(individuals=ind))),
            }
            for ind in kin.individuals.values
        )

    @classmethod
    def get_dataset(cls, key: dict, start: int | None = None, stop: int | None = None) -> xr.Dataset:
        """Return one row's kinematics as an xarray Dataset, as :func:`poses.kinematics` makes it.

        ``start``/``stop`` select frames ``range(start, stop)``, reading only those;
        ``path_length`` stays the whole recording's.
        """
        match = one_key(cls, key)
        master = (cls & match).fetch1()
        parts = sorted((cls.BodyPart & match).to_dicts(), key=lambda r: (r["individual"], r["body_part"]))
        inds = sorted((cls.Individual & match).to_dicts(), key=lambda r: r["individual"])
        individuals = [r["individual"] for r in inds]
        keypoints = sorted({r["body_part"] for r in parts})
        first, last = frame_range(len(load_array(inds[0]["centroid_speed"])), start, stop)
        n = last - first
        time = model.RecordingInfo.timestamps(match)[first:last]
        space = ["x", "y", "z"][: load_array(inds[0]["centroid"]).shape[1]]
        coords = {"time": time, "space": space, "keypoints": keypoints, "individuals": individuals}

        def per_part(attr, with_space):
            shape = (
                (n, len(space), len(keypoints), len(individuals))
                if with_space
                else (n, len(keypoints), len(individuals))
            )
            out = np.full(shape, np.nan)
            for r in parts:
                k, i = keypoints.index(r["body_part"]), individuals.index(r["individual"])
                out[..., k, i] = load_array(r[attr])[first:last]
            return out

        def per_individual(attr):
            return np.stack([np.asarray(load_array(r[attr])[first:last]) for r in inds], axis=-1)

        ds = xr.Dataset(
            {
                "velocity": (("time", "space", "keypoints", "individuals"), per_part("velocity", True)),
                "speed": (("time", "keypoints", "individuals"), per_part("speed", False)),
                "acceleration": (
                    ("time", "space", "keypoints", "individuals"),
                    per_part("acceleration", True),
                ),
                "path_length": (
                    ("keypoints", "individuals"),
                    _grid(parts, keypoints, individuals, "path_length"),
                ),
                "centroid": (("time", "space", "individuals"), per_individual("centroid")),
                "centroid_speed": (("time", "individuals"), per_individual("centroid_speed")),
                "heading": (("time", "individuals"), per_individual("heading")),
                "distance": (
                    ("individuals",),
                    [np.nan if r["distance"] is None else r["distance"] for r in inds],
                ),
            },
            coords=coords,
            attrs={"space_unit": master["space_unit"], "time_unit": master["time_unit"]},
        )
        return ds

    @classmethod
    def get_dataframe(cls, key: dict, start: int | None = None, stop: int | None = None) -> pd.DataFrame:
        """Return one row's time series as a DataFrame: one row per frame, indexed by frame and time.

        Columns are ``(individual, body part or 'centroid', quantity)``, with quantities
        ``velocity_x``, ``velocity_y``, ``speed``, ``acceleration_x``, ``acceleration_y`` per
        body part and ``x``, ``y``, ``speed``, ``heading`` for the centroid. Units are in
        ``frame.attrs``. ``start``/``stop`` select frames ``range(start, stop)``.
        """
        ds = cls.get_dataset(key, start, stop)
        columns = {}
        for ind in ds.individuals.values:
            for part in ds.keypoints.values:
                sel = ds.sel(individuals=ind, keypoints=part)
                for name in ("velocity", "acceleration"):
                    for axis in ds.space.values:
                        columns[(ind, part, f"{name}_{axis}")] = sel[name].sel(space=axis).values
                columns[(ind, part, "speed")] = sel.speed.values
            sel = ds.sel(individuals=ind)
            for axis in ds.space.values:
                columns[(ind, "centroid", str(axis))] = sel.centroid.sel(space=axis).values
            columns[(ind, "centroid", "speed")] = sel.centroid_speed.values
            columns[(ind, "centroid", "heading")] = sel.heading.values
        index = pd.MultiIndex.from_arrays(
            [np.arange(ds.sizes["time"]) + int(start or 0), ds.time.values], names=["frame_index", "time"]
        )
        frame = pd.DataFrame(columns, index=index)
        frame.columns = pd.MultiIndex.from_tuples(frame.columns, names=["individual", "part", "quantity"])
        frame.attrs = dict(ds.attrs)
        return frame


@schema
class SocialParamSet(dj.Lookup):
    definition = """
    # which body parts of two animals to measure between, beside centroid to centroid
    social_paramset_idx: int16
    ---
    social_paramset_desc: varchar(128)
    part_pairs: <blob>  # [[part of one animal, part of the other], ...]; [] = centroids only
    """
    contents = [{"social_paramset_idx": 0, "social_paramset_desc": "centroid to centroid", "part_pairs": []}]

    @classmethod
    def insert_new(cls, desc: str, part_pairs: list, social_paramset_idx: int | None = None) -> int:
        """Insert a set of body-part pairs, e.g. ``[["nose", "tail"]]``; return its index.

        Each pair is measured both ways between every two animals (one's nose to the other's
        tail, and the reverse). A malformed pair is refused, naming it.
        """
        pairs = []
        for pair in part_pairs:
            if not (
                isinstance(pair, list | tuple) and len(pair) == 2 and all(isinstance(p, str) for p in pair)
            ):
                raise poses.PostprocessParamsError(
                    f"Social part pair {pair!r}: give two body part names, e.g. ['nose', 'tail']."
                )
            pairs.append(list(pair))
        if social_paramset_idx is None:
            social_paramset_idx = max((k["social_paramset_idx"] for k in cls.keys()), default=-1) + 1
        cls.insert1(
            {"social_paramset_idx": social_paramset_idx, "social_paramset_desc": desc, "part_pairs": pairs}
        )
        return social_paramset_idx


@schema
class SocialMeasures(dj.Computed):
    definition = """
    # distances between the animals of a cleaned multi-animal trajectory, per frame (movement)
    -> Kinematics
    -> SocialParamSet
    ---
    space_unit: varchar(8)  # 'cm' when the post-processing params scale, else 'px'
    """

    class Pair(dj.Part):
        definition = """
        # two animals: centroid to centroid
        -> master
        individual_a: varchar(32)
        individual_b: varchar(32)
        ---
        centroid_distance: <npy@workflow_dlc>  # (nframes,) in space_unit; NaN where either is unseen
        median_centroid_distance=null: float64
        """

    class PartDistance(dj.Part):
        definition = """
        # a body part of individual_a to a body part of individual_b
        -> master
        individual_a: varchar(32)
        individual_b: varchar(32)
        body_part_a: varchar(32)
        body_part_b: varchar(32)
        ---
        distance: <npy@workflow_dlc>  # (nframes,) in space_unit
        median_distance=null: float64
        """

    @property
    def key_source(self):
        """Kinematics of two or more animals (DeepLabCut's 'single' is not one)."""
        animals = Kinematics.Individual & "individual != 'single'"
        many = Kinematics.aggr(animals, n_individuals="count(distinct individual)")
        return ((Kinematics & (many & "n_individuals > 1").proj()) * SocialParamSet).proj()

    def make(self, key):
        """Fetch positions and centroids, compute the distances with movement, insert them."""
        pairs = (SocialParamSet & key).fetch1("part_pairs")
        ds = CleanedTrajectory.get_dataset(key)
        kin = Kinematics.get_dataset(key)
        animals = [str(i) for i in ds.individuals.values if str(i) != "single"]
        named = sorted({p for pair in pairs for p in pair} - {str(k) for k in ds.keypoints.values})
        if named:
            raise poses.PostprocessParamsError(
                f"Social param set {key['social_paramset_idx']} names body part(s) {named}, which "
                f"this trajectory lacks (it has {sorted(str(k) for k in ds.keypoints.values)})."
            )
        result = poses.social_distances(
            ds.position.sel(individuals=animals), kin.centroid.sel(individuals=animals), pairs
        )
        self.insert1({**key, "space_unit": kin.attrs["space_unit"]})
        self.Pair.insert(
            {
                **key,
                "individual_a": a,
                "individual_b": b,
                "centroid_distance": d,
                "median_centroid_distance": _median(d),
            }
            for (a, b), d in result["centroid"].items()
        )
        self.PartDistance.insert(
            {
                **key,
                "individual_a": a,
                "individual_b": b,
                "body_part_a": pa,
                "body_part_b": pb,
                "distance": d,
                "median_distance": _median(d),
            }
            for (a, b, pa, pb), d in result["parts"].items()
        )

    @classmethod
    def get_dataframe(cls, key: dict) -> pd.DataFrame:
        """Return one row's distances, one row per frame; columns ``(individual_a, individual_b, measure)``.

        ``measure`` is ``centroid`` or ``<part_a>-<part_b>``; the unit is in ``frame.attrs``.
        """
        match = one_key(cls, key)
        columns = {
            (r["individual_a"], r["individual_b"], "centroid"): load_array(r["centroid_distance"])
            for r in (cls.Pair & match).to_dicts()
        }
        for r in (cls.PartDistance & match).to_dicts():
            measure = f"{r['body_part_a']}-{r['body_part_b']}"
            columns[(r["individual_a"], r["individual_b"], measure)] = load_array(r["distance"])
        frame = pd.DataFrame(dict(sorted(columns.items())))
        frame.index.name = "frame_index"
        frame.columns = pd.MultiIndex.from_tuples(
            frame.columns, names=["individual_a", "individual_b", "measure"]
        )
        frame.attrs = {"space_unit": (cls & match).fetch1("space_unit")}
        return frame


def _median(values: np.ndarray) -> float | None:
    finite = np.asarray(values)[np.isfinite(values)]
    return float(np.median(finite)) if finite.size else None


def _values(array: xr.DataArray, ind, part, dims: tuple) -> np.ndarray:
    sel = {"individuals": ind} | ({"keypoints": part} if part is not None else {})
    return np.ascontiguousarray(array.sel(sel).transpose(*dims).values, dtype=np.float64)


def _grid(rows, keypoints, individuals, attr) -> np.ndarray:
    out = np.full((len(keypoints), len(individuals)), np.nan)
    for r in rows:
        if r[attr] is not None:
            out[keypoints.index(r["body_part"]), individuals.index(r["individual"])] = r[attr]
    return out


__all__ = [
    "schema",
    "PostprocessParamSet",
    "PostprocessTask",
    "CleanedTrajectory",
    "Kinematics",
    "SocialParamSet",
    "SocialMeasures",
]
