"""The ``dvbpr-gan`` generator (with its discriminator) as a gis Generator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from gis_progan.common import (
    load_generator_file,
    load_state_strict,
    missing_default,
    read_card,
    save_generator_file,
)

from gis.errors import CheckpointError, GisUsageError
from gis.interfaces import Generator, ModelCard

from .model import DVBPRDiscriminator, DVBPRGANConfig, DVBPRGenerator, one_hot

GIS_FORMAT = "gis-dvbpr-gan"
GIS_TRAIN_FORMAT = "gis-dvbpr-gan-train"
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "fashion-colors.safetensors"
TRAIN_COMMAND = ("gis train generator dvbpr-gan --data fashion-colors --out runs/dvbpr-gan "
                 "--minutes 6 --device cuda --batch-size 64")


class DVBPRGAN(Generator):
    """Kang et al.'s class-conditional LSGAN generator G(z, c) and its discriminator D(x, c).

    ``synthesize(z, labels=...)`` needs category indices (n,) (a single index broadcasts);
    images are (n, 3, resolution, resolution) in [-1, 1] (tanh). ``discriminate(x, labels)``
    returns D's raw LSGAN scores (about 1 for images D takes as real, 0 for fakes), as used by
    the DVBPR design baseline's term (D(G(z, c), c) - 1)^2. Both networks are in eval mode
    (BatchNorm uses its running statistics), so outputs are deterministic.
    """

    output_range = (-1.0, 1.0)

    def __init__(self, config: DVBPRGANConfig, *, card: dict[str, Any] | None = None,
                 category_names: list[str] | None = None):
        super().__init__()
        self.config = config
        self.net = DVBPRGenerator(config)
        self.discriminator = DVBPRDiscriminator(config)
        self.latent_dim = config.latent_dim
        self.resolution = config.resolution
        self.num_classes = config.num_classes
        self.category_names = list(category_names or [str(i) for i in range(config.num_classes)])
        self.card = ModelCard.from_dict(card)

    def _labels(self, labels: torch.Tensor | int | None, n: int) -> torch.Tensor:
        if labels is None:
            raise GisUsageError(
                f"dvbpr-gan is class-conditional: pass labels (category indices 0.."
                f"{self.num_classes - 1}: {', '.join(self.category_names)})")
        lab = torch.as_tensor(labels, device=self.device).long().reshape(-1)
        if lab.numel() == 1 and n != 1:
            lab = lab.expand(n)
        if lab.numel() != n:
            raise GisUsageError(f"dvbpr-gan: {lab.numel()} labels for {n} latents")
        if n and (int(lab.min()) < 0 or int(lab.max()) >= self.num_classes):
            raise GisUsageError(
                f"dvbpr-gan: labels must lie in 0..{self.num_classes - 1}, got "
                f"{int(lab.min())}..{int(lab.max())}")
        return lab

    def synthesize(self, z: torch.Tensor, *, labels: torch.Tensor | None = None) -> torch.Tensor:
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise GisUsageError(
                f"dvbpr-gan expects latents of shape (n, {self.latent_dim}), got "
                f"{tuple(z.shape)}")
        lab = self._labels(labels, z.shape[0])
        return self.net(z, one_hot(lab, self.num_classes, z.dtype))

    def discriminate(self, images: torch.Tensor, labels: torch.Tensor | int) -> torch.Tensor:
        """D's raw scores (n,) for images (n, 3, resolution, resolution) in [-1, 1]."""
        if images.ndim != 4 or images.shape[-1] != self.resolution:
            raise GisUsageError(
                f"dvbpr-gan discriminator expects (n, 3, {self.resolution}, {self.resolution}) "
                f"images, got {tuple(images.shape)}")
        lab = self._labels(labels, images.shape[0])
        return self.discriminator(images, one_hot(lab, self.num_classes, images.dtype))

    @property
    def realism_kinds(self) -> tuple[str, ...]:
        return ("critic", *super().realism_kinds)

    def realism(self, images: torch.Tensor | None = None, latents: torch.Tensor | None = None,
                *, kind: str | None = None, labels: torch.Tensor | None = None) -> torch.Tensor:
        """"critic": -(D(x, c) - 1)^2, the LSGAN generator objective (Mao et al. 2017) that
        DVBPR's design baseline uses (Kang et al. 2017): (B,) <= 0, 0 where D takes the image
        for real; needs images in [-1, 1] and their ``labels``. "latent-prior": gis.realism."""
        from gis.realism import resolve_kind

        if resolve_kind(self, kind) == "critic":
            if images is None:
                raise GisUsageError("the dvbpr-gan critic realism reads images (B, 3, R, R)")
            return -(self.discriminate(images, labels) - 1.0).square()
        return super().realism(images, latents, kind=kind, labels=labels)

    def realism_floor(self, kind: str) -> float | None:
        """The floor of ``kind`` calibrated on held-out real images (5th percentile of their
        scores, with their labels) that the model card records under
        ``realism_calibration.<kind>.floor`` (``python -m gis_dvbpr_gan.calibrate``); None
        when the card has none."""
        entry = (self.card.get("realism_calibration") or {}).get(kind) or {}
        floor = entry.get("floor")
        return None if floor is None else float(floor)

    def save(self, path: str | Path, *, dtype: torch.dtype | None = torch.float16,
             card: dict[str, Any] | None = None) -> Path:
        card = {**self.card, **(card or {})}
        tensors = {**{f"g.{k}": v for k, v in self.net.state_dict().items()},
                   **{f"d.{k}": v for k, v in self.discriminator.state_dict().items()}}
        meta = {"format": GIS_FORMAT, "config": self.config.to_dict(),
                "category_names": self.category_names}
        return save_generator_file(path, tensors, meta, dtype=dtype, card=card)


