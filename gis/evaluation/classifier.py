"""A domain classifier: the category of an item image, for the evaluation suite.

The Inception Score needs the 1008-way ImageNet head of the 2015 Inception network, which no
package ships offline (REFERENCE.md §3). gis therefore trains its own small classifier on the
dataset's categories and names every score computed with it as such ("domain IS",
``gis.metrics.inception_score``). The same classifier gives the category of generated images
for the truth checks and measures whether a shift preserves an item's category.

``DomainClassifier`` is a small CNN: the three colour values of each pixel sorted (so which
channel is which -- the hue -- cannot be a cue), three blocks of conv 3x3 - BN - ReLU layers
and a 2x max-pool (``DEFAULT_ARCH``: 32, 64 and 128 channels with 1, 2 and 2 convs),
dropout, a hidden fully connected layer (256) and a linear layer to the categories. Input:
(B, 3, R, R) images in [-1, 1] at the dataset's resolution R; output: logits
(B, num_classes).

``train_domain_classifier`` trains it on the catalogue images and their categories and
measures it on the held-out items (never seen in training): overall and per-class accuracy go
into the model card. Training is seeded and deterministic on the CPU. Augmentation makes it
robust to GAN output and blind to colour (colour carries no category information, and the
classifier must not use it as a cue): random shifts of up to 2 px, horizontal flips, random
channel permutation, hue rotation about the grey axis, saturation changes and greyscale,
gaussian blur and gaussian noise.

Files: ``domain-classifier.safetensors`` (weights; the JSON meta in its header holds the
architecture, the dataset's categories and resolution and the model card; no pickle) and
``domain-classifier.json`` (the model card). ``gis train classifier --data NAME --out DIR``
writes both; ``load_domain_classifier`` reads them.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointError, GisUsageError, MissingAssetError

FORMAT = "gis.domain-classifier"
FORMAT_VERSION = 1
WEIGHTS_NAME = "domain-classifier.safetensors"
CARD_NAME = "domain-classifier.json"
META_KEY = "domain_classifier"  # Dataset.meta key naming a dataset's classifier file

DEFAULT_EPOCHS = 18
DEFAULT_BATCH_SIZE = 64
DEFAULT_LR = 2e-3
DEFAULT_WEIGHT_DECAY = 1e-4
#: architecture and augmentation of ``train_domain_classifier``
DEFAULT_ARCH: dict[str, Any] = {"channels": (32, 64, 128), "convs": (1, 2, 2), "hidden": 256,
                                "dropout": 0.1, "sort_channels": True}
DEFAULT_AUG: dict[str, Any] = {"max_shift": 2, "p_blur": 0.15, "p_noise": 0.15}

__all__ = [
    "CARD_NAME",
    "DomainClassifier",
    "WEIGHTS_NAME",
    "augment",
    "classifier_accuracy",
    "load_domain_classifier",
    "provision_command",
    "save_domain_classifier",
    "train_domain_classifier",
]


class DomainClassifier(nn.Module):
    """Small CNN: category logits of (B, 3, R, R) images in [-1, 1].

    ``channels``: output channels of the conv blocks; ``convs``: conv layers in each block
    (default 1 each); ``hidden``: width of the hidden
    fully connected layer; ``resolution``: the input size R (a multiple of 8) it is built for;
    ``sort_channels``: sort each pixel's three values first (invariant to channel
    permutations: colour hue is no category cue).
    ``category_names`` and ``card`` travel with the weights.
    """

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


# ----------------------------------------------------------------------------- augmentation

def _grey_axis_rotation(theta: torch.Tensor) -> torch.Tensor:
    """(B, 3, 3) rotations of RGB space about the grey axis (1, 1, 1): a hue rotation that
    keeps white white and greys grey."""
    k = torch.full((3,), 1.0 / math.sqrt(3.0), dtype=theta.dtype)
    kx = torch.tensor([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]],
                      dtype=theta.dtype)
    kk = torch.outer(k, k)
    c, s = theta.cos()[:, None, None], theta.sin()[:, None, None]
    return c * torch.eye(3, dtype=theta.dtype) + s * kx + (1 - c) * kk


def _gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, radius: int = 2) -> torch.Tensor:
    """Per-image separable gaussian blur of (B, C, H, W) with std ``sigma`` (B,)."""
    b, c, h, w = x.shape
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    k = torch.exp(-0.5 * (t[None] / sigma[:, None].clamp_min(1e-3)) ** 2)
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(c, dim=0)  # (B*C, K)
    y = F.pad(x.reshape(1, b * c, h, w), (radius, radius, radius, radius), mode="replicate")
    y = F.conv2d(y, k[:, None, :, None], groups=b * c)
    y = F.conv2d(y, k[:, None, None, :], groups=b * c)
    return y.reshape(b, c, h, w)


def augment(x: torch.Tensor, generator: torch.Generator, *, max_shift: int = 2,
            p_blur: float = 0.3, p_noise: float = 0.3) -> torch.Tensor:
    """Category-preserving random changes of a batch (B, 3, H, W) in [0, 1] (CPU).

    Geometry: shifts of up to ``max_shift`` pixels (edge pixels repeated) and horizontal
    flips. Colour, which says nothing about the category: a random channel permutation, a
    hue rotation about the grey axis, saturation x U(0.4, 1.6), greyscale with p = 0.15.
    GAN-like degradations: gaussian blur (probability ``p_blur``, sigma U(0.3, 1.2)) and
    gaussian noise (probability ``p_noise``, std U(0, 0.06)). All randomness comes from
    ``generator``.
    """
    g = generator
    b, c, h, w = x.shape

    def u(*shape, lo=0.0, hi=1.0):
        return torch.rand(*shape, generator=g) * (hi - lo) + lo

    # shifts and flips
    if max_shift > 0:
        p = max_shift
        padded = F.pad(x, (p, p, p, p), mode="replicate")
        dx = torch.randint(0, 2 * p + 1, (b,), generator=g)
        dy = torch.randint(0, 2 * p + 1, (b,), generator=g)
        rows = (dy[:, None] + torch.arange(h)[None])  # (B, H)
        cols = (dx[:, None] + torch.arange(w)[None])  # (B, W)
        idx_r = rows[:, None, :, None].expand(b, c, h, w + 2 * p)
        x = padded.gather(2, idx_r)
        idx_c = cols[:, None, None, :].expand(b, c, h, w)
        x = x.gather(3, idx_c)
    flip = u(b) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)

    # colour: permutation, hue rotation, saturation, greyscale
    perm = torch.argsort(u(b, 3), dim=1)
    x = x.gather(1, perm[:, :, None, None].expand(b, c, h, w))
    rot = _grey_axis_rotation(u(b, lo=-math.pi, hi=math.pi))
    x = torch.einsum("bij,bjhw->bihw", rot, x)
    grey = x.mean(1, keepdim=True)
    sat = u(b, lo=0.4, hi=1.6)
    sat = torch.where(u(b) < 0.15, torch.zeros_like(sat), sat)
    x = grey + sat[:, None, None, None] * (x - grey)
    x = x.clamp(0.0, 1.0)

    # degradations
    blur = u(b) < p_blur
    if bool(blur.any()):
        sigma = u(int(blur.sum()), lo=0.3, hi=1.2)
        x = x.clone()
        x[blur] = _gaussian_blur(x[blur], sigma)
    noisy = (u(b) < p_noise).float() * u(b, lo=0.0, hi=0.06)
    x = x + noisy[:, None, None, None] * torch.randn(x.shape, generator=g)
    return x.clamp(0.0, 1.0)


# ----------------------------------------------------------------------------- training

def dataset_fingerprint(dataset) -> str:
    """Short hash of a dataset's catalogue images and categories."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(dataset.images).tobytes())
    h.update(np.ascontiguousarray(dataset.categories).astype(np.int64).tobytes())
    return h.hexdigest()[:16]


