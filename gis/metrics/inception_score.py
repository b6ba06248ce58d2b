"""Inception Score (Salimans et al. 2016), and the classifier that gives it its p(y|x).

``inception_score(probs, splits)`` is the standard definition, as the reference code computes
it: the N rows of ``probs`` are cut, in the order given, into ``splits`` consecutive parts
(part i = rows ``i*N//splits`` to ``(i+1)*N//splits``); on each part

    IS_part = exp( mean_i KL( p(y|x_i) || p(y) ) ),   p(y) = mean_i p(y|x_i) over the part,

and the result is the mean and the (population, ``ddof=0``) standard deviation of the parts'
scores. The score depends on the order of the rows and on ``splits`` (docs/RESULTS.md,
Definitions): report both, and shuffle beforehand only on purpose.

Why not torchmetrics' ``InceptionScore``: it shuffles the rows with the global torch RNG
(which a library must not touch) and reports the unbiased standard deviation, so its numbers
are neither reproducible from a seed nor the reference code's; on the same row order its mean
is the same.

The ImageNet Inception Score needs the 1008-way head of the 2015 Inception network, which no
package ships offline. ``is_classifier`` therefore uses torchvision's Inception-v3 (1000
ImageNet classes) only when its weights are already in the torch hub cache -- gis never
downloads -- and otherwise the category classifier of the dataset's ground truth
(``gis.interfaces.GroundTruth``). A score computed with the latter is a **domain IS**: it
lies in [1, num_classes] (the dataset's number of categories), measures how
confidently and how evenly the generated images fall into the dataset's categories, and is
not comparable to ImageNet IS values reported in papers (which are computed on 1,000 or 1,008
ImageNet classes with another network).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import GisUsageError

#: torchvision ``Inception_V3_Weights.IMAGENET1K_V1`` file name in ``torch.hub.get_dir()/checkpoints``
TORCHVISION_INCEPTION_FILE = "inception_v3_google-0cc3c7bd.pth"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGENET_NAME = "IS (torchvision Inception-v3, ImageNet)"

__all__ = [
    "IMAGENET_NAME",
    "ISClassifier",
    "inception_score",
    "is_classifier",
    "torchvision_inception_file",
]


def inception_score(probs: torch.Tensor, splits: int = 10) -> tuple[float, float]:
    """(mean, std) Inception Score of class probabilities ``probs`` (N, C).

    Standard definition (see the module docstring): the rows are split, in the given order,
    into ``splits`` consecutive parts of ``N // splits`` or ``N // splits + 1`` rows; each
    part scores exp(mean KL(p(y|x) || p(y))); the mean and population std over the parts are
    returned. Computed in float64; 0 log 0 counts as 0.

    Range: [1, C]. 1 when every row is the same distribution (e.g. uniform); C when the rows
    are confident (one-hot) and spread evenly over the C classes. With a domain classifier
    (``is_classifier`` without ImageNet weights) the result is a *domain IS* in
    [1, num_classes], not comparable to ImageNet IS values.

    Raises ``GisUsageError`` when ``probs`` is not (N, C) probabilities, or N < ``splits``.
    """
    p = torch.as_tensor(probs).detach().to("cpu", torch.float64)
    if p.ndim != 2 or p.shape[1] < 1:
        raise GisUsageError(f"inception_score expects probabilities (N, C), got shape "
                            f"{tuple(p.shape)}")
    splits = int(splits)
    if splits < 1:
        raise GisUsageError(f"splits must be at least 1, got {splits}")
    n = p.shape[0]
    if n < splits:
        raise GisUsageError(f"inception_score needs at least splits={splits} images, got {n}")
    if not torch.isfinite(p).all() or (p < -1e-6).any():
        raise GisUsageError("inception_score expects finite, non-negative probabilities "
                            "(apply softmax to logits first)")
    sums = p.sum(1)
    if (sums - 1).abs().max() > 1e-3:
        raise GisUsageError(f"inception_score expects rows that sum to 1 (got sums in "
                            f"[{float(sums.min()):.4g}, {float(sums.max()):.4g}]); apply "
                            "softmax to logits first")
    p = p.clamp_min(0.0)
    scores = []
    for i in range(splits):
        part = p[i * n // splits:(i + 1) * n // splits]
        marginal = part.mean(0, keepdim=True)
        # KL(p || m) = sum p log p - p log m, with 0 log 0 = 0
        kl = (torch.xlogy(part, part) - torch.xlogy(part, marginal.expand_as(part))).sum(1)
        scores.append(math.exp(float(kl.mean())))
    t = torch.tensor(scores, dtype=torch.float64)
    return float(t.mean()), float(t.std(unbiased=False)) if len(scores) > 1 else 0.0


@dataclass(frozen=True)
class ISClassifier:
    """What ``is_classifier`` returns: ``fn`` maps images (N, 3, H, W) in [0, 1] to class
    probabilities (N, C); ``name`` labels the scores made with it (print it next to every
    value); ``kind`` is ``"imagenet"`` or ``"domain"``; ``num_classes`` is C."""

    fn: Callable[[torch.Tensor], torch.Tensor]
    name: str
    kind: str
    num_classes: int

    def __call__(self, images01: torch.Tensor) -> torch.Tensor:
        return self.fn(images01)

    def __iter__(self):  # unpacks as (fn, name, kind)
        return iter((self.fn, self.name, self.kind))


def torchvision_inception_file() -> Path:
    """Where torchvision keeps its Inception-v3 ImageNet weights (present or not)."""
    name = TORCHVISION_INCEPTION_FILE
    try:
        from torchvision.models import Inception_V3_Weights

        name = Path(Inception_V3_Weights.IMAGENET1K_V1.url).name or name
    except (ImportError, AttributeError):
        pass
    return Path(torch.hub.get_dir()) / "checkpoints" / name


def _torchvision_inception(path: Path, device: torch.device) -> Callable:
    from torchvision.models import inception_v3

    from ..errors import CheckpointError

    # transform_input=True is how torchvision builds the ImageNet model: the Google weights
    # expect [-1, 1] input, and the model maps the ImageNet-normalised input to that itself.
    model = inception_v3(weights=None, aux_logits=True, transform_input=True, init_weights=False)
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except Exception as exc:  # a truncated or foreign file
        raise CheckpointError(f"{path} is not torchvision's Inception-v3 ImageNet weights: "
                              f"{exc}") from None
    model.eval().to(device)
    for p in model.parameters():
        p.requires_grad_(False)
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)

    @torch.no_grad()
    def fn(images01: torch.Tensor, batch_size: int = 50) -> torch.Tensor:
        x = _check01(images01)
        out = []
        for s in range(0, x.shape[0], batch_size):
            b = x[s:s + batch_size].to(device, torch.float32)
            b = F.interpolate(b, size=(299, 299), mode="bilinear", align_corners=False)
            out.append(model((b - mean) / std).softmax(dim=1).cpu())
        return torch.cat(out) if out else torch.zeros(0, 1000)

    return fn


def _check01(images01: torch.Tensor) -> torch.Tensor:
    x = torch.as_tensor(images01).float()
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise GisUsageError(f"expected images (N, 3, H, W) in [0, 1], got {tuple(x.shape)}")
    if x.numel() and (float(x.min()) < -1e-3 or float(x.max()) > 1 + 1e-3):
        raise GisUsageError(f"IS classifiers take images in [0, 1], got values in "
                            f"[{float(x.min()):.3g}, {float(x.max()):.3g}]; map [-1, 1] "
                            "images with (x + 1) / 2 first")
    x = x.clamp(0.0, 1.0)
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


def is_classifier(dataset=None, device: str | torch.device = "cpu", *,
                  prefer: str = "auto") -> ISClassifier:
    """The classifier behind ``inception_score``'s probabilities (never downloads).

    ``prefer="auto"``: torchvision's Inception-v3 with its ImageNet weights when the file is
    already in ``torch.hub.get_dir()/checkpoints/`` (name ``"IS (torchvision Inception-v3,
    ImageNet)"``; images resized to 299 px bilinear, ImageNet normalisation, softmax over the
    1000 classes), else the category classifier of ``dataset``'s ground truth
    (``dataset.ground_truth.category_classifier()``, ``gis.interfaces.GroundTruth``; name
    ``"domain IS (<its label> on <dataset>, <C> classes)"``; a domain IS lies in
    [1, C] and is not comparable to ImageNet IS). ``prefer="domain"`` or ``"imagenet"`` force
    one (``"imagenet"`` raises ``MissingAssetError`` when the file is absent).

    Raises ``MissingAssetError`` when the domain classifier is needed and not installed.
    """
    device = torch.device(device)
    if prefer not in ("auto", "domain", "imagenet"):
        raise GisUsageError(f"prefer must be 'auto', 'domain' or 'imagenet', got {prefer!r}")
    file = torchvision_inception_file()
    if prefer == "imagenet" or (prefer == "auto" and file.is_file()):
        if not file.is_file():
            from ..errors import MissingAssetError

            raise MissingAssetError(
                f"torchvision Inception-v3 ImageNet weights not found at {file}; gis does not "
                f"download them: copy {file.name} there "
                "(or use the domain IS)")
        return ISClassifier(_torchvision_inception(file, device), IMAGENET_NAME, "imagenet",
                            1000)
    if dataset is None:
        from ..data import load_dataset

        dataset = load_dataset()
    model = dataset.ground_truth.category_classifier(device=device)
    name = (dataset.meta or {}).get("name") or "?"

    def fn(images01: torch.Tensor) -> torch.Tensor:
        return model.predict_proba(_check01(images01), value_range=(0.0, 1.0)).cpu()

    return ISClassifier(
        fn, f"domain IS ({getattr(model, 'label', type(model).__name__)} on {name}, "
        f"{model.num_classes} classes)",
        "domain", model.num_classes)
