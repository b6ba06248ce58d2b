"""Training the domain classifier, and its accuracy.

``ClassifierTrainer`` trains a ``DomainClassifier`` on a dataset's catalogue images and
categories with ``augment``, one batch per step of gis's resumable-run skeleton
(:mod:`gis.training.run`), and measures it on the held-out items (never seen in training).
``gis train classifier --data NAME --out DIR`` runs it (``--help`` lists the settings of
:class:`ClassifierTrainConfig`); ``train_domain_classifier`` is the same from Python.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from gis.errors import GisUsageError, NonFiniteLossError
from gis.training import (
    Checkpoint,
    Run,
    RunOptions,
    Trainer,
    check_ranges,
    machine_info,
    make_config,
    setting,
)

from .augment import DEFAULT_AUG, augment
from .model import FORMAT, DomainClassifier, save_domain_classifier

DEFAULT_EPOCHS = 18
DEFAULT_BATCH_SIZE = 64
DEFAULT_LR = 2e-3
DEFAULT_WEIGHT_DECAY = 1e-4
#: architecture of ``train_domain_classifier`` (``DomainClassifier`` settings)
DEFAULT_ARCH: dict[str, Any] = {"channels": (32, 64, 128), "convs": (1, 2, 2), "hidden": 256,
                                "dropout": 0.1, "sort_channels": True}


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


@dataclass
class ClassifierTrainConfig:
    """Settings of a domain-classifier run (a resumed run keeps those it started with)."""

    epochs: int = setting(DEFAULT_EPOCHS, "Training epochs (the one-cycle schedule spans them).")
    batch_size: int = setting(DEFAULT_BATCH_SIZE, "Images per step.")
    lr: float = setting(DEFAULT_LR, "Peak AdamW learning rate of the one-cycle schedule.")
    weight_decay: float = setting(DEFAULT_WEIGHT_DECAY, "AdamW weight decay.")
    limit: int | None = setting(
        None, "Use only the first N catalogue and held-out items (quick trials).")
    channels: tuple[int, ...] = setting(DEFAULT_ARCH["channels"], "Channels of the conv blocks.")
    convs: tuple[int, ...] = setting(DEFAULT_ARCH["convs"], "Convs (3x3) per block.")
    hidden: int = setting(DEFAULT_ARCH["hidden"], "Width of the hidden fully connected layer.")
    dropout: float = setting(DEFAULT_ARCH["dropout"], "Dropout before the fully connected layers.")
    sort_channels: bool = setting(
        DEFAULT_ARCH["sort_channels"], "sorting each pixel's colour values (blind to hue).")
    max_shift: int = setting(DEFAULT_AUG["max_shift"], "Augmentation: largest shift (pixels).")
    p_blur: float = setting(DEFAULT_AUG["p_blur"], "Augmentation: probability of a blur.")
    p_noise: float = setting(DEFAULT_AUG["p_noise"], "Augmentation: probability of noise.")

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise GisUsageError(f"epochs must be at least 1, got {self.epochs}")
        if self.limit is not None and self.limit < 1:
            raise GisUsageError(f"limit must be at least 1, got {self.limit}")
        check_ranges(self, "classifier", positive=("batch_size", "lr", "channels", "convs",
                                                   "hidden"),
                     non_negative=("weight_decay", "max_shift"), below_one=("dropout",),
                     fraction=("p_blur", "p_noise"))

    @property
    def arch(self) -> dict[str, Any]:
        """The ``DomainClassifier`` settings."""
        return {k: getattr(self, k) for k in DEFAULT_ARCH}

    @property
    def aug(self) -> dict[str, Any]:
        """The ``augment`` settings."""
        return {k: getattr(self, k) for k in DEFAULT_AUG}


class ClassifierTrainer(Trainer):
    """The dataset's domain classifier (categories from images): AdamW with a one-cycle
    schedule, augmented batches, the held-out accuracy after every epoch."""

    name = "domain-classifier"
    Config = ClassifierTrainConfig
    checkpoint_format = "gis-domain-classifier-train"
    state_key = "classifier_state"
    log_every = 20

    def setup(self, carried: Checkpoint | None) -> tuple[int, dict[str, Any]]:
        if carried is not None:  # the run's own settings (the schedule depends on them)
            self.config = make_config(ClassifierTrainConfig, carried.meta["settings"],
                                      what="domain-classifier trainer")
        c, ds = self.config, self.dataset
        images = np.asarray(ds.images)
        cats = np.asarray(ds.categories, dtype=np.int64)
        if c.limit is not None:
            images, cats = images[:c.limit], cats[:c.limit]
        self.names = list(ds.category_names)
        if len(images) == 0:
            raise GisUsageError(f"dataset {ds.meta.get('name', '?')!r} has no catalogue images")
        if cats.min() < 0 or cats.max() >= len(self.names):
            raise GisUsageError(f"categories must lie in 0..{len(self.names) - 1}")
        self.images, self.cats = images, cats
        if carried is not None:
            return int(carried.meta["seed"]), dict(carried.meta["classifier_state"])
        return int(self.run.options.seed), {"epoch": 0, "step": 0, "history": [],
                                            "epoch_sums": [0.0, 0, 0]}

    def build(self) -> None:
        c, ds, dev = self.config, self.dataset, self.run.device
        self.resolution = int(self.images.shape[1])
        self.gen = torch.Generator().manual_seed(self.run.seed)  # batches and augmentation
        self.epoch_gen = torch.Generator()  # the stream's state where the epoch began
        self.model = DomainClassifier(len(self.names), resolution=self.resolution,
                                      category_names=self.names, **c.arch).to(dev)
        self.x01 = torch.from_numpy(np.ascontiguousarray(self.images)).permute(
            0, 3, 1, 2).float() / 255.0
        self.y = torch.from_numpy(self.cats)
        self.held_x = self.held_y = None
        if ds.heldout_images is not None and ds.heldout_categories is not None:
            hx, hy = np.asarray(ds.heldout_images), np.asarray(ds.heldout_categories)
            if c.limit is not None:
                hx, hy = hx[:c.limit], hy[:c.limit]
            self.held_x = torch.from_numpy(np.ascontiguousarray(hx)).permute(
                0, 3, 1, 2).float() / 255.0
            self.held_y = torch.from_numpy(hy.astype(np.int64))
        self.steps_per_epoch = max(1, math.ceil(len(self.x01) / c.batch_size))
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=c.lr,
                                     weight_decay=c.weight_decay)
        self.sched = torch.optim.lr_scheduler.OneCycleLR(
            self.opt, max_lr=c.lr, epochs=c.epochs, steps_per_epoch=self.steps_per_epoch,
            pct_start=0.25)
        self.order: torch.Tensor | None = None

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"model.": self.model}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"opt.": self.opt}

    def schedulers(self) -> dict[str, Any]:
        return {"sched.": self.sched}

    def generators(self) -> dict[str, torch.Generator]:
        return {"train": self.gen, "epoch": self.epoch_gen}

    def checkpoint_meta(self) -> dict[str, Any]:
        return {"settings": dataclasses.asdict(self.config), "seed": self.run.seed,
                "commands": self.run.commands, "last_losses": self.run.last_losses}

    # ----------------------------------------------------------------- loop
    def step(self) -> dict[str, torch.Tensor]:
        st, c, dev = self.run.state, self.config, self.run.device
        s = st["step"] - st["epoch"] * self.steps_per_epoch
        if s == 0:  # a new epoch: its order comes from the stream (state kept for a resume)
            self.epoch_gen.set_state(self.gen.get_state())
            self.order = torch.randperm(len(self.x01), generator=self.gen)
            st["epoch_sums"] = [0.0, 0, 0]
        elif self.order is None:  # resumed within an epoch: the same order again
            g = torch.Generator()
            g.set_state(self.epoch_gen.get_state())
            self.order = torch.randperm(len(self.x01), generator=g)
        self.model.train()
        idx = self.order[s * c.batch_size:(s + 1) * c.batch_size]
        xb = augment(self.x01[idx], self.gen, **c.aug) * 2.0 - 1.0
        xb, yb = xb.to(dev), self.y[idx].to(dev)
        logits = self.model(xb)
        loss = F.cross_entropy(logits, yb)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(f"classifier cross-entropy is {loss.item()} at epoch "
                                     f"{st['epoch'] + 1}, step {st['step']}")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.sched.step()
        sums = st["epoch_sums"]
        sums[0] += float(loss.detach()) * len(idx)
        sums[1] += int((logits.argmax(1) == yb).sum())
        sums[2] += len(idx)
        return {"loss": loss.detach()}

    def advance(self, dt: float) -> None:
        st = self.run.state
        if st["step"] - st["epoch"] * self.steps_per_epoch < self.steps_per_epoch:
            return
        total, correct, count = st["epoch_sums"]
        row: dict[str, Any] = {"epoch": st["epoch"] + 1, "train_loss": round(total / count, 4),
                               "train_accuracy_augmented": round(correct / count, 4),
                               "time_s": round(st["elapsed_s"], 1)}
        if self.held_x is not None:
            row["heldout_accuracy"] = classifier_accuracy(
                self.model, self.held_x, self.held_y, self.names,
                value_range=(0.0, 1.0))["accuracy"]
        st["history"].append(row)
        st["epoch"] += 1
        self.order = None
        self.run.write(f"epoch {row['epoch']}/{self.config.epochs}: loss {row['train_loss']:.4f}"
                       + (f", held-out accuracy {row['heldout_accuracy']:.4f}"
                          if "heldout_accuracy" in row else ""))
        self.run.save_checkpoint()

    def finished(self) -> bool:
        return self.run.state["epoch"] >= self.config.epochs

    def progress_position(self) -> tuple[float, float]:
        return float(self.run.state["step"]), float(self.config.epochs * self.steps_per_epoch)

    def log_fields(self) -> dict[str, Any]:
        return {"epoch": self.run.state["epoch"] + 1}

    # ----------------------------------------------------------------- export
    def export(self) -> Path:
        """``domain-classifier.safetensors`` and ``.json`` (the model card) in the run folder:
        the model as it is, measured on the held-out and the training items."""
        st, c, run, model = self.run.state, self.config, self.run, self.model
        model.eval()
        metrics: dict[str, Any] = {
            "protocol": "top-1 accuracy on the dataset's held-out items (never used in "
                        "training; the model after the last epoch, no selection on these "
                        "items)",
        }
        if self.held_x is not None:
            acc = classifier_accuracy(model, self.held_x, self.held_y, self.names,
                                      value_range=(0.0, 1.0))
            metrics.update(heldout_accuracy=acc["accuracy"], heldout_n=acc["n"],
                           per_class_accuracy=acc["per_class_accuracy"],
                           confusion=acc["confusion"])
        else:
            metrics.update(heldout_accuracy=None, heldout_n=0,
                           note="the dataset has no held-out items: nothing was measured")
        metrics["train_accuracy"] = classifier_accuracy(model, self.x01, self.y, self.names,
                                                        value_range=(0.0, 1.0))["accuracy"]
        ds, res, aug = self.dataset, self.resolution, c.aug
        self.card = {
            "name": "domain-classifier",
            "format": FORMAT,
            "model": "gis DomainClassifier: "
                     + ("per-pixel channel sort, " if model.sort_channels else "")
                     + "blocks of (conv 3x3 - BN - ReLU) x "
                     f"{'/'.join(map(str, model.convs))} + max-pool 2 with "
                     f"{'/'.join(map(str, model.channels))} channels, dropout {model.dropout}, "
                     f"fc {model.hidden}, fc {len(self.names)}; input (B, 3, {res}, {res}) in "
                     "[-1, 1]",
            "purpose": "domain Inception Score (not comparable to ImageNet IS), category of "
                       "generated images for truth checks, category preservation of shifts",
            "architecture": model.config(),
            "input_range": [-1, 1],
            "dataset": {
                "name": ds.meta.get("name"),
                "resolution": res,
                "category_names": self.names,
                "items": int(len(self.images)),
                "heldout": 0 if self.held_x is None else int(len(self.held_x)),
                "limit": c.limit,
                "fingerprint": dataset_fingerprint(ds),
                "source": ds.meta.get("source"),
            },
            "command": run.commands[0],
            "commands": run.commands,
            "seed": run.seed,
            "epochs": c.epochs,
            "hyperparameters": {
                "batch_size": c.batch_size, "optimizer": "AdamW", "lr": c.lr,
                "weight_decay": c.weight_decay, "schedule": "one-cycle (pct_start 0.25)",
                "loss": "cross-entropy",
                "augmentation": f"shift <= {aug['max_shift']} px (replicate), hflip 0.5, channel "
                                "permutation, hue rotation about the grey axis, saturation "
                                "U(0.4, 1.6), greyscale 0.15, gaussian blur p "
                                f"{aug['p_blur']} sigma U(0.3, 1.2), gaussian noise p "
                                f"{aug['p_noise']} std U(0, 0.06)",
                "augmentation_settings": aug,
            },
            "training": {"epochs_completed": st["epoch"], "steps": st["step"],
                         "time_s": round(st["elapsed_s"], 1),
                         "time_min": round(st["elapsed_s"] / 60.0, 2)},
            "machine": machine_info(run.device),
            "torch": torch.__version__,
            "metrics": metrics,
            "history": st["history"],
        }
        model.card = self.card
        weights, self.card_path = save_domain_classifier(model, run.out)
        return weights

    def summary(self) -> str:
        m = self.card["metrics"]
        if m.get("heldout_accuracy") is None:
            lines = ["held-out accuracy: n/a (the dataset has no held-out items)"]
        else:
            lines = [f"held-out accuracy: {m['heldout_accuracy']:.4f} ({m['heldout_n']} items)",
                     "per class: " + ", ".join(f"{k} {v:.3f}" for k, v in
                                               m["per_class_accuracy"].items() if v is not None)]
        return "\n".join([*lines, f"training time: {self.card['training']['time_s']:.1f} s",
                          f"model card: {self.card_path}"])


def train_domain_classifier(dataset, *, epochs: int = DEFAULT_EPOCHS, seed: int = 0,
                            device: str | torch.device = "cpu", progress: bool = True,
                            batch_size: int = DEFAULT_BATCH_SIZE, lr: float = DEFAULT_LR,
                            weight_decay: float = DEFAULT_WEIGHT_DECAY,
                            limit: int | None = None, arch: dict[str, Any] | None = None,
                            aug: dict[str, Any] | None = None, out: str | Path | None = None
                            ) -> tuple[DomainClassifier, dict[str, Any]]:
    """Train a ``DomainClassifier`` on ``dataset``'s catalogue images and categories.

    AdamW (``lr``, ``weight_decay``) with a one-cycle schedule over ``epochs``, batches of
    ``batch_size``, the augmentation of :func:`augment`. The held-out items are the
    validation set: their accuracy is measured after each epoch (history) and at the end
    (the card's ``metrics``); they never steer training (the last epoch's model is kept).
    ``limit``: use only the first ``limit`` catalogue and held-out items (quick tests).
    ``arch``: ``DomainClassifier`` settings (default ``DEFAULT_ARCH``); ``aug``: ``augment``
    settings (default ``DEFAULT_AUG``). ``out``: the run folder (checkpoint, weights, card;
    default a temporary one). Runs :class:`ClassifierTrainer` in gis's training skeleton on
    the current torch thread count; seeded (``seed``) and deterministic on the CPU for a
    given thread count.

    Returns ``(model, card)``; the model is in eval mode on ``device``.
    """
    config = make_config(ClassifierTrainConfig, {
        "epochs": epochs, "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay,
        "limit": limit, **(arch or {}), **(aug or {})}, what="domain-classifier trainer")
    with (contextlib.nullcontext(out) if out is not None
          else tempfile.TemporaryDirectory(prefix="gis-classifier-")) as folder:
        run = Run(ClassifierTrainer, dataset, config, RunOptions(
            out=folder, seed=seed, device=str(device), progress=progress,
            threads=torch.get_num_threads()))
        run.execute()
    return run.trainer.model, run.trainer.card
