"""Realism scores a generator can offer (``Generator.realism``, ``Generator.realism_kinds``).

Two kinds (docs/PLUGINS.md, "Realism"); higher always means more realistic, one value per
sample (B,), in the kind's own units (compare values within one generator and kind only):

* ``"critic"``: the plugin's trained discriminator reads the images (e.g. the WGAN-GP critic
  of ProGAN, the LSGAN discriminator of DVBPR-GAN). Offered only where the plugin ships it.
* ``"latent-prior"``: the log-density of the latent's norm under the generator's latent prior
  N(0, I_d), relative to its most likely value (``latent_norm_log_prior``). Offered by the base
  class for every generator whose ``latent_prior`` is ``"normal"``.

What the latent prior can and cannot tell. Under N(0, I_d) the direction z / ||z|| is uniform
on the sphere and the norm follows a chi distribution with d degrees of freedom, concentrated
around sqrt(d - 1) (the Gaussian annulus: Vershynin, *High-Dimensional Probability*, 2018,
Thm 3.1.1; the reason PULSE, Menon et al. CVPR 2020, searches the sphere of radius sqrt(d)).
So the prior judges only the norm: it flags latents far from the typical set, but cannot
prefer one direction to another. gis's loops renormalise every latent to mean 0, std 1
(divisor d - 1), i.e. exactly onto the norm sqrt(d - 1): there the score is 0 for every
latent and its gradient vanishes. It moves latents only where a loop does not renormalise
each row (``normalize="batch"``, the authors' code; a plugin's own loop). Realism that
separates a clean product from speckle needs the critic.
"""

from __future__ import annotations

from typing import Any

import torch

from .errors import GisUsageError, PluginContractError

#: every realism kind a generator may declare in ``realism_kinds``, in the order a realism term
#: prefers them when none is chosen
REALISM_KINDS = ("critic", "latent-prior")


def latent_norm_log_prior(latents: torch.Tensor) -> torch.Tensor:
    """log p(||z||) - log p(sqrt(d - 1)) under z ~ N(0, I_d), per row: (B,) nats, <= 0.

    latents: (B, d) float. The norm r = ||z|| of a standard normal vector follows the chi
    distribution with d degrees of freedom, log p(r) = (d - 1) log r - r^2 / 2 + const, whose
    mode (the typical set) is r = sqrt(d - 1); the score is 0 there and about -(r - sqrt(d-1))^2
    nearby (second derivative -2). Differentiable; rows of norm 0 are floored at 1e-12.
    """
    if latents.ndim != 2:
        raise GisUsageError(f"the latent prior reads latents (B, d), got {tuple(latents.shape)}")
    d = latents.shape[1]
    r2 = latents.float().square().sum(1).clamp_min(1e-12)
    if d == 1:  # chi with 1 degree of freedom: mode 0
        return -0.5 * r2
    m2 = float(d - 1)
    return 0.5 * (d - 1) * torch.log(r2 / m2) - 0.5 * (r2 - m2)


def generator_name(generator: Any) -> str:
    """How messages name a generator: its card's name, else its class name."""
    card = getattr(generator, "card", None)
    name = getattr(card, "name", None)
    return str(name) if name else type(generator).__name__


def resolve_kind(generator: Any, kind: str | None, what: str = "realism") -> str:
    """The realism kind to use: ``kind`` when ``generator`` offers it, else (None) the first it
    offers. Raises a one-line GisUsageError when it offers none, or not ``kind``."""
    if kind is not None and kind not in REALISM_KINDS:
        raise GisUsageError(f"{what}: unknown realism kind {kind!r}; choose one of "
                            f"{', '.join(REALISM_KINDS)}")
    offered = tuple(getattr(generator, "realism_kinds", ()) or ())
    name = generator_name(generator)
    if not offered:
        raise GisUsageError(f"{what}: the generator {name} offers no realism score (its "
                            "realism_kinds is empty: no critic shipped, latent prior not "
                            "N(0, I)); drop the term (weight 0)")
    if kind is None:
        return offered[0]
    if kind not in offered:
        raise GisUsageError(f"{what}: the generator {name} offers no {kind!r} realism score; it "
                            f"offers {', '.join(offered)}")
    return kind


def base_realism(generator: Any, images: torch.Tensor | None, latents: torch.Tensor | None,
                 kind: str | None) -> torch.Tensor:
    """What ``Generator.realism`` scores itself: "latent-prior" (``latent_norm_log_prior`` of
    ``latents`` (B, d)). A plugin scores "critic" (``images`` (B, 3, R, R) in its
    ``output_range``, ``labels`` (B,) long when conditional) in its own ``realism``."""
    kind = resolve_kind(generator, kind)
    if kind != "latent-prior":
        raise PluginContractError(f"{type(generator).__name__} declares the {kind!r} realism "
                                  "but its realism() does not score it")
    if latents is None:
        raise GisUsageError("the latent-prior realism reads latents (B, latent_dim)")
    return latent_norm_log_prior(latents)
