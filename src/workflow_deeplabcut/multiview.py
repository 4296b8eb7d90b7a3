"""Multi-camera geometry: board detection, calibration, triangulation (pure functions, no database).

Conventions (those of anipose): camera 0 of a rig defines the world frame; each camera has an
intrinsic matrix ``K`` (3×3), OpenCV distortion coefficients ``dist`` (5), and the rotation
``rvec`` (Rodrigues, 3) and translation ``tvec`` (3) that take a world point into the camera's
frame (``x_cam = R x_world + t``). Lengths are in the calibration board's unit (e.g. mm).
Triangulation works on undistorted, normalised image points, so lens distortion is removed once.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from .errors import InputError


class _OpenCV:
    """OpenCV, imported on first use: importing the pipeline (which declares ``threed``) stays light."""

    def __getattr__(self, name):
        import cv2 as module

        return getattr(module, name)


cv2 = _OpenCV()

#: Boards the calibration reads.
BOARD_TYPES = ("charuco", "checkerboard")
#: Triangulation methods (``TriangulationParamSet.method``).
METHODS = ("dlt", "ransac", "optim")


@dataclass
class Camera:
    """One calibrated camera (see the module's conventions)."""

    name: str
    size: tuple[int, int]  # (width, height) in pixels
    K: np.ndarray
    dist: np.ndarray
    rvec: np.ndarray
    tvec: np.ndarray
    reprojection_error: float = float("nan")  # mean px over the board corners it saw
    n_frames: int = 0  # calibration frames in which it saw the board

    @property
    def R(self) -> np.ndarray:
        """Return the rotation matrix (world → camera)."""
        return cv2.Rodrigues(np.asarray(self.rvec, float).reshape(3))[0]

    @property
    def center(self) -> np.ndarray:
        """The camera's position in the world frame."""
        return -self.R.T @ np.asarray(self.tvec, float).reshape(3)

    def extrinsic(self) -> np.ndarray:
        """Return the 3×4 matrix ``[R | t]`` (world → camera)."""
        return np.hstack([self.R, np.asarray(self.tvec, float).reshape(3, 1)])

    def project(self, points: np.ndarray) -> np.ndarray:
        """Project world points ``(..., 3)`` to pixels ``(..., 2)`` (with distortion); NaN stays NaN."""
        points = np.asarray(points, float)
        flat = points.reshape(-1, 3)
        out = np.full((len(flat), 2), np.nan)
        ok = np.isfinite(flat).all(axis=1)
        if ok.any():
            px, _ = cv2.projectPoints(flat[ok], _f(self.rvec), _f(self.tvec), self.K, _f(self.dist))
            out[ok] = px.reshape(-1, 2)
        return out.reshape(points.shape[:-1] + (2,))

    def undistort(self, pixels: np.ndarray) -> np.ndarray:
        """Map pixels ``(..., 2)`` to undistorted normalised image coordinates; NaN stays NaN."""
        pixels = np.asarray(pixels, float)
        flat = pixels.reshape(-1, 2)
        out = np.full_like(flat, np.nan)
        ok = np.isfinite(flat).all(axis=1)
        if ok.any():
            out[ok] = cv2.undistortPoints(flat[ok].reshape(-1, 1, 2), self.K, _f(self.dist)).reshape(-1, 2)
        return out.reshape(pixels.shape)

    def to_row(self) -> dict:
        """Return the values of a ``Calibration.Camera`` row."""
        return {
            "image_width": int(self.size[0]),
            "image_height": int(self.size[1]),
            "intrinsics": np.asarray(self.K, float),
            "distortion": np.asarray(self.dist, float).reshape(-1),
            "rotation": np.asarray(self.rvec, float).reshape(3),
            "translation": np.asarray(self.tvec, float).reshape(3),
            "reprojection_error": None
            if not np.isfinite(self.reprojection_error)
            else float(self.reprojection_error),
            "n_frames": int(self.n_frames),
        }

    @classmethod
    def from_row(cls, name: str, row: dict) -> Camera:
        """Build a camera from a ``Calibration.Camera`` row."""
        err = row.get("reprojection_error")
        return cls(
            name,
            (int(row["image_width"]), int(row["image_height"])),
            np.asarray(row["intrinsics"], float),
            np.asarray(row["distortion"], float),
            np.asarray(row["rotation"], float),
            np.asarray(row["translation"], float),
            float("nan") if err is None else float(err),
            int(row.get("n_frames") or 0),
        )


def _f(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


# ----------------------------------------------------------------------------- boards


def check_board(params: dict) -> dict:
    """Check a board's parameters and return them complete.

    Keys: ``board_type`` (``charuco`` or ``checkerboard``), ``squares_x``, ``squares_y``
    (squares along each side), ``square_length`` (in ``unit``), and for ChArUco
    ``marker_length`` and ``dictionary`` (an OpenCV ArUco dictionary name, e.g. ``DICT_4X4_50``).
    """
    p = dict(params)
    if p.get("board_type") not in BOARD_TYPES:
        raise InputError(f"board_type must be one of {BOARD_TYPES}, not {p.get('board_type')!r}.")
    for name in ("squares_x", "squares_y"):
        if int(p.get(name) or 0) < 3:
            raise InputError(f"Board {name} must be at least 3 squares, got {p.get(name)!r}.")
    if not float(p.get("square_length") or 0) > 0:
        raise InputError(f"Board square_length must be positive, got {p.get('square_length')!r}.")
    if p["board_type"] == "charuco":
        if not 0 < float(p.get("marker_length") or 0) < float(p["square_length"]):
            raise InputError("A ChArUco board's marker_length must be positive and below square_length.")
        if not hasattr(cv2.aruco, str(p.get("dictionary"))):
            raise InputError(f"Unknown ArUco dictionary {p.get('dictionary')!r}; e.g. DICT_4X4_50.")
    p.setdefault("unit", "mm")
    return p


def charuco_board(params: dict):
    """Return OpenCV's ``CharucoBoard`` for ChArUco board parameters."""
    dictionary = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, params["dictionary"]))
    return cv2.aruco.CharucoBoard(
        (int(params["squares_x"]), int(params["squares_y"])),
        float(params["square_length"]),
        float(params["marker_length"]),
        dictionary,
    )


