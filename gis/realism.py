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

Floors. A critic's score has no absolute meaning; ``Generator.realism_floor(kind)`` gives the
score that 95 % of held-out real images reach (``calibrate_floor``), below which an image is
not taken for a real one. ``calibrate_realism`` computes it through the Generator interface,
with the measures a plugin records beside it (``roc_auc`` real vs generated, the share of
samples below the floor, the agreement with a dataset's ground-truth realism).
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


def calibrate_floor(scores, quantile: float = 0.05) -> float:
    """The realism floor of a critic: the ``quantile`` of its scores on held-out *real* images
    (default 0.05, so that 95 % of real items score at or above it), in the scores' units.

    scores: (N,) array-like of finite floats, N >= 1 / quantile (at least one real image per
    rejected share, e.g. 20 for the 5th percentile; use >= 1,000 for a stable floor). Linear
    interpolation between order statistics (``numpy.quantile``'s default, type 7 of Hyndman &
    Fan 1996). Raises GisUsageError for too few or non-finite scores or a quantile outside
    (0, 1). What ``Generator.realism_floor`` returns for a calibrated kind.
    """
    import numpy as np

    s = np.asarray(torch.as_tensor(scores).detach().cpu().double().reshape(-1))
    if not 0.0 < quantile < 1.0:
        raise GisUsageError(f"realism floor: quantile must lie in (0, 1), got {quantile}")
    if len(s) < 1.0 / min(quantile, 1.0 - quantile):
        raise GisUsageError(f"realism floor: {len(s)} scores are too few for the {quantile:g} "
                            f"quantile (need >= {int(np.ceil(1 / min(quantile, 1 - quantile)))})")
    if not np.isfinite(s).all():
        raise GisUsageError("realism floor: the scores hold NaN or infinite values")
    return float(np.quantile(s, quantile))


def roc_auc(positive, negative) -> float:
    """Area under the ROC curve of scores that should rank ``positive`` (P,) above
    ``negative`` (N,): P(s_pos > s_neg) + P(s_pos = s_neg) / 2, in [0, 1] (0.5: no
    separation). The Mann-Whitney U statistic over P * N (scipy.stats.mannwhitneyu; Hanley &
    McNeil, Radiology 1982). Raises GisUsageError when either side is empty."""
    import numpy as np
    from scipy.stats import mannwhitneyu

    pos = np.asarray(torch.as_tensor(positive).detach().cpu().double().reshape(-1))
    neg = np.asarray(torch.as_tensor(negative).detach().cpu().double().reshape(-1))
    if not len(pos) or not len(neg):
        raise GisUsageError(f"ROC AUC needs scores on both sides, got {len(pos)} positive and "
                            f"{len(neg)} negative")
    return float(mannwhitneyu(pos, neg).statistic / (len(pos) * len(neg)))


@torch.no_grad()
def realism_scores(generator: Any, images: torch.Tensor, *, kind: str | None = None,
                   labels: torch.Tensor | None = None, batch_size: int = 250) -> torch.Tensor:
    """``generator.realism(images=..., kind=kind, labels=...)`` in batches: (N,) float32 on the
    CPU for images (N, 3, R, R) in the generator's ``output_range``."""
    dev = generator.device
    out = []
    for i in range(0, len(images), batch_size):
        lab = None if labels is None else labels[i:i + batch_size].to(dev)
        out.append(generator.realism(images=images[i:i + batch_size].to(dev), kind=kind,
                                     labels=lab).float().cpu())
    return torch.cat(out) if out else torch.zeros(0)


def calibrate_realism(generator: Any, real_images: torch.Tensor, *, kind: str = "critic",
                      real_labels: torch.Tensor | None = None, n_fake: int = 2000,
                      seed: int = 1, quantile: float = 0.05, truth: Any = None,
                      batch_size: int = 250) -> dict[str, Any]:
    """Calibrate ``generator``'s ``kind`` realism on held-out real images: the floor and how
    well the score separates real from generated images (a JSON-ready dict).

    real_images: (N, 3, R, R) in the generator's ``output_range``, never seen in training
    (N >= 1,000 advised); real_labels (N,) long for a conditional generator. ``n_fake``
    samples of the generator (latents seeded with ``seed``; a conditional generator's labels
    drawn from ``real_labels``). ``truth``: a ``GroundTruth`` whose ``realism`` judges the
    samples (None, or a truth without realism: not measured).

    Keys: ``kind``, ``floor`` (``calibrate_floor`` of the real scores at ``quantile``, in the
    kind's units), ``quantile``, ``n_real``, ``n_fake``, ``fake_seed``, ``percentiles`` and the
    ``real_scores`` / ``fake_scores`` at them, ``auc_real_vs_generated`` (``roc_auc``),
    ``share_generated_below_floor``, ``share_real_below_floor``; with a truth, ``truth``:
    ``share_accepted`` (of the samples), ``share_real_accepted``, ``auc_accepted_vs_rejected``
    (does the score rank the samples the truth accepts above those it rejects),
    ``share_rejected_below_floor``, ``share_accepted_below_floor`` (None where a side is
    empty).
    """
    import numpy as np

    kind = resolve_kind(generator, kind, what="realism calibration")
    conditional = bool(getattr(generator, "num_classes", 0))
    if conditional and real_labels is None:
        raise GisUsageError(f"realism calibration: {generator_name(generator)} is "
                            "class-conditional; pass the real images' labels")
    real = realism_scores(generator, real_images, kind=kind,
                          labels=real_labels if conditional else None, batch_size=batch_size)
    floor = calibrate_floor(real, quantile)
    rng = torch.Generator().manual_seed(seed)
    fake_labels = (real_labels[torch.randint(len(real_labels), (n_fake,), generator=rng)]
                   if conditional else None)
    parts = []
    with torch.no_grad():
        for i in range(0, n_fake, batch_size):
            z = generator.sample_latents(min(batch_size, n_fake - i), generator=rng)
            lab = None if fake_labels is None else fake_labels[i:i + batch_size].to(z.device)
            parts.append(generator.synthesize(z, labels=lab).cpu())
    fake_images = torch.cat(parts)
    fake = realism_scores(generator, fake_images, kind=kind, labels=fake_labels,
                          batch_size=batch_size)
    pct = [5, 25, 50, 75, 95]

    def at(x: torch.Tensor) -> list[float]:
        return [round(float(v), 4) for v in np.percentile(x.numpy(), pct)]

    doc: dict[str, Any] = {
        "kind": kind, "floor": floor, "quantile": quantile, "n_real": int(len(real)),
        "n_fake": int(n_fake), "fake_seed": int(seed), "percentiles": pct,
        "real_scores": at(real), "fake_scores": at(fake),
        "auc_real_vs_generated": roc_auc(real, fake),
        "share_generated_below_floor": float((fake < floor).double().mean()),
        "share_real_below_floor": float((real < floor).double().mean()),
    }
    verdict = None if truth is None else truth.realism(fake_images,
                                                       value_range=generator.output_range)
    if verdict is not None:
        ok = torch.as_tensor(np.asarray(verdict.realistic, dtype=bool))
        real_ok = truth.realism(real_images, value_range=generator.output_range).realistic
        both = bool(ok.any() and (~ok).any())
        doc["truth"] = {
            "share_accepted": float(ok.double().mean()),
            "share_real_accepted": float(np.mean(real_ok)),
            "auc_accepted_vs_rejected": roc_auc(fake[ok], fake[~ok]) if both else None,
            "share_rejected_below_floor": (float((fake[~ok] < floor).double().mean())
                                           if (~ok).any() else None),
            "share_accepted_below_floor": (float((fake[ok] < floor).double().mean())
                                           if ok.any() else None),
        }
    return doc
