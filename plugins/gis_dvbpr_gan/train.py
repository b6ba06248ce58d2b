"""Train Kang et al.'s conditional LSGAN on a gis dataset (resumable, time-budgeted).

Losses (LSGAN, a = 0, b = c = 1): D minimises 0.5 E[(D(x, c) - 1)^2] + 0.5 E[D(G(z, c), c)^2],
G minimises 0.5 E[(D(G(z, c), c) - 1)^2]; one D step then one G step per iteration; Adam
(lr 1e-4, betas (0.5, 0.99)) for both; batch 16 as in the paper (larger batches are allowed,
e.g. 64 on a GPU; the card records it). z ~ N(0, 1) (256-d); the fake batch's categories are
those of another random draw of real items, so classes appear at their data frequency.

Weight averaging (not in the paper; ``ema_beta`` = 0.999, 0 turns it off): an exponential
moving average of G's weights is kept after every step (ramped up as min(beta, (1 + t) /
(10 + t)) in a fresh run, the full beta from the first step of a warm start) and is what the
exported file and the sample grids hold. Before export, the averaged G's BatchNorm running
statistics are recomputed as standing statistics over 100 batches of 64 fresh samples
(``recalibrate_batchnorm``), since the ones tracked in training belong to the raw weights.

Length: ``minutes`` (wall clock, less a small reserve for saving) and/or ``kimg`` (thousands of
real images shown) and/or ``max_steps``; the first limit reached ends the session.

The run itself is gis's training skeleton (:mod:`gis.training.run`). Files written to the run
folder: ``checkpoint.safetensors`` (G, D, the average, both Adam states, RNG, step; every
``checkpoint_every_s`` and at the end), ``dvbpr_gan.safetensors`` + ``dvbpr_gan.json`` (G and
D in float16 + model card: copy both to ``plugins/gis_dvbpr_gan/weights/fashion-colors.*`` to
ship them), ``samples/`` (PNG grids: one row per category, fixed latents) and ``log.jsonl``.

Command line: ``gis train generator dvbpr-gan --data fashion-colors --out runs/dvbpr-gan
--minutes 6 --device cuda --batch-size 64`` (``--help`` lists every setting).
"""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from gis.errors import CheckpointError, GisUsageError
from gis.training import (
    Checkpoint,
    PeriodicSettings,
    Trainer,
    WeightAverage,
    check_ranges,
    dataset_record,
    machine_info,
    save_class_reals,
    setting,
    train,
    training_images,
    uint8_batch_to_float,
)

from .generator import DVBPRGAN, GIS_TRAIN_FORMAT, load_dvbpr_gan
from .model import (
    D_CHANNELS,
    G_CHANNELS,
    DVBPRDiscriminator,
    DVBPRGANConfig,
    DVBPRGenerator,
    lsgan_d_loss,
    lsgan_g_loss,
    one_hot,
    recalibrate_batchnorm,
)

CHECKPOINT = "checkpoint.safetensors"
EXPORT = "dvbpr_gan.safetensors"
STANDING_STATS = {"n_batches": 100, "batch_size": 64}


