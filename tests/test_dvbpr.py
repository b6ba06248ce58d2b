"""The DVBPR recommender plugin (gis_dvbpr) and the shared training utilities (gis.training).

Tiny, seeded configurations only: layouts are scaled down with ``width``; the synthetic dataset
has 48 coloured squares and 12 users who each like one colour.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import gis
from gis.data import Dataset
from gis.errors import (
    CheckpointError,
    GisUsageError,
    MissingAssetError,
    UnknownUserError,
    UntrustedFileError,
)
from gis.training import (
    Budget,
    TrainState,
    flatten,
    load_checkpoint,
    load_optimizer_state,
    load_rng_state,
    optimizer_state_tensors,
    rng_state_tensors,
    save_checkpoint,
    seed_everything,
    unflatten,
)

gis_dvbpr = pytest.importorskip("gis_dvbpr")
from gis_dvbpr import checkpoint as ckpt_mod  # noqa: E402
from gis_dvbpr.metrics import (  # noqa: E402
    AUCEvaluator,
    auc_from_scores,
    popularity_auc,
    sample_negatives,
    user_positives,
)
from gis_dvbpr.model import DVBPR, LAYOUTS, DVBPRNet, get_layout  # noqa: E402
from gis_dvbpr.trainer import (  # noqa: E402
    STATE_FILE,
    ItemImages,
    bpr_loss,
    dataset_fingerprint,
    sample_triplets,
    train_dvbpr,
)

TINY = 0.125  # width multiplier of the tiny test networks


# --------------------------------------------------------------------------------- fixtures

def tiny_dataset(num_users: int = 12, num_items: int = 48, per_user: int = 6,
                 seed: int = 0) -> Dataset:
    """Coloured squares (4 colours) on white; user u likes colour u % 4 and owns only such
    items; last two items of each user held out for validation/test."""
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


@pytest.fixture
def dataset() -> Dataset:
    return tiny_dataset()


def tiny_model(layout: str = "32", users: int = 5, seed: int = 0) -> DVBPR:
    return gis_dvbpr.create(pretrained=False, layout=layout, width=TINY,
                            user_ids=[f"u{i}" for i in range(users)], seed=seed)


def images_for(model: DVBPR, n: int = 3, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, model.image_size, model.image_size, generator=g) * 2 - 1


# --------------------------------------------------------------------------------- model

@pytest.mark.parametrize("layout,side,flat", [("32", 32, 4 * 4 * 48), ("128", 128, 4 * 4 * 256),
                                              ("224", 224, 7 * 7 * 256)])
def test_layout_shapes(layout, side, flat):
    full = LAYOUTS[layout]
    assert full.image_size == side and full.flat_features == flat
    with torch.device("meta"):  # the full-size networks, without allocating them
        net = DVBPRNet(full, k=100)
    assert net.fc1.weight.shape == (full.fc[0], flat)
    assert net.fc3.weight.shape == (100, full.fc[1])
    model = tiny_model(layout)
    phi = model.embed(images_for(model, 2))
    assert phi.shape == (2, 100)
    assert model.score(images_for(model, 2)).shape == (2, 5)


def test_port_layout_matches_aip_keys():
    keys = set(DVBPRNet(get_layout("128", width=TINY)).state_dict())
    assert keys == {f"{m}.{p}" for m in ("conv1", "conv2", "conv3", "conv4", "conv5", "fc1",
                                         "fc2", "fc3") for p in ("weight", "bias")}


def test_embed_rejects_wrong_size():
    model = tiny_model()
    with pytest.raises(ValueError, match=r"expects images \(B, 3, 32, 32\)"):
        model.embed(torch.zeros(1, 3, 28, 28))


def test_scores_deterministic_in_eval():
    model = tiny_model()
    assert not model.training and model.layout.dropout > 0
    x = images_for(model, 4)
    torch.testing.assert_close(model.score(x), model.score(x), rtol=0, atol=0)
    assert not any(p.requires_grad for p in model.parameters())


def test_score_is_theta_dot_phi():
    model = tiny_model()
    with torch.no_grad():
        model.theta.normal_()
    x = images_for(model, 3)
    phi = model.embed(x)
    torch.testing.assert_close(model.score(x), phi @ model.user_vectors.T)
    rows = model.user_index(["u3", "u1"])
    torch.testing.assert_close(model.score(x, rows), phi @ model.theta[[3, 1]].T)
    assert model.embedding_dim == 100 and model.input_range == (-1.0, 1.0)


def test_score_differentiable_wrt_images():
    model = tiny_model()
    with torch.no_grad():
        model.theta.normal_()
    x = images_for(model, 2).requires_grad_(True)
    model.score(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_unknown_user():
    model = tiny_model()
    with pytest.raises(UnknownUserError, match="'nobody'"):
        model.user_index(["u1", "nobody"])


def test_theta_init_uniform_and_xavier():
    model = tiny_model(users=50)
    assert float(model.theta.min()) >= 0 and float(model.theta.max()) <= 0.01
    assert float(model.cnn.conv1.bias.abs().sum()) == 0
    w = model.cnn.fc1.weight
    assert float(w.abs().max()) <= math.sqrt(6 / (w.shape[0] + w.shape[1])) + 1e-7


# --------------------------------------------------------------------------------- metrics

def test_auc_hand_made():
    pos = torch.tensor([3.0, 0.0])
    neg = torch.tensor([[1.0, 2.0, 3.0, 4.0], [1.0, -1.0, -2.0, 5.0]])
    torch.testing.assert_close(auc_from_scores(pos, neg),
                               torch.tensor([2.5 / 4, 2 / 4], dtype=torch.float64))
    valid = torch.tensor([[True, True, False, False], [True, True, True, True]])
    torch.testing.assert_close(auc_from_scores(pos, neg, valid),
                               torch.tensor([1.0, 0.5], dtype=torch.float64))


def test_auc_evaluator_against_all_items():
    # 2 users, 6 items; user 0 trained on item 0, held out item 1; user 1 trained 2, held 5
    train = np.array([[0, 0], [1, 2]])
    heldout = np.array([1, 5])
    positives = user_positives(2, train, (heldout,))
    assert [p.tolist() for p in positives] == [[0, 1], [2, 5]]
    ev = AUCEvaluator(heldout, positives, 6, num_negatives=50, seed=0)
    assert not np.isin(ev.negatives[0], [0, 1]).any() and not np.isin(ev.negatives[1], [2, 5]).any()
    scores = torch.tensor([[9.0, 5.0, 6.0, 1.0, 2.0, 5.0],     # u0: negatives 2,3,4,5 -> 2.5/4
                           [0.0, 1.0, 9.0, 2.0, 3.0, 4.0]])    # u1: negatives 0,1,3,4 -> 4/4
    out = ev(lambda rows: scores[rows])
    assert out["users"] == 2
    assert out["auc_all"] == pytest.approx((2.5 / 4 + 1.0) / 2)
    # the sampled AUC only sees negatives, with ties counted one half
    assert 0.5 < out["auc"] <= 1.0


def test_sample_negatives_avoid_positives():
    positives = [np.array([0, 1, 2]), np.array([3])]
    neg = sample_negatives(np.array([0, 1]), positives, 5, 200, np.random.default_rng(0))
    assert set(neg[0].tolist()) == {3, 4} and set(neg[1].tolist()) == {0, 1, 2, 4}


def test_popularity_baseline(dataset):
    positives = user_positives(dataset.num_users, dataset.train, (dataset.val, dataset.test))
    ev = AUCEvaluator(dataset.test, positives, dataset.num_items, seed=0)
    out = popularity_auc(ev, dataset.train)
    assert 0.0 <= out["auc"] <= 1.0 and 0.0 <= out["auc_all"] <= 1.0


# --------------------------------------------------------------------------------- training

def test_sample_triplets(dataset):
    items = dataset.user_items()
    t = sample_triplets(items, dataset.num_items, 500, torch.Generator().manual_seed(0))
    assert t.shape == (500, 3)
    for u, i, j in t.tolist():
        assert i in items[u] and j not in items[u]
    t2 = sample_triplets(items, dataset.num_items, 500, torch.Generator().manual_seed(0))
    assert torch.equal(t, t2)


def test_bpr_steps_reduce_loss(dataset):
    torch.manual_seed(0)
    model = DVBPR(get_layout("32", width=TINY), dataset.user_ids)
    model.reset_parameters(torch.Generator().manual_seed(0))
    model.train()
    images = ItemImages(dataset.images, 32, torch.device("cpu"))
    batch = sample_triplets(dataset.user_items(), dataset.num_items, 64,
                            torch.Generator().manual_seed(1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        loss, bpr = bpr_loss(model, images, batch, lambda_cnn=1e-3, lambda_theta=1.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(bpr.detach()) / len(batch))
    assert losses[0] == pytest.approx(math.log(2), abs=0.01)  # theta ~ 0 at the start
    assert losses[-1] < losses[0] - 0.05


def _train(ds, out, **kw):
    opts = dict(epochs=1, width=TINY, batch_size=8, lr=3e-3, threads=1, progress=False, seed=3)
    opts.update(kw)
    return train_dvbpr(ds, out=out, **opts)


def test_a_run_of_a_handful_of_steps_says_how_to_get_more(dataset, tmp_path, capsys):
    """A small catalogue with the default batch of 128: one WARNING line with the fix; a
    batch that gives enough steps (or a resumed run) says nothing."""
    _train(dataset, tmp_path / "few", batch_size=128, epochs=2, max_steps=1, progress=True)
    out = capsys.readouterr().out
    n = len(dataset.train)
    assert (f"WARNING: dvbpr: {n} training interactions make 1 step(s) of --batch-size 128 per "
            f"epoch, 2 in all, too few to learn from: pass a smaller --batch-size") in out
    _train(dataset, tmp_path / "few", batch_size=128, epochs=2, resume=True, progress=True)
    assert "WARNING" not in capsys.readouterr().out  # resumed: said once, at the start
    _train(dataset, tmp_path / "many", batch_size=1, epochs=12, max_steps=1, progress=True)
    assert n * 12 >= 500 and "WARNING" not in capsys.readouterr().out


def test_trainer_writes_loadable_checkpoint_and_card(dataset, tmp_path):
    path = _train(dataset, tmp_path, epochs=2)
    assert path == tmp_path / "tiny-colours.safetensors"
    card = json.loads((tmp_path / "tiny-colours.json").read_text())
    assert card["training"]["finished"] and card["training"]["epochs_completed"] == 2
    assert card["seed"] == 3 and card["hyperparameters"]["lr"] == 3e-3
    for key in ("val_auc", "test_auc", "test_auc_all"):
        assert 0 <= card["metrics"][key] <= 1
    assert "test_auc" in card["metrics"]["popularity"]
    assert card["machine"]["torch"] == torch.__version__ and card["command"]
    assert len(card["history"]) == 2
    model = gis_dvbpr.create(checkpoint=path)
    assert model.user_ids == dataset.user_ids and not model.training
    assert model.card["metrics"]["test_auc"] == card["metrics"]["test_auc"]
    assert model.score(dataset.image_tensor([0, 1])).shape == (2, dataset.num_users)
    # the resumable state is there and refuses to be overwritten without resume
    assert (tmp_path / STATE_FILE).exists()
    with pytest.raises(GisUsageError, match="resume"):
        _train(dataset, tmp_path)


def test_trainer_learns_colour_tastes(tmp_path):
    ds = tiny_dataset(num_users=24, per_user=8)
    _train(ds, tmp_path, epochs=4, lr=3e-3, width=0.5, batch_size=4, lambda_theta=0.1)
    card = json.loads((tmp_path / "tiny-colours.json").read_text())
    assert card["metrics"]["val_auc"] > 0.8 > card["metrics"]["popularity"]["val_auc"]
    assert card["metrics"]["test_auc"] > 0.7


def test_resume_equals_uninterrupted(dataset, tmp_path):
    steps = math.ceil(len(dataset.train) / 8)  # one epoch
    assert steps >= 4
    _train(dataset, tmp_path / "a")
    _train(dataset, tmp_path / "b", max_steps=steps // 2)
    mid = json.loads((tmp_path / "b" / "tiny-colours.json").read_text())
    assert mid["training"]["finished"] is False and mid["training"]["steps"] == steps // 2
    _train(dataset, tmp_path / "b", resume=True)
    ta, ma = load_checkpoint(tmp_path / "a" / STATE_FILE)
    tb, mb = load_checkpoint(tmp_path / "b" / STATE_FILE)
    assert set(ta) == set(tb)
    for key in ta:
        if key.startswith(("model.", "optim.")):
            torch.testing.assert_close(ta[key], tb[key], rtol=0, atol=0, msg=key)
    ha, hb = ma["train_state"]["history"], mb["train_state"]["history"]
    assert ha[-1]["bpr"] == hb[-1]["bpr"] and ha[-1]["val_auc"] == hb[-1]["val_auc"]
    assert ma["train_state"]["step"] == mb["train_state"]["step"] == steps


def test_resume_refuses_other_data(dataset, tmp_path):
    _train(dataset, tmp_path, max_steps=1)
    other = tiny_dataset(seed=1)
    assert (other.num_users, other.num_items) == (dataset.num_users, dataset.num_items)
    with pytest.raises(CheckpointError, match="trained on other data"):
        _train(other, tmp_path, resume=True)
    card = json.loads((tmp_path / "tiny-colours.json").read_text())
    assert card["dataset"]["fingerprint"] == dataset_fingerprint(dataset)


def test_trainer_rejects_unknown_option(dataset, tmp_path):
    with pytest.raises(GisUsageError, match="unknown dvbpr trainer option"):
        _train(dataset, tmp_path, learning_rate=1)


# --------------------------------------------------------------------------------- checkpoints

def test_gis_checkpoint_roundtrip(tmp_path):
    model = tiny_model(users=7, seed=4)
    with torch.no_grad():
        model.theta.normal_()
    model.card = {"note": "roundtrip"}
    path = ckpt_mod.save_dvbpr(model, tmp_path / "m.safetensors")
    loaded = gis_dvbpr.create(checkpoint=path)
    x = images_for(model)
    torch.testing.assert_close(loaded.score(x), model.score(x), rtol=0, atol=0)
    assert loaded.user_ids == model.user_ids
    # the card as saved, plus the file it was loaded from (the card contract's "checkpoint")
    assert loaded.card.to_dict() == {"note": "roundtrip", "checkpoint": str(path)}
    assert loaded.layout == model.layout
    half = gis_dvbpr.create(checkpoint=ckpt_mod.save_dvbpr(model, tmp_path / "h.safetensors",
                                                           half=True))
    torch.testing.assert_close(half.score(x), model.score(x), rtol=2e-2, atol=2e-3)


def test_registered_in_gis():
    assert "dvbpr" in gis.plugins.recommenders
    model = gis.get_recommender("dvbpr", pretrained=False, width=TINY, user_ids=["a"])
    assert isinstance(model, gis.Recommender) and model.num_users == 1


def test_missing_default_weights_names_command(monkeypatch, tmp_path):
    monkeypatch.setattr(gis_dvbpr, "DEFAULT_CHECKPOINT", tmp_path / "absent.safetensors")
    with pytest.raises(MissingAssetError, match="gis train recommender dvbpr --data "
                                                "fashion-colors"):
        gis_dvbpr.create()


def _aip_checkpoint(path: Path, width: float = TINY, users: int = 6, k: int = 100):
    """A checkpoint written exactly as the AIP training script does (DataParallel keys,
    numpy U), for a port-layout network narrowed by ``width``."""
    torch.manual_seed(0)
    net = torch.nn.DataParallel(DVBPRNet(get_layout("128", width=width), k))
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    net(torch.zeros(2, 3, 128, 128)).sum().backward()
    opt.step()
    u = np.random.default_rng(0).uniform(0, 0.01, size=(users, k)).astype(np.float32)
    torch.save({"epoch": 4, "model_state_dict": net.state_dict(),
                "optimizer_state_dict": opt.state_dict(), "loss": torch.tensor(0.5), "U": u},
               path)
    return net.module, u


def test_aip_checkpoint_needs_trust(tmp_path):
    path = tmp_path / "amazon_K100_4.tar"
    net, u = _aip_checkpoint(path)
    with pytest.raises(UntrustedFileError, match="--trust"):
        gis_dvbpr.create(checkpoint=path)
    model = gis_dvbpr.create(checkpoint=path, trust=True)
    assert model.image_size == 128 and model.num_users == 6 and model.user_ids[0] == "0"
    np.testing.assert_array_equal(model.theta.numpy(), u)
    net.eval()
    x = images_for(model, 2)
    torch.testing.assert_close(model.embed(x), net(x))
    assert model.card["epoch"] == 4


def test_mismatched_checkpoints(tmp_path):
    path = tmp_path / "aip.tar"
    _aip_checkpoint(path)
    with pytest.raises(CheckpointError, match=r"fc1.weight has shape .* expected") as exc:
        gis_dvbpr.create(checkpoint=path, trust=True, layout=get_layout("224", width=TINY))
    assert "\n" not in str(exc.value)
    # a gis checkpoint with a tensor of the wrong shape
    good = ckpt_mod.save_dvbpr(tiny_model(), tmp_path / "m.safetensors")
    tensors, meta = load_checkpoint(good)
    tensors["cnn.conv2.weight"] = tensors["cnn.conv2.weight"][:, :1]
    save_checkpoint(tmp_path / "bad.safetensors", tensors, meta)
    with pytest.raises(CheckpointError, match=r"conv2.weight has shape \(4, 1, 5, 5\), expected \(4, 2, 5, 5\)"):
        gis_dvbpr.create(checkpoint=tmp_path / "bad.safetensors")
    # missing keys
    del tensors["cnn.fc3.bias"]
    save_checkpoint(tmp_path / "bad2.safetensors", tensors, meta)
    with pytest.raises(CheckpointError, match="missing fc3.bias"):
        gis_dvbpr.create(checkpoint=tmp_path / "bad2.safetensors")
    # not a DVBPR file at all, and not a file
    save_file({"x": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(CheckpointError, match="not a DVBPR checkpoint"):
        gis_dvbpr.create(checkpoint=tmp_path / "other.safetensors")
    with pytest.raises(CheckpointError, match="not found"):
        gis_dvbpr.create(checkpoint=tmp_path / "nope.safetensors")
    # a weights-only torch file without the AIP keys
    torch.save({"weights": torch.zeros(2)}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="not an AIP-style"):
        gis_dvbpr.create(checkpoint=tmp_path / "plain.pt")


# --------------------------------------------------------------------------------- gis.training

def test_checkpoint_helpers_roundtrip(tmp_path):
    gen = seed_everything(5)
    net = torch.nn.Linear(4, 3)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, betas=(0.5, 0.99))
    net(torch.randn(2, 4)).sum().backward()
    opt.step()
    opt_t, opt_m = optimizer_state_tensors(opt)
    state = TrainState(epoch=2, step=7, best={"val": 0.9}, extra={"k": [1, 2]})
    path = save_checkpoint(tmp_path / "sub" / "c.safetensors",
                           {**flatten(net.state_dict(), "net."), **opt_t,
                            **rng_state_tensors({"g": gen})},
                           {**opt_m, **state.to_meta(), "note": np.float32(1.5)})
    assert [p.name for p in path.parent.iterdir()] == ["c.safetensors"]  # no temp file left
    assert path.stat().st_mode & 0o777 == 0o666 & ~_umask()
    tensors, meta = load_checkpoint(path)
    assert TrainState.from_meta(meta) == state and meta["note"] == 1.5
    net2 = torch.nn.Linear(4, 3)
    net2.load_state_dict(unflatten(tensors, "net."))
    opt2 = torch.optim.Adam(net2.parameters(), lr=1.0)
    load_optimizer_state(opt2, tensors, meta)
    assert opt2.param_groups[0]["betas"] == (0.5, 0.99) and opt2.param_groups[0]["lr"] == 1e-3
    for a, b in zip(opt.state.values(), opt2.state.values(), strict=True):
        torch.testing.assert_close(a["exp_avg_sq"], b["exp_avg_sq"])
    gen2 = torch.Generator()
    load_rng_state(tensors, {"g": gen2})
    assert torch.equal(torch.rand(3, generator=gen), torch.rand(3, generator=gen2))
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable"):
        load_checkpoint(tmp_path / "junk.safetensors")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_budget():
    b = Budget(steps=2)
    assert not b.exhausted()
    b.tick()
    b.tick()
    assert b.exhausted()
    assert not Budget().exhausted() and Budget(minutes=0).exhausted()
    assert Budget(minutes=1).remaining_s > 0


def test_safetensors_state_is_weights_only(tmp_path):
    path = save_checkpoint(tmp_path / "w.safetensors", {"a": torch.ones(2)}, {"b": 1})
    assert set(load_file(str(path))) == {"a"}
