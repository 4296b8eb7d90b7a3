"""Schema ``threed``: camera rigs, their calibration, multi-view recordings and triangulation.

The road to 3D poses, each step a row:

1. ``Rig`` and its ``Rig.Camera`` rows name the cameras (a fitted calibration's world frame is
   camera 0's; an imported one keeps the file's).
2. ``CalibrationSource`` says where a calibration comes from: synchronised videos of a
   ChArUco or checkerboard board (``BoardParamSet``), or anipose's ``calibration.toml``.
   ``Calibration`` computes (or reads) each camera's intrinsics, distortion and pose
   (:func:`workflow_deeplabcut.multiview.calibrate`: OpenCV's board detection and camera
   calibration, then a bundle adjustment) with its reprojection error and a quality gate.
3. ``MultiViewRecording`` groups a session's recordings of one instant from the cameras of a
   rig, with each view's frame offset; views of unequal length or frame rate are refused.
4. ``TriangulationTask`` pairs a multi-view recording with a calibration, a
   ``TriangulationParamSet`` and one 2D ``model.PoseEstimation`` per view. It creates the
   3D estimation's ``model.PoseEstimationTask`` (a model of engine ``triangulation``, on the
   recording of the rig's first camera). ``model.PoseEstimation`` then triangulates: its
   ``BodyPartPosition`` rows hold x, y, z (in the board's unit) and likelihood, and its
   ``PoseEstimation.Triangulated`` part the per-point reprojection error and number of
   cameras used. Cleaning, kinematics, QC and NWB export take it as any estimation.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import datajoint as dj
import numpy as np

from . import lab, model, multiview, session  # noqa: F401  (resolve "-> lab.Device", "-> session.Session")
from .errors import InputError
from .rows import one_key
from .settings import find_full_path, to_relative

schema = dj.Schema()

#: ``Model.engine`` of the models whose estimations are triangulated.
ENGINE = "triangulation"


@schema
class BoardParamSet(dj.Lookup):
    definition = """
    # a calibration board: its geometry and the calibration's quality gate
    board_paramset_idx: int16
    ---
    board_type: enum('charuco', 'checkerboard')
    squares_x: int16  # squares along the board's width
    squares_y: int16  # squares along its height
    square_length: float64  # in unit
    marker_length=null: float64  # ChArUco: the ArUco markers' side, in unit
    dictionary="": varchar(32)  # ChArUco: OpenCV's ArUco dictionary, e.g. DICT_4X4_50
    unit="mm": varchar(8)  # the unit of 3D positions calibrated with this board
    max_reprojection_error=1.0: float64  # px: a calibration with a larger mean error is flagged
    board_description="": varchar(255)
    """

    @classmethod
    def insert_new_params(cls, board_paramset_idx: int, **params) -> dict:
        """Check a board's parameters (:func:`multiview.check_board`) and insert them.

        Inserting the same parameters under the same index again is a no-op; other
        parameters under an existing index are refused.
        """
        checked = multiview.check_board(params)
        row = {
            "board_paramset_idx": board_paramset_idx,
            **{k: checked[k] for k in params if k in cls.heading.names},
        }
        row.setdefault("unit", checked["unit"])
        key = {"board_paramset_idx": board_paramset_idx}
        if cls & key:
            have = (cls & key).fetch1()
            if all(have[k] == v or (isinstance(v, float) and np.isclose(have[k], v)) for k, v in row.items()):
                return key
            raise dj.errors.DuplicateError(
                f"Board parameter set {board_paramset_idx} exists with other values."
            )
        cls.insert1(row)
        return key

    @classmethod
    def board(cls, key: dict) -> dict:
        """Return the checked board parameters of one row."""
        row = (cls & key).fetch1()
        return multiview.check_board({k: row[k] for k in cls.heading.secondary_attributes})


@schema
class Rig(dj.Manual):
    definition = """
    # cameras filming one scene from several sides
    rig_name: varchar(32)
    ---
    rig_description="": varchar(255)
    """

    class Camera(dj.Part):
        definition = """
        -> master
        camera_name: varchar(32)
        ---
        camera_index: int16  # order in the rig; camera 0's frame is a fitted calibration's world
        -> [nullable] lab.Device
        """

    @classmethod
    def insert_rig(
        cls, rig_name: str, cameras: list[str], *, devices: dict | None = None, description: str = ""
    ) -> dict:
        """Insert a rig and its cameras (in order: the first is the reference) in one transaction.

        ``devices`` maps camera names to ``lab.Device`` rows, where they are registered.
        """
        if len(cameras) < 2 or len(set(cameras)) != len(cameras):
            raise InputError(f"A rig needs two or more cameras with distinct names, got {cameras!r}.")
        key = {"rig_name": rig_name}
        if cls & key:
            have = [
                r["camera_name"]
                for r in sorted((cls.Camera & key).to_dicts(), key=lambda r: r["camera_index"])
            ]
            if have == list(cameras):
                return key
            raise dj.errors.DuplicateError(f"Rig {rig_name!r} exists with cameras {have}.")
        devices = devices or {}
        with cls.connection.transaction:
            cls.insert1({**key, "rig_description": description})
            cls.Camera.insert(
                [
                    {**key, "camera_name": c, "camera_index": i, "device": devices.get(c)}
                    for i, c in enumerate(cameras)
                ]
            )
        return key

    @classmethod
    def camera_names(cls, key: dict) -> list[str]:
        """Return the rig's camera names in order."""
        rows = sorted((cls.Camera & one_key(cls, key)).to_dicts(), key=lambda r: r["camera_index"])
        return [r["camera_name"] for r in rows]


