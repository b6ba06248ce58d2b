"""f(X): the pretrained CNN feature VBPR reads, from the ImageNet trunks gis provisions offline.

He & McAuley (2016) take f_i as the 4096-d fc7 output of an ImageNet Caffe reference network.
gis provisions only the *convolutional* trunks of ImageNet AlexNet and VGG16 (the LPIPS assets,
``gis.assets.lpips_trunk_state_dict``; no fully connected layers), so the feature here is a
spatial global average of conv activations:

    f(X) = concat_l GAP(relu_l(trunk(normalise(resize(X, side)))))   for l in ``layers``

``X`` (B, 3, H, W) in [-1, 1] is resized bilinearly to ``side`` x ``side`` (antialiased when
shrinking), standardised with LPIPS's ImageNet scaling layer, run through the trunk, and every
chosen layer's ReLU output is averaged over its spatial positions. The shipped default
(``alex``, ``relu1..relu5``, 64 px: 64+192+384+256+256 = 1152 dims) was chosen by validation AUC
on fashion-colors (docs/MODELS.md, "vbpr"). Differentiable with respect to X; the trunk is
frozen and in eval mode.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

from gis.errors import CheckpointError, GisUsageError

#: output channels of each ReLU of the LPIPS trunks (lpips.pretrained_networks)
CHANNELS = {"alex": (64, 192, 384, 256, 256), "vgg": (64, 128, 256, 512, 512)}
#: smallest input side each trunk keeps at least one position at its last layer
MIN_SIDE = {"alex": 32, "vgg": 16}
NETS = {"alex": "alex", "alexnet": "alex", "vgg": "vgg", "vgg16": "vgg"}


@dataclass(frozen=True)
class FeatureSpec:
    """Which feature: trunk ``net`` ("alex" or "vgg"), ReLU ``layers`` (1..5), input ``side``."""

    net: str = "alex"
    layers: tuple[int, ...] = (1, 2, 3, 4, 5)
    side: int = 64

    def __post_init__(self) -> None:
        if self.net not in CHANNELS:
            raise GisUsageError(f"unknown VBPR feature trunk {self.net!r}; choose 'alex' or "
                                "'vgg'")
        if not self.layers or any(int(x) != x or not 1 <= x <= 5 for x in self.layers) \
                or len(set(self.layers)) != len(self.layers):
            raise GisUsageError(f"VBPR feature layers must be distinct integers in 1..5, got "
                                f"{list(self.layers)}")
        if int(self.side) != self.side or self.side < MIN_SIDE[self.net]:
            raise GisUsageError(f"the VBPR feature side must be an integer >= "
                                f"{MIN_SIDE[self.net]} for the {self.net} trunk, got {self.side}")

    @property
    def dim(self) -> int:
        """F, the feature size."""
        return sum(CHANNELS[self.net][i - 1] for i in self.layers)

    @property
    def blocks(self) -> list[int]:
        """Sizes of the layers' blocks in f, in order."""
        return [CHANNELS[self.net][i - 1] for i in sorted(self.layers)]

    @property
    def name(self) -> str:
        return f"{self.net}-relu{''.join(map(str, self.layers))}-gap-{self.side}px"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["layers"] = list(self.layers)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> FeatureSpec:
        try:
            return cls(net=str(d["net"]), layers=tuple(int(x) for x in d["layers"]),
                       side=int(d["side"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"malformed VBPR feature spec {d!r}: {exc}") from None


def parse_layers(text: str | Sequence[int]) -> tuple[int, ...]:
    """"1,2,5" or "125" or [1, 2, 5] -> (1, 2, 5)."""
    if isinstance(text, str):
        parts = [p for p in text.replace(",", " ").split() if p]
        digits = parts[0] if len(parts) == 1 and len(parts[0]) > 1 else None
        try:
            return tuple(int(c) for c in digits) if digits else tuple(int(p) for p in parts)
        except ValueError:
            raise GisUsageError(f"VBPR feature layers are digits 1..5 (e.g. 1,2,5), got "
                                f"{text!r}") from None
    return tuple(int(x) for x in text)


def _lpips_trunk(net: str) -> nn.Module:
    """``lpips.pretrained_networks.alexnet/vgg16`` with the ImageNet weights from the gis asset
    (raises MissingAssetError naming the provisioning command when it is absent)."""
    from gis import assets

    state = assets.lpips_trunk_state_dict(net)  # before any work
    import lpips.pretrained_networks as pn

    with warnings.catch_warnings():  # lpips passes torchvision's deprecated pretrained=False
        warnings.filterwarnings("ignore", message="The parameter 'pretrained' is deprecated",
                                category=UserWarning)
        warnings.filterwarnings("ignore", message="Arguments other than a weight enum",
                                category=UserWarning)
        trunk = (pn.alexnet if net == "alex" else pn.vgg16)(requires_grad=False,
                                                            pretrained=False)
    trunk.load_state_dict(state, strict=True)
    return trunk


class VisualFeatures(nn.Module):
    """f: images (B, 3, H, W) in [-1, 1] -> (B, F) float32, F = ``spec.dim``; non-negative
    (averages of ReLU outputs). Frozen ImageNet trunk; gradients flow to the images."""

    def __init__(self, spec: FeatureSpec):
        super().__init__()
        self.spec = spec
        self.trunk = _lpips_trunk(spec.net).eval().requires_grad_(False)
        # LPIPS's ScalingLayer: ImageNet mean/std expressed for inputs in [-1, 1]
        self.register_buffer("shift", torch.tensor([-.030, -.088, -.188]).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("scale", torch.tensor([.458, .448, .450]).view(1, 3, 1, 1),
                             persistent=False)
        self.last = max(spec.layers)

    def train(self, mode: bool = True) -> VisualFeatures:
        super().train(mode)
        self.trunk.eval()  # no dropout/BN inside, but keep it explicit: always eval
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise GisUsageError(f"VBPR features take images (B, 3, H, W), got {tuple(x.shape)}")
        side = self.spec.side
        x = x.to(self.shift.dtype)
        if x.shape[-1] != side or x.shape[-2] != side:
            x = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False,
                              antialias=side < x.shape[-1])
        h = (x - self.shift) / self.scale
        feats = []
        for n in range(1, self.last + 1):
            h = getattr(self.trunk, f"slice{n}")(h)
            if n in self.spec.layers:
                feats.append(h.mean(dim=(2, 3)))                  # (B, C_n)
        return torch.cat(feats, 1)                                 # (B, F)


@torch.no_grad()
def extract(features: VisualFeatures, images_uint8, *, batch_size: int = 256,
            device: torch.device | str = "cpu", progress=None) -> torch.Tensor:
    """f of a catalogue: uint8 (N, H, W, 3) numpy array -> (N, F) float32 on the CPU."""
    import numpy as np

    out = []
    n = len(images_uint8)
    for s in range(0, n, batch_size):
        x = torch.from_numpy(np.ascontiguousarray(images_uint8[s:s + batch_size]))
        x = x.permute(0, 3, 1, 2).to(device).float().mul_(2.0 / 255.0).sub_(1.0)
        out.append(features(x).float().cpu())
        if progress is not None:
            progress(min(s + batch_size, n), n)
    return torch.cat(out) if out else torch.zeros(0, features.spec.dim)