def board_corners(params: dict) -> np.ndarray:
    """Return the board's inner corners ``(n, 3)`` in its own frame (z = 0), in ``unit``, by corner id."""
    if params["board_type"] == "charuco":
        return np.asarray(charuco_board(params).getChessboardCorners(), float).reshape(-1, 3)
    nx, ny = int(params["squares_x"]) - 1, int(params["squares_y"]) - 1
    grid = np.zeros((nx * ny, 3))
    grid[:, :2] = np.mgrid[0:nx, 0:ny].T.reshape(-1, 2) * float(params["square_length"])
    return grid


def detect_board(image: np.ndarray, params: dict, detector=None) -> tuple[np.ndarray, np.ndarray] | None:
    """Find a board's corners in one image.

    Returns
    -------
    (ids, pixels) or None
        Corner ids into :func:`board_corners` and their sub-pixel positions ``(n, 2)``; None
        when fewer than 6 corners were found.
    """
    gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if params["board_type"] == "charuco":
        detector = detector or cv2.aruco.CharucoDetector(charuco_board(params))
        corners, ids, _, _ = detector.detectBoard(gray)
        if ids is None or len(ids) < 6:
            return None
        return ids.reshape(-1).astype(int), corners.reshape(-1, 2).astype(float)
    pattern = (int(params["squares_x"]) - 1, int(params["squares_y"]) - 1)
    found, corners = cv2.findChessboardCorners(gray, pattern)
    if not found:
        return None
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 30, 1e-3)
    corners = cv2.cornerSubPix(gray, corners, (5, 5), (-1, -1), criteria)
    return np.arange(len(corners)), corners.reshape(-1, 2).astype(float)


