"""The vbpr recommender plugin (He & McAuley 2016): score formula, cold-start terms, gradients,
checkpoints, training and the plugin checks."""

from __future__ import annotations

import json
import math
import socket

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors import safe_open

import gis
from gis.data import Dataset
from gis.errors import CheckpointError, GisUsageError
from gis.training import load_checkpoint, save_checkpoint

gis_vbpr = pytest.importorskip("gis_vbpr")
from gis_dvbpr.metrics import AUCEvaluator, user_positives  # noqa: E402
from gis_vbpr.features import FeatureSpec, VisualFeatures, parse_layers  # noqa: E402
from gis_vbpr.model import VBPRFactors, load_vbpr, save_vbpr  # noqa: E402
from gis_vbpr.trainer import (  # noqa: E402
    FEATURES_FILE,
    STATE_FILE,
    catalogue_features,
    feature_scale,
    train_vbpr,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_dataset(num_users: int = 16, num_items: int = 48, per_user: int = 7,
                 seed: int = 0) -> Dataset:
    """Coloured squares (4 colours) on white; user u likes colour u % 4 and owns only such
    items; the last two items of each user are held out for validation/test."""
    rng = np.random.default_rng(seed)
    palette = np.array([[220, 30, 30], [30, 200, 40], [30, 60, 220], [230, 200, 20]], np.uint8)
    colour = np.arange(num_items) % 4
    images = np.full((num_items, 32, 32, 3), 250, np.uint8)
    for n in range(num_items):
        a, b = rng.integers(4, 12, size=2)
        images[n, a:a + 16, b:b + 16] = palette[colour[n]]
    train, val, test = [], np.full(num_users, -1), np.full(num_users, -1)
    for u in range(num_users):
        liked = rng.permutation(np.nonzero(colour == u % 4)[0])[:per_user]
        train += [(u, int(i)) for i in liked[:-2]]
        val[u], test[u] = liked[-2], liked[-1]
    return Dataset(images=images, categories=colour.astype(np.int64),
                   category_names=["red", "green", "blue", "yellow"],
                   user_ids=[f"user{u}" for u in range(num_users)],
                   train=np.array(train, np.int64), val=val.astype(np.int64),
                   test=test.astype(np.int64), meta={"name": "tiny-colours"})


def tiny_model(users: int = 3, items: int = 5, visual_bias: bool = True, seed: int = 0):
    return gis_vbpr.create(pretrained=False, user_ids=[f"u{i}" for i in range(users)],
                           num_items=items, k=3, d=4, visual_bias=visual_bias, seed=seed)


def images(n: int = 2, side: int = 64, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, side, side, generator=g) * 2 - 1


# ------------------------------------------------------------------------------ features

def test_features_are_the_lpips_alexnet_trunk_averaged():
    """f(X) = concat of the spatial means of LPIPS's AlexNet ReLU 1-5 on X resized to 64 px,
    standardised by LPIPS's own scaling layer: checked against the loss plugin's LPIPS."""
    from gis_losses.losses import build_lpips

    x = images(2, side=32)
    f = VisualFeatures(FeatureSpec())(x)
    lp = build_lpips("alex")
    up = torch.nn.functional.interpolate(x, size=(64, 64), mode="bilinear",
                                         align_corners=False)
    ref = torch.cat([h.mean((2, 3)) for h in lp.net(lp.scaling_layer(up))], 1)
    assert f.shape == (2, 64 + 192 + 384 + 256 + 256) == ref.shape
    torch.testing.assert_close(f, ref, rtol=1e-5, atol=1e-6)
    assert FeatureSpec(layers=(5,)).dim == 256 and FeatureSpec(net="vgg").dim == 1472


@pytest.mark.parametrize("kw,match", [({"layers": (0, 2)}, "layers"), ({"layers": ()}, "layers"),
                                      ({"side": 16}, "side"), ({"net": "resnet"}, "trunk")])
def test_bad_feature_spec_is_one_line(kw, match):
    with pytest.raises(GisUsageError, match=match) as e:
        FeatureSpec(**kw)
    assert "\n" not in str(e.value)
    assert parse_layers("1,2,5") == parse_layers("125") == (1, 2, 5)


# ------------------------------------------------------------------------------ the score

def test_scores_against_a_hand_computation():
    """Catalogue items: beta_i + gamma_u . gamma_i + theta_u . E f_i + beta' . f_i; a new
    image: theta_u . E f(X) + beta' . f(X), which gis reads as theta . phi (no item_bias)."""
    model = tiny_model()
    fac = model.factors
    with torch.no_grad():
        g = torch.Generator().manual_seed(5)
        fac.beta_item.copy_(torch.randn(5, generator=g))
        fac.feature_scale.copy_(torch.rand(fac.E.shape[0], generator=g) + 0.5)
    x = images(2)
    raw = model.raw_features(x).double()                                  # (2, F)
    fn = (raw / fac.feature_scale.double()).numpy()
    E, bp = fac.E.double().numpy(), fac.beta_prime.double().numpy()
    theta = fac.theta.double().numpy()
    want_new = np.array([[theta[u] @ (fn[b] @ E) + bp @ fn[b] for u in range(3)]
                         for b in range(2)])
    assert model.item_bias(x) is None
    assert model.embed(x).shape == (2, 5) and model.user_vectors.shape == (3, 5)
    np.testing.assert_allclose(model.score(x).double().numpy(), want_new, rtol=1e-5, atol=1e-6)
    # the catalogue: treat the two images as items 0 and 1
    gu, gi, bi = (fac.gamma_user.double().numpy(), fac.gamma_item.double().numpy(),
                  fac.beta_item.double().numpy())
    want_cat = np.array([[bi[i] + gu[u] @ gi[i] + theta[u] @ (fn[i] @ E) + bp @ fn[i]
                          for i in range(2)] for u in range(3)])
    cat = torch.cat([raw.float(), torch.rand(3, raw.shape[1])])          # (5, F)
    got = model.catalogue_scores(torch.arange(3), cat)[:, :2]
    np.testing.assert_allclose(got.double().numpy(), want_cat, rtol=1e-5, atol=1e-6)
    cold = model.catalogue_scores(torch.arange(3), cat, cold=True)[:, :2]
    np.testing.assert_allclose(cold.double().numpy(), want_new.T, rtol=1e-5, atol=1e-6)


def test_without_visual_bias_phi_is_E_f():
    model = tiny_model(visual_bias=False)
    x = images(2)
    fn = model.factors.normalise(model.raw_features(x))
    assert model.embedding_dim == 4
    torch.testing.assert_close(model.embed(x), fn @ model.factors.E)
    torch.testing.assert_close(model.user_vectors, model.factors.theta)
    assert not model.factors.beta_prime.any()


def test_gradient_flows_to_the_image_not_the_weights():
    model = tiny_model()
    x = images(2, side=32)
    x.requires_grad_(True)
    s = model.score(model.prepare(x, (-1.0, 1.0)))                        # (2, 3)
    s.mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.parameters())
    with pytest.raises(ValueError, match="prepare"):
        model.embed(images(1, side=32))


