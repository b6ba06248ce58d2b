"""The engine as one pure function of (item, users, models, settings): `run_gis`.

It loads nothing from disk and writes nothing: callers (the CLI, a Ray task) pass tensors and
models in and get a `GisRun` back, so the same call maps over a cluster unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from ..interfaces import Generator, LossTerm, Recommender
from ..memory import release_free_heap
from ..metrics.category import CategoryReference
from ..provenance import environment
from .checks import CheckSettings, check_variants
from .common import to_range
from .invert import InversionResult, invert, normalise_rows
from .objective import Objective
from .settings import InvertSettings, ShiftSettings
from .settings import invert_settings as recipe_invert_settings
from .shift import ShiftResult, aggregate_all, coverage_thresholds, shift


@dataclass
class GisRun:
    item: torch.Tensor | None  # (1, 3, R, R) in [0, 1] at the generator's resolution, or None
    inversion: InversionResult | None  # None in random-latent mode
    result: ShiftResult
    item_scores: dict[str, float] = field(default_factory=dict)  # real item, per aggregation
    ranks: dict[str, torch.Tensor] = field(default_factory=dict)  # item/base/variants (.., U)
    catalogue_size: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    bridge: dict = field(default_factory=dict)  # how generator images reach the recommender
    # LPIPS of each variant to the base/item and to its nearest other variant (see
    # gis.metrics.lpips_metric.variant_distances); empty when switched off
    distances: dict = field(default_factory=dict)
    # the variants' realism, identity, category and distinctness checks and the recommended variant
    # (gis.engine.checks.check_variants)
    checks: dict = field(default_factory=dict)
    # what computed it, read in the process that ran it (a Ray worker, not the driver):
    # {"versions": dict, "provenance": gis.provenance.Provenance} (gis.provenance.environment)
    provenance: dict = field(default_factory=dict)


@torch.no_grad()
def embed_catalogue(recommender: Recommender, images: torch.Tensor, *,
                    batch_size: int = 512) -> torch.Tensor:
    """phi of every catalogue image. images: (N, 3, H, W) in the recommender's input range."""
    out = []
    was = recommender.training
    recommender.eval()
    dev = recommender.device
    for start in range(0, len(images), batch_size):
        out.append(recommender.embed(images[start:start + batch_size].to(dev)).float())
    recommender.train(was)
    return torch.cat(out)


def embed_dataset(recommender: Recommender, dataset, *, value_range=(-1.0, 1.0),
                  batch_size: int = 512) -> torch.Tensor:
    """phi (N, K) float32 of every catalogue image of ``dataset`` (``Dataset.images``, uint8),
    read ``batch_size`` images at a time: equal to ``embed_catalogue(recommender,
    recommender.prepare(dataset.image_tensor(value_range=value_range), value_range))`` without
    holding the whole catalogue as float (6,000 x 3 x 32 x 32: 74 MB)."""
    chunks = (recommender.prepare(dataset.image_tensor(slice(i, i + batch_size),
                                                       value_range=value_range), value_range)
              for i in range(0, len(dataset.images), batch_size))
    return torch.cat([embed_catalogue(recommender, x, batch_size=batch_size) for x in chunks])


@torch.no_grad()
def catalogue_ranks(image_phi: torch.Tensor, theta: torch.Tensor, catalogue_phi: torch.Tensor,
                    *, tile: int = 1024) -> torch.Tensor:
    """Rank (1 = best) of each image among the catalogue for each user: (B, U) long.

    rank = 1 + number of catalogue items the user scores strictly higher than the image.
    Users go through ``gis.ops.preference_rank`` a tile at a time, so at most a tile x N
    block of catalogue scores exists at once.
    """
    from .. import ops

    ranks = []
    phi = image_phi.float()
    for start in range(0, theta.shape[0], tile):
        t = theta[start:start + tile].float()
        ranks.append(ops.preference_rank(phi, t, t @ catalogue_phi.float().T) + 1)
    return torch.cat(ranks, dim=1)


