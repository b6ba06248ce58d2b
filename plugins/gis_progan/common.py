"""Helpers shared by the GAN plugins (``gis_progan``, ``gis_dvbpr_gan``): trusted pickle
loading and safetensors generator files with their model cards. (Training images on the
device and sample grids are gis's: :mod:`gis.training.data`, :meth:`gis.training.Run.save_samples`.)
"""

from __future__ import annotations

import json
import os
import pickle
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from gis.errors import CheckpointError, MissingAssetError
from gis.io import require_trust

SAFE_SUFFIXES = (".safetensors",)
#: modules whose classes a trusted checkpoint may instantiate; any other class is replaced by
#: an inert attribute holder (e.g. pytorch_GAN_zoo's ``models.utils.config.BaseConfig``)
_ALLOWED_MODULES = ("torch", "collections", "numpy", "builtins", "_codecs", "copyreg",
                    "__builtin__", "copy_reg")


# ----------------------------------------------------------------------------- pickle files


class PickledObject:
    """Stand-in for a class that a trusted checkpoint names but gis does not import."""

    _gis_class = "?"

    def __init__(self, *args: Any, **kwargs: Any):
        self._gis_args = args

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2:  # (dict, slots)
            state = {**(state[0] or {}), **(state[1] or {})}
        if isinstance(state, dict):
            self.__dict__.update(state)
        else:
            self._gis_state = state

    def __repr__(self) -> str:
        return f"<pickled {self._gis_class}>"


class _LenientUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        root = module.split(".", 1)[0]
        if root in _ALLOWED_MODULES:
            return super().find_class(module, name)
        return type(name, (PickledObject,), {"_gis_class": f"{module}.{name}"})


_lenient_pickle = types.ModuleType("gis_lenient_pickle")
_lenient_pickle.Unpickler = _LenientUnpickler  # type: ignore[attr-defined]
_lenient_pickle.load = lambda f, **kw: _LenientUnpickler(f, **kw).load()  # type: ignore


def load_trusted_pickle(path: str | os.PathLike, *, trust: bool, what: str) -> Any:
    """``torch.load`` a pickle-based checkpoint, only when the user trusts the file.

    Classes outside torch/numpy/the standard containers are not imported: they come back as
    inert :class:`PickledObject` instances holding their attributes.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    require_trust(path, trust=trust, what=f"{what} checkpoint",
                  hint="convert it to a .safetensors file")
    try:
        return torch.load(path, map_location="cpu", weights_only=False,
                          pickle_module=_lenient_pickle)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is a checkpoint error
        raise CheckpointError(f"cannot read {path} as a torch checkpoint: {exc}") from None


def strip_prefix(state: Mapping[str, torch.Tensor], prefix: str = "module.") -> dict:
    """Drop a DataParallel ``module.`` prefix when every key carries it."""
    keys = list(state)
    if keys and all(k.startswith(prefix) for k in keys):
        return {k[len(prefix):]: v for k, v in state.items()}
    return dict(state)


def config_get(config: Any, key: str, default: Any = None) -> Any:
    """Read ``key`` from a dict or an attribute holder."""
    if isinstance(config, Mapping):
        return config.get(key, default)
    return getattr(config, key, default)


# ----------------------------------------------------------------------------- safetensors


def save_generator_file(path: str | os.PathLike, tensors: Mapping[str, torch.Tensor],
                        meta: Mapping[str, Any], *, dtype: torch.dtype | None = None,
                        card: Mapping[str, Any] | None = None) -> Path:
    """Write a generator to ``path`` (.safetensors: tensors + JSON meta in the header, no
    pickle), optionally casting floating tensors to ``dtype`` (float16 halves the size), and
    the model ``card`` as JSON beside it (``path`` with suffix ``.json``)."""
    from gis.io import write_json
    from gis.training import save_checkpoint

    out = {}
    for k, v in tensors.items():
        v = v.detach()
        out[k] = v.to(dtype) if dtype is not None and v.is_floating_point() else v
    path = save_checkpoint(path, out, meta)
    if card is not None:
        write_json(Path(path).with_suffix(".json"), dict(card))
    return Path(path)


def load_generator_file(path: str | os.PathLike, *, kind: str,
                        accepted: tuple[str, ...]) -> tuple[dict[str, torch.Tensor], dict]:
    """Read a gis .safetensors generator file; raise CheckpointError when its ``format`` is not
    one of ``accepted``."""
    from gis.training import load_checkpoint

    tensors, meta = load_checkpoint(path)
    fmt = meta.get("format")
    if fmt not in accepted:
        raise CheckpointError(
            f"{path} is not a {kind} checkpoint (format {fmt!r}; expected one of "
            f"{', '.join(accepted)})"
        )
    return {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}, meta


def read_card(path: str | os.PathLike) -> dict[str, Any]:
    card_path = Path(path).with_suffix(".json")
    if card_path.is_file():
        try:
            return json.loads(card_path.read_text())
        except (OSError, json.JSONDecodeError):
            return {}
    return {}


def load_state_strict(module: torch.nn.Module, state: Mapping[str, torch.Tensor],
                      source: str) -> None:
    """``load_state_dict(strict=True)`` with a CheckpointError naming the mismatch."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
        raise CheckpointError(f"{source} does not match the model: " + "; ".join(parts))
    for k, v in state.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise CheckpointError(
                f"{source} does not match the model: {k} has shape {tuple(v.shape)}, the model "
                f"expects {tuple(own[k].shape)}"
            )
    module.load_state_dict(state, strict=True)


def missing_default(plugin: str, weights: Path, command: str) -> MissingAssetError:
    return MissingAssetError(
        f"the {plugin} default weights are not installed ({weights} is missing); train them "
        f"with `{command}` and copy the run's exported .safetensors and .json there, or pass "
        "--generator-checkpoint PATH (checkpoint=PATH in Python)"
    )
