"""Issue 14, parts 4 and 7: the `distinct` term, the variants' checks and the recommendation,
the seller recipe as `gis shift`'s default."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from test_engine import ColourRecommender, TinyGenerator
from test_losses import _losses_registered  # noqa: F401  (autouse: the loss plugin)
from test_realism_terms import NoPriorGenerator, _ctx, _object, _term, _unit_gen

from gis import plugins
from gis.engine import shift, shift_settings
from gis.engine.checks import CheckSettings, check_variants
from gis.engine.commands import shift_summary
from gis.engine.invert import normalise_rows
from gis.engine.objective import Objective
from gis.errors import GisUsageError
from gis.metrics.lpips_metric import variant_distances

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---------------------------------------------------------------------------- distinct term


def test_distinct_is_zero_for_distinct_variants_and_high_for_copies():
    term = plugins.get_loss("distinct")
    assert term.stages == ("shift",) and not term.maximise and term.threshold == 0.02
    apart = torch.cat([_object(), _object(colour=(0.1, 0.2, 0.9)), _object(top=2, size=28)])
    assert term(_ctx(apart, _unit_gen())).item() == 0.0  # every pair far above 0.02
    copies = torch.cat([_object(), _object(), _object(colour=(0.1, 0.2, 0.9))])
    # one of three pairs identical: its hinge is 1, the mean over 3 pairs 1/3
    assert term(_ctx(copies, _unit_gen())).item() == pytest.approx(1 / 3, abs=1e-3)
    with pytest.raises(GisUsageError, match="threshold"):
        plugins.get_loss("distinct", threshold=0)


def test_distinct_pairwise_equals_the_lpips_of_each_pair():
    term = plugins.get_loss("distinct")
    x = torch.rand(5, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    i, j = torch.triu_indices(5, 5, offset=1)
    torch.testing.assert_close(term.pairwise(x), term.distance(x[i], x[j]), rtol=1e-5,
                               atol=1e-7)


def test_distinct_gradient_pushes_near_copies_apart():
    term = plugins.get_loss("distinct")
    g = torch.Generator().manual_seed(0)
    a = _object()
    b = (a + 0.01 * torch.randn(a.shape, generator=g)).clamp(0, 1)  # a near-copy
    x = torch.cat([a, b]).requires_grad_(True)
    total, values = Objective("shift", [_term("distinct", term)])(_ctx(x, _unit_gen()))
    assert 0 < values["distinct"].item() < 1
    total.backward()
    before = variant_distances(x.detach(), x[:1].detach())["min_pairwise"]
    after_x = (x - 0.02 * x.grad / x.grad.abs().max()).detach()
    assert variant_distances(after_x, after_x[:1])["min_pairwise"] > before


def test_distinct_nearest_reduction_weighs_each_variants_nearest_neighbour():
    """reduction="nearest": the mean over variants of the hinge of each one's nearest
    neighbour, equal to a per-pair reference; its gradient pushes the copies apart too."""
    pairs = plugins.get_loss("distinct")
    nearest = plugins.get_loss("distinct", reduction="nearest")
    x = torch.cat([_object(), _object(), _object(colour=(0.1, 0.2, 0.9)),
                   _object(top=2, size=28)])
    ctx = _ctx(x, _unit_gen())
    # one identical pair among 4 variants: pairs 1/6, nearest 2/4 (the two copies' hinge is 1)
    assert pairs(ctx).item() == pytest.approx(1 / 6, abs=1e-3)
    assert nearest(ctx).item() == pytest.approx(2 / 4, abs=1e-3)
    g = torch.Generator().manual_seed(2)
    y = (torch.rand(5, 3, 32, 32, generator=g) * 0.02 + x[:1]).clamp(0, 1)  # near-copies
    i, j = torch.triu_indices(5, 5, offset=1)
    d = nearest.distance(y[i] * 2 - 1, y[j] * 2 - 1).clamp_min(0)
    h = torch.relu(1 - torch.sqrt(d / 0.02 + 1e-12))
    ref = torch.stack([h[(i == k) | (j == k)].max() for k in range(5)]).mean()
    assert nearest(_ctx(y, _unit_gen())).item() == pytest.approx(ref.item(), rel=1e-4)
    y = y.requires_grad_(True)
    total, _ = Objective("shift", [_term("distinct", nearest)])(_ctx(y, _unit_gen()))
    total.backward()
    before = variant_distances(y.detach(), y[:1].detach())["min_pairwise"]
    after = (y - 0.02 * y.grad / y.grad.abs().max()).detach()
    assert variant_distances(after, after[:1])["min_pairwise"] > before
    with pytest.raises(GisUsageError, match="reduction is one of pairs, nearest"):
        plugins.get_loss("distinct", reduction="max")


# ---------------------------------------------------------------------------- seller recipe


def test_seller_recipe_has_distinct_and_realism_where_offered():
    s = shift_settings("seller")
    assert s.losses["distinct"] > 0 and s.loss_options["realism"] == {"if_offered": True}
    assert s.loss_options["distinct"] == {"reduction": "nearest"}
    # an override of another option keeps the recipe's own
    t = shift_settings("seller", loss_options={"realism": {"kind": "latent-prior"}})
    assert t.loss_options["realism"] == {"if_offered": True, "kind": "latent-prior"}


def test_realism_if_offered_is_zero_for_a_generator_that_offers_none():
    gen, rec = NoPriorGenerator(), ColourRecommender()
    term = plugins.get_loss("realism", if_offered=True)
    term.check_models(gen)  # no error
    x = torch.rand(3, 3, 8, 8)
    assert torch.equal(term(_ctx(x, gen)), torch.zeros(3))
    # the whole seller recipe runs with such a generator, realism contributing nothing
    z = normalise_rows(torch.randn(1, 16))
    res = shift(z, torch.tensor([0, 3]), gen, rec,
                settings=shift_settings("seller", steps=2, n=2))
    assert res.history["realism"] == [0.0, 0.0]


def test_gis_shift_defaults_to_the_seller_recipe():
    from gis.engine.cli import shift as shift_cli

    (opt,) = [p for p in shift_cli.params if p.name == "recipe"]
    assert opt.default == "seller"


# ---------------------------------------------------------------------------- checks


class CalibratedGenerator(TinyGenerator):
    """TinyGenerator with a 'critic' that scores an image's mean red minus green (a stand-in
    read off the pixels), calibrated with floor 0."""

    output_range = (0.0, 1.0)

    @property
    def realism_kinds(self):
        return ("critic", *super().realism_kinds)

    def realism(self, images=None, latents=None, *, kind=None, labels=None):
        if (kind or "critic") == "critic":
            return images[:, 0].mean((1, 2)) - images[:, 1].mean((1, 2))
        return super().realism(images, latents, kind=kind, labels=labels)

    def realism_floor(self, kind):
        return 0.0 if kind == "critic" else None


def _variants():
    """Four variants of a red square: 0 recoloured blue (fails the stand-in realism), 1 the
    same shape in red, 2 a near-copy of 1, 3 a bar (another silhouette)."""
    base = _object()
    v = torch.cat([_object(colour=(0.1, 0.2, 0.9)), _object(colour=(0.9, 0.1, 0.1)),
                   _object(colour=(0.88, 0.1, 0.1)), _object(top=14, size=4, left=2)])
    return base, v


def test_checks_mark_each_failure_and_recommend_the_best_passing_variant():
    base, v = _variants()
    pair = variant_distances(v, base)["pairwise"]
    scores = [4.0, 2.0, 3.0, 5.0]  # the best scores fail: 3 (shape), 0 (realism)
    c = check_variants(CalibratedGenerator(), v, base, torch.zeros(4, 16), scores, pair)
    assert c["realism"]["kind"] == "critic" and c["realism"]["passed"] == [False, True, True,
                                                                            True]
    assert c["identity"]["passed"] == [True, True, True, False]
    # 1 and 2 are near-copies: 2 scores higher, so 1 is the copy
    assert c["distinct"]["near_copy_of"] == [None, 2, None, None]
    assert c["passed"] == [False, False, True, False] and c["recommended"] == 2
    assert c["reasons"][0][0].startswith("unrealistic (critic score")
    assert c["reasons"][3][0].startswith("shape changed (silhouette IoU")
    assert c["reasons"][1][0].startswith("near-copy of #2 (LPIPS")
    # thresholds come from the settings
    loose = check_variants(CalibratedGenerator(), v, base, torch.zeros(4, 16), scores, pair,
                           settings=CheckSettings(min_silhouette_iou=0.0, min_distance=0.0,
                                                  realism=False))
    assert loose["recommended"] == 3 and loose["realism"]["passed"] is None
    with pytest.raises(GisUsageError, match="min_silhouette_iou"):
        CheckSettings(min_silhouette_iou=1.5).validate()


def test_checks_without_calibration_say_the_realism_check_was_not_run():
    base, v = _variants()
    pair = variant_distances(v, base)["pairwise"]
    c = check_variants(TinyGenerator(), v, base, torch.zeros(4, 16), [1.0, 2.0, 3.0, 4.0],
                       pair)
    assert c["realism"]["passed"] is None and "not run" in c["realism"]["note"]

    class Strict(CalibratedGenerator):
        def realism_floor(self, kind):
            return 10.0  # no image reaches it

    none = check_variants(Strict(), v, base, torch.zeros(4, 16), [1.0, 2.0, 3.0, 4.0], pair)
    assert none["recommended"] is None and not any(none["passed"])


def test_summary_names_the_recommended_variant_and_why_others_are_not():
    base, v = _variants()
    dist = variant_distances(v, base)
    scores = [4.0, 2.0, 3.0, 5.0]
    checks = check_variants(CalibratedGenerator(), v, base, torch.zeros(4, 16), scores,
                            dist["pairwise"])
    result = SimpleNamespace(optimised="mean", images=v,
                             scores={"mean": {"base": [1.0], "variants": scores}},
                             gains=lambda: [s - 1.0 for s in scores])
    run = SimpleNamespace(result=result, item_scores={}, distances=dist, checks=checks)
    text = shift_summary(run, n_users=3)
    assert "recommended variant #2: 3.000 (+2.000 vs the base" in text
    # with a real item, the gains are stated against it, as in grid.png and the report
    with_item = SimpleNamespace(result=result, item_scores={"mean": 0.5}, distances=dist,
                                checks=checks)
    assert "recommended variant #2: 3.000 (+2.500 vs the item" in shift_summary(with_item,
                                                                               n_users=3)
    assert "highest score #3: 5.000" in text and "shape changed" in text
    assert "    #0: unrealistic" in text and "    #1: near-copy of #2" in text
    checks["recommended"], checks["passed"] = None, [False] * 4
    assert "no variant passes" in shift_summary(run, n_users=3)


def test_summary_and_report_name_only_the_checks_that_ran():
    from gis.record import Checks
    from gis.report.summary import ALL_CHECKS, headline

    base, v = _variants()
    scores = [4.0, 2.0, 3.0, 5.0]
    # no calibrated realism, category switched off, no distances: only identity runs
    checks = check_variants(TinyGenerator(), v, base, torch.zeros(4, 16), scores, None,
                            settings=CheckSettings(category=False))
    rec = Checks(**checks)
    assert rec.ran() == ["identity"] and rec.ran_text() == "identity check"
    assert rec.not_run() == [("realism", "the generator offers no calibrated realism score"),
                             ("category", "switched off"), ("distinctness", "no distances")]
    checks["recommended"], checks["passed"] = None, [False] * 4  # as if none passed
    result = SimpleNamespace(optimised="mean", images=v,
                             scores={"mean": {"base": [1.0], "variants": scores}},
                             gains=lambda: [s - 1.0 for s in scores])
    run = SimpleNamespace(result=result, item_scores={}, distances={}, checks=checks)
    text = shift_summary(run, n_users=3)
    assert "WARNING: no variant passes the identity check (the reasons are below)" in text
    assert "realism" not in text.split("\n")[2]
    assert "  category check not run: switched off" in text.split("\n")
    assert "  realism check not run: the generator offers no calibrated" in text
    # every check ran: all four are named, none is listed as not run
    full = dict(checks, realism={"passed": [True] * 4, "note": None},
                category={"passed": [True] * 4, "note": None},
                distinct={"near_copy_of": [None] * 4, "note": None})
    assert Checks(**full).ran_text() == ("realism, identity, category and distinctness "
                                         "checks") and Checks(**full).not_run() == []
    s = SimpleNamespace(recommended=None, checks_ran=rec.ran_text(), has_item=True)
    assert headline(s) == "No variant passes the identity check: keep the item."
    from gis.report.summary import checks_sentence

    one = checks_sentence(SimpleNamespace(ran=rec.ran(), check_settings=checks["settings"],
                                          category_asked=None))
    assert one.startswith("So gis recommends only a variant that passes one check")
    assert "still the item" in one and "realistic" not in one and "distinct (" not in one
    asked = checks_sentence(SimpleNamespace(ran=Checks(**full).ran(), check_settings={},
                                            category_asked="Sneaker"))
    assert "four checks" in asked and "mostly of the class asked for, Sneaker" in asked
    assert ALL_CHECKS == Checks(**full).ran_text()


# ---------------------------------------------------------------------------- judge a run


def test_judge_reads_a_run_and_judges_its_recommendation(tmp_path):
    from test_cli_shift import FEW, invoke

    from gis.evaluation.judge import judge_run, main

    out = tmp_path / "run"
    res = invoke("shift", "--users", "u0001,u0002", "--out", out, *FEW)
    assert res.exit_code == 0, res.output
    verdict = judge_run(out)
    doc = __import__("json").loads((out / "result.json").read_text())
    assert verdict["recommended"] == doc["checks"]["recommended"]
    assert verdict["item_category"] == doc["item"]["category"]
    assert len(verdict["variants"]) == 3
    for v in verdict["variants"]:
        assert isinstance(v["realistic"], bool) and v["keeps_category"] == (
            v["category"] == verdict["item_category"])
    if verdict["recommended"] is not None:
        v = verdict["variants"][verdict["recommended"]]
        assert verdict["recommended_verdict"]["acceptable"] == (
            v["realistic"] and v["keeps_category"] and v["true_gain_vs_item"] > 0)
    # the exit status is the verdict: 0 acceptable, 1 not (or nothing recommended), 2 error
    ok = verdict["recommended_verdict"] is not None and verdict["recommended_verdict"][
        "acceptable"]
    assert main([str(out), "--json"]) == (0 if ok else 1)
    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path)])
    assert exc.value.code == 2
    res = __import__("subprocess").run(
        [__import__("sys").executable, "-m", "gis.evaluation.judge", str(out)],
        capture_output=True, text=True, timeout=120)
    assert res.returncode == (0 if ok else 1)
    assert ("ACCEPTABLE" in res.stdout) == ok


def test_trust_measurement_runs_both_recipes_with_the_same_pairs(tmp_path):
    """`python -m gis.evaluation.trust` (issue 14's side-by-side measurement) on 1 pair at 2
    steps: one row per recipe, the same item and users, the truth's verdict, resumable."""
    import json

    from gis.evaluation.trust import main

    out = tmp_path / "trust.json"
    args = ["--pairs", "1", "--users", "3", "--steps", "2", "--invert-steps", "2",
            "--out", str(out), "--save-images", str(tmp_path / "img")]
    assert main(args) == 0
    doc = json.loads(out.read_text())
    rows = doc["rows"]
    assert [r["recipe"] for r in rows] == ["seller", "paper"]
    assert rows[0]["item"] == rows[1]["item"] and rows[0]["users"] == rows[1]["users"]
    seller, paper = rows
    gain = seller["recommender_gain_vs_item"]
    # the seller is shown the checks' pick only when it beats the real item (else: keep it)
    assert seller["recommended"] == (seller["checked_pick"] if seller["checked_pick"] is not None
                                     and gain[seller["checked_pick"]] > 0 else None)
    assert paper["recommended"] == paper["top_scoring"] == max(
        range(8), key=paper["recommender_gain_vs_item"].__getitem__)
    # a saved run re-checked offline gives the same checks and pick (scripts/*_recheck.py)
    import gis
    from gis.data import load_dataset
    from gis.evaluation.trust import recheck_saved
    from gis.metrics.category import CategoryReference

    again = recheck_saved(tmp_path / "img", seller, gis.get_generator("progan"),
                          CategoryReference.from_dataset(load_dataset("fashion-colors")))
    assert again["checks"]["recommended"] == seller["checked_pick"]
    assert again["variants"].shape == (8, 3, 32, 32) and 0 <= again["variants"].min() <= 1
    assert np.allclose(np.asarray(again["scores"]) - again["item_score"], gain, atol=1e-5)
    for r in rows:
        assert len(r["truth"]["realistic"]) == 8 and r["n_passing_checks"] <= 8
        assert r["recommended_acceptable"] == (
            r["recommended"] is not None and r["truth"]["realistic"][r["recommended"]]
            and r["truth"]["keeps_category"][r["recommended"]]
            and r["truth"]["vs_item"][r["recommended"]] > 0)
    assert set(doc["summary"]) == {"seller", "paper"}
    assert main(args) == 0  # resumed: nothing run again
    assert json.loads(out.read_text())["rows"] == rows


def test_trust_recipes_keep_their_own_term_options(tmp_path, monkeypatch):
    """Two recipes that give one loss term different options (--engine loss_options) each run
    with their own term, not whichever was built last."""
    import gis.evaluation.trust as trust

    seen = {}

    class Seen(Exception):
        pass

    def capture(world, item, users, recipe, **kw):  # the first recipe's term, then stop
        seen[recipe] = world["terms"][recipe]["distinct"].threshold
        raise Seen

    monkeypatch.setattr(trust, "run_one", capture)
    for recipes in ("seller,seller@wide", "seller@wide,seller"):  # either one built last
        with pytest.raises(Seen):
            trust.main(["--pairs", "1", "--users", "3", "--recipes", recipes, "--engine",
                        'wide={"shift": {"loss_options": {"distinct": {"threshold": 0.05}}}}',
                        "--out", str(tmp_path / "t.json")])
    assert seen == {"seller": 0.02, "seller@wide": 0.05}


def test_a_variant_is_not_a_near_copy_of_one_that_fails_and_a_copy_of_the_item_fails():
    base, v = _variants()
    pair = variant_distances(v, base)["pairwise"]
    r = CalibratedGenerator().realism(images=v)
    floor = float((r[1] + r[2]) / 2)  # variant 2 (the better-scoring twin) below, 1 above

    class Floor(CalibratedGenerator):
        def realism_floor(self, kind):
            return floor if kind == "critic" else None

    c = check_variants(Floor(), v, base, torch.zeros(4, 16), [4.0, 2.0, 3.0, 5.0], pair)
    assert c["distinct"]["near_copy_of"][1] is None and c["passed"][1]
    assert c["recommended"] == 1 and c["reasons"][2][0].startswith("unrealistic")
    # a variant within min_distance of the item is no visible change
    same = check_variants(CalibratedGenerator(), v, base, torch.zeros(4, 16),
                          [4.0, 2.0, 3.0, 5.0], pair, item01=base,
                          to_reference=[0.5, 0.001, 0.5, 0.5])
    assert any(r.startswith("no visible change") for r in same["reasons"][1])


def test_min_distance_sets_the_check_and_the_distinct_term(tmp_path):
    import json

    from test_cli_shift import FEW, invoke

    res = invoke("shift", "--users", "u0001", "--out", tmp_path / "r", "--min-distance", "0.05",
                 "--min-silhouette-iou", "0.7", *FEW)
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "r" / "result.json").read_text())
    assert doc["settings"]["loss_options"]["distinct"] == {"reduction": "nearest",
                                                           "threshold": 0.05}
    assert doc["checks"]["settings"] == {"min_silhouette_iou": 0.7, "min_distance": 0.05,
                                         "category": True,
                                         "realism": True}


