"""What every registered generator and recommender must provide.

Methods (inversion, shifting, the DVBPR design baseline, evaluation) only ever use these
interfaces; they never branch on which plugin they hold.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from .errors import UnknownUserError
from .model_card import ModelCard, _card_property  # noqa: F401 (re-exported)


class Generator(nn.Module):
    """A pretrained image generator G: latent -> image.

    Subclasses set ``latent_dim`` (int), ``resolution`` (output side in pixels),
    ``output_range`` ((low, high) of the synthesised pixel values, e.g. (-1, 1)),
    ``num_classes`` (0 for unconditional generators) and implement ``synthesize``.
    """

    latent_dim: int
    resolution: int
    output_range: tuple[float, float] = (-1.0, 1.0)
    num_classes: int = 0
    #: the latents' prior in training: "normal" is N(0, I) (what ``sample_latents`` draws and
    #: what the "latent-prior" realism assumes); None for any other prior
    latent_prior: str | None = "normal"
    #: the weights' ModelCard (training data, checkpoint, provenance, quality)
    card = _card_property()
    #: the latent spaces the generator offers, the default (its ``latent_dim`` /
    #: ``sample_latents`` / ``synthesize``) first; gis works in the one chosen with
    #: ``--latent-space`` through :meth:`in_latent_space`
    latent_spaces: tuple[str, ...] = ("z",)

    def in_latent_space(self, name: str | None) -> Generator:
        """The generator working in latent space ``name``: ``self`` for None, "z" or the first
        of ``latent_spaces``; a plugin offering more spaces overrides this to return a view
        Generator whose ``latent_dim`` / ``sample_latents`` / ``synthesize`` work in that
        space. Raises GisUsageError (one line, naming the offered spaces) for any other."""
        if name is None or name == "z" or name == self.latent_spaces[0]:
            return self
        from .errors import GisUsageError

        raise GisUsageError(f"{type(self).__name__} offers the latent spaces "
                            f"{', '.join(self.latent_spaces)}; got {name!r}")

    def sample_latents(self, n: int, *, generator: torch.Generator | None = None,
                       device: torch.device | str | None = None) -> torch.Tensor:
        """n latents from the prior, shape (n, latent_dim)."""
        device = device if device is not None else self.device
        return torch.randn(n, self.latent_dim, generator=generator, device="cpu").to(device)

    def synthesize(self, z: torch.Tensor, *, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Images (n, 3, resolution, resolution) in ``output_range`` from latents (n, latent_dim).

        ``labels`` (n,) long holds class indices for conditional generators, else is ignored.
        Must be differentiable with respect to ``z``.
        """
        raise NotImplementedError

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.synthesize(z, labels=labels)

    def discriminate(self, images: torch.Tensor, *,
                     labels: torch.Tensor | None = None) -> torch.Tensor:
        """The critic's output (n,) for images in ``output_range``, when the plugin ships its
        discriminator (the DVBPR design baseline's realism term needs it)."""
        raise NotImplementedError(f"{type(self).__name__} ships no discriminator")

    @property
    def realism_kinds(self) -> tuple[str, ...]:
        """Realism scores ``realism`` gives, preferred first (gis.realism): "latent-prior" when
        ``latent_prior == "normal"``; a plugin shipping its critic prepends "critic"."""
        return ("latent-prior",) if self.latent_prior == "normal" else ()

    def realism(self, images: torch.Tensor | None = None, latents: torch.Tensor | None = None,
                *, kind: str | None = None, labels: torch.Tensor | None = None) -> torch.Tensor:
        """(B,) float, higher = more realistic, differentiable (gis.realism: the kinds, what
        each reads, units); one-line GisUsageError when ``kind`` (None: the first) is absent."""
        from .realism import base_realism

        return base_realism(self, images, latents, kind)

    def realism_floor(self, kind: str) -> float | None:
        """``realism(kind=kind)`` score below which an image is not taken for real (e.g. the
        5th percentile of held-out real images'), or None: no calibration, check not run."""
        return None

    def to_unit(self, x: torch.Tensor) -> torch.Tensor:
        """Map synthesised images to [0, 1] (clamped)."""
        lo, hi = self.output_range
        return ((x - lo) / (hi - lo)).clamp(0, 1)

    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        for b in self.buffers():
            return b.device
        return torch.device("cpu")


