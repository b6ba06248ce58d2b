"""How far a recommender's scores move under changes no user would count as a better product.

The shifting loop optimises images against the recommender, so a recommender whose scores
rise under imperceptible perturbations or speckle rewards artefacts instead of products
(docs/MODELS.md, "dvbpr-robust"). For ``n`` held-out items, each scored for its own ``users``
random users (mean score over them, as the engine's ``mean`` aggregation), this measures the
change of the score under:

* ``pgd_<eps>``: an L-inf bounded attack that *raises* the score (projected gradient ascent,
  Madry et al. 2018: ``steps`` steps of size 2.5 * eps / steps, no random start), eps in
  [0, 1] pixel units (2/255, 4/255, 8/255 by default): the worst case of an imperceptible
  change;
* ``noise``: Gaussian pixel noise of std 4/255 (a random imperceptible change);
* ``speckle``: 5 % of the pixels replaced by random colours (the artefact GAN variants show).

Changes are reported raw and divided by the standard deviation of the same users' scores over
the catalogue (``catalogue_std``), which makes models with different score scales comparable:
a change of 1 moves an item by one catalogue standard deviation.
"""

from __future__ import annotations

import numpy as np
import torch

DEFAULT_EPS = (2 / 255, 4 / 255, 8 / 255)


def _mean_score(rec, images01: torch.Tensor, users: torch.Tensor) -> torch.Tensor:
    """Mean score (B,) over ``users`` (B, U) rows of images in [0, 1] (B, 3, H, W)."""
    x = rec.prepare(images01, (0.0, 1.0))
    phi = rec.embed(x)                                                    # (B, K)
    theta = rec.user_vectors[users]                                       # (B, U, K)
    s = torch.einsum("bk,buk->bu", phi, theta.to(phi.dtype))
    bias = rec.item_bias(x)
    return (s if bias is None else s + bias[:, None]).mean(1)


def pgd_raise(rec, images01: torch.Tensor, users: torch.Tensor, *, eps: float,
              steps: int = 10) -> torch.Tensor:
    """Images in [0, 1] within L-inf ``eps`` of ``images01`` whose mean score over ``users``
    is (locally) maximal: projected gradient ascent with sign steps of 2.5 * eps / steps."""
    delta = torch.zeros_like(images01, requires_grad=True)
    step = 2.5 * eps / steps
    for _ in range(steps):
        score = _mean_score(rec, (images01 + delta).clamp(0, 1), users).sum()
        (grad,) = torch.autograd.grad(score, delta)
        with torch.no_grad():
            delta += step * grad.sign()
            delta.clamp_(-eps, eps)
    return (images01 + delta.detach()).clamp(0, 1)


def recommender_robustness(rec, dataset, *, n: int = 200, users: int = 10, seed: int = 0,
                           eps: tuple[float, ...] = DEFAULT_EPS, steps: int = 10,
                           batch_size: int = 50) -> dict:
    """Score changes of ``rec`` on ``n`` held-out items of ``dataset`` (see the module
    docstring); returns a JSON-ready dict of means (raw and in catalogue standard
    deviations) per perturbation."""
    g = torch.Generator().manual_seed(seed)
    n = min(n, dataset.num_heldout)
    items = torch.randperm(dataset.num_heldout, generator=g)[:n]
    user_rows = torch.randint(0, rec.num_users, (n, users), generator=g)
    # each item's users: their scores' spread over the catalogue sets the scale
    with torch.no_grad():
        cat = dataset.image_tensor(np.arange(dataset.num_items))          # [-1, 1]
        phi_cat = torch.cat([rec.embed(rec.prepare(cat[s:s + 500], (-1.0, 1.0)))
                             for s in range(0, len(cat), 500)])           # (N, K)
        cat_scores = phi_cat @ rec.user_vectors.T.to(phi_cat.dtype)       # (N, U_all)
        scale = cat_scores[:, user_rows].mean(-1).std(0)                  # (n,)
    kinds = [f"pgd_{round(e * 255)}/255" for e in eps] + ["noise", "speckle"]
    deltas: dict[str, list[torch.Tensor]] = {k: [] for k in kinds}
    base_scores = []
    for s in range(0, n, batch_size):
        idx = items[s:s + batch_size]
        u = user_rows[s:s + batch_size]
        x = (dataset.heldout_tensor(idx.numpy()) + 1) / 2                 # [0, 1]
        with torch.no_grad():
            base = _mean_score(rec, x, u)
        base_scores.append(base)
        for e, k in zip(eps, kinds, strict=False):
            adv = pgd_raise(rec, x, u, eps=e, steps=steps)
            with torch.no_grad():
                deltas[k].append(_mean_score(rec, adv, u) - base)
        with torch.no_grad():
            noisy = (x + (4 / 255) * torch.randn(x.shape, generator=g)).clamp(0, 1)
            deltas["noise"].append(_mean_score(rec, noisy, u) - base)
            sel = (torch.rand(x.shape[0], 1, *x.shape[2:], generator=g) < 0.05).float()
            speckled = x * (1 - sel) + torch.rand(x.shape, generator=g) * sel
            deltas["speckle"].append(_mean_score(rec, speckled, u) - base)
    out = {"n_items": n, "users_per_item": users, "seed": seed, "pgd_steps": steps,
           "catalogue_std_mean": float(scale.mean()),
           "base_score_mean": float(torch.cat(base_scores).mean())}
    for k, v in deltas.items():
        d = torch.cat(v)
        out[k] = {"mean": float(d.mean()), "mean_in_catalogue_std": float((d / scale).mean()),
                  "share_raised": float((d > 0).float().mean())}
    return out
