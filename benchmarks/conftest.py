"""Shared set-up of the benchmarks: every saved result records commit, torch and device.

Run:  pytest benchmarks --benchmark-enable [--benchmark-min-rounds=3] [--benchmark-json=out.json]
(pyproject's addopts disable timing by default, so a plain run only checks the results.)
GIS_BENCH_THREADS=n pins torch's CPU threads (OpenMP spin-waits make multi-threaded timings
meaningless on a machine that other jobs keep busy).
"""

from __future__ import annotations

import os
import platform
import subprocess
from functools import cache

import pytest
import torch

if os.environ.get("GIS_BENCH_THREADS"):
    torch.set_num_threads(int(os.environ["GIS_BENCH_THREADS"]))


@cache
def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        return out + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "uncommitted"


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"{platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["torch"] = torch.__version__
    machine_info["torch_cuda"] = torch.version.cuda
    machine_info["commit"] = _commit()
    machine_info["torch_threads"] = torch.get_num_threads()
    if torch.cuda.is_available():
        machine_info["gpu"] = torch.cuda.get_device_name(0)


@pytest.fixture
def record(request):
    """The benchmark fixture, with commit / torch version / device in its extra_info.

    Cases for a device this machine lacks are skipped before the benchmark fixture is set up.
    """
    params = request.node.callspec.params if hasattr(request.node, "callspec") else {}
    device = params.get("device", "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    benchmark = request.getfixturevalue("benchmark")
    benchmark.extra_info.update(
        commit=_commit(), torch=torch.__version__, device=device_name(device)
    )
    return benchmark
