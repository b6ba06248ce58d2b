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

The run itself (resume, budget, checkpoints, log, progress) is gis's training skeleton
(:mod:`gis.training.run`); files written to the run folder:

* ``checkpoint.safetensors``: everything needed to resume exactly (G, D, EMA, both Adam
  states, RNG state, stage, alpha position, step); written every ``checkpoint_every_s``
  seconds and when the session ends (budget spent, ``max_steps`` reached, schedule done,
  Ctrl-C).
* ``progan.safetensors`` + ``progan.json``: the EMA generator in float16 and its model card
  (what ``gis_progan.load_progan`` and the ``progan`` factory read), and
  ``progan-critic.safetensors``: the critic D at the same stage (gis_progan.critic; it gives
  the generator its "critic" realism); copy the three to
  ``plugins/gis_progan/weights/fashion-colors.*``, ``fashion-colors-critic.safetensors``.
* ``warmstart.safetensors``: G, D and the EMA generator in float16 with the schedule state but
  no optimiser or RNG state (about a fifth of the checkpoint: 18.8 MiB for the default 32 px
  networks). ``init_from`` (``--init-from``) starts a new run from it, e.g. on a machine the
  full checkpoint cannot be moved to.
* ``samples/``: PNG grids of the EMA generator on fixed latents (``reals.png`` once; then
  every ``sample_every_s`` seconds, at each stage change and at the end; ``latest.png``).
* ``log.jsonl``: mean losses every ``log_every`` steps.

Command line: ``gis train generator progan --data fashion-colors --out runs/progan
--minutes 6 --device cuda`` (``--help`` lists every setting of :class:`ProGANTrainConfig`).
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F

from gis.errors import CheckpointError, GisUsageError
from gis.training import (
    Checkpoint,
    PeriodicSettings,
    Trainer,
    WeightAverage,
    check_format,
    check_ranges,
    load_checkpoint,
    machine_info,
    resize_batch,
    save_reserve_s,
    setting,
    train,
    training_images,
    uint8_batch_to_float,
)