class Recommender(nn.Module):
    """A visual recommender: x(u, X) = theta_u . phi(X).

    Subclasses set ``image_size`` (input side), ``input_range`` (pixel range it expects),
    ``embedding_dim`` (K) and provide ``embed`` and ``user_vectors``. ``user_ids`` lists the
    external ids of the users, in the order of the rows of ``user_vectors``.
    """

    image_size: int
    input_range: tuple[float, float] = (-1.0, 1.0)
    embedding_dim: int
    user_ids: list[str]
    card = _card_property()

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """phi: images (B, 3, image_size, image_size) in ``input_range`` -> (B, K).

        Deterministic (eval mode) and differentiable with respect to the images.
        """
        raise NotImplementedError

    @property
    def user_vectors(self) -> torch.Tensor:
        """theta: (U, K), row i for ``user_ids[i]``."""
        raise NotImplementedError

    def item_bias(self, images: torch.Tensor) -> torch.Tensor | None:  # noqa: ARG002
        """Optional per-image additive score term (VBPR-style); None when absent. The engine's
        scores (shifting, catalogue ranks, ``gis evaluate``) are ``theta_u . phi`` only and do
        not read it: a model whose score has a per-image bias folds it into ``embed`` and
        ``user_vectors`` (an extra coordinate of phi, and a 1 in every theta_u), as ``vbpr``
        does (docs/MODELS.md)."""
        return None

    @property
    def num_users(self) -> int:
        return len(self.user_ids)

    def user_index(self, users) -> torch.Tensor:
        """Row indices (long) of external user ids, matched by ``gis.data.inputs.IdIndex``
        (NFC, lost leading zeros, case); raises UnknownUserError naming the culprit."""
        from .data.inputs import IdIndex

        lookup = getattr(self, "_user_lookup", None)
        if lookup is None or len(lookup) != len(self.user_ids):
            lookup = IdIndex(self.user_ids, what="user ids")
            self._user_lookup = lookup
        idx = []
        for u in users:
            key = str(u)
            if (row := lookup.get(key)) is None:
                example = ", ".join(self.user_ids[:3])
                card = getattr(self, "card", None)
                data = getattr(card, "dataset_name", None) or "DATASET"
                raise UnknownUserError(
                    f"unknown user id {key!r}: this recommender knows {len(lookup)} users "
                    f"(e.g. {example}); list them with `gis data users {data} --top 0` "
                    "(the catalogue it was trained on)"
                )
            idx.append(row)
        return torch.tensor(idx, dtype=torch.long)

    def prepare(self, images: torch.Tensor, source_range: tuple[float, float]) -> torch.Tensor:
        """Bridge images from another model: resize (bilinear) and rescale value range."""
        lo, hi = source_range
        x = (images - lo) / (hi - lo)
        if x.shape[-1] != self.image_size:
            x = nn.functional.interpolate(x, size=(self.image_size, self.image_size),
                                          mode="bilinear", align_corners=False, antialias=True)
        a, b = self.input_range
        return x * (b - a) + a

    def score(self, images: torch.Tensor, users: torch.Tensor | None = None) -> torch.Tensor:
        """Scores (B, U) of images (in ``input_range``) for user rows ``users`` (all if None)."""
        phi = self.embed(images)
        theta = self.user_vectors if users is None else self.user_vectors[users]
        s = phi @ theta.to(phi.dtype).T
        bias = self.item_bias(images)
        return s if bias is None else s + bias[:, None]

    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        return torch.device("cpu")


