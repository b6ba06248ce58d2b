"""Latent shifting: n bounded shifts of z whose images the target users prefer, kept distinct
by a shift predictor (docs/METHOD.md, "Shifting"). The objective is a weighted sum of
registered loss terms, CE + MAE - preference by default."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from .. import ops
from ..errors import GisUsageError
from ..interfaces import Generator, LossContext, LossTerm, Recommender
from .common import autocast, frozen, loss_bar, lr_scheduler, resolve_precision, to_range
from .objective import Objective
from .settings import ShiftSettings, shift_settings


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
    for agg in ops.AGGS:
        if agg == "coverage" and thresholds is None:
            continue
        out[agg] = ops.preference_score(phi, theta, agg=agg, temperature=temperature,
                                        thresholds=thresholds if agg == "coverage" else None)
    return out


def shift(latent: torch.Tensor, users: torch.Tensor, generator: Generator,
          recommender: Recommender, *, settings: ShiftSettings | None = None,
          base_image: torch.Tensor | None = None, target: torch.Tensor | None = None,
          catalogue_phi: torch.Tensor | None = None,
          labels: torch.Tensor | None = None, terms: Mapping[str, LossTerm] | None = None,
          progress: bool = False, user_scores_cap: int = 10_000, **overrides) -> ShiftResult:
    """Optimise n shifts of ``latent`` (1, d) for target user rows ``users`` (U,) long.

    Per step: kz = normalise(z + clamp(k, -eps, eps)); X = G(kz); the shift predictor reads X;
    L = sum_i w_i term_i (default w_ce CE(pred_idx(X), 0..n-1) + w_mae |pred_k(X) - k|
    - w_pref agg_u(theta_u . phi(X))); Adam on k and on the predictor (docs/METHOD.md).
    ``catalogue_phi`` (N, K): embeddings of the catalogue, needed for the coverage aggregation.
    ``base_image`` (1, 3, R, R) in the generator's output range: G(z) when None.
    ``target`` (1, 3, R, R) in the generator's output range: the real item the latent was
    inverted from (the loss terms' ``ctx.target``, e.g. the silhouette's reference), or None.
    ``labels`` (1,) long: the class of a conditional generator, else None.
    ``terms``: prebuilt loss terms by name, used instead of building them from the registry.
    Settings are keyword-only (``ShiftSettings`` fields or ``recipe=``; ``losses`` merges
    into the recipe's weights). Every random draw comes from ``settings.seed``: the global RNG
    is neither read nor reseeded. Raises GisUsageError for bad input or settings.
    """
    from ..nn.shift_predictor import ShiftPredictor

    if settings is None:
        settings = shift_settings(**overrides)
    settings.validate()
    d = generator.latent_dim
    if not isinstance(latent, torch.Tensor) or tuple(latent.shape) != (1, d):
        got = tuple(latent.shape) if isinstance(latent, torch.Tensor) else type(latent).__name__
        raise GisUsageError(f"the latent must be one row (1, {d}), got {got}")
    if not isinstance(users, torch.Tensor) or users.ndim != 1 or len(users) == 0 \
            or users.dtype.is_floating_point or users.dtype == torch.bool:
        raise GisUsageError("users must be a non-empty 1-D tensor of recommender rows (long)")
    if int(users.min()) < 0 or int(users.max()) >= recommender.num_users:
        raise GisUsageError(f"user rows must lie in 0..{recommender.num_users - 1} (got "
                            f"{int(users.min())}..{int(users.max())})")
    device = generator.device
    n, eps = settings.n, settings.eps
    # what ran is what the settings (and so result.json) say
    settings = dataclasses.replace(settings, precision=resolve_precision(settings.precision,
                                                                         device))
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
        raise GisUsageError("the coverage aggregation needs the catalogue (catalogue_phi)")
    mode = "batch" if settings.normalize == "batch" else "vector"
    lab = None if labels is None else labels.to(device).expand(n)
    objective = Objective.build("shift", settings.losses, settings.loss_options,
                                prebuilt=terms, device=device, generator=generator,
                                recommender=recommender)

    def synth(zz: torch.Tensor) -> torch.Tensor:
        return generator.synthesize(zz, labels=None if lab is None else lab[: len(zz)]).float()

    def embed(x: torch.Tensor) -> torch.Tensor:
        return recommender.embed(recommender.prepare(x, generator.output_range)).float()

    def variants(k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """kz = normalise(z + clamp(k, -eps, eps)) (the fused op) and X = G(kz): each step of
        the loop, and the result after it."""
        kz = ops.clip_shift_normalize(z, k, eps, mode=mode)
        return kz, synth(kz)

    # shift parameters
    p0 = torch.randn(n, d, generator=g).to(device)
    scale = eps if settings.parametrization == "scaled" else 1.0
    # the paper clamps k itself at every step (boundary values keep their gradient); the
    # authors' code keeps p free and clamps eps * p, so saturated coordinates never move
    param = (p0 if scale != 1.0 else p0.clamp(-eps, eps)).clone().requires_grad_(True)
    predictor = ShiftPredictor(n, d, seed=settings.seed).to(device)
    opt_k = torch.optim.Adam([param], lr=settings.lr)
    # the fused (single-kernel) Adam: the same update as the foreach one, about 7x faster on
    # the predictor's 11.4 M parameters on a CPU (benchmarks/RESULTS.md)
    opt_p = torch.optim.Adam(predictor.parameters(), lr=settings.predictor_lr, fused=True)
    schedulers = lr_scheduler([opt_k, opt_p], settings.lr_schedule, settings.steps)
    labels_idx = torch.arange(n, device=device)
    w = settings
    history: dict[str, list[torch.Tensor]] = {}

    with frozen(generator, recommender, *objective.modules), \
            loss_bar(w.steps, "shift", progress) as bar:
        with torch.no_grad():
            x0 = synth(z) if base_image is None else base_image.to(device)
        for step in range(w.steps):
            # shift: clip, add, renormalise; synthesise
            k = param * scale
            with autocast(device, w.precision):
                kz, x = variants(k)
                # what the terms read: scores, the predictor's view of the variants
                phi = embed(x)
                scores = ops.preference_score(phi, theta_opt, agg=w.aggregation,
                                              temperature=w.temperature, thresholds=thresholds)
                order = torch.randperm(n, generator=g).to(device) if w.permute else labels_idx
                logits, k_pred = predictor(to_range(x[order], generator.output_range,
                                                    (-1.0, 1.0)))
                # losses
                total, values = objective(LossContext(
                    stage="shift", step=step, images=x, latents=kz, generator=generator,
                    settings=w, base_latent=z, base_image=x0, target=target,
                    shifts=k.clamp(-eps, eps),
                    recommender=recommender, user_vectors=theta, embeddings=phi,
                    scores=scores, predicted_logits=logits.float(),
                    predicted_shifts=k_pred.float(), order=order, labels=lab))
                total, values = total.float(), {key: v.float() for key, v in values.items()}
            # step (k and the predictor); the gradients are freed right after the step, so
            # that the next forward's activations do not sit beside the predictor's 46 MB of
            # stale gradients (peak memory, issue 17)
            if total.requires_grad:
                total.backward()
            opt_k.step()
            opt_p.step()
            opt_k.zero_grad(set_to_none=True)
            opt_p.zero_grad(set_to_none=True)
            for sched in schedulers:
                sched.step()
            if w.parametrization == "direct":  # the paper clamps k itself
                with torch.no_grad():
                    param.clamp_(-eps, eps)
            for key, v in {**values, "total": total}.items():
                history.setdefault(key, []).append(v.detach())
            bar.update(**values)

        with torch.no_grad():
            k = (param * scale).clamp(-eps, eps)
            kz, x = variants(k)
            phi_v, phi_b = embed(x), embed(x0)
    with torch.no_grad():
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
