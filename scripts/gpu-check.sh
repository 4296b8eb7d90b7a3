#!/usr/bin/env bash
# GPU check, run on a lent CUDA machine from the checkout's root (installs nothing from the
# network). Needs .gpu/site.tar.xz and .gpu/openfield, built here by scripts/gpu-bundle.sh
# and carried along (device tool: carry [".gpu/site.tar.xz", ".gpu/openfield"]).
#
# 1. unpacks the packages the machine lacks to /tmp/site;
# 2. trains the openfield example (resnet_50, random init) on CUDA: DeepLabCut's in-process
#    data loading against our loader defaults, interleaved (benchmarks/training_loader.py);
# 3. runs benchmarks/inference.py on the full openfield video (2,330 frames): our engine
#    against analyze_videos and the model's forward limit, with GPU utilisation.
# Results: one JSON line per benchmark in ${OUT:-/tmp/gpu-check}/results.jsonl, and logs.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT"
TRAIN_TIMEOUT=${TRAIN_TIMEOUT:-240}
INFER_TIMEOUT=${INFER_TIMEOUT:-300}
ROUNDS=${ROUNDS:-3}
TRAIN_ROUNDS=${TRAIN_ROUNDS:-2}
EPOCHS=${EPOCHS:-3}
TRAIN_ARGS=${TRAIN_ARGS:-}  # e.g. "--backbone resnet10t" for a dry run on a CPU
INFER_ARGS=${INFER_ARGS:-}  # e.g. "--frames 16 --device cpu" for a dry run on a CPU
mkdir -p /tmp/site && xz -dc .gpu/site.tar.xz | tar -C /tmp/site -xf - || exit 1
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 MPLBACKEND=Agg
PY=${PY:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
"$PY" -c "import torch, deeplabcut, pandas; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'dlc', deeplabcut.__version__, 'pandas', pandas.__version__)" 2>&1 | tail -1 | tee -a "$OUT/gpu.txt"
rm -rf /tmp/of && cp -r .gpu/openfield /tmp/of && chmod -R u+w /tmp/of
"$PY" - <<'PY' 2>&1 | tail -3
from pathlib import Path
from workflow_deeplabcut import dlc
p = Path("/tmp/of")
dlc.edit_config(p, {"video_sets": {str(p / "videos" / "m4s1.mp4"): {"crop": "0, 640, 0, 480"}}})
print("project ready", dlc.relocate_project(p))
PY
timeout "$TRAIN_TIMEOUT" "$PY" benchmarks/training_loader.py --config /tmp/of/config.yaml --net resnet_50 \
  --epochs "$EPOCHS" --batch 8 --rounds "$TRAIN_ROUNDS" $TRAIN_ARGS --json "$OUT/results.jsonl" > "$OUT/training.log" 2>&1
echo "training rc=$?"; grep -E "round|median|speed-up|GPU util|loader settings" "$OUT/training.log"
timeout "$INFER_TIMEOUT" "$PY" benchmarks/inference.py --config /tmp/of/config.yaml \
  --video /tmp/of/videos/m3v1mp4.mp4 --device cuda --dlc-batch 64 --rounds "$ROUNDS" --variants "${VARIANTS:-nchw,nchw+bench,cl+bench}" $INFER_ARGS \
  --json "$OUT/results.jsonl" > "$OUT/inference.log" 2>&1
echo "inference rc=$?"; grep -E "^m3v1|^round|median|engine /|GPU util|largest|Error|error" "$OUT/inference.log" | tail -24
