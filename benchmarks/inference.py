"""Our inference engine against DeepLabCut's ``analyze_videos`` and the model's forward limit.

Usage::

    python benchmarks/inference.py --config PROJECT/config.yaml --video VIDEO [--device cpu|cuda]
        [--batch 8] [--frames 60] [--rounds 3] [--json OUT.jsonl]

Each round runs, interleaved on the same video and snapshot (this machine is noisy; only
ratios of side-by-side runs mean something):

- ``analyze_videos``: DeepLabCut's own call, end to end (model load, decode, inference, files);
- ``engine``: :func:`workflow_deeplabcut.inference.analyze_videos`, end to end, same files;
- ``forward``: the model's pure rate — frames decoded and normalised beforehand and already
  on the device, forward + ``get_predictions`` only, in batches of the engine's size.

It prints frames per second, the ratios engine ÷ analyze_videos and engine ÷ forward, the
engine's decode + inference rate without model load and file writing, the largest difference
between the two engines' x, y and likelihood, and, on a CUDA device, the mean GPU
utilisation sampled by ``nvidia-smi`` during each part. ``--frames N`` first cuts a clip of
the video's first N frames (OpenCV, mp4v) so a CPU run stays short.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np


class GpuSampler:
    """Sample GPU utilisation with nvidia-smi every 200 ms while in use (no-op without it)."""

    def __init__(self):
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._proc = None

    def __enter__(self):
        if shutil.which("nvidia-smi"):
            self._proc = subprocess.Popen(
                ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-lms", "200"],
                stdout=subprocess.PIPE,
                text=True,
            )
            threading.Thread(target=self._read, daemon=True).start()
        return self

    def _read(self):
        for line in self._proc.stdout:
            try:
                self.samples.append(float(line.strip().split(",")[0]))
            except ValueError:
                pass

    def __exit__(self, *exc):
        if self._proc:
            self._proc.terminate()
            self._proc.wait()

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.samples) if self.samples else None


def cut_clip(video: Path, frames: int, target: Path) -> Path:
    """Write the first ``frames`` frames of ``video`` to ``target`` with OpenCV (mp4v)."""
    import cv2

    cap = cv2.VideoCapture(str(video))
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    out = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for _ in range(frames):
        ok, frame = cap.read()
        if not ok:
            break
        out.write(frame)
    cap.release()
    out.release()
    return target


VARIANTS = {
    # name: (channels_last, cudnn_benchmark, compile); None: the engine's default for the device.
    # cuDNN settings mean nothing on a CPU.
    "default": (None, None, False),
    "nchw": (False, False, False),
    "nchw+bench": (False, True, False),
    "cl+bench": (True, True, False),
    "compile": (None, None, True),  # torch.compile (inductor); its compile time counts end to end
}


def forward_rate(loaded, video: Path, batch: int, frames: int, variant: str = "nchw") -> tuple[float, object]:
    """Frames/s of forward + get_predictions on frames already decoded, normalised and on the device.

    Returns the rate and the poses (to compare variants).
    """
    import cv2
    import torch

    channels_last, bench, compiled = VARIANTS[variant]
    if channels_last is None:  # as inference.load_model resolves it
        channels_last = loaded.device.type == "cpu"
    bench = bool(bench)
    cap = cv2.VideoCapture(str(video))
    images = []
    while len(images) < frames:
        ok, frame = cap.read()
        if not ok:
            break
        images.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    cap.release()
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous().float().to(loaded.device)
    x = (x - loaded.mean) * loaded.inv_std
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    model = loaded.model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    forward = torch.compile(model) if compiled else model
    whole = max(batch, len(x) // batch * batch)  # whole batches: one shape for a compiled model
    batches = [x[i : i + batch] for i in range(0, whole, batch)]

    def sync():
        if loaded.device.type == "cuda":
            torch.cuda.synchronize(loaded.device)

    cudnn = torch.backends.cudnn
    autocast = torch.autocast(device_type=loaded.device.type, enabled=loaded.autocast)
    with (
        torch.inference_mode(),
        cudnn.flags(enabled=cudnn.enabled, benchmark=bench, allow_tf32=cudnn.allow_tf32),
        autocast,
    ):
        for b in batches[:2]:  # warm-up (cuDNN algorithm choice, allocator)
            model.get_predictions(forward(b))
        sync()
        start = time.perf_counter()
        poses = [model.get_predictions(forward(b))["bodypart"]["poses"] for b in batches]
        poses = torch.cat(poses).cpu()
        sync()
        rate = sum(len(b) for b in batches) / (time.perf_counter() - start)
    model.to(memory_format=torch.contiguous_format)
    return rate, poses.numpy()


def set_autocast(config: Path, shuffle: int, trainingsetindex: int) -> None:
    """Turn on mixed precision in the shuffle's pytorch_config.yaml, DeepLabCut's own option."""
    from deeplabcut.pose_estimation_pytorch.config import read_config_as_dict
    from ruamel.yaml import YAML

    from workflow_deeplabcut import dlc

    cfg = dlc.read_config(config)
    path = dlc.model_folder(cfg, shuffle, trainingsetindex) / "train" / "pytorch_config.yaml"
    model_cfg = read_config_as_dict(path)
    model_cfg.setdefault("inference", {}).setdefault("autocast", {})["enabled"] = True
    with open(path, "w") as fh:
        YAML().dump(model_cfg, fh)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--video", type=Path, required=True)
    parser.add_argument("--shuffle", type=int, default=1)
    parser.add_argument("--trainingsetindex", type=int, default=0)
    parser.add_argument("--snapshotindex", type=int, default=-1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--batch", type=int, default=None, help="default: 8 on CPU, chosen from memory on CUDA"
    )
    parser.add_argument("--dlc-batch", type=int, default=None, help="analyze_videos batch (default: --batch)")
    parser.add_argument("--frames", type=int, default=None, help="cut a clip of the first N frames first")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None, help="append one JSON line of results here")
    parser.add_argument(
        "--autocast",
        action="store_true",
        help="turn on the model's inference.autocast in pytorch_config.yaml (both engines honour it)",
    )
    parser.add_argument(
        "--variants", default="default", help=f"comma-separated engine/forward variants of {sorted(VARIANTS)}"
    )
    args = parser.parse_args(argv)

    import deeplabcut
    import pandas as pd

    from workflow_deeplabcut import inference

    if args.autocast:
        set_autocast(args.config, args.shuffle, args.trainingsetindex)
    work = Path(tempfile.mkdtemp(prefix="bench-inference-"))
    video = args.video
    if args.frames:
        video = cut_clip(video, args.frames, work / f"{video.stem}_clip.mp4")
    loaded = inference.load_model(
        args.config,
        shuffle=args.shuffle,
        trainingsetindex=args.trainingsetindex,
        snapshotindex=args.snapshotindex,
        device=args.device,
    )
    import cv2

    cap = cv2.VideoCapture(str(video))
    nframes = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    height, width = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
    cap.release()
    batch = args.batch or inference.choose_batch_size(loaded, height, width)
    dlc_batch = args.dlc_batch or batch
    print(
        f"{video.name}: {nframes} frames {width}x{height}; device {loaded.device}; "
        f"batch {batch} (DLC {dlc_batch})"
    )

    variants = args.variants.split(",")
    parts = ["analyze_videos", *(f"engine[{v}]" for v in variants), *(f"forward[{v}]" for v in variants)]
    rows: dict[str, list[float]] = {p: [] for p in parts} | {f"engine_inner[{v}]": [] for v in variants}
    util: dict[str, list[float]] = {p: [] for p in parts}
    delta: dict = {}
    for r in range(args.rounds):
        order = parts if r % 2 == 0 else list(reversed(parts))
        forward_poses = {}
        for part in order:
            variant = part[part.find("[") + 1 : -1] if "[" in part else None
            out = work / f"{part}-{r}"
            with GpuSampler() as gpu:
                start = time.perf_counter()
                if part == "analyze_videos":
                    deeplabcut.analyze_videos(
                        str(args.config),
                        [str(video)],
                        shuffle=args.shuffle,
                        trainingsetindex=args.trainingsetindex,
                        snapshot_index=args.snapshotindex,
                        destfolder=str(out),
                        device=str(loaded.device),
                        batch_size=dlc_batch,
                        overwrite=True,
                    )
                    rows[part].append(nframes / (time.perf_counter() - start))
                elif part.startswith("engine"):
                    # A fresh model load each round, as analyze_videos does.
                    channels_last, bench, compiled = VARIANTS[variant]
                    result = inference.analyze_videos(
                        args.config,
                        [video],
                        out,
                        shuffle=args.shuffle,
                        trainingsetindex=args.trainingsetindex,
                        snapshotindex=args.snapshotindex,
                        device=str(loaded.device),
                        batch_size=batch,
                        channels_last=channels_last,
                        cudnn_benchmark=bench,
                        compile=compiled,
                    )
                    rows[part].append(nframes / (time.perf_counter() - start))
                    rows[f"engine_inner[{variant}]"].append(result[0].fps)
                else:
                    n = min(nframes, max(8 * batch, 512))
                    rate, forward_poses[variant] = forward_rate(loaded, video, batch, n, variant)
                    rows[part].append(rate)
            if gpu.mean is not None:
                util[part].append(gpu.mean)
        a = pd.read_hdf(next((work / f"analyze_videos-{r}").glob("*.h5")))
        xy = a.columns.get_level_values("coords") != "likelihood"
        for v in variants:
            b = pd.read_hdf(next((work / f"engine[{v}]-{r}").glob("*.h5")))
            if not a.columns.equals(b.columns) or not a.index.equals(b.index):
                print(f"OUTPUTS DIFFER in columns or index ({v})", file=sys.stderr)
                return 1
            diff = np.abs(a.to_numpy(np.float64) - b.to_numpy(np.float64))
            delta[v] = {"max_dxy_px": float(diff[:, xy].max()), "max_dlikelihood": float(diff[:, ~xy].max())}
        print(
            f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.1f}" for k, v in rows.items()) + " fps", flush=True
        )

    med = {k: statistics.median(v) for k, v in rows.items()}
    print(f"median fps: {', '.join(f'{k} {v:.1f}' for k, v in med.items())}")
    ratios = {}
    for v in variants:
        eng, inner = rows[f"engine[{v}]"], rows[f"engine_inner[{v}]"]
        fwd = rows[f"forward[{v}]"]
        ratios[v] = {
            "engine_over_analyze_videos": statistics.median(
                e / d for e, d in zip(eng, rows["analyze_videos"], strict=True)
            ),
            "engine_over_forward": statistics.median(e / f for e, f in zip(eng, fwd, strict=True)),
            "engine_inner_over_forward": statistics.median(e / f for e, f in zip(inner, fwd, strict=True)),
            "forward_over_nchw": statistics.median(
                f / g for f, g in zip(fwd, rows[f"forward[{variants[0]}]"], strict=True)
            ),
        }
        print(
            f"[{v}] engine / analyze_videos (paired): {ratios[v]['engine_over_analyze_videos']:.2f}x; "
            f"engine / forward limit: {ratios[v]['engine_over_forward']:.2f}x end to end, "
            f"{ratios[v]['engine_inner_over_forward']:.2f}x decode+inference only; "
            f"largest difference from analyze_videos: {delta[v]}"
        )
    for part, values in util.items():
        if values:
            print(f"GPU utilisation during {part}: {statistics.fmean(values):.0f} %")
    if args.json:
        record = {
            "video": video.name,
            "frames": nframes,
            "device": str(loaded.device),
            "batch": batch,
            "dlc_batch": dlc_batch,
            "median_fps": med,
            "ratios": ratios,
            "gpu_util_mean": {k: statistics.fmean(v) for k, v in util.items() if v},
            "difference": delta,
            "autocast": args.autocast,
        }
        with args.json.open("a") as fh:
            fh.write(json.dumps(record) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