@schema
class CalibrationSource(dj.Manual):
    definition = """
    # where a rig's calibration comes from: board videos, or anipose's calibration.toml
    -> Rig
    calibration_id: int16
    ---
    source: enum('board_videos', 'anipose')
    -> [nullable] BoardParamSet
    source_file="": varchar(255)  # anipose: the calibration.toml, relative to a data root
    calibration_note="": varchar(255)
    """

    class Video(dj.Part):
        definition = """
        # one camera's video of the board; frame i of every camera shows the same instant
        -> master
        -> Rig.Camera
        ---
        file_path: varchar(255)  # relative to a data root
        """

    @classmethod
    def insert_board_videos(
        cls, rig_name: str, calibration_id: int, board_paramset_idx: int, videos: dict, note: str = ""
    ) -> dict:
        """Register synchronised board videos, one per camera of the rig, to calibrate from.

        Parameters
        ----------
        videos : dict
            Camera name → video file (absolute, or relative to a data root).
        """
        key = {"rig_name": rig_name, "calibration_id": calibration_id}
        cameras = Rig.camera_names({"rig_name": rig_name})
        if sorted(videos) != sorted(cameras):
            raise InputError(
                f"Rig {rig_name!r} has cameras {cameras}; give one calibration video for each "
                f"(got {sorted(videos)})."
            )
        if not BoardParamSet & {"board_paramset_idx": board_paramset_idx}:
            raise InputError(
                f"No BoardParamSet {board_paramset_idx}; add it with BoardParamSet.insert_new_params."
            )
        relative = {}
        for camera, path in videos.items():
            full = Path(path) if Path(path).is_absolute() else find_full_path(path)
            if not full.is_file():
                raise FileNotFoundError(f"Calibration video {full} (camera {camera!r}) does not exist.")
            relative[camera] = to_relative(full)
        if cls & key:
            raise dj.errors.DuplicateError(f"Calibration {key} exists; use another calibration_id.")
        with cls.connection.transaction:
            cls.insert1(
                {
                    **key,
                    "source": "board_videos",
                    "board_paramset_idx": board_paramset_idx,
                    "calibration_note": note,
                }
            )
            cls.Video.insert([{**key, "camera_name": c, "file_path": p} for c, p in relative.items()])
        return key

    @classmethod
    def insert_anipose(cls, rig_name: str, calibration_id: int, toml_path, note: str = "") -> dict:
        """Register an anipose ``calibration.toml`` (its cameras named as the rig's) to import.

        The file is read and checked now, so a file of another rig is refused before anything
        is written.
        """
        key = {"rig_name": rig_name, "calibration_id": calibration_id}
        full = Path(toml_path).expanduser().resolve()
        relative = to_relative(full)
        cams, _ = read_anipose_toml(full)
        cameras = Rig.camera_names({"rig_name": rig_name})
        names = [c.name for c in cams]
        if sorted(names) != sorted(cameras):
            raise InputError(
                f"{full} calibrates cameras {names} but rig {rig_name!r} has {cameras}: it is a "
                "calibration of another rig (anipose names cameras after the videos' camera names)."
            )
        if cls & key:
            raise dj.errors.DuplicateError(f"Calibration {key} exists; use another calibration_id.")
        cls.insert1({**key, "source": "anipose", "source_file": relative, "calibration_note": note})
        return key


