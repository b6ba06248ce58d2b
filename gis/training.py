"""Shared training utilities: seeding, checkpoints, optimiser/RNG state, time budgets, progress.

Every trainer in gis (recommenders, GANs) writes the same kind of checkpoint: one
``.safetensors`` file holding the tensors (weights, optimiser moments, RNG states) and a JSON
``meta`` dict stored in the safetensors header. Such a file loads without pickle
(``weights_only`` safety by construction) on any device.

Typical trainer::

    seed_everything(seed)
    budget = Budget(minutes=minutes)
    state = TrainState()
    if resume and Path(ckpt).exists():
        tensors, meta = load_checkpoint(ckpt)
        model.load_state_dict(unflatten(tensors, "model."))
        load_optimizer_state(opt, tensors, meta, prefix="optim.")
        state = TrainState.from_meta(meta)
    for epoch in range(state.epoch, epochs):
        for step in progress(range(n), desc=f"epoch {epoch}"):
            ...
            if budget.exhausted(): ...
        state.epoch = epoch + 1
        save_checkpoint(ckpt, {**flatten(model.state_dict(), "model."), **opt_tensors},
                        {**state.to_meta(), **opt_meta})
"""

from __future__ import annotations

import json
import os
import platform
import random
import shlex
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import CheckpointError, GisUsageError

__all__ = [
    "Budget",
    "TrainState",
    "command_line",
    "flatten",
    "load_checkpoint",
    "load_optimizer_state",
    "load_rng_state",
    "machine_info",
    "optimizer_state_tensors",
    "progress",
    "read_checkpoint_meta",
    "rng_state_tensors",
    "save_checkpoint",
    "seed_everything",
    "set_threads",
    "unflatten",
    "write_json",
]

META_KEY = "gis"  # safetensors header key that holds the JSON meta


# ----------------------------------------------------------------------------- seeding/threads

