"""Video properties, read with PyAV (FFmpeg); pure functions, no database."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from pathlib import Path


class VideoError(ValueError):
    """A file is missing, unreadable, not a video, or disagrees with its siblings."""


@dataclass(frozen=True)
class VideoInfo:
    """Properties of one video file (``fps`` is a float: 29.97 stays 29.97)."""

    path: Path
    width: int
    height: int
    nframes: int
    fps: float
    created: _dt.datetime | None

    @property
    def duration(self) -> float:
        """Duration in seconds, ``nframes / fps``."""
        return self.nframes / self.fps


def probe(path: str | Path) -> VideoInfo:
    """Read a video's size, frame count, frame rate and creation time.

    The frame count comes from the container when it records one, and is otherwise counted
    by demuxing every packet (no decoding).

    Parameters
    ----------
    path : str or Path
        The video file.

    Returns
    -------
    VideoInfo

    Raises
    ------
    VideoError
        If the file is missing, cannot be opened, or holds no video stream.
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
            nframes = stream.frames or sum(1 for packet in container.demux(stream) if packet.size)
            created = container.metadata.get("creation_time") or stream.metadata.get("creation_time")
            info = VideoInfo(
                path=path,
                width=stream.codec_context.width,
                height=stream.codec_context.height,
                nframes=int(nframes),
                fps=float(rate),
                created=_parse_time(created),
            )
    except VideoError:
        raise
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as err:
        raise VideoError(f"{path} is not a readable video ({err}). Give a video file.") from None
    if info.nframes <= 0 or info.width <= 0:
        raise VideoError(f"{path} holds no frames; the file may be truncated.")
    return info


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


def probe_recording(paths: list[str | Path]) -> dict:
    """Combine the files of one recording into its properties.

    Parameters
    ----------
    paths : list of str or Path
        The recording's files, in order.

    Returns
    -------
    dict
        ``px_width``, ``px_height``, ``fps``, ``nframes`` (summed), ``recording_duration``
        (seconds, summed) and ``recording_datetime`` (the first file's creation time, or None).

    Raises
    ------
    VideoError
        If there are no files, or the files disagree in size or frame rate.
    """
    if not paths:
        raise VideoError("The recording has no files; insert VideoRecording.File rows first.")
    infos = [probe(p) for p in paths]
    first = infos[0]
    for info in infos[1:]:
        if (info.width, info.height) != (first.width, first.height) or abs(info.fps - first.fps) > 1e-6:
            raise VideoError(
                f"Files of one recording disagree: {first.path.name} is {first.width}x"
                f"{first.height} at {first.fps:g} fps but {info.path.name} is {info.width}x"
                f"{info.height} at {info.fps:g} fps. Split them into separate recordings."
            )
    return {
        "px_width": first.width,
        "px_height": first.height,
        "fps": first.fps,
        "nframes": sum(i.nframes for i in infos),
        "recording_duration": sum(i.duration for i in infos),
        "recording_datetime": first.created,
    }
