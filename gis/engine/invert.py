"""GAN inversion: find z such that G(z) looks like the seller's item (LPIPS + MSE)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..interfaces import Generator
from .common import check_finite, frozen, loss_bar, to_range
from .settings import InvertSettings


@dataclass
class InversionResult:
    latent: torch.Tensor  # (1, latent_dim), normalised to mean 0 / std 1
    image: torch.Tensor  # (1, 3, R, R) in [0, 1]: G(latent)
    target: torch.Tensor  # (1, 3, R, R) in [0, 1]: the item at the generator's resolution
    lpips: float  # final LPIPS term of the kept start
    mse: float  # final MSE term (in the generator's output range)
    history: dict[str, list[float]] = field(default_factory=dict)  # per step, kept start
    settings: InvertSettings = field(default_factory=InvertSettings)


def normalise_rows(z: torch.Tensor) -> torch.Tensor:
    """Each row to mean 0, std 1 (unbiased std, as torch.std)."""
    return (z - z.mean(dim=1, keepdim=True)) / z.std(dim=1, keepdim=True)


def invert(item: torch.Tensor, generator: Generator, *, settings: InvertSettings | None = None,
           lpips=None, progress: bool = False, labels: torch.Tensor | None = None,
           **overrides) -> InversionResult:
    """Invert ``item`` into ``generator``'s latent space.

    item:  (1, 3, H, W) in [-1, 1] (any H, W; resized to the generator's resolution).
    lpips: an LPIPS module (from the ``lpips`` loss plugin); built from settings if None.
    Settings are keyword-only (``InvertSettings`` fields); the generator is frozen, eval mode.
    """
    settings = settings or InvertSettings(**overrides)
    settings.validate()
    assert item.ndim == 4 and item.shape[:2] == (1, 3), f"item must be (1,3,H,W), got {item.shape}"
    device = generator.device
    res = generator.resolution
    target = F.interpolate(item.to(device), size=(res, res), mode="bilinear",
                           align_corners=False, antialias=True).clamp(-1, 1)
    target_g = to_range(target, (-1.0, 1.0), generator.output_range)  # for MSE
    if lpips is None and settings.lpips_weight > 0:
        from ..plugins import get_loss

        lpips = get_loss("lpips", net=settings.lpips_net).to(device)
    side = settings.loss_resolution
    target_l = F.interpolate(target, size=(side, side), mode="bilinear", align_corners=False)

    r = settings.restarts
    g = torch.Generator().manual_seed(settings.seed)
    z = normalise_rows(torch.randn(r, generator.latent_dim, generator=g)).to(device)
    z.requires_grad_(True)
    opt = torch.optim.Adam([z], lr=settings.lr)
    history: dict[str, list[torch.Tensor]] = {"lpips": [], "mse": [], "total": []}
    lab = None if labels is None else labels.to(device).expand(r)

    with frozen(generator), loss_bar(settings.steps, "invert", progress) as bar:
        for _ in range(settings.steps):
            # synthesise
            x = generator.synthesize(z, labels=lab)
            # losses (per start, so the restarts do not interact)
            mse = ((x - target_g) ** 2).flatten(1).mean(1)
            if settings.lpips_weight > 0:
                x_l = to_range(x, generator.output_range, (-1.0, 1.0))
                x_l = F.interpolate(x_l, size=(side, side), mode="bilinear", align_corners=False)
                lp = lpips(x_l, target_l.expand(r, -1, -1, -1), reduction="none")
            else:
                lp = torch.zeros_like(mse)
            total = settings.lpips_weight * lp + settings.mse_weight * mse
            check_finite({"lpips": lp, "mse": mse}, "inversion")
            # step
            opt.zero_grad(set_to_none=True)
            total.sum().backward()
            opt.step()
            # renormalise
            with torch.no_grad():
                z.copy_(normalise_rows(z))
            for k, v in (("lpips", lp), ("mse", mse), ("total", total)):
                history[k].append(v.detach())
            bar.update(lpips=lp.min(), mse=mse.min())

    with torch.no_grad():
        x = generator.synthesize(z, labels=lab)
        mse = ((x - target_g) ** 2).flatten(1).mean(1)
        if settings.lpips_weight > 0:
            x_l = F.interpolate(to_range(x, generator.output_range, (-1.0, 1.0)),
                                size=(side, side), mode="bilinear", align_corners=False)
            lp = lpips(x_l, target_l.expand(r, -1, -1, -1), reduction="none")
        else:
            lp = torch.zeros_like(mse)
        best = int(torch.argmin(settings.lpips_weight * lp + settings.mse_weight * mse))
    return InversionResult(
        latent=z.detach()[best:best + 1].clone(),
        image=generator.to_unit(x[best:best + 1]).detach(),
        target=((target + 1) / 2).detach(),
        lpips=float(lp[best]),
        mse=float(mse[best]),
        history={k: [float(t[best]) for t in v] for k, v in history.items()},
        settings=settings,
    )
