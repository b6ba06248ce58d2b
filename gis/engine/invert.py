"""GAN inversion: find z such that G(z) looks like the seller's item (docs/METHOD.md,
"Inversion"). The objective is a weighted sum of registered loss terms, LPIPS(VGG) + MSE by
default."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..errors import GisUsageError
from ..interfaces import Generator, LossContext, LossTerm
from .common import autocast, frozen, loss_bar, lr_scheduler, resolve_precision, to_range
from .objective import Objective
from .settings import InvertSettings, invert_settings


@dataclass
class InversionResult:
    latent: torch.Tensor  # (1, latent_dim), normalised to mean 0 / std 1
    image: torch.Tensor  # (1, 3, R, R) in [0, 1]: G(latent)
    target: torch.Tensor  # (1, 3, R, R) in [0, 1]: the item at the generator's resolution
    losses: dict[str, float] = field(default_factory=dict)  # final term values, kept start
    history: dict[str, list[float]] = field(default_factory=dict)  # per step, kept start
    settings: InvertSettings = field(default_factory=InvertSettings)

    @property
    def lpips(self) -> float | None:
        """Final LPIPS term of the kept start (None when the run had no ``lpips`` term)."""
        return self.losses.get("lpips")

    @property
    def mse(self) -> float | None:
        """Final MSE term (pixels in the generator's output range; None without ``mse``)."""
        return self.losses.get("mse")


def normalise_rows(z: torch.Tensor) -> torch.Tensor:
    """Each row to mean 0, std 1 (unbiased std, as torch.std)."""
    return (z - z.mean(dim=1, keepdim=True)) / z.std(dim=1, keepdim=True)


@torch.no_grad()
def _closest_starts(generator: Generator, objective: Objective, settings: InvertSettings,
                    target: torch.Tensor, labels: torch.Tensor | None, g: torch.Generator,
                    r: int, chunk: int = 32) -> torch.Tensor:
    """The ``r`` of ``settings.init_samples`` seeded random latents whose images the inversion
    objective scores closest to the item (best first): starts in the item's basin rather than
    anywhere, the sampling initialisation of GAN inversion (Xia et al., "GAN Inversion: A
    Survey", TPAMI 2022, section 3.2). (r, d) on the generator's device."""
    device = generator.device
    cand = normalise_rows(torch.randn(settings.init_samples, generator.latent_dim, generator=g))
    totals = []
    with frozen(generator, *objective.modules):
        for s in range(0, len(cand), chunk):
            zc = cand[s:s + chunk].to(device)
            lab = None if labels is None else labels.to(device).expand(len(zc))
            x = generator.synthesize(zc, labels=lab).float()
            total, _ = objective(LossContext(stage="invert", step=0, images=x, latents=zc,
                                             generator=generator, settings=settings,
                                             target=target, labels=lab))
            totals.append(total.float().cpu().expand(len(zc)))
    best = torch.cat(totals).argsort()[:r]
    return cand[best].to(device)


def invert(item: torch.Tensor, generator: Generator, *, settings: InvertSettings | None = None,
           terms: Mapping[str, LossTerm] | None = None, progress: bool = False,
           labels: torch.Tensor | None = None, **overrides) -> InversionResult:
    """Invert ``item`` into ``generator``'s latent space.

    item:   (1, 3, H, W) in [-1, 1] (any H, W; resized to the generator's resolution).
    terms:  prebuilt loss terms by name (e.g. an LPIPS module reused across calls), used
            instead of building them from the registry; their weights come from the settings.
    labels: (1,) long class of a conditional generator, else None.
    Settings are keyword-only (``InvertSettings`` fields; ``losses`` merges into the paper's
    weights). The generator is frozen, eval mode; the global RNG is neither read nor reseeded
    (the starts come from ``settings.seed``). Raises GisUsageError for bad input or settings.
    """
    settings = settings or invert_settings(**overrides)
    settings.validate()
    if not isinstance(item, torch.Tensor) or item.ndim != 4 or tuple(item.shape[:2]) != (1, 3):
        got = tuple(item.shape) if isinstance(item, torch.Tensor) else type(item).__name__
        raise GisUsageError(f"the item must be one RGB image (1, 3, H, W), got {got}")
    device = generator.device
    res = generator.resolution
    # what ran is what the settings (and so result.json) say
    settings = dataclasses.replace(settings, precision=resolve_precision(settings.precision,
                                                                         device))
    target = F.interpolate(item.to(device), size=(res, res), mode="bilinear",
                           align_corners=False, antialias=True).clamp(-1, 1)
    target_g = to_range(target, (-1.0, 1.0), generator.output_range)
    objective = Objective.build("invert", settings.losses, settings.loss_options,
                                prebuilt=terms, device=device, generator=generator)

    r = settings.restarts
    g = torch.Generator().manual_seed(settings.seed)
    z = normalise_rows(torch.randn(r, generator.latent_dim, generator=g)).to(device)
    if settings.init_samples:
        z = _closest_starts(generator, objective, settings, target_g, labels, g, r)
    z.requires_grad_(True)
    opt = torch.optim.Adam([z], lr=settings.lr)
    schedulers = lr_scheduler([opt], settings.lr_schedule, settings.steps)
    history: dict[str, list[torch.Tensor]] = {}
    lab = None if labels is None else labels.to(device).expand(r)

    def losses(step: int, precision: str = "float32"):
        """Synthesise G(z) and evaluate the objective, per start (the starts do not interact):
        each step of the loop (in ``settings.precision``), and the choice of the best start
        after it (float32)."""
        with autocast(device, precision):
            x = generator.synthesize(z, labels=lab).float()
            total, values = objective(LossContext(
                stage="invert", step=step, images=x, latents=z, generator=generator,
                settings=settings, target=target_g, labels=lab))
        return x, total.float(), {k: v.float() for k, v in values.items()}

    with frozen(generator, *objective.modules), loss_bar(settings.steps, "invert",
                                                         progress) as bar:
        for step in range(settings.steps):
            # synthesise, losses
            _, total, values = losses(step, settings.precision)
            # step
            opt.zero_grad(set_to_none=True)
            if total.requires_grad:
                total.sum().backward()
            opt.step()
            for sched in schedulers:
                sched.step()
            # renormalise
            with torch.no_grad():
                z.copy_(normalise_rows(z))
            for k, v in {**values, "total": total}.items():
                history.setdefault(k, []).append(v.detach())
            bar.update(**{k: v.min() for k, v in values.items()})
        with torch.no_grad():
            x, total, values = losses(settings.steps)
    best = int(torch.argmin(total))
    return InversionResult(
        latent=z.detach()[best:best + 1].clone(),
        image=generator.to_unit(x[best:best + 1]).detach(),
        target=((target + 1) / 2).detach(),
        losses={k: float(v[best]) for k, v in values.items()},
        history={k: [float(t[best]) for t in v] for k, v in history.items()},
        settings=settings,
    )