@schema
class Calibration(dj.Imported):
    definition = """
    # each camera's intrinsics and pose, fitted to board videos or imported
    -> CalibrationSource
    ---
    reprojection_error=null: float64  # mean px over every board corner seen, after bundle adjustment
    initial_error=null: float64  # the same before bundle adjustment
    n_frames: int32  # board frames in the bundle adjustment (0 when imported)
    unit: varchar(8)  # of translations and of 3D positions triangulated with it
    warning="": varchar(1000)  # the quality gate's finding; "" when the calibration passes
    calibration_time: datetime  # when it was computed
    """

    class Camera(dj.Part):
        definition = """
        -> master
        -> Rig.Camera
        ---
        image_width: int32
        image_height: int32
        intrinsics: <blob>  # 3x3 camera matrix K, px
        distortion: <blob>  # OpenCV coefficients (k1, k2, p1, p2, k3)
        rotation: <blob>  # Rodrigues vector, world (fitted: camera 0's frame) to camera
        translation: <blob>  # world to camera, in unit
        reprojection_error=null: float64  # mean px over the board corners it saw
        n_frames: int32  # frames in which it saw the board
        """

    def make_fetch(self, key):
        """Fetch the source, its board and its files, in the rig's camera order."""
        source = (CalibrationSource & key).fetch1()
        cameras = Rig.camera_names(key)
        board = BoardParamSet.board(source) if source["board_paramset_idx"] is not None else None
        limit = None if board is None else float((BoardParamSet & source).fetch1("max_reprojection_error"))
        videos = {r["camera_name"]: r["file_path"] for r in (CalibrationSource.Video & key).to_dicts()}
        return source, cameras, board, limit, [videos.get(c) for c in cameras]

    def make_compute(self, key, source, cameras, board, limit, videos):
        """Detect the board and calibrate, or read the toml (no queries)."""
        if source["source"] == "anipose":
            cams, error = read_anipose_toml(find_full_path(source["source_file"]))
            by_name = {c.name: c for c in cams}
            cams = [by_name[c] for c in cameras]  # the file's world frame is kept
            master = {
                "reprojection_error": error,
                "initial_error": None,
                "n_frames": 0,
                "unit": "mm",
                "warning": "",
            }
            return master, [c.to_row() | {"camera_name": c.name} for c in cams]
        detections, sizes = [], []
        for camera, video in zip(cameras, videos, strict=True):
            found, size = multiview.detect_video(find_full_path(video), board)
            if not found:
                raise InputError(
                    f"The calibration board was never detected in {video} (camera {camera!r}): check "
                    f"the board parameters ({board['board_type']} {board['squares_x']}×{board['squares_y']}"
                    f"{', ' + board['dictionary'] if board['board_type'] == 'charuco' else ''})."
                )
            detections.append(found)
            sizes.append(size)
        result = multiview.calibrate(detections, sizes, cameras, board)
        warning = ""
        if result.reprojection_error > limit:
            warning = (
                f"mean reprojection error {result.reprojection_error:.2f} px is above the board's "
                f"max_reprojection_error {limit:g} px: check the board parameters and that the "
                "videos are synchronised, or record the board closer and from more angles."
            )
        master = {
            "reprojection_error": result.reprojection_error,
            "initial_error": result.initial_error,
            "n_frames": result.n_frames,
            "unit": board["unit"],
            "warning": warning,
        }
        return master, [c.to_row() | {"camera_name": c.name} for c in result.cameras]

    def make_insert(self, key, master, cameras):
        """Insert the calibration and its cameras."""
        self.insert1({**key, **master, "calibration_time": _dt.datetime.now().replace(microsecond=0)})
        self.Camera.insert([{**key, **row} for row in cameras])

    @classmethod
    def cameras(cls, key: dict) -> list[multiview.Camera]:
        """Return the calibrated cameras of one calibration, in the rig's order."""
        match = one_key(cls, key)
        order = Rig.camera_names(match)
        rows = {r["camera_name"]: r for r in (cls.Camera & match).to_dicts()}
        return [multiview.Camera.from_row(name, rows[name]) for name in order]

    @classmethod
    def export_anipose_toml(cls, key: dict, path) -> Path:
        """Write a calibration in anipose's ``calibration.toml`` format."""
        match = one_key(cls, key)
        error = (cls & match).fetch1("reprojection_error")
        return write_anipose_toml(cls.cameras(match), path, error)


