"""The checks every object a plugin factory returns must pass (docs/PLUGINS.md, "Checks").

``gis.plugins.Registry.create`` runs ``check(kind, obj)`` on each object at once, so a plugin
that breaks its interface fails at load time with one line naming the mismatched piece
(``PluginContractError``), not later inside the engine with a traceback. The checks are cheap,
because they run at every load: a batch of ``BATCH`` inputs, no gradients, eval mode, and
the random number generators and train/eval modes restored afterwards (they leave no trace).
``run_checks`` is ``gis plugins check NAME``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from . import errors
from .errors import one_line

#: inputs per dummy batch
BATCH = 2
#: how far (in spans of the declared range) values may leave it before a check fails:
#: generators without a final clamp overshoot a little (progan with clamp=False)
RANGE_SLACK = 0.5


class ContractMismatch(Exception):
    """One mismatched piece; the registry adds which object, plugin and module."""


# ----------------------------------------------------------------------------- helpers
def _attr(obj: Any, name: str, what: str) -> Any:
    try:
        return getattr(obj, name)
    except AttributeError:
        raise ContractMismatch(f"missing attribute {name!r} ({what})") from None
    except Exception as exc:
        raise ContractMismatch(f"reading {name!r} raised {one_line(exc)}") from None


def _int_attr(obj: Any, name: str, what: str, minimum: int = 1) -> int:
    value = _attr(obj, name, what)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ContractMismatch(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _range_attr(obj: Any, name: str, what: str) -> tuple[float, float]:
    value = _attr(obj, name, what)
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ContractMismatch(f"{name} must be (low, high), got {value!r}") from None
    if not lo < hi:
        raise ContractMismatch(f"{name} must be (low, high) with low < high, got {value!r}")
    return lo, hi


def _card_line(obj: Any) -> str:
    from .interfaces import ModelCard

    card = getattr(obj, "card", None)
    if not isinstance(card, ModelCard):
        raise ContractMismatch(f"card must be a gis.ModelCard, got {type(card).__name__}")
    facts = [f"dataset {card.dataset_name}" if card.dataset_name else "no dataset named"]
    facts += [f"{k} {v:.4g}" for k, v in list(card.quality.items())[:2]]
    return f"card: a ModelCard ({', '.join(facts)})"


@contextlib.contextmanager
def _calling(what: str) -> Iterator[None]:
    """Report an exception raised by the plugin's method as the mismatch."""
    try:
        yield
    except ContractMismatch:
        raise
    except Exception as exc:
        raise ContractMismatch(f"{what} raised {one_line(exc)}") from None


@contextlib.contextmanager
def _no_trace(module: torch.nn.Module, device: torch.device) -> Iterator[None]:
    """Eval mode, no gradients, forked RNG state; train/eval modes restored afterwards."""
    modes = [(m, m.training) for m in module.modules()]
    cuda = [device.index or 0] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=cuda), torch.no_grad():
            module.eval()
            yield
    finally:
        for m, training in modes:
            m.training = training


def _float_dtype(module: torch.nn.Module) -> torch.dtype:
    return next((p.dtype for p in module.parameters() if p.is_floating_point()), torch.float32)