# ------------------------------------------------------------------------------ checkpoints

def test_shipped_weights_load_offline_from_safetensors(monkeypatch):
    path = gis_vbpr.DEFAULT_CHECKPOINT
    assert path.suffix == ".safetensors" and path.stat().st_size < 4 * 2**20
    with safe_open(str(path), framework="pt") as fh:  # no pickle anywhere
        assert set(fh.keys()) == {"beta_item", "gamma_user", "gamma_item", "theta", "E",
                                  "beta_prime", "feature_scale"}
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["metrics"]["test_auc"] >= 0.85 > card["metrics"]["popularity"]["test_auc"]
    assert "gis train recommender vbpr --data fashion-colors" in card["command"]

    def no_network(*a, **k):
        raise AssertionError("vbpr tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    model = gis.get_recommender("vbpr")
    assert model.num_users == 3000 and model.image_size == 64 and not model.training
    assert model.card["metrics"]["test_auc"] == card["metrics"]["test_auc"]
    assert model.card["dataset"]["name"] == "fashion-colors"


def _saved(tmp_path, **changes):
    model = tiny_model()
    path = save_vbpr(model.factors, model.spec, model.user_ids, tmp_path / "m.safetensors")
    if changes:
        tensors, meta = load_checkpoint(path)
        tensors.update(changes)
        save_checkpoint(path, tensors, meta)
    return model, path


def test_checkpoint_round_trip(tmp_path):
    model, path = _saved(tmp_path)
    loaded = gis_vbpr.create(checkpoint=path)
    x = images(2)
    torch.testing.assert_close(loaded.score(x), model.score(x))
    assert loaded.user_ids == model.user_ids and loaded.card["checkpoint"] == str(path)


@pytest.mark.parametrize("change,match", [
    ({"theta": torch.zeros(3, 7)}, r"theta has shape \(3, 7\), expected \(3, 4\)"),
    ({"E": torch.zeros(10, 4)}, r"E has shape \(10, 4\)"),
])
def test_mismatched_checkpoint_is_a_one_line_error(tmp_path, change, match):
    _, path = _saved(tmp_path, **change)
    with pytest.raises(CheckpointError, match=match) as e:
        gis_vbpr.create(checkpoint=path)
    assert "\n" not in str(e.value)


def test_missing_tensor_and_foreign_files_are_refused(tmp_path):
    model, path = _saved(tmp_path)
    tensors, meta = load_checkpoint(path)
    del tensors["gamma_item"]
    save_checkpoint(path, tensors, meta)
    with pytest.raises(CheckpointError, match="missing gamma_item"):
        load_vbpr(path)
    save_checkpoint(tmp_path / "other.safetensors", {"x": torch.zeros(1)}, {"format": "gis.dvbpr"})
    with pytest.raises(CheckpointError, match="not a VBPR checkpoint"):
        load_vbpr(tmp_path / "other.safetensors")
    (tmp_path / "m.pt").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="safetensors"):
        load_vbpr(tmp_path / "m.pt")


