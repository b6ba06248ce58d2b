"""Train a StyleGAN2 on a gis dataset (Karras et al. 2020, config "F" at small scale),
resumable, in gis's training skeleton (:mod:`gis.training.run`).

Each step: one D step (non-saturating logistic loss; every ``r1_every`` steps the lazy R1
penalty ``r1_gamma / 2 * E ||grad_x D(x)||^2`` on reals, multiplied by the interval), then one
G step (non-saturating loss, style mixing with probability ``mixing_prob``: two z, a random
crossover layer; every ``pl_every`` steps the lazy path-length penalty
``pl_weight * E (||J_w^T y|| - a)^2``, y ~ N(0, I) / R, a the running mean (decay 0.01) of the
lengths, on ``batch / pl_batch_shrink`` samples, times the interval). Adam (lr ``lr``, betas
(0, 0.99)) with the lazy-regularisation corrections lr * c, beta ** c, c = k / (k + 1). The
EMA generator (half-life ``ema_kimg`` thousand images, ramped up over the first
``ema_rampup`` of the images shown) is the one exported. Noise inputs are random in training
(as published); the exported model uses its fixed noise buffers (deterministic synthesis).

Files in the run folder: ``checkpoint.safetensors`` (G, D, EMA, both Adams, RNG, loop state
with the path-length mean; every ``checkpoint_every_s``), ``stylegan2.safetensors`` +
``stylegan2.json`` (EMA generator, float16 by default, with its whitening statistics; what
``load_stylegan2`` reads: copy both to ``plugins/gis_stylegan2/weights/fashion-colors.*``),
``samples/`` and ``log.jsonl``.

Command line: ``gis train generator stylegan2 --data fashion-colors --out runs/stylegan2
--minutes 60 [--device cuda]`` (``--help`` lists every setting of
:class:`StyleGAN2TrainConfig`); the same command again resumes.
"""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F

from gis.errors import GisUsageError
from gis.training import (
    PeriodicSettings,
    Trainer,
    WeightAverage,
    check_ranges,
    machine_info,
    setting,
    train,
    training_images,
    uint8_batch_to_float,
)

from .model import StyleGAN2Config, StyleGAN2Discriminator, StyleGAN2Generator

CHECKPOINT = "checkpoint.safetensors"
EXPORT = "stylegan2.safetensors"
GIS_TRAIN_FORMAT = "gis-stylegan2-train"

HYPER_KEYS = ("lr", "r1_gamma", "r1_every", "pl_weight", "pl_every", "pl_batch_shrink",
              "mixing_prob", "ema_kimg", "ema_rampup", "mirror")


@dataclass
class StyleGAN2TrainConfig(PeriodicSettings):
    """Settings of a new stylegan2 run (a resumed run keeps its own)."""

    batch_size: int = setting(32, "Real (and generated) images per step.")
    total_kimg: float | None = setting(
        None, "Thousands of real images to show in all (None: train until --minutes).")
    lr: float = setting(0.002, "Adam learning rate of G and D (before the lazy-reg factor).")
    r1_gamma: float = setting(0.01, "R1 weight gamma (0.0002 R^2 / batch rule of thumb).")
    r1_every: int = setting(16, "D steps between lazy R1 penalties.")
    pl_weight: float = setting(2.0, "Path-length penalty weight (0: off).")
    pl_every: int = setting(4, "G steps between lazy path-length penalties.")
    pl_batch_shrink: int = setting(2, "Path-length batch = batch_size / this.")
    mixing_prob: float = setting(0.9, "Probability of style mixing in a G batch.")
    ema_kimg: float = setting(10.0, "EMA half-life in thousands of images.")
    ema_rampup: float = setting(0.05, "EMA half-life ramp-up (fraction of images shown).")
    mirror: bool = setting(False, "Random horizontal flips of the real images.")
    resolution: int | None = setting(None, "Resolution (default: the dataset's).")
    w_dim: int = setting(512, "Size of z and w.")
    n_mlp: int = setting(8, "Mapping network layers.")
    channels: tuple[int, ...] = setting((128, 128, 128, 64),
                                        "Generator channels at 4, 8, ..., R px.")
    d_channels: tuple[int, ...] | None = setting(None, "Discriminator channels (default: G's).")
    export_dtype: Literal["float16", "float32"] = setting("float16",
                                                          "Precision of the export.")
    checkpoint_every_s: float = setting(300.0, "Seconds between checkpoints (+ export).")

    def __post_init__(self) -> None:
        if self.batch_size < 2:
            raise GisUsageError(f"stylegan2 batch_size must be >= 2, got {self.batch_size}")
        check_ranges(self, "stylegan2", positive=(
            "lr", "r1_every", "pl_every", "pl_batch_shrink", "ema_kimg", "resolution", "w_dim",
            "n_mlp", "channels", "d_channels", "total_kimg"),
            non_negative=("r1_gamma", "pl_weight", "ema_rampup"), fraction=("mixing_prob",))