@dataclass
class DVBPRGANTrainConfig(PeriodicSettings):
    """Settings of a new dvbpr-gan run (a resumed run keeps its architecture, batch size and
    optimiser settings; a warm start takes the architecture of the file it starts from)."""

    kimg: float | None = setting(
        None, "Stop when the run has shown this many thousand real images.")
    batch_size: int = setting(16, "Images per step (16 as in the paper; 64 suits a GPU).")
    lr: float = setting(1e-4, "Adam learning rate of G and D.")
    betas: tuple[float, float] = setting((0.5, 0.99), "Adam betas of G and D.")
    ema_beta: float = setting(
        0.999, "Decay of G's weight average, exported and sampled (0: the raw G).")
    latent_dim: int = setting(256, "Latent size.")
    resolution: int | None = setting(None, "Image side (default: the dataset's).")
    d_batchnorm: bool = setting(
        True, "the BatchNorm layers in D (Kang et al. describe D without them).")
    base_channels: int = setting(256, "Channels of G's first projection.")
    g_channels: tuple[int, ...] | None = setting(
        None, f"Channels of G's six transposed convs (default {','.join(map(str, G_CHANNELS))}).")
    d_channels: tuple[int, ...] | None = setting(
        None, f"Channels of D's four convs (default {','.join(map(str, D_CHANNELS))}).")
    log_every: int = setting(50, "Steps per log.jsonl line (mean losses).")
    export_dtype: Literal["float16", "float32"] = setting(
        "float16", "Precision of the exported G and D.")

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.ema_beta) < 1.0:
            raise GisUsageError(f"ema_beta must lie in [0, 1) (0 turns averaging off), got "
                                f"{self.ema_beta}")
        if self.batch_size < 1:
            raise GisUsageError(f"dvbpr-gan batch_size must be >= 1, got {self.batch_size}")
        check_ranges(self, "dvbpr-gan", positive=(
            "kimg", "lr", "latent_dim", "resolution", "base_channels", "g_channels",
            "d_channels"), below_one=("betas",))


def train_step(G: DVBPRGenerator, D: DVBPRDiscriminator, opt_g: torch.optim.Optimizer,
               opt_d: torch.optim.Optimizer, real: torch.Tensor, y_real: torch.Tensor,
               z: torch.Tensor, y_fake: torch.Tensor):
    """One LSGAN iteration: a D step on (real, y_real) vs G(z, y_fake), then a G step on the
    same fake batch with D frozen. ``real`` (B, 3, r, r) in [-1, 1]; ``y_*`` one-hot (B, C).
    Returns detached (D loss, G loss, mean D(real), mean D(fake))."""
    fake = G(z, y_fake)
    d_real = D(real, y_real)
    d_fake = D(fake.detach(), y_fake)
    loss_d = lsgan_d_loss(d_real, d_fake)
    opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    opt_d.step()
    D.requires_grad_(False)
    loss_g = lsgan_g_loss(D(fake, y_fake))
    opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    opt_g.step()
    D.requires_grad_(True)
    return (loss_d.detach(), loss_g.detach(), d_real.detach().mean(),
            d_fake.detach().mean())


