"""The example third-party plugin (examples/gis-example-plugin) used purely as a plugin: its
generator, recommender and dataset with ground truth go through `gis evaluate` (and its loss
term through `gis shift`), registered at run time without installing the package."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import gis
from gis.cli import cli
from gis.data import load_dataset

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "gis-example-plugin"
TINY = ["--trials", "1", "--steps", "2", "--invert-steps", "2", "--n", "3", "--quiet"]


@pytest.fixture(scope="module")
def example():
    """The example package's module, registered with gis's plugin manager for these tests.

    Imported from its folder by file location, not through sys.path: a build of the package
    leaves an .egg-info there whose entry point would load it a second time."""
    package = EXAMPLE / "gis_example_plugin"
    spec = importlib.util.spec_from_file_location(
        "gis_example_plugin", package / "__init__.py", submodule_search_locations=[str(package)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        name = gis.register_plugin(module, name="example-under-test")
        try:
            yield module
        finally:
            gis.unregister_plugin(name)
    finally:
        for key in [k for k in sys.modules if k.split(".")[0] == spec.name]:
            del sys.modules[key]


# ------------------------------------------------------------------------------ dataset, evaluate
def test_example_dataset_offers_ground_truth(example):
    ds = load_dataset("example-swatches")
    assert ds.images.shape == (24, 16, 16, 3) and ds.user_ids == [f"user{k}" for k in range(5)]
    assert ds.has_ground_truth and (ds.test >= 0).all()
    x = ds.image_tensor(np.arange(6))
    clf = ds.ground_truth.category_classifier()
    assert clf.predict_proba(x).argmax(1).tolist() == ds.categories[:6].tolist()
    u = ds.ground_truth.utility(x, np.array([0, 4]), ds.categories[:6])
    np.testing.assert_allclose(u, ds.ground_truth.item_utility(np.array([0, 4]), np.arange(6)))
    # every user's held-out test item is among the items they truly like most
    best = ds.ground_truth.item_utility(np.arange(5), np.arange(24)).argsort(1)[:, -5:]
    assert all(ds.test[r] in best[r] for r in range(5))


def test_evaluate_with_the_example_plugin(example, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))  # the domain IS
    out = tmp_path / "ev"
    res = CliRunner().invoke(cli, [
        "evaluate", "--generator", "example-linear", "--recommender", "example-colour",
        "--data", "example-swatches", "--baseline-generator", "", "--experiment", "table3",
        "--fid-real", "12", "--out", str(out), *TINY])
    assert res.exit_code == 0, res.output
    ds = load_dataset("example-swatches")
    records = [json.loads(x) for x in (out / "table3" / "trials.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in records] == ["preferred", "unpreferred"]
    for r in records:
        g = r["gis"]
        assert g["expected_category"] == ds.category_names.index(r["item_category"])
        # the truth in the record is the example's own: its utility of the stored variants
        with np.load(out / "table3" / "images" / f"{r['key']}.npz") as z:
            variants = torch.from_numpy(z["variants"]).permute(0, 3, 1, 2).float() / 255
        rows = np.array([ds.user_ids.index(u) for u in r["users_head"]])
        expect = ds.ground_truth.utility(variants, rows, np.array(g["variant_categories"]),
                                         value_range=(0, 1)).mean(0)
        np.testing.assert_allclose(g["true_utility_variants"], expect, atol=0.02)
        assert 0 <= g["recommender_gains_that_are_true"] <= g["recommender_gains"] <= 3
    doc = json.loads((out / "table3.json").read_text())
    images = doc["images"]
    assert images["is_classifier"] == \
        "domain IS (example DominantChannel on example-swatches, 3 classes)"
    assert 1.0 <= images["inception_score"] <= 3.0 + 1e-6 and np.isfinite(images["fid"])
    assert images["n_real"] == 12 and "### table3" in (out / "RESULTS.md").read_text()
    # a recommender is evaluated only on the dataset it was trained on (its users)
    res = CliRunner().invoke(cli, ["evaluate", "--generator", "example-linear", "--recommender",
                                   "example-colour", "--baseline-generator", "", "--out",
                                   str(tmp_path / "other"), *TINY])
    assert res.exit_code == 2 and "was not trained on dataset 'fashion-colors'" in res.output


# ------------------------------------------------------------------------------ loss, shift
def test_shift_with_the_example_loss_term(example, tmp_path):
    """`--loss total-variation=W` puts the example's term into the shifting objective: it is
    recorded per step, it smooths the variants, and weight 0 is the run without it."""
    from safetensors.torch import load_file

    def run(name, *loss):
        out = tmp_path / name
        res = CliRunner().invoke(cli, [
            "shift", "--generator", "example-linear", "--recommender", "example-colour",
            "--data", "example-swatches", "--users", "user0,user1", "--out", str(out),
            "--random-latent", "--recipe", "paper", "--steps", "6", "--n", "3", "--quiet",
            *loss])
        assert res.exit_code == 0, res.output
        return json.loads((out / "result.json").read_text()), load_file(
            str(out / "latents.safetensors"))

    doc, lat = run("tv", "--loss", "total-variation=20")
    assert doc["settings"]["losses"] == {"shift_ce": 1.0, "shift_mae": 1.0, "preference": 1.0,
                                         "total-variation": 20.0}
    tv = doc["history"]["total-variation"]
    assert len(tv) == 6 and tv[-1] < tv[0]  # the term steers: the variants get smoother
    off_doc, off = run("off", "--loss", "total-variation=0")
    plain_doc, plain = run("plain")
    assert "total-variation" not in off_doc["history"]
    assert off_doc["settings"]["losses"] == plain_doc["settings"]["losses"]
    assert torch.equal(off["shifts"], plain["shifts"])  # weight 0: the run without the term
    assert not torch.equal(lat["shifts"], plain["shifts"])  # weight 20 changes the result
    # the alias selects the same term; the history names it by its registered name
    alias_doc, alias = run("alias", "--loss", "tv=20")
    assert list(alias_doc["history"]) == list(doc["history"])
    assert torch.equal(alias["shifts"], lat["shifts"])
