"""One evaluation run, measured: everything the tables need from a GIS run or a DVBPR design.

``World`` holds what every trial shares (models, dataset, catalogue embeddings, the dataset's
ground truth and its category classifier, ``gis.interfaces.GroundTruth``); ``measure`` turns a set of images plus their scores into the per-trial record that
``gis evaluate`` appends to its trial log. Every number is defined in gis/metrics.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..metrics.lpips_metric import pairwise_lpips
from ..metrics.preference import coverage, rank_improvement, top_k_mean
from ..metrics.ssim import opposite_ssim, pairwise_ssim_diversity

TOP_K = 3  # the paper's top-3 of n
COVERAGE_K = 10  # "enters the user's top-10 of the catalogue"


@dataclass
class World:
    """Models, data and shared precomputations of an evaluation (loaded once)."""

    generator: object
    baseline_generator: object | None
    recommender: object
    dataset: object
    classifier: object  # gis.interfaces.CategoryClassifier of the dataset's ground truth
    catalogue_phi: torch.Tensor
    history: list = field(default_factory=list)  # per user: set of items seen (train/val/test)
    terms: dict | None = None  # the engine's loss terms, built by the first trial and reused

    @classmethod
    def load(cls, *, generator: str, baseline_generator: str | None, recommender: str,
             data: str, device: str = "cpu", trust: bool = False,
             latent_space: str | None = None) -> World:
        from ..data import load_dataset
        from ..engine.pipeline import embed_dataset
        from ..plugins import get_generator, get_recommender

        dataset = load_dataset(data, trust=trust)
        gen = get_generator(generator, device=device, trust=trust)
        if latent_space is not None:  # Generator.in_latent_space: a view in that space
            gen = gen.in_latent_space(latent_space)
        base_gen = (get_generator(baseline_generator, device=device, trust=trust)
                    if baseline_generator else None)
        rec = get_recommender(recommender, device=device, trust=trust)
        if list(rec.user_ids) != list(dataset.user_ids):  # user rows index both
            from ..errors import GisUsageError

            raise GisUsageError(
                f"recommender {recommender!r} was not trained on dataset "
                f"{dataset.meta.get('name', data)!r}: its {len(rec.user_ids)} users are not the "
                f"dataset's {dataset.num_users} (same ids, same order)")
        clf = dataset.ground_truth.category_classifier(device=device)
        phi = embed_dataset(rec, dataset, value_range=(0.0, 1.0))
        items_of = dataset.user_items()
        history = [set(items_of[u].tolist()) | {int(dataset.val[u]), int(dataset.test[u])}
                   for u in range(dataset.num_users)]
        return cls(gen, base_gen, rec, dataset, clf, phi, history)

    # ------------------------------------------------------------------ shared measurements
    def embed(self, images01: torch.Tensor) -> torch.Tensor:
        """Recommender embeddings phi (B, K) of images in [0, 1]."""
        rec = self.recommender
        with torch.no_grad():
            return rec.embed(rec.prepare(images01.to(rec.device), (0.0, 1.0))).float()

    def theta(self, users: torch.Tensor) -> torch.Tensor:
        vectors = self.recommender.user_vectors
        return vectors[users.to(vectors.device)].float()

    def scores(self, phi: torch.Tensor, users: torch.Tensor) -> torch.Tensor:
        """Per-user scores (B, U) of embeddings ``phi``."""
        return phi @ self.theta(users).T

    def ranks(self, phi: torch.Tensor, users: torch.Tensor) -> np.ndarray:
        """Catalogue rank (1 = best) of each embedding for each user: (B, U)."""
        from ..engine.pipeline import catalogue_ranks

        return catalogue_ranks(phi, self.theta(users), self.catalogue_phi).numpy()

    def categories(self, images01: torch.Tensor) -> np.ndarray:
        """The category (N,) of each image in [0, 1], read by the ground truth's classifier."""
        with torch.no_grad():
            p = self.classifier.predict_proba(images01, value_range=(0.0, 1.0))
        return p.argmax(1).cpu().numpy()

    def true_utility(self, images01: torch.Tensor, users: torch.Tensor,
                     categories: np.ndarray) -> np.ndarray:
        """Mean true utility over ``users`` (rows) of each image (B,) in [0, 1], with the
        categories given (the dataset's ``GroundTruth.utility``)."""
        u = self.dataset.ground_truth.utility(images01, users.numpy(), categories,
                                              value_range=(0.0, 1.0))
        return u.mean(0)

    def realism(self, images01: torch.Tensor):
        """The ground truth's ``RealismVerdict`` of images in [0, 1], or None when the dataset
        defines no realism (``GroundTruth.realism``)."""
        return self.dataset.ground_truth.realism(images01.cpu(), value_range=(0.0, 1.0))


