"""Reading and writing DVBPR checkpoints.

Two formats load:

* gis's own ``.safetensors`` (written by :func:`save_dvbpr`): tensors ``cnn.conv1.weight`` ...
  ``cnn.fc3.bias`` and ``theta`` (U, K), float32 or float16; the JSON meta holds
  ``format="gis.dvbpr"``, the layout, K, the user ids and the model card. No pickle.
* AIP-style PyTorch checkpoints (``*.tar``/``*.pt``): ``{epoch, model_state_dict,
  optimizer_state_dict, loss, U}`` with ``module.``-prefixed keys and ``U`` a numpy array
  (usernum, K). Such files need pickle (``weights_only=False``), so they load only with
  ``trust=True``.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from gis.errors import CheckpointError
from gis.io import require_trust
from gis.training import load_checkpoint, save_checkpoint

from .model import DVBPR, LAYOUTS, Layout, get_layout

FORMAT = "gis.dvbpr"
FORMAT_VERSION = 1


def save_dvbpr(model: DVBPR, path: str | os.PathLike, *, half: bool = False,
               extra_meta: dict[str, Any] | None = None) -> Path:
    """Write ``model`` as a gis DVBPR checkpoint (float16 storage when ``half``)."""
    dtype = torch.float16 if half else torch.float32
    tensors = {f"cnn.{k}": v.to(dtype) for k, v in model.cnn.state_dict().items()}
    tensors["theta"] = model.theta.detach().to(dtype)
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION,
            "layout": model.layout.to_dict(), "k": model.embedding_dim,
            "user_ids": model.user_ids, "card": model.card.to_dict(), **(extra_meta or {})}
    return save_checkpoint(path, tensors, meta)


def load_dvbpr(path: str | os.PathLike, *, device: str | torch.device = "cpu",
               trust: bool = False, layout: str | Layout | None = None,
               user_ids: list[str] | None = None) -> DVBPR:
    """Load a gis or AIP-style DVBPR checkpoint (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"DVBPR checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        model = _load_gis(path, layout=layout, user_ids=user_ids)
    else:
        model = _load_torch(path, trust=trust, layout=layout, user_ids=user_ids)
    return model.to(device)


def _load_gis(path: Path, *, layout, user_ids) -> DVBPR:
    tensors, meta = load_checkpoint(path)
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a DVBPR checkpoint (format "
                              f"{meta.get('format')!r}, expected {FORMAT!r})")
    stored = Layout.from_dict(meta["layout"])
    if layout is not None and get_layout(layout) != stored:
        want = get_layout(layout)
        raise CheckpointError(f"{path} holds DVBPR layout {stored.name!r}, not the requested "
                              f"{want.name!r}")
    ids = list(meta.get("user_ids") or [])
    if user_ids is not None:
        ids = [str(u) for u in user_ids]
    state = {k[4:]: v for k, v in tensors.items() if k.startswith("cnn.")}
    theta = tensors.get("theta")
    return _build(path, stored, int(meta.get("k", 100)), state, theta, ids,
                  dict(meta.get("card") or {}))


def _load_torch(path: Path, *, trust: bool, layout, user_ids) -> DVBPR:
    import pickle

    pickled = False
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        pickled = True
    except Exception as exc:
        raise CheckpointError(f"{path} could not be read by torch.load: {exc}") from None
    if pickled:
        require_trust(path, trust=trust, what="PyTorch checkpoint (AIP style, numpy inside)")
        try:
            obj = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc:
            raise CheckpointError(f"{path} could not be read by torch.load: {exc}") from None
    if not isinstance(obj, dict) or "model_state_dict" not in obj or "U" not in obj:
        keys = ", ".join(map(str, obj)) if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(f"{path} is not an AIP-style DVBPR checkpoint (expected keys "
                              f"model_state_dict and U; found {keys})")
    state = {_strip(k): v for k, v in obj["model_state_dict"].items()}
    theta = torch.as_tensor(obj["U"]).float()
    if theta.dim() != 2:
        raise CheckpointError(f"{path}: U has shape {tuple(theta.shape)}, expected "
                              "(usernum, K)")
    lay = get_layout(layout) if layout is not None else infer_port_layout(state, path)
    ids = [str(u) for u in user_ids] if user_ids is not None else \
        [str(u) for u in range(theta.shape[0])]
    card = {"source": "AIP-style PyTorch DVBPR checkpoint", "path": str(path),
            "epoch": obj.get("epoch"), "layout": lay.name}
    return _build(path, lay, theta.shape[1], state, theta, ids, card)


def infer_port_layout(state: dict[str, torch.Tensor], path: Path | str = "checkpoint") -> Layout:
    """The "128" or "224" layout (the PyTorch port's stack, widths read from the weights) that
    a ``conv1..conv5, fc1..fc3`` state dict fits: fc1's input tells the input size."""
    try:
        convs = tuple(replace(c, out=int(state[f"conv{n}.weight"].shape[0]))
                      for n, c in enumerate(LAYOUTS["128"].convs, 1))
        fc = (int(state["fc1.weight"].shape[0]), int(state["fc2.weight"].shape[0]))
        flat = int(state["fc1.weight"].shape[1])
    except (KeyError, IndexError):
        raise CheckpointError(f"{path}: model_state_dict lacks DVBPR's conv1..conv5/fc1..fc3 "
                              "weights") from None
    for name in ("128", "224"):
        base = LAYOUTS[name]
        lay = replace(base, convs=convs, fc=fc)
        if lay.flat_features == flat:
            return lay if (convs, fc) != (base.convs, base.fc) else base
    c = convs[-1].out
    raise CheckpointError(f"{path}: fc1.weight takes {flat} inputs, matching no DVBPR layout "
                          f"({4 * 4 * c} = '128', {7 * 7 * c} = '224' for {c} channels); "
                          "pass layout=")


def _strip(key: str) -> str:
    return key[len("module."):] if key.startswith("module.") else key


def _build(path: Path, layout: Layout, k: int, state: dict[str, torch.Tensor],
           theta: torch.Tensor | None, user_ids: list[str], card: dict[str, Any]) -> DVBPR:
    if theta is None:
        raise CheckpointError(f"{path}: no user vectors (theta) in the checkpoint")
    if theta.dim() != 2 or theta.shape[1] != k:
        raise CheckpointError(f"{path}: theta has shape {tuple(theta.shape)}, expected "
                              f"(users, {k})")
    if len(user_ids) != theta.shape[0]:
        raise CheckpointError(f"{path}: {len(user_ids)} user ids for {theta.shape[0]} user "
                              "vectors")
    model = DVBPR(layout, user_ids, k=k, card={**card, "checkpoint": str(path)})
    expected = model.cnn.state_dict()
    missing = [n for n in expected if n not in state]
    unexpected = [n for n in state if n not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append("missing " + ", ".join(missing[:4]) + (" ..." if len(missing) > 4 else ""))
        if unexpected:
            parts.append("unexpected " + ", ".join(unexpected[:4])
                         + (" ..." if len(unexpected) > 4 else ""))
        raise CheckpointError(f"{path} does not fit DVBPR layout {layout.name!r}: "
                              + "; ".join(parts))
    for name, want in expected.items():
        got = state[name]
        if tuple(got.shape) != tuple(want.shape):
            raise CheckpointError(f"{path} does not fit DVBPR layout {layout.name!r}: {name} has "
                                  f"shape {tuple(got.shape)}, expected {tuple(want.shape)}")
    model.cnn.load_state_dict({n: v.float() for n, v in state.items()})
    with torch.no_grad():
        model.theta.copy_(theta.float())
    return model
