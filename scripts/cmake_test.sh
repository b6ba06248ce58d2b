#!/usr/bin/env bash
# Configure, build and run the libtorch (C++) build of the gis operators and its ctest.
#   scripts/cmake_test.sh [build-dir]      (default build/cmake; PYTHON picks the interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR="${1:-build/cmake}"
PYTHON="${PYTHON:-python3}"
PREFIX="$("$PYTHON" -c 'import torch; print(torch.utils.cmake_prefix_path)')"
ARGS=(-DCMAKE_PREFIX_PATH="$PREFIX" -DCMAKE_BUILD_TYPE=Release)
# A CUDA build of torch makes find_package(Torch) look for the toolkit too.
if [[ -z "${CUDA_HOME:-}" && -x /usr/local/cuda/bin/nvcc ]]; then export CUDA_HOME=/usr/local/cuda; fi
if [[ -n "${CUDA_HOME:-}" ]]; then
  ARGS+=(-DCUDAToolkit_ROOT="$CUDA_HOME" -DCMAKE_CUDA_COMPILER="$CUDA_HOME/bin/nvcc")
fi
if command -v ninja >/dev/null; then ARGS+=(-G Ninja); fi
cmake -S . -B "$BUILD_DIR" "${ARGS[@]}"
cmake --build "$BUILD_DIR" -j "${JOBS:-$(nproc)}"
ctest --test-dir "$BUILD_DIR" --output-on-failure
