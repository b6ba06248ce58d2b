"""DVBPR personalized design (Kang et al. 2017), the paper's baseline.

Maximise mean_z theta_u . phi(resize(G(z, c))) - eta * mean_z (D(G(z, c), c) - 1)^2 over
16 codes z ~ N(0, 0.5^2) with Adam (lr 0.05, 10 steps, no clipping). The non-personalized
variant returns plain samples G(z, c).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..interfaces import Generator, Recommender
from .common import check_finite, frozen, loss_bar


@dataclass
class DesignResult:
    latents: torch.Tensor  # (n, d)
    images: torch.Tensor  # (n, 3, R, R) in [0, 1]
    scores: list[float]  # theta_u . phi for each design (mean over users if several)
    history: dict[str, list[float]] = field(default_factory=dict)


def design(generator: Generator, recommender: Recommender, users: torch.Tensor, category: int,
           *, n: int = 16, steps: int = 10, lr: float = 0.05, eta: float = 1.0,
           sigma: float = 0.5, personalized: bool = True, seed: int = 0,
           z: torch.Tensor | None = None, progress: bool = False) -> DesignResult:
    """Designs of ``category`` for user rows ``users`` (the mean user vector is the target).

    ``z`` (n, d) may be given to start from specific codes (e.g. a shared random draw).
    """
    import math

    from ..errors import GisUsageError

    if not (n >= 1 and steps >= 0 and 0 < lr < math.inf):
        raise GisUsageError(f"design needs n >= 1, steps >= 0 and a finite lr > 0 (got {n}, "
                            f"{steps}, {lr})")
    if not (0 <= eta < math.inf and 0 < sigma < math.inf):
        raise GisUsageError(f"design needs a finite eta >= 0 (the realism weight; 0 switches "
                            f"it off) and sigma > 0 (got eta={eta}, sigma={sigma})")
    dev = generator.device
    g = torch.Generator().manual_seed(seed)
    if z is None:
        z = torch.randn(n, generator.latent_dim, generator=g) * sigma
    z = z.to(dev).clone().requires_grad_(personalized and steps > 0)
    labels = torch.full((len(z),), int(category), dtype=torch.long, device=dev)
    theta = recommender.user_vectors[users.to(recommender.user_vectors.device)].float()
    theta = theta.mean(0).to(dev)
    history: dict[str, list[float]] = {"pref": [], "realism": []}

    def pref_of(x):
        return recommender.embed(recommender.prepare(x, generator.output_range)) @ theta

    with frozen(generator, recommender):
        if personalized and steps > 0:
            opt = torch.optim.Adam([z], lr=lr)
            with loss_bar(steps, "design", progress) as bar:
                for _ in range(steps):
                    x = generator.synthesize(z, labels=labels)
                    pref = pref_of(x).mean()
                    real = ((generator.discriminate(x, labels=labels) - 1) ** 2).mean() \
                        if eta > 0 else torch.zeros((), device=dev)
                    check_finite({"preference": pref, "realism": real}, "design")
                    loss = -pref + eta * real
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    history["pref"].append(float(pref.detach()))
                    history["realism"].append(float(real.detach()))
                    bar.update(pref=pref, realism=real)
        with torch.no_grad():
            x = generator.synthesize(z, labels=labels)
            scores = pref_of(x)
    return DesignResult(latents=z.detach().cpu(), images=generator.to_unit(x).cpu(),
                        scores=[float(s) for s in scores], history=history)
