"""A synthetic three-camera scene with known geometry: a ChArUco board and a moving body.

The scene, in millimetres (world frame = the floor, z up, origin at the arena centre):

- three cameras (640×480, focal 750 px, no lens distortion) on a circle of radius 420 mm,
  120° apart, 300 mm above the floor, each looking at the arena centre;
- a ChArUco board (7×5 squares of 40 mm, 30 mm markers, ``DICT_4X4_50``) shown at
  ``n_board`` poses near the centre, tilted up to 30°;
- a body of three points (``nose``, ``head``, ``tail``) running anti-clockwise on a circle of
  radius 100 mm at 25–50 mm height, one turn every ``period`` frames; each point is drawn as
  a disc of its own colour.

The calibration expresses everything in camera 0's frame: :func:`in_camera0` converts the
truth to that frame. Nothing is downloaded; the same arguments give the same files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .multiview import Camera, charuco_board
from .synthetic import write_video

BODY_PARTS = ("nose", "head", "tail")
_COLOURS = {"nose": (235, 40, 40), "head": (40, 235, 40), "tail": (60, 90, 250)}
BOARD = {
    "board_type": "charuco",
    "squares_x": 7,
    "squares_y": 5,
    "square_length": 40.0,
    "marker_length": 30.0,
    "dictionary": "DICT_4X4_50",
    "unit": "mm",
}


@dataclass(frozen=True)
class Scene:
    """Parameters of the synthetic scene (see the module docstring)."""

    n_cameras: int = 3
    width: int = 640
    height: int = 480
    focal: float = 750.0
    distance: float = 420.0
    elevation: float = 300.0
    n_board: int = 40
    n_frames: int = 120
    period: int = 120
    radius: float = 100.0
    fps: float = 30.0
    seed: int = 0


def _look_at(position: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    forward = target - position
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    rot = np.stack([right, down, forward])  # rows: camera x, y, z in world coordinates
    return rot, -rot @ position


def cameras(scene: Scene = Scene()) -> list[Camera]:
    """Return the true cameras, with extrinsics in the world (floor) frame."""
    k = np.array(
        [[scene.focal, 0, (scene.width - 1) / 2], [0, scene.focal, (scene.height - 1) / 2], [0, 0, 1]]
    )
    out = []
    for i in range(scene.n_cameras):
        angle = 2 * np.pi * i / scene.n_cameras + 0.3
        pos = np.array([scene.distance * np.cos(angle), scene.distance * np.sin(angle), scene.elevation])
        rot, t = _look_at(pos, np.array([0.0, 0.0, 0.0]))
        out.append(
            Camera(
                f"cam{i}",
                (scene.width, scene.height),
                k.copy(),
                np.zeros(5),
                cv2.Rodrigues(rot)[0].reshape(3),
                t,
            )
        )
    return out


def in_camera0(points: np.ndarray, cams: list[Camera]) -> np.ndarray:
    """Express world points ``(..., 3)`` in camera 0's frame (the calibration's world)."""
    return points @ cams[0].R.T + cams[0].tvec


def relative_cameras(cams: list[Camera]) -> list[Camera]:
    """Return the true cameras re-expressed with camera 0 as the world frame (what calibration finds)."""
    r0, t0 = cams[0].R, cams[0].tvec
    out = []
    for c in cams:
        rot = c.R @ r0.T
        out.append(Camera(c.name, c.size, c.K, c.dist, cv2.Rodrigues(rot)[0].reshape(3), c.tvec - rot @ t0))
    return out


def board_poses(scene: Scene = Scene()) -> list[tuple[np.ndarray, np.ndarray]]:
    """Return the board's poses (board → world rotation matrix, translation), board centred on the pose."""
    rng = np.random.default_rng(scene.seed)
    poses = []
    for _ in range(scene.n_board):
        tilt = cv2.Rodrigues(np.array([*rng.uniform(-0.6, 0.6, 2), 0.0]))[0]
        spin = cv2.Rodrigues(np.array([0.0, 0.0, rng.uniform(-np.pi, np.pi)]))[0]
        flip = np.diag([1.0, -1.0, -1.0])  # the board's z points into it: face it up
        poses.append((spin @ tilt @ flip, np.array([*rng.uniform(-60, 60, 2), rng.uniform(0, 60)])))
    return poses


