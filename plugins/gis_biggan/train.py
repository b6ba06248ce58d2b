"""Train gis's BigGAN (Brock et al. 2019) on a gis dataset (resumable, time-budgeted).

As in the paper: hinge loss; ``d_steps`` (2) D steps per G step; Adam with betas (0, 0.999),
G lr 1e-4 and D lr 4e-4 (two time-scale rule); orthogonal regularisation of G's weights
(BigGAN's off-diagonal variant, ``ortho_beta`` 1e-4); spectral norm in G and D; an
exponential moving average of G's weights (``ema_beta``, ramped up as min(beta, (1 + t) /
(10 + t)) in a fresh run), which is what the exported file and the sample grids hold, with
"standing statistics" for its BatchNorm layers (:func:`gis_biggan.model.standing_statistics`)
computed before every export (over ``standing_batches`` batches of 64 at the end of a
session, over at most 10 at the periodic exports, which would otherwise cost as much as
several training steps on a CPU). z ~ N(0, I); the fake batch's classes are those of another
random draw of real images, so classes appear at their data frequency. The paper's batch of
2048 is far beyond a CPU: ``batch_size`` defaults to 32 here (128-256 on a GPU).

Length: ``minutes`` (wall clock) and/or ``kimg`` (thousands of real images shown to D) and/or
``max_steps`` (G steps); the first limit reached ends the session.

Files in the run folder (gis's training skeleton, :mod:`gis.training.run`):
``checkpoint.safetensors`` (G, D, the average, both Adam states, RNG, step; every
``checkpoint_every_s`` and at the end), ``biggan.safetensors`` + ``biggan.json`` (the averaged
G and D in float16 + model card: copy both to ``plugins/gis_biggan/weights/fashion-colors.*``
to ship them), ``samples/`` (one row per category, fixed latents) and ``log.jsonl``.

Command line: ``gis train generator biggan --data fashion-colors --out runs/biggan
--minutes M`` (``--help`` lists every setting; ``--resume`` continues a run).
"""

from __future__ import annotations

import math
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

from .generator import GIS_TRAIN_FORMAT, BigGAN, load_biggan
from .model import (
    D_CHANNELS,
    G_CHANNELS,
    BigGANConfig,
    BigGANDiscriminator,
    BigGANGenerator,
    hinge_d_loss,
    hinge_g_loss,
    ortho_weights,
    orthogonal_regularisation,
    standing_statistics,
)

EXPORT = "biggan.safetensors"
#: standing-statistics batches of a periodic export (the final one uses ``standing_batches``)
PERIODIC_STANDING_BATCHES = 10


@dataclass
class BigGANTrainConfig(PeriodicSettings):
    """Settings of a new biggan run (a resumed run keeps its architecture, batch size and
    optimiser settings; a warm start takes the architecture of the file it starts from)."""

    kimg: float | None = setting(
        None, "Stop when D has seen this many thousand real images.")
    batch_size: int = setting(32, "Images per D and G step (the paper: 2048; 128-256 on a GPU).")
    d_steps: int = setting(2, "D steps per G step (2 as in the paper).")
    lr_g: float = setting(1e-4, "Adam learning rate of G.")
    lr_d: float = setting(4e-4, "Adam learning rate of D.")
    betas: tuple[float, float] = setting((0.0, 0.999), "Adam betas of G and D.")
    ortho_beta: float = setting(1e-4, "Weight of G's orthogonal regularisation (0: off).")
    ema_beta: float = setting(
        0.999, "Decay of G's weight average, exported and sampled (0: the raw G).")
    standing_batches: int = setting(
        100, "Batches of 64 for the standing BatchNorm statistics of the session's final "
             f"export (periodic exports use at most {PERIODIC_STANDING_BATCHES}).")
    latent_dim: int = setting(128, "z size (split into one chunk per G layer).")
    shared_dim: int = setting(64, "Size of the shared class embedding.")
    resolution: int | None = setting(None, "Image side (default: the dataset's).")
    g_channels: tuple[int, ...] | None = setting(
        None, f"G widths: the 4x4 map, then each up-block (default "
              f"{','.join(map(str, G_CHANNELS))}).")
    d_channels: tuple[int, ...] | None = setting(
        None, f"D widths, one per block (default {','.join(map(str, D_CHANNELS))}).")
    attention: int = setting(16, "Side at which G and D use self-attention (0: none).")
    log_every: int = setting(20, "Steps per log.jsonl line (mean losses).")
    export_dtype: Literal["float16", "float32"] = setting(
        "float16", "Precision of the exported G and D.")

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.ema_beta) < 1.0:
            raise GisUsageError(f"biggan ema_beta must lie in [0, 1) (0 turns averaging off), "
                                f"got {self.ema_beta}")
        for name in ("batch_size", "d_steps", "standing_batches"):
            if getattr(self, name) < 1:
                raise GisUsageError(f"biggan {name} must be >= 1, got {getattr(self, name)}")
        if self.ortho_beta < 0 or self.attention < 0:
            raise GisUsageError("biggan ortho_beta and attention must be >= 0")
        check_ranges(self, "biggan", positive=(
            "kimg", "lr_g", "lr_d", "latent_dim", "shared_dim", "resolution", "g_channels",
            "d_channels"), below_one=("betas",))


