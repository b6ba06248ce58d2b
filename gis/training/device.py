"""Where a run happens: seeding, CPU threads, the checked device, and what is recorded of it.

The resumable-run skeleton (docs/MODELS.md, "Training") calls these for every trainer; they
are public for commands that train without it (the domain classifier).
"""

from __future__ import annotations

import os
import platform
import random
import shlex
import sys
import warnings
from typing import Any

import numpy as np
import torch

from ..errors import GisUsageError

__all__ = ["command_line", "global_rng_aside", "machine_info", "resolve_device",
           "seed_everything", "set_threads", "training_device"]


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch (CPU and CUDA); return a CPU ``torch.Generator`` seeded
    with ``seed`` for trainers that draw their own random numbers (preferred: its state can
    be checkpointed with :func:`gis.training.rng_state_tensors`)."""
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device
    return torch.Generator().manual_seed(seed)


def global_rng_aside(device: str | torch.device = "cpu"):
    """A context manager: what the block draws from torch's global random streams (CPU, and
    ``device``'s when it is a GPU) leaves them as they were. The training skeleton runs its
    sample grids and exports in one: they happen every so many seconds, and a module built
    for an export draws its initial weights, while the training's random numbers must depend
    on its steps only (an exact resume)."""
    dev = torch.device(device)
    devices = [dev.index if dev.index is not None else torch.cuda.current_device()] \
        if dev.type == "cuda" else []
    return torch.random.fork_rng(devices=devices)


def set_threads(threads: int | None = None) -> int:
    """Set torch's intra-op thread count. ``None``: the ``GIS_THREADS`` environment variable,
    else all CPUs this process may use. Returns the count in effect."""
    if threads is None:
        env = os.environ.get("GIS_THREADS")
        if env:
            threads = int(env)
        else:
            try:
                threads = len(os.sched_getaffinity(0))
            except AttributeError:  # not on Linux
                threads = os.cpu_count() or 1
    threads = max(1, int(threads))
    torch.set_num_threads(threads)
    return torch.get_num_threads()


#: device types gis runs on, besides cpu and cuda, when this torch and machine have them
_ACCELERATORS = {"mps": "Apple GPU (MPS)", "xpu": "Intel GPU (XPU)"}


def resolve_device(device: str | torch.device) -> torch.device:
    """``torch.device(device)`` once this machine is known to have it; otherwise a one-line
    GisUsageError that says what to pass instead (not torch's traceback on first use).

    Accepted: ``cpu`` (``cpu:0``); ``cuda`` / ``cuda:N`` for a GPU this machine has; ``mps``
    and ``xpu`` only where this torch build and machine support them. Any other type
    (``meta``, ``hpu``, ...) holds no data gis could compute with and is refused, as is a CPU
    index other than 0 (torch ignores it: ``cpu:1`` would silently run on the one CPU device).
    The ``--device`` option of every command checks its value with this function while the
    command line is parsed (``gis.cli_options.DEVICE``)."""
    try:
        with warnings.catch_warnings():  # torch warns that some legacy types ("mkldnn") go
            warnings.simplefilter("ignore")
            dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise GisUsageError(f"unknown device {device!r}: pass cpu, cuda or cuda:N") from None
    if dev.type == "cpu" and dev.index not in (None, 0):
        raise GisUsageError(f"device {device!r} requested but torch has one CPU device (its "
                            "threads: OMP_NUM_THREADS, or --threads where the command has it): "
                            "pass --device cpu")
    if dev.type in _ACCELERATORS:
        backend = getattr(torch.backends, dev.type, None) if dev.type == "mps" else \
            getattr(torch, dev.type, None)
        if backend is None or not backend.is_available():
            raise GisUsageError(f"device {device!r} requested but this torch ({torch.__version__}"
                                f") or machine has no {_ACCELERATORS[dev.type]} support: pass "
                                "--device cpu")
    elif dev.type not in ("cpu", "cuda"):
        raise GisUsageError(f"device {device!r} requested but gis computes only on cpu, cuda, "
                            "mps or xpu devices this machine has: pass --device cpu")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = ("this torch is a CPU-only build" if torch.version.cuda is None
                   else f"torch {torch.__version__} (CUDA {torch.version.cuda}) finds no GPU "
                        "or driver here")
            raise GisUsageError(f"device {device!r} requested but {why}: pass --device cpu")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise GisUsageError(f"device {device!r} requested but this machine has {count} "
                                f"CUDA device(s): pass cuda:0..cuda:{count - 1}")
    return dev


def training_device(device: str | torch.device, threads: int | None = None) -> torch.device:
    """A trainer's device set-up: the checked device (:func:`resolve_device`); on CUDA cuDNN
    autotuning and TF32 matmuls; on the CPU ``set_threads(threads)`` (``None``: the
    ``GIS_THREADS`` variable, else every CPU this process may use)."""
    dev = resolve_device(device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    elif dev.type == "cpu":
        set_threads(threads)
    return dev


def command_line() -> str:
    """The exact command that started this process (for model cards)."""
    argv = list(getattr(sys, "orig_argv", None) or [sys.executable, *sys.argv])
    return shlex.join(argv)


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: str | torch.device | None = None) -> dict[str, Any]:
    """Where a run happened: platform, python, torch, CPU, threads and (if used) GPU name."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device) if device is not None else "cpu",
    }
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if dev.type == "cuda" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(dev)
        info["cuda"] = torch.version.cuda
    return info
