"""Video properties, read with PyAV (FFmpeg); pure functions, no database."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError


class VideoError(InputError):
    """A file is missing, unreadable, not a video, or disagrees with its siblings."""


#: Frame intervals that differ from their median by more than this (relative) make a video
#: variable-frame-rate.
VFR_TOLERANCE = 0.01


@dataclass(frozen=True)
class VideoInfo:
    """Properties of one video file as it is displayed (and as DeepLabCut analyses it).

    ``width`` and ``height`` are the displayed size: with a rotation of 90 or 270 degrees (a
    phone filming upright) they are the stored frame's height and width. ``fps`` is a float
    (29.97 stays 29.97). ``frame_times`` holds each frame's presentation time in seconds from the
    first frame, when it was read (``probe(..., timestamps=True)``).
    """

    path: Path
    width: int
    height: int
    nframes: int
    fps: float
    created: _dt.datetime | None
    rotation: int = 0  # degrees anticlockwise, as the container's display matrix says
    frame_times: np.ndarray | None = None

    @property
    def duration(self) -> float:
        """Duration in seconds: from the first frame to the end of the last."""
        if self.frame_times is not None and len(self.frame_times) > 1:
            return float(self.frame_times[-1] + np.median(np.diff(self.frame_times)))
        return self.nframes / self.fps

    @property
    def variable_frame_rate(self) -> bool:
        """True when the frame intervals are not all equal (within :data:`VFR_TOLERANCE`)."""
        return is_variable(self.frame_times)


def is_variable(frame_times: np.ndarray | None) -> bool:
    """Return True when frame intervals differ from their median by more than the tolerance."""
    if frame_times is None or len(frame_times) < 3:
        return False
    steps = np.diff(frame_times)
    median = float(np.median(steps))
    return median <= 0 or bool(np.any(np.abs(steps - median) > VFR_TOLERANCE * median))


def probe(path: str | Path, *, timestamps: bool = False) -> VideoInfo:
    """Read a video's displayed size, rotation, frame count, frame rate and creation time.

    The rotation comes from the first decoded frame's display matrix. Every packet is demuxed
    (no decoding): a file holding fewer frames than its header gives is refused as truncated.
    The frame count is the header's when it has one, else the packets counted; with
    ``timestamps`` the presentation times are returned (and counted).

    Parameters
    ----------
    path : str or Path
        The video file.
    timestamps : bool
        Also read every frame's presentation time (demuxes the whole file).

    Returns
    -------
    VideoInfo

    Raises
    ------
    VideoError
        If the file is missing, cannot be opened, holds no video stream, or is truncated.
    """
    import av

    path = Path(path)
    if not path.is_file():
        raise VideoError(f"Video file not found: {path}. Check the path and the data roots.")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoError(f"{path} has no video stream; give a video file (e.g. .mp4, .avi).")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            if not rate:
                raise VideoError(f"{path}: the frame rate cannot be read.")
            rotation = _rotation(path)
            times = None
            # Every packet is demuxed (not decoded: ~1 s per hour of video), so a file cut short
            # (an interrupted copy) is caught here, not after a whole pose run.
            header, packets, pts = stream.frames, 0, []
            for packet in container.demux(stream):
                packets += packet.dts is not None or packet.size > 0
                if packet.size:
                    pts.append(packet.pts)
            if header and packets < header:
                raise VideoError(
                    f"{path}: its header gives {header} frames but only {packets} are in the file: it "
                    "is truncated (an interrupted copy or recording). Copy it again from its source, "
                    "or re-encode what is readable (ffmpeg -i IN -c:v libx264 -crf 18 OUT.mp4) and "
                    "register that file instead."
                )
            nframes = header or len(pts)
            if timestamps:
                pts = sorted(p for p in pts if p is not None)
                base = float(stream.time_base)
                times = (np.asarray(pts, dtype=np.float64) - (pts[0] if pts else 0)) * base
                nframes = len(pts)
            created = container.metadata.get("creation_time") or stream.metadata.get("creation_time")
            width, height = stream.codec_context.width, stream.codec_context.height
            if rotation in (90, 270):
                width, height = height, width
            info = VideoInfo(
                path=path,
                width=width,
                height=height,
                nframes=int(nframes),
                fps=float(rate),
                created=_parse_time(created),
                rotation=rotation,
                frame_times=times,
            )
    except VideoError:
        raise
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as err:
        raise VideoError(f"{path} is not a readable video ({err}). Give a video file.") from None
    if info.nframes <= 0 or info.width <= 0:
        raise VideoError(f"{path} holds no frames; the file may be truncated.")
    return info


def _rotation(path: Path) -> int:
    """Return the display rotation (degrees anticlockwise) of the first frame of a video."""
    import av

    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            return int(round(getattr(frame, "rotation", 0) or 0)) % 360
    return 0


def _parse_time(text: str | None) -> _dt.datetime | None:
    if not text:
        return None
    try:
        stamp = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    # Stored as naive UTC, DataJoint's datetime has no zone.
    if stamp.tzinfo is not None:
        stamp = stamp.astimezone(_dt.UTC).replace(tzinfo=None)
    return stamp.replace(microsecond=0)


def probe_recording(paths: list[str | Path], *, timestamps: bool = False) -> dict:
    """Combine the files of one recording into its properties.

    Parameters
    ----------
    paths : list of str or Path
        The recording's files, in order.
    timestamps : bool
        Read every frame's presentation time; a variable-frame-rate recording then returns them.

    Returns
    -------
    dict
        ``px_width``, ``px_height`` (displayed), ``rotation``, ``fps``, ``nframes`` (summed),
        ``recording_duration`` (seconds, summed), ``recording_datetime`` (the first file's
        creation time, or None) and, with ``timestamps``, ``frame_times``: seconds from the
        first frame, concatenated over the files, when any file has a variable frame rate
        (None otherwise).

    Raises
    ------
    VideoError
        If there are no files, or the files disagree in size, rotation or frame rate.
    """
    if not paths:
        raise VideoError("The recording has no files; insert VideoRecording.File rows first.")
    infos = [probe(p, timestamps=timestamps) for p in paths]
    first = infos[0]
    for info in infos[1:]:
        if (info.width, info.height, info.rotation) != (first.width, first.height, first.rotation) or abs(
            info.fps - first.fps
        ) > 1e-6:
            raise VideoError(
                f"Files of one recording disagree: {first.path.name} is {first.width}x"
                f"{first.height} at {first.fps:g} fps (rotation {first.rotation}) but {info.path.name} is "
                f"{info.width}x{info.height} at {info.fps:g} fps (rotation {info.rotation}). Split them "
                "into separate recordings."
            )
    frame_times = None
    if timestamps and any(i.variable_frame_rate for i in infos):
        parts, offset = [], 0.0
        for info in infos:
            parts.append(info.frame_times + offset)
            offset += info.duration
        frame_times = np.concatenate(parts)
    return {
        "px_width": first.width,
        "px_height": first.height,
        "rotation": first.rotation,
        "fps": first.fps,
        "nframes": sum(i.nframes for i in infos),
        "recording_duration": sum(i.duration for i in infos),
        "recording_datetime": first.created,
        "frame_times": frame_times,
    }