def read_anipose_toml(path) -> tuple[list[multiview.Camera], float | None]:
    """Read anipose's ``calibration.toml``: cameras (``cam_0`` ...) and the metadata's error.

    Raises
    ------
    InputError
        When a camera section lacks a field, naming it.
    """
    import tomllib

    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise InputError(f"Cannot read anipose calibration {path}: {err}") from err
    cams = []
    for section in sorted((k for k in data if k.startswith("cam_")), key=lambda k: int(k.split("_")[1])):
        entry = data[section]
        missing = [
            f for f in ("name", "size", "matrix", "distortions", "rotation", "translation") if f not in entry
        ]
        if missing:
            raise InputError(f"{path} [{section}] lacks {missing}: it is not an anipose calibration.toml.")
        dist = np.zeros(5)
        given = np.asarray(entry["distortions"], float).reshape(-1)
        dist[: min(5, len(given))] = given[:5]
        cams.append(
            multiview.Camera(
                str(entry["name"]),
                (int(entry["size"][0]), int(entry["size"][1])),
                np.asarray(entry["matrix"], float),
                dist,
                np.asarray(entry["rotation"], float).reshape(3),
                np.asarray(entry["translation"], float).reshape(3),
            )
        )
    if len(cams) < 2:
        raise InputError(f"{path} calibrates {len(cams)} cameras; a rig needs two or more.")
    error = data.get("metadata", {}).get("error")
    return cams, None if error is None else float(error)


def write_anipose_toml(cams: list[multiview.Camera], path, error: float | None = None) -> Path:
    """Write cameras in anipose's ``calibration.toml`` layout (readable by aniposelib)."""

    def vec(a) -> str:
        return "[ " + ", ".join(repr(float(v)) for v in np.asarray(a, float).reshape(-1)) + ",]"

    lines = []
    for i, c in enumerate(cams):
        matrix = "[ " + ", ".join(vec(row) for row in np.asarray(c.K, float)) + ",]"
        lines += [
            f"[cam_{i}]",
            f'name = "{c.name}"',
            f"size = [ {int(c.size[0])}, {int(c.size[1])},]",
            f"matrix = {matrix}",
            f"distortions = {vec(c.dist)}",
            f"rotation = {vec(c.rvec)}",
            f"translation = {vec(c.tvec)}",
            "",
        ]
    lines += ["[metadata]", "adjusted = true", f"error = {float(error) if error is not None else 0.0!r}", ""]
    path = Path(path)
    path.write_text("\n".join(lines))
    return path