def detect_video(path, params: dict, every: int = 1) -> tuple[dict[int, tuple], tuple[int, int]]:
    """Detect the board in every ``every``-th frame of a video.

    Returns
    -------
    detections, size
        ``{frame: (ids, pixels)}`` for the frames where it was found, and ``(width, height)``.
    """
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise InputError(f"Cannot open calibration video {path}.")
    detector = cv2.aruco.CharucoDetector(charuco_board(params)) if params["board_type"] == "charuco" else None
    found: dict[int, tuple] = {}
    size = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    index = 0
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            if index % every == 0:
                hit = detect_board(frame, params, detector)
                if hit is not None:
                    found[index] = hit
            index += 1
    finally:
        capture.release()
    return found, size


# ----------------------------------------------------------------------------- calibration


@dataclass
class CalibrationResult:
    """A rig's cameras after bundle adjustment, and how well they fit."""

    cameras: list[Camera]
    reprojection_error: float  # mean px over all corners of all cameras
    n_frames: int  # calibration frames used in the bundle adjustment
    initial_error: float = float("nan")  # the same before bundle adjustment


def _spread(frames: list[int], limit: int) -> list[int]:
    if len(frames) <= limit:
        return list(frames)
    return [frames[i] for i in np.linspace(0, len(frames) - 1, limit).round().astype(int)]


