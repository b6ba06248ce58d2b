"""The ``biggan`` generator as a :class:`gis.interfaces.Generator` (gis's own BigGAN, or the
``pytorch-pretrained-biggan`` layout of :mod:`gis_biggan.pretrained`), and its gis file."""

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
from torch import nn

from gis.errors import CheckpointError, GisUsageError
from gis.interfaces import Generator, ModelCard

from .model import BigGANConfig, BigGANDiscriminator, BigGANGenerator

GIS_FORMAT = "gis-biggan"
GIS_TRAIN_FORMAT = "gis-biggan-train"
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "fashion-colors.safetensors"
TRAIN_COMMAND = ("gis train generator biggan --data runs/fashion_colors_full.npz --out "
                 "runs/biggan-gpu --device cuda --batch-size 128 --kimg 3000 "
                 "--checkpoint-every-s 120")
DEFAULT_EMBEDDING_SCALE = 0.5


class BigGAN(Generator):
    """A class-conditional BigGAN G(z, c) (Brock et al. 2019) behind gis's interface.

    ``net`` is a generator module with ``embed(labels) -> e (n, E)`` (the shared class
    embedding) and ``forward(z, e) -> images`` in [-1, 1]: gis's own
    :class:`gis_biggan.model.BigGANGenerator` or the ``pytorch-pretrained-biggan`` layout
    (:class:`gis_biggan.pretrained.PretrainedBigGAN`).

    Latents. By default the latent is z alone (``latent_dim = z_dim``): inversion and shifting
    move z with the class embedding fixed at that of ``labels``. With ``shift_embedding=True``
    the latent is concat(z, u), ``latent_dim = z_dim + E``, and the embedding used is
    ``e = embed(c) + embedding_scale * s * u``, with s (E,) the spread (standard deviation over
    classes) of each embedding coordinate: u = 0 is the chosen class's own embedding, and a
    shift of u moves the embedding away from it, in units of the spread between classes. u
    lives in the same N(0, I)-like space as z, so gis's row renormalisation applies to the
    whole latent unchanged. ``labels`` are needed either way.

    ``synthesize(latents (n, latent_dim), labels=(n,) long or one index)`` returns
    (n, 3, resolution, resolution) in [-1, 1]. ``discriminate(images, labels)`` is the
    projection discriminator's raw hinge score (n,) when the weights hold D. Eval mode, frozen:
    BatchNorm uses its (standing) statistics and spectral norm its stored singular vectors, so
    outputs are deterministic.
    """

    output_range = (-1.0, 1.0)

    def __init__(self, net: nn.Module, *, z_dim: int, resolution: int, num_classes: int,
                 card: dict[str, Any] | None = None, category_names: list[str] | None = None,
                 discriminator: nn.Module | None = None, shift_embedding: bool = False,
                 embedding_scale: float = DEFAULT_EMBEDDING_SCALE, critic: bool = False):
        super().__init__()
        self.net = net
        self.discriminator = discriminator
        self.z_dim = int(z_dim)
        self.resolution = int(resolution)
        self.num_classes = int(num_classes)
        self.shift_embedding = bool(shift_embedding)
        self.embedding_scale = float(embedding_scale)
        self.use_critic = bool(critic) and discriminator is not None
        with torch.no_grad():
            self.embed_dim = int(net.embed(torch.zeros(1, dtype=torch.long)).shape[1])
        self.latent_dim = self.z_dim + (self.embed_dim if self.shift_embedding else 0)
        self.category_names = list(category_names or [str(i) for i in range(self.num_classes)])
        card = dict(card or {})
        card.setdefault("categories", self.category_names)
        self.card = ModelCard.from_dict(card)

    # ----------------------------------------------------------------- labels / latents
    def _labels(self, labels: torch.Tensor | int | None, n: int) -> torch.Tensor:
        if labels is None:
            raise GisUsageError(
                f"biggan is class-conditional: pass labels (category indices 0.."
                f"{self.num_classes - 1}, e.g. --category NAME or INDEX)")
        lab = torch.as_tensor(labels, device=self.device).long().reshape(-1)
        if lab.numel() == 1 and n != 1:
            lab = lab.expand(n)
        if lab.numel() != n:
            raise GisUsageError(f"biggan: {lab.numel()} labels for {n} latents")
        if n and (int(lab.min()) < 0 or int(lab.max()) >= self.num_classes):
            raise GisUsageError(
                f"biggan: labels must lie in 0..{self.num_classes - 1}, got "
                f"{int(lab.min())}..{int(lab.max())}")
        return lab

    def embedding_spread(self) -> torch.Tensor:
        """(E,): the standard deviation over the classes of each embedding coordinate (1 for a
        single class), the unit of a shift of the embedding."""
        if self.num_classes < 2:
            return torch.ones(self.embed_dim, device=self.device)
        with torch.no_grad():
            table = self.net.embed(torch.arange(self.num_classes, device=self.device))
        return table.std(0, unbiased=False).clamp_min(1e-8)

    def embedding(self, latents: torch.Tensor, labels: torch.Tensor | int) -> tuple[
            torch.Tensor, torch.Tensor]:
        """(z (n, z_dim), e (n, E)): the generator's inputs for ``latents`` under ``labels``."""
        if latents.ndim != 2 or latents.shape[1] != self.latent_dim:
            raise GisUsageError(
                f"biggan expects latents of shape (n, {self.latent_dim}), got "
                f"{tuple(latents.shape)}")
        lab = self._labels(labels, latents.shape[0])
        e = self.net.embed(lab).to(latents.dtype)
        z = latents[:, :self.z_dim]
        if self.shift_embedding:
            u = latents[:, self.z_dim:]
            e = e + self.embedding_scale * self.embedding_spread().to(latents.dtype) * u
        return z, e

    def synthesize(self, z: torch.Tensor, *, labels: torch.Tensor | None = None) -> torch.Tensor:
        zz, e = self.embedding(z, labels)
        return self.net(zz, e)

    # ----------------------------------------------------------------- critic
    def discriminate(self, images: torch.Tensor, *,
                     labels: torch.Tensor | int | None = None) -> torch.Tensor:
        """D's raw hinge score (n,) for images (n, 3, resolution, resolution) in [-1, 1] of
        classes ``labels``; higher = more like the training images of that class."""
        if self.discriminator is None:
            raise GisUsageError("these biggan weights hold no discriminator")
        if images.ndim != 4 or images.shape[-1] != self.resolution:
            raise GisUsageError(
                f"biggan discriminator expects (n, 3, {self.resolution}, {self.resolution}) "
                f"images, got {tuple(images.shape)}")
        return self.discriminator(images, self._labels(labels, images.shape[0]))

    @property
    def realism_kinds(self) -> tuple[str, ...]:
        return (("critic",) if self.use_critic else ()) + super().realism_kinds

    def realism(self, images: torch.Tensor | None = None, latents: torch.Tensor | None = None,
                *, kind: str | None = None, labels: torch.Tensor | None = None) -> torch.Tensor:
        """"critic" (with ``critic=True``): D(x, c), the raw hinge score, uncalibrated (no
        floor). "latent-prior": gis.realism on the whole latent."""
        from gis.realism import resolve_kind

        if resolve_kind(self, kind) == "critic":
            if images is None:
                raise GisUsageError("the biggan critic realism reads images (B, 3, R, R)")
            return self.discriminate(images, labels=labels)
        return super().realism(images, latents, kind=kind, labels=labels)

    # ----------------------------------------------------------------- file
    def save(self, path: str | Path, *, dtype: torch.dtype | None = torch.float16,
             card: dict[str, Any] | None = None) -> Path:
        """gis's own BigGAN as a gis .safetensors file (G, and D when present) + card."""
        if not isinstance(self.net, BigGANGenerator):
            raise GisUsageError("only gis's own BigGAN saves as a gis biggan file")
        card = {**self.card, **(card or {})}
        tensors = {f"g.{k}": v for k, v in self.net.state_dict().items()}
        if self.discriminator is not None:
            tensors.update({f"d.{k}": v for k, v in self.discriminator.state_dict().items()})
        meta = {"format": GIS_FORMAT, "config": self.net.cfg.to_dict(),
                "category_names": self.category_names}
        return save_generator_file(path, tensors, meta, dtype=dtype, card=card)


