"""Train a ProGAN on a gis dataset: progressive growing, WGAN-GP, EMA generator, resumable.

Schedule. The network grows through stages 4x4, 8x8, ..., ``resolution``; every stage after
the first starts with a fade-in (the new block's output is blended in with alpha going
0 -> 1 linearly over the first ``fade`` fraction of the stage; real images are blended the
same way between the two resolutions), then trains the grown network. Stage lengths come
from either

* ``minutes`` (time plan): the budget, less a small reserve for saving, is split over the
  stages in proportion to ``stage_weights`` (default 1, 2, ..., S-1, 2(S-1): the final
  resolution gets the most); stage progress is measured in training seconds, or
* ``kimg_per_stage`` (image plan, deterministic): that many thousand real images per stage
  (a number, or one per stage). With ``minutes`` as well, ``minutes`` only caps the session.

Losses: WGAN-GP (lambda ``gp_weight`` = 10) plus the drift term ``drift`` * E[D(real)^2]
(eps = 0.001); Adam (lr 1e-3, betas (0, 0.99)) for both networks; one critic step per
generator step. The EMA generator (beta ``ema_beta`` = 0.999, ramped up as
min(beta, (1 + t) / (10 + t)) over the first steps t so that a short run is not dominated
by the initial weights) is the one exported and used for synthesis.

Files written to ``out``:

* ``checkpoint.safetensors``: everything needed to resume exactly (G, D, EMA, both Adam
  states, RNG state, stage, alpha position, step); written every ``checkpoint_every_s``
  seconds and when the run ends (budget spent, ``max_steps`` reached, schedule done, Ctrl-C).
* ``progan.safetensors`` + ``progan.json``: the EMA generator in float16 and its model card
  (what ``gis_progan.load_progan`` and the ``progan`` factory read); copy both to
  ``plugins/gis_progan/weights/fashion-colors.*`` to ship them.
* ``warmstart.safetensors``: G, D and the EMA generator in float16 with the schedule state but
  no optimiser or RNG state (about a fifth of the checkpoint: 18.8 MiB for the default 32 px
  networks). ``init_from`` (``--init-from``) starts a new run from it: the way to carry
  training across machines that cannot move the full checkpoint (a lent GPU).
* ``samples/``: PNG grids of the EMA generator on fixed latents (``reals.png`` once; then
  every ``sample_every_s`` seconds, at each stage change and at the end; ``latest.png``).
* ``log.jsonl``: losses every ``log_every`` steps.

Command line (no installation needed)::

    PYTHONPATH=.:plugins python -m gis_progan.train --data fashion-colors --out runs/progan \
        --minutes 6 --device cuda
"""

from __future__ import annotations

import argparse
import copy
import datetime as _dt
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

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

from .common import (
    resize_images,
    save_generator_file,
    save_grid_png,
    training_images,
    uint8_batch_to_float,
)
from .generator import ProGAN
from .loaders import GIS_TRAIN_FORMAT, GIS_WARMSTART_FORMAT
from .model import (
    ProGANConfig,
    ProGANDiscriminator,
    ProGANGenerator,
    default_channels,
    ema_update,
    gradient_penalty,
    upsample2,
    wgan_gp_losses,
)

CHECKPOINT = "checkpoint.safetensors"
EXPORT = "progan.safetensors"
WARMSTART = "warmstart.safetensors"

#: hyper-parameters stored in the checkpoint (a resumed run keeps them)
HYPER_DEFAULTS: dict[str, Any] = {
    "lr": 1e-3,
    "betas": (0.0, 0.99),
    "gp_weight": 10.0,
    "drift": 0.001,
    "ema_beta": 0.999,
    "fade": 0.5,
    "mirror": False,
}


@dataclass
class Plan:
    """Stage lengths in ``unit`` ("s": training seconds, "img": real images shown)."""

    unit: str
    lengths: list[float]
    fade: float = 0.5

    def alpha(self, stage: int, progress_in_stage: float) -> float:
        if stage == 0 or self.fade <= 0:
            return 1.0
        return min(1.0, progress_in_stage / (self.fade * self.lengths[stage]))

    @property
    def total(self) -> float:
        return float(sum(self.lengths))