class HalfLifeAverage(WeightAverage):
    """StyleGAN2's G EMA: beta = 0.5 ** (batch / (1000 ema_kimg)), the half-life ramped up to
    ``ema_rampup`` x the images shown so far."""

    def __init__(self, source, *, batch: int, ema_kimg: float, ema_rampup: float):
        super().__init__(source, 0.0)
        self.batch, self.ema_kimg, self.ema_rampup = batch, ema_kimg, ema_rampup

    def beta_at(self, step: int) -> float:
        nimg = self.ema_kimg * 1000.0
        if self.ema_rampup > 0:
            nimg = min(nimg, (step + 1) * self.batch * self.ema_rampup)
        return 0.5 ** (self.batch / max(nimg, 1e-8))


def mixed_ws(G: StyleGAN2Generator, batch: int, prob: float, rng: torch.Generator | None,
             device) -> torch.Tensor:
    """ws (B, num_ws, w_dim) of fresh z; with probability ``prob`` the layers from a random
    crossover in [1, num_ws) on take the w of a second z (style mixing regularisation)."""
    z = torch.randn(batch, G.cfg.w_dim, generator=rng, device=device)
    ws = G.broadcast(G.mapping(z))
    if prob > 0 and float(torch.rand((), generator=rng, device=device)) < prob:
        cut = int(torch.randint(1, G.num_ws, (), generator=rng, device=device))
        z2 = torch.randn(batch, G.cfg.w_dim, generator=rng, device=device)
        ws2 = G.broadcast(G.mapping(z2))
        ws = torch.cat([ws[:, :cut], ws2[:, cut:]], 1)
    return ws