def measure(world: World, *, variants: torch.Tensor, reference: torch.Tensor,
            users: torch.Tensor, item: torch.Tensor | None = None,
            item_category: int | None = None, reference_is_start: bool = True) -> dict:
    """The per-run record. Images in [0, 1]: ``variants`` (n, 3, R, R), ``reference`` (1 or n,
    3, R, R): the base G(z*) for GIS, the starting samples for a DVBPR design. ``item`` the
    real item (or None). Scores use the mean over ``users`` (the paper's aggregation).
    """
    phi_var, phi_ref = world.embed(variants), world.embed(reference)
    phi_item = world.embed(item) if item is not None else None
    s_var = world.scores(phi_var, users)  # (n, U)
    s_ref = world.scores(phi_ref, users)
    mean_var = s_var.mean(1).numpy()
    mean_ref = s_ref.mean(1).numpy()
    top = top_k_mean(mean_var, TOP_K)
    rec: dict = {
        "variant_scores": [float(x) for x in mean_var],
        "reference_scores": [float(x) for x in mean_ref],
        "top3": top,
        "shift_vs_reference": top - float(mean_ref.mean()),
        "min_user_top3": top_k_mean(s_var.min(1).values.numpy(), TOP_K),
        "min_user_reference": float(s_ref.min(1).values.mean()),
        "ssim_diversity": pairwise_ssim_diversity(variants, 1.0),
        "lpips_diversity": pairwise_lpips(variants.to(world.recommender.device) * 2 - 1),
    }
    if reference_is_start:  # the paper's opposite SSIM: 1 - SSIM(start, variant), averaged
        rec["opposite_ssim"] = float(opposite_ssim(reference, variants, 1.0).mean())
    # ranks and coverage, against the item when there is one, else the reference
    r_anchor = world.ranks(phi_item if item is not None else phi_ref[:1], users)[0]
    r_var = world.ranks(phi_var, users)
    ri = rank_improvement(r_anchor, r_var)
    best = int(np.argmax(mean_var))
    rec.update(rank_anchor="item" if item is not None else "reference",
               median_rank_anchor=ri["median_reference_rank"],
               median_rank_best_variant=ri["median_best_variant_rank"],
               median_rank_improvement=ri["median"], share_users_rank_improved=ri["share_improved"],
               coverage_anchor=coverage(r_anchor, COVERAGE_K),
               coverage_best_variant=float(coverage(r_var[best], COVERAGE_K)))
    # categories read by the domain classifier
    c_var = world.categories(variants)
    c_ref = world.categories(reference)
    expected = item_category if item_category is not None else int(c_ref[0])
    rec.update(variant_categories=c_var.tolist(), reference_categories=c_ref.tolist(),
               expected_category=expected,
               category_preserved=float((c_var == expected).mean()))
    if item is not None:
        s_item = world.scores(phi_item, users).mean(1)
        rec["item_score"] = float(s_item[0])
        rec["shift_vs_item"] = top - rec["item_score"]
    # truth: the dataset's ground truth (category as the classifier reads it)
    u_var = world.true_utility(variants, users, c_var)
    u_ref = world.true_utility(reference, users, c_ref)
    best3 = np.argsort(mean_var)[-TOP_K:]
    gains = mean_var - float(mean_ref.mean())
    true_gains = u_var - float(u_ref.mean())
    won = gains > 0
    truly = won & (true_gains > 0)
    rec.update(true_utility_variants=u_var.tolist(), true_utility_reference=u_ref.tolist(),
               true_gain_top3=float(u_var[best3].mean() - u_ref.mean()),
               recommender_gains=int(won.sum()),
               recommender_gains_true_ignoring_realism=int(truly.sum()))
    # realism: a user does not buy a speckled or malformed product, whatever its colour
    verdict = world.realism(variants)
    if verdict is not None:
        real = np.asarray(verdict.realistic, dtype=bool)
        truly = truly & real
        rec.update(variant_realistic=real.tolist(), variant_unrealistic_reasons=verdict.reasons,
                   realistic_share=float(real.mean()),
                   best_variant_realistic=bool(real[best]))
    rec["recommender_gains_that_are_true"] = int(truly.sum())
    if item is not None:
        cat = np.array([item_category if item_category is not None
                        else int(world.categories(item)[0])])
        u_item = world.true_utility(item, users, cat)
        rec["true_utility_item"] = float(u_item[0])
        rec["true_gain_top3_vs_item"] = float(u_var[best3].mean() - u_item[0])
    return rec


def to_uint8(images01: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) in [0, 1] -> uint8 (N, H, W, 3), as stored in the trial logs."""
    from ..images import to_uint8 as convert

    return convert(images01, (0.0, 1.0))


def from_uint8(arr: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> (N, 3, H, W) in [0, 1]."""
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 255.0