@pytest.mark.parametrize("args, message", [
    (["--loss-option", "distinct"], "--loss-option takes NAME.KEY=VALUE"),
    (["--loss-option", "chroma_tv.margin=0.1"], "'chroma_tv' is not a term of the shifting "
                                                "objective"),
    (["--loss-option", "distinct.bogus=1"], "takes no option 'bogus'; its options: net, "
                                            "threshold, reduction"),
    (["--loss-option", "distinct.threshold=abc"], "option threshold takes a number"),
    (["--loss-option", "distinct.reduction=max"], "reduction is one of pairs, nearest"),
    (["--loss-option", "distinct.net=alex", "--loss-option", "distinct.net=vgg"],
     "distinct.net given twice"),
])
def test_loss_options_on_the_command_line_are_checked(tmp_path, args, message):
    from test_cli_shift import FEW, invoke

    res = invoke("shift", "--random-latent", "--users", "u0001", "--out", tmp_path / "r",
                 *args, *FEW)
    assert res.exit_code == 2 and message in res.output, res.output
    assert len(res.output.strip().splitlines()) == 1 and not (tmp_path / "r").exists()


def test_loss_options_reach_the_term_and_the_record(tmp_path):
    import json

    from test_cli_shift import FEW, invoke

    res = invoke("shift", "--random-latent", "--users", "u0001", "--out", tmp_path / "r",
                 "--loss-option", "distinct.reduction=pairs", "--loss", "chroma_tv=1",
                 "--loss-option", "chroma_tv.margin=0.1", *FEW)
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "r" / "result.json").read_text())
    assert doc["settings"]["loss_options"] == {"realism": {"if_offered": True},
                                               "distinct": {"reduction": "pairs"},
                                               "chroma_tv": {"margin": 0.1}}


