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

Files written to ``out``: ``checkpoint.safetensors`` (G, D, both Adam states, RNG, step;
every ``checkpoint_every_s`` and at the end), ``dvbpr_gan.safetensors`` + ``dvbpr_gan.json``
(G and D in float16 + model card: copy both to ``plugins/gis_dvbpr_gan/weights/
fashion-colors.*`` to ship them), ``samples/`` (PNG grids: one row per category, fixed
latents) and ``log.jsonl``.

    PYTHONPATH=.:plugins python -m gis_dvbpr_gan.train --data fashion-colors \
        --out runs/dvbpr-gan --minutes 6 --device cuda --batch-size 64
"""

from __future__ import annotations

import argparse
import copy
import datetime as _dt
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gis_progan.common import save_grid_png, training_images, uint8_batch_to_float
from gis_progan.model import ema_update

from gis.errors import CheckpointError, GisUsageError, NonFiniteLossError
from gis.training import (
    Budget,
    command_line,
    load_checkpoint,
    load_optimizer_state,
    load_rng_state,
    machine_info,
    optimizer_state_tensors,
    resuming_run,
    rng_state_tensors,
    save_checkpoint,
    seed_everything,
    training_device,
    unflatten,
)
from gis.training import progress as progress_bar

from .generator import DVBPRGAN, GIS_TRAIN_FORMAT
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


def _reserve_s(minutes: float | None) -> float:
    if minutes is None:
        return 0.0
    return float(min(20.0, max(2.0, 0.04 * minutes * 60.0)))


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


def train_dvbpr_gan(dataset, *, out, seed: int = 0, device: str = "cpu", resume: bool = False,
                    minutes: float | None = None, kimg: float | None = None,
                    max_steps: int | None = None, batch_size: int | None = None,
                    lr: float = 1e-4, betas=(0.5, 0.99), latent_dim: int = 256,
                    resolution: int | None = None, d_batchnorm: bool = True,
                    base_channels: int = 256, g_channels: list[int] | None = None,
                    d_channels: list[int] | None = None,
                    sample_every_s: float = 60.0, checkpoint_every_s: float = 120.0,
                    log_every: int = 50, threads: int | None = None, progress: bool = True,
                    export_dtype: str = "float16", init_from: str | Path | None = None,
                    ema_beta: float = 0.999) -> Path:
    """Train (or resume) the conditional LSGAN on ``dataset`` (images + categories); return
    the exported file. On resume the stored architecture, batch size and optimiser settings
    are kept; ``minutes``/``kimg``/``max_steps`` limit this session (kimg and max_steps
    count from the start of the run).

    ``init_from``: start a new run from the G and D weights of an exported file (e.g. the
    shipped ``weights/fashion-colors.safetensors``), with its architecture and fresh Adam
    states: a warm start where the full resumable checkpoint is not at hand (a GPU machine
    that cannot send its ~100 MB checkpoints back).

    ``ema_beta``: G's weight average (see the module docstring); 0 exports the raw G. A
    resumed run keeps the value it started with (runs from before averaging existed: 0)."""
    if minutes is None and kimg is None and max_steps is None:
        raise GisUsageError("dvbpr-gan training needs minutes, kimg or max_steps")
    if not 0.0 <= float(ema_beta) < 1.0:
        raise GisUsageError(f"ema_beta must lie in [0, 1) (0 turns averaging off), got {ema_beta}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    dev = training_device(device, threads)
    ckpt_path = out / CHECKPOINT
    resuming = resuming_run(ckpt_path, resume=resume, init_from=init_from, name="dvbpr-gan",
                            progress=progress)
    init = None
    if init_from is not None:
        from .generator import load_dvbpr_gan

        init = load_dvbpr_gan(init_from)

    categories = np.asarray(dataset.categories, dtype=np.int64)
    names = [str(n) for n in dataset.category_names]
    if len(categories) != len(dataset.images):
        raise GisUsageError("dataset categories and images differ in length")
    meta: dict[str, Any] = {}
    tensors: dict[str, torch.Tensor] = {}
    if resuming:
        tensors, meta = load_checkpoint(ckpt_path)
        if meta.get("format") != GIS_TRAIN_FORMAT:
            raise CheckpointError(f"{ckpt_path} is not a dvbpr-gan training checkpoint "
                                  f"(format {meta.get('format')!r})")
        cfg = DVBPRGANConfig.from_dict(meta["config"])
        hyper = dict(meta["hyper"])
        batch = int(meta["batch_size"])
        seed = int(meta["seed"])
        st = dict(meta["dvbpr_gan_state"])
        if cfg.num_classes != len(names):
            raise CheckpointError(f"{ckpt_path} was trained with {cfg.num_classes} categories, "
                                  f"this dataset has {len(names)}")
    else:
        if init is not None:  # the architecture comes with the weights
            cfg = init.config
            if cfg.num_classes != len(names):
                raise CheckpointError(f"{init_from} has {cfg.num_classes} categories, this "
                                      f"dataset has {len(names)}")
        else:
            cfg = DVBPRGANConfig(num_classes=len(names), latent_dim=int(latent_dim),
                                 resolution=int(resolution or dataset.resolution),
                                 d_batchnorm=bool(d_batchnorm),
                                 base_channels=int(base_channels),
                                 g_channels=list(g_channels or G_CHANNELS),
                                 d_channels=list(d_channels or D_CHANNELS))
        hyper = {"lr": lr, "betas": [float(b) for b in betas], "ema_beta": float(ema_beta)}
        batch = int(batch_size or 16)
        st = {"step": 0, "images": 0, "elapsed_s": 0.0, "sessions": 0}
        if init is not None:  # the lineage: the source's commands and training summary
            st["init_from"] = str(init_from)
            src_training = dict(init.card.get("training") or {})
            st["init_from_training"] = {k: src_training[k] for k in (
                "steps", "kimg", "elapsed_s", "batch_size", "device") if k in src_training}
            meta = {"commands": list(src_training.get("commands") or [])}

    seed_everything(seed)
    rng = torch.Generator(device=dev).manual_seed(seed)
    G = DVBPRGenerator(cfg).to(dev)
    D = DVBPRDiscriminator(cfg).to(dev)
    beta = float(hyper.get("ema_beta", 0.0))
    opt_g = torch.optim.Adam(G.parameters(), lr=hyper["lr"], betas=tuple(hyper["betas"]))
    opt_d = torch.optim.Adam(D.parameters(), lr=hyper["lr"], betas=tuple(hyper["betas"]))
    if resuming:
        try:
            G.load_state_dict(unflatten(tensors, "g."))
            D.load_state_dict(unflatten(tensors, "d."))
        except RuntimeError as exc:
            raise CheckpointError(f"{ckpt_path} does not match its config: {exc}") from None
        ema_state = unflatten(tensors, "ema.")
        if beta > 0 and not ema_state:
            raise CheckpointError(f"{ckpt_path} has ema_beta {beta} but no averaged weights")
        load_optimizer_state(opt_g, tensors, meta, prefix="opt_g.")
        load_optimizer_state(opt_d, tensors, meta, prefix="opt_d.")
        load_rng_state(tensors, {"train": rng})
    elif init is not None:
        G.load_state_dict(init.net.state_dict())  # fp16 file -> the fp32 training copies
        D.load_state_dict(init.discriminator.state_dict())
        del init
    del tensors
    ema = copy.deepcopy(G).eval().requires_grad_(False) if beta > 0 else None
    if ema is not None and resuming:
        ema.load_state_dict(ema_state)

    data = training_images(dataset.images, cfg.resolution, dev)
    labels = torch.from_numpy(categories).to(dev)
    n_data = len(data)

    # fixed sample latents: one row per category (up to 10 columns)
    n_col = 8
    fixed_z = torch.randn(n_col, cfg.latent_dim, generator=torch.Generator().manual_seed(
        seed + 7919)).to(dev).repeat(cfg.num_classes, 1)
    fixed_y = one_hot(torch.arange(cfg.num_classes, device=dev).repeat_interleave(n_col),
                      cfg.num_classes)
    samples_dir = out / "samples"
    if not (samples_dir / "reals.png").exists():
        rows = []
        for c in range(cfg.num_classes):
            idx = torch.nonzero(labels == c).flatten()[:n_col]
            x = uint8_batch_to_float(data[idx])
            if len(x) < n_col:
                x = torch.cat([x, torch.ones(n_col - len(x), *x.shape[1:], device=dev)])
            rows.append(x)
        save_grid_png(torch.cat(rows), samples_dir / "reals.png", nrow=n_col)

    dataset_info = {"name": (getattr(dataset, "meta", {}) or {}).get("name"),
                    "num_images": n_data, "resolution": int(dataset.resolution),
                    "category_names": names}
    meta_static = {"format": GIS_TRAIN_FORMAT, "config": cfg.to_dict(), "hyper": hyper,
                   "batch_size": batch, "seed": seed, "dataset": dataset_info,
                   "commands": [*meta.get("commands", []), command_line()]}
    budget = Budget(minutes=None if minutes is None else max(
        0.0, minutes - _reserve_s(minutes) / 60.0))
    st["sessions"] = int(st.get("sessions", 0)) + 1
    last = {"loss_d": float("nan"), "loss_g": float("nan"), "d_real": float("nan"),
            "d_fake": float("nan")}

    def sample_grid(tag: str) -> None:
        net = G if ema is None else ema
        net.eval()
        with torch.no_grad():
            imgs = net(fixed_z, fixed_y)
        G.train()
        save_grid_png(imgs, samples_dir / f"{tag}.png", nrow=n_col)
        save_grid_png(imgs, samples_dir / "latest.png", nrow=n_col)

    def write_checkpoint() -> None:
        tg, mg = optimizer_state_tensors(opt_g, "opt_g.")
        td, md = optimizer_state_tensors(opt_d, "opt_d.")
        tensors_out = {**{f"g.{k}": v for k, v in G.state_dict().items()},
                       **{f"d.{k}": v for k, v in D.state_dict().items()},
                       **({} if ema is None else
                          {f"ema.{k}": v for k, v in ema.state_dict().items()}),
                       **tg, **td, **rng_state_tensors({"train": rng})}
        save_checkpoint(ckpt_path, tensors_out,
                        {**meta_static, **mg, **md, "dvbpr_gan_state": st,
                         "last_losses": last})

    def export() -> Path:
        card = {
            "name": "dvbpr-gan",
            "description": "Kang et al. 2017 conditional LSGAN (G and D), DVBPR design baseline",
            "dataset": dataset_info, "resolution": cfg.resolution, "latent_dim": cfg.latent_dim,
            "num_classes": cfg.num_classes, "config": cfg.to_dict(),
            "training": {
                "commands": meta_static["commands"], "seed": seed, "device": str(dev),
                "machine": machine_info(dev), "elapsed_s": round(st["elapsed_s"], 1),
                "steps": st["step"], "kimg": round(st["images"] / 1000.0, 2),
                "batch_size": batch, "lr": hyper["lr"], "betas": hyper["betas"],
                "loss": "LSGAN (a=0, b=c=1)", "final_losses": last, "ema_beta": beta,
                "batchnorm_statistics": ("running averages from training" if ema is None else
                                         "standing statistics of the averaged G, {n_batches} "
                                         "batches of {batch_size}".format(**STANDING_STATS)),
                **({"init_from": st["init_from"],
                    "init_from_training": st.get("init_from_training", {})}
                   if st.get("init_from") else {}),
                "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            },
            "torch": torch.__version__,
            "fid": None,
        }
        model = DVBPRGAN(cfg, card=card, category_names=names)
        if ema is None:
            model.net.load_state_dict(G.state_dict())
        else:
            model.net.load_state_dict(ema.state_dict())
            recalibrate_batchnorm(model.net.to(dev), labels, seed=seed,
                                  **STANDING_STATS).cpu()
        model.discriminator.load_state_dict(D.state_dict())
        dtype = {"float16": torch.float16, "float32": torch.float32}[export_dtype]
        return model.save(out / EXPORT, dtype=dtype, card=card)

    total_steps = None
    if kimg is not None:
        total_steps = math.ceil(kimg * 1000.0 / batch)
    if max_steps is not None:
        total_steps = max_steps if total_steps is None else min(total_steps, max_steps)
    bar = progress_bar(total=total_steps, desc="dvbpr-gan", enabled=progress, unit="step",
                       initial=st["step"])
    log_path = out / "log.jsonl"
    budget.restart()
    t_ckpt = t_sample = t_prev = time.monotonic()
    pending: list[torch.Tensor] = []
    failed = False
    G.train()
    D.train()
    try:
        while True:
            if total_steps is not None and st["step"] >= total_steps:
                break
            if budget.exhausted():
                break
            idx = torch.randint(n_data, (batch,), generator=rng, device=dev)
            real = uint8_batch_to_float(data[idx])
            y_real = one_hot(labels[idx], cfg.num_classes)
            fidx = torch.randint(n_data, (batch,), generator=rng, device=dev)
            y_fake = one_hot(labels[fidx], cfg.num_classes)
            z = torch.randn(batch, cfg.latent_dim, generator=rng, device=dev)
            loss_d, loss_g, d_real, d_fake = train_step(G, D, opt_g, opt_d, real, y_real, z,
                                                        y_fake)
            if ema is not None:
                t = st["step"]
                ema_update(ema, G, beta if st.get("init_from") else
                           min(beta, (1.0 + t) / (10.0 + t)))
            pending.append(torch.stack([loss_d, loss_g, d_real, d_fake]))
            st["step"] += 1
            st["images"] += batch
            if len(pending) >= log_every:
                vals = torch.stack(pending).mean(0).tolist()
                pending.clear()
                last = dict(zip(("loss_d", "loss_g", "d_real", "d_fake"), vals, strict=True))
                if not all(math.isfinite(v) for v in vals):
                    failed = True
                    raise NonFiniteLossError(
                        f"dvbpr-gan training diverged at step {st['step']} ({last})")
                bar.set_postfix({k: f"{v:.3f}" for k, v in last.items()}, refresh=False)
                with open(log_path, "a") as fh:
                    fh.write(json.dumps({"step": st["step"], "kimg": st["images"] / 1000.0,
                                         "elapsed_s": round(st["elapsed_s"], 2), **last})
                             + "\n")
            now = time.monotonic()
            st["elapsed_s"] += now - t_prev
            t_prev = now
            budget.tick()
            bar.update(1)
            if now - t_sample >= sample_every_s:
                sample_grid(f"step{st['step']:07d}")
                t_sample = now
            if now - t_ckpt >= checkpoint_every_s:
                write_checkpoint()
                export()
                t_ckpt = now
    finally:
        bar.close()
        if not failed:
            write_checkpoint()
            sample_grid(f"step{st['step']:07d}-final")
            path = export()
    if progress:
        print(f"dvbpr-gan: {st['step']} steps, {st['images'] / 1000:.1f} kimg, "
              f"{st['elapsed_s'] / 60:.1f} min of training; losses {last}")
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gis_dvbpr_gan.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="fashion-colors")
    p.add_argument("--out", required=True)
    p.add_argument("--minutes", type=float, default=None)
    p.add_argument("--kimg", type=float, default=None)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--batch-size", type=int, default=None, help="default 16 (the paper's)")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--sample-every-s", type=float, default=60.0)
    p.add_argument("--checkpoint-every-s", type=float, default=120.0)
    p.add_argument("--trust", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--no-d-batchnorm", action="store_true",
                   help="plain discriminator convs, as Kang et al. describe D")
    p.add_argument("--init-from", default=None,
                   help="start from the G and D weights of an exported file (fresh optimiser)")
    p.add_argument("--ema-beta", type=float, default=0.999,
                   help="G weight average exported and sampled (0: the raw G)")
    a = p.parse_args(argv)
    from gis_progan.common import load_training_dataset

    dataset = load_training_dataset(a.data, trust=a.trust)
    path = train_dvbpr_gan(
        dataset, out=a.out, seed=a.seed, device=a.device, resume=a.resume, minutes=a.minutes,
        kimg=a.kimg, max_steps=a.max_steps, batch_size=a.batch_size, lr=a.lr,
        threads=a.threads, sample_every_s=a.sample_every_s,
        checkpoint_every_s=a.checkpoint_every_s, progress=not a.no_progress,
        d_batchnorm=not a.no_d_batchnorm, init_from=a.init_from, ema_beta=a.ema_beta)
    print(f"checkpoint: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