# ------------------------------------------------------------------------------ ground truth
# What a dataset may know that no recommender sees (docs/PLUGINS.md, "Datasets and ground
# truth"). Evaluation reads it only through these two interfaces.


class CategoryClassifier(Protocol):
    """Reads the category of any image: what ``GroundTruth.category_classifier`` returns.

    ``num_classes`` (C) and ``category_names`` follow the dataset's ``category_names``;
    ``label`` names the model in results (e.g. ``"gis DomainClassifier"``).
    """

    num_classes: int
    category_names: list[str]
    label: str

    def predict_proba(self, images: torch.Tensor,
                      value_range: tuple[float, float] = (-1.0, 1.0)) -> torch.Tensor:
        """p(category | image): (N, C) float, rows summing to 1, for images (N, 3, H, W) in
        ``value_range`` (any H, W). Deterministic (eval mode), no gradients needed."""
        ...


@dataclass(eq=False)
class RealismVerdict:
    """Whether images are realistic products of a dataset's world (``GroundTruth.realism``).

    ``realistic`` (N,) bool; ``reasons`` (N,) str, "" for a realistic image, else why not
    (e.g. "speckle: chroma noise 14.2 > 10"); ``measures`` the per-image figures (N,) the
    verdict was read from, by name, in the units the dataset documents.
    """

    realistic: np.ndarray
    reasons: list[str]
    measures: dict[str, np.ndarray] = field(default_factory=dict)


