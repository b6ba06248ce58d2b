"""A class-conditional GAN's training run: generator G(z, y), discriminator D(x, y), an
exponential moving average of G's weights, categories at their data frequency.

:class:`ConditionalGANTrainer` is what gis's BigGAN (Brock et al. 2019) and dvbpr-gan (Kang
et al. 2017) trainers share on top of the run skeleton (:class:`gis.training.run.Trainer`):
settling the architecture from a new config, a resumed checkpoint or a warm-start file (and
refusing one made for another number of categories), the kimg schedule, networks, weight
average, training images and labels on the device, fixed per-category sample latents, the
checkpoint's tensors and meta, the lineage and training facts of the model card. A subclass
supplies the GAN itself: its config class, networks, optimisers, step (losses) and export.

A third party's conditional GAN plugin may subclass it too; docs/PLUGINS.md has the trainer
contract.
"""

from __future__ import annotations

import datetime as _dt
import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ..errors import CheckpointError, GisUsageError
from .data import dataset_record, save_class_reals, training_images
from .device import machine_info
from .run import Checkpoint, Trainer
from .state import WeightAverage

#: the fields of a source model card's training record carried into a warm start's lineage
LINEAGE_FIELDS = ("steps", "kimg", "elapsed_s", "batch_size", "device")


class ConditionalGANTrainer(Trainer):
    """The shared run of a class-conditional GAN (module docstring).

    A subclass sets ``name``, ``Config`` (with ``kimg``, ``batch_size``, ``ema_beta`` and
    ``export_dtype`` fields), ``checkpoint_format`` and ``state_key``, and implements
    :meth:`config_from_dict`, :meth:`new_model_config`, :meth:`new_hyper`,
    :meth:`networks`, :meth:`make_optimizers`, :meth:`load_exported`, :meth:`synthesize`,
    ``step`` and ``export`` (with :meth:`training_card` and :meth:`averaged_g_state`).

    After :meth:`build`: ``G``, ``D``, ``opt_g``, ``opt_d``, ``ema`` (a
    :class:`WeightAverage` of G, or None when ``ema_beta`` is 0), ``rng`` (the loop's
    generator), ``data`` (uint8 training images on the device), ``labels`` (int64 category
    per image), ``cfg`` (the model config), ``hyper`` (JSON optimiser settings), ``batch``,
    ``st`` (the loop state: ``step``, ``images`` shown to D, ...), ``names`` (category names).
    """

    warm_start: ClassVar[bool] = True
    checkpoint_file: ClassVar[str] = "checkpoint.safetensors"
    #: sample grid columns (fixed latents); one row per category
    sample_columns: ClassVar[int] = 8
    #: what one step is called in the closing summary
    step_noun: ClassVar[str] = "steps"

    # ----------------------------------------------------------------- to implement
    def config_from_dict(self, d: dict[str, Any]) -> Any:
        """The model config stored in a checkpoint or a warm-start file's meta."""
        raise NotImplementedError

    def new_model_config(self, num_classes: int, resolution: int) -> Any:
        """The model config of a new run from ``self.config``."""
        raise NotImplementedError

    def new_hyper(self) -> dict[str, Any]:
        """The optimiser settings of a new run (JSON; must hold ``ema_beta``)."""
        raise NotImplementedError

    def images_per_step(self) -> int:
        """Real images D sees per step (the ``kimg`` schedule counts them)."""
        return self.batch

    def networks(self) -> tuple[nn.Module, nn.Module]:
        """New (G, D) for ``self.cfg`` (on the CPU; the caller moves them)."""
        raise NotImplementedError

    def make_optimizers(self) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
        """(G's, D's) optimiser over ``self.G`` and ``self.D`` from ``self.hyper``."""
        raise NotImplementedError

    def load_exported(self, path: Path) -> tuple[nn.Module, nn.Module, Any, dict[str, Any]]:
        """(G, D, model config, card) of an exported file, a run folder or a training
        checkpoint, for a warm start; a one-line GisUsageError when it has no D."""
        raise NotImplementedError

    def synthesize(self, net: nn.Module, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, r, r) in [-1, 1] of ``net`` (G or its average) for latents ``z`` and
        int64 category ``labels`` (B,)."""
        raise NotImplementedError

    # ----------------------------------------------------------------- the shared run
    def read_warm_start(self, path: Path) -> Checkpoint:
        """G and D of an exported file (or a run folder / training checkpoint), with the
        source's training commands and summary for the lineage."""
        g, d, cfg, card = self.load_exported(path)
        src = dict(card.get("training") or {})
        tensors = {**{f"g.{k}": v for k, v in g.state_dict().items()},
                   **{f"d.{k}": v for k, v in d.state_dict().items()}}
        meta = {"config": cfg.to_dict(), "commands": list(src.get("commands") or []),
                "training": {k: src[k] for k in LINEAGE_FIELDS if k in src}}
        return Checkpoint("warm", path, tensors, meta)

    def setup(self, carried: Checkpoint | None) -> tuple[int, dict[str, Any]]:
        c, opts = self.config, self.run.options
        if opts.minutes is None and c.kimg is None and opts.max_steps is None:
            raise GisUsageError(f"{self.name} training needs minutes, kimg or max_steps")
        self.categories = np.asarray(self.dataset.categories, dtype=np.int64)
        self.names = [str(n) for n in self.dataset.category_names]
        if len(self.categories) != len(self.dataset.images):
            raise GisUsageError("dataset categories and images differ in length")
        if carried is not None and carried.kind == "resume":
            meta = carried.meta
            cfg = self.config_from_dict(meta["config"])
            hyper, self.batch = dict(meta["hyper"]), int(meta["batch_size"])
            seed, st = int(meta["seed"]), dict(meta[self.state_key])
        else:
            if carried is not None:  # the architecture comes with the weights
                cfg = self.config_from_dict(carried.meta["config"])
            else:
                cfg = self.new_model_config(len(self.names),
                                            int(c.resolution or self.dataset.resolution))
            hyper, self.batch, seed = self.new_hyper(), int(c.batch_size), int(opts.seed)
            st = {"step": 0, "images": 0, "elapsed_s": 0.0, "sessions": 0}
            if carried is not None:  # the lineage: the source's commands and training summary
                st["init_from"] = str(carried.path)
                st["init_from_training"] = carried.meta["training"]
        if cfg.num_classes != len(self.names):
            raise CheckpointError(f"{carried.path if carried else 'the run'} has "
                                  f"{cfg.num_classes} categories, this dataset has "
                                  f"{len(self.names)}")
        self.cfg, self.hyper, self.st = cfg, hyper, st
        self.beta = float(hyper.get("ema_beta", 0.0))  # runs from before averaging: 0
        self.total_steps = (None if c.kimg is None
                            else math.ceil(c.kimg * 1000.0 / self.images_per_step()))
        return seed, st

    def build(self) -> None:
        dev, cfg, seed = self.run.device, self.cfg, self.run.seed
        self.rng = torch.Generator(device=dev).manual_seed(seed)
        g, d = self.networks()
        self.G, self.D = g.to(dev), d.to(dev)
        self.opt_g, self.opt_d = self.make_optimizers()
        self.ema = (WeightAverage(self.G, self.beta, ramp=not self.st.get("init_from"))
                    if self.beta > 0 else None)
        self.data = training_images(self.dataset.images, cfg.resolution, dev)
        self.labels = torch.from_numpy(self.categories).to(dev)
        n_col = self.sample_columns  # fixed sample latents: one row per category
        self.fixed_z = torch.randn(n_col, cfg.latent_dim, generator=torch.Generator(
        ).manual_seed(seed + 7919)).to(dev).repeat(cfg.num_classes, 1)
        self.fixed_labels = torch.arange(cfg.num_classes, device=dev).repeat_interleave(n_col)
        save_class_reals(self.run, self.data, self.labels, cfg.num_classes, n_col)
        self.dataset_info = dataset_record(self.dataset, len(self.data), self.names)

    def modules(self) -> dict[str, nn.Module]:
        return {"g.": self.G, "d.": self.D}

    def averages(self) -> dict[str, WeightAverage]:
        return {} if self.ema is None else {"ema.": self.ema}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"opt_g.": self.opt_g, "opt_d.": self.opt_d}

    def generators(self) -> dict[str, torch.Generator]:
        return {"train": self.rng}

    def checkpoint_meta(self) -> dict[str, Any]:
        return {"config": self.cfg.to_dict(), "hyper": self.hyper, "batch_size": self.batch,
                "seed": self.run.seed, "dataset": self.dataset_info,
                "category_names": self.names, "commands": self.run.commands,
                "last_losses": self.run.last_losses}

    def real_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Indices (B,) of a random batch of training images and their categories."""
        idx = torch.randint(len(self.data), (self.batch,), generator=self.rng,
                            device=self.run.device)
        return idx, self.labels[idx]

    def log_fields(self) -> dict[str, Any]:
        return {"kimg": self.st["images"] / 1000.0}

    def finished(self) -> bool:
        return self.total_steps is not None and self.st["step"] >= self.total_steps

    def progress_position(self) -> tuple[float, float | None]:
        limits = [n for n in (self.total_steps, self.run.options.max_steps) if n is not None]
        return float(self.st["step"]), (min(limits) if limits else None)

    def sample(self, suffix: str) -> None:
        net = self.G if self.ema is None else self.ema.module
        net.eval()
        with torch.no_grad():
            imgs = self.synthesize(net, self.fixed_z, self.fixed_labels)
        self.G.train()
        self.run.save_samples(imgs, f"step{self.st['step']:07d}{suffix}",
                              nrow=self.sample_columns)

    # ----------------------------------------------------------------- export helpers
    def averaged_g_state(self) -> dict[str, torch.Tensor]:
        """The weights to export: G's average when one is kept, else G's."""
        return (self.G if self.ema is None else self.ema.module).state_dict()

    def export_dtype(self) -> torch.dtype:
        return {"float16": torch.float16, "float32": torch.float32}[self.config.export_dtype]

    def training_card(self, batchnorm_batches: int, **fields: Any) -> dict[str, Any]:
        """The model card's ``training`` record: the run's commands, seed, device, machine,
        time, steps, kimg and batch size, then ``fields`` (the GAN's own: optimiser, loss),
        the final losses, how the exported G's BatchNorm statistics were made (standing
        statistics over ``batchnorm_batches`` batches of 64 when G is averaged) and the
        lineage of a warm start."""
        st, run = self.st, self.run
        return {
            "commands": run.commands, "seed": run.seed, "device": str(run.device),
            "machine": machine_info(run.device), "elapsed_s": round(st["elapsed_s"], 1),
            "steps": st["step"], "kimg": round(st["images"] / 1000.0, 2),
            "batch_size": self.batch, **fields, "final_losses": run.last_losses,
            "batchnorm_statistics": ("running averages from training" if self.ema is None
                                     else "standing statistics of the averaged G, "
                                     f"{batchnorm_batches} batches of 64"),
            **({"init_from": st["init_from"],
                "init_from_training": st.get("init_from_training", {})}
               if st.get("init_from") else {}),
            "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }

    def summary(self) -> str:
        st = self.st
        return (f"{self.name}: {st['step']} {self.step_noun}, {st['images'] / 1000:.1f} kimg, "
                f"{st['elapsed_s'] / 60:.1f} min of training; losses {self.run.last_losses}")