def render_board(scene: Scene = Scene(), px_per_unit: float = 8.0) -> list[np.ndarray]:
    """Render the board at each of :func:`board_poses` in each camera: ``(n_board, h, w, 3)`` per camera."""
    board = charuco_board(BOARD)
    width, height = BOARD["squares_x"] * BOARD["square_length"], BOARD["squares_y"] * BOARD["square_length"]
    image = board.generateImage((int(width * px_per_unit), int(height * px_per_unit)))
    centre = np.array([width / 2, height / 2, 0.0])
    to_board = np.array([[1 / px_per_unit, 0, 0], [0, 1 / px_per_unit, 0], [0, 0, 1]])
    videos = []
    for cam in cameras(scene):
        frames = np.full((scene.n_board, scene.height, scene.width, 3), 90, np.uint8)
        for f, (rot, t) in enumerate(board_poses(scene)):
            # board (X, Y, 0) → world: rot @ ([X, Y, 0] - centre) + t → camera.
            r_cam = cam.R @ rot
            t_cam = cam.R @ (t - rot @ centre) + cam.tvec
            h = cam.K @ np.column_stack([r_cam[:, 0], r_cam[:, 1], t_cam]) @ to_board
            # Rendered at 4× and averaged down, so that edges are anti-aliased as a lens would.
            fine = np.array([[4, 0, 1.5], [0, 4, 1.5], [0, 0, 1.0]]) @ h
            size = (4 * scene.width, 4 * scene.height)
            warped = cv2.warpPerspective(image, fine, size, flags=cv2.INTER_LINEAR, borderValue=90)
            warped = cv2.resize(warped, (scene.width, scene.height), interpolation=cv2.INTER_AREA)
            frames[f] = np.repeat(warped[:, :, None], 3, axis=2)
        videos.append(frames)
    return videos


def body_truth(scene: Scene = Scene()) -> np.ndarray:
    """Return the body's true positions ``(n_frames, 3 parts, 3)`` in world millimetres."""
    t = np.arange(scene.n_frames)
    angle = 2 * np.pi * t / scene.period
    out = np.zeros((scene.n_frames, len(BODY_PARTS), 3))
    for i, lag in enumerate((0.0, 0.25, 0.75)):
        a = angle - lag
        out[:, i, 0] = scene.radius * np.cos(a)
        out[:, i, 1] = scene.radius * np.sin(a)
        out[:, i, 2] = 30 + 15 * (i == 0) + 5 * np.sin(3 * angle)
    return out


def render_body(scene: Scene = Scene()) -> list[np.ndarray]:
    """Render the body in each camera: discs (9 px radius at 640 px wide) on a dark, noisy floor."""
    rng = np.random.default_rng(scene.seed + 1)
    truth = body_truth(scene)
    yy, xx = np.mgrid[0 : scene.height, 0 : scene.width]
    videos = []
    for cam in cameras(scene):
        px = cam.project(truth)
        frames = rng.integers(10, 40, size=(scene.n_frames, scene.height, scene.width, 3), dtype=np.uint8)
        radius2 = (9.0 * scene.width / 640) ** 2
        for f in range(scene.n_frames):
            for k, part in enumerate(BODY_PARTS):
                x, y = px[f, k]
                frames[f][(xx - x) ** 2 + (yy - y) ** 2 <= radius2] = _COLOURS[part]
        videos.append(frames)
    return videos