# ------------------------------------------------------------------------------ training

def _train(ds, out, **kw):
    opts = dict(epochs=2, batch_size=8, k=4, d=4, feature_side=32, threads=1, progress=False,
                seed=3)
    opts.update(kw)
    return train_vbpr(ds, out=out, **opts)


def _auc(factors: VBPRFactors, fn: torch.Tensor, ds: Dataset) -> float:
    pos = user_positives(ds.num_users, ds.train, (ds.val, ds.test))
    ev = AUCEvaluator(ds.val, pos, ds.num_items, num_negatives=20, seed=4)
    with torch.no_grad():
        return ev(lambda rows: factors.all_scores(rows, fn), full=False)["auc"]


def test_tiny_training_raises_auc_and_writes_a_loadable_model(tmp_path):
    ds = tiny_dataset()
    path = _train(ds, tmp_path, epochs=8, lr=2e-2)
    assert path == tmp_path / "tiny-colours.safetensors"
    card = json.loads((tmp_path / "tiny-colours.json").read_text())
    assert card["training"]["finished"] and card["training"]["epochs_completed"] == 8
    assert card["hyperparameters"]["features"] == "alex-relu12345-gap-32px"
    # the untrained model (same seed, same initialisation) against the trained one
    raw, _ = load_checkpoint(tmp_path / FEATURES_FILE)
    raw = raw["features"]
    untrained = VBPRFactors(ds.num_users, ds.num_items, raw.shape[1], k=4, d=4)
    untrained.reset_parameters(torch.Generator().manual_seed(3))
    untrained.feature_scale.copy_(feature_scale(raw))
    before = _auc(untrained, untrained.normalise(raw), ds)
    model = gis_vbpr.create(checkpoint=path)
    after = _auc(model.factors, model.factors.normalise(raw), ds)
    assert after > 0.9 and after > before + 0.2, (before, after)
    assert card["metrics"]["val_auc"] > 0.85 > card["metrics"]["popularity"]["val_auc"] + 0.2
    # a new image of a liked colour outscores one of another colour, for every user
    x = model.prepare(ds.image_tensor(np.arange(8)), (-1.0, 1.0))
    s = model.score(x)                                                    # (8, U)
    liked = s[np.arange(ds.num_users) % 4 + 4, np.arange(ds.num_users)]
    assert (liked > s.mean(0)).float().mean() > 0.8
    assert (tmp_path / STATE_FILE).exists()
    with pytest.raises(GisUsageError, match="resume"):
        _train(ds, tmp_path)