@schema
class MultiViewRecording(dj.Manual):
    definition = """
    # a session's recordings of the same scene by the cameras of one rig
    -> session.Session
    multiview_id: int16
    ---
    -> Rig
    nframes: int32  # common frames: each view's frames from its offset on
    fps: float64
    """

    class View(dj.Part):
        definition = """
        -> master
        camera_name: varchar(32)
        ---
        -> model.VideoRecording
        frame_offset=0: int32  # this view's frame (offset + i) shows the scene's frame i
        """

    @classmethod
    def insert_views(cls, session_key: dict, multiview_id: int, rig_name: str, views: dict) -> dict:
        """Group a session's recordings of one rig after checking that they can be paired.

        Parameters
        ----------
        session_key : dict
            A ``session.Session``.
        multiview_id : int
        rig_name : str
        views : dict
            Camera name → ``recording_id``, or → ``(recording_id, frame_offset)``.

        Raises
        ------
        InputError
            A camera not in the rig, fewer than two views, a recording used twice, or views
            whose frame rates or frame counts (after their offsets) differ, naming them.
        """
        key = {**one_key(session.Session, session_key), "multiview_id": multiview_id}
        cameras = Rig.camera_names({"rig_name": rig_name})
        unknown = sorted(set(views) - set(cameras))
        if unknown:
            raise InputError(f"Cameras {unknown} are not in rig {rig_name!r} (its cameras: {cameras}).")
        if len(views) < 2:
            raise InputError("A multi-view recording needs two or more views.")
        rows = []
        for camera in [c for c in cameras if c in views]:
            value = views[camera]
            rec, offset = (
                (value, 0) if isinstance(value, int | np.integer) else (int(value[0]), int(value[1]))
            )
            rec_key = {**one_key(session.Session, session_key), "recording_id": int(rec)}
            if not model.VideoRecording & rec_key:
                raise InputError(f"Session {session_key} has no recording {rec} (camera {camera!r}).")
            if not model.RecordingInfo & rec_key:
                model.RecordingInfo.populate(rec_key)
            info = (model.RecordingInfo & rec_key).fetch1()
            if not 0 <= offset < info["nframes"]:
                raise InputError(
                    f"Camera {camera!r}: frame_offset {offset} is outside its {info['nframes']} frames."
                )
            rows.append(
                {"camera_name": camera, "recording_id": int(rec), "frame_offset": offset, "info": info}
            )
        if len({r["recording_id"] for r in rows}) != len(rows):
            raise InputError("Each view needs its own recording; a recording was given for two cameras.")
        fps = {r["camera_name"]: float(r["info"]["fps"]) for r in rows}
        if max(fps.values()) - min(fps.values()) > 1e-3 * max(fps.values()):
            raise InputError(f"The views' frame rates differ ({fps}); the cameras must be synchronised.")
        counts = {r["camera_name"]: int(r["info"]["nframes"]) - r["frame_offset"] for r in rows}
        if len(set(counts.values())) != 1:
            raise InputError(
                f"The views have different numbers of frames after their offsets ({counts}): give "
                "each camera's frame_offset so that frame i shows the same instant in all, and trim "
                "the videos to the same length."
            )
        if cls & key:
            raise dj.errors.DuplicateError(f"Multi-view recording {key} exists; use another multiview_id.")
        with cls.connection.transaction:
            cls.insert1(
                {
                    **key,
                    "rig_name": rig_name,
                    "nframes": next(iter(counts.values())),
                    "fps": rows[0]["info"]["fps"],
                }
            )
            cls.View.insert(
                [{**key, **{k: r[k] for k in ("camera_name", "recording_id", "frame_offset")}} for r in rows]
            )
        return key