def _average_pose(rvecs: list[np.ndarray], tvecs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Return the chordal mean of rotations (projected back onto SO(3)) and the median translation."""
    m = sum(cv2.Rodrigues(_f(r))[0] for r in rvecs)
    u, _, vt = np.linalg.svd(m)
    r = u @ np.diag([1, 1, np.linalg.det(u @ vt)]) @ vt
    return cv2.Rodrigues(r)[0].reshape(3), np.median(np.asarray(tvecs).reshape(-1, 3), axis=0)


def _compose(r1, t1, r2, t2):
    """Pose 2 after pose 1: x → R2 (R1 x + t1) + t2."""
    rv, tv = cv2.composeRT(_f(r1), _f(t1), _f(r2), _f(t2))[:2]
    return rv.reshape(3), tv.reshape(3)


def _invert(r, t):
    rm = cv2.Rodrigues(_f(r))[0]
    return cv2.Rodrigues(rm.T)[0].reshape(3), -rm.T @ _f(t).reshape(3)


def calibrate(
    detections: list[dict[int, tuple]],
    sizes: list[tuple[int, int]],
    names: list[str],
    board: dict,
    *,
    max_frames: int = 60,
) -> CalibrationResult:
    """Calibrate a rig from synchronised board detections (frame ``i`` is one instant for all).

    Each camera's intrinsics come from OpenCV's ``calibrateCamera`` on its own views; the
    extrinsics start from the board poses seen by pairs of cameras, chained from camera 0, and
    all extrinsics and board poses are then refined together (bundle adjustment with SciPy's
    ``least_squares``, a robust loss, intrinsics held).

    Parameters
    ----------
    detections : list of dict
        Per camera, ``{frame: (ids, pixels)}`` (:func:`detect_video`).
    sizes : list of (width, height)
    names : list of str
        Camera names; the first camera defines the world frame.
    board : dict
        Checked board parameters (:func:`check_board`).
    max_frames : int
        At most this many frames per camera for the intrinsics, and shared frames in the bundle
        adjustment (spread over the recording).

    Raises
    ------
    InputError
        A camera that saw the board in fewer than 3 frames, or a camera that never saw it
        together with another.
    """
    from scipy.optimize import least_squares
    from scipy.sparse import lil_matrix

    corners = board_corners(board)
    n_cams = len(detections)
    for name, det in zip(names, detections, strict=True):
        if len(det) < 3:
            raise InputError(
                f"Camera {name!r} saw the calibration board in {len(det)} frames (at least 3 are "
                "needed): check the board parameters and that the board is in view."
            )
    cams: list[Camera] = []
    poses: list[dict[int, tuple[np.ndarray, np.ndarray]]] = []
    for name, det, size in zip(names, detections, sizes, strict=True):
        frames = _spread(sorted(det), max_frames)
        obj = [corners[det[f][0]].astype(np.float32) for f in frames]
        img = [det[f][1].astype(np.float32) for f in frames]
        # As anipose does: principal point at the image centre, square pixels, one radial
        # coefficient; the rest is poorly determined by a board that fills part of the view.
        guess = cv2.initCameraMatrix2D(obj, img, tuple(size))
        guess[0, 2], guess[1, 2] = (size[0] - 1) / 2, (size[1] - 1) / 2
        guess[1, 1] = guess[0, 0]
        flags = (
            cv2.CALIB_USE_INTRINSIC_GUESS
            | cv2.CALIB_FIX_PRINCIPAL_POINT
            | cv2.CALIB_FIX_ASPECT_RATIO
            | cv2.CALIB_ZERO_TANGENT_DIST
            | cv2.CALIB_FIX_K2
            | cv2.CALIB_FIX_K3
        )
        _, K, dist, _, _ = cv2.calibrateCamera(obj, img, tuple(size), guess, np.zeros(5), flags=flags)
        cams.append(
            Camera(name, tuple(size), K, dist.reshape(-1), np.zeros(3), np.zeros(3), n_frames=len(det))
        )
        per = {}
        for f, (ids, px) in det.items():
            ok, rv, tv = cv2.solvePnP(corners[ids], px, K, dist)
            if ok:
                per[f] = (rv.reshape(3), tv.reshape(3))
        poses.append(per)
    # Extrinsics: breadth-first from camera 0 over cameras that shared board views.
    placed = {0: (np.zeros(3), np.zeros(3))}
    while len(placed) < n_cams:
        best = None
        for a, b in itertools.product(list(placed), range(n_cams)):
            if b in placed:
                continue
            shared = sorted(set(poses[a]) & set(poses[b]))
            if len(shared) >= 3 and (best is None or len(shared) > len(best[2])):
                best = (a, b, shared)
        if best is None:
            missing = [names[c] for c in range(n_cams) if c not in placed]
            raise InputError(
                f"Cameras {missing} never saw the calibration board at the same time as the "
                "others: record frames where the board is seen by them and a calibrated camera."
            )
        a, b, shared = best
        rel = [_compose(*_invert(*poses[a][f]), *poses[b][f]) for f in shared]  # cam a → cam b
        r_ab, t_ab = _average_pose([r for r, _ in rel], [t for _, t in rel])
        placed[b] = _compose(*placed[a], r_ab, t_ab)
    for c, (r, t) in placed.items():
        cams[c].rvec, cams[c].tvec = r, t
    # Bundle adjustment over frames seen by at least two cameras.
    shared_frames = sorted(f for f in set().union(*poses) if sum(f in p for p in poses) >= 2)
    frames = _spread(shared_frames, max_frames)
    board_pose = {}
    for f in frames:
        c = next(c for c in range(n_cams) if f in poses[c])
        board_pose[f] = _compose(*poses[c][f], *_invert(cams[c].rvec, cams[c].tvec))  # board → world
    obs_cam, obs_frame, obs_xyz, obs_px = [], [], [], []
    for i, f in enumerate(frames):
        for c in range(n_cams):
            if f in detections[c]:
                ids, px = detections[c][f]
                obs_cam.append(np.full(len(ids), c))
                obs_frame.append(np.full(len(ids), i))
                obs_xyz.append(corners[ids])
                obs_px.append(px)
    cam_i, frame_i = np.concatenate(obs_cam), np.concatenate(obs_frame)
    xyz, px = np.concatenate(obs_xyz), np.concatenate(obs_px)
    n_ext = 6 * (n_cams - 1)
    n_int = 2 * n_cams  # focal length and k1 per camera
    x0 = np.concatenate(
        [np.concatenate([cams[c].rvec, cams[c].tvec]) for c in range(1, n_cams)]
        + [np.array([cam.K[0, 0], cam.dist[0]]) for cam in cams]
        + [np.concatenate(board_pose[f]) for f in frames]
    )

    centres = np.array([[cam.K[0, 2], cam.K[1, 2]] for cam in cams])

    def unpack(x):
        ext = np.vstack([np.zeros(6), x[:n_ext].reshape(-1, 6)])
        intr = _full_intrinsics(x[n_ext : n_ext + n_int].reshape(-1, 2), centres)
        brd = x[n_ext + n_int :].reshape(-1, 6)
        return ext, intr, brd

    def residuals(x):
        ext, intr, brd = unpack(x)
        world = np.einsum("nij,nj->ni", _rodrigues(brd[frame_i, :3]), xyz) + brd[frame_i, 3:]
        cam = np.einsum("nij,nj->ni", _rodrigues(ext[cam_i, :3]), world) + ext[cam_i, 3:]
        return (_distort(cam[:, :2] / cam[:, 2:3], intr[cam_i]) - px).ravel()

    m = len(cam_i)
    sparsity = lil_matrix((2 * m, len(x0)), dtype=int)
    for k in range(6):
        ok = cam_i > 0
        for r in (0, 1):
            sparsity[2 * np.nonzero(ok)[0] + r, 6 * (cam_i[ok] - 1) + k] = 1
            sparsity[2 * np.arange(m) + r, n_ext + n_int + 6 * frame_i + k] = 1
    for k in range(2):
        for r in (0, 1):
            sparsity[2 * np.arange(m) + r, n_ext + 2 * cam_i + k] = 1
    before = np.linalg.norm(residuals(x0).reshape(-1, 2), axis=1)
    fit = least_squares(residuals, x0, jac_sparsity=sparsity, loss="huber", f_scale=2.0, max_nfev=200)
    ext, intr, _ = unpack(fit.x)
    for c, cam in enumerate(cams):
        if c > 0:
            cam.rvec, cam.tvec = ext[c, :3].copy(), ext[c, 3:].copy()
        fx, fy, cx, cy, k1, k2, p1, p2 = intr[c]
        cam.K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]])
        cam.dist = np.array([k1, k2, p1, p2, 0.0])
    after = np.linalg.norm(residuals(fit.x).reshape(-1, 2), axis=1)
    for c, cam in enumerate(cams):
        cam.reprojection_error = float(after[cam_i == c].mean())
    return CalibrationResult(cams, float(after.mean()), len(frames), initial_error=float(before.mean()))


def _full_intrinsics(fk: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Rows (fx, fy, cx, cy, k1, k2, p1, p2) from (focal, k1) rows and principal points."""
    zeros = np.zeros(len(fk))
    return np.column_stack([fk[:, 0], fk[:, 0], centres[:, 0], centres[:, 1], fk[:, 1], zeros, zeros, zeros])


def _rodrigues(rvecs: np.ndarray) -> np.ndarray:
    """Rotation matrices ``(n, 3, 3)`` from rotation vectors ``(n, 3)``, batched."""
    theta = np.linalg.norm(rvecs, axis=1)
    safe = np.where(theta > 1e-12, theta, 1.0)
    k = rvecs / safe[:, None]
    kx = np.zeros((len(rvecs), 3, 3))
    kx[:, 0, 1], kx[:, 0, 2], kx[:, 1, 2] = -k[:, 2], k[:, 1], -k[:, 0]
    kx[:, 1, 0], kx[:, 2, 0], kx[:, 2, 1] = k[:, 2], -k[:, 1], k[:, 0]
    s, c = np.sin(theta)[:, None, None], np.cos(theta)[:, None, None]
    return np.eye(3)[None] + s * kx + (1 - c) * kx @ kx


def _distort(xy: np.ndarray, intr: np.ndarray) -> np.ndarray:
    """OpenCV's camera model (k1, k2, p1, p2) from normalised points to pixels, per row's intrinsics."""
    fx, fy, cx, cy, k1, k2, p1, p2 = intr.T
    x, y = xy[:, 0], xy[:, 1]
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2 * r2
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    return np.stack([fx * xd + cx, fy * yd + cy], axis=1)


# ----------------------------------------------------------------------------- triangulation


def _dlt(norm: np.ndarray, ext: np.ndarray, use: np.ndarray) -> np.ndarray:
    """Linear triangulation of points ``(C, N, 2)`` (normalised) by the cameras marked in ``use``.

    ``ext`` is ``(C, 3, 4)``. Solves the homogeneous system with the eigenvector of ``AᵀA``
    of smallest eigenvalue, batched over points; points seen by fewer than 2 cameras are NaN.
    """
    n_cams, n = norm.shape[:2]
    a = np.zeros((n, 2 * n_cams, 4))
    w = use.T.astype(float)  # (N, C)
    xy = np.nan_to_num(norm.transpose(1, 0, 2))  # (N, C, 2)
    a[:, 0::2] = (xy[:, :, 0:1] * ext[None, :, 2] - ext[None, :, 0]) * w[:, :, None]
    a[:, 1::2] = (xy[:, :, 1:2] * ext[None, :, 2] - ext[None, :, 1]) * w[:, :, None]
    ata = np.einsum("nki,nkj->nij", a, a)
    _, vec = np.linalg.eigh(ata)
    h = vec[:, :, 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        out = h[:, :3] / h[:, 3:4]
    out[use.sum(axis=0) < 2] = np.nan
    return out


def _errors(points: np.ndarray, norm: np.ndarray, ext: np.ndarray, focal: np.ndarray) -> np.ndarray:
    """Per camera and point, the distance in pixels (normalised × focal) from the reprojection."""
    homog = np.concatenate([points, np.ones((len(points), 1))], axis=1)  # (N, 4)
    cam = np.einsum("cij,nj->cni", ext, homog)  # (C, N, 3)
    with np.errstate(invalid="ignore", divide="ignore"):
        proj = cam[..., :2] / cam[..., 2:3]
    return np.linalg.norm(proj - norm, axis=-1) * focal[:, None]


@dataclass
class Triangulated:
    """Triangulated points and how they were made, per frame and body part."""

    values: np.ndarray  # (frames, parts, 4): x, y, z (NaN where not triangulated), likelihood
    reprojection_error: np.ndarray  # (frames, parts) float32: mean px over the views used
    n_cameras: np.ndarray  # (frames, parts) int8: views used

    @property
    def points(self) -> np.ndarray:
        """The positions ``(frames, parts, 3)`` (a view of ``values``)."""
        return self.values[..., :3]

    @property
    def likelihood(self) -> np.ndarray:
        """The mean likelihood of the views used; 0 where not triangulated (a view of ``values``)."""
        return self.values[..., 3]


def triangulate(
    pixels: np.ndarray,
    likelihood: np.ndarray,
    cameras: list[Camera],
    **options,
) -> Triangulated:
    """Triangulate 2D pose estimates held as ``(cameras, frames, parts, 2)`` and ``(cameras, frames, parts)``.

    See :func:`triangulate_views` for the options.
    """
    pixels = np.asarray(pixels, float)
    views = [
        np.concatenate([pixels[c], np.asarray(likelihood[c], float)[..., None]], axis=-1)
        for c in range(len(pixels))
    ]
    return triangulate_views(views, cameras, **options)


def triangulate_views(
    views: list,
    cameras: list[Camera],
    *,
    method: str = "dlt",
    likelihood_threshold: float = 0.0,
    ransac_threshold: float = 8.0,
    smoothing: float = 1.0,
    chunk: int = 100_000,
) -> Triangulated:
    """Triangulate one 2D pose estimate per camera into 3D.

    Parameters
    ----------
    views : list
        Per camera, a ``(frames, parts, 3)`` array of x, y (pixels; NaN where missing) and
        likelihood, in the same part order for all, or any object with ``shape`` whose
        ``view[a:b]`` gives such frames: they are read ``chunk`` points at a time, so a
        memory-mapped stored estimation is never copied whole.
    cameras : list of Camera
    method : {'dlt', 'ransac', 'optim'}
        ``dlt``: linear least squares over every usable view. ``ransac``: for points seen by 3
        or more cameras, the camera pair whose triangulation has the most views within
        ``ransac_threshold`` px is chosen and the point is triangulated from those inliers.
        ``optim``: the ``ransac`` points refined together over time: reprojection error
        (robust, scale ``ransac_threshold``) plus ``smoothing`` × the acceleration, per body
        part (anipose's spatio-temporal optimisation, without limb constraints).
    likelihood_threshold : float
        A view below it is not used.
    chunk : int
        Points (frames × parts) triangulated at once: it bounds the working memory.
    """
    if method not in METHODS:
        raise InputError(f"Unknown triangulation method {method!r}; choose from {METHODS}.")
    n_cams = len(views)
    if n_cams != len(cameras) or n_cams < 2:
        raise InputError(f"Triangulation needs 2 or more views with one camera each; got {n_cams} views.")
    n_frames, n_parts = views[0].shape[:2]
    ext = np.stack([c.extrinsic() for c in cameras])
    focal = np.array([c.K[0, 0] for c in cameras], float)
    out = Triangulated(
        np.empty((n_frames, n_parts, 4)),
        np.empty((n_frames, n_parts), np.float32),
        np.empty((n_frames, n_parts), np.int8),
    )
    step = max(1, chunk // max(n_parts, 1))
    for f0 in range(0, n_frames, step):
        f1 = min(n_frames, f0 + step)
        block = [np.asarray(v[f0:f1], float).reshape(-1, 3) for v in views]
        norm = np.stack([cam.undistort(b[:, :2]) for cam, b in zip(cameras, block, strict=True)])
        lk = np.stack([b[:, 2] for b in block])
        ok = np.isfinite(norm).all(axis=-1) & (np.nan_to_num(lk) >= likelihood_threshold)
        use = ok if method == "dlt" else _ransac(norm, ok, ext, focal, ransac_threshold)
        p = _dlt(norm, ext, use)
        e = _errors(p, norm, ext, focal)
        n_used = use.sum(axis=0)
        bad = n_used < 2
        with np.errstate(invalid="ignore", divide="ignore"):
            err = np.where(use, e, 0).sum(axis=0) / n_used
            score = np.where(use, np.nan_to_num(lk), 0).sum(axis=0) / np.maximum(n_used, 1)
        err[bad], score[bad] = np.nan, 0.0
        shape = (f1 - f0, n_parts)
        out.values[f0:f1, :, :3] = p.reshape(*shape, 3)
        out.values[f0:f1, :, 3] = score.reshape(shape)
        out.reprojection_error[f0:f1] = err.reshape(shape)
        out.n_cameras[f0:f1] = n_used.reshape(shape)
    if method == "optim":
        whole = [np.asarray(v[0:n_frames], float) for v in views]
        pixels = np.stack([w[..., :2] for w in whole])
        likelihood = np.stack([w[..., 2] for w in whole])
        points = _optimise(
            out.points.copy(), pixels, likelihood, cameras, likelihood_threshold, ransac_threshold, smoothing
        )
        usable = np.isfinite(pixels).all(-1) & (np.nan_to_num(likelihood) >= likelihood_threshold)
        err = _pixel_errors(points, pixels, cameras, usable)
        err[out.n_cameras < 2] = np.nan
        out.values[..., :3] = points
        out.reprojection_error[:] = err
    return out


def _ransac(norm, ok, ext, focal, threshold) -> np.ndarray:
    """Choose, per point, the views consistent with the best camera pair (see :func:`triangulate`)."""
    n_cams, n = ok.shape
    best_use = ok.copy()
    if n_cams < 3:
        return best_use
    best_count = np.full(n, -1)
    best_err = np.full(n, np.inf)
    for a, b in itertools.combinations(range(n_cams), 2):
        pair = np.zeros_like(ok)
        pair[a], pair[b] = ok[a], ok[b]
        p = _dlt(norm, ext, pair)
        e = _errors(p, norm, ext, focal)
        inliers = ok & (e < threshold)
        count = inliers.sum(axis=0)
        mean = np.where(inliers, e, 0).sum(axis=0) / np.maximum(count, 1)
        better = (count >= 2) & ((count > best_count) | ((count == best_count) & (mean < best_err)))
        best_use[:, better] = inliers[:, better]
        best_count[better], best_err[better] = count[better], mean[better]
    return best_use


def _pixel_errors(points, pixels, cameras, use) -> np.ndarray:
    errs = np.stack(
        [np.linalg.norm(cam.project(points) - pixels[c], axis=-1) for c, cam in enumerate(cameras)]
    )
    n_used = use.sum(axis=0)
    with np.errstate(invalid="ignore"):
        return np.where(use, errs, 0).sum(axis=0) / np.where(n_used > 0, n_used, np.nan)


def _optimise(points, pixels, likelihood, cameras, lk_threshold, scale, smoothing) -> np.ndarray:
    """Refine each body part's track: robust reprojection error + smoothing × acceleration."""
    from scipy.optimize import least_squares
    from scipy.sparse import lil_matrix

    out = points.copy()
    ext = np.stack([c.extrinsic() for c in cameras])
    focal = np.array([c.K[0, 0] for c in cameras], float)
    for k in range(points.shape[1]):
        track = points[:, k]
        seen = np.isfinite(track).all(axis=1)
        if seen.sum() < 3:
            continue
        idx = np.arange(len(track))
        init = np.stack([np.interp(idx, idx[seen], track[seen, d]) for d in range(3)], axis=1)
        norm = np.stack([cam.undistort(pixels[c, :, k]) for c, cam in enumerate(cameras)])  # (C, F, 2)
        ok = np.isfinite(norm).all(-1) & (np.nan_to_num(likelihood[:, :, k]) >= lk_threshold)
        cams, frames = np.nonzero(ok)
        n_frames = len(track)

        def residuals(x, cams=cams, frames=frames, norm=norm):
            p = x.reshape(-1, 3)
            homog = np.concatenate([p[frames], np.ones((len(frames), 1))], axis=1)
            cam = np.einsum("nij,nj->ni", ext[cams], homog)
            reproj = ((cam[:, :2] / cam[:, 2:3]) - norm[cams, frames]) * focal[cams, None]
            accel = (p[2:] - 2 * p[1:-1] + p[:-2]) * smoothing
            return np.concatenate([reproj.ravel(), accel.ravel()])

        n_obs = len(frames)
        sparsity = lil_matrix((2 * n_obs + 3 * (n_frames - 2), 3 * n_frames), dtype=int)
        for r, f in enumerate(frames):
            sparsity[2 * r : 2 * r + 2, 3 * f : 3 * f + 3] = 1
        for f in range(n_frames - 2):
            for d in range(3):
                sparsity[2 * n_obs + 3 * f + d, [3 * f + d, 3 * (f + 1) + d, 3 * (f + 2) + d]] = 1
        fit = least_squares(residuals, init.ravel(), jac_sparsity=sparsity, loss="soft_l1", f_scale=scale)
        refined = fit.x.reshape(-1, 3)
        refined[~seen] = np.nan  # a point never triangulated stays missing
        out[:, k] = refined
    return out
