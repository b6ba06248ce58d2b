"""A DVBPR that small image perturbations and pixel noise cannot fool as easily.

The shifting loop of gis optimises images against the recommender, and a recommender trained
only on clean product photos rewards artefacts (speckle, colour noise) that no user would
buy. These are the training pieces of the robust DVBPR shipped beside the paper's
(``dvbpr-robust``; docs/MODELS.md): Gaussian-noise augmentation and FGSM adversarial training
with a random start (Wong, Rice & Kolter, ICLR 2020) applied in image space to the BPR
objective, with the adversarial BPR term weighted as in AMR (Tang et al., TKDE 2019), which
perturbs image features instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from .model import DVBPR
    from .trainer import ItemImages


def robust_bpr_loss(model: DVBPR, batches: ItemImages, triplets: torch.Tensor, *,
                    lambda_cnn: float, lambda_theta: float, adv_eps: float, adv_weight: float,
                    noise_std: float, generator: torch.Generator,
                    decay: list[torch.Tensor] | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """(total loss, clean BPR term) of a batch of (u, i, j) triplets (B, 3), trained to resist
    small image perturbations and pixel noise (a robust DVBPR, docs/MODELS.md).

    Augmentation: each image gets Gaussian noise of std ``U(0, noise_std)`` ([0, 1] pixel
    units). Adversarial training: FGSM with a random start (Wong, Rice & Kolter, ICLR 2020) in
    image space, L-inf radius ``adv_eps`` ([0, 1] units), step 1.25 * eps, pushing
    x_uij = theta_u . (phi(X_i) - phi(X_j)) down; the loss adds ``adv_weight`` times the BPR of
    the perturbed pair to the clean one, as AMR (Tang et al., TKDE 2019) does for image
    features. Images are in [-1, 1], so a [0, 1] radius counts twice there.
    """
    u, i, j = triplets[:, 0], triplets[:, 1], triplets[:, 2]
    x = batches(torch.cat([i, j]))                                        # (2B, 3, S, S)
    if noise_std > 0:
        sigma = torch.rand(x.shape[0], 1, 1, 1, generator=generator, device=x.device)
        noise = torch.randn(x.shape, generator=generator, device=x.device)
        x = (x + noise * sigma * (2.0 * noise_std)).clamp(-1.0, 1.0)
    theta_u = model.theta[u]                                              # (B, K)

    def pair_scores(images: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        phi_i, phi_j = model.cnn(images).chunk(2)
        return (theta * (phi_i - phi_j)).sum(1)                           # (B,)

    x_uij = pair_scores(x, theta_u)
    bpr = -F.logsigmoid(x_uij).sum()
    total = bpr
    if adv_eps > 0 and adv_weight > 0:
        eps = 2.0 * adv_eps                                               # in [-1, 1] units
        delta = (torch.rand(x.shape, generator=generator, device=x.device) * 2 - 1) * eps
        delta.requires_grad_(True)
        attack = -F.logsigmoid(pair_scores(x + delta, theta_u.detach())).sum()
        (grad,) = torch.autograd.grad(attack, delta)
        delta = (delta.detach() + 1.25 * eps * grad.sign()).clamp(-eps, eps)
        x_adv = (x + delta).clamp(-1.0, 1.0)
        total = total + adv_weight * -F.logsigmoid(pair_scores(x_adv, theta_u)).sum()
    from .trainer import bpr_regularisation

    reg_cnn, reg_theta = bpr_regularisation(model, theta_u, lambda_cnn=lambda_cnn,
                                            lambda_theta=lambda_theta, decay=decay)
    return total + reg_cnn + reg_theta, bpr


def augmentation(c: Any) -> str:
    """The card's description of the robust-training settings ("none" for the paper's)."""
    parts = []
    if c.noise_std > 0:
        parts.append(f"gaussian pixel noise, std U(0, {c.noise_std:g}) in [0, 1] units")
    if c.adv_eps > 0 and c.adv_weight > 0:
        parts.append(f"FGSM-RS adversarial training (Wong et al. 2020), L-inf eps {c.adv_eps:g} "
                     f"in [0, 1] units, weight {c.adv_weight:g} (AMR-style)")
    return "; ".join(parts) or "none"