@torch.no_grad()
def classifier_accuracy(model: DomainClassifier, images: torch.Tensor, labels,
                        category_names: Sequence[str] | None = None, *,
                        value_range=(-1.0, 1.0)) -> dict[str, Any]:
    """Accuracy, per-class accuracy (by category name) and the confusion matrix of ``model``
    on images (N, 3, H, W) in ``value_range`` with integer labels (N,)."""
    labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    pred = model.predict(images, value_range=value_range).cpu()
    n_cls = model.num_classes
    names = list(category_names or model.category_names)
    confusion = torch.zeros(n_cls, n_cls, dtype=torch.long)
    confusion.index_put_((labels, pred), torch.ones_like(labels), accumulate=True)
    per_class = {}
    for c in range(n_cls):
        n = int(confusion[c].sum())
        per_class[names[c]] = round(float(confusion[c, c]) / n, 4) if n else None
    return {"accuracy": round(float((pred == labels).float().mean()), 4) if len(labels) else None,
            "n": int(len(labels)), "per_class_accuracy": per_class,
            "confusion": confusion.tolist()}


def train_domain_classifier(dataset, *, epochs: int = DEFAULT_EPOCHS, seed: int = 0,
                            device: str | torch.device = "cpu", progress: bool = True,
                            batch_size: int = DEFAULT_BATCH_SIZE, lr: float = DEFAULT_LR,
                            weight_decay: float = DEFAULT_WEIGHT_DECAY,
                            limit: int | None = None, command: str | None = None,
                            arch: dict[str, Any] | None = None,
                            aug: dict[str, Any] | None = None
                            ) -> tuple[DomainClassifier, dict[str, Any]]:
    """Train a ``DomainClassifier`` on ``dataset``'s catalogue images and categories.

    AdamW (``lr``, ``weight_decay``) with a one-cycle schedule over ``epochs``, batches of
    ``batch_size``, the augmentation of :func:`augment`. The held-out items are the
    validation set: their accuracy is measured after each epoch (history) and at the end
    (the card's ``metrics``); they never steer training (the last epoch's model is kept).
    ``limit``: use only the first ``limit`` catalogue and held-out items (quick tests).
    ``arch``: ``DomainClassifier`` settings (default ``DEFAULT_ARCH``); ``aug``: ``augment``
    settings (default ``DEFAULT_AUG``).
    Seeded (``seed``) and deterministic on the CPU for a given thread count.

    Returns ``(model, card)``; the model is in eval mode on ``device``.
    """
    from ..training import command_line, machine_info, seed_everything
    from ..training import progress as progress_bar

    if epochs < 1:
        raise GisUsageError(f"epochs must be at least 1, got {epochs}")
    images = np.asarray(dataset.images)
    cats = np.asarray(dataset.categories, dtype=np.int64)
    if limit is not None:
        if limit < 1:
            raise GisUsageError(f"limit must be at least 1, got {limit}")
        images, cats = images[:limit], cats[:limit]
    names = list(dataset.category_names)
    n_cls = len(names)
    if len(images) == 0:
        raise GisUsageError(f"dataset {dataset.meta.get('name', '?')!r} has no catalogue images")
    if cats.min() < 0 or cats.max() >= n_cls:
        raise GisUsageError(f"categories must lie in 0..{n_cls - 1}")
    device = torch.device(device)
    gen = seed_everything(seed)
    res = int(images.shape[1])
    arch = {**DEFAULT_ARCH, **(arch or {})}
    aug = {**DEFAULT_AUG, **(aug or {})}
    model = DomainClassifier(n_cls, resolution=res, category_names=names, **arch).to(device)

    x01 = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
    y = torch.from_numpy(cats)
    held_x = held_y = None
    if dataset.heldout_images is not None and dataset.heldout_categories is not None:
        hx, hy = np.asarray(dataset.heldout_images), np.asarray(dataset.heldout_categories)
        if limit is not None:
            hx, hy = hx[:limit], hy[:limit]
        held_x = torch.from_numpy(np.ascontiguousarray(hx)).permute(0, 3, 1, 2).float() / 255.0
        held_y = torch.from_numpy(hy.astype(np.int64))

    n = len(x01)
    steps_per_epoch = max(1, math.ceil(n / batch_size))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, epochs=epochs,
                                                steps_per_epoch=steps_per_epoch,
                                                pct_start=0.25)
    history: list[dict[str, Any]] = []
    t0 = time.monotonic()
    step = 0
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(n, generator=gen)
        total, correct, count = 0.0, 0, 0
        bar = progress_bar(range(steps_per_epoch), desc=f"classifier epoch {epoch + 1}/{epochs}",
                           enabled=progress)
        for i in bar:
            idx = order[i * batch_size:(i + 1) * batch_size]
            xb = augment(x01[idx], gen, **aug) * 2.0 - 1.0
            yb = y[idx]
            xb, yb = xb.to(device), yb.to(device)
            logits = model(xb)
            loss = F.cross_entropy(logits, yb)
            if not torch.isfinite(loss):
                from ..errors import NonFiniteLossError

                raise NonFiniteLossError(f"classifier cross-entropy is {loss.item()} at "
                                         f"epoch {epoch + 1}, step {step}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            total += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(1) == yb).sum())
            count += len(idx)
            bar.set_postfix(loss=f"{total / count:.3f}")
        bar.close()
        row: dict[str, Any] = {"epoch": epoch + 1, "train_loss": round(total / count, 4),
                               "train_accuracy_augmented": round(correct / count, 4),
                               "time_s": round(time.monotonic() - t0, 1)}
        if held_x is not None:
            row["heldout_accuracy"] = classifier_accuracy(
                model, held_x, held_y, names, value_range=(0.0, 1.0))["accuracy"]
        history.append(row)
        if progress:
            from tqdm.auto import tqdm

            tqdm.write(f"epoch {epoch + 1}/{epochs}: loss {row['train_loss']:.4f}"
                       + (f", held-out accuracy {row['heldout_accuracy']:.4f}"
                          if "heldout_accuracy" in row else ""))
    train_s = time.monotonic() - t0
    model.eval()

    metrics: dict[str, Any] = {
        "protocol": "top-1 accuracy on the dataset's held-out items (never used in training; "
                    "the model after the last epoch, no selection on these items)",
    }
    if held_x is not None:
        acc = classifier_accuracy(model, held_x, held_y, names, value_range=(0.0, 1.0))
        metrics.update(heldout_accuracy=acc["accuracy"], heldout_n=acc["n"],
                       per_class_accuracy=acc["per_class_accuracy"],
                       confusion=acc["confusion"])
    else:
        metrics.update(heldout_accuracy=None, heldout_n=0,
                       note="the dataset has no held-out items: nothing was measured")
    train_acc = classifier_accuracy(model, x01, y, names, value_range=(0.0, 1.0))
    metrics["train_accuracy"] = train_acc["accuracy"]

    card = {
        "name": "domain-classifier",
        "format": FORMAT,
        "model": "gis DomainClassifier: "
                 + ("per-pixel channel sort, " if model.sort_channels else "")
                 + "blocks of (conv 3x3 - BN - ReLU) x "
                 f"{'/'.join(map(str, model.convs))} + max-pool 2 with "
                 f"{'/'.join(map(str, model.channels))} channels, dropout {model.dropout}, "
                 f"fc {model.hidden}, fc {n_cls}; input (B, 3, {res}, {res}) in [-1, 1]",
        "purpose": "domain Inception Score (not comparable to ImageNet IS), category of "
                   "generated images for truth checks, category preservation of shifts",
        "architecture": model.config(),
        "input_range": [-1, 1],
        "dataset": {
            "name": dataset.meta.get("name"),
            "resolution": res,
            "category_names": names,
            "items": int(len(images)),
            "heldout": 0 if held_x is None else int(len(held_x)),
            "limit": limit,
            "fingerprint": dataset_fingerprint(dataset),
            "source": dataset.meta.get("source"),
        },
        "command": command or command_line(),
        "seed": int(seed),
        "epochs": int(epochs),
        "hyperparameters": {
            "batch_size": batch_size, "optimizer": "AdamW", "lr": lr,
            "weight_decay": weight_decay, "schedule": "one-cycle (pct_start 0.25)",
            "loss": "cross-entropy",
            "augmentation": f"shift <= {aug['max_shift']} px (replicate), hflip 0.5, channel "
                            "permutation, hue rotation about the grey axis, saturation "
                            "U(0.4, 1.6), greyscale 0.15, gaussian blur p "
                            f"{aug['p_blur']} sigma U(0.3, 1.2), gaussian noise p "
                            f"{aug['p_noise']} std U(0, 0.06)",
            "augmentation_settings": aug,
        },
        "training": {"epochs_completed": epochs, "steps": step,
                     "time_s": round(train_s, 1), "time_min": round(train_s / 60.0, 2)},
        "machine": machine_info(device),
        "torch": torch.__version__,
        "metrics": metrics,
        "history": history,
    }
    model.card = card
    return model, card


# ----------------------------------------------------------------------------- files

def save_domain_classifier(model: DomainClassifier, out_dir: str | os.PathLike
                           ) -> tuple[Path, Path]:
    """Write ``out_dir/domain-classifier.safetensors`` and ``out_dir/domain-classifier.json``
    (the model card); returns both paths."""
    from ..training import save_checkpoint, write_json

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
    from ..training import load_checkpoint

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