def _tensor(what: str, value: Any, shape: tuple[int, ...], meaning: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise ContractMismatch(f"{what} returned a {type(value).__name__}, not a torch.Tensor")
    if tuple(value.shape) != shape:
        raise ContractMismatch(f"{what} returned shape {tuple(value.shape)}; expected {shape} "
                               f"= {meaning}")
    if not value.is_floating_point():
        raise ContractMismatch(f"{what} returned dtype {value.dtype}; expected a float tensor")
    if not bool(torch.isfinite(value).all()):
        raise ContractMismatch(f"{what} returned non-finite values (NaN or inf)")
    return value


def _shape_text(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(map(str, shape)) + ")"


# ----------------------------------------------------------------------------- the checks
def check_generator(gen: Any) -> list[str]:
    """A ``gis.Generator``: attributes, card, ``sample_latents`` and ``synthesize`` on a batch
    of ``BATCH`` latents (labels 0 for a conditional generator): (BATCH, 3, resolution,
    resolution), finite, within ``output_range``."""
    from .interfaces import Generator

    if not isinstance(gen, Generator):
        raise ContractMismatch(f"returned a {type(gen).__name__}, not a gis.Generator")
    what = "a gis.Generator sets latent_dim, resolution, output_range, num_classes"
    dim = _int_attr(gen, "latent_dim", what)
    res = _int_attr(gen, "resolution", what)
    lo, hi = _range_attr(gen, "output_range", what)
    classes = _int_attr(gen, "num_classes", what, minimum=0)
    passed = [f"returned {type(gen).__name__}, a gis.Generator",
              f"attributes: latent_dim={dim}, resolution={res}, output_range=({lo:g}, {hi:g}), "
              f"num_classes={classes}", _card_line(gen)]
    device = gen.device
    with _no_trace(gen, device):
        with _calling(f"sample_latents({BATCH})"):
            z = gen.sample_latents(BATCH, generator=torch.Generator().manual_seed(0))
        _tensor(f"sample_latents({BATCH})", z, (BATCH, dim), "(n, latent_dim)")
        labels = torch.zeros(BATCH, dtype=torch.long, device=z.device) if classes else None
        with _calling("synthesize"):
            x = gen.synthesize(z, labels=labels)
        _tensor("synthesize", x, (BATCH, 3, res, res), "(n, 3, resolution, resolution)")
    xmin, xmax = float(x.min()), float(x.max())
    slack = RANGE_SLACK * (hi - lo)
    if xmin < lo - slack or xmax > hi + slack:
        raise ContractMismatch(f"synthesize returned values in [{xmin:.4g}, {xmax:.4g}], "
                               f"outside output_range ({lo:g}, {hi:g})")
    passed += [f"sample_latents({BATCH}) -> {_shape_text((BATCH, dim))}",
               f"synthesize -> {_shape_text(tuple(x.shape))}, values in [{xmin:.3g}, "
               f"{xmax:.3g}] within output_range"]
    kinds = tuple(gen.realism_kinds)
    with _no_trace(gen, device):
        for kind in kinds:  # the optional realism capability (gis.realism)
            with _calling(f"realism(kind={kind!r})"):
                r = gen.realism(images=x, latents=z, kind=kind, labels=labels)
            _tensor(f"realism(kind={kind!r})", r, (BATCH,), "(n,)")
    passed.append(f"realism: {', '.join(kinds)} -> ({BATCH},)" if kinds else
                  "realism: none offered")
    return passed


def check_recommender(rec: Any) -> list[str]:
    """A ``gis.Recommender``: attributes, card, unique string ``user_ids`` matching the rows of
    ``user_vectors`` (U, K), ``embed`` of ``BATCH`` images spanning ``input_range`` -> (BATCH,
    K) finite, ``item_bias`` None or (BATCH,)."""
    from .interfaces import Recommender

    if not isinstance(rec, Recommender):
        raise ContractMismatch(f"returned a {type(rec).__name__}, not a gis.Recommender")
    what = "a gis.Recommender sets image_size, input_range, embedding_dim, user_ids"
    size = _int_attr(rec, "image_size", what)
    lo, hi = _range_attr(rec, "input_range", what)
    k = _int_attr(rec, "embedding_dim", what)
    ids = _attr(rec, "user_ids", what)
    if not isinstance(ids, Sequence) or isinstance(ids, str) or not ids:
        raise ContractMismatch(f"user_ids must be a non-empty list of str, got {ids!r:.60}")
    bad = next((u for u in ids if not isinstance(u, str)), None)
    if bad is not None:
        raise ContractMismatch(f"user_ids must be str, got {bad!r} ({type(bad).__name__})")
    if len(set(ids)) != len(ids):
        raise ContractMismatch(f"user_ids holds {len(ids) - len(set(ids))} duplicate id(s)")
    passed = [f"returned {type(rec).__name__}, a gis.Recommender",
              f"attributes: image_size={size}, input_range=({lo:g}, {hi:g}), embedding_dim={k}, "
              f"{len(ids)} user_ids", _card_line(rec)]
    device = rec.device
    with _no_trace(rec, device):
        with _calling("user_vectors"):
            theta = rec.user_vectors
        _tensor("user_vectors", theta, (len(ids), k), "(len(user_ids), embedding_dim)")
        n = BATCH * 3 * size * size
        x = torch.linspace(lo, hi, n, device=device, dtype=_float_dtype(rec))
        x = x.reshape(BATCH, 3, size, size)
        with _calling("embed"):
            phi = rec.embed(x)
        _tensor("embed", phi, (BATCH, k), "(batch, embedding_dim)")
        with _calling("item_bias"):
            bias = rec.item_bias(x)
        if bias is not None:
            _tensor("item_bias", bias, (BATCH,), "(batch,)")
    passed += [f"user_vectors -> {_shape_text(tuple(theta.shape))} matches the user ids",
               f"embed({BATCH} images {size}x{size} in input_range) -> "
               f"{_shape_text(tuple(phi.shape))}",
               "item_bias -> " + ("None" if bias is None else _shape_text(tuple(bias.shape)))]
    return passed


def check_dataset(ds: Any) -> list[str]:
    """A ``gis.data.Dataset`` whose fields agree (docs/PLUGINS.md, "Datasets"): uint8 images
    (N, H, W, 3); categories (N,) in 0..C-1; unique item and user ids; train (M, 2) of (user
    row, item index); val/test (U,) item indices or -1; held-out fields of one length."""
    from .data.base import Dataset

    if not isinstance(ds, Dataset):
        raise ContractMismatch(f"returned a {type(ds).__name__}, not a gis.data.Dataset")
    images = ds.images
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4 \
            or images.shape[-1] != 3 or not len(images):
        raise ContractMismatch(f"images must be a non-empty uint8 array (N, H, W, 3), got "
                               f"{_describe(images)}")
    n, names, users = len(images), list(ds.category_names), list(ds.user_ids)
    if not names or not all(isinstance(c, str) for c in names):
        raise ContractMismatch("category_names must be a non-empty list of str")
    _indices("categories", ds.categories, (n,), 0, len(names) - 1)
    _ids("item_ids", ds.item_ids, n)
    _ids("user_ids", users, len(users))
    train = np.asarray(ds.train)
    if train.ndim != 2 or (train.size and train.shape[1] != 2):
        raise ContractMismatch(f"train must be (M, 2) (user row, item index), got "
                               f"{_describe(ds.train)}")
    if train.size:
        _indices("train[:, 0] (user rows)", train[:, 0], (len(train),), 0, len(users) - 1)
        _indices("train[:, 1] (item indices)", train[:, 1], (len(train),), 0, n - 1)
    for name in ("val", "test"):
        _indices(name, getattr(ds, name), (len(users),), -1, n - 1)
    passed = [f"returned {type(ds).__name__}, a gis.data.Dataset",
              f"images {_shape_text(images.shape)} uint8, {len(names)} categories, "
              f"{len(users)} users, {len(train)} training interactions",
              "categories, item/user ids, train, val and test agree"]
    if ds.heldout_images is not None:
        held = ds.heldout_images
        if not isinstance(held, np.ndarray) or held.dtype != np.uint8 \
                or held.shape[1:] != images.shape[1:]:
            raise ContractMismatch(f"heldout_images must be uint8 {('H_n', *images.shape[1:])},"
                                   f" got {_describe(held)}")
        if ds.heldout_categories is not None:
            _indices("heldout_categories", ds.heldout_categories, (len(held),), 0,
                     len(names) - 1)
        _ids("heldout_item_ids", ds.heldout_item_ids, len(held))
        passed.append(f"{len(held)} held-out items agree")
    factory = getattr(ds, "ground_truth_factory", None)
    if factory is not None and not callable(factory):
        raise ContractMismatch("ground_truth_factory must be callable (Dataset -> GroundTruth)")
    passed.append("ground truth: " + ("offered" if factory is not None else "none"))
    return passed


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"{value.dtype} {_shape_text(value.shape)}"
    return type(value).__name__


def _indices(name: str, value: Any, shape: tuple[int, ...], low: int, high: int) -> None:
    arr = np.asarray(value)
    if arr.shape != shape or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise ContractMismatch(f"{name} must be an int array {_shape_text(shape)}, got "
                               f"{_describe(arr)}")
    if arr.size and (int(arr.min()) < low or int(arr.max()) > high):
        raise ContractMismatch(f"{name} holds values in {int(arr.min())}..{int(arr.max())}, "
                               f"outside {low}..{high}")


def _ids(name: str, ids: Any, n: int) -> None:
    ids = list(ids)
    if len(ids) != n:
        raise ContractMismatch(f"{name} has {len(ids)} entries for {n} rows")
    if len(set(map(str, ids))) != n:
        raise ContractMismatch(f"{name} holds {n - len(set(map(str, ids)))} duplicate id(s)")


def check_loss(loss: Any) -> list[str]:
    """A ``gis.interfaces.LossTerm`` (the only kind of loss the objectives use, docs/PLUGINS.md,
    "Losses"): ``stages`` a non-empty subset of ``LOSS_STAGES``, ``maximise`` a bool, ``key``
    None or a non-empty str."""
    from . import interfaces

    if not isinstance(loss, interfaces.LossTerm):
        raise ContractMismatch(f"returned a {type(loss).__name__}, not a gis.LossTerm "
                               "(subclass gis.LossTerm: docs/PLUGINS.md, \"Losses\")")
    stages = _attr(loss, "stages", "a LossTerm sets stages, maximise, key")
    known = tuple(interfaces.LOSS_STAGES)
    if isinstance(stages, str) or not stages or not set(stages) <= set(known):
        raise ContractMismatch(f"stages must be a non-empty subset of {known}, got {stages!r}")
    if not isinstance(loss.maximise, bool):
        raise ContractMismatch(f"maximise must be a bool, got {loss.maximise!r}")
    if loss.key is not None and not (isinstance(loss.key, str) and loss.key):
        raise ContractMismatch(f"key must be None or a non-empty str, got {loss.key!r}")
    return [f"returned {type(loss).__name__}, a gis LossTerm",
            f"stages {', '.join(stages)}; " + ("maximised" if loss.maximise else "minimised")]


def _tiny_models() -> tuple[Any, Any]:
    """A tiny generator (latent 8, 32x32 in [-1, 1]) and recommender (3 users, K = 4), both
    differentiable and seeded, for running a loss term outside any run."""
    from .interfaces import Generator, Recommender

    rng = torch.Generator().manual_seed(0)

    class TinyGenerator(Generator):
        def __init__(self) -> None:
            super().__init__()
            self.latent_dim, self.resolution, self.card = 8, 32, {}
            self.register_buffer("w", torch.randn(3 * 32 * 32, 8, generator=rng) / 8 ** 0.5)

        def synthesize(self, z: torch.Tensor, *, labels: Any = None) -> torch.Tensor:
            return torch.tanh(z @ self.w.T).view(-1, 3, 32, 32)

    class TinyRecommender(Recommender):
        def __init__(self) -> None:
            super().__init__()
            self.image_size, self.embedding_dim, self.input_range = 32, 4, (-1.0, 1.0)
            self.user_ids, self.card = ["u0", "u1", "u2"], {}
            self.register_buffer("proj", torch.randn(4, 3, generator=rng))
            self.register_buffer("theta", torch.randn(3, 4, generator=rng))

        def embed(self, images: torch.Tensor) -> torch.Tensor:
            return images.mean((2, 3)) @ self.proj.T

        @property
        def user_vectors(self) -> torch.Tensor:
            return self.theta

    return TinyGenerator().eval(), TinyRecommender().eval()


def _tiny_context(stage: str, gen: Any, rec: Any) -> tuple[Any, list[torch.Tensor]]:
    """A LossContext of ``stage`` over ``BATCH`` images of the tiny models, with what the
    engine fills for that stage, and the tensors the value may depend on (images, latents,
    shifts) for the gradient check."""
    # the settings' defaults as data for the term to read, not validated against the loss
    # registry: a plugin is checkable alone (GIS_PLUGINS=myplugin gis plugins check ...)
    from .engine.settings import InvertSettings, ShiftSettings
    from .interfaces import LossContext

    rng = torch.Generator().manual_seed(1)
    d, n = gen.latent_dim, BATCH
    if stage == "invert":
        z = torch.randn(n, d, generator=rng).requires_grad_(True)
        images = gen.synthesize(z)
        target = gen.synthesize(torch.randn(1, d, generator=rng)).detach()
        ctx = LossContext(stage=stage, step=0, images=images, latents=z, generator=gen,
                          settings=InvertSettings(), target=target)
        return ctx, [images, z]
    settings = ShiftSettings()
    base = torch.randn(1, d, generator=rng)
    shifts = ((torch.rand(n, d, generator=rng) * 2 - 1) * settings.eps).requires_grad_(True)
    latents = base + shifts
    images = gen.synthesize(latents)
    phi = rec.embed(images)
    head = torch.randn(3 * 32 * 32, n + d, generator=rng) / 32.0  # a stand-in predictor
    predicted = (images - gen.synthesize(base).detach()).flatten(1) @ head
    ctx = LossContext(stage=stage, step=0, images=images, latents=latents, generator=gen,
                      settings=settings, base_latent=base, base_image=gen.synthesize(base),
                      shifts=shifts, recommender=rec, user_vectors=rec.user_vectors,
                      embeddings=phi, scores=(phi @ rec.user_vectors.T).mean(1),
                      predicted_logits=predicted[:, :n], predicted_shifts=predicted[:, n:],
                      order=torch.arange(n))
    return ctx, [images, latents, shifts]


def check_loss_forward(loss: Any) -> list[str]:
    """``gis plugins check`` of a loss term: ``forward`` once on a tiny LossContext for each
    stage it declares (a tiny generator and recommender, not the plugin's own models): a
    float scalar or ``(BATCH,)`` tensor, finite, with a finite gradient with respect to
    ``ctx.images`` (or the latents and shifts they come from), as a term that steers the
    optimisation must have. A term whose ``check_models`` refuses the tiny models is not run
    (said so in the line). Raises ContractMismatch naming the stage and the piece."""
    gen, rec = _tiny_models()
    try:
        loss.check_models(gen, rec)
    except errors.GisUsageError as exc:
        return [f"forward: not run (its check_models refuses a tiny test generator: {exc})"]
    except Exception as exc:  # check_models refuses with GisUsageError, never anything else
        raise ContractMismatch(f"check_models(generator, recommender) raised "
                               f"{one_line(exc)}; it must return None or raise "
                               "GisUsageError") from None
    passed = []
    with torch.random.fork_rng(devices=[]), torch.enable_grad():
        for stage in loss.stages:
            ctx, inputs = _tiny_context(stage, gen, rec)
            what = f"forward(ctx) at stage {stage!r}"
            with _calling(what):
                value = loss(ctx)
            if not isinstance(value, torch.Tensor) or value.ndim > 1:
                got = tuple(value.shape) if isinstance(value, torch.Tensor) else \
                    type(value).__name__
                raise ContractMismatch(f"{what} returned {got}; expected a scalar or "
                                       f"({BATCH},), one value per image")
            _tensor(what, value, tuple(value.shape) if value.ndim == 0 else (BATCH,),
                    "one value per image")
            grads = [] if not value.requires_grad else [g for g in torch.autograd.grad(
                value.sum(), inputs, allow_unused=True) if g is not None]
            if not grads:
                raise ContractMismatch(f"{what} has no gradient with respect to ctx.images "
                                       "(nor the latents or shifts): it cannot steer the "
                                       "optimisation")
            if not all(bool(torch.isfinite(g).all()) for g in grads):
                raise ContractMismatch(f"{what} has a non-finite gradient (NaN or inf)")
            passed.append(f"forward at stage {stage!r} on a tiny context -> "
                          f"{tuple(value.shape)}, finite, with a gradient")
    return passed


CHECKS = {"generator": check_generator, "recommender": check_recommender,
          "dataset": check_dataset, "loss": check_loss}


def check(kind: str, obj: Any) -> list[str]:
    """Run the checks of ``kind`` on ``obj``; what passed, one line each. Raises
    ``ContractMismatch`` naming the first piece that does not fit."""
    return CHECKS[kind](obj)


# ----------------------------------------------------------------------------- gis plugins check
@dataclass
class CheckReport:
    """The checks of one object (or of a plugin that did not load)."""

    label: str
    passed: list[str] = field(default_factory=list)
    error: str | None = None
    missing: str | None = None
    """Why the object could not be built for want of an offline asset it needs (its default
    weights, say: ``MissingAssetError``): not a broken plugin, but nothing was checked."""


def run_checks(name: str, *, kind: str | None = None, device: str = "cpu",
               options: dict[str, Any] | None = None) -> list[CheckReport]:
    """Build and check every object named ``name`` (of ``kind`` when given) and, when ``name``
    is a plugin, every object it registers. Generators and recommenders are built on
    ``device``; ``options`` go to every factory. Raises ``GisUsageError`` when nothing has
    that name."""
    from . import plugins

    infos = {p.name: p for p in plugins.list_plugins()}
    reports = []
    if name in infos and infos[name].broken:
        reports.append(CheckReport(f"plugin {name!r} ({infos[name].source})",
                                   error=infos[name].error))
    for registry in plugins.REGISTRIES.values():
        if kind is not None and registry.kind != kind:
            continue
        for entry in list(registry):
            if name not in (entry.name, *entry.aliases, entry.plugin):
                continue
            opts = dict(options or {})
            if registry.kind in ("generator", "recommender"):
                opts.setdefault("device", device)
            report = CheckReport(entry.label)
            try:
                obj, report.passed = registry.create_checked(entry.name, **opts)
                if registry.kind == "loss":  # what only `gis plugins check` runs
                    report.passed += check_loss_forward(obj)
            except errors.MissingAssetError as exc:
                report.missing = str(exc).removeprefix(f"{entry.label}: ")
            except errors.GisError as exc:
                if (options and isinstance(exc, errors.GisUsageError)
                        and not isinstance(exc, errors.CheckpointError)
                        and any(str(k) in str(exc) for k in options)):
                    raise  # it refused an option the user passed with -o: their error (exit 2)
                report.error = str(exc).removeprefix(f"{entry.label}: ")
            except ContractMismatch as exc:
                report.error = str(exc)
            reports.append(report)
    if not reports:
        what = kind or "generator, recommender, dataset or loss"
        raise errors.GisUsageError(
            f"nothing named {name!r}: not a registered {what}, nor a plugin; `gis plugins`, "
            "`gis generators`, `gis recommenders`, `gis datasets` and `gis losses` list them")
    return reports
