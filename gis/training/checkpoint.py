"""gis checkpoint files: tensors plus a JSON ``meta`` dict in one ``.safetensors`` file.

Every trainer in gis (recommenders, GANs, the domain classifier) writes this kind of file:
weights, optimiser moments and RNG states as tensors, everything else (format, config, loop
state) as JSON in the safetensors header under the key ``"gis"``. Such a file loads without
pickle (``weights_only`` safety by construction) on any device. ``meta["format"]`` names the
writer (e.g. ``"gis-progan-train"``); :func:`check_format` refuses a file of another kind.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError
from ..io import JSONEncoder, atomic_path

__all__ = ["META_KEY", "check_format", "flatten", "load_checkpoint", "load_optimizer_state",
           "load_rng_state", "optimizer_state_tensors", "read_checkpoint_meta",
           "rng_state_tensors", "save_checkpoint", "unflatten"]

META_KEY = "gis"  # safetensors header key that holds the JSON meta


# ----------------------------------------------------------------------------- tensor dicts

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


# ----------------------------------------------------------------------------- files

def save_checkpoint(path: str | os.PathLike, tensors: Mapping[str, torch.Tensor],
                    meta: Mapping[str, Any] | None = None) -> Path:
    """Atomically write ``tensors`` (name -> tensor, any device/dtype) and the JSON-serialisable
    ``meta`` to a ``.safetensors`` file. A crash mid-write leaves the previous file intact."""
    from safetensors.torch import save_file

    path = Path(path)
    # safetensors wants contiguous CPU tensors that share no memory
    cpu = {str(k): v.detach().to("cpu", copy=True).contiguous() for k, v in tensors.items()}
    header = {META_KEY: json.dumps(dict(meta or {}), sort_keys=True, cls=JSONEncoder)}
    with atomic_path(path) as tmp:
        save_file(cpu, tmp, metadata=header)
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


def check_format(meta: Mapping[str, Any], path: str | os.PathLike, accepted: str | tuple[str, ...],
                 what: str) -> str:
    """``meta["format"]`` when it is one of ``accepted``; otherwise a one-line CheckpointError
    naming the file, what it should have been (``what``, e.g. "progan training checkpoint")
    and the format it has."""
    accepted = (accepted,) if isinstance(accepted, str) else tuple(accepted)
    fmt = meta.get("format")
    if fmt not in accepted:
        raise CheckpointError(f"{path} is not a {what} (format {fmt!r}; expected "
                              f"{' or '.join(repr(a) for a in accepted)})")
    return fmt


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
