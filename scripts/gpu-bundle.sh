#!/usr/bin/env bash
# Build .gpu/ (ignored by git) for scripts/gpu-check.sh: what a lent CUDA machine lacks.
#
# That machine (see ../shared/notes/gpu.md) has Python 3.12, PyTorch, OpenCV, timm, scipy...
# but no network, no DeepLabCut and pandas 3 (DeepLabCut needs pandas < 3). This script,
# run here with network access to the package registries, downloads those packages as
# cp312 wheels, installs them into a folder, strips what is not needed at run time, and
# packs it (.gpu/site.tar.xz, ~20 MB), next to a copy of the openfield example project.
# The device tool then carries .gpu with the checkout (`carry: [".gpu"]`).
set -euo pipefail
cd "$(dirname "$0")/.."
PY312=${PY312:-python3.12}
OPENFIELD=${OPENFIELD:-../shared/data/openfield-Pranav-2018-10-30}
WHEELS=(
  deeplabcut==3.0.2 dlclibrary==0.0.12 albumentations==1.4.3 filterpy==2.0.0 pycocotools==2.0.11
  pandas==2.3.3 pytz==2026.6 tzdata==2026.6 tables==3.11.1 blosc2==4.14.1 ndindex==1.10.1
  numexpr==2.14.2 bottleneck==1.6.0 ruamel.yaml==0.19.1 pydantic==2.14.4 pydantic_core==2.50.5
  annotated_types==0.8.0 typing_inspection==0.4.5
)
mkdir -p .gpu/wheels
"$PY312" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
  --platform any -d .gpu/wheels "${WHEELS[@]}"
site=$(mktemp -d)
trap 'rm -rf "$site"' EXIT
"$PY312" -m pip install -q --no-deps --no-compile --no-index --target "$site" .gpu/wheels/*.whl
# dlclibrary's wheel data overwrites its package folder under --target: take it from the wheel.
rm -rf "$site/dlclibrary"
"$PY312" -m zipfile -e .gpu/wheels/dlclibrary-*.whl "$site/.dlclib" && mv "$site/.dlclib/dlclibrary" "$site/" && rm -rf "$site/.dlclib"
# Only pandas' own test suite goes (tables and numexpr import their tests package).
rm -rf "$site/pandas/tests"
find "$site" -depth -type d -name __pycache__ -exec rm -rf {} +
find "$site" \( -name '*.h' -o -name '*.a' -o -name '*.pyi' \) -delete
tar -C "$site" -cf - . | xz -9e -T0 > .gpu/site.tar.xz
rm -rf .gpu/openfield && cp -r "$OPENFIELD" .gpu/openfield && chmod -R u+w .gpu/openfield
du -sh .gpu/site.tar.xz .gpu/openfield
