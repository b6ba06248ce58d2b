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

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from gis.errors import GisUsageError
from gis.training import (
    ConditionalGANTrainer,
    PeriodicSettings,
    check_ranges,
    setting,
    train,
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


class DVBPRGANTrainer(ConditionalGANTrainer):
    """Kang et al. 2017's class-conditional LSGAN (G and D) with a G weight average, on gis's
    conditional-GAN run (:class:`gis.training.conditional.ConditionalGANTrainer`)."""

    name = "dvbpr-gan"
    Config = DVBPRGANTrainConfig
    checkpoint_format = GIS_TRAIN_FORMAT
    state_key = "dvbpr_gan_state"

    def config_from_dict(self, d: dict[str, Any]) -> DVBPRGANConfig:
        return DVBPRGANConfig.from_dict(d)

    def new_model_config(self, num_classes: int, resolution: int) -> DVBPRGANConfig:
        c = self.config
        return DVBPRGANConfig(num_classes=num_classes, latent_dim=int(c.latent_dim),
                              resolution=resolution, d_batchnorm=bool(c.d_batchnorm),
                              base_channels=int(c.base_channels),
                              g_channels=list(c.g_channels or G_CHANNELS),
                              d_channels=list(c.d_channels or D_CHANNELS))

    def new_hyper(self) -> dict[str, Any]:
        c = self.config
        return {"lr": c.lr, "betas": [float(b) for b in c.betas], "ema_beta": float(c.ema_beta)}

    def networks(self) -> tuple[DVBPRGenerator, DVBPRDiscriminator]:
        return DVBPRGenerator(self.cfg), DVBPRDiscriminator(self.cfg)

    def make_optimizers(self):
        betas = tuple(self.hyper["betas"])
        return (torch.optim.Adam(self.G.parameters(), lr=self.hyper["lr"], betas=betas),
                torch.optim.Adam(self.D.parameters(), lr=self.hyper["lr"], betas=betas))

    def load_exported(self, path: Path):
        init = load_dvbpr_gan(path)
        return init.net, init.discriminator, init.config, init.card

    def synthesize(self, net, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return net(z, one_hot(labels, self.cfg.num_classes))

    # ----------------------------------------------------------------- loop
    def step(self) -> dict[str, torch.Tensor]:
        classes = self.cfg.num_classes
        idx, y_real = self.real_batch()
        real = uint8_batch_to_float(self.data[idx])
        _, y_fake = self.real_batch()  # categories at their data frequency
        z = torch.randn(self.batch, self.cfg.latent_dim, generator=self.rng,
                        device=self.run.device)
        loss_d, loss_g, d_real, d_fake = train_step(
            self.G, self.D, self.opt_g, self.opt_d, real, one_hot(y_real, classes), z,
            one_hot(y_fake, classes))
        self.st["images"] += self.batch
        return {"loss_d": loss_d, "loss_g": loss_g, "d_real": d_real, "d_fake": d_fake}

    # ----------------------------------------------------------------- export
    def export(self) -> Path:
        """G (its average when kept, with standing BatchNorm statistics) and D + card."""
        run, cfg = self.run, self.cfg
        card = {
            "name": "dvbpr-gan",
            "description": "Kang et al. 2017 conditional LSGAN (G and D), DVBPR design baseline",
            "dataset": self.dataset_info, "resolution": cfg.resolution,
            "latent_dim": cfg.latent_dim, "num_classes": cfg.num_classes,
            "config": cfg.to_dict(),
            "training": self.training_card(
                STANDING_STATS["n_batches"], lr=self.hyper["lr"], betas=self.hyper["betas"],
                loss="LSGAN (a=0, b=c=1)", ema_beta=self.beta),
            "torch": torch.__version__,
            "fid": None,
        }
        model = DVBPRGAN(cfg, card=card, category_names=self.names)
        model.net.load_state_dict(self.averaged_g_state())
        if self.ema is not None:
            recalibrate_batchnorm(model.net.to(run.device), self.labels, seed=run.seed,
                                  **STANDING_STATS).cpu()
        model.discriminator.load_state_dict(self.D.state_dict())
        return model.save(run.out / EXPORT, dtype=self.export_dtype(), card=card)


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
