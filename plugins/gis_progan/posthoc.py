"""A post-hoc critic for a frozen ProGAN generator, fitted and calibrated on a CPU.

Method: Discriminator Rejection Sampling (Azadi et al., ICLR 2019, section 3): with the
generator G fixed, keep training a discriminator D with the logistic GAN loss
E[softplus(-D(real))] + E[softplus(D(G(z)))] until it is (near) optimal; its logit then
estimates log p_data(x) / p_G(x), so a low score marks an image the real data would rarely
hold. gis fits D from scratch (a ProGANDiscriminator of G's config), regularised with R1
(gamma / 2 * E||grad D(real)||^2, Mescheder et al., ICML 2018) applied every ``r1_every``
steps with weight ``r1_every`` (lazy regularisation, Karras et al., CVPR 2020, section 3.1);
Adam. Fakes are fresh samples of G each step (the EMA generator as ``ProGAN.synthesize``
gives them: clamped to [-1, 1]); reals are the images G was trained on.

The critic has **no minibatch standard deviation** (``mbstd_group`` 0): with it, a batch of
similar variants would read as fake and a lone image would have no meaningful score. Each
image's score is its own, alone or in any batch.

Calibration (``calibrate``): the floor is the 5th percentile of the critic's scores on
held-out real images (``gis.realism.calibrate_floor``; 95 % of real items pass), with the
ROC AUC real vs generated, the share of generator samples below the floor and, when the
dataset's ground truth judges realism (``GroundTruth.realism``), the critic's agreement with
it. Held-out reals, by preference: the items of ``heldout_data`` (a larger build of the same
dataset, e.g. ``gis data build --full``) that are not among the fitting data's items (by item
id); else the fitting dataset's held-out split; else a slice of the fitting data that is then
left out of the fit. The critic file records which.

Command (writes ``<stem>-critic.safetensors`` beside the generator; docs/MODELS.md)::

    python -m gis_progan.critic fit GENERATOR.safetensors --data fashion-colors \\
        [--heldout-data runs/fashion_colors_full.npz] [--steps 900] [--bf16] [--threads 1]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from gis.errors import GisUsageError

from .critic import critic_path, save_critic
from .model import ProGANConfig, ProGANDiscriminator, logistic_losses, r1_penalty, upsample2

#: the method, as the critic file's ``fit.method`` names it
FIT_METHOD = ("Discriminator Rejection Sampling critic (Azadi et al., ICLR 2019): logistic "
              "GAN loss + R1 (Mescheder et al., ICML 2018), generator frozen, no minibatch std")


@dataclass
class FitSettings:
    """Hyper-parameters of ``fit_critic`` (recorded in the critic file's ``fit`` meta)."""

    steps: int = 900
    batch_size: int = 32
    lr: float = 2e-3
    #: G is frozen, so this is a stationary classification problem: Adam with momentum
    #: (ProGAN's own beta1 = 0 suits the moving target of GAN training)
    betas: tuple[float, float] = (0.9, 0.99)
    r1_gamma: float = 1.0
    r1_every: int = 4
    seed: int = 0
    #: bfloat16 autocast of the critic's forward and backward on the CPU (weights, Adam and
    #: the scores used later stay float32): about twice the speed where the CPU has AVX-512 BF16
    bf16: bool = False

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 2 or self.r1_every < 1:
            raise GisUsageError(f"critic fit: steps >= 1, batch size >= 2 and r1_every >= 1 "
                                f"needed, got {self.steps}, {self.batch_size}, {self.r1_every}")
        if self.lr <= 0 or self.r1_gamma < 0 or not all(0 <= b < 1 for b in self.betas):
            raise GisUsageError(f"critic fit: lr > 0, r1_gamma >= 0 and betas in [0, 1) "
                                f"needed, got {self.lr}, {self.r1_gamma}, {self.betas}")


def critic_config(generator_config: ProGANConfig) -> ProGANConfig:
    """The post-hoc critic's config: the generator's, minibatch std off."""
    return ProGANConfig(**{**generator_config.to_dict(), "mbstd_group": 0})


def as_critic_input(images: torch.Tensor, cfg: ProGANConfig) -> torch.Tensor:
    """Images (B, 3, r, r) in [-1, 1] as the critic reads them: the first channel for a
    grey-scale model; at a fade-in ``alpha`` < 1 blended like the trainer's real images."""
    x = images[:, :1] if cfg.image_channels == 1 else images
    if cfg.alpha < 1.0:
        x = torch.lerp(upsample2(F.avg_pool2d(x, 2)), x, cfg.alpha)
    return x


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, r, r) -> float32 in [-1, 1]; float images pass unchanged."""
    return images.float() * (2.0 / 255.0) - 1.0 if images.dtype == torch.uint8 else images


def fit_critic(generator, reals: torch.Tensor, settings: FitSettings, *,
               max_seconds: float | None = None, progress: bool = False,
               callback: Callable[[int, ProGANDiscriminator], None] | None = None,
               callback_every: int = 100) -> tuple[ProGANDiscriminator, dict[str, Any]]:
    """Fit a critic to the frozen ``generator`` (a ``gis_progan.ProGAN``): see the module.

    reals: uint8 (N, 3, r, r) (or float in [-1, 1]) at the generator's resolution, N >= 2.
    Runs ``settings.steps`` steps, or fewer when ``max_seconds`` (wall clock) runs out.
    Deterministic for a seed and thread count (own random streams; the global RNG is left as
    it was). ``callback(step, critic)`` runs every ``callback_every`` steps (the critic in
    training mode: switch to eval and back, under no_grad). Returns the critic (eval mode, frozen; ``meta`` objective "logistic") and a
    record: steps done, seconds, seconds per step, mean losses over the last 50 steps.
    """
    from gis.training import progress as progress_bar

    cfg = critic_config(generator.config)
    r = cfg.resolution
    if reals.ndim != 4 or tuple(reals.shape[1:]) != (3, r, r) or len(reals) < 2:
        raise GisUsageError(f"critic fit: real images must be (N >= 2, 3, {r}, {r}), got "
                            f"{tuple(reals.shape)}")
    s = settings
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(s.seed)
        critic = ProGANDiscriminator(cfg)
    critic.train()
    rng = torch.Generator().manual_seed(s.seed + 1)
    opt = torch.optim.Adam(critic.parameters(), lr=s.lr, betas=tuple(s.betas))
    window: list[list[float]] = []
    t0, c0 = time.perf_counter(), time.process_time()
    bar = progress_bar(total=s.steps, desc="critic fit", enabled=progress)
    done = 0
    for step in range(s.steps):
        # --- batches: reals drawn with replacement, fresh samples of the frozen generator
        idx = torch.randint(len(reals), (s.batch_size,), generator=rng)
        real = as_critic_input(to_float(reals[idx]), cfg)
        with torch.no_grad():
            z = generator.sample_latents(s.batch_size, generator=rng)
            fake = as_critic_input(generator.synthesize(z), cfg)
        # --- loss: logistic, plus lazy R1 on the reals every r1_every steps
        lazy = s.r1_gamma > 0 and step % s.r1_every == 0
        real.requires_grad_(lazy)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=s.bf16):
            d_real, d_fake = critic(real).float(), critic(fake).float()
            r1 = r1_penalty(d_real, real).float() if lazy else torch.zeros(())
        loss = logistic_losses(d_real, d_fake)
        total = loss + (0.5 * s.r1_gamma * s.r1_every) * r1 if lazy else loss
        # --- step
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        done = step + 1
        window = (window + [[loss.item(), d_real.mean().item(), d_fake.mean().item(),
                             r1.item() if lazy else float("nan")]])[-50:]
        if callback is not None and done % callback_every == 0:
            callback(done, critic)
        bar.update(1)
        bar.set_postfix(loss=f"{window[-1][0]:.3f}", d_real=f"{window[-1][1]:.2f}",
                        d_fake=f"{window[-1][2]:.2f}")
        if max_seconds is not None and time.perf_counter() - t0 >= max_seconds:
            break
    bar.close()
    seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
    w = np.array(window)
    last = {k: float(np.nanmean(w[:, i])) if np.isfinite(w[:, i]).any() else None
            for i, k in enumerate(("loss_d", "d_real", "d_fake", "r1"))}
    critic.eval().requires_grad_(False)
    critic.meta = {"objective": "logistic"}
    return critic, {"steps": done, "seconds": round(seconds, 1),
                    "cpu_seconds": round(cpu_seconds, 1),
                    "seconds_per_step": round(seconds / max(done, 1), 3),
                    "cpu_seconds_per_step": round(cpu_seconds / max(done, 1), 3),
                    "images_seen": done * s.batch_size, "losses_last_50_steps": last}


@torch.no_grad()
def critic_scores(critic: ProGANDiscriminator, images: torch.Tensor, *,
                  batch_size: int = 250) -> torch.Tensor:
    """The critic's scores (N,) float32 of images (N, 3, r, r), uint8 or float in [-1, 1]."""
    out = [critic(as_critic_input(to_float(images[i:i + batch_size]), critic.cfg))
           for i in range(0, len(images), batch_size)]
    return torch.cat(out) if out else torch.zeros(0)


