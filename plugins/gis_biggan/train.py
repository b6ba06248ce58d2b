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

CHECKPOINT = "checkpoint.safetensors"
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


class BigGANTrainer(Trainer):
    """Brock et al. 2019's class-conditional BigGAN (G, D) with a G weight average."""

    name = "biggan"
    Config = BigGANTrainConfig
    checkpoint_file = CHECKPOINT
    checkpoint_format = GIS_TRAIN_FORMAT
    state_key = "biggan_state"
    warm_start = True

    def read_warm_start(self, path: Path) -> Checkpoint:
        """G and D of an exported file (or a run folder / training checkpoint)."""
        init = load_biggan(path)
        if init.discriminator is None or not isinstance(init.net, BigGANGenerator):
            raise GisUsageError(f"{path}: a warm start needs gis biggan weights with D")
        src = dict(init.card.get("training") or {})
        tensors = {**{f"g.{k}": v for k, v in init.net.state_dict().items()},
                   **{f"d.{k}": v for k, v in init.discriminator.state_dict().items()}}
        meta = {"config": init.net.cfg.to_dict(), "commands": list(src.get("commands") or []),
                "training": {k: src[k] for k in ("steps", "kimg", "elapsed_s", "batch_size",
                                                 "device") if k in src}}
        return Checkpoint("warm", path, tensors, meta)

    def setup(self, carried: Checkpoint | None) -> tuple[int, dict[str, Any]]:
        c, opts = self.config, self.run.options
        if opts.minutes is None and c.kimg is None and opts.max_steps is None:
            raise GisUsageError("biggan training needs minutes, kimg or max_steps")
        self.categories = np.asarray(self.dataset.categories, dtype=np.int64)
        self.names = [str(n) for n in self.dataset.category_names]
        if len(self.categories) != len(self.dataset.images):
            raise GisUsageError("dataset categories and images differ in length")
        if carried is not None and carried.kind == "resume":
            meta = carried.meta
            cfg = BigGANConfig.from_dict(meta["config"])
            hyper, self.batch, seed = dict(meta["hyper"]), int(meta["batch_size"]), \
                int(meta["seed"])
            st = dict(meta[self.state_key])
        else:
            if carried is not None:
                cfg = BigGANConfig.from_dict(carried.meta["config"])
            else:
                res = int(c.resolution or self.dataset.resolution)
                cfg = BigGANConfig(
                    num_classes=len(self.names), resolution=res, latent_dim=int(c.latent_dim),
                    shared_dim=int(c.shared_dim), attention=int(c.attention),
                    g_channels=list(c.g_channels or default_g_channels(res)),
                    d_channels=list(c.d_channels or default_d_channels(res)))
            hyper = {"lr_g": c.lr_g, "lr_d": c.lr_d, "betas": [float(b) for b in c.betas],
                     "ema_beta": float(c.ema_beta), "d_steps": int(c.d_steps),
                     "ortho_beta": float(c.ortho_beta)}
            self.batch, seed = int(c.batch_size), int(opts.seed)
            st = {"step": 0, "images": 0, "elapsed_s": 0.0, "sessions": 0}
            if carried is not None:
                st["init_from"] = str(carried.path)
                st["init_from_training"] = carried.meta["training"]
        if cfg.num_classes != len(self.names):
            raise CheckpointError(f"{carried.path if carried else 'the run'} has "
                                  f"{cfg.num_classes} categories, this dataset has "
                                  f"{len(self.names)}")
        self.cfg, self.hyper, self.st = cfg, hyper, st
        self.beta = float(hyper["ema_beta"])
        per_step = self.batch * int(hyper["d_steps"])
        self.total_steps = None if c.kimg is None else math.ceil(c.kimg * 1000.0 / per_step)
        return seed, st

    def build(self) -> None:
        dev, cfg, seed = self.run.device, self.cfg, self.run.seed
        self.rng = torch.Generator(device=dev).manual_seed(seed)
        self.G = BigGANGenerator(cfg).to(dev)
        self.D = BigGANDiscriminator(cfg).to(dev)
        betas = tuple(self.hyper["betas"])
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=self.hyper["lr_g"], betas=betas,
                                      eps=1e-6)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=self.hyper["lr_d"], betas=betas,
                                      eps=1e-6)
        self.ema = (WeightAverage(self.G, self.beta, ramp=not self.st.get("init_from"))
                    if self.beta > 0 else None)
        self.data = training_images(self.dataset.images, cfg.resolution, dev)
        self.labels = torch.from_numpy(self.categories).to(dev)
        self.n_col = 8
        self.fixed_z = torch.randn(self.n_col, cfg.latent_dim, generator=torch.Generator(
        ).manual_seed(seed + 7919)).to(dev).repeat(cfg.num_classes, 1)
        self.fixed_y = torch.arange(cfg.num_classes, device=dev).repeat_interleave(self.n_col)
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
                "category_names": self.names, "commands": self.run.commands,
                "last_losses": self.run.last_losses}

    # ----------------------------------------------------------------- loop
    def _fake_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        dev, b = self.run.device, self.batch
        y = self.labels[torch.randint(len(self.data), (b,), generator=self.rng, device=dev)]
        z = torch.randn(b, self.cfg.latent_dim, generator=self.rng, device=dev)
        return z, y

    def step(self) -> dict[str, torch.Tensor]:
        dev, b = self.run.device, self.batch
        out: dict[str, list[torch.Tensor]] = {"loss_d": [], "d_real": [], "d_fake": []}
        for _ in range(int(self.hyper["d_steps"])):
            idx = torch.randint(len(self.data), (b,), generator=self.rng, device=dev)
            real = uint8_batch_to_float(self.data[idx])
            z, y = self._fake_batch()
            for k, v in zip(out, d_step(self.G, self.D, self.opt_d, real, self.labels[idx],
                                        z, y), strict=True):
                out[k].append(v)
            self.st["images"] += b
        z, y = self._fake_batch()
        loss_g, reg = g_step(self.G, self.D, self.opt_g, z, y, float(self.hyper["ortho_beta"]))
        return {**{k: torch.stack(v).mean() for k, v in out.items()}, "loss_g": loss_g,
                "ortho": reg}

    def log_fields(self) -> dict[str, Any]:
        return {"kimg": self.st["images"] / 1000.0}

    closing = False

    def close(self) -> None:
        """The session ends: its final export gets the full standing statistics."""
        self.closing = True

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
            imgs = net(self.fixed_z, net.embed(self.fixed_y))
        self.G.train()
        self.run.save_samples(imgs, f"step{self.st['step']:07d}{suffix}", nrow=self.n_col)

    def export(self) -> Path:
        """The averaged G (with standing BatchNorm statistics) and D + card."""
        st, run, cfg, h = self.st, self.run, self.cfg, self.hyper
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
            "training": {
                "commands": run.commands, "seed": run.seed, "device": str(run.device),
                "machine": machine_info(run.device), "elapsed_s": round(st["elapsed_s"], 1),
                "steps": st["step"], "kimg": round(st["images"] / 1000.0, 2),
                "batch_size": self.batch, **h, "loss": "hinge",
                "final_losses": run.last_losses,
                "batchnorm_statistics": ("running averages from training" if self.ema is None
                                         else "standing statistics of the averaged G, "
                                         f"{stats['n_batches']} batches of 64"),
                **({"init_from": st["init_from"],
                    "init_from_training": st.get("init_from_training", {})}
                   if st.get("init_from") else {}),
                "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            },
            "torch": torch.__version__,
            "fid": None,
        }
        net = BigGANGenerator(cfg)
        if self.ema is None:
            net.load_state_dict(self.G.state_dict())
        else:
            net.load_state_dict(self.ema.module.state_dict())
            standing_statistics(net.to(run.device), self.labels, seed=run.seed, **stats)
        disc = BigGANDiscriminator(cfg)
        disc.load_state_dict(self.D.state_dict())
        model = BigGAN(net.cpu().eval(), z_dim=cfg.latent_dim, resolution=cfg.resolution,
                       num_classes=cfg.num_classes, card=card, category_names=self.names,
                       discriminator=disc.eval())
        dtype = {"float16": torch.float16, "float32": torch.float32}[self.config.export_dtype]
        return model.save(run.out / EXPORT, dtype=dtype, card=card)

    def summary(self) -> str:
        st = self.st
        return (f"biggan: {st['step']} G steps, {st['images'] / 1000:.1f} kimg, "
                f"{st['elapsed_s'] / 60:.1f} min of training; losses {self.run.last_losses}")


def train_biggan(dataset, **options: Any) -> Path:
    """Train (or resume) BigGAN on ``dataset`` (images + categories); return the exported file.

    ``options``: the run options of :func:`gis.training.train` (``out``, ``seed``, ``device``,
    ``resume``, ``init_from``, ``minutes``, ``max_steps``, ``threads``, ``progress``) and the
    fields of :class:`BigGANTrainConfig`."""
    return train(BigGANTrainer, dataset, **options)
