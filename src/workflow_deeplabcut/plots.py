"""Quality-control pictures and labeled videos; pure functions from arrays to files.

Every PNG is ``FIGSIZE`` at ``DPI`` (800 x 500 pixels) whatever the data, so pictures of many
sessions line up side by side.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

FIGSIZE = (8, 5)  # inches
DPI = 100
PICTURE_SIZE = (FIGSIZE[0] * DPI, FIGSIZE[1] * DPI)  # (width, height) in pixels


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _colours(n: int) -> list:
    plt = _pyplot()
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(n)]


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)  # no bbox_inches="tight": it would change the size
    _pyplot().close(fig)
    return path


def trajectory_plot(
    tracks: dict[str, dict[str, np.ndarray]],
    pcutoff: float,
    frame_size: tuple[int, int],
    title: str,
    path: Path,
) -> Path:
    """Plot every body part's path over the video frame, confident points only.

    Parameters
    ----------
    tracks : dict
        ``{label: {"x", "y", "likelihood"}}``, one array value per frame.
    pcutoff : float
        Points below this likelihood are left out.
    frame_size : (int, int)
        The video's (width, height), so the axes show the whole frame.
    title : str
        Figure title.
    path : Path
        Output PNG.

    Returns
    -------
    Path
        The written file.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=FIGSIZE)
    for (label, t), colour in zip(tracks.items(), _colours(len(tracks)), strict=True):
        ok = np.asarray(t["likelihood"]) >= pcutoff
        x = np.where(ok, t["x"], np.nan)
        y = np.where(ok, t["y"], np.nan)
        ax.plot(x, y, lw=0.8, color=colour, label=f"{label} ({ok.mean():.0%} >= {pcutoff:g})")
    width, height = frame_size
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)  # image coordinates: y points down
    ax.set_aspect("equal")
    ax.set_xlabel("x (px)")
    ax.set_ylabel("y (px)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    return _save(fig, path)


def trajectory_plot_3d(
    tracks: dict[str, dict[str, np.ndarray]], pcutoff: float, unit: str, title: str, path: Path
) -> Path:
    """Plot every body part's 3D path (confident points only) in the calibration's frame.

    ``tracks`` is ``{label: {"x", "y", "z", "likelihood"}}``. The axes have equal scale; the
    frame is camera 0's (y points down in its image), drawn with y inverted so up is up.
    """
    plt = _pyplot()
    fig = plt.figure(figsize=FIGSIZE)
    ax = fig.add_subplot(projection="3d")
    lows, highs = [], []
    for (label, t), colour in zip(tracks.items(), _colours(len(tracks)), strict=True):
        ok = np.asarray(t["likelihood"]) >= pcutoff
        xyz = [np.where(ok, np.asarray(t[a], float), np.nan) for a in ("x", "y", "z")]
        ax.plot(*xyz, lw=0.8, color=colour, label=f"{label} ({ok.mean():.0%} >= {pcutoff:g})")
        pts = np.column_stack(xyz)
        pts = pts[np.isfinite(pts).all(axis=1)]
        if len(pts):
            lows.append(pts.min(axis=0))
            highs.append(pts.max(axis=0))
    if lows:
        low, high = np.min(lows, axis=0), np.max(highs, axis=0)
        centre, half = (low + high) / 2, max(float((high - low).max()) / 2, 1e-6)
        ax.set_xlim(centre[0] - half, centre[0] + half)
        ax.set_ylim(centre[1] + half, centre[1] - half)
        ax.set_zlim(centre[2] - half, centre[2] + half)
    ax.set_xlabel(f"x ({unit})")
    ax.set_ylabel(f"y ({unit})")
    ax.set_zlabel(f"z ({unit})")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper right")
    return _save(fig, path)


def reprojection_plot(
    errors: np.ndarray, n_cameras: np.ndarray, labels: list[str], title: str, path: Path
) -> Path:
    """Plot a 3D estimation's triangulation quality: reprojection errors and cameras used.

    ``errors`` and ``n_cameras`` are ``(frames, body parts)`` in ``labels`` order. Left: the
    distribution of each body part's reprojection error (px); right: the fraction of frames
    triangulated from each number of cameras (fewer than 2: not triangulated).
    """
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=FIGSIZE)
    errors = np.asarray(errors, float)
    finite = errors[np.isfinite(errors)]
    top = max(float(np.percentile(finite, 99)) if finite.size else 1.0, 1e-3)
    bins = np.linspace(0, top, 41)
    colours = _colours(len(labels))
    for k, (label, colour) in enumerate(zip(labels, colours, strict=True)):
        e = errors[:, k]
        e = e[np.isfinite(e)]
        median = f"{np.median(e):.2f}" if e.size else "-"
        left.hist(
            np.clip(e, 0, top),
            bins=bins,
            histtype="step",
            lw=1.2,
            color=colour,
            label=f"{label} (median {median})",
        )
    left.set_xlabel("reprojection error (px)")
    left.set_ylabel("frames")
    left.legend(fontsize=7, loc="upper right")
    counts = np.asarray(n_cameras, int)
    most = max(int(counts.max()) if counts.size else 2, 2)
    width = 0.8 / max(len(labels), 1)
    for k, (label, colour) in enumerate(zip(labels, colours, strict=True)):
        share = [(counts[:, k] == c).mean() if len(counts) else 0 for c in range(most + 1)]
        right.bar(np.arange(most + 1) + k * width, share, width=width, color=colour, label=label)
    done = float((counts >= 2).mean()) if counts.size else 0.0
    right.set_xticks(np.arange(most + 1) + 0.4 - width / 2, [str(c) for c in range(most + 1)])
    right.set_xlabel(f"cameras used ({done:.0%} of points triangulated)")
    right.set_ylabel("fraction of frames")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def likelihood_plot(
    tracks: dict[str, dict[str, np.ndarray]], pcutoff: float, times, title: str, path: Path
) -> Path:
    """Plot every body part's likelihood over time, with the p-cutoff as a line.

    ``times`` is each frame's time in seconds, or a frame rate (then ``frame / fps``).
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=FIGSIZE)
    for (label, t), colour in zip(tracks.items(), _colours(len(tracks)), strict=True):
        lk = np.asarray(t["likelihood"])
        seconds = np.arange(len(lk)) / times if np.isscalar(times) else np.asarray(times)[: len(lk)]
        ax.plot(seconds, lk, lw=0.6, color=colour, label=label)
    ax.axhline(pcutoff, color="k", ls="--", lw=1, label=f"p-cutoff {pcutoff:g}")
    ax.set_ylim(-0.02, max(1.02, max((np.nanmax(t["likelihood"]) for t in tracks.values()), default=1)))
    ax.set_xlabel("time (s)")
    ax.set_ylabel("likelihood")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return _save(fig, path)


def likelihood_histogram(
    tracks: dict[str, dict[str, np.ndarray]], pcutoff: float, title: str, path: Path
) -> Path:
    """Histogram of every body part's likelihood, with the p-cutoff as a line."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=FIGSIZE)
    top = max(1.0, max((np.nanmax(t["likelihood"]) for t in tracks.values()), default=1))
    bins = np.linspace(0, top, 41)
    for (label, t), colour in zip(tracks.items(), _colours(len(tracks)), strict=True):
        lk = np.asarray(t["likelihood"])
        ax.hist(lk[np.isfinite(lk)], bins=bins, histtype="step", lw=1.2, color=colour, label=label)
    ax.axvline(pcutoff, color="k", ls="--", lw=1, label=f"p-cutoff {pcutoff:g}")
    ax.set_yscale("log")
    ax.set_ylim(bottom=0.8)  # bars start at one frame
    ax.set_xlabel("likelihood")
    ax.set_ylabel("frames")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return _save(fig, path)