from .common import save_generator_file
from .generator import ProGAN
from .loaders import GIS_TRAIN_FORMAT, GIS_WARMSTART_FORMAT
from .model import (
    ProGANConfig,
    ProGANDiscriminator,
    ProGANGenerator,
    default_channels,
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
class ProGANTrainConfig(PeriodicSettings):
    """Settings of a new progan run (a resumed or warm-started run keeps the architecture,
    hyper-parameters, batch size and schedule of the run it continues)."""

    kimg_per_stage: tuple[float, ...] | None = setting(
        None, "Thousands of real images per stage (one value, or one per stage): a "
              "deterministic image plan instead of the time plan of --minutes.")
    stage_weights: tuple[float, ...] | None = setting(
        None, "Time-plan shares of the stages (default 1, 2, ..., S-1, 2(S-1)).")
    batch_size: int = setting(64, "Real (and generated) images per step.")
    lr: float = setting(1e-3, "Adam learning rate of G and D.")
    betas: tuple[float, float] = setting((0.0, 0.99), "Adam betas of G and D.")
    gp_weight: float = setting(10.0, "Weight of the WGAN-GP gradient penalty.")
    drift: float = setting(0.001, "Weight of the drift term E[D(real)^2].")
    ema_beta: float = setting(0.999, "Decay of the EMA generator that is exported.")
    fade: float = setting(0.5, "Fraction of each stage after the first spent fading in.")
    mirror: bool = setting(False, "Random horizontal flips of the real images.")
    latent_dim: int = setting(512, "Latent size.")
    resolution: int | None = setting(None, "Final resolution (default: the dataset's).")
    fmap_base: int = setting(2048, "Channels of block i: min(fmap_max, fmap_base / 2**(i+1)).")
    fmap_max: int = setting(192, "Largest channel count of a block.")
    channels: tuple[int, ...] | None = setting(
        None, "Channels per block, 4x4 first (instead of fmap_base / fmap_max).")
    export_dtype: Literal["float16", "float32"] = setting(
        "float16", "Precision of the exported generator and warm-start file.")

    def __post_init__(self) -> None:
        if isinstance(self.kimg_per_stage, int | float):
            self.kimg_per_stage = (float(self.kimg_per_stage),)
        if self.batch_size < 1:
            raise GisUsageError(f"progan batch_size must be >= 1, got {self.batch_size}")
        if not 0.0 <= self.ema_beta < 1.0:
            raise GisUsageError(f"progan ema_beta must lie in [0, 1), got {self.ema_beta}")
        check_ranges(self, "progan", positive=(
            "kimg_per_stage", "stage_weights", "lr", "latent_dim", "resolution", "fmap_base",
            "fmap_max", "channels"), non_negative=("gp_weight", "drift"), fraction=("fade",),
            below_one=("betas",))
        if self.resolution is not None:
            check_resolution(int(self.resolution), "--resolution")


def check_resolution(res: int, where: str) -> None:
    """A one-line GisUsageError unless ``res`` is a resolution ProGAN can grow to (a power of
    two >= 4: the network doubles from 4x4)."""
    if res < 4 or res & (res - 1):
        below = 1 << (max(res, 4).bit_length() - 1)
        raise GisUsageError(f"progan grows its images from 4x4 by doubling, so it trains at 4, 8, "
                            f"16, 32, 64, ... pixels; {where} is {res}: pass --resolution "
                            f"{below} or {below * 2}")


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
    """The stage lengths of a new run: ``kimg_per_stage`` (one value or one per stage)
    gives an image plan; otherwise ``minutes`` less ``reserve_s`` is split over the stages
    by ``stage_weights``. Raises GisUsageError when neither is given or a count is wrong."""
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


def train_step(G: ProGANGenerator, D: ProGANDiscriminator, opt_g: torch.optim.Optimizer,
               opt_d: torch.optim.Optimizer, real: torch.Tensor, stage: int, alpha: float, *,
               rng: torch.Generator | None, gp_weight: float = 10.0, drift: float = 0.001):
    """One critic step and one generator step at (``stage``, ``alpha``).

    ``real``: (B, 3, r, r) in [-1, 1] at the stage's resolution. Returns detached
    (critic loss, generator loss, gradient penalty). The EMA update follows in the skeleton
    (:class:`gis.training.WeightAverage`).
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
    return loss_d.detach(), loss_g.detach(), gp.detach()


class ProGANTrainer(Trainer):
    """Progressive growing with WGAN-GP and an EMA generator (Karras et al. 2018)."""

    name = "progan"
    Config = ProGANTrainConfig
    checkpoint_file = CHECKPOINT
    checkpoint_format = GIS_TRAIN_FORMAT
    state_key = "progan_state"
    warm_start = True
    progress_format = ("{l_bar}{bar}| {n:.1f}/{total:.1f} {unit} "
                       "[{elapsed}<{remaining}{postfix}]")

    # ----------------------------------------------------------------- settings
    def read_warm_start(self, path: Path) -> Checkpoint:
        """A run's ``warmstart.safetensors`` (or the run folder holding one)."""
        warm = path / WARMSTART if path.is_dir() else path
        if not warm.is_file():
            raise CheckpointError(f"no progan warm-start file at {warm} (a run writes "
                                  f"{WARMSTART} beside progan.safetensors)")
        tensors, meta = load_checkpoint(warm)
        check_format(meta, warm, GIS_WARMSTART_FORMAT, "progan warm-start file")
        return Checkpoint("warm", warm, tensors, meta)

    def setup(self, carried: Checkpoint | None) -> tuple[int, dict[str, Any]]:
        c, minutes = self.config, self.run.options.minutes
        if carried is not None:  # the run it continues decides
            meta = carried.meta
            self.cfg = ProGANConfig.from_dict(meta["config"])
            hyper = {**HYPER_DEFAULTS, **meta["hyper"]}
            self.batch = int(meta["batch_size"])
            self.plan = Plan(**meta["plan"])
            seed = int(meta["seed"])
            st = dict(meta["progan_state"])
            if carried.kind == "warm":
                st["init_from"] = str(carried.path)
        else:
            res = int(c.resolution or self.dataset.resolution)
            if c.resolution is None:
                check_resolution(res, "the dataset's resolution")
            self.cfg = ProGANConfig(latent_dim=int(c.latent_dim), resolution=res,
                                    channels=list(c.channels or default_channels(
                                        res, c.fmap_base, c.fmap_max)))
            hyper = {"lr": c.lr, "betas": c.betas, "gp_weight": c.gp_weight, "drift": c.drift,
                     "ema_beta": c.ema_beta, "fade": c.fade, "mirror": c.mirror}
            self.batch = int(c.batch_size)
            self.plan = make_plan(self.cfg.num_stages, minutes=minutes,
                                  kimg_per_stage=c.kimg_per_stage,
                                  stage_weights=c.stage_weights, fade=c.fade,
                                  reserve_s=save_reserve_s(minutes))
            seed = int(self.run.options.seed)
            st = {"stage": 0, "stage_progress": 0.0, "step": 0, "images": 0, "elapsed_s": 0.0,
                  "done": False, "sessions": 0}
        self.hyper = {k: float(v) if isinstance(v, int | float) and not isinstance(v, bool)
                      else v for k, v in hyper.items()}
        self.hyper["betas"] = tuple(float(b) for b in hyper["betas"])
        self.hyper["mirror"] = bool(hyper["mirror"])
        # a finished time plan is extended by this session's budget (on the final stage)
        if carried is not None and st["done"] and self.plan.unit == "s" and minutes is not None:
            self.plan.lengths[-1] += max(1.0, minutes * 60.0 - save_reserve_s(minutes))
            st["done"] = False
        self.st = st
        return seed, st

    def build(self) -> None:
        dev, cfg, seed = self.run.device, self.cfg, self.run.seed
        self.gen_rng = torch.Generator(device=dev).manual_seed(seed)
        self.G = ProGANGenerator(cfg).to(dev)
        self.D = ProGANDiscriminator(cfg).to(dev)
        self.ema = WeightAverage(self.G, self.hyper["ema_beta"])
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=self.hyper["lr"],
                                      betas=self.hyper["betas"])
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=self.hyper["lr"],
                                      betas=self.hyper["betas"])
        # data: uint8 on the device, resized once if needed
        self.data = training_images(self.dataset.images, cfg.resolution, dev)
        if len(self.data) < 2:
            raise GisUsageError("progan training needs at least 2 images")
        self.fixed_z = torch.randn(64, cfg.latent_dim, generator=torch.Generator().manual_seed(
            seed + 7919)).to(dev)
        if not (self.run.out / "samples" / "reals.png").exists():
            idx = torch.randperm(len(self.data),
                                 generator=torch.Generator().manual_seed(seed))[:64]
            self.run.save_samples(uint8_batch_to_float(self.data[idx.to(dev)]), "reals")
        self.dataset_info = {"name": (getattr(self.dataset, "meta", {}) or {}).get("name"),
                             "num_images": len(self.data),
                             "resolution": int(self.dataset.resolution)}

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"g.": self.G, "d.": self.D}

    def averages(self) -> dict[str, WeightAverage]:
        return {"ema.": self.ema}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"opt_g.": self.opt_g, "opt_d.": self.opt_d}

    def generators(self) -> dict[str, torch.Generator]:
        return {"train": self.gen_rng}

    def checkpoint_meta(self) -> dict[str, Any]:
        plan = self.plan
        return {"config": self.cfg.to_dict(),
                "hyper": {**self.hyper, "betas": list(self.hyper["betas"])},
                "batch_size": self.batch,
                "plan": {"unit": plan.unit, "lengths": plan.lengths, "fade": plan.fade},
                "seed": self.run.seed, "dataset": self.dataset_info,
                "commands": self.run.commands, "last_losses": self.run.last_losses}

    # ----------------------------------------------------------------- loop
    def _alpha(self) -> float:
        return self.plan.alpha(self.st["stage"], self.st["stage_progress"])

    def _real_batch(self, stage: int, alpha: float) -> torch.Tensor:
        dev, batch = self.run.device, self.batch
        idx = torch.randint(len(self.data), (batch,), generator=self.gen_rng, device=dev)
        x = uint8_batch_to_float(self.data[idx])
        if self.hyper["mirror"]:
            flip = torch.rand(batch, generator=self.gen_rng, device=dev) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        x = resize_batch(x, 4 * 2 ** stage)
        if alpha < 1.0:
            x = torch.lerp(upsample2(F.avg_pool2d(x, 2)), x, alpha)
        return x

    def step(self) -> dict[str, torch.Tensor]:
        stage, alpha = self.st["stage"], self._alpha()
        real = self._real_batch(stage, alpha)
        loss_d, loss_g, gp = train_step(self.G, self.D, self.opt_g, self.opt_d, real, stage,
                                        alpha, rng=self.gen_rng,
                                        gp_weight=self.hyper["gp_weight"],
                                        drift=self.hyper["drift"])
        self.st["images"] += self.batch
        return {"loss_d": loss_d, "loss_g": loss_g, "gp": gp}

    def log_fields(self) -> dict[str, Any]:
        return {"kimg": self.st["images"] / 1000.0, "stage": self.st["stage"],
                "alpha": round(self._alpha(), 4)}

    def advance(self, dt: float) -> None:
        st, plan = self.st, self.plan
        st["stage_progress"] += float(self.batch) if plan.unit == "img" else dt
        stage = st["stage"]
        if st["stage_progress"] >= plan.lengths[stage]:
            if stage + 1 < self.cfg.num_stages:
                self._sample_grid(f"step{st['step']:07d}-{4 * 2 ** stage}px-end")
                st["stage"], st["stage_progress"] = stage + 1, 0.0
            else:
                st["done"] = True

    def finished(self) -> bool:
        return bool(self.st["done"])

    def progress_position(self) -> tuple[float, float]:
        plan, st = self.plan, self.st
        per_unit = 1000.0 if plan.unit == "img" else 1.0
        done = min(plan.total, sum(plan.lengths[:st["stage"]]) + st["stage_progress"])
        return done / per_unit, plan.total / per_unit

    @property
    def progress_unit(self) -> str:  # type: ignore[override]
        return "kimg" if self.plan.unit == "img" else "s"

    # ----------------------------------------------------------------- samples / export
    def _sample_grid(self, tag: str) -> None:
        with torch.no_grad():
            imgs = self.ema.module(self.fixed_z, self.st["stage"], self._alpha())
        res = self.cfg.resolution
        self.run.save_samples(F.interpolate(imgs, size=(res, res), mode="nearest"), tag)

    def sample(self, suffix: str) -> None:
        st = self.st
        self._sample_grid(f"step{st['step']:07d}-{4 * 2 ** st['stage']}px{suffix}")

    def export(self) -> Path:
        """The EMA generator grown so far (float16) + card, and the warm-start file."""
        st, cfg, run = self.st, self.cfg, self.run
        stage, alpha = st["stage"], self._alpha()
        grown = stage == cfg.num_stages - 1
        meta = self.checkpoint_meta()
        card = {
            "name": "progan",
            "description": "Progressive GAN generator (EMA weights)",
            "dataset": self.dataset_info,
            "resolution": cfg.resolution,
            "latent_dim": cfg.latent_dim,
            "config": cfg.to_dict(),
            "training": {
                "commands": run.commands, "seed": run.seed, "device": str(run.device),
                "machine": machine_info(run.device), "elapsed_s": round(st["elapsed_s"], 1),
                "steps": st["step"], "kimg": round(st["images"] / 1000.0, 2),
                "batch_size": self.batch, **meta["hyper"], "plan": meta["plan"],
                "stage_reached": stage, "alpha": alpha, "fully_grown": grown,
                "schedule_done": st["done"], "final_losses": run.last_losses,
                **({"init_from": st["init_from"]} if st.get("init_from") else {}),
                "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            },
            "torch": torch.__version__,
            "fid": None,
            "critic": {"file": f"{Path(EXPORT).stem}-critic.safetensors",
                       "network": "the WGAN-GP critic D as trained (not averaged), same stage"},
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
        critic = ProGANDiscriminator(sub)
        critic.load_state_dict({k: v for k, v in self.D.state_dict().items()
                                if int(k.split(".")[1]) <= stage})
        model = ProGAN(sub, card=card, critic=critic)  # save() writes the critic beside it
        model.net.load_state_dict({k: v for k, v in self.ema.module.state_dict().items()
                                   if int(k.split(".")[1]) <= stage})
        dtype = {"float16": torch.float16, "float32": torch.float32}[self.config.export_dtype]
        nets = {"g.": self.G, "d.": self.D, "ema.": self.ema.module}
        save_generator_file(run.out / WARMSTART, {f"{prefix}{k}": v for prefix, net in
                                                  nets.items() for k, v in
                                                  net.state_dict().items()},
                            {**meta, "format": GIS_WARMSTART_FORMAT, "progan_state": st},
                            dtype=dtype)
        return model.save(run.out / EXPORT, dtype=dtype, card=card)

    def summary(self) -> str:
        st = self.st
        return (f"progan: {st['step']} steps, {st['images'] / 1000:.1f} kimg, "
                f"{st['elapsed_s'] / 60:.1f} min of training; stage {st['stage']} "
                f"({4 * 2 ** st['stage']}px); schedule {'done' if st['done'] else 'not done'}; "
                f"losses {self.run.last_losses}")


def train_progan(dataset, **options: Any) -> Path:
    """Train (or resume) a ProGAN on ``dataset.images``; return the exported generator path.

    ``options``: the run options of :func:`gis.training.train` (``out``, ``seed``, ``device``,
    ``resume``, ``init_from``, ``minutes``, ``max_steps``, ``threads``, ``progress``) and the
    fields of :class:`ProGANTrainConfig`. ``resume=True`` continues from
    ``out/checkpoint.safetensors`` with its stored architecture, hyper-parameters and schedule
    (a finished time plan is extended by this session's ``minutes`` on the final stage).
    ``init_from``: a ``warmstart.safetensors`` (or a run folder holding one) to start a new
    run from: its G, D and EMA weights, architecture, hyper-parameters, batch size, seed and
    schedule position are taken over, with fresh Adam states and a fresh random stream.
    """
    return train(ProGANTrainer, dataset, **options)
