"""Latent shifting: n bounded shifts of z whose images the target users prefer, kept distinct
by a shift predictor (Kumar, Sharma & Narayan 2025, §"GAN inversion and shifting")."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .. import ops
from ..interfaces import Generator, Recommender
from .common import check_finite, frozen, loss_bar, to_range
from .settings import AGGREGATIONS, ShiftSettings, shift_settings


@dataclass
class ShiftResult:
    """Everything a shifting run produced. Images are (n, 3, R, R) in [0, 1]."""

    base_latent: torch.Tensor  # (1, d)
    shifts: torch.Tensor  # (n, d), clamped to [-eps, eps]
    latents: torch.Tensor  # (n, d): normalise(z + k)
    base_image: torch.Tensor  # (1, 3, R, R): G(z)
    images: torch.Tensor  # (n, 3, R, R)
    users: torch.Tensor  # (U,) target user rows
    scores: dict[str, dict[str, list[float]]]  # agg -> {"base": [..1], "variants": [..n]}
    user_scores: dict[str, torch.Tensor]  # "base" (U,), "variants" (n, U); only for U <= cap
    history: dict[str, list[float]] = field(default_factory=dict)
    settings: ShiftSettings = field(default_factory=ShiftSettings)

    @property
    def optimised(self) -> str:
        return self.settings.aggregation

    def gains(self, agg: str | None = None) -> list[float]:
        s = self.scores[agg or self.optimised]
        return [v - s["base"][0] for v in s["variants"]]


def coverage_thresholds(recommender: Recommender, catalogue_phi: torch.Tensor,
                        users: torch.Tensor, top_k: int, tile: int = 4096) -> torch.Tensor:
    """Per target user, the score of their top_k-th best catalogue item (U,), tile by tile."""
    theta = recommender.user_vectors
    out = []
    k = min(top_k, catalogue_phi.shape[0])
    for start in range(0, len(users), tile):
        t = theta[users[start:start + tile]].to(catalogue_phi.dtype)
        s = t @ catalogue_phi.T  # (tile, N)
        out.append(s.topk(k, dim=1).values[:, -1])
    return torch.cat(out)


def aggregate_all(phi: torch.Tensor, theta: torch.Tensor, *, temperature: float,
                  thresholds: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """Every aggregation of the scores of images ``phi`` (B, K) over users ``theta`` (U, K)."""
    out = {}
    for agg in AGGREGATIONS:
        if agg == "coverage" and thresholds is None:
            continue
        out[agg] = ops.preference_score(phi, theta, agg=agg, temperature=temperature,
                                        thresholds=thresholds if agg == "coverage" else None)
    return out


def shift(latent: torch.Tensor, users: torch.Tensor, generator: Generator,
          recommender: Recommender, *, settings: ShiftSettings | None = None,
          base_image: torch.Tensor | None = None, catalogue_phi: torch.Tensor | None = None,
          labels: torch.Tensor | None = None, lpips=None, progress: bool = False,
          user_scores_cap: int = 10_000, **overrides) -> ShiftResult:
    """Optimise n shifts of ``latent`` (1, d) for target user rows ``users`` (U,).

    Per step: k = clamp(k, -eps, eps); kz = normalise(z + k); X = G(kz);
    L = w_ce CE(pred_idx(X), 0..n-1) + w_mae |pred_k(X) - k| - w_pref agg_u(theta_u . phi(X))
        [+ w_id LPIPS(G(z), X)]; Adam on k and on the predictor.
    ``catalogue_phi`` (N, K): embeddings of the catalogue, needed for the coverage aggregation.
    Settings are keyword-only (``ShiftSettings`` fields or ``recipe=``).
    """
    from ..nn.shift_predictor import ShiftPredictor

    if settings is None:
        settings = shift_settings(**overrides)
    settings.validate()
    assert latent.ndim == 2 and latent.shape == (1, generator.latent_dim), (
        f"latent must be (1, {generator.latent_dim}), got {tuple(latent.shape)}")
    assert users.ndim == 1 and len(users) > 0, "users must be a non-empty 1-D tensor of rows"
    device = generator.device
    n, d, eps = settings.n, generator.latent_dim, settings.eps
    torch.manual_seed(settings.seed)  # the predictor's initialisation
    g = torch.Generator().manual_seed(settings.seed)

    z = latent.to(device)
    theta = recommender.user_vectors[users.to(recommender.user_vectors.device)].to(device)
    # The mean over users equals scoring with the mean user vector: keep it as one row.
    theta_opt = theta.float().mean(0, keepdim=True) if settings.aggregation == "mean" else theta
    thresholds = None
    if catalogue_phi is not None:
        thresholds = coverage_thresholds(recommender, catalogue_phi.to(device),
                                         users, settings.top_k).to(device)
    if settings.aggregation == "coverage" and thresholds is None:
        from ..errors import GisUsageError

        raise GisUsageError("the coverage aggregation needs the catalogue (catalogue_phi)")
    mode = "batch" if settings.normalize == "batch" else "vector"
    lab = None if labels is None else labels.to(device).expand(n)

    def synth(zz: torch.Tensor) -> torch.Tensor:
        return generator.synthesize(zz, labels=None if lab is None else lab[: len(zz)])

    def embed(x: torch.Tensor) -> torch.Tensor:
        return recommender.embed(recommender.prepare(x, generator.output_range))

    with torch.no_grad():
        x0 = synth(z) if base_image is None else base_image.to(device)
    if settings.identity_weight > 0 and lpips is None:
        from ..plugins import get_loss

        lpips = get_loss("lpips", net="alex").to(device)

    # shift parameters
    p0 = torch.randn(n, d, generator=g).to(device)
    scale = eps if settings.parametrization == "scaled" else 1.0
    # the paper clamps k itself at every step (boundary values keep their gradient); the
    # authors' code keeps p free and clamps eps * p, so saturated coordinates never move
    param = (p0 if scale != 1.0 else p0.clamp(-eps, eps)).clone().requires_grad_(True)
    predictor = ShiftPredictor(n, d).to(device)
    opt_k = torch.optim.Adam([param], lr=settings.lr)
    opt_p = torch.optim.Adam(predictor.parameters(), lr=settings.predictor_lr,
                             foreach=True)
    labels_idx = torch.arange(n, device=device)
    w = settings
    history: dict[str, list[torch.Tensor]] = {"ce": [], "mae": [], "pref": [], "identity": [],
                                              "total": []}

    with frozen(generator, recommender), loss_bar(w.steps, "shift", progress) as bar:
        for _ in range(w.steps):
            # shift: clip, add, renormalise (fused op)
            k = param * scale
            kz = ops.clip_shift_normalize(z, k, eps, mode=mode)
            # synthesise
            x = synth(kz)
            # losses
            pref = ops.preference_score(embed(x), theta_opt, agg=w.aggregation,
                                        temperature=w.temperature, thresholds=thresholds)
            order = torch.randperm(n, generator=g).to(device) if w.permute else labels_idx
            logits, k_pred = predictor(to_range(x[order], generator.output_range, (-1.0, 1.0)))
            ce = F.cross_entropy(logits, labels_idx[order])
            mae = (k_pred - k.clamp(-eps, eps).detach()[order]).abs().mean()
            ident = (lpips(to_range(x, generator.output_range, (-1.0, 1.0)),
                           to_range(x0, generator.output_range, (-1.0, 1.0)).expand_as(x))
                     if w.identity_weight > 0 else torch.zeros((), device=device))
            total = (w.ce_weight * ce + w.mae_weight * mae - w.pref_weight * pref.mean()
                     + w.identity_weight * ident)
            check_finite({"preference": pref, "cross-entropy": ce, "shift MAE": mae,
                          "identity": ident}, "shifting")
            # step (k and the predictor)
            opt_k.zero_grad(set_to_none=True)
            opt_p.zero_grad(set_to_none=True)
            total.backward()
            opt_k.step()
            opt_p.step()
            if w.parametrization == "direct":  # the paper clamps k itself
                with torch.no_grad():
                    param.clamp_(-eps, eps)
            for name, v in (("ce", ce), ("mae", mae), ("pref", pref.mean()),
                            ("identity", ident), ("total", total)):
                history[name].append(v.detach())
            bar.update(pref=pref.mean(), ce=ce, mae=mae, **({"id": ident}
                                                          if w.identity_weight > 0 else {}))

    with torch.no_grad():
        k = (param * scale).clamp(-eps, eps)
        kz = ops.clip_shift_normalize(z, k, eps, mode=mode)
        x = synth(kz)
        phi_v, phi_b = embed(x), embed(x0)
        scores = {}
        for agg, val in aggregate_all(torch.cat([phi_b, phi_v]), theta, temperature=w.temperature,
                                      thresholds=thresholds).items():
            scores[agg] = {"base": [float(val[0])], "variants": [float(v) for v in val[1:]]}
        user_scores = {}
        if len(users) <= user_scores_cap:
            s = torch.cat([phi_b, phi_v]) @ theta.float().T
            user_scores = {"base": s[0].cpu(), "variants": s[1:].cpu()}
    return ShiftResult(
        base_latent=z.detach().cpu(), shifts=k.cpu(), latents=kz.cpu(),
        base_image=generator.to_unit(x0).cpu(), images=generator.to_unit(x).cpu(),
        users=users.cpu(), scores=scores, user_scores=user_scores,
        history={k: torch.stack(v).cpu().tolist() for k, v in history.items()},
        settings=settings,
    )