class GroundTruth(ABC):
    """The hidden truth of a (simulated) dataset: the true utility of any image for its users,
    and the category of any image.

    A dataset offers it through ``Dataset.ground_truth_factory``: a callable that receives the
    ``Dataset`` and returns its ``GroundTruth`` (a subclass of this class is such a callable).
    ``Dataset.has_ground_truth`` is the capability check; ``Dataset.ground_truth`` builds (once
    per dataset object) and returns it. The truth must judge *any* image -- a generated variant
    included -- from its pixels, so that evaluation can tell whether a shift the recommender
    likes is truly preferred. User rows index ``dataset.user_ids``.
    """

    def __init__(self, dataset: Any):
        self.dataset = dataset

    @abstractmethod
    def utility(self, images: torch.Tensor, users: np.ndarray, categories: np.ndarray, *,
                value_range: tuple[float, float] = (-1.0, 1.0)) -> np.ndarray:
        """True utility (U', N) float64 of images (N, 3, H, W) in ``value_range`` for the user
        rows ``users`` (U',) int; ``categories`` (N,) int are the images' category indices
        (e.g. read by ``category_classifier``). Higher means truly preferred; the scale is the
        dataset's own (compare values within one dataset only)."""

    def item_utility(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """True utility (U', N) float64 of catalogue items (indices (N,)) for user rows (U',).

        Default: ``utility`` of the catalogue images with their stored categories; override it
        when the dataset stores what the utility reads (faster, exact)."""
        items = np.asarray(items, dtype=np.int64)
        return self.utility(self.dataset.image_tensor(items), np.asarray(users),
                            np.asarray(self.dataset.categories)[items])

    def realism(self, images: torch.Tensor, *,
                value_range: tuple[float, float] = (-1.0, 1.0)) -> RealismVerdict | None:
        """Whether images (N, 3, H, W) in ``value_range`` are products a user of this world
        could buy (not speckled, not malformed): a ``RealismVerdict``, or None when the
        dataset defines no realism (the default). Truth checks count the gain of an image
        judged unrealistic as false."""
        return None

    @abstractmethod
    def category_classifier(self, *, device: str | torch.device = "cpu") -> CategoryClassifier:
        """The model that reads the category of images (on ``device``, eval mode). Raises
        ``gis.errors.MissingAssetError`` naming the command that provisions it when absent."""


# ------------------------------------------------------------------------------ loss terms
# The inversion and shifting objectives are weighted sums of registered loss terms
# (docs/ENGINE.md, "Loss terms"; docs/PLUGINS.md, "Losses").

#: The optimisations a loss term can join: "invert" (G(z) towards the item) and "shift"
#: (the n variants of the shifting loop).
LOSS_STAGES = ("invert", "shift")


@dataclass(eq=False)
class LossContext:
    """What a loss term receives at each step of an optimisation.

    B is the step's batch: the independent starts of an inversion (``restarts``) or the n
    variants of a shifting run; R is the generator's resolution, d its latent size, K the
    recommender's embedding size, U the number of target users. Images are in the generator's
    ``output_range`` (``rescale`` maps them to another range) and carry gradients back to what
    is optimised; the models are frozen (eval mode, no parameter gradients). Fields that do
    not apply to the stage are None.
    """

    stage: str  # "invert" or "shift"
    step: int  # 0-based; equal to the number of steps in the evaluation after the loop
    images: torch.Tensor  # (B, 3, R, R) G(latents), in generator.output_range
    latents: torch.Tensor  # (B, d): the starts z (invert), normalise(z + k) (shift)
    generator: Generator  # frozen
    settings: Any  # the run's InvertSettings or ShiftSettings
    # invert; shift: the real item too when there is one (None in random-latent mode)
    target: torch.Tensor | None = None  # (1, 3, R, R) the item at R, in output_range
    # shift
    base_latent: torch.Tensor | None = None  # (1, d) z, the inverted (or random) latent
    base_image: torch.Tensor | None = None  # (1, 3, R, R) G(z), in output_range
    shifts: torch.Tensor | None = None  # (B, d) clamp(k, -eps, eps)
    recommender: Recommender | None = None  # frozen
    user_vectors: torch.Tensor | None = None  # (U, K) theta of the target users
    embeddings: torch.Tensor | None = None  # (B, K) phi(images), recommender.prepare'd
    scores: torch.Tensor | None = None  # (B,) preference aggregated over the target users
    predicted_logits: torch.Tensor | None = None  # (B, n) shift predictor, row i: order[i]
    predicted_shifts: torch.Tensor | None = None  # (B, d) shift predictor, row i: order[i]
    order: torch.Tensor | None = None  # (B,) long: variant fed to the predictor as row i
    labels: torch.Tensor | None = None  # both: (B,) long class of each image (conditional G)

    def rescale(self, x: torch.Tensor,
                value_range: tuple[float, float] = (-1.0, 1.0)) -> torch.Tensor:
        """Images ``x`` in the generator's ``output_range`` mapped affinely to ``value_range``
        (``x`` itself when the ranges are equal)."""
        from .engine.common import to_range

        return to_range(x, self.generator.output_range, value_range)


class LossTerm(nn.Module):
    """One term of the inversion or shifting objective: what a ``register_losses`` factory
    returns (docs/PLUGINS.md, "Losses").

    ``forward(ctx)`` returns a tensor: a scalar, or one value per sample (B,). The engine adds
    ``weight * value`` to the objective it minimises (subtracts it when ``maximise`` is True)
    and records the unweighted value per step under ``key``. Inversion keeps per-sample
    values per start (each start is judged by its own total; a scalar counts for every start);
    shifting averages them over the variants. Values must be finite, and differentiable in
    ``ctx.images`` (or ``ctx.latents``, ``ctx.shifts``) to steer the optimisation.
    """

    #: the stages the term can join (a subset of LOSS_STAGES)
    stages: tuple[str, ...] = LOSS_STAGES
    #: True for a score to raise (e.g. the preference): the engine subtracts weight * value
    maximise: bool = False
    #: its name in the loss history and the progress bar; None: its registered name (an
    #: alias selects the term under its registered name)
    key: str | None = None

    def check_models(self, generator: Generator, recommender: Recommender | None = None) -> None:
        """Called once before the optimisation with the run's models: raise a one-line
        GisUsageError when the term cannot work with them (default: no requirement)."""

    def forward(self, ctx: LossContext) -> torch.Tensor:
        raise NotImplementedError