def default_stage_weights(n: int) -> list[float]:
    """1, 2, ..., n-1, 2(n-1): the final resolution gets the largest share."""
    if n == 1:
        return [1.0]
    return [float(i) for i in range(1, n)] + [2.0 * (n - 1)]


def make_plan(n_stages: int, *, minutes: float | None, kimg_per_stage, stage_weights,
              fade: float, reserve_s: float) -> Plan:
    if kimg_per_stage is not None:
        k = kimg_per_stage if isinstance(kimg_per_stage, list | tuple) else [kimg_per_stage]
        if len(k) == 1:
            k = list(k) * n_stages
        if len(k) != n_stages:
            raise GisUsageError(f"kimg_per_stage needs 1 or {n_stages} values, got {len(k)}")
        return Plan("img", [float(v) * 1000.0 for v in k], fade)
    if minutes is None:
        raise GisUsageError("progan training needs minutes (a time budget) or kimg_per_stage")
    weights = list(stage_weights) if stage_weights is not None else default_stage_weights(
        n_stages)
    if len(weights) != n_stages:
        raise GisUsageError(f"stage_weights needs {n_stages} values, got {len(weights)}")
    # 0.5 % slack: the plan completes just before the (equal) wall-clock budget runs out
    total = max(1.0, 0.995 * (minutes * 60.0 - reserve_s))
    s = float(sum(weights))
    return Plan("s", [total * w / s for w in weights], fade)


def _reserve_s(minutes: float | None) -> float:
    """Seconds kept free at the end of a timed session for the final checkpoint/export."""
    if minutes is None:
        return 0.0
    return float(min(20.0, max(2.0, 0.04 * minutes * 60.0)))


def train_step(G: ProGANGenerator, D: ProGANDiscriminator, ema: ProGANGenerator,
               opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer, real: torch.Tensor,
               stage: int, alpha: float, *, rng: torch.Generator | None, step: int,
               gp_weight: float = 10.0, drift: float = 0.001, ema_beta: float = 0.999):
    """One critic step and one generator step at (``stage``, ``alpha``), then the EMA update.

    ``real``: (B, 3, r, r) in [-1, 1] at the stage's resolution. Returns detached
    (critic loss, generator loss, gradient penalty).
    """
    batch = real.shape[0]
    latent = G.cfg.latent_dim
    dev = real.device
    # --- critic: E[D(fake)] - E[D(real)] + gp_weight * GP + drift * E[D(real)^2]
    z = torch.randn(batch, latent, generator=rng, device=dev)
    with torch.no_grad():
        fake = G(z, stage, alpha)
    d_real = D(real, stage, alpha)
    d_fake = D(fake, stage, alpha)
    gp = gradient_penalty(lambda x: D(x, stage, alpha), real, fake, generator=rng)
    loss_d = wgan_gp_losses(d_real, d_fake, gp, gp_weight=gp_weight, drift=drift)
    opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    opt_d.step()
    # --- generator: -E[D(G(z))], critic frozen
    D.requires_grad_(False)
    z = torch.randn(batch, latent, generator=rng, device=dev)
    loss_g = -D(G(z, stage, alpha), stage, alpha).mean()
    opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    opt_g.step()
    D.requires_grad_(True)
    # --- EMA, ramped up over the first steps
    ema_update(ema, G, min(ema_beta, (1.0 + step) / (10.0 + step)))
    return loss_d.detach(), loss_g.detach(), gp.detach()


