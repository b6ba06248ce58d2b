"""The robust DVBPR's training loss (augmentation + FGSM-RS adversarial training)."""

from __future__ import annotations

import json

import pytest
import torch
from gis_dvbpr.model import DVBPR, get_layout
from gis_dvbpr.robust import robust_bpr_loss
from gis_dvbpr.trainer import STATE_FILE, ItemImages, bpr_loss, sample_triplets, train_dvbpr
from test_dvbpr import TINY, tiny_dataset

from gis.errors import GisUsageError
from gis.training import load_checkpoint


@pytest.fixture(scope="module")
def dataset():
    return tiny_dataset()


def _model_and_batch(ds, seed=0):
    model = DVBPR(get_layout("32", width=TINY), ds.user_ids)
    model.reset_parameters(torch.Generator().manual_seed(seed))
    with torch.no_grad():  # user vectors large enough for the scores to matter
        model.theta.normal_(0, 1, generator=torch.Generator().manual_seed(seed + 1))
    images = ItemImages(ds.images, 32, torch.device("cpu"))
    batch = sample_triplets(ds.user_items(), ds.num_items, 32, torch.Generator().manual_seed(1))
    return model.eval(), images, batch


def test_no_perturbation_is_the_papers_loss(dataset):
    model, images, batch = _model_and_batch(dataset)
    ref, ref_bpr = bpr_loss(model, images, batch, lambda_cnn=1e-3, lambda_theta=1.0)
    got, got_bpr = robust_bpr_loss(model, images, batch, lambda_cnn=1e-3, lambda_theta=1.0,
                                   adv_eps=0.0, adv_weight=1.0, noise_std=0.0,
                                   generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(got, ref, rtol=0, atol=0)
    torch.testing.assert_close(got_bpr, ref_bpr, rtol=0, atol=0)


def test_adversarial_pair_is_harder_than_the_clean_one(dataset):
    model, images, batch = _model_and_batch(dataset)
    kw = dict(lambda_cnn=0.0, lambda_theta=0.0, noise_std=0.0)
    total, clean = robust_bpr_loss(model, images, batch, adv_eps=8 / 255, adv_weight=1.0,
                                   generator=torch.Generator().manual_seed(0), **kw)
    adversarial = total - clean  # the BPR of the perturbed pair
    assert adversarial > clean * 1.01
    # a weight of 0 switches the adversarial term off
    total0, clean0 = robust_bpr_loss(model, images, batch, adv_eps=8 / 255, adv_weight=0.0,
                                     generator=torch.Generator().manual_seed(0), **kw)
    torch.testing.assert_close(total0, clean0)
    # the loss has gradients for the CNN and the user vectors
    total.backward()
    assert model.theta.grad is not None and model.theta.grad.abs().sum() > 0


def test_robust_training_records_its_settings_and_resumes_exactly(dataset, tmp_path):
    opts = dict(epochs=1, width=TINY, batch_size=8, lr=3e-3, threads=1, progress=False, seed=3,
                adv_eps=4 / 255, noise_std=0.05)
    train_dvbpr(dataset, out=tmp_path / "a", **opts)
    steps = -(-len(dataset.train) // 8)
    train_dvbpr(dataset, out=tmp_path / "b", max_steps=steps // 2, **opts)
    train_dvbpr(dataset, out=tmp_path / "b", resume=True, **opts)
    card = json.loads((tmp_path / "a" / "tiny-colours.json").read_text())
    assert "FGSM-RS" in card["hyperparameters"]["augmentation"]
    assert "noise" in card["hyperparameters"]["augmentation"]
    ta, _ = load_checkpoint(tmp_path / "a" / STATE_FILE)
    tb, _ = load_checkpoint(tmp_path / "b" / STATE_FILE)
    for key in ta:
        if key.startswith(("model.", "optim.")):
            torch.testing.assert_close(ta[key], tb[key], rtol=0, atol=0, msg=key)


def test_bad_robust_settings_are_usage_errors(dataset, tmp_path):
    with pytest.raises(GisUsageError, match="adv_eps"):
        train_dvbpr(dataset, out=tmp_path, epochs=1, width=TINY, adv_eps=-0.1, progress=False)


def test_shipped_robust_dvbpr_loads_offline_and_resists_small_changes():
    import numpy as np

    import gis
    from gis.data import load_dataset
    from gis.evaluation.robustness import recommender_robustness

    plain, robust = gis.get_recommender("dvbpr"), gis.get_recommender("dvbpr-robust")
    assert robust.user_ids == plain.user_ids and not robust.training
    assert robust.card["name"] == "dvbpr-robust"
    assert "FGSM-RS" in robust.card["hyperparameters"]["augmentation"]
    assert robust.card["metrics"]["test_auc"] >= 0.85
    ds = load_dataset("fashion-colors")
    x = ds.heldout_tensor(np.arange(4))
    assert robust.score(x, torch.arange(3)).shape == (4, 3)
    kw = dict(n=8, users=3, eps=(4 / 255,), steps=3, batch_size=8)
    rise = {name: recommender_robustness(model, ds, **kw)["pgd_4/255"]["mean_in_catalogue_std"]
            for name, model in (("plain", plain), ("robust", robust))}
    assert rise["robust"] < 0.5 * rise["plain"]
