"""An example third-party gis plugin, packaged on its own (see docs/PLUGINS.md).

It registers one of each: a generator (a random linear decoder), a recommender (average
colour against random user vectors), a loss term (total variation, selected with ``gis shift
--loss total-variation=WEIGHT``) and a dataset with ground truth (colour swatches,
``dataset.py``). Install it with ``pip install -e
examples/gis-example-plugin`` and it appears in ``gis plugins``.
"""

from __future__ import annotations

import torch
from torch import nn

import gis


class LinearGenerator(gis.Generator):
    """G(z) = tanh(W z) reshaped to an image: the smallest thing that meets the interface."""

    def __init__(self, latent_dim: int = 16, resolution: int = 16, seed: int = 0):
        super().__init__()
        self.latent_dim, self.resolution, self.output_range = latent_dim, resolution, (-1.0, 1.0)
        self.card = {"dataset": None, "note": "random weights; an example only"}
        g = torch.Generator().manual_seed(seed)
        self.weight = nn.Parameter(torch.randn(3 * resolution**2, latent_dim, generator=g) * 0.3)

    def synthesize(self, z, *, labels=None):
        r = self.resolution
        return torch.tanh(z @ self.weight.T).view(-1, 3, r, r)


class ColourRecommender(gis.Recommender):
    """phi(X) = mean colour of X (K = 3); users like colours."""

    def __init__(self, num_users: int = 5, seed: int = 0):
        super().__init__()
        self.image_size, self.input_range, self.embedding_dim = 8, (-1.0, 1.0), 3
        self.user_ids = [f"user{i}" for i in range(num_users)]
        self.card = {"dataset": None}
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("theta", torch.randn(num_users, 3, generator=g))

    def embed(self, images):
        return images.mean(dim=(2, 3))

    @property
    def user_vectors(self):
        return self.theta


class TotalVariation(gis.LossTerm):
    """A smoothness prior for either objective: each image's mean absolute difference between
    neighbouring pixels, (B,), in the generator's pixel units (0 for a flat image).

    gis calls ``forward`` with a ``gis.LossContext`` at every step and adds ``weight x value``
    to the objective: ``gis shift --loss total-variation=0.5`` makes smoother variants,
    ``--invert-loss total-variation=0.5`` a smoother inversion (docs/PLUGINS.md, "Losses").
    """

    stages = ("invert", "shift")  # the default; a term made for one objective names it

    def forward(self, ctx: gis.LossContext) -> torch.Tensor:
        x = ctx.images  # (B, 3, R, R), differentiable: the gradient smooths the images
        return ((x[..., 1:, :] - x[..., :-1, :]).abs().flatten(1).mean(1)
                + (x[..., :, 1:] - x[..., :, :-1]).abs().flatten(1).mean(1))


@gis.hookimpl
def register_generators(register):
    register("example-linear", lambda **kw: LinearGenerator(),
             description="Random linear decoder (example plugin)")


@gis.hookimpl
def register_recommenders(register):
    register("example-colour", lambda **kw: ColourRecommender(),
             description="Mean-colour recommender (example plugin)")


@gis.hookimpl
def register_losses(register):
    register("total-variation", TotalVariation, aliases=("tv",),
             description="Total variation of the images, for either objective (example "
                         "plugin)")


@gis.hookimpl
def register_datasets(register):
    from .dataset import load_swatches

    register("example-swatches", load_swatches,
             description="Colour swatches with 5 simulated users and ground truth "
                         "(example plugin)")