def train_progan(dataset, *, out, seed: int = 0, device: str = "cpu", resume: bool = False,
                 minutes: float | None = None, kimg_per_stage=None, stage_weights=None,
                 batch_size: int | None = None, lr: float = 1e-3, betas=(0.0, 0.99),
                 gp_weight: float = 10.0, drift: float = 0.001, ema_beta: float = 0.999,
                 fade: float = 0.5, mirror: bool = False, latent_dim: int = 512,
                 resolution: int | None = None, fmap_base: int = 2048, fmap_max: int = 192,
                 channels: list[int] | None = None, max_steps: int | None = None,
                 sample_every_s: float = 60.0, checkpoint_every_s: float = 120.0,
                 log_every: int = 20, threads: int | None = None, progress: bool = True,
                 export_dtype: str = "float16", init_from: str | Path | None = None) -> Path:
    """Train (or resume) a ProGAN on ``dataset.images``; return the exported generator path.

    ``resume=True`` continues from ``out/checkpoint.safetensors`` with its stored
    architecture, hyper-parameters and schedule (a finished time plan is extended by this
    session's ``minutes`` on the final stage); this session's ``minutes``/``max_steps`` only
    limit how long it runs. See the module docstring for the schedule and the files.

    ``init_from``: a ``warmstart.safetensors`` (or a run folder holding one) to start a new
    run in ``out`` from: its G, D and EMA weights, architecture, hyper-parameters, batch size,
    seed and schedule position are taken over (as a resume would; the arguments for them are
    ignored), with fresh Adam states and a fresh random stream.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    dev = training_device(device, threads)
    ckpt_path = out / CHECKPOINT
    resuming = resuming_run(ckpt_path, resume=resume, init_from=init_from, name="progan",
                            progress=progress)

    hyper = {"lr": float(lr), "betas": tuple(float(b) for b in betas),
             "gp_weight": float(gp_weight), "drift": float(drift), "ema_beta": float(ema_beta),
             "fade": float(fade), "mirror": bool(mirror)}
    meta: dict[str, Any] = {}
    tensors: dict[str, torch.Tensor] = {}
    warm = None
    if init_from is not None:
        warm = Path(init_from)
        if warm.is_dir():
            warm = warm / WARMSTART
        if not warm.is_file():
            raise CheckpointError(f"no progan warm-start file at {warm} (a run writes "
                                  f"{WARMSTART} beside progan.safetensors)")
    carried = resuming or warm is not None  # state taken over from a file
    if carried:
        src = ckpt_path if resuming else warm
        tensors, meta = load_checkpoint(src)
        want = GIS_TRAIN_FORMAT if resuming else GIS_WARMSTART_FORMAT
        if meta.get("format") != want:
            raise CheckpointError(f"{src} is not a progan "
                                  f"{'training checkpoint' if resuming else 'warm-start file'} "
                                  f"(format {meta.get('format')!r})")
        cfg = ProGANConfig.from_dict(meta["config"])
        hyper = {**HYPER_DEFAULTS, **meta["hyper"]}
        hyper["betas"] = tuple(float(b) for b in hyper["betas"])
        batch = int(meta["batch_size"])
        plan = Plan(**meta["plan"])
        seed = int(meta["seed"])
        st = dict(meta["progan_state"])
        if warm is not None:
            st["init_from"] = str(warm)
    else:
        res = int(resolution or dataset.resolution)
        cfg = ProGANConfig(latent_dim=int(latent_dim), resolution=res,
                           channels=list(channels or default_channels(res, fmap_base, fmap_max)))
        batch = int(batch_size or 64)
        plan = make_plan(cfg.num_stages, minutes=minutes, kimg_per_stage=kimg_per_stage,
                         stage_weights=stage_weights, fade=fade,
                         reserve_s=_reserve_s(minutes))
        st = {"stage": 0, "stage_progress": 0.0, "step": 0, "images": 0, "elapsed_s": 0.0,
              "done": False, "sessions": 0}

    # a finished time plan is extended by this session's budget (on the final stage)
    if carried and st["done"] and plan.unit == "s" and minutes is not None:
        plan.lengths[-1] += max(1.0, minutes * 60.0 - _reserve_s(minutes))
        st["done"] = False

    seed_everything(seed)
    gen_rng = torch.Generator(device=dev).manual_seed(seed)
    G = ProGANGenerator(cfg).to(dev)
    D = ProGANDiscriminator(cfg).to(dev)
    ema = copy.deepcopy(G).eval().requires_grad_(False)
    opt_g = torch.optim.Adam(G.parameters(), lr=hyper["lr"], betas=hyper["betas"])
    opt_d = torch.optim.Adam(D.parameters(), lr=hyper["lr"], betas=hyper["betas"])
    if resuming:
        try:
            G.load_state_dict(unflatten(tensors, "g."))
            D.load_state_dict(unflatten(tensors, "d."))
            ema.load_state_dict(unflatten(tensors, "ema."))
        except RuntimeError as exc:
            raise CheckpointError(f"{ckpt_path} does not match its config: {exc}") from None
        load_optimizer_state(opt_g, tensors, meta, prefix="opt_g.")
        load_optimizer_state(opt_d, tensors, meta, prefix="opt_d.")
        load_rng_state(tensors, {"train": gen_rng})
    elif warm is not None:  # float16 file -> the float32 training copies
        try:
            for name, net in (("g.", G), ("d.", D), ("ema.", ema)):
                net.load_state_dict(unflatten(tensors, name))
        except RuntimeError as exc:
            raise CheckpointError(f"{warm} does not match its config: {exc}") from None
    del tensors

    # data: uint8 on the device, resized once if needed
    data = training_images(dataset.images, cfg.resolution, dev)
    n_data = len(data)
    if n_data < 2:
        raise GisUsageError("progan training needs at least 2 images")

    fixed_z = torch.randn(64, cfg.latent_dim, generator=torch.Generator().manual_seed(
        seed + 7919)).to(dev)
    samples_dir = out / "samples"
    if not (samples_dir / "reals.png").exists():
        idx = torch.randperm(n_data, generator=torch.Generator().manual_seed(seed))[:64]
        save_grid_png(uint8_batch_to_float(data[idx.to(dev)]), samples_dir / "reals.png")

    dataset_info = {"name": (getattr(dataset, "meta", {}) or {}).get("name"),
                    "num_images": n_data, "resolution": int(dataset.resolution)}
    meta_static = {"format": GIS_TRAIN_FORMAT, "config": cfg.to_dict(),
                   "hyper": {**hyper, "betas": list(hyper["betas"])}, "batch_size": batch,
                   "plan": {"unit": plan.unit, "lengths": plan.lengths, "fade": plan.fade},
                   "seed": seed, "dataset": dataset_info,
                   "commands": [*meta.get("commands", []), command_line()]}

    budget = Budget(minutes=None if minutes is None else max(0.0, minutes - _reserve_s(
        minutes) / 60.0))
    last = {"loss_d": float("nan"), "loss_g": float("nan"), "gp": float("nan")}
    st["sessions"] = int(st.get("sessions", 0)) + 1

    hyper_step = {k: hyper[k] for k in ("gp_weight", "drift", "ema_beta")}

    def real_batch(stage: int, alpha: float) -> torch.Tensor:
        idx = torch.randint(n_data, (batch,), generator=gen_rng, device=dev)
        x = uint8_batch_to_float(data[idx])
        if hyper["mirror"]:
            flip = torch.rand(batch, generator=gen_rng, device=dev) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        x = resize_images(x, 4 * 2 ** stage)
        if alpha < 1.0:
            x = torch.lerp(upsample2(F.avg_pool2d(x, 2)), x, alpha)
        return x

    def sample_grid(tag: str) -> None:
        stage, alpha = st["stage"], plan.alpha(st["stage"], st["stage_progress"])
        with torch.no_grad():
            imgs = ema(fixed_z, stage, alpha)
        imgs = F.interpolate(imgs, size=(cfg.resolution, cfg.resolution), mode="nearest")
        save_grid_png(imgs, samples_dir / f"{tag}.png")
        save_grid_png(imgs, samples_dir / "latest.png")

    def write_checkpoint() -> None:
        tg, mg = optimizer_state_tensors(opt_g, "opt_g.")
        td, md = optimizer_state_tensors(opt_d, "opt_d.")
        tensors_out = {
            **{f"g.{k}": v for k, v in G.state_dict().items()},
            **{f"d.{k}": v for k, v in D.state_dict().items()},
            **{f"ema.{k}": v for k, v in ema.state_dict().items()},
            **tg, **td, **rng_state_tensors({"train": gen_rng}),
        }
        save_checkpoint(ckpt_path, tensors_out,
                        {**meta_static, **mg, **md, "progan_state": st, "last_losses": last})

    def export() -> Path:
        stage = st["stage"]
        alpha = plan.alpha(stage, st["stage_progress"])
        grown = stage == cfg.num_stages - 1
        card = {
            "name": "progan",
            "description": "Progressive GAN generator (EMA weights)",
            "dataset": dataset_info,
            "resolution": cfg.resolution,
            "latent_dim": cfg.latent_dim,
            "config": cfg.to_dict(),
            "training": {
                "commands": meta_static["commands"], "seed": seed, "device": str(dev),
                "machine": machine_info(dev), "elapsed_s": round(st["elapsed_s"], 1),
                "steps": st["step"], "kimg": round(st["images"] / 1000.0, 2),
                "batch_size": batch, **meta_static["hyper"], "plan": meta_static["plan"],
                "stage_reached": stage, "alpha": alpha, "fully_grown": grown,
                "schedule_done": st["done"], "final_losses": last,
                **({"init_from": st["init_from"]} if st.get("init_from") else {}),
                "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            },
            "torch": torch.__version__,
            "fid": None,
        }
        # a run stopped before the last stage exports the network grown so far (its blocks
        # 0..stage, at that stage's resolution and fade-in)
        sub = ProGANConfig(**{**cfg.to_dict(), "resolution": 4 * 2 ** stage,
                              "channels": cfg.channels[:stage + 1], "alpha": alpha})
        if not grown:
            card["warning"] = (f"training stopped at stage {stage}: exported at "
                               f"{sub.resolution}px instead of {cfg.resolution}px")
            card["resolution"] = sub.resolution
            card["config"] = sub.to_dict()
        model = ProGAN(sub, card=card)
        keep = {k: v for k, v in ema.state_dict().items()
                if int(k.split(".")[1]) <= stage}
        model.net.load_state_dict(keep)
        dtype = {"float16": torch.float16, "float32": torch.float32}[export_dtype]
        save_generator_file(out / WARMSTART, {f"{name}{k}": v for name, net in (
            ("g.", G), ("d.", D), ("ema.", ema)) for k, v in net.state_dict().items()},
            {**meta_static, "format": GIS_WARMSTART_FORMAT, "progan_state": st,
             "last_losses": last}, dtype=dtype)
        return model.save(out / EXPORT, dtype=dtype, card=card)

    per_unit = 1000.0 if plan.unit == "img" else 1.0
    bar = progress_bar(total=round(plan.total / per_unit, 3), desc="progan", enabled=progress,
                       unit="kimg" if plan.unit == "img" else "s",
                       bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} {unit} "
                                  "[{elapsed}<{remaining}{postfix}]")
    bar.update(min(plan.total, sum(plan.lengths[:st["stage"]]) + st["stage_progress"])
               / per_unit)
    log_path = out / "log.jsonl"
    budget.restart()  # the time plan and the budget both count from here
    t_ckpt = t_sample = t_prev = time.monotonic()
    pending: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    G.train()
    D.train()
    failed = False
    try:
        while not st["done"]:
            if max_steps is not None and st["step"] >= max_steps:
                break
            if budget.exhausted():
                break
            stage = st["stage"]
            alpha = plan.alpha(stage, st["stage_progress"])

            real = real_batch(stage, alpha)
            loss_d, loss_g, gp = train_step(G, D, ema, opt_g, opt_d, real, stage, alpha,
                                            rng=gen_rng, step=st["step"], **hyper_step)

            # --- bookkeeping / schedule
            pending.append((loss_d.detach(), loss_g.detach(), gp.detach()))
            st["step"] += 1
            st["images"] += batch
            if len(pending) >= log_every:
                vals = torch.stack([torch.stack(p) for p in pending]).mean(0).tolist()
                pending.clear()
                last = {"loss_d": vals[0], "loss_g": vals[1], "gp": vals[2]}
                if not all(math.isfinite(v) for v in vals):
                    failed = True
                    raise NonFiniteLossError(
                        f"progan training diverged at step {st['step']} (losses {last}); "
                        "resume from the last checkpoint with a lower lr")
                bar.set_postfix({"res": 4 * 2 ** stage, "alpha": f"{alpha:.2f}",
                                 "D": f"{vals[0]:.3f}", "G": f"{vals[1]:.3f}",
                                 "gp": f"{vals[2]:.3f}"}, refresh=False)
                with open(log_path, "a") as fh:
                    fh.write(json.dumps({"step": st["step"], "kimg": st["images"] / 1000.0,
                                         "stage": stage, "alpha": round(alpha, 4),
                                         "elapsed_s": round(st["elapsed_s"], 2), **last})
                             + "\n")
            # wall time since the previous step, sample grids and checkpoints included, so
            # that a time plan and the budget end together
            now = time.monotonic()
            dt, t_prev = now - t_prev, now
            budget.tick()
            st["elapsed_s"] += dt
            advance = float(batch) if plan.unit == "img" else dt
            st["stage_progress"] += advance
            bar.update(advance / per_unit)
            if st["stage_progress"] >= plan.lengths[stage]:
                if stage + 1 < cfg.num_stages:
                    sample_grid(f"step{st['step']:07d}-{4 * 2 ** stage}px-end")
                    st["stage"], st["stage_progress"] = stage + 1, 0.0
                else:
                    st["done"] = True
            if now - t_sample >= sample_every_s:
                sample_grid(f"step{st['step']:07d}-{4 * 2 ** st['stage']}px")
                t_sample = now
            if now - t_ckpt >= checkpoint_every_s:
                write_checkpoint()
                export()  # a usable generator at any time (fallback if the run dies)
                t_ckpt = now
    finally:
        bar.close()
        if not failed:  # a diverged state is not saved: the last checkpoint stays
            write_checkpoint()
            sample_grid(f"step{st['step']:07d}-{4 * 2 ** st['stage']}px-final")
            path = export()
    if progress:
        print(f"progan: {st['step']} steps, {st['images'] / 1000:.1f} kimg, "
              f"{st['elapsed_s'] / 60:.1f} min of training; stage {st['stage']} "
              f"({4 * 2 ** st['stage']}px); schedule {'done' if st['done'] else 'not done'}; "
              f"losses {last}")
    return path


# ----------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gis_progan.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="fashion-colors",
                   help="registered dataset name or path (default fashion-colors)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--minutes", type=float, default=None, help="wall-clock budget")
    p.add_argument("--kimg-per-stage", type=float, default=None,
                   help="images (thousands) per stage instead of a time plan")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--ema-beta", type=float, default=0.999)
    p.add_argument("--latent-dim", type=int, default=512)
    p.add_argument("--fmap-base", type=int, default=2048)
    p.add_argument("--fmap-max", type=int, default=192)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--mirror", action="store_true", help="random horizontal flips")
    p.add_argument("--threads", type=int, default=None, help="CPU threads")
    p.add_argument("--sample-every-s", type=float, default=60.0)
    p.add_argument("--checkpoint-every-s", type=float, default=120.0)
    p.add_argument("--trust", action="store_true", help="allow pickle-based data files")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--init-from", default=None,
                   help="start a new run from a warmstart.safetensors (or its run folder)")
    a = p.parse_args(argv)
    from .common import load_training_dataset

    dataset = load_training_dataset(a.data, trust=a.trust)
    path = train_progan(
        dataset, out=a.out, seed=a.seed, device=a.device, resume=a.resume, minutes=a.minutes,
        kimg_per_stage=a.kimg_per_stage, batch_size=a.batch_size, lr=a.lr,
        ema_beta=a.ema_beta, latent_dim=a.latent_dim, fmap_base=a.fmap_base,
        fmap_max=a.fmap_max, max_steps=a.max_steps, mirror=a.mirror, threads=a.threads,
        sample_every_s=a.sample_every_s, checkpoint_every_s=a.checkpoint_every_s,
        progress=not a.no_progress, init_from=a.init_from)
    print(f"checkpoint: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