def bridge_info(generator: Generator, recommender: Recommender) -> dict:
    """What must happen to generated images before the recommender sees them (recorded)."""
    return {
        "generator_resolution": generator.resolution,
        "generator_range": list(generator.output_range),
        "recommender_image_size": recommender.image_size,
        "recommender_range": list(recommender.input_range),
        "resize": ("none" if generator.resolution == recommender.image_size else
                   f"bilinear (antialiased) {generator.resolution} -> {recommender.image_size}"),
        "rescale": ("none" if tuple(generator.output_range) == tuple(recommender.input_range)
                    else f"{list(generator.output_range)} -> {list(recommender.input_range)}"),
    }


def run_gis(*, generator: Generator, recommender: Recommender, users: torch.Tensor,
            item: torch.Tensor | None = None, invert_settings: InvertSettings | None = None,
            shift_settings: ShiftSettings, catalogue: torch.Tensor | None = None,
            catalogue_phi: torch.Tensor | None = None, labels: torch.Tensor | None = None,
            progress: bool = False, terms: Mapping[str, LossTerm] | None = None,
            distance_net: str | None = "alex",
            check_settings: CheckSettings | None = None,
            latent_space: str | None = None,
            category_reference: CategoryReference | None = None,
            expected_category: str | None = None) -> GisRun:
    """Invert ``item`` (or draw a random latent when None), shift it for ``users``, score all.

    item:      (1, 3, H, W) in [-1, 1], or None for the random-latent (class-centric) mode.
    users:     (U,) recommender rows.
    catalogue: (N, 3, h, w) in the recommender's input range (for ranks and coverage), or
               its embeddings ``catalogue_phi`` (N, K) if already computed.
    terms:     prebuilt loss terms by name for either stage (e.g. an LPIPS module reused
               across calls), used instead of building them from the registry.
    distance_net: LPIPS trunk of the closeness/distinctness report (``GisRun.distances``:
               how far each variant moved from the base and the item, and from the nearest
               other variant); None skips it (and the distinctness check).
    check_settings: thresholds of the variants' checks (``gis.engine.checks``; default
               ``CheckSettings()``), whose verdicts and recommendation are ``GisRun.checks``.
    category_reference: the catalogue's silhouettes and categories for the variants' category
               check (``gis.metrics.category.CategoryReference.from_dataset``); None leaves
               that check not run.
    expected_category: the category the variants must keep, by name (the class a
               class-conditional generator shifts under); None: the item's voted category.
    latent_space: the generator's latent space to work in (``Generator.in_latent_space``;
               None: the generator as given). Inversion and shifting then optimise that
               space's latents (e.g. stylegan2's whitened W+ rows), renormalised as any latent.
    """
    if latent_space is not None:
        generator = generator.in_latent_space(latent_space)
    # no inversion settings given: the shifting recipe's own (the seller recipe's loops)
    invert_settings = invert_settings or recipe_invert_settings(shift_settings.recipe)
    invert_settings.validate()
    shift_settings.validate()
    if check_settings is not None:
        check_settings.validate()
    # every selected loss term is built first: one that cannot join its objective stops the
    # run before any optimisation
    invert_terms = None if item is None else _terms("invert", invert_settings, terms,
                                                    generator)
    shift_terms = _terms("shift", shift_settings, terms, generator, recommender)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    if catalogue_phi is None and catalogue is not None:
        catalogue_phi = embed_catalogue(recommender, catalogue)
    catalogue = None  # the embeddings are what is needed: free the images (memory, issue 17)
    release_free_heap()  # what the catalogue embedding freed, before the inversion's peak
    seconds["catalogue"] = time.perf_counter() - t0

    inversion = None
    if item is not None:
        t0 = time.perf_counter()
        inversion = invert(item, generator, settings=invert_settings, terms=invert_terms,
                           progress=progress, labels=labels)
        seconds["invert"] = time.perf_counter() - t0
        z = inversion.latent
        invert_terms = None  # free the inversion's models (its LPIPS trunk) before shifting
        release_free_heap()  # and give their memory back before the shifting's peak
    else:
        g = torch.Generator().manual_seed(shift_settings.seed + 7919)
        z = normalise_rows(torch.randn(1, generator.latent_dim, generator=g)).to(generator.device)

    t0 = time.perf_counter()
    target = None if inversion is None else to_range(
        inversion.target.to(generator.device), (0.0, 1.0), generator.output_range)
    result = shift(z, users, generator, recommender, settings=shift_settings, target=target,
                   catalogue_phi=catalogue_phi, labels=labels, terms=shift_terms,
                   progress=progress)
    seconds["shift"] = time.perf_counter() - t0

    item_scores: dict[str, float] = {}
    ranks: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        theta = recommender.user_vectors[users].float()
        phis = {}
        if item is not None:
            x_item = recommender.prepare(item.to(recommender.device), (-1.0, 1.0))
            phis["item"] = recommender.embed(x_item).float()
            thr = (coverage_thresholds(recommender, catalogue_phi, users,
                                       shift_settings.top_k)
                   if catalogue_phi is not None else None)
            item_scores = {k: float(v[0]) for k, v in aggregate_all(
                phis["item"], theta, temperature=shift_settings.temperature,
                thresholds=thr).items()}
        if catalogue_phi is not None:
            dev = recommender.device
            to_rec = lambda x01: recommender.prepare(x01.to(dev), (0.0, 1.0))  # noqa: E731
            phis["base"] = recommender.embed(to_rec(result.base_image)).float()
            phis["variants"] = recommender.embed(to_rec(result.images)).float()
            # one pass over the users for every image: each user's catalogue scores are
            # computed and sorted once (the cost that grows with U, e.g. all users)
            every = catalogue_ranks(torch.cat(list(phis.values())), theta, catalogue_phi).cpu()
            ranks = dict(zip(phis, every.split([len(p) for p in phis.values()]), strict=True))

    item01 = None
    if inversion is not None:
        item01 = inversion.target.cpu()
    distances: dict = {}
    if distance_net is not None:
        from ..metrics.lpips_metric import variant_distances

        t0 = time.perf_counter()
        dev = generator.device
        distances = variant_distances(
            result.images.to(dev), result.base_image.to(dev),
            None if item01 is None else item01.to(dev), net=distance_net)
        seconds["distances"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    checks = check_variants(generator, result.images, result.base_image, result.latents,
                            result.scores[result.optimised]["variants"],
                            distances.get("pairwise"), labels=labels, item01=item01,
                            to_reference=distances.get("to_item", distances.get("to_base")),
                            settings=check_settings, category_reference=category_reference,
                            expected_category=expected_category)
    seconds["checks"] = time.perf_counter() - t0
    return GisRun(item=item01, inversion=inversion, result=result, item_scores=item_scores,
                  ranks=ranks, catalogue_size=0 if catalogue_phi is None else len(catalogue_phi),
                  seconds=seconds, bridge=bridge_info(generator, recommender),
                  distances=distances, checks=checks,
                  provenance=environment(generator.device))


def build_terms(generator: Generator, recommender: Recommender | None = None, *,
                invert_settings: InvertSettings | None = None,
                shift_settings: ShiftSettings | None = None) -> dict[str, LossTerm]:
    """Every loss term of the given settings' objectives, built once by name: pass it as
    ``run_gis(..., terms=...)`` to reuse them (LPIPS trunks, say) over many runs with the
    same term options. A name selected by both stages must have the same options in both."""
    built: dict[str, LossTerm] = {}
    if invert_settings is not None:
        built.update(_terms("invert", invert_settings, None, generator))
    if shift_settings is not None:
        built.update(_terms("shift", shift_settings, built, generator, recommender))
    return built


def _terms(stage: str, settings, given: Mapping[str, LossTerm] | None, generator: Generator,
           recommender: Recommender | None = None) -> dict[str, LossTerm]:
    """The stage's terms by name: ``given`` ones as they are, the others built and checked
    (against the stage and the run's models)."""
    built = Objective.build(stage, settings.losses, settings.loss_options, prebuilt=given,
                            device=generator.device, generator=generator,
                            recommender=recommender)
    return {t.name: t.module for t in built.terms}
