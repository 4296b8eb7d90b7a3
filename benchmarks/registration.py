"""Benchmark: what checking a video for truncation costs when it is registered.

``video.probe`` now demuxes every packet of the file (no decoding) so that a file holding
fewer frames than its header gives is refused at registration. Interleaved with the header-only
probe it replaced (PyAV opens the file and reads ``stream.frames``), on the real openfield
video (2,330 frames, 640x480) and on a copy of it concatenated to about an hour of frames.

    python benchmarks/registration.py [--rounds 9] [--hour]

Prints per video the median times, the median per-pair ratio (min-max) and the time per
thousand frames; ``--hour`` also builds the hour-long copy (~110,000 frames, by repeating the
packets: a few hundred MB in a temporary folder) and times it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import interleaved  # noqa: E402

OPENFIELD = Path(__file__).resolve().parents[2] / "shared/data/openfield-Pranav-2018-10-30/videos/m3v1mp4.mp4"


def header_only(path: Path) -> int:
    """The probe before: open the container and read the frame count its header gives."""
    import av

    with av.open(str(path)) as container:
        return container.streams.video[0].frames


def long_copy(source: Path, target: Path, frames: int) -> Path:
    """Repeat the source's packets (new timestamps) into an MP4 of at least ``frames`` frames."""
    import av

    with av.open(str(source)) as src:
        stream = src.streams.video[0]
        packets = [(bytes(p), p.is_keyframe) for p in src.demux(stream) if p.size]
        step = packets and int(stream.duration / len(packets)) if stream.duration else 1
        with av.open(str(target), "w") as dst:
            out = dst.add_stream_from_template(stream)
            n = 0
            while n < frames:
                for data, key in packets:
                    packet = av.Packet(data)
                    packet.stream = out
                    packet.pts = packet.dts = n * step
                    packet.time_base = stream.time_base
                    packet.is_keyframe = key
                    dst.mux(packet)
                    n += 1
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--hour", action="store_true", help="Also time an hour-long video.")
    args = parser.parse_args()
    from workflow_deeplabcut import video

    videos = [OPENFIELD]
    with tempfile.TemporaryDirectory() as tmp:
        if args.hour:
            videos.append(long_copy(OPENFIELD, Path(tmp) / "hour.mp4", 108_000))
        for path in videos:
            frames = video.probe(path).nframes
            pairs = interleaved(lambda p=path: video.probe(p), lambda p=path: header_only(p), args.rounds)
            per_k = 1e3 * statistics.median(pairs.wall_a) / frames * 1000
            print(
                pairs.line(f"{path.name} ({frames} frames)", "header only"),
                f"  {per_k:.2f} ms per 1,000 frames",
            )


if __name__ == "__main__":
    main()