@schema
class TriangulationParamSet(dj.Lookup):
    definition = """
    # how 2D views become 3D points
    triangulation_paramset_idx: int16
    ---
    method: enum('dlt', 'ransac', 'optim')  # see workflow_deeplabcut.multiview.triangulate
    likelihood_threshold=0.6: float64  # a view with a lower likelihood is not used
    ransac_threshold=8.0: float64  # px: ransac/optim inlier distance (optim: robust loss scale)
    smoothing=1.0: float64  # optim: weight of the acceleration term
    max_reprojection_error=5.0: float64  # px: an estimation whose median is larger is flagged
    triangulation_paramset_desc="": varchar(255)
    """
    contents = [
        {
            "triangulation_paramset_idx": 0,
            "method": "dlt",
            "triangulation_paramset_desc": "linear, every view above 0.6",
        },
        {
            "triangulation_paramset_idx": 1,
            "method": "ransac",
            "triangulation_paramset_desc": "best camera pair's inliers",
        },
        {
            "triangulation_paramset_idx": 2,
            "method": "optim",
            "triangulation_paramset_desc": "ransac, then smoothed in time",
        },
    ]

    @classmethod
    def insert_new_params(cls, triangulation_paramset_idx: int, method: str, **params) -> dict:
        """Insert a parameter set after checking it."""
        if method not in multiview.METHODS:
            raise InputError(f"Unknown triangulation method {method!r}; choose from {multiview.METHODS}.")
        unknown = sorted(set(params) - set(cls.heading.secondary_attributes))
        if unknown:
            raise InputError(
                f"Unknown triangulation parameters {unknown}; known: {cls.heading.secondary_attributes}."
            )
        cls.insert1({"triangulation_paramset_idx": triangulation_paramset_idx, "method": method, **params})
        return {"triangulation_paramset_idx": triangulation_paramset_idx}


@schema
class TriangulationTask(dj.Manual):
    definition = """
    # triangulate one 2D estimation per view of a multi-view recording with a calibration
    -> MultiViewRecording
    -> Calibration
    -> TriangulationParamSet
    ---
    -> model.PoseEstimationTask  # the 3D estimation (model of engine 'triangulation')
    unique index (subject, session_datetime, recording_id, model_name)
    """

    class View(dj.Part):
        definition = """
        -> master
        camera_name: varchar(32)
        ---
        -> model.PoseEstimationTask.proj(view_recording_id="recording_id", view_model="model_name")
        """

    @classmethod
    def insert_task(
        cls,
        multiview_key: dict,
        calibration_key: dict,
        models: str | dict,
        *,
        triangulation_paramset_idx: int = 0,
        model_name: str | None = None,
    ) -> dict:
        """Add a triangulation task and its 3D pose-estimation task, in one transaction.

        Parameters
        ----------
        multiview_key : dict
            One ``MultiViewRecording``.
        calibration_key : dict
            One ``Calibration`` of the same rig.
        models : str or dict
            The 2D model of every view, or camera name → model name (models may differ per
            view; their body parts must match). A view whose recording has no pose-estimation
            task for its model gets one (:meth:`model.PoseEstimationTask.generate`).
        triangulation_paramset_idx : int
        model_name : str, optional
            The 3D model to register (or reuse); default ``<rig>-3d``.

        Returns
        -------
        dict
            The task's primary key.
        """
        mv = (MultiViewRecording & one_key(MultiViewRecording, multiview_key)).fetch1()
        calib = one_key(Calibration, calibration_key)
        if calib["rig_name"] != mv["rig_name"]:
            raise InputError(
                f"Calibration {calib} is of rig {calib['rig_name']!r} but the recording was filmed "
                f"with rig {mv['rig_name']!r}: use a calibration of {mv['rig_name']!r}."
            )
        if not TriangulationParamSet & {"triangulation_paramset_idx": triangulation_paramset_idx}:
            raise InputError(f"No TriangulationParamSet {triangulation_paramset_idx}.")
        mv_key = {k: mv[k] for k in MultiViewRecording.primary_key}
        views = sorted(
            (MultiViewRecording.View & mv_key).to_dicts(),
            key=lambda r: Rig.camera_names(mv).index(r["camera_name"]),
        )
        per_view = models if isinstance(models, dict) else {v["camera_name"]: models for v in views}
        missing = [v["camera_name"] for v in views if v["camera_name"] not in per_view]
        if missing:
            raise InputError(f"No 2D model given for cameras {missing}.")
        parts = None
        for v in views:
            name = per_view[v["camera_name"]]
            if not model.Model & {"model_name": name}:
                raise InputError(f"No model named {name!r} (camera {v['camera_name']!r}).")
            these = sorted(r["body_part"] for r in (model.Model.BodyPart & {"model_name": name}).to_dicts())
            if parts is not None and these != parts:
                raise InputError(
                    f"The views' models have different body parts ({parts} and {these} for camera "
                    f"{v['camera_name']!r}): triangulation pairs body parts by name, so they must match."
                )
            parts = these
        name3d = model_name or f"{mv['rig_name']}-3d"
        key = {**mv_key, **calib, "triangulation_paramset_idx": triangulation_paramset_idx}
        if cls & key:
            raise dj.errors.DuplicateError(f"Triangulation task {key} exists.")
        reference = views[0]["recording_id"]
        pose_key = {
            "subject": mv["subject"],
            "session_datetime": mv["session_datetime"],
            "recording_id": reference,
        }
        with cls.connection.transaction:
            for v in views:  # a view without a 2D task gets one (load or trigger, as generate decides)
                view_key = {
                    **pose_key,
                    "recording_id": v["recording_id"],
                    "model_name": per_view[v["camera_name"]],
                }
                if not model.PoseEstimationTask & view_key:
                    recording = {k: view_key[k] for k in ("subject", "session_datetime", "recording_id")}
                    model.PoseEstimationTask.generate(recording, per_view[v["camera_name"]])
            model.Model.insert_triangulation_model(name3d, parts)
            if model.PoseEstimationTask & {**pose_key, "model_name": name3d}:
                raise dj.errors.DuplicateError(
                    f"Recording {reference} already has a 3D estimation by model {name3d!r}; give "
                    "another model_name for a second triangulation of it."
                )
            model.PoseEstimationTask.insert1(
                {
                    **pose_key,
                    "model_name": name3d,
                    "task_mode": "load",
                    "pose_estimation_output_dir": "",
                    "pose_estimation_params": {"triangulation": True},
                }
            )
            cls.insert1({**key, "recording_id": reference, "model_name": name3d})
            cls.View.insert(
                [
                    {
                        **key,
                        "camera_name": v["camera_name"],
                        "view_recording_id": v["recording_id"],
                        "view_model": per_view[v["camera_name"]],
                    }
                    for v in views
                ]
            )
        return key

    @classmethod
    def waiting(cls):
        """Return the 3D pose-estimation tasks whose views are not all estimated yet (a query)."""
        done = model.PoseEstimation.proj(view_recording_id="recording_id", view_model="model_name")
        missing = cls.View() - done
        return (cls & missing.proj()).proj("recording_id", "model_name")