# ---------------------------------------------------------------------------- category check


def _bar(vertical: bool, colour=(0.8, 0.1, 0.1), offset: int = 0) -> torch.Tensor:
    """A product photo (1, 3, 32, 32) in [0, 1]: a tall or a wide bar on a near-white ground."""
    x = torch.full((1, 3, 32, 32), 0.95)
    c = torch.tensor(colour)[:, None, None]
    if vertical:
        x[0, :, 4 + offset:28 + offset // 2, 12:20] = c
    else:
        x[0, :, 12:20, 4 + offset:28 + offset // 2] = c
    return x


def _bar_catalogue():
    """12 products: 6 tall bars ('trouser', 0) and 6 wide bars ('bag', 1) in various colours,
    as a dataset's images in [-1, 1]."""
    from gis.metrics.category import CategoryReference

    colours = [(0.8, 0.1, 0.1), (0.1, 0.7, 0.2), (0.1, 0.2, 0.9)]
    imgs = [_bar(v, c, o) for v in (True, False) for c in colours for o in (0, 2)]
    cats = [0] * 6 + [1] * 6
    return CategoryReference.from_images(torch.cat(imgs) * 2 - 1, cats, ["trouser", "bag"]), imgs


def test_category_vote_reads_the_shape_whatever_the_colour():
    ref, imgs = _bar_catalogue()
    assert ref.k == 5 and ref.features.shape == (12, 32 * 32)
    # a catalogue product votes for its own category; a recolouring (unseen colour) too
    assert ref.category(torch.cat(imgs)) == [0] * 6 + [1] * 6
    recoloured = torch.cat([_bar(True, (0.9, 0.8, 0.1)), _bar(False, (0.5, 0.1, 0.6))])
    assert ref.category(recoloured) == [0, 1]
    shares = ref.vote(recoloured)
    torch.testing.assert_close(shares.sum(1), torch.ones(2))
    assert shares[0, 0] == 1.0 and shares[1, 1] == 1.0  # all 5 neighbours agree
    # another resolution is compared at 32 x 32
    big = torch.nn.functional.interpolate(recoloured, size=(64, 64), mode="nearest")
    assert ref.category(big) == [0, 1]
    from gis.metrics.category import CategoryReference

    with pytest.raises(ValueError, match="categories"):
        CategoryReference.from_images(torch.zeros(3, 3, 32, 32), [0, 1], ["a", "b"])
    with pytest.raises(ValueError, match="k <= 3"):
        CategoryReference.from_images(torch.zeros(3, 3, 32, 32), [0, 1, 1], ["a", "b"], k=4)


def test_category_check_fails_a_variant_whose_shape_changed_category():
    ref, _ = _bar_catalogue()
    item = _bar(True, (0.2, 0.2, 0.2))
    v = torch.cat([_bar(True, (0.1, 0.2, 0.9)), _bar(False, (0.9, 0.1, 0.1)),
                   _bar(True, (0.9, 0.6, 0.1))])
    scores = [1.0, 3.0, 2.0]  # the best-scoring variant turned the trouser into a bag
    settings = CheckSettings(min_silhouette_iou=0.0, min_distance=0.0)
    c = check_variants(TinyGenerator(), v, item, torch.zeros(3, 16), scores, None,
                       item01=item, settings=settings, category_reference=ref)
    cat = c["category"]
    assert cat["of"] == "item" and cat["reference"] == "trouser"
    assert cat["values"] == ["trouser", "bag", "trouser"]
    assert cat["passed"] == [True, False, True] and cat["shares"][1] == 0.0
    assert c["reasons"][1] == ["category changed (shape votes 'bag', the item's 'trouser')"]
    assert c["recommended"] == 2
    # without a catalogue, or switched off, the check is not run and the best one is picked
    for kw in ({}, {"category_reference": ref,
                    "settings": CheckSettings(min_silhouette_iou=0.0, min_distance=0.0,
                                              category=False)}):
        off = check_variants(TinyGenerator(), v, item, torch.zeros(3, 16), scores, None,
                             item01=item, **{"settings": settings, **kw})
        assert off["category"]["passed"] is None and "not run" in off["category"]["note"]
        assert off["recommended"] == 1


def test_category_check_of_a_conditional_generator_compares_with_the_class_asked_for():
    ref, _ = _bar_catalogue()
    item = _bar(True, (0.2, 0.2, 0.2))  # a trouser item, designed as a bag (--category bag)
    v = torch.cat([_bar(False, (0.1, 0.2, 0.9)), _bar(True, (0.9, 0.1, 0.1))])
    settings = CheckSettings(min_silhouette_iou=0.0, min_distance=0.0)
    c = check_variants(TinyGenerator(), v, item, torch.zeros(2, 16), [1.0, 2.0], None,
                       item01=item, settings=settings, category_reference=ref,
                       expected_category="bag")
    cat = c["category"]
    assert cat["of"] == "class asked for" and cat["reference"] == "bag"
    assert cat["values"] == ["bag", "trouser"] and cat["passed"] == [True, False]
    assert cat["shares"][0] == 1.0 and cat["shares"][1] == 0.0
    assert c["reasons"][1] == ["category changed (shape votes 'trouser', the class asked for "
                               "is 'bag')"]
    assert c["recommended"] == 0
    # a class the catalogue does not know: the check is not run, and says why
    other = check_variants(TinyGenerator(), v, item, torch.zeros(2, 16), [1.0, 2.0], None,
                           item01=item, settings=settings, category_reference=ref,
                           expected_category="hat")
    assert other["category"]["passed"] is None
    assert other["category"]["note"] == ("not run: the class asked for, 'hat', is not one of "
                                         "the catalogue's categories (trouser, bag)")


def test_a_base_that_is_not_the_item_is_reported_in_the_record_summary_and_report():
    """checks.base: the base image G(z*) (where every variant starts) judged against the item
    with the identity and category checks' own measures; a base that became another product
    is a WARNING in the summary and a callout in the report."""
    from gis.record import Checks
    from gis.report.summary import base_warning

    ref, _ = _bar_catalogue()
    item = _bar(True, (0.2, 0.2, 0.2))  # a trouser
    v = torch.cat([_bar(True, (0.1, 0.2, 0.9)), _bar(True, (0.9, 0.6, 0.1))])
    kw = dict(item01=item, category_reference=ref,
              settings=CheckSettings(min_silhouette_iou=0.6, min_distance=0.0))
    same = check_variants(TinyGenerator(), v, item, torch.zeros(2, 16), [1.0, 2.0], None, **kw)
    assert same["base"] == {"silhouette_iou": pytest.approx(1.0), "category": "trouser",
                            "faithful": True, "reasons": []}
    assert base_warning(same["base"]) == ""
    bag = _bar(False, (0.2, 0.2, 0.2))  # the inversion turned the trouser into a bag
    off = check_variants(TinyGenerator(), v, bag, torch.zeros(2, 16), [1.0, 2.0], None, **kw)
    b = off["base"]
    assert b["category"] == "bag" and not b["faithful"] and b["silhouette_iou"] < 0.6
    assert b["reasons"] == [f"its silhouette IoU with the item is {b['silhouette_iou']:.2f} "
                            "< 0.60", "its shape votes 'bag', the item's 'trouser'"]
    assert Checks(**off).base == b  # the record keeps it
    # the variants' own checks are unchanged: they are judged against the item
    assert off["passed"] == same["passed"] == [True, True]
    result = SimpleNamespace(optimised="mean", images=v,
                             scores={"mean": {"base": [0.0], "variants": [1.0, 2.0]}},
                             gains=lambda: [1.0, 2.0])
    run = SimpleNamespace(result=result, item_scores={"mean": 0.5}, distances={}, checks=off)
    line = shift_summary(run, n_users=3).split("\n")[2]
    assert line.startswith("  WARNING: the base G(z), the generator's closest image to the "
                           "item and where every variant starts, is not the item (its "
                           "silhouette IoU with the item is")
    assert "this generator cannot reproduce the item well" in line
    # without an item there is nothing to compare the base with
    none = check_variants(TinyGenerator(), v, bag, torch.zeros(2, 16), [1.0, 2.0], None,
                          category_reference=ref, settings=kw["settings"])
    assert none["base"] is None and base_warning(None) == ""


def test_gis_shift_runs_the_category_check_against_the_catalogue(small_shift_run):
    import json

    run, _ = small_shift_run
    doc = json.loads((run / "result.json").read_text())
    # the catalogue's embedding is timed where gis shift now does it (before the run)
    assert doc["seconds"]["catalogue"] > 0.05
    cat = doc["checks"]["category"]
    assert cat["metric"].startswith("k-NN vote (k = 5) of silhouettes among")
    assert cat["of"] == "item" and len(cat["passed"]) == len(doc["checks"]["passed"])
    for ok, why in zip(cat["passed"], doc["checks"]["reasons"], strict=True):
        assert ok == (not any(r.startswith("category changed") for r in why))


def test_check_thresholds_take_numpy_numbers_and_refuse_bools():
    CheckSettings(min_silhouette_iou=np.float32(0.5), min_distance=np.float64(0.01)).validate()
    for bad in (dict(min_silhouette_iou=True), dict(min_distance=float("nan")),
                dict(min_distance=float("inf")), dict(min_silhouette_iou=1.5)):
        with pytest.raises(GisUsageError):
            CheckSettings(**bad).validate()