def r1_penalty(D, real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(E_x ||grad_x D(x)||^2 over the batch, D(real))."""
    real = real.detach().requires_grad_(True)
    out = D(real)
    (grad,) = torch.autograd.grad(out.sum(), real, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean(), out


def path_length(G: StyleGAN2Generator, ws: torch.Tensor, rng: torch.Generator | None,
                noise_mode: str = "random") -> torch.Tensor:
    """Per-sample path lengths ||J_w^T y||_2 (B,), y ~ N(0, I) / R (averaged over the ws)."""
    ws = ws.detach().requires_grad_(True) if not ws.requires_grad else ws
    img = G.synthesis(ws, noise_mode=noise_mode, rng=rng)
    r = img.shape[-1]
    y = torch.randn(img.shape, generator=rng, device=img.device) / math.sqrt(r * r)
    (grad,) = torch.autograd.grad((img * y).sum(), ws, create_graph=True)
    return grad.pow(2).sum(2).mean(1).sqrt()


def train_step(G, D, opt_g, opt_d, real: torch.Tensor, st: dict[str, Any], hyper: dict,
               rng: torch.Generator | None) -> dict[str, torch.Tensor]:
    """One D step (+ lazy R1 every ``r1_every``) and one G step (+ lazy path length every
    ``pl_every``); ``st["step"]`` picks the lazy steps, ``st["pl_mean"]`` is updated."""
    b, dev, step = real.shape[0], real.device, int(st["step"])
    out: dict[str, torch.Tensor] = {}
    # ---- D: softplus(D(G(z))) + softplus(-D(x))
    with torch.no_grad():
        fake = G.synthesis(mixed_ws(G, b, hyper["mixing_prob"], rng, dev), noise_mode="random",
                           rng=rng)
    loss_d = F.softplus(D(fake)).mean() + F.softplus(-D(real)).mean()
    opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    opt_d.step()
    out["loss_d"] = loss_d.detach()
    k = int(hyper["r1_every"])
    if hyper["r1_gamma"] > 0 and step % k == 0:
        r1, d_real = r1_penalty(D, real)
        opt_d.zero_grad(set_to_none=True)
        (hyper["r1_gamma"] / 2 * r1 * k + 0 * d_real[0]).backward()
        opt_d.step()
        st["r1"] = float(r1.detach())
    # ---- G: softplus(-D(G(z)))
    D.requires_grad_(False)
    ws = mixed_ws(G, b, hyper["mixing_prob"], rng, dev)
    loss_g = F.softplus(-D(G.synthesis(ws, noise_mode="random", rng=rng))).mean()
    opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    opt_g.step()
    out["loss_g"] = loss_g.detach()
    k = int(hyper["pl_every"])
    if hyper["pl_weight"] > 0 and step % k == 0:
        pb = max(1, b // int(hyper["pl_batch_shrink"]))
        lengths = path_length(G, mixed_ws(G, pb, hyper["mixing_prob"], rng, dev), rng)
        mean = float(st.get("pl_mean", 0.0))
        new_mean = mean + 0.01 * (float(lengths.detach().mean()) - mean)
        pl = (lengths - new_mean).pow(2).mean()
        opt_g.zero_grad(set_to_none=True)
        (hyper["pl_weight"] * pl * k).backward()
        opt_g.step()
        st["pl_mean"], st["pl"] = new_mean, float(pl.detach())
    D.requires_grad_(True)
    return out


class StyleGAN2Trainer(Trainer):
    """StyleGAN2 (non-saturating loss, lazy R1, path length, style mixing, EMA of G)."""

    name = "stylegan2"
    Config = StyleGAN2TrainConfig
    checkpoint_file = CHECKPOINT
    checkpoint_format = GIS_TRAIN_FORMAT
    state_key = "stylegan2_state"
    progress_unit = "kimg"

    def setup(self, carried) -> tuple[int, dict[str, Any]]:
        c = self.config
        if carried is not None:
            meta = carried.meta
            self.cfg = StyleGAN2Config.from_dict(meta["config"])
            self.hyper = dict(meta["hyper"])
            self.batch = int(meta["batch_size"])
            self.total_kimg = meta.get("total_kimg")
            return int(meta["seed"]), dict(meta[self.state_key])
        res = int(c.resolution or self.dataset.resolution)
        self.cfg = StyleGAN2Config(resolution=res, w_dim=int(c.w_dim), n_mlp=int(c.n_mlp),
                                   channels=list(c.channels),
                                   d_channels=list(c.d_channels) if c.d_channels else None)
        self.hyper = {k: getattr(c, k) for k in HYPER_KEYS}
        self.batch = int(c.batch_size)
        self.total_kimg = c.total_kimg
        return int(self.run.options.seed), {"images": 0, "pl_mean": 0.0}

    def build(self) -> None:
        dev, cfg, h = self.run.device, self.cfg, self.hyper
        self.rng = torch.Generator(device=dev).manual_seed(self.run.seed)
        self.G = StyleGAN2Generator(cfg).to(dev)
        self.D = StyleGAN2Discriminator(cfg).to(dev)
        self.ema = HalfLifeAverage(self.G, batch=self.batch, ema_kimg=h["ema_kimg"],
                                   ema_rampup=h["ema_rampup"])
        cg = h["pl_every"] / (h["pl_every"] + 1) if h["pl_weight"] > 0 else 1.0
        cd = h["r1_every"] / (h["r1_every"] + 1) if h["r1_gamma"] > 0 else 1.0
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=h["lr"] * cg,
                                      betas=(0.0, 0.99 ** cg))
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=h["lr"] * cd,
                                      betas=(0.0, 0.99 ** cd))
        self.data = training_images(self.dataset.images, cfg.resolution, dev)
        if len(self.data) < 2:
            raise GisUsageError("stylegan2 training needs at least 2 images")
        self.fixed_z = torch.randn(64, cfg.w_dim, generator=torch.Generator().manual_seed(
            self.run.seed + 7919)).to(dev)
        if not (self.run.out / "samples" / "reals.png").exists():
            idx = torch.randperm(len(self.data),
                                 generator=torch.Generator().manual_seed(self.run.seed))[:64]
            self.run.save_samples(uint8_batch_to_float(self.data[idx.to(dev)]), "reals")
        self.dataset_info = {"name": (getattr(self.dataset, "meta", {}) or {}).get("name"),
                             "num_images": len(self.data),
                             "resolution": int(self.dataset.resolution)}

    def modules(self):
        return {"g.": self.G, "d.": self.D}

    def averages(self):
        return {"ema.": self.ema}

    def optimizers(self):
        return {"opt_g.": self.opt_g, "opt_d.": self.opt_d}

    def generators(self):
        return {"train": self.rng}

    def checkpoint_meta(self) -> dict[str, Any]:
        return {"config": self.cfg.to_dict(), "hyper": self.hyper, "batch_size": self.batch,
                "total_kimg": self.total_kimg, "seed": self.run.seed,
                "dataset": self.dataset_info, "commands": self.run.commands,
                "last_losses": self.run.last_losses}

    def step(self) -> dict[str, torch.Tensor]:
        dev, b = self.run.device, self.batch
        idx = torch.randint(len(self.data), (b,), generator=self.rng, device=dev)
        real = uint8_batch_to_float(self.data[idx])
        if self.hyper["mirror"]:
            flip = torch.rand(b, generator=self.rng, device=dev) < 0.5
            real = torch.where(flip[:, None, None, None], real.flip(-1), real)
        st = {**self.run.state}
        losses = train_step(self.G, self.D, self.opt_g, self.opt_d, real, st, self.hyper,
                            self.rng)
        for key in ("pl_mean", "pl", "r1"):
            if key in st:
                self.run.state[key] = st[key]
        self.run.state["images"] += b
        losses["pl_mean"] = torch.tensor(float(self.run.state["pl_mean"]), device=dev)
        return losses

    def finished(self) -> bool:
        return (self.total_kimg is not None
                and self.run.state["images"] >= 1000.0 * float(self.total_kimg))

    def progress_position(self) -> tuple[float, float | None]:
        return self.run.state["images"] / 1000.0, self.total_kimg

    def log_fields(self) -> dict[str, Any]:
        st = self.run.state
        return {"kimg": round(st["images"] / 1000.0, 3), "r1": st.get("r1"), "pl": st.get("pl")}

    def sample(self, suffix: str) -> None:
        with torch.no_grad():
            imgs = self.ema.module(self.fixed_z)
        self.run.save_samples(imgs.clamp(-1, 1), f"step{self.run.state['step']:07d}{suffix}")

    def export(self) -> Path:
        """The EMA generator (with its whitening statistics) + card."""
        from .generator import StyleGAN2

        run, st = self.run, self.run.state
        card = {
            "name": "stylegan2",
            "description": "StyleGAN2 generator (EMA weights, fixed noise buffers)",
            "dataset": self.dataset_info, "resolution": self.cfg.resolution,
            "latent_dim": self.cfg.w_dim, "config": self.cfg.to_dict(),
            "latent_spaces": list(StyleGAN2.latent_spaces),
            "training": {
                "commands": run.commands, "seed": run.seed, "device": str(run.device),
                "machine": machine_info(run.device), "elapsed_s": round(st["elapsed_s"], 1),
                "steps": st["step"], "kimg": round(st["images"] / 1000.0, 2),
                "batch_size": self.batch, **self.hyper, "total_kimg": self.total_kimg,
                "pl_mean": st.get("pl_mean"), "final_losses": run.last_losses,
                "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            },
            "torch": torch.__version__,
            "fid": None,
        }
        model = StyleGAN2(self.cfg, card=card)
        model.net.load_state_dict(self.ema.module.state_dict())
        model.net.estimate_w_stats()
        dtype = {"float16": torch.float16, "float32": torch.float32}[self.config.export_dtype]
        return model.save(run.out / EXPORT, dtype=dtype, card=card)

    def summary(self) -> str:
        st = self.run.state
        return (f"stylegan2: {st['step']} steps, {st['images'] / 1000:.1f} kimg, "
                f"{st['elapsed_s'] / 60:.1f} min of training; losses {self.run.last_losses}")


def train_stylegan2(dataset, **options: Any) -> Path:
    """Train (or resume, ``resume=True``) a StyleGAN2 on ``dataset.images``; return the
    exported generator path. ``options``: the run options of :func:`gis.training.train`
    (``out``, ``seed``, ``device``, ``resume``, ``minutes``, ``max_steps``, ``threads``,
    ``progress``) and the fields of :class:`StyleGAN2TrainConfig`."""
    return train(StyleGAN2Trainer, dataset, **options)
