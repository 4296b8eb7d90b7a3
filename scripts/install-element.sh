#!/usr/bin/env bash
# Create .element-venv: element-deeplabcut 0.2.8 on DataJoint 0.14, the stack a lab migrates
# from. tests/test_element_migration.py builds an element database with it (tests/element_build.py).
# Element's own packages come without their dependencies (DeepLabCut 2.x, TensorFlow): building
# the schemas and inserting rows needs only DataJoint and what element's modules import.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
if [ ! -x .element-venv/bin/python ]; then
  "$PYTHON" -m venv .element-venv
fi
if ! .element-venv/bin/python -c "import element_deeplabcut, datajoint; assert datajoint.__version__ == '0.14.3'" 2>/dev/null; then
  .element-venv/bin/python -m pip install -q --upgrade pip
  .element-venv/bin/python -m pip install -q "datajoint==0.14.3" "setuptools<70" "numpy<2" pandas \
    opencv-python-headless pyyaml "ruamel.yaml"
  .element-venv/bin/python -m pip install -q --no-deps "element-deeplabcut==0.2.8" "element-interface==0.6.1" \
    "element-lab==0.3.0" "element-animal==0.1.8" "element-session==0.1.6"
fi
echo "installed: element-deeplabcut 0.2.8 (DataJoint 0.14.3) in .element-venv"