def triangulation_inputs(pose_key: dict) -> dict:
    """Fetch what the 3D estimation of a pose task needs: cameras, views' poses, parameters.

    Raises
    ------
    InputError
        When a view's estimation is missing or does not cover the multi-view recording.
    """
    task = TriangulationTask & {
        k: pose_key[k] for k in ("subject", "session_datetime", "recording_id", "model_name")
    }
    task = task.fetch1()
    tkey = {k: task[k] for k in TriangulationTask.primary_key}
    mv = (MultiViewRecording & tkey).fetch1()
    params = (TriangulationParamSet & tkey).fetch1()
    cams = Calibration.cameras(tkey)
    by_cam = {c.name: c for c in cams}
    views = (TriangulationTask.View & tkey).to_dicts()
    offsets = {r["camera_name"]: r["frame_offset"] for r in (MultiViewRecording.View & tkey).to_dicts()}
    order = [c for c in Rig.camera_names(tkey) if c in {v["camera_name"] for v in views}]
    views = sorted(views, key=lambda v: order.index(v["camera_name"]))
    windows = []
    for v in views:
        est = {
            "subject": task["subject"],
            "session_datetime": task["session_datetime"],
            "recording_id": v["view_recording_id"],
            "model_name": v["view_model"],
        }
        if not model.PoseEstimation & est:
            raise InputError(
                f"Camera {v['camera_name']!r} has no pose estimation {est} yet; populate it first."
            )
        start = offsets[v["camera_name"]]
        poses_ref, coords = (model.PoseEstimation & est).fetch1("poses", "coords")
        parts = (model.PoseEstimation.BodyPartPosition & est).to_dicts()
        # The array's store path (it names its content), read in make_compute: the fetched
        # inputs are hashed and compared before the insert, the arrays need not be.
        windows.append(
            {
                "path": poses_ref.path,
                "parts": parts,
                "coords": coords,
                "start": start,
                "stop": start + mv["nframes"],
            }
        )
    return {
        "cameras": [by_cam[c] for c in order],
        "names": order,
        "windows": windows,
        "params": params,
        "unit": (Calibration & tkey).fetch1("unit"),
    }


