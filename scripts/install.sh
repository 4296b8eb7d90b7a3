#!/usr/bin/env bash
# Create .venv (Python 3.11) and install workflow-deeplabcut with its test tools.
# torch/torchvision come first, pinned, so pip takes the builds that DeepLabCut 3.0.2 works with.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
.venv/bin/python -m pip install -q -e ".[test]"
.venv/bin/python -m pip check
echo "installed: $(.venv/bin/workflow-deeplabcut --help >/dev/null && echo workflow-deeplabcut) in .venv"
