"""Recommender robustness: the attack raises scores within its bound; the report's numbers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import gis
from gis.data import load_dataset
from gis.evaluation.robustness import _mean_score, pgd_raise, recommender_robustness


@pytest.fixture(scope="module")
def world():
    return gis.get_recommender("dvbpr"), load_dataset("fashion-colors")


def test_pgd_raises_the_score_within_its_bound(world):
    rec, ds = world
    x = (ds.heldout_tensor(np.arange(6)) + 1) / 2
    users = torch.randint(0, rec.num_users, (6, 5), generator=torch.Generator().manual_seed(0))
    eps = 4 / 255
    adv = pgd_raise(rec, x, users, eps=eps, steps=5)
    assert (adv - x).abs().max() <= eps + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    with torch.no_grad():
        assert (_mean_score(rec, adv, users) > _mean_score(rec, x, users)).all()


def test_robustness_report(world):
    rec, ds = world
    doc = recommender_robustness(rec, ds, n=6, users=3, eps=(2 / 255, 8 / 255), steps=3,
                                 batch_size=4)
    assert doc["n_items"] == 6 and doc["catalogue_std_mean"] > 0
    assert set(doc) >= {"pgd_2/255", "pgd_8/255", "noise", "speckle"}
    # a larger budget raises the score more; every attacked item is raised
    assert doc["pgd_8/255"]["mean"] > doc["pgd_2/255"]["mean"] > 0
    assert doc["pgd_2/255"]["share_raised"] == 1.0
    again = recommender_robustness(rec, ds, n=6, users=3, eps=(2 / 255, 8 / 255), steps=3,
                                   batch_size=4)
    assert again == doc  # seeded
