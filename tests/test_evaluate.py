"""Preference metrics and `gis evaluate` end to end at a tiny scale (few steps, one trial)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from gis.cli import cli
from gis.metrics.preference import coverage, preference_shift, rank_improvement, top_k_mean

TINY = ["--trials", "1", "--steps", "2", "--invert-steps", "2", "--n", "3", "--n-users", "1,4",
        "--fid-real", "24", "--quiet"]


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


# ------------------------------------------------------------------------------ metrics
def test_top_k_mean_and_shift():
    s = np.array([0.5, 3.0, -1.0, 2.0, 1.0])
    assert top_k_mean(s, 3) == pytest.approx((3.0 + 2.0 + 1.0) / 3)
    assert top_k_mean(s, 1) == 3.0
    assert top_k_mean(s[:2], 3) == pytest.approx(1.75)  # fewer than k: all of them
    rows = np.stack([s, s - 1])
    np.testing.assert_allclose(top_k_mean(rows, 2), [2.5, 1.5])
    assert preference_shift(s, 0.5, k=3) == pytest.approx(1.5)
    np.testing.assert_allclose(preference_shift(rows, [0.0, 1.0], k=2), [2.5, 0.5])
    with pytest.raises(ValueError):
        top_k_mean(np.array([]), 3)


def test_rank_improvement_and_coverage():
    item = np.array([100, 5, 50])
    variants = np.array([[10, 7, 60], [30, 9, 40]])
    r = rank_improvement(item, variants)
    np.testing.assert_array_equal(r["per_user"], [90, -2, 10])
    assert r["median"] == 10 and r["share_improved"] == pytest.approx(2 / 3)
    assert r["median_best_variant_rank"] == 10
    np.testing.assert_allclose(coverage(variants, 10), [2 / 3, 1 / 3])
    assert coverage(item, 10) == pytest.approx(1 / 3)
    with pytest.raises(ValueError):
        rank_improvement(item, variants[:, :2])


# ------------------------------------------------------------------------------ evaluate
@pytest.fixture(scope="module")
def evaluation(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "ev"
    res = invoke("evaluate", "--out", out, *TINY)
    assert res.exit_code == 0, res.output
    return out


def _records(out, name):
    lines = (out / name / "trials.jsonl").read_text().splitlines()
    return [json.loads(x) for x in lines]


def test_evaluate_writes_every_table_and_figure(evaluation):
    out = evaluation
    for name in ("table2", "table3", "table4", "table5"):
        doc = json.loads((out / f"{name}.json").read_text())
        assert doc["experiment"] == name and doc["paper"]
        made_by = doc["provenance"]  # gis.provenance.record_fields, as in result.json
        assert made_by["provenance"]["threads"]["intra_op"] >= 1
        assert len(made_by["recommender"]["sha256"]) == 64
        assert made_by["baseline_generator"]["name"] == "dvbpr-gan"
        md = (out / f"{name}.md").read_text()
        assert md.startswith(f"### {name}") and "| " in md
        for fig in doc["figures"]:
            with Image.open(out / fig) as im:
                assert im.size[0] > 100
    assert len(_records(out, "table2")) == 1
    assert len(_records(out, "table3")) == 2  # one user: preferred + unpreferred
    assert len(_records(out, "table4")) == 10  # one per category
    assert len(_records(out, "table5")) == 2  # N = 1 and 4
    results = (out / "RESULTS.md").read_text()
    assert all(f"### table{k}" in results for k in (2, 3, 4, 5))
    assert "8.97 ± 3.55" in results  # the paper's numbers sit beside ours


def test_table_numbers_come_from_the_trials(evaluation):
    out = evaluation
    recs = _records(out, "table3")
    for r in recs:
        g = r["gis"]
        assert g["top3"] == pytest.approx(top_k_mean(g["variant_scores"], 3))
        assert g["shift_vs_reference"] == pytest.approx(g["top3"] - g["reference_scores"][0])
        assert g["shift_vs_item"] == pytest.approx(g["top3"] - g["item_score"])
        assert 0 <= g["recommender_gains_that_are_true"] <= g["recommender_gains"] <= 3
        # a speckled or malformed variant's gain is never a true gain (GroundTruth.realism)
        real = np.array(g["variant_realistic"])
        assert len(real) == 3 and g["realistic_share"] == pytest.approx(real.mean())
        assert all((reason == "") == ok for reason, ok in
                   zip(g["variant_unrealistic_reasons"], real, strict=True))
        assert g["recommender_gains_that_are_true"] <= \
            g["recommender_gains_true_ignoring_realism"]
        gains = np.array(g["variant_scores"]) > np.mean(g["reference_scores"])
        true = np.array(g["true_utility_variants"]) > np.mean(g["true_utility_reference"])
        assert g["recommender_gains_that_are_true"] == int((gains & true & real).sum())
        assert 0.0 <= g["category_preserved"] <= 1.0
        assert len(g["true_utility_variants"]) == 3
    doc = json.loads((out / "table3.json").read_text())
    pref = [r for r in recs if r["kind"] == "preferred"][0]["gis"]
    assert doc["kinds"]["preferred"]["shift_vs_base"]["mean"] == pytest.approx(
        pref["shift_vs_reference"])
    t5 = json.loads((out / "table5.json").read_text())
    assert set(t5["n_users"]) == {"1", "4"}
    assert [r["n_target_users"] for r in _records(out, "table5")] == [1, 4]
    t2 = json.loads((out / "table2.json").read_text())
    methods = t2["methods"]
    assert set(methods) == {"GIS", "DVBPR personalized", "DVBPR non-personalized"}
    for block in methods.values():
        im = block["images"]
        assert im["n_generated"] == 3 and im["n_real"] == 24
        assert 1.0 <= im["inception_score"] <= 10.0 + 1e-6
        assert np.isfinite(im["fid"])
    # the personalized design starts from the very samples the plain baseline returns
    r2 = _records(out, "table2")[0]
    assert r2["dvbpr_personalized"]["reference_scores"] == \
        r2["dvbpr_non_personalized"]["variant_scores"]


def test_evaluate_resumes_without_redoing_trials(evaluation, tmp_path):
    import shutil

    out = tmp_path / "ev"
    shutil.copytree(evaluation, out)
    log = out / "table4" / "trials.jsonl"
    lines = log.read_text().splitlines()
    # an interruption: the last trial lost, the one before cut mid-line
    log.write_text("\n".join(lines[:-2]) + "\n" + lines[-2][:40])
    before = {json.loads(x)["key"]: json.loads(x)["seconds"] for x in lines[:-2]}
    res = invoke("evaluate", "--experiment", "table4", "--out", out, *TINY)
    assert res.exit_code == 0, res.output
    after = _records(out, "table4")
    keys = [r["key"] for r in after if r["key"] in before]
    assert {r["key"]: r["seconds"] for r in after if r["key"] in before} == before
    assert len(keys) == 8 and len({r["key"] for r in after}) == 10


def test_evaluate_refuses_other_settings_and_foreign_folders(evaluation, tmp_path):
    res = CliRunner().invoke(cli, ["evaluate", "--experiment", "table5", "--out",
                                   str(evaluation), *TINY, "--seed", "3"])
    # a different seed is another evaluation: refused, nothing changed
    assert res.exit_code == 2 and "other settings (seed differ)" in res.output
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    res = CliRunner().invoke(cli, ["evaluate", "--out", str(foreign), *TINY])
    assert res.exit_code == 2 and "not a gis evaluate folder" in res.output
    assert (foreign / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]
    for bad in (["--trials", "0"], ["--n-users", "1,x"], ["--n", "1"]):
        res = CliRunner().invoke(cli, ["evaluate", "--out", str(tmp_path / "new"), *bad])
        assert res.exit_code == 2, res.output
        assert "Traceback" not in res.output
    assert not (tmp_path / "new").exists()
