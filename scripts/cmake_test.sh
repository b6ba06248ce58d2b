#!/usr/bin/env bash
# Configure, build and run the libtorch (C++) build of the gis operators and its ctest.
#   scripts/cmake_test.sh [build-dir]      (default build/cmake; PYTHON picks the interpreter,
#                                           JOBS the parallel compile jobs)
# A CPU build of torch needs nothing else. A CUDA build of torch makes find_package(Torch)
# look for a CUDA toolkit too (only the CPU kernels are compiled here): CUDA_HOME, else
# /usr/local/cuda, and NVRTC from the toolkit or from torch's pip wheels (nvidia/*/lib).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR="${1:-build/cmake}"
PYTHON="${PYTHON:-python3}"
PREFIX="$("$PYTHON" -c 'import torch; print(torch.utils.cmake_prefix_path)')"
TORCH_CUDA="$("$PYTHON" -c 'import torch; print(torch.version.cuda or "")')"
ARGS=(-DCMAKE_PREFIX_PATH="$PREFIX" -DCMAKE_BUILD_TYPE=Release)
if [[ -n "$TORCH_CUDA" ]]; then
  if [[ -z "${CUDA_HOME:-}" && -x /usr/local/cuda/bin/nvcc ]]; then export CUDA_HOME=/usr/local/cuda; fi
  if [[ -n "${CUDA_HOME:-}" ]]; then
    ARGS+=(-DCUDA_TOOLKIT_ROOT_DIR="$CUDA_HOME" -DCUDAToolkit_ROOT="$CUDA_HOME"
           -DCMAKE_CUDA_COMPILER="$CUDA_HOME/bin/nvcc")
    if ! compgen -G "$CUDA_HOME/lib*/libnvrtc.so*" >/dev/null; then
      NVRTC="$("$PYTHON" - <<'PY'
import glob, os, site
for d in site.getsitepackages():
    hits = sorted(glob.glob(os.path.join(d, "nvidia", "*", "lib", "libnvrtc.so*")))
    if hits:
        print(hits[0])
        break
PY
)"
      if [[ -n "$NVRTC" ]]; then ARGS+=(-DCUDA_nvrtc_LIBRARY="$NVRTC"); fi
    fi
  fi
fi
if command -v ninja >/dev/null; then ARGS+=(-G Ninja); fi
cmake -S . -B "$BUILD_DIR" "${ARGS[@]}"
cmake --build "$BUILD_DIR" -j "${JOBS:-$(nproc)}"
ctest --test-dir "$BUILD_DIR" --output-on-failure