def default_g_channels(resolution: int) -> list[int]:
    """``G_CHANNELS`` for 32 px; one more block (the last width) per further doubling."""
    n = int(round(math.log2(resolution / 4))) + 1
    return (G_CHANNELS + [G_CHANNELS[-1]] * n)[:n]


def default_d_channels(resolution: int) -> list[int]:
    n = int(round(math.log2(resolution / 4))) + 1
    return ([D_CHANNELS[0]] * max(0, n - len(D_CHANNELS)) + D_CHANNELS)[-n:]


def d_step(G: BigGANGenerator, D: BigGANDiscriminator, opt_d: torch.optim.Optimizer,
           real: torch.Tensor, y_real: torch.Tensor, z: torch.Tensor, y_fake: torch.Tensor):
    """One hinge D step on (real, y_real) vs G(z, y_fake); returns detached (loss, mean D(real),
    mean D(fake))."""
    with torch.no_grad():
        fake = G(z, G.embed(y_fake))
    d_real, d_fake = D(real, y_real), D(fake, y_fake)
    loss = hinge_d_loss(d_real, d_fake)
    opt_d.zero_grad(set_to_none=True)
    loss.backward()
    opt_d.step()
    return loss.detach(), d_real.detach().mean(), d_fake.detach().mean()


def g_step(G: BigGANGenerator, D: BigGANDiscriminator, opt_g: torch.optim.Optimizer,
           z: torch.Tensor, y_fake: torch.Tensor, ortho_beta: float):
    """One G step: hinge loss through a frozen D plus the orthogonal regularisation; returns
    detached (hinge loss, regularisation)."""
    D.requires_grad_(False)
    loss = hinge_g_loss(D(G(z, G.embed(y_fake)), y_fake))
    reg = (orthogonal_regularisation(ortho_weights(G), ortho_beta) if ortho_beta > 0
           else torch.zeros((), device=z.device))
    opt_g.zero_grad(set_to_none=True)
    (loss + reg).backward()
    opt_g.step()
    D.requires_grad_(True)
    return loss.detach(), reg.detach()