class DVBPRGANTrainer(Trainer):
    """Kang et al. 2017's class-conditional LSGAN (G and D) with a G weight average."""

    name = "dvbpr-gan"
    Config = DVBPRGANTrainConfig
    checkpoint_file = CHECKPOINT
    checkpoint_format = GIS_TRAIN_FORMAT
    state_key = "dvbpr_gan_state"
    warm_start = True

    def read_warm_start(self, path: Path) -> Checkpoint:
        """G and D of an exported file (or a run folder / training checkpoint), with the
        source's training commands and summary for the lineage."""
        init = load_dvbpr_gan(path)
        src_training = dict(init.card.get("training") or {})
        tensors = {**{f"g.{k}": v for k, v in init.net.state_dict().items()},
                   **{f"d.{k}": v for k, v in init.discriminator.state_dict().items()}}
        meta = {"config": init.config.to_dict(),
                "commands": list(src_training.get("commands") or []),
                "training": {k: src_training[k] for k in (
                    "steps", "kimg", "elapsed_s", "batch_size", "device") if k in src_training}}
        return Checkpoint("warm", path, tensors, meta)

    def setup(self, carried: Checkpoint | None) -> tuple[int, dict[str, Any]]:
        c, opts = self.config, self.run.options
        if opts.minutes is None and c.kimg is None and opts.max_steps is None:
            raise GisUsageError("dvbpr-gan training needs minutes, kimg or max_steps")
        self.categories = np.asarray(self.dataset.categories, dtype=np.int64)
        self.names = [str(n) for n in self.dataset.category_names]
        if len(self.categories) != len(self.dataset.images):
            raise GisUsageError("dataset categories and images differ in length")
        if carried is not None and carried.kind == "resume":
            meta = carried.meta
            cfg = DVBPRGANConfig.from_dict(meta["config"])
            hyper = dict(meta["hyper"])
            self.batch = int(meta["batch_size"])
            seed = int(meta["seed"])
            st = dict(meta["dvbpr_gan_state"])
            if cfg.num_classes != len(self.names):
                raise CheckpointError(f"{carried.path} was trained with {cfg.num_classes} "
                                      f"categories, this dataset has {len(self.names)}")
        else:
            if carried is not None:  # the architecture comes with the weights
                cfg = DVBPRGANConfig.from_dict(carried.meta["config"])
                if cfg.num_classes != len(self.names):
                    raise CheckpointError(f"{carried.path} has {cfg.num_classes} categories, "
                                          f"this dataset has {len(self.names)}")
            else:
                cfg = DVBPRGANConfig(num_classes=len(self.names), latent_dim=int(c.latent_dim),
                                     resolution=int(c.resolution or self.dataset.resolution),
                                     d_batchnorm=bool(c.d_batchnorm),
                                     base_channels=int(c.base_channels),
                                     g_channels=list(c.g_channels or G_CHANNELS),
                                     d_channels=list(c.d_channels or D_CHANNELS))
            hyper = {"lr": c.lr, "betas": [float(b) for b in c.betas],
                     "ema_beta": float(c.ema_beta)}
            self.batch = int(c.batch_size)
            seed = int(opts.seed)
            st = {"step": 0, "images": 0, "elapsed_s": 0.0, "sessions": 0}
            if carried is not None:  # the lineage: the source's commands and training summary
                st["init_from"] = str(carried.path)
                st["init_from_training"] = carried.meta["training"]
        self.cfg, self.hyper, self.st = cfg, hyper, st
        self.beta = float(hyper.get("ema_beta", 0.0))  # runs from before averaging: 0
        self.total_steps = None if c.kimg is None else math.ceil(c.kimg * 1000.0 / self.batch)
        return seed, st

    def build(self) -> None:
        dev, cfg, seed = self.run.device, self.cfg, self.run.seed
        self.rng = torch.Generator(device=dev).manual_seed(seed)
        self.G = DVBPRGenerator(cfg).to(dev)
        self.D = DVBPRDiscriminator(cfg).to(dev)
        betas = tuple(self.hyper["betas"])
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=self.hyper["lr"], betas=betas)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=self.hyper["lr"], betas=betas)
        self.ema = (WeightAverage(self.G, self.beta, ramp=not self.st.get("init_from"))
                    if self.beta > 0 else None)
        self.data = training_images(self.dataset.images, cfg.resolution, dev)
        self.labels = torch.from_numpy(self.categories).to(dev)
        # fixed sample latents: one row per category, 8 columns
        self.n_col = 8
        self.fixed_z = torch.randn(self.n_col, cfg.latent_dim, generator=torch.Generator(
        ).manual_seed(seed + 7919)).to(dev).repeat(cfg.num_classes, 1)
        self.fixed_y = one_hot(torch.arange(cfg.num_classes, device=dev).repeat_interleave(
            self.n_col), cfg.num_classes)
        save_class_reals(self.run, self.data, self.labels, cfg.num_classes, self.n_col)
        self.dataset_info = dataset_record(self.dataset, len(self.data), self.names)

    def modules(self) -> dict[str, torch.nn.Module]:
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
                "commands": self.run.commands, "last_losses": self.run.last_losses}

    # ----------------------------------------------------------------- loop
    def step(self) -> dict[str, torch.Tensor]:
        dev, batch, n, classes = self.run.device, self.batch, len(self.data), self.cfg.num_classes
        idx = torch.randint(n, (batch,), generator=self.rng, device=dev)
        real = uint8_batch_to_float(self.data[idx])
        y_real = one_hot(self.labels[idx], classes)
        fidx = torch.randint(n, (batch,), generator=self.rng, device=dev)
        y_fake = one_hot(self.labels[fidx], classes)
        z = torch.randn(batch, self.cfg.latent_dim, generator=self.rng, device=dev)
        loss_d, loss_g, d_real, d_fake = train_step(self.G, self.D, self.opt_g, self.opt_d,
                                                    real, y_real, z, y_fake)
        self.st["images"] += batch
        return {"loss_d": loss_d, "loss_g": loss_g, "d_real": d_real, "d_fake": d_fake}

    def log_fields(self) -> dict[str, Any]:
        return {"kimg": self.st["images"] / 1000.0}

    def finished(self) -> bool:
        return self.total_steps is not None and self.st["step"] >= self.total_steps

    def progress_position(self) -> tuple[float, float | None]:
        limits = [n for n in (self.total_steps, self.run.options.max_steps) if n is not None]
        return float(self.st["step"]), (min(limits) if limits else None)

    # ----------------------------------------------------------------- samples / export
    def sample(self, suffix: str) -> None:
        net = self.G if self.ema is None else self.ema.module
        net.eval()
        with torch.no_grad():
            imgs = net(self.fixed_z, self.fixed_y)
        self.G.train()
        self.run.save_samples(imgs, f"step{self.st['step']:07d}{suffix}", nrow=self.n_col)

    def export(self) -> Path:
        """G (its average when kept, with standing BatchNorm statistics) and D + card."""
        st, run, cfg = self.st, self.run, self.cfg
        card = {
            "name": "dvbpr-gan",
            "description": "Kang et al. 2017 conditional LSGAN (G and D), DVBPR design baseline",
            "dataset": self.dataset_info, "resolution": cfg.resolution,
            "latent_dim": cfg.latent_dim, "num_classes": cfg.num_classes,
            "config": cfg.to_dict(),
            "training": {
                "commands": run.commands, "seed": run.seed, "device": str(run.device),
                "machine": machine_info(run.device), "elapsed_s": round(st["elapsed_s"], 1),
                "steps": st["step"], "kimg": round(st["images"] / 1000.0, 2),
                "batch_size": self.batch, "lr": self.hyper["lr"],
                "betas": self.hyper["betas"], "loss": "LSGAN (a=0, b=c=1)",
                "final_losses": run.last_losses, "ema_beta": self.beta,
                "batchnorm_statistics": ("running averages from training" if self.ema is None
                                         else "standing statistics of the averaged G, "
                                         "{n_batches} batches of {batch_size}".format(
                                             **STANDING_STATS)),
                **({"init_from": st["init_from"],
                    "init_from_training": st.get("init_from_training", {})}
                   if st.get("init_from") else {}),
                "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            },
            "torch": torch.__version__,
            "fid": None,
        }
        model = DVBPRGAN(cfg, card=card, category_names=self.names)
        if self.ema is None:
            model.net.load_state_dict(self.G.state_dict())
        else:
            model.net.load_state_dict(self.ema.module.state_dict())
            recalibrate_batchnorm(model.net.to(run.device), self.labels, seed=run.seed,
                                  **STANDING_STATS).cpu()
        model.discriminator.load_state_dict(self.D.state_dict())
        dtype = {"float16": torch.float16, "float32": torch.float32}[self.config.export_dtype]
        return model.save(run.out / EXPORT, dtype=dtype, card=card)

    def summary(self) -> str:
        st = self.st
        return (f"dvbpr-gan: {st['step']} steps, {st['images'] / 1000:.1f} kimg, "
                f"{st['elapsed_s'] / 60:.1f} min of training; losses {self.run.last_losses}")


def train_dvbpr_gan(dataset, **options: Any) -> Path:
    """Train (or resume) the conditional LSGAN on ``dataset`` (images + categories); return
    the exported file.

    ``options``: the run options of :func:`gis.training.train` (``out``, ``seed``, ``device``,
    ``resume``, ``init_from``, ``minutes``, ``max_steps``, ``threads``, ``progress``) and the
    fields of :class:`DVBPRGANTrainConfig`. On resume the stored architecture, batch size and
    optimiser settings are kept; ``minutes``/``kimg``/``max_steps`` limit this session (kimg
    and max_steps count from the start of the run). ``init_from``: start a new run from the
    G and D weights of an exported file (e.g. the shipped
    ``weights/fashion-colors.safetensors``), with its architecture and fresh Adam states. A
    resumed run keeps the ``ema_beta`` it started with (runs from before averaging: 0).
    """
    return train(DVBPRGANTrainer, dataset, **options)
