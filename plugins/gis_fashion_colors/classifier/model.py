"""The domain classifier's model and files (the package docstring describes it).

``DomainClassifier``: a small CNN, category logits of (B, 3, R, R) images in [-1, 1].
Files: ``domain-classifier.safetensors`` (weights; its JSON header holds the architecture, the
dataset's categories and the model card; no pickle) and ``domain-classifier.json`` (the card),
written by ``save_domain_classifier`` and read by ``load_domain_classifier``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gis.errors import CheckpointError, GisUsageError, MissingAssetError

FORMAT = "gis.domain-classifier"
FORMAT_VERSION = 1
WEIGHTS_NAME = "domain-classifier.safetensors"
CARD_NAME = "domain-classifier.json"
META_KEY = "domain_classifier"  # Dataset.meta key naming a dataset's classifier file


class DomainClassifier(nn.Module):
    """Small CNN: category logits of (B, 3, R, R) images in [-1, 1].

    ``channels``: output channels of the conv blocks; ``convs``: conv layers in each block
    (default 1 each); ``hidden``: width of the hidden
    fully connected layer; ``resolution``: the input size R (a multiple of 8) it is built for;
    ``sort_channels``: sort each pixel's three values first (invariant to channel
    permutations: colour hue is no category cue).
    ``category_names`` and ``card`` travel with the weights. It meets gis's
    ``CategoryClassifier`` interface (``num_classes``, ``category_names``, ``label``,
    ``predict_proba``).
    """

    #: how results name this model (``gis.interfaces.CategoryClassifier.label``)
    label = "gis DomainClassifier"

    def __init__(self, num_classes: int, *, resolution: int = 32,
                 channels: Sequence[int] = (32, 64, 128), convs: Sequence[int] | None = None,
                 hidden: int = 256, dropout: float = 0.3, sort_channels: bool = True,
                 category_names: Sequence[str] | None = None,
                 card: dict[str, Any] | None = None):
        super().__init__()
        if num_classes < 2:
            raise GisUsageError(f"a classifier needs at least 2 classes, got {num_classes}")
        if resolution < 8 or resolution % 8:
            raise GisUsageError(f"DomainClassifier needs a resolution that is a multiple of 8 "
                                f"(three 2x poolings), got {resolution}")
        self.num_classes = int(num_classes)
        self.resolution = int(resolution)
        self.channels = tuple(int(c) for c in channels)
        self.convs = tuple(int(k) for k in (convs or (1,) * len(self.channels)))
        if len(self.convs) != len(self.channels) or min(self.convs) < 1:
            raise GisUsageError(f"convs {self.convs} must give a count >= 1 for each of the "
                                f"{len(self.channels)} blocks")
        self.hidden = int(hidden)
        self.dropout = float(dropout)
        self.sort_channels = bool(sort_channels)
        self.category_names = list(category_names) if category_names is not None else [
            str(i) for i in range(num_classes)]
        self.card: dict[str, Any] = dict(card or {})
        layers: list[nn.Module] = []
        c_in = 3
        for c, k in zip(self.channels, self.convs, strict=True):
            for _ in range(k):
                layers += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c),
                           nn.ReLU(inplace=True)]
                c_in = c
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        side = self.resolution // 2 ** len(self.channels)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(self.dropout),
            nn.Linear(c_in * side * side, self.hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(self.dropout),
            nn.Linear(self.hidden, self.num_classes),
        )

    def config(self) -> dict[str, Any]:
        """What rebuilds this architecture (stored in the checkpoint)."""
        return {"num_classes": self.num_classes, "resolution": self.resolution,
                "channels": list(self.channels), "convs": list(self.convs),
                "hidden": self.hidden,
                "dropout": self.dropout, "sort_channels": self.sort_channels}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise GisUsageError(f"DomainClassifier expects images (B, 3, H, W), got "
                                f"{tuple(x.shape)}")
        if x.shape[-2:] != (self.resolution, self.resolution):
            raise GisUsageError(f"DomainClassifier was built for {self.resolution}x"
                                f"{self.resolution} images, got {x.shape[-1]}x{x.shape[-2]}; "
                                "predict_proba resizes")
        if self.sort_channels:  # blind to which channel is which: colour is no category cue
            x = x.sort(dim=1).values
        return self.head(self.features(x))

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @torch.no_grad()
    def predict_logits(self, images: torch.Tensor, *, value_range=(-1.0, 1.0),
                       batch_size: int = 500) -> torch.Tensor:
        """Logits (N, num_classes) of images (N, 3, H, W) in ``value_range``, in eval mode.

        Puts the model in eval mode (dropout off, BatchNorm running statistics: the same
        input always gives the same output) and leaves it there. Images of another size are
        resized (bilinear, antialiased) to the classifier's resolution.
        """
        self.eval()
        x = images.detach()
        if x.ndim == 3:
            x = x[None]
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise GisUsageError(f"expected images (N, 3, H, W), got {tuple(images.shape)}")
        lo, hi = (float(v) for v in value_range)
        out = []
        for start in range(0, x.shape[0], batch_size):
            b = x[start:start + batch_size].to(self.device, torch.float32)
            if b.shape[1] == 1:
                b = b.expand(-1, 3, -1, -1)
            b = (b - lo) / (hi - lo) * 2.0 - 1.0
            if b.shape[-2:] != (self.resolution, self.resolution):
                b = F.interpolate(b, size=(self.resolution, self.resolution), mode="bilinear",
                                  align_corners=False, antialias=True)
            out.append(self(b.clamp(-1.0, 1.0)))
        if not out:
            return torch.zeros(0, self.num_classes, device=self.device)
        return torch.cat(out)

    @torch.no_grad()
    def predict_proba(self, images: torch.Tensor, value_range=(-1.0, 1.0),
                      batch_size: int = 500) -> torch.Tensor:
        """Class probabilities p(y | x) (N, num_classes) of images in ``value_range``
        (deterministic: eval mode, see ``predict_logits``)."""
        return self.predict_logits(images, value_range=value_range,
                                   batch_size=batch_size).softmax(dim=1)

    @torch.no_grad()
    def predict(self, images: torch.Tensor, value_range=(-1.0, 1.0)) -> torch.Tensor:
        """Most likely category index (N,) of each image."""
        return self.predict_logits(images, value_range=value_range).argmax(dim=1)


def save_domain_classifier(model: DomainClassifier, out_dir: str | os.PathLike
                           ) -> tuple[Path, Path]:
    """Write ``out_dir/domain-classifier.safetensors`` and ``out_dir/domain-classifier.json``
    (the model card); returns both paths."""
    from gis.io import write_json
    from gis.training import save_checkpoint

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v for k, v in model.state_dict().items()}
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "config": model.config(),
            "category_names": model.category_names, "card": model.card}
    weights = save_checkpoint(out / WEIGHTS_NAME, state, meta)
    card = write_json(out / CARD_NAME, model.card)
    return weights, card


def provision_command(dataset_name: str | None) -> str:
    """The one command that writes a domain classifier for ``dataset_name``."""
    return f"gis train classifier --data {dataset_name or 'DATASET'} --out DIR"


def load_domain_classifier(dataset, path: str | os.PathLike | None = None, *,
                           device: str | torch.device = "cpu") -> DomainClassifier:
    """The domain classifier of ``dataset`` (eval mode, on ``device``).

    ``path``: a ``domain-classifier.safetensors`` file (or the folder holding one); default
    ``dataset.meta["domain_classifier"]`` (the fashion-colors plugin sets it to its shipped
    file). Raises ``MissingAssetError`` naming the command that provisions one when there is
    none, and ``CheckpointError`` when the file does not fit the dataset (class count,
    category names, resolution) or its tensors do not fit the architecture it declares.
    """
    from gis.training import load_checkpoint

    name = (dataset.meta or {}).get("name") if dataset is not None else None
    if path is None and dataset is not None:
        path = (dataset.meta or {}).get(META_KEY)
    if path is not None and Path(path).is_dir():
        path = Path(path) / WEIGHTS_NAME
    if path is None or not Path(path).is_file():
        where = f" ({path} not found)" if path is not None else ""
        raise MissingAssetError(
            f"no domain classifier for dataset {name or '?'!r}{where}; train one with "
            f"`{provision_command(name)}` and pass DIR/{WEIGHTS_NAME} "
            "(load_domain_classifier(dataset, path=...) or dataset.meta"
            f"[{META_KEY!r}])")
    path = Path(path)
    tensors, meta = load_checkpoint(path)
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a gis domain classifier (format "
                              f"{meta.get('format')!r}, expected {FORMAT!r})")
    cfg = dict(meta.get("config") or {})
    names = list(meta.get("category_names") or [])
    try:
        model = DomainClassifier(int(cfg["num_classes"]), resolution=int(cfg["resolution"]),
                                 channels=cfg.get("channels", (32, 64, 128)),
                                 convs=cfg.get("convs"),
                                 hidden=int(cfg.get("hidden", 256)),
                                 dropout=float(cfg.get("dropout", 0.3)),
                                 sort_channels=bool(cfg.get("sort_channels", False)),
                                 category_names=names or None, card=meta.get("card"))
    except (KeyError, TypeError, ValueError, GisUsageError) as exc:
        raise CheckpointError(f"{path}: unusable classifier configuration {cfg} ({exc})"
                              ) from None
    if dataset is not None:
        want = list(dataset.category_names)
        if model.num_classes != len(want):
            raise CheckpointError(
                f"{path} classifies {model.num_classes} categories, but dataset "
                f"{name or '?'!r} has {len(want)}; train one for it with "
                f"`{provision_command(name)}`")
        if names and names != want:
            raise CheckpointError(
                f"{path} was trained on categories {names}, not dataset {name or '?'!r}'s "
                f"{want}; train one for it with `{provision_command(name)}`")
        if model.resolution != dataset.resolution:
            raise CheckpointError(
                f"{path} was trained at {model.resolution} px, dataset {name or '?'!r} is at "
                f"{dataset.resolution} px; train one at this resolution with "
                f"`{provision_command(name)}`")
    own = model.state_dict()
    missing = sorted(set(own) - set(tensors))
    extra = sorted(set(tensors) - set(own))
    if missing or extra:
        raise CheckpointError(f"{path} does not match the DomainClassifier architecture "
                              f"(missing {missing[:3]}, unexpected {extra[:3]})")
    for k, v in own.items():
        if tuple(tensors[k].shape) != tuple(v.shape):
            raise CheckpointError(f"{path}: tensor {k!r} has shape {tuple(tensors[k].shape)}, "
                                  f"the architecture needs {tuple(v.shape)}")
    model.load_state_dict({k: t.to(own[k].dtype) for k, t in tensors.items()})
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model.to(device)