def load_dvbpr_gan(checkpoint: str | Path | None = None, *,
                   device: str | torch.device = "cpu") -> DVBPRGAN:
    """Build the model from a gis file (exported ``dvbpr_gan.safetensors`` or a training
    ``checkpoint.safetensors``, or a run folder) or, when None, the shipped weights."""
    if checkpoint is None:
        if not DEFAULT_WEIGHTS.is_file():
            raise missing_default("dvbpr-gan", DEFAULT_WEIGHTS, TRAIN_COMMAND)
        checkpoint = DEFAULT_WEIGHTS
    path = Path(checkpoint)
    if path.is_dir():
        for name in ("dvbpr_gan.safetensors", "checkpoint.safetensors"):
            if (path / name).is_file():
                path = path / name
                break
        else:
            raise CheckpointError(f"{path} holds no dvbpr_gan.safetensors or "
                                  "checkpoint.safetensors")
    if path.suffix != ".safetensors":
        raise CheckpointError(f"dvbpr-gan reads gis .safetensors files only, not {path.name}")
    tensors, meta = load_generator_file(path, kind="dvbpr-gan",
                                        accepted=(GIS_FORMAT, GIS_TRAIN_FORMAT))
    try:
        cfg = DVBPRGANConfig.from_dict(meta["config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: broken dvbpr-gan config ({exc})") from None
    card = {**read_card(path), "checkpoint": str(path), "source_format": meta["format"]}
    model = DVBPRGAN(cfg, card=card, category_names=meta.get("category_names"))
    g = {k[2:]: v for k, v in tensors.items() if k.startswith("g.")}
    d = {k[2:]: v for k, v in tensors.items() if k.startswith("d.")}
    load_state_strict(model.net, g, f"dvbpr-gan checkpoint {path} (generator)")
    load_state_strict(model.discriminator, d, f"dvbpr-gan checkpoint {path} (discriminator)")
    model.eval().requires_grad_(False)
    return model.to(device)
