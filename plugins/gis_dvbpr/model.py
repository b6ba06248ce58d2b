"""The DVBPR recommender (Kang et al. 2017): x(u, X) = theta_u . phi(X).

phi is a CNN trained end to end with BPR; theta (U, K) holds one preference vector per user.
Three layouts of phi share one module structure (``conv1..conv5``, ``fc1..fc3``, the key names
of the AIP PyTorch port, so its state dicts load as they are):

=======  =====  ==============================================================================
layout   input  stack
=======  =====  ==============================================================================
"224"    224    conv 11x11/4 (64) -> pool 2 -> conv 5x5 p2 (256) -> pool 2 -> 3 x conv 3x3 p1
                (256) -> pool 2 p1 -> 7*7*256 -> fc 4096 -> fc 4096 -> fc K
"128"    128    the same stack at 128 px (the PyTorch port GIS used): 4*4*256 into fc1
"32"     32     a scaled-down analogue for the embedded 32x32 data: conv 5x5 p2 (16) -> pool 2
                -> conv 5x5 p2 (32) -> pool 2 -> 3 x conv 3x3 p1 (48) -> pool 2 -> 4*4*48 ->
                fc 128 -> fc 128 -> fc K; dropout 0.1 (0.2 M CNN parameters: one epoch of
                fashion-colors takes about a minute on one CPU core)
=======  =====  ==============================================================================

ReLU after every layer but fc3; dropout after fc1 and fc2 during training only (the authors'
port kept dropout on at evaluation, which made every score random; not copied here).
Note: "224" uses the PyTorch port's padding (valid conv1, padded last pool), which is what
AIP-style checkpoints need; the original TensorFlow DVBPR used SAME padding throughout (the
fc1 input is 7*7*256 either way, but the TF weights would not be interchangeable).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from gis.errors import CheckpointError
from gis.interfaces import ModelCard, Recommender


@dataclass(frozen=True)
class ConvSpec:
    out: int
    kernel: int
    stride: int = 1
    padding: int = 0
    pool: int | None = None  # None: no pooling; p: maxpool 2x2 stride 2 with padding p

    def out_side(self, side: int) -> int:
        side = (side + 2 * self.padding - self.kernel) // self.stride + 1
        if self.pool is not None:
            side = (side + 2 * self.pool - 2) // 2 + 1
        return side


@dataclass(frozen=True)
class Layout:
    """Architecture of phi. Stored in every gis checkpoint so it rebuilds exactly."""

    name: str
    image_size: int
    convs: tuple[ConvSpec, ...]
    fc: tuple[int, int]
    dropout: float = 0.5

    @property
    def feature_side(self) -> int:
        side = self.image_size
        for c in self.convs:
            side = c.out_side(side)
        return side

    @property
    def flat_features(self) -> int:
        return self.feature_side ** 2 * self.convs[-1].out

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["convs"] = [asdict(c) for c in self.convs]
        d["fc"] = list(self.fc)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Layout:
        try:
            return cls(name=str(d["name"]), image_size=int(d["image_size"]),
                       convs=tuple(ConvSpec(**c) for c in d["convs"]),
                       fc=(int(d["fc"][0]), int(d["fc"][1])), dropout=float(d["dropout"]))
        except (KeyError, TypeError, IndexError) as exc:
            raise CheckpointError(f"checkpoint holds a malformed DVBPR layout: {exc}") from None

    def scaled(self, width: float) -> Layout:
        """The same stack with every channel/fc width multiplied by ``width`` (tests, sweeps)."""
        if width == 1.0:
            return self
        convs = tuple(replace(c, out=max(1, round(c.out * width))) for c in self.convs)
        fc = (max(1, round(self.fc[0] * width)), max(1, round(self.fc[1] * width)))
        return replace(self, name=f"{self.name}x{width:g}", convs=convs, fc=fc)


def _port_stack() -> tuple[ConvSpec, ...]:
    return (ConvSpec(64, 11, 4, 0, pool=0), ConvSpec(256, 5, 1, 2, pool=0),
            ConvSpec(256, 3, 1, 1), ConvSpec(256, 3, 1, 1), ConvSpec(256, 3, 1, 1, pool=1))


LAYOUTS: dict[str, Layout] = {
    "224": Layout("224", 224, _port_stack(), (4096, 4096), 0.5),
    "128": Layout("128", 128, _port_stack(), (4096, 4096), 0.5),
    "32": Layout("32", 32,
                 (ConvSpec(16, 5, 1, 2, pool=0), ConvSpec(32, 5, 1, 2, pool=0),
                  ConvSpec(48, 3, 1, 1), ConvSpec(48, 3, 1, 1), ConvSpec(48, 3, 1, 1, pool=0)),
                 (128, 128), 0.1),
}


def get_layout(layout: str | Layout | dict, *, width: float = 1.0) -> Layout:
    if isinstance(layout, Layout):
        base = layout
    elif isinstance(layout, dict):
        base = Layout.from_dict(layout)
    else:
        key = str(layout)
        if key not in LAYOUTS:
            from gis.errors import GisUsageError

            raise GisUsageError(f"unknown DVBPR layout {key!r}; available: "
                                f"{', '.join(LAYOUTS)}")
        base = LAYOUTS[key]
    return base.scaled(width)


class DVBPRNet(nn.Module):
    """phi: images (B, 3, S, S) in [-1, 1] -> (B, K)."""

    def __init__(self, layout: Layout, k: int = 100):
        super().__init__()
        self.layout = layout
        self.k = k
        cin = 3
        for n, c in enumerate(layout.convs, 1):
            self.add_module(f"conv{n}", nn.Conv2d(cin, c.out, c.kernel, c.stride, c.padding))
            cin = c.out
        self.fc1 = nn.Linear(layout.flat_features, layout.fc[0])
        self.fc2 = nn.Linear(layout.fc[0], layout.fc[1])
        self.fc3 = nn.Linear(layout.fc[1], k)
        self.dropout = nn.Dropout(layout.dropout)
        if layout.feature_side < 1:
            raise ValueError(f"layout {layout.name!r} leaves no features at "
                             f"{layout.image_size} px")

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Xavier-uniform weights, zero biases (as the authors)."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(m.weight)
                bound = (6.0 / (fan_in + fan_out)) ** 0.5
                with torch.no_grad():
                    m.weight.uniform_(-bound, bound, generator=generator)
                    m.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, 3, S, S) in [-1, 1]
        for n, c in enumerate(self.layout.convs, 1):
            x = F.relu(getattr(self, f"conv{n}")(x))
            if c.pool is not None:
                x = F.max_pool2d(x, 2, 2, padding=c.pool)
        x = torch.flatten(x, 1)                        # (B, side*side*C)
        x = self.dropout(F.relu(self.fc1(x)))
        x = self.dropout(F.relu(self.fc2(x)))
        return self.fc3(x)                             # (B, K)

    def weight_decay_terms(self) -> list[nn.Parameter]:
        """The parameters the CNN L2 penalty applies to (weights, not biases)."""
        return [p for n, p in self.named_parameters() if n.endswith("weight")]


class DVBPR(Recommender):
    """A trained (or freshly initialised) DVBPR model behind gis's Recommender interface.

    ``cnn`` is phi, ``theta`` (U, K) the user vectors, ``user_ids`` their external ids.
    Built by the plugin factory in eval mode with gradients off for its parameters (images can
    still be differentiated through ``embed``); the trainer switches both back on.
    """

    input_range = (-1.0, 1.0)

    def __init__(self, layout: Layout, user_ids: list[str], k: int = 100,
                 card: dict[str, Any] | None = None):
        super().__init__()
        self.layout = layout
        self.image_size = layout.image_size
        self.embedding_dim = k
        self.user_ids = [str(u) for u in user_ids]
        self.card = ModelCard.from_dict(card)
        self.cnn = DVBPRNet(layout, k)
        self.theta = nn.Parameter(torch.zeros(len(self.user_ids), k))

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Xavier CNN, theta ~ uniform(0, 0.01) (Kang et al.)."""
        self.cnn.reset_parameters(generator)
        with torch.no_grad():
            self.theta.uniform_(0.0, 0.01, generator=generator)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """phi(images): (B, 3, S, S) in [-1, 1] -> (B, K)."""
        if images.dim() != 4 or images.shape[1] != 3 or images.shape[-1] != self.image_size \
                or images.shape[-2] != self.image_size:
            raise ValueError(f"DVBPR layout {self.layout.name!r} expects images (B, 3, "
                             f"{self.image_size}, {self.image_size}); got {tuple(images.shape)}"
                             " (use .prepare() to resize)")
        return self.cnn(images.to(self.theta.dtype))

    @property
    def user_vectors(self) -> torch.Tensor:
        return self.theta

    def extra_repr(self) -> str:
        return (f"layout={self.layout.name!r}, image_size={self.image_size}, "
                f"K={self.embedding_dim}, users={self.num_users}")
