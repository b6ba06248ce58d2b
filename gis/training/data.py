"""Training images on the device: a dataset's uint8 images kept as uint8 on the GPU/CPU (4x
less memory than float) and turned into float batches on the fly."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import GisUsageError

__all__ = ["images_to_device", "resize_batch", "training_images", "uint8_batch_to_float"]


def images_to_device(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> uint8 tensor (N, 3, H, W) on ``device``. Raises GisUsageError for
    any other dtype or shape."""
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise GisUsageError(
            f"expected uint8 images (N, H, W, 3), got {images.dtype} {tuple(images.shape)}")
    t = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).contiguous()
    return t.to(device)


def training_images(images: np.ndarray, resolution: int, device: torch.device) -> torch.Tensor:
    """The dataset's uint8 images (N, H, W, 3) as a uint8 (N, 3, r, r) tensor on ``device``,
    resized once (in chunks of 1024, see :func:`resize_batch`) when their side is not
    ``resolution``."""
    data = images_to_device(images, device)
    if data.shape[-1] != resolution:
        parts = [resize_batch(uint8_batch_to_float(data[i:i + 1024]), resolution)
                 for i in range(0, len(data), 1024)]
        data = ((torch.cat(parts) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    return data


def uint8_batch_to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, H, W) in [0, 255] -> float32 in [-1, 1]."""
    return x.float().mul_(2.0 / 255.0).sub_(1.0)


def resize_batch(x: torch.Tensor, size: int) -> torch.Tensor:
    """Float images (B, C, H, W) to (B, C, size, size): area averaging when shrinking by an
    integer factor, antialiased bilinear otherwise."""
    if x.shape[-1] == size:
        return x
    if x.shape[-1] % size == 0:
        return F.avg_pool2d(x, x.shape[-1] // size)
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                         antialias=True)


def save_class_reals(run, data: torch.Tensor, labels: torch.Tensor, num_classes: int,
                     n_col: int) -> None:
    """Once per run folder, ``samples/reals.png``: one row of ``n_col`` training images
    (uint8 (N, 3, H, W), class ``labels`` (N,)) per class, padded with white where a class has
    fewer (the conditional GAN trainers' reference grid)."""
    if (run.out / "samples" / "reals.png").exists():
        return
    rows = []
    for c in range(num_classes):
        x = uint8_batch_to_float(data[torch.nonzero(labels == c).flatten()[:n_col]])
        if len(x) < n_col:
            x = torch.cat([x, torch.ones(n_col - len(x), *x.shape[1:], device=data.device)])
        rows.append(x)
    run.save_samples(torch.cat(rows), "reals", nrow=n_col)


def dataset_record(dataset, num_images: int, category_names) -> dict:
    """What a generator's checkpoint and card record of its training data."""
    return {"name": (getattr(dataset, "meta", {}) or {}).get("name"), "num_images": num_images,
            "resolution": int(dataset.resolution), "category_names": category_names}
