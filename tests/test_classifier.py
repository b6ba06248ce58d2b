"""Domain classifier (the fashion-colors plugin's, gis_fashion_colors.classifier) and the
Inception Score (gis.metrics)."""

from __future__ import annotations

import dataclasses
import importlib
import json
import math
import warnings

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from gis_fashion_colors.classifier import (
    CARD_NAME,
    WEIGHTS_NAME,
    DomainClassifier,
    augment,
    load_domain_classifier,
    save_domain_classifier,
    train_domain_classifier,
)

from gis.data import load_dataset
from gis.errors import CheckpointError, GisUsageError, MissingAssetError
from gis.metrics import ISClassifier, inception_score, is_classifier

is_module = importlib.import_module("gis.metrics.inception_score")  # the attribute is the function


@pytest.fixture(scope="module")
def fc():
    return load_dataset("fashion-colors")


@pytest.fixture()
def empty_hub(tmp_path, monkeypatch):
    """A torch hub cache without torchvision's Inception weights."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    return tmp_path / "hub"


# ------------------------------------------------------------------------- inception_score


def _is_by_hand(p: np.ndarray, splits: int) -> tuple[float, float]:
    """The reference implementation (Salimans et al.), in numpy."""
    n = p.shape[0]
    scores = []
    for i in range(splits):
        part = p[i * n // splits:(i + 1) * n // splits]
        py = part.mean(0, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            kl = np.where(part > 0, part * (np.log(part) - np.log(py)), 0.0).sum(1)
        scores.append(math.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))


def test_inception_score_small_matrix_by_hand():
    p = torch.tensor([[0.5, 0.5, 0.0], [0.9, 0.05, 0.05], [0.2, 0.7, 0.1], [0.0, 0.0, 1.0]],
                     dtype=torch.float64)
    # splits=1 written out: p(y) = (0.4, 0.3125, 0.2875)
    py = np.array([0.4, 0.3125, 0.2875])
    kl = [0.5 * math.log(0.5 / py[0]) + 0.5 * math.log(0.5 / py[1]),
          0.9 * math.log(0.9 / py[0]) + 0.05 * math.log(0.05 / py[1])
          + 0.05 * math.log(0.05 / py[2]),
          0.2 * math.log(0.2 / py[0]) + 0.7 * math.log(0.7 / py[1]) + 0.1 * math.log(0.1 / py[2]),
          math.log(1.0 / py[2])]
    mean, std = inception_score(p, splits=1)
    assert mean == pytest.approx(math.exp(np.mean(kl)), rel=1e-12)
    assert std == 0.0
    for splits in (2, 3, 4):  # 3 does not divide 4: parts of 1, 1 and 2 rows
        assert inception_score(p, splits=splits) == pytest.approx(
            _is_by_hand(p.numpy(), splits), rel=1e-9, abs=1e-12)


def test_inception_score_random_matrix_matches_reference():
    g = torch.Generator().manual_seed(3)
    p = torch.randn(103, 7, generator=g).mul(2).softmax(1)
    assert inception_score(p, splits=10) == pytest.approx(
        _is_by_hand(p.double().numpy(), 10), rel=1e-9)
    # split order matters: the same rows in another order give another score
    perm = torch.randperm(103, generator=g)
    assert inception_score(p[perm], splits=10) != pytest.approx(inception_score(p, 10))
    assert inception_score(p[perm], splits=1)[0] == pytest.approx(inception_score(p, 1)[0])


@pytest.mark.parametrize("c", [2, 10])
def test_inception_score_bounds(c):
    uniform = torch.full((40, c), 1.0 / c)
    assert inception_score(uniform, splits=4) == pytest.approx((1.0, 0.0), abs=1e-12)
    onehot = torch.eye(c).repeat(8, 1)  # every split of c*2 rows holds each class twice
    mean, std = inception_score(onehot, splits=4)
    assert mean == pytest.approx(c, rel=1e-12)
    assert std == pytest.approx(0.0, abs=1e-9)
    # all images confidently the same class: 1
    same = torch.zeros(20, c)
    same[:, 0] = 1
    assert inception_score(same, splits=2)[0] == pytest.approx(1.0)


def test_inception_score_errors():
    p = torch.full((9, 3), 1 / 3)
    with pytest.raises(GisUsageError, match="at least splits=10"):
        inception_score(p, splits=10)
    with pytest.raises(GisUsageError, match="softmax"):
        inception_score(torch.randn(20, 3), splits=2)
    with pytest.raises(GisUsageError):
        inception_score(torch.ones(20), splits=2)
    with pytest.raises(GisUsageError):
        inception_score(p, splits=0)


def test_inception_score_matches_torchmetrics():
    import torchmetrics.image.inception as tm  # a dependency of gis: never a skip

    class Logits(torch.nn.Module):
        def forward(self, x):
            return x

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(200, 10, generator=g) * 3
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its "saves all features" memory warning
            metric = tm.InceptionScore(feature=Logits(), splits=10)
            metric.update(logits)
            torch.manual_seed(123)
            tm_mean, tm_std = metric.compute()
    except (TypeError, ModuleNotFoundError, ValueError) as exc:  # pragma: no cover
        pytest.skip(f"torchmetrics InceptionScore does not take a custom feature module: {exc}")
    torch.manual_seed(123)  # the same permutation torchmetrics drew
    perm = torch.randperm(200)
    mean, std = inception_score(logits[perm].softmax(1), splits=10)
    assert mean == pytest.approx(float(tm_mean), rel=1e-5)
    # torchmetrics reports the unbiased std over splits, the reference code the population std
    assert std * math.sqrt(10 / 9) == pytest.approx(float(tm_std), rel=1e-4)


# ------------------------------------------------------------------------- shipped classifier


def test_shipped_classifier_loads_and_is_accurate(fc):
    assert fc.meta.get("domain_classifier", "").endswith(WEIGHTS_NAME)
    model = load_domain_classifier(fc)
    assert model.num_classes == 10 and model.resolution == 32
    assert model.category_names == list(fc.category_names)
    x = fc.heldout_tensor(np.arange(500))
    p1 = model.predict_proba(x)
    model.train()  # predict_proba must switch to eval mode itself
    p2 = model.predict_proba(x)
    assert not model.training
    assert torch.equal(p1, p2)
    assert p1.shape == (500, 10)
    assert torch.allclose(p1.sum(1), torch.ones(500), atol=1e-5)
    labels = torch.from_numpy(fc.heldout_categories[:500])
    acc = float((p1.argmax(1) == labels).float().mean())
    assert acc >= 0.85, acc
    # value_range: the same images in [0, 1] give the same probabilities
    p3 = model.predict_proba((x + 1) / 2, value_range=(0, 1))
    assert torch.allclose(p1, p3, atol=1e-5)
    # colour is no category cue: swapping colour channels keeps the accuracy
    acc_perm = float((model.predict(x[:, [2, 0, 1]]) == labels).float().mean())
    assert acc_perm >= 0.85, acc_perm


def test_plugin_names_classifier_only_at_its_resolution():
    ds = load_dataset("fashion-colors", resolution=64)
    assert "domain_classifier" not in ds.meta
    with pytest.raises(MissingAssetError, match="gis train classifier --data fashion-colors"):
        load_domain_classifier(ds)


def test_missing_classifier_names_the_command(fc, tmp_path):
    with pytest.raises(MissingAssetError) as err:
        load_domain_classifier(fc, path=tmp_path / "nope.safetensors")
    msg = str(err.value)
    assert "gis train classifier --data fashion-colors --out DIR" in msg
    assert "\n" not in msg
    bare = dataclasses.replace(fc, meta={"name": "mine"})
    with pytest.raises(MissingAssetError, match="gis train classifier --data mine --out DIR"):
        load_domain_classifier(bare)


def test_checkpoint_mismatch_raises(fc, tmp_path):
    five = DomainClassifier(5, resolution=32)
    save_domain_classifier(five, tmp_path / "five")
    with pytest.raises(CheckpointError, match="5 categories.*has 10"):
        load_domain_classifier(fc, path=tmp_path / "five" / WEIGHTS_NAME)
    # a folder path works too, and resolution is checked
    small = DomainClassifier(10, resolution=16, category_names=fc.category_names)
    save_domain_classifier(small, tmp_path / "small")
    with pytest.raises(CheckpointError, match="16 px"):
        load_domain_classifier(fc, path=tmp_path / "small")
    # tensors that do not fit the architecture the file declares
    from gis.training import load_checkpoint, save_checkpoint

    tensors, meta = load_checkpoint(tmp_path / "small" / WEIGHTS_NAME)
    meta["config"]["resolution"] = 32
    save_checkpoint(tmp_path / "bad.safetensors", tensors, meta)
    with pytest.raises(CheckpointError, match="shape"):
        load_domain_classifier(fc, path=tmp_path / "bad.safetensors")
    # not a classifier at all
    save_checkpoint(tmp_path / "other.safetensors", {"w": torch.zeros(1)}, {"format": "x"})
    with pytest.raises(CheckpointError, match="not a gis domain classifier"):
        load_domain_classifier(fc, path=tmp_path / "other.safetensors")


def test_augment_is_seeded_and_keeps_range(fc):
    x = fc.image_tensor(np.arange(16), value_range=(0, 1))
    a = augment(x, torch.Generator().manual_seed(1))
    b = augment(x, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert a.shape == x.shape and float(a.min()) >= 0 and float(a.max()) <= 1
    assert not torch.equal(a, x)


def test_training_is_deterministic(fc):
    kw = dict(epochs=1, seed=5, progress=False, limit=128, batch_size=64)
    m1, card = train_domain_classifier(fc, **kw)
    m2, _ = train_domain_classifier(fc, **kw)
    s2 = m2.state_dict()
    for k, v1 in m1.state_dict().items():
        v2 = s2[k]
        assert torch.equal(v1, v2), k
    assert card["seed"] == 5 and card["epochs"] == 1
    assert card["dataset"]["name"] == "fashion-colors" and card["dataset"]["resolution"] == 32
    assert set(card["metrics"]["per_class_accuracy"]) == set(fc.category_names)
    assert 0.0 <= card["metrics"]["heldout_accuracy"] <= 1.0


# ------------------------------------------------------------------------- is_classifier


def test_is_classifier_domain_fallback(fc, empty_hub):
    clf = is_classifier(fc)
    assert isinstance(clf, ISClassifier)
    fn, name, kind = clf
    assert kind == "domain" and clf.num_classes == 10
    assert name == "domain IS (gis DomainClassifier on fashion-colors, 10 classes)"
    x01 = fc.heldout_tensor(np.arange(100), value_range=(0, 1))
    probs = fn(x01)
    assert probs.shape == (100, 10)
    mean, _ = inception_score(probs, splits=2)
    assert 1.0 <= mean <= 10.0
    with pytest.raises(GisUsageError, match=r"\[0, 1\]"):
        fn(x01 * 2 - 1)
    with pytest.raises(MissingAssetError, match="not found"):
        is_classifier(fc, prefer="imagenet")


def test_is_classifier_uses_cached_torchvision_weights(fc, empty_hub):
    from torchvision.models import inception_v3

    file = is_module.torchvision_inception_file()
    assert str(file).startswith(str(empty_hub))
    file.parent.mkdir(parents=True)
    torch.manual_seed(0)
    net = inception_v3(weights=None, aux_logits=True, init_weights=False)
    torch.save(net.state_dict(), file)  # random weights stand in for the ImageNet file
    clf = is_classifier(fc)
    assert clf.kind == "imagenet" and clf.name == "IS (torchvision Inception-v3, ImageNet)"
    probs = clf(fc.heldout_tensor(np.arange(2), value_range=(0, 1)))
    assert probs.shape == (2, 1000)
    assert torch.allclose(probs.sum(1), torch.ones(2), atol=1e-4)
    assert is_classifier(fc, prefer="domain").kind == "domain"


# ------------------------------------------------------------------------- CLI


def test_cli_train_classifier(tmp_path):
    from gis.cli import cli

    threads = torch.get_num_threads()
    out = tmp_path / "clf"
    try:
        res = CliRunner().invoke(cli, ["train", "classifier", "--data", "fashion-colors",
                                       "--out", str(out), "--epochs", "1", "--limit", "128",
                                       "--threads", "1", "--seed", "2"])
    finally:
        torch.set_num_threads(threads)
    assert res.exit_code == 0, res.output
    assert "held-out accuracy:" in res.output
    assert (out / WEIGHTS_NAME).is_file() and (out / CARD_NAME).is_file()
    card = json.loads((out / CARD_NAME).read_text())
    assert card["seed"] == 2 and card["epochs"] == 1 and card["dataset"]["limit"] == 128
    assert "heldout_accuracy" in card["metrics"] and "time_s" in card["training"]
    model = load_domain_classifier(load_dataset("fashion-colors"), path=out / WEIGHTS_NAME)
    assert model.card["seed"] == 2
    again = CliRunner().invoke(cli, ["train", "classifier", "--out", str(out), "--epochs", "1"])
    assert again.exit_code == 2
    assert "not empty" in again.output