def marker_colours(n: int) -> list[tuple[int, int, int]]:
    """Return ``n`` distinct RGB marker colours (0-255)."""
    return [tuple(int(round(255 * c)) for c in colour[:3]) for colour in _colours(n)]


def labeled_video(
    videos: list[Path],
    tracks: dict[str, dict[str, np.ndarray]],
    path: Path,
    *,
    pcutoff: float,
    start: int = 0,
    nframes: int | None = None,
    fps: float,
    radius: int = 4,
) -> int:
    """Write a video with every confident body part drawn as a filled disc.

    Parameters
    ----------
    videos : list of Path
        The recording's files, in order (their frames are numbered continuously).
    tracks : dict
        ``{label: {"x", "y", "likelihood"}}`` over the whole recording.
    path : Path
        Output ``.mp4``: H.264 (yuv420p, index at the front), which browsers play and seek,
        so the dashboard can show it; MPEG-4 Part 2 where PyAV lacks libx264.
    pcutoff : float
        Points below this likelihood are not drawn.
    start, nframes : int
        Which frames: ``start`` to ``start + nframes`` (``None``: to the end).
    fps : float
        Output frame rate.
    radius : int
        Disc radius in pixels.

    Returns
    -------
    int
        Number of frames written.
    """
    import av
    import cv2

    colours = dict(zip(tracks, marker_colours(len(tracks)), strict=True))
    total = len(next(iter(tracks.values()))["x"])
    stop = total if nframes is None else min(total, start + nframes)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    frame_number = 0
    tmp = path.with_suffix(".partial.mp4")
    with av.open(str(tmp), mode="w", options={"movflags": "+faststart"}) as out:
        stream = None
        for video in videos:
            if frame_number >= stop:
                break
            with av.open(str(video)) as container:
                for frame in container.decode(video=0):
                    if frame_number >= stop:
                        break
                    if frame_number >= start:
                        image = frame.to_ndarray(format="rgb24")
                        turn = int(round(getattr(frame, "rotation", 0) or 0)) % 360
                        if turn:  # draw on the frame as displayed (and as DeepLabCut analysed it)
                            image = np.ascontiguousarray(np.rot90(image, k=turn // 90))
                        if stream is None:
                            stream = _video_stream(out, fps, image.shape[1], image.shape[0])
                        for label, t in tracks.items():
                            x, y, lk = (
                                t["x"][frame_number],
                                t["y"][frame_number],
                                t["likelihood"][frame_number],
                            )
                            if lk >= pcutoff and np.isfinite(x) and np.isfinite(y):
                                cv2.circle(
                                    image,
                                    (int(round(x)), int(round(y))),
                                    radius,
                                    colours[label],
                                    -1,
                                    cv2.LINE_AA,
                                )
                        if image.shape[:2] != (stream.height, stream.width):  # yuv420p: even sides
                            image = np.pad(
                                image,
                                (
                                    (0, stream.height - image.shape[0]),
                                    (0, stream.width - image.shape[1]),
                                    (0, 0),
                                ),
                            )
                        for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                            out.mux(packet)
                        written += 1
                    frame_number += 1
        if stream is not None:
            for packet in stream.encode():
                out.mux(packet)
    if written == 0:
        tmp.unlink(missing_ok=True)
        raise ValueError(f"No frames in range [{start}, {stop}) of the recording ({total} frames).")
    tmp.replace(path)  # a finished file or none: never a truncated one under the final name
    return written


def _video_stream(out, fps: float, width: int, height: int):
    """Add the labeled video's stream: H.264 when PyAV has libx264, else MPEG-4 Part 2."""
    import fractions

    import av

    rate = fractions.Fraction(fps).limit_denominator(1001)
    try:
        av.codec.Codec("libx264", "w")
    except Exception:  # a PyAV build without x264: playable by desktop players, not browsers
        stream = out.add_stream("mpeg4", rate=rate)
        stream.options = {"qscale": "3"}
    else:
        stream = out.add_stream("libx264", rate=rate)
        stream.options = {"crf": "18", "preset": "veryfast"}
    stream.width, stream.height = width + width % 2, height + height % 2
    stream.pix_fmt = "yuv420p"
    return stream


def identity_plot(
    centroid: np.ndarray,
    index: int,
    names: list[str],
    swap_frames: list[int],
    frame_size: tuple[int, int],
    title: str,
    path: Path,
) -> Path:
    """Plot one individual's centroid path in its own colour, the others in grey, swaps marked.

    Parameters
    ----------
    centroid : numpy.ndarray
        ``(frames, individuals, 2)`` centroids, NaN where absent.
    index : int
        Which individual this picture is about; its colour is the ``index``-th of the palette,
        so every picture of an estimation gives each animal the same colour.
    names : list of str
        The individuals' labels (e.g. ``animal1 = mouse-7`` where mapped).
    swap_frames : list of int
        Frames of this individual's identity swaps: a black cross at its position there.
    frame_size : (int, int)
        The video's (width, height).
    title : str
        Figure title.
    path : Path
        Output PNG.

    Returns
    -------
    Path
        The written file.
    """
    plt = _pyplot()
    colours = _colours(len(names))
    fig, ax = plt.subplots(figsize=FIGSIZE)
    for k in range(len(names)):
        if k != index:
            ax.plot(centroid[:, k, 0], centroid[:, k, 1], lw=0.6, color="0.75")
    present = np.isfinite(centroid[:, index]).all(axis=-1)
    ax.plot(
        centroid[:, index, 0],
        centroid[:, index, 1],
        lw=1.2,
        color=colours[index],
        label=f"{names[index]} (present in {present.mean():.0%} of frames)",
    )
    if swap_frames:
        at = centroid[np.asarray(swap_frames), index]
        ax.scatter(
            at[:, 0], at[:, 1], marker="x", s=60, color="black", zorder=3, label=f"{len(swap_frames)} swap(s)"
        )
    width, height = frame_size
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.set_aspect("equal")
    ax.set_xlabel("x (px)")
    ax.set_ylabel("y (px)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, loc="upper right")
    return _save(fig, path)