def triangulate_windows(inputs: dict):
    """Triangulate fetched views (:func:`triangulation_inputs`); return the stored layout.

    Returns
    -------
    slots, coords, values, quality
        ``slots`` as (individual, body part), ``coords`` ``("x", "y", "z", "likelihood")``,
        ``values`` (frames, slots, 4), and ``quality``: the ``Triangulated`` row's values.
    """
    from .posestore import StoredFrames

    windows = []
    for w in inputs["windows"]:
        rows = sorted(w["parts"], key=lambda r: r["slot"])
        windows.append(
            {
                "frames": StoredFrames(w["path"], w["start"], w["stop"]),
                "slots": [(r["individual"], r["body_part"]) for r in rows],
                "coords": tuple(w["coords"].split(",")),
            }
        )
    slots = sorted(windows[0]["slots"])
    for name, w in zip(inputs["names"], windows, strict=True):
        if sorted(w["slots"]) != slots:
            raise InputError(
                f"Camera {name!r}'s estimation holds {sorted(w['slots'])} but camera "
                f"{inputs['names'][0]!r}'s holds {slots}: the views' body parts must match."
            )
    lengths = {name: w["frames"].shape[0] for name, w in zip(inputs["names"], windows, strict=True)}
    if len(set(lengths.values())) != 1:
        raise InputError(f"The views' estimations have different numbers of frames {lengths}.")
    views = [_Reordered(w, slots) for w in windows]
    p = inputs["params"]
    tri = multiview.triangulate_views(
        views,
        inputs["cameras"],
        method=p["method"],
        likelihood_threshold=p["likelihood_threshold"],
        ransac_threshold=p["ransac_threshold"],
        smoothing=p["smoothing"],
    )
    values = tri.values
    done = tri.n_cameras >= 2
    median = float(np.median(tri.reprojection_error[done])) if done.any() else None
    warning = ""
    if median is None:
        warning = (
            "no point was seen by two cameras above the likelihood threshold; check the views "
            "and the threshold."
        )
    elif median > p["max_reprojection_error"]:
        warning = (
            f"median reprojection error {median:.2f} px is above max_reprojection_error "
            f"{p['max_reprojection_error']:g} px: check the calibration (is it of this rig and "
            "session?) and the views' 2D estimations."
        )
    quality = {
        "reprojection_error": tri.reprojection_error,
        "n_cameras": tri.n_cameras,
        "median_reprojection_error": median,
        "fraction_triangulated": float(done.mean()) if done.size else 0.0,
        "unit": inputs["unit"],
        "warning": warning,
    }
    return slots, ("x", "y", "z", "likelihood"), values, quality


class _Reordered:
    """A stored estimation's frames as ``(frames, slots, 3)``: x, y, likelihood in a given slot order.

    Slicing frames reads only those frames (:class:`~workflow_deeplabcut.posestore.StoredFrames`).
    """

    def __init__(self, window: dict, slots: list[tuple[str, str]]):
        self.frames = window["frames"]
        self.index = [window["slots"].index(s) for s in slots]
        self.columns = [window["coords"].index(c) for c in ("x", "y", "likelihood")]
        self.shape = (self.frames.shape[0], len(slots), 3)
        self.plain = self.index == list(range(self.frames.shape[1])) and self.columns == [0, 1, 2]

    def __getitem__(self, frames: slice) -> np.ndarray:
        block = self.frames[frames]
        return block if self.plain else block[:, self.index][:, :, self.columns]
