"""Training time with DeepLabCut's default data loading (in-process) against ours (workers).

Usage::

    python benchmarks/training_loader.py --config PROJECT/config.yaml [--net resnet_50]
        [--epochs 3] [--batch 8] [--rounds 2] [--json OUT.jsonl]

Each round trains the same shuffle from the same random weights twice, interleaved:
``dataloader_workers: 0`` (DeepLabCut's default) and our default for the machine
(:func:`workflow_deeplabcut.dlc.loader_settings`). It prints seconds per epoch (the whole
``train_network`` call divided by the epochs, so start-up counts against both alike), the
ratio, and on CUDA the mean GPU utilisation during each.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from inference import GpuSampler  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--net", default="resnet_50")
    parser.add_argument("--backbone", default=None, help="timm backbone replacing the net's (e.g. resnet10t)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    from workflow_deeplabcut import dlc

    ours = dlc.loader_settings(args.device)
    print(f"our loader settings here: {ours}")
    base = {
        "net_type": args.net,
        "epochs": args.epochs,
        "batch_size": args.batch,
        "save_epochs": args.epochs,
        "device": args.device,
        "seed": 0,
        **({"backbone": args.backbone} if args.backbone else {}),
        "pytorch_cfg_updates": {"runner.eval_interval": 1000},
    }
    times: dict[str, list[float]] = {"deeplabcut default (0 workers)": [], "ours": []}
    util: dict[str, list[float]] = {k: [] for k in times}
    for r in range(args.rounds):
        order = list(times) if r % 2 == 0 else list(reversed(times))
        for name in order:
            params = dict(base)
            if name.startswith("deeplabcut"):
                params["dataloader_workers"] = 0
                params["pytorch_cfg_updates"] = {
                    **base["pytorch_cfg_updates"],
                    "train_settings.dataloader_pin_memory": False,
                }
            with GpuSampler() as gpu:
                start = time.perf_counter()
                dlc.train(args.config, shuffle=1, trainingsetindex=0, params=params)
                times[name].append((time.perf_counter() - start) / args.epochs)
            if gpu.mean is not None:
                util[name].append(gpu.mean)
            print(f"round {r + 1} {name}: {times[name][-1]:.2f} s/epoch", flush=True)
    a, b = times.values()
    ratio = statistics.median(x / y for x, y in zip(a, b, strict=True))
    print(f"median s/epoch: {', '.join(f'{k} {statistics.median(v):.2f}' for k, v in times.items())}")
    print(f"speed-up of ours (paired): {ratio:.2f}x")
    for name, values in util.items():
        if values:
            print(f"GPU utilisation during {name}: {statistics.fmean(values):.0f} %")
    if args.json:
        with args.json.open("a") as fh:
            record = {
                "training": {k: statistics.median(v) for k, v in times.items()},
                "speedup": ratio,
                "loader": ours,
                "gpu_util_mean": {k: statistics.fmean(v) for k, v in util.items() if v},
            }
            fh.write(json.dumps(record) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