def write_scene(directory: Path, scene: Scene = Scene()) -> dict:
    """Write the calibration and body videos of every camera.

    Returns
    -------
    dict
        ``calibration`` and ``body``: lists of video paths, one per camera (``cam0`` ...).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    # The board's corners are located to a tenth of a pixel only in a high-quality video.
    calib = [
        write_video(
            directory / f"calibration_{cam.name}.mp4",
            frames,
            scene.fps,
            codec="libx264",
            options={"crf": "8"},
        )
        for cam, frames in zip(cameras(scene), render_board(scene), strict=True)
    ]
    body = [
        write_video(directory / f"body_{cam.name}.mp4", frames, scene.fps)
        for cam, frames in zip(cameras(scene), render_body(scene), strict=True)
    ]
    return {"calibration": calib, "body": body}


def view_estimates(scene: Scene = Scene(), noise_px: float = 1.0, seed: int = 0) -> list:
    """Return the body's true projection in each camera plus Gaussian noise, as 2D pose estimates.

    Returns
    -------
    list of pandas.DataFrame
        One per camera, columns ``(bodyparts, coords)`` with ``x``, ``y`` and ``likelihood``
        (0.99), as :func:`workflow_deeplabcut.synthetic.write_dlc_h5` takes them.
    """
    import pandas as pd

    rng = np.random.default_rng(seed)
    truth = body_truth(scene)
    out = []
    for cam in cameras(scene):
        px = cam.project(truth) + rng.normal(0, noise_px, (scene.n_frames, len(BODY_PARTS), 2))
        columns = {}
        for k, part in enumerate(BODY_PARTS):
            columns[(part, "x")], columns[(part, "y")] = px[:, k, 0], px[:, k, 1]
            columns[(part, "likelihood")] = np.full(scene.n_frames, 0.99)
        frame = pd.DataFrame(columns, index=pd.RangeIndex(scene.n_frames, name="frame"))
        frame.columns = pd.MultiIndex.from_tuples(frame.columns, names=["bodyparts", "coords"])
        out.append(frame)
    return out


def make_dlc_project(directory: Path, scene: Scene, body_videos: list[Path], n_labeled: int = 12) -> Path:
    """Create one DeepLabCut project for all the cameras' body videos, labeled with the truth.

    Each video gets ``n_labeled`` evenly spaced frames (decoded from the video) in
    ``labeled-data/<video>/``, labeled
    with the body's exact projection (DeepLabCut's ``CollectedData_truth.h5`` layout). One
    model learns every view.

    Returns
    -------
    Path
        The project's ``config.yaml``.
    """
    import pandas as pd
    from PIL import Image

    from . import dlc

    directory = Path(directory)
    config = dlc.create_project("threed", "truth", body_videos[0], directory, bodyparts=list(BODY_PARTS))
    project = config.parent
    cfg = dlc.read_config(config)
    sets = dict(cfg["video_sets"])
    truth = body_truth(scene)
    picked = np.linspace(0, scene.n_frames - 1, n_labeled).round().astype(int)
    for cam, video in zip(cameras(scene), body_videos, strict=True):
        frames = _decode(video)  # as DeepLabCut extracts them: the codec's colours, not the render's
        copy = project / "videos" / Path(video).name
        if not copy.exists():
            copy.write_bytes(Path(video).read_bytes())
        sets = {k: v for k, v in sets.items() if Path(k).name != copy.name}
        sets[str(copy)] = {"crop": f"0, {scene.width}, 0, {scene.height}"}
        folder = project / "labeled-data" / copy.stem
        folder.mkdir(parents=True, exist_ok=True)
        px = cam.project(truth[picked])
        index = []
        for f in picked:
            name = f"img{f:04d}.png"
            Image.fromarray(frames[f]).save(folder / name)
            index.append(("labeled-data", copy.stem, name))
        columns = pd.MultiIndex.from_product(
            [["truth"], list(BODY_PARTS), ["x", "y"]], names=["scorer", "bodyparts", "coords"]
        )
        labels = pd.DataFrame(
            px.reshape(len(picked), -1), index=pd.MultiIndex.from_tuples(index), columns=columns
        )
        labels.to_hdf(folder / "CollectedData_truth.h5", key="df_with_missing", mode="w")
    dlc.edit_config(config, {"video_sets": sets})
    return config


def _decode(video: Path) -> np.ndarray:
    """Decode every frame of a video to RGB."""
    capture = cv2.VideoCapture(str(video))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    capture.release()
    return np.stack(frames)