def heldout_reals(fit_dataset, heldout_data: str | None, n: int, *, seed: int,
                  resolution: int) -> tuple[torch.Tensor, np.ndarray, dict[str, Any]]:
    """Held-out real images for the calibration: (uint8 (n', 3, r, r), the indices of
    ``fit_dataset.images`` the fit may use, a record of the source). See the module for the
    order of preference; n' = min(n, what the source holds)."""
    from gis.data import load_dataset
    from gis.training import training_images

    rng = np.random.default_rng(seed)
    everything = np.arange(fit_dataset.num_items)
    if heldout_data is not None:
        big = load_dataset(heldout_data)
        seen = set(map(str, fit_dataset.item_ids))
        pool = np.array([i for i, k in enumerate(big.item_ids) if str(k) not in seen])
        if not len(pool):
            raise GisUsageError(f"critic calibration: every item of {heldout_data} is among "
                                "the fitting data's items; pass a larger build of the dataset")
        pick = np.sort(rng.choice(pool, size=min(n, len(pool)), replace=False))
        source = {"source": "heldout-data", "path": str(heldout_data),
                  "rule": "items of this build whose item id is not among the fitting "
                          "data's items", "pool": int(len(pool))}
        images = big.images[pick]
    elif fit_dataset.num_heldout:
        pick = np.sort(rng.choice(fit_dataset.num_heldout, size=min(n, fit_dataset.num_heldout),
                                  replace=False))
        source = {"source": "heldout-split", "rule": "the fitting dataset's held-out split "
                  "(never in the generator's or the critic's training)",
                  "pool": int(fit_dataset.num_heldout)}
        images = fit_dataset.heldout_images[pick]
    else:
        k = min(n, fit_dataset.num_items // 5)
        if k < 20:
            raise GisUsageError("critic calibration: the data has no held-out items and too "
                                "few items to hold out 20; pass --heldout-data")
        perm = rng.permutation(fit_dataset.num_items)
        pick, everything = np.sort(perm[:k]), np.sort(perm[k:])
        source = {"source": "fit-data-slice", "rule": "a random slice of the fitting data, "
                  "left out of the critic's fit (the generator may have seen it)",
                  "pool": int(fit_dataset.num_items)}
        images = fit_dataset.images[pick]
    source["n"] = int(len(pick))
    return training_images(images, resolution, torch.device("cpu")), everything, source


def calibrate(generator, critic: ProGANDiscriminator, heldout: torch.Tensor, *,
              n_fake: int = 2000, seed: int = 1, quantile: float = 0.05, truth=None
              ) -> dict[str, Any]:
    """The critic's floor and how well it separates (``gis.realism.calibrate_realism`` of
    ``generator`` scored by ``critic``): a dict for the critic file's ``calibration`` meta.

    heldout: real images (N, 3, r, r), uint8 or float in [-1, 1], never seen in the fit;
    ``n_fake`` generator samples seeded with ``seed`` (none of the fit's latents);
    ``truth``: a ``GroundTruth`` whose ``realism`` judges the samples (None: not measured)."""
    from gis.realism import calibrate_realism

    before = generator.critic
    generator.critic = critic
    try:
        return calibrate_realism(generator, to_float(heldout), kind="critic", n_fake=n_fake,
                                 seed=seed, quantile=quantile, truth=truth)
    finally:
        generator.critic = before


def fit_command(argv: list[str] | None = None, *, command: str | None = None) -> int:
    """``python -m gis_progan.critic fit GENERATOR [options]``: fit, calibrate, write the
    critic file (only once everything succeeded), print its meta. ``command``: the command
    line recorded in the file (default: this process's)."""
    import json

    from gis.data import load_dataset
    from gis.training import command_line, machine_info, training_images

    from .generator import load_progan

    p = argparse.ArgumentParser(prog="python -m gis_progan.critic fit",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("generator", help="the ProGAN generator file (any format load_progan reads)")
    p.add_argument("--data", default="fashion-colors",
                   help="the images the generator was trained on (name or path)")
    p.add_argument("--heldout-data", default=None,
                   help="a larger build of the same dataset (e.g. gis data build --full): its "
                        "items not in --data calibrate the floor (default: --data's held-out "
                        "split)")
    d = FitSettings()
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--betas", type=float, nargs=2, default=list(d.betas))
    p.add_argument("--r1-gamma", type=float, default=d.r1_gamma)
    p.add_argument("--r1-every", type=int, default=d.r1_every)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--bf16", action="store_true",
                   help="bfloat16 autocast of the critic on the CPU (about 2x faster with "
                        "AVX-512 BF16)")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="stop the fit earlier when this wall-clock budget is spent")
    p.add_argument("--n-calibration", type=int, default=2000,
                   help="held-out real images for the floor (>= 1000 advised)")
    p.add_argument("--n-fake", type=int, default=2000, help="generator samples to calibrate")
    p.add_argument("--quantile", type=float, default=0.05, help="the floor's quantile")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--out", default=None, help="critic file (default: <stem>-critic."
                   "safetensors beside the generator)")
    p.add_argument("--dtype", choices=["float16", "float32"], default="float16")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--trust", action="store_true", help="allow pickle-based checkpoints")
    a = p.parse_args(argv)
    torch.set_num_threads(max(1, a.threads))
    settings = FitSettings(steps=a.steps, batch_size=a.batch_size, lr=a.lr,
                           betas=tuple(a.betas), r1_gamma=a.r1_gamma, r1_every=a.r1_every,
                           seed=a.seed, bf16=a.bf16)
    gen_path = Path(a.generator)
    if a.out is None and gen_path.suffix != ".safetensors":
        raise GisUsageError(f"{gen_path} is not a .safetensors generator file: pass --out "
                            "for the critic file")
    out = Path(a.out) if a.out is not None else critic_path(gen_path)
    generator = load_progan(gen_path, critic=False, trust=a.trust)
    dataset = load_dataset(a.data)
    r = generator.resolution
    heldout, fit_idx, source = heldout_reals(dataset, a.heldout_data, a.n_calibration,
                                             seed=a.seed, resolution=r)
    reals = training_images(dataset.images[fit_idx], r, torch.device("cpu"))
    critic, record = fit_critic(generator, reals, settings, progress=not a.no_progress,
                                max_seconds=None if a.max_minutes is None
                                else 60.0 * a.max_minutes)
    dtype = {"float16": torch.float16, "float32": torch.float32}[a.dtype]
    with torch.no_grad():  # calibrate the weights as they will be read back from the file
        for v in critic.state_dict().values():
            v.copy_(v.to(dtype).float())
    t0 = time.perf_counter()
    truth = dataset.ground_truth if dataset.has_ground_truth else None
    calibration = calibrate(generator, critic, heldout, n_fake=a.n_fake, seed=a.seed + 1000,
                            quantile=a.quantile, truth=truth)
    calibration.update(heldout=source, seconds=round(time.perf_counter() - t0, 1))
    fit = {"method": FIT_METHOD, **asdict(settings), "betas": list(settings.betas), **record,
           "data": {"name": dataset.meta.get("name"), "spec": a.data,
                    "num_images": int(len(reals))},
           "generator": str(gen_path), "threads": torch.get_num_threads(),
           "machine": machine_info("cpu"),
           "command": command or command_line(), "torch": torch.__version__}
    path = save_critic(out, critic, dtype=dtype, meta={"fit": fit, "calibration": calibration})
    print(json.dumps({"critic": str(path), "fit": {k: v for k, v in fit.items()
                                                    if k != "machine"},
                      "calibration": calibration}, indent=2))
    return 0