class BigGANTrainer(ConditionalGANTrainer):
    """Brock et al. 2019's class-conditional BigGAN (G, D) with a G weight average, on gis's
    conditional-GAN run (:class:`gis.training.conditional.ConditionalGANTrainer`)."""

    name = "biggan"
    Config = BigGANTrainConfig
    checkpoint_format = GIS_TRAIN_FORMAT
    state_key = "biggan_state"
    step_noun = "G steps"

    def config_from_dict(self, d: dict[str, Any]) -> BigGANConfig:
        return BigGANConfig.from_dict(d)

    def new_model_config(self, num_classes: int, resolution: int) -> BigGANConfig:
        c = self.config
        return BigGANConfig(
            num_classes=num_classes, resolution=resolution, latent_dim=int(c.latent_dim),
            shared_dim=int(c.shared_dim), attention=int(c.attention),
            g_channels=list(c.g_channels or default_g_channels(resolution)),
            d_channels=list(c.d_channels or default_d_channels(resolution)))

    def new_hyper(self) -> dict[str, Any]:
        c = self.config
        return {"lr_g": c.lr_g, "lr_d": c.lr_d, "betas": [float(b) for b in c.betas],
                "ema_beta": float(c.ema_beta), "d_steps": int(c.d_steps),
                "ortho_beta": float(c.ortho_beta)}

    def images_per_step(self) -> int:
        return self.batch * int(self.hyper["d_steps"])

    def networks(self) -> tuple[BigGANGenerator, BigGANDiscriminator]:
        return BigGANGenerator(self.cfg), BigGANDiscriminator(self.cfg)

    def make_optimizers(self):
        betas = tuple(self.hyper["betas"])
        return (torch.optim.Adam(self.G.parameters(), lr=self.hyper["lr_g"], betas=betas,
                                 eps=1e-6),
                torch.optim.Adam(self.D.parameters(), lr=self.hyper["lr_d"], betas=betas,
                                 eps=1e-6))

    def load_exported(self, path: Path):
        init = load_biggan(path)
        if init.discriminator is None or not isinstance(init.net, BigGANGenerator):
            raise GisUsageError(f"{path}: a warm start needs gis biggan weights with D")
        return init.net, init.discriminator, init.net.cfg, init.card

    def synthesize(self, net, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return net(z, net.embed(labels))

    # ----------------------------------------------------------------- loop
    def _fake_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        _, y = self.real_batch()  # categories at their data frequency
        z = torch.randn(self.batch, self.cfg.latent_dim, generator=self.rng,
                        device=self.run.device)
        return z, y

    def step(self) -> dict[str, torch.Tensor]:
        out: dict[str, list[torch.Tensor]] = {"loss_d": [], "d_real": [], "d_fake": []}
        for _ in range(int(self.hyper["d_steps"])):
            idx, y_real = self.real_batch()
            real = uint8_batch_to_float(self.data[idx])
            z, y = self._fake_batch()
            for k, v in zip(out, d_step(self.G, self.D, self.opt_d, real, y_real, z, y),
                            strict=True):
                out[k].append(v)
            self.st["images"] += self.batch
        z, y = self._fake_batch()
        loss_g, reg = g_step(self.G, self.D, self.opt_g, z, y, float(self.hyper["ortho_beta"]))
        return {**{k: torch.stack(v).mean() for k, v in out.items()}, "loss_g": loss_g,
                "ortho": reg}

    closing = False

    def close(self) -> None:
        """The session ends: its final export gets the full standing statistics."""
        self.closing = True

    # ----------------------------------------------------------------- export
    def export(self) -> Path:
        """The averaged G (with standing BatchNorm statistics) and D + card."""
        run, cfg = self.run, self.cfg
        n = int(self.config.standing_batches)
        stats = {"n_batches": n if self.closing else min(n, PERIODIC_STANDING_BATCHES),
                 "batch_size": 64}
        card = {
            "name": "biggan",
            "description": "BigGAN (Brock et al. 2019), class-conditional, 32x32 (G and D)",
            "paper": "Brock, Donahue & Simonyan, Large Scale GAN Training for High Fidelity "
                     "Natural Image Synthesis, ICLR 2019",
            "dataset": self.dataset_info, "categories": self.names,
            "resolution": cfg.resolution, "latent_dim": cfg.latent_dim,
            "num_classes": cfg.num_classes, "config": cfg.to_dict(),
            "training": self.training_card(stats["n_batches"], **self.hyper, loss="hinge"),
            "torch": torch.__version__,
            "fid": None,
        }
        net = BigGANGenerator(cfg)
        net.load_state_dict(self.averaged_g_state())
        if self.ema is not None:
            standing_statistics(net.to(run.device), self.labels, seed=run.seed, **stats)
        disc = BigGANDiscriminator(cfg)
        disc.load_state_dict(self.D.state_dict())
        model = BigGAN(net.cpu().eval(), z_dim=cfg.latent_dim, resolution=cfg.resolution,
                       num_classes=cfg.num_classes, card=card, category_names=self.names,
                       discriminator=disc.eval())
        return model.save(run.out / EXPORT, dtype=self.export_dtype(), card=card)


def train_biggan(dataset, **options: Any) -> Path:
    """Train (or resume) BigGAN on ``dataset`` (images + categories); return the exported file.

    ``options``: the run options of :func:`gis.training.train` (``out``, ``seed``, ``device``,
    ``resume``, ``init_from``, ``minutes``, ``max_steps``, ``threads``, ``progress``) and the
    fields of :class:`BigGANTrainConfig`."""
    return train(BigGANTrainer, dataset, **options)