def test_feature_scale_per_dimension_or_per_layer():
    g = torch.Generator().manual_seed(0)
    raw = torch.rand(50, 6, generator=g) * torch.tensor([1.0, 2.0, 4.0, 0.0, 10.0, 20.0])
    per_dim = feature_scale(raw) / math.sqrt(6)
    std = raw.double().std(0)
    torch.testing.assert_close(per_dim[:3].double(), std[:3], rtol=1e-5, atol=0)
    assert per_dim[3] > 0  # a dead channel is floored at 1 % of the mean std
    per_layer = feature_scale(raw, [3, 3]) / math.sqrt(6)
    torch.testing.assert_close(per_layer.double(), torch.cat(
        [std[:3].mean().expand(3), std[3:].mean().expand(3)]), rtol=1e-5, atol=0)
    assert FeatureSpec(layers=(5, 1)).blocks == [64, 256]


def test_features_are_cached_per_run(tmp_path, monkeypatch):
    ds = tiny_dataset(num_users=4, num_items=12, per_user=4)
    spec = FeatureSpec(side=32)
    a = catalogue_features(spec, ds.images, tmp_path / "f.safetensors", write=lambda m: None)
    monkeypatch.setattr("gis_vbpr.trainer.VisualFeatures",
                        lambda *a, **k: pytest.fail("features computed twice"))
    b = catalogue_features(spec, ds.images, tmp_path / "f.safetensors", write=lambda m: None)
    torch.testing.assert_close(a, b)


def test_resume_equals_uninterrupted(tmp_path):
    ds = tiny_dataset(num_users=8, per_user=6)
    steps = math.ceil(len(ds.train) / 8)
    _train(ds, tmp_path / "a")
    _train(ds, tmp_path / "b", max_steps=steps // 2)
    _train(ds, tmp_path / "b", resume=True)
    ta, ma = load_checkpoint(tmp_path / "a" / STATE_FILE)
    tb, mb = load_checkpoint(tmp_path / "b" / STATE_FILE)
    for key in ta:
        if key.startswith(("factors.", "optim.")):
            torch.testing.assert_close(ta[key], tb[key], rtol=0, atol=0, msg=key)
    assert ma["train_state"]["history"][-1]["val_auc"] == mb["train_state"]["history"][-1][
        "val_auc"]


def test_bad_training_settings_fail_before_the_run_folder(tmp_path):
    from gis.cli import cli

    out = tmp_path / "run"
    r = CliRunner().invoke(cli, ["train", "recommender", "vbpr", "--out", str(out),
                                 "--feature-side", "8"])
    assert r.exit_code == 2 and "feature side" in r.output and not out.exists()


# ------------------------------------------------------------------------------ plugin

def test_plugins_check_vbpr_passes():
    from gis.cli import cli
    from gis.contracts import run_checks

    assert all(r.error is None for r in run_checks("vbpr"))
    r = CliRunner().invoke(cli, ["plugins", "check", "vbpr"])
    assert r.exit_code == 0, r.output
    assert "embed(2 images 64x64 in input_range) -> (2, 21)" in r.output


def test_cornac_vbpr_on_the_same_split_learns():
    pytest.importorskip("cornac")
    from gis_vbpr.compare import cornac_vbpr

    ds = tiny_dataset()
    raw = catalogue_features(FeatureSpec(side=32), ds.images, None, write=lambda m: None)
    fn = (raw / feature_scale(raw)).double().numpy()
    _, score = cornac_vbpr(ds, fn, k=4, d=4, epochs=8, batch_size=8, lr=5e-3, lambda_w=0.01,
                           lambda_b=0.01, lambda_e=0.0, seed=0)
    pos = user_positives(ds.num_users, ds.train, (ds.val, ds.test))
    ev = AUCEvaluator(ds.val, pos, ds.num_items, num_negatives=20, seed=4)
    assert score(torch.arange(2)).shape == (2, ds.num_items)
    assert ev(score, full=False)["auc"] > 0.8