def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch (CPU and CUDA); return a CPU ``torch.Generator`` seeded
    with ``seed`` for trainers that draw their own random numbers (preferred: its state can
    be checkpointed with :func:`rng_state_tensors`)."""
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device
    return torch.Generator().manual_seed(seed)


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


def resolve_device(device: str | torch.device) -> torch.device:
    """``torch.device(device)`` once this machine is known to have it; otherwise a one-line
    GisUsageError that says what to pass instead (not torch's traceback on first use)."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise GisUsageError(f"unknown device {device!r}: pass cpu, cuda or cuda:N") from None
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
    """The GAN trainers' device set-up: the checked device; on CUDA cuDNN autotuning and TF32
    matmuls, on the CPU ``set_threads(threads)`` when ``threads`` is given."""
    dev = resolve_device(device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    elif dev.type == "cpu" and threads is not None:
        set_threads(threads)
    return dev


# ----------------------------------------------------------------------------- tensor dicts

def resuming_run(ckpt_path: Path, *, resume: bool, init_from: Any = None, name: str,
                 progress: bool = True) -> bool:
    """Whether a trainer resumes ``ckpt_path``: ``resume`` and the file exists (asked to
    resume with none there, it says so and starts a new run). A run started ``init_from``
    another model's weights is a new run: refused where a training checkpoint already is,
    so that no run is silently replaced."""
    out = ckpt_path.parent
    if init_from is not None and ckpt_path.is_file():
        raise GisUsageError(f"{out} already holds a training checkpoint: resume it (--resume) "
                            "or pass a new --out for a run started with --init-from")
    resuming = bool(resume) and ckpt_path.is_file()
    if resume and not resuming and progress:
        print(f"{name}: no checkpoint in {out}; starting a new run")
    return resuming


def flatten(state: Mapping[str, Any], prefix: str = "") -> dict[str, torch.Tensor]:
    """``{prefix + key: tensor}`` of the tensor entries of a (nested) state dict."""
    out: dict[str, torch.Tensor] = {}
    for k, v in state.items():
        if isinstance(v, torch.Tensor):
            out[f"{prefix}{k}"] = v
        elif isinstance(v, Mapping):
            out.update(flatten(v, f"{prefix}{k}."))
    return out


def unflatten(tensors: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries of ``tensors`` whose key starts with ``prefix``, prefix stripped."""
    n = len(prefix)
    return {k[n:]: v for k, v in tensors.items() if k.startswith(prefix)}


# ----------------------------------------------------------------------------- checkpoints

def _atomic_target(path: Path) -> tuple[int, str]:
    """A temporary file beside ``path`` with ordinary permissions (mkstemp makes it 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    _ordinary_mode(tmp)
    return fd, tmp


def _ordinary_mode(path: str) -> None:
    """rw for the owner, r for the rest as the umask allows (what open() would have made)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def save_checkpoint(path: str | os.PathLike, tensors: Mapping[str, torch.Tensor],
                    meta: Mapping[str, Any] | None = None) -> Path:
    """Atomically write ``tensors`` (name -> tensor, any device/dtype) and the JSON-serialisable
    ``meta`` to a ``.safetensors`` file. A crash mid-write leaves the previous file intact."""
    from safetensors.torch import save_file

    path = Path(path)
    # safetensors wants contiguous CPU tensors that share no memory
    cpu = {str(k): v.detach().to("cpu", copy=True).contiguous() for k, v in tensors.items()}
    header = {META_KEY: json.dumps(dict(meta or {}), sort_keys=True, default=_json_default)}
    fd, tmp = _atomic_target(path)
    os.close(fd)
    try:
        save_file(cpu, tmp, metadata=header)
        _ordinary_mode(tmp)  # safetensors writes 0600 files
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def read_checkpoint_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The meta dict of a gis checkpoint, without reading its tensors."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as fh:
            header = fh.metadata() or {}
    except Exception as exc:
        raise CheckpointError(f"{path} is not a readable safetensors file: {exc}") from None
    try:
        return json.loads(header[META_KEY]) if META_KEY in header else {}
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: corrupt metadata ({exc})") from None


def load_checkpoint(path: str | os.PathLike, *, device: str | torch.device = "cpu"
                    ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a file written by :func:`save_checkpoint`: ``(tensors, meta)``. No pickle involved.
    Raises ``CheckpointError`` (one line) on a missing or unreadable file."""
    from safetensors.torch import load_file

    meta = read_checkpoint_meta(path)
    try:
        tensors = load_file(str(path), device=str(device))
    except Exception as exc:
        raise CheckpointError(f"{path} is not a readable safetensors file: {exc}") from None
    return tensors, meta


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Atomically write ``obj`` as indented JSON (numpy/torch scalars and Paths allowed)."""
    path = Path(path)
    fd, tmp = _atomic_target(path)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(obj, fh, indent=2, default=_json_default)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer, np.floating, np.bool_)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, torch.Tensor) and o.numel() == 1:
        return o.item()
    if isinstance(o, (Path, torch.device, torch.dtype)):
        return str(o)
    if isinstance(o, (tuple, set)):
        return list(o)
    raise TypeError(f"not JSON-serialisable in checkpoint meta: {type(o).__name__}")


# ----------------------------------------------------------------------------- optimiser / RNG

def optimizer_state_tensors(optimizer: torch.optim.Optimizer, prefix: str = "optim."
                            ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into tensors (moments, step counters) and a meta dict
    (param groups, non-tensor state), both safe to store with :func:`save_checkpoint`."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, st in sd["state"].items():
        for key, val in st.items():
            if isinstance(val, torch.Tensor):
                tensors[f"{prefix}state.{pid}.{key}"] = val
            else:
                scalars.setdefault(str(pid), {})[key] = val
    meta = {f"{prefix}param_groups": sd["param_groups"], f"{prefix}scalars": scalars}
    return tensors, meta


def load_optimizer_state(optimizer: torch.optim.Optimizer, tensors: Mapping[str, torch.Tensor],
                         meta: Mapping[str, Any], prefix: str = "optim.") -> None:
    """Inverse of :func:`optimizer_state_tensors`."""
    groups = meta.get(f"{prefix}param_groups")
    if groups is None:
        raise CheckpointError(f"checkpoint holds no optimiser state under {prefix!r}")
    state: dict[int, dict[str, Any]] = {}
    head = f"{prefix}state."
    for k, v in tensors.items():
        if k.startswith(head):
            pid, key = k[len(head):].split(".", 1)
            state.setdefault(int(pid), {})[key] = v
    for pid, extra in meta.get(f"{prefix}scalars", {}).items():
        state.setdefault(int(pid), {}).update(extra)
    for g in groups:  # JSON turned tuples (Adam's betas) into lists
        for k, v in list(g.items()):
            if isinstance(v, list) and k != "params":
                g[k] = tuple(v)
    try:
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, KeyError, RuntimeError) as exc:
        raise CheckpointError(f"optimiser state does not match: {exc}") from None


def rng_state_tensors(generators: Mapping[str, torch.Generator] | None = None,
                      prefix: str = "rng.") -> dict[str, torch.Tensor]:
    """RNG states as uint8 tensors: the given named generators, plus torch's global CPU and
    CUDA states (``{prefix}torch``, ``{prefix}cuda.{i}``)."""
    out = {f"{prefix}torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            out[f"{prefix}cuda.{i}"] = s
    for name, g in (generators or {}).items():
        out[f"{prefix}gen.{name}"] = g.get_state()
    return out


def load_rng_state(tensors: Mapping[str, torch.Tensor],
                   generators: Mapping[str, torch.Generator] | None = None,
                   prefix: str = "rng.") -> None:
    """Inverse of :func:`rng_state_tensors` (CUDA states restored only where devices exist)."""
    if f"{prefix}torch" in tensors:
        torch.set_rng_state(tensors[f"{prefix}torch"].cpu())
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            s = tensors.get(f"{prefix}cuda.{i}")
            if s is not None:
                torch.cuda.set_rng_state(s.cpu(), i)
    for name, g in (generators or {}).items():
        key = f"{prefix}gen.{name}"
        if key not in tensors:
            raise CheckpointError(f"checkpoint holds no RNG state {key!r}")
        g.set_state(tensors[key].cpu())


# ----------------------------------------------------------------------------- state / budget

@dataclass
class TrainState:
    """Loop position and bookkeeping, stored in a checkpoint's meta under ``"train_state"``.

    ``elapsed_s`` accumulates training time over resumed runs; ``best`` holds the best
    validation metric so far and where it was reached; ``history`` one dict per epoch;
    ``extra`` anything else a trainer must carry across a resume (JSON-serialisable).
    """

    epoch: int = 0
    step: int = 0
    elapsed_s: float = 0.0
    best: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    done: bool = False
    extra: dict[str, Any] = field(default_factory=dict)  # trainer-specific bookkeeping

    def to_meta(self) -> dict[str, Any]:
        return {"train_state": asdict(self)}

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> TrainState:
        raw = meta.get("train_state")
        if raw is None:
            raise CheckpointError("checkpoint holds no training state (not a resumable file)")
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in raw.items() if k in known})


class Budget:
    """A wall-clock and/or step limit for one training run.

    ``Budget(minutes=30)`` expires 30 minutes after it is created (or after :meth:`restart`);
    ``Budget(steps=1000)`` after ``tick()`` was called 1000 times; both None: never.
    """

    def __init__(self, minutes: float | None = None, steps: int | None = None):
        self.minutes = minutes
        self.steps = steps
        self.restart()

    def restart(self) -> None:
        self.t0 = time.monotonic()
        self.taken = 0

    def tick(self, n: int = 1) -> None:
        self.taken += n

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.t0

    @property
    def remaining_s(self) -> float:
        if self.minutes is None:
            return float("inf")
        return self.minutes * 60.0 - self.elapsed_s

    def exhausted(self) -> bool:
        if self.steps is not None and self.taken >= self.steps:
            return True
        return self.minutes is not None and self.remaining_s <= 0

    def __repr__(self) -> str:
        return f"Budget(minutes={self.minutes}, steps={self.steps})"


# ----------------------------------------------------------------------------- progress / cards

def progress(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "",
             enabled: bool = True, **kwargs: Any):
    """A tqdm progress bar (on stderr); with ``enabled=False`` a silent one with the same
    methods (``set_postfix``, ``update``, ``close``), for library use.

    When stderr is not a terminal (a log file, a CI job, a cluster task) the bar redraws at
    most every 30 s instead of ten times a second, so logs get a few readable lines rather
    than one line of thousands of carriage-return updates; the final state is always written.
    """
    from tqdm.auto import tqdm

    kwargs.setdefault("mininterval", 1.0 if sys.stderr.isatty() else 30.0)
    return tqdm(iterable, total=total, desc=desc, disable=not enabled, dynamic_ncols=True,
                leave=kwargs.pop("leave", False), **kwargs)


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