def _resolve(checkpoint: str | Path) -> Path:
    path = Path(checkpoint)
    if path.is_dir():
        for name in ("biggan.safetensors", "checkpoint.safetensors", "pytorch_model.bin"):
            if (path / name).is_file():
                return path / name
        raise CheckpointError(f"{path} holds no biggan.safetensors, checkpoint.safetensors "
                              "or pytorch_model.bin")
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    return path


def load_biggan(checkpoint: str | Path | None = None, *, device: str | torch.device = "cpu",
                trust: bool = False, shift_embedding: bool = False,
                embedding_scale: float = DEFAULT_EMBEDDING_SCALE, critic: bool = False,
                truncation: float = 1.0) -> BigGAN:
    """Build the generator from a gis file (exported ``biggan.safetensors``, a training
    ``checkpoint.safetensors`` (its weight average), or their run folder), a
    ``pytorch-pretrained-biggan`` model (a folder with ``pytorch_model.bin`` and
    ``config.json``, or such a ``.bin``/``.pt``/``.safetensors`` state dict with
    ``config.json`` beside it: :func:`gis_biggan.pretrained.load_pretrained_biggan`), or,
    when None, the shipped weights. ``truncation`` applies to the pretrained layout only (its
    BatchNorm statistics are stored per truncation); gis's own BigGAN refuses a value other
    than 1. Raises CheckpointError (unreadable or mismatching file), UntrustedFileError (a
    pickle file without ``trust``), MissingAssetError (no shipped weights)."""
    if checkpoint is None:
        if not DEFAULT_WEIGHTS.is_file():
            raise missing_default("biggan", DEFAULT_WEIGHTS, TRAIN_COMMAND)
        checkpoint = DEFAULT_WEIGHTS
    path = _resolve(checkpoint)
    opts = {"shift_embedding": shift_embedding, "embedding_scale": embedding_scale}
    fmt = None
    if path.suffix == ".safetensors":
        from gis.training import read_checkpoint_meta

        try:
            fmt = read_checkpoint_meta(path).get("format")
        except Exception:  # noqa: BLE001 - a safetensors state dict without gis meta
            fmt = None
    if fmt not in (GIS_FORMAT, GIS_TRAIN_FORMAT):
        from .pretrained import load_pretrained_biggan

        net, cfg, card = load_pretrained_biggan(path, trust=trust, truncation=truncation)
        model = BigGAN(net, z_dim=cfg.z_dim, resolution=cfg.output_dim,
                       num_classes=cfg.num_classes, card=card, **opts)
        return model.eval().requires_grad_(False).to(device)
    if truncation != 1.0:
        raise GisUsageError("truncation applies to pytorch-pretrained-biggan weights only "
                            "(gis's own BigGAN has one set of BatchNorm statistics)")
    tensors, meta = load_generator_file(path, kind="biggan", accepted=(GIS_FORMAT,
                                                                        GIS_TRAIN_FORMAT))
    try:
        cfg = BigGANConfig.from_dict(meta["config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: broken biggan config ({exc})") from None
    prefix = "ema." if any(k.startswith("ema.") for k in tensors) else "g."
    g = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    d = {k[2:]: v for k, v in tensors.items() if k.startswith("d.")}
    net = BigGANGenerator(cfg)
    load_state_strict(net, g, f"biggan checkpoint {path} (generator)")
    disc = None
    if d:
        disc = BigGANDiscriminator(cfg)
        load_state_strict(disc, d, f"biggan checkpoint {path} (discriminator)")
    names = meta.get("category_names") or (meta.get("dataset") or {}).get("category_names")
    card = {**read_card(path), "checkpoint": str(path), "source_format": meta["format"]}
    model = BigGAN(net, z_dim=cfg.latent_dim, resolution=cfg.resolution,
                   num_classes=cfg.num_classes, card=card, category_names=names,
                   discriminator=disc, critic=critic, **opts)
    return model.eval().requires_grad_(False).to(device)
