"""The method on tiny models: inversion, shifting, aggregations, settings and errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import gis
from gis.engine import invert, run_gis, shift, shift_settings
from gis.engine.invert import normalise_rows
from gis.engine.pipeline import catalogue_ranks
from gis.engine.settings import InvertSettings
from gis.engine.targets import DEFAULT_TARGET, default_target, resolve_targets
from gis.errors import (
    GisUsageError,
    NonFiniteLossError,
    PluginContractError,
    UnknownLossError,
    UnknownUserError,
)
from gis.metrics import lpips_distance


class TinyGenerator(gis.Generator):
    """A smooth, frozen random decoder: 16-d latent -> 8x8 RGB in [-1, 1]."""

    def __init__(self, d=16, r=8):
        super().__init__()
        self.latent_dim, self.resolution, self.card = d, r, {"dataset": "tiny"}
        g = torch.Generator().manual_seed(1)
        self.net = nn.Sequential(nn.Linear(d, 64), nn.Tanh(), nn.Linear(64, 3 * r * r))
        for p in self.net.parameters():
            p.data = torch.randn(p.shape, generator=g) * 0.5

    def synthesize(self, z, *, labels=None):
        return torch.tanh(self.net(z)).view(-1, 3, self.resolution, self.resolution)


class ColourRecommender(gis.Recommender):
    """phi = mean colour (K=3) at 16 px: users like some colours."""

    def __init__(self, n_users=50):
        super().__init__()
        self.image_size, self.embedding_dim = 16, 3
        self.user_ids = [f"u{i}" for i in range(n_users)]
        self.card = {"dataset": "tiny"}
        g = torch.Generator().manual_seed(2)
        self.register_buffer("theta", 10 * torch.randn(n_users, 3, generator=g))

    def embed(self, images):
        assert images.shape[-1] == 16
        return images.mean(dim=(2, 3))

    @property
    def user_vectors(self):
        return self.theta


class PixelDistance(gis.LossTerm):
    """Stands in for the inversion's LPIPS term (no weights needed): per-start pixel MSE."""

    stages = ("invert",)

    def forward(self, ctx):
        return ((ctx.images - ctx.target) ** 2).flatten(1).mean(1)


@pytest.fixture
def models():
    return TinyGenerator(), ColourRecommender()


FAST = dict(steps=60, n=4)


@pytest.mark.usefixtures("one_torch_thread")
def test_shift_raises_the_target_users_score(models):
    """One thread: the loop is chaotic at float32 resolution (docs/ENGINE.md), and with two
    threads on a 2-core AVX2 CPU one of the four variants ended below the base."""
    gen, rec = models
    z = normalise_rows(torch.randn(1, 16))
    users = torch.tensor([0, 3, 7])
    res = shift(z, users, gen, rec, lr=0.05, losses={"shift_ce": 0.1, "shift_mae": 0.1},
                **FAST)
    base = res.scores["mean"]["base"][0]
    assert min(res.scores["mean"]["variants"]) > base
    assert res.history["pref"][-1] > res.history["pref"][0]
    assert res.images.shape == (4, 3, 8, 8) and 0 <= res.images.min() <= res.images.max() <= 1
    assert res.shifts.abs().max() <= 0.4 + 1e-6  # bounded shifts
    # the latents really are normalise(z + k)
    torch.testing.assert_close(res.latents, normalise_rows(z + res.shifts))
    assert set(res.history) >= {"ce", "mae", "pref", "total"} and len(res.history["pref"]) == 60


def test_mean_aggregation_equals_mean_user_vector(models):
    gen, rec = models
    x = gen.synthesize(torch.randn(5, 16))
    phi = rec.embed(rec.prepare(x, gen.output_range))
    theta = rec.user_vectors
    from gis import ops

    full = (phi @ theta.T).mean(1)
    torch.testing.assert_close(ops.preference_score(phi, theta, agg="mean"), full)
    torch.testing.assert_close(ops.preference_score(phi, theta.mean(0, keepdim=True),
                                                    agg="mean"), full)


def test_same_seed_same_outputs(models):
    gen, rec = models
    z = normalise_rows(torch.randn(1, 16))
    a = shift(z, torch.tensor([1]), gen, rec, seed=3, **FAST)
    b = shift(z, torch.tensor([1]), gen, rec, seed=3, **FAST)
    torch.testing.assert_close(a.images, b.images, rtol=0, atol=0)
    c = shift(z, torch.tensor([1]), gen, rec, seed=4, **FAST)
    assert not torch.equal(a.images, c.images)


def test_weight_zero_switches_a_term_off(models):
    gen, rec = models
    z = normalise_rows(torch.randn(1, 16))
    res = shift(z, torch.tensor([1]), gen, rec,
                losses={"preference": 0.0, "shift_ce": 0.0, "shift_mae": 0.0}, **FAST)
    # with every term off the shifts never move from their (clamped) initial values
    p0 = torch.randn(4, 16, generator=torch.Generator().manual_seed(0)).clamp(-0.4, 0.4)
    torch.testing.assert_close(res.shifts, p0)


def test_official_code_recipe(models):
    gen, rec = models
    s = shift_settings("official-code", steps=10)
    assert (s.n, s.eps, s.losses["shift_ce"], s.normalize, s.parametrization, s.permute) == \
        (6, 0.5, 0.1, "batch", "scaled", True)
    res = shift(normalise_rows(torch.randn(1, 16)), torch.tensor([0]), gen, rec, settings=s)
    assert res.images.shape[0] == 6


@pytest.mark.parametrize("agg", ["min", "softmin", "coverage"])
def test_other_aggregations_run_and_report_all(models, agg):
    gen, rec = models
    cat_phi = torch.randn(30, 3) * 0.3
    res = shift(normalise_rows(torch.randn(1, 16)), torch.arange(20), gen, rec,
                aggregation=agg, catalogue_phi=cat_phi, temperature=0.5, top_k=5, **FAST)
    assert set(res.scores) == {"mean", "min", "softmin", "coverage"}
    assert max(res.scores[agg]["variants"]) >= res.scores[agg]["base"][0]


def test_many_target_users(models):
    gen, _ = models
    rec = ColourRecommender(n_users=100_000)
    res = shift(normalise_rows(torch.randn(1, 16)), torch.arange(100_000), gen, rec,
                aggregation="softmin", steps=5, n=2)
    assert res.user_scores == {}  # too many to keep per user
    assert len(res.scores["softmin"]["variants"]) == 2


@pytest.mark.parametrize("bad", [dict(n=1), dict(eps=0.0), dict(eps=-1.0), dict(steps=0),
                                 dict(aggregation="max"), dict(lr=0),
                                 dict(losses={"shift_ce": -1}),
                                 dict(losses={"shift_ce": float("nan")}),
                                 dict(losses={"nope": 1.0}), dict(loss_options={"lpips": 1})])
def test_impossible_settings_are_refused(bad):
    with pytest.raises(GisUsageError):
        shift_settings(**bad)


class Brightness(gis.LossTerm):
    """A third party's term: the mean pixel value of each image, to raise."""

    maximise = True

    def __init__(self, scale: float = 1.0):
        super().__init__()
        self.scale = scale

    def forward(self, ctx):
        return self.scale * ctx.images.mean((1, 2, 3))


class WrongShape(gis.LossTerm):
    def forward(self, ctx):
        return ctx.images.mean(1)  # (B, R, R): neither a scalar nor one value per sample


class TermsPlugin:
    @gis.hookimpl
    def register_losses(self, register):
        register("brightness-test", lambda **kw: Brightness(**kw))
        register("wrong-shape-test", lambda **kw: WrongShape())
        register("not-a-term-test", lambda **kw: nn.L1Loss())
        register("pref-again-test", lambda **kw: type("P", (Brightness,), {"key": "pref"})())


@pytest.fixture
def terms_plugin():
    name = gis.register_plugin(TermsPlugin(), name="terms-under-test")
    yield
    gis.unregister_plugin(name)


def test_a_registered_term_joins_the_objective_by_name_and_weight(models, terms_plugin):
    gen, rec = models
    z = normalise_rows(torch.randn(1, 16))
    FEW = dict(steps=8, n=2)  # noqa: N806
    plain = shift(z, torch.tensor([1]), gen, rec, **FEW)
    bright = shift(z, torch.tensor([1]), gen, rec, losses={"brightness-test": 20.0}, **FEW)
    assert list(bright.history) == ["ce", "mae", "pref", "brightness-test", "total"]
    assert bright.settings.losses == {"shift_ce": 1.0, "shift_mae": 1.0, "preference": 1.0,
                                      "brightness-test": 20.0}
    # (beside the paper's terms, 8 Adam steps on these shifts, most of them at the eps bound,
    # move the images by float noise only, so "bright differs from plain" proved nothing; the
    # term's pull is checked alone, and its part of the total below)
    alone = shift(z, torch.tensor([1]), gen, rec, lr=0.05, losses={
        "brightness-test": 1.0, "preference": 0, "shift_ce": 0, "shift_mae": 0}, **FEW)
    assert list(alone.history) == ["brightness-test", "total"]
    assert alone.history["brightness-test"][-1] > alone.history["brightness-test"][0]  # raised
    # the total is the weighted sum: CE + MAE - pref - 20 brightness
    h = bright.history
    assert h["total"][3] == pytest.approx(h["ce"][3] + h["mae"][3] - h["pref"][3]
                                          - 20 * h["brightness-test"][3], rel=1e-5)
    # weight 0 switches it off: the paper's run, bit for bit
    off = shift(z, torch.tensor([1]), gen, rec, losses={"brightness-test": 0.0}, **FEW)
    assert torch.equal(off.images, plain.images) and "brightness-test" not in off.history
    # options reach the factory
    opts = shift(z, torch.tensor([1]), gen, rec, losses={"brightness-test": 20.0},
                 loss_options={"brightness-test": {"scale": 0.0}}, **FEW)
    assert set(opts.history["brightness-test"]) == {0.0}
    # and the same term in the inversion
    item = gen.synthesize(normalise_rows(torch.randn(1, 16))).detach()
    inv = invert(item, gen, losses={"lpips": 0.0, "brightness-test": 0.1}, steps=5, restarts=1)
    assert set(inv.history) == {"mse", "brightness-test", "total"}
    assert set(inv.losses) == {"mse", "brightness-test"} and inv.lpips is None


def test_broken_terms_are_named(models, terms_plugin):
    gen, rec = models
    z = normalise_rows(torch.randn(1, 16))
    with pytest.raises(PluginContractError, match="'wrong-shape-test'.*returned \\(4, 8, 8\\)"):
        shift(z, torch.tensor([1]), gen, rec, losses={"wrong-shape-test": 1.0}, **FAST)
    with pytest.raises(PluginContractError, match="'not-a-term-test'.*not a gis"):
        shift(z, torch.tensor([1]), gen, rec, losses={"not-a-term-test": 1.0}, **FAST)
    with pytest.raises(GisUsageError, match="both record as 'pref'"):
        shift(z, torch.tensor([1]), gen, rec, losses={"pref-again-test": 1.0}, **FAST)
    with pytest.raises(UnknownLossError, match="unknown loss 'nope'; available: .*identity"):
        shift(z, torch.tensor([1]), gen, rec, losses={"nope": 1.0}, **FAST)
    # a misspelt name is refused at weight 0 too (it used to be dropped silently, leaving
    # the term it meant to switch off on)
    with pytest.raises(UnknownLossError, match="unknown loss 'ce'; available: .*shift_ce"):
        shift(z, torch.tensor([1]), gen, rec, losses={"ce": 0}, **FAST)


def test_engine_leaves_the_global_rng_alone(models):
    """Seeding happens in the caller: shift() and invert() draw from their own generators."""
    gen, rec = models
    z = normalise_rows(torch.randn(1, 16))
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = shift(z, torch.tensor([1]), gen, rec, steps=3, n=2)
    invert(gen.synthesize(z).detach(), gen, steps=2, restarts=1, losses={"lpips": 0.0})
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(999)  # another global seed changes nothing
    b = shift(z, torch.tensor([1]), gen, rec, steps=3, n=2)
    assert torch.equal(a.images, b.images)


@pytest.mark.parametrize("call, message", [
    (lambda g, r: shift(torch.zeros(2, 16), torch.tensor([0]), g, r, **FAST), "latent"),
    (lambda g, r: shift(torch.zeros(1, 16), torch.tensor([0.0]), g, r, **FAST), "users"),
    (lambda g, r: shift(torch.zeros(1, 16), torch.tensor([], dtype=torch.long), g, r, **FAST),
     "users"),
    (lambda g, r: shift(torch.zeros(1, 16), torch.tensor([50]), g, r, **FAST), "0..49"),
    (lambda g, r: invert(torch.zeros(3, 8, 8), g, steps=1), "item"),
    (lambda g, r: invert(torch.zeros(1, 3, 8, 8), g, steps=1, losses={"lpips": 0, "mse": 0}),
     "weight > 0"),
])
def test_bad_engine_input_is_a_usage_error(models, call, message):
    gen, rec = models
    with pytest.raises(GisUsageError, match=message):
        call(gen, rec)


def test_non_finite_loss_names_the_term(models):
    gen, rec = models
    rec.theta[0, 0] = float("nan")
    with pytest.raises(NonFiniteLossError,
                       match=r"the preference term \(plugin 'losses'\) became non-finite"):
        shift(normalise_rows(torch.randn(1, 16)), torch.tensor([0]), gen, rec, **FAST)


def test_inversion_recovers_a_generated_item(models):
    gen, _ = models
    z_true = normalise_rows(torch.randn(1, 16, generator=torch.Generator().manual_seed(5)))
    with torch.no_grad():
        item = gen.synthesize(z_true)
    res = invert(item, gen, terms={"lpips": PixelDistance()}, steps=150, restarts=2, lr=0.05)
    assert res.history["total"][-1] < 0.5 * res.history["total"][0]
    assert res.mse < 0.05
    assert torch.allclose(res.latent.mean(), torch.tensor(0.0), atol=1e-5)
    assert torch.allclose(res.latent.std(), torch.tensor(1.0), atol=1e-5)


def test_run_gis_pipeline_and_ranks(models):
    gen, rec = models
    catalogue = torch.rand(40, 3, 16, 16) * 2 - 1
    item = torch.rand(1, 3, 20, 20) * 2 - 1
    run = run_gis(generator=gen, recommender=rec, users=torch.tensor([0, 1]), item=item,
                  invert_settings=InvertSettings(steps=5, restarts=1, losses={"mse": 1.0}),
                  shift_settings=shift_settings(n=3, steps=5), catalogue=catalogue)
    assert set(run.ranks) == {"item", "base", "variants"}
    assert run.ranks["variants"].shape == (3, 2)
    assert run.bridge["resize"].startswith("bilinear") and set(run.item_scores) >= {"mean"}
    # closeness and distinctness of the variants (16 px images, upsampled for AlexNet)
    assert len(run.distances["to_base"]) == len(run.distances["to_item"]) == 3
    assert run.distances["to_base"] == pytest.approx(lpips_distance(
        run.result.images, run.result.base_image, value_range=(0.0, 1.0)).tolist(), rel=1e-5)
    quiet = run_gis(generator=gen, recommender=rec, users=torch.tensor([0, 1]), item=item,
                    invert_settings=InvertSettings(steps=5, restarts=1, losses={"mse": 1.0}),
                    shift_settings=shift_settings(n=3, steps=5), distance_net=None)
    assert quiet.distances == {} and "distances" not in quiet.seconds


def test_catalogue_ranks_by_hand():
    theta = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    cat = torch.tensor([[3.0, 0.0], [2.0, 5.0], [0.0, 1.0]])
    img = torch.tensor([[2.5, 2.0]])
    ranks = catalogue_ranks(img, theta, cat, tile=1)
    assert ranks.tolist() == [[2, 2]]  # user 0: only 3.0 beats 2.5; user 1: only 5.0 beats 2


def test_targets(models):
    _, rec = models
    assert resolve_targets(rec, users=["u3", "u1", "u3"]).tolist() == [3, 1]
    a = resolve_targets(rec, n_users=10, seed=1)
    assert len(a) == 10 and a.tolist() == resolve_targets(rec, n_users=10, seed=1).tolist()
    with pytest.raises(UnknownUserError, match="'nobody'"):
        resolve_targets(rec, users=["nobody"])
    with pytest.raises(GisUsageError, match="empty"):
        resolve_targets(rec, users=[" "])
    # no choice: the default target, every user of the recommender, in row order
    assert resolve_targets(rec).tolist() == list(range(rec.num_users))
    assert default_target() == DEFAULT_TARGET == "all users of the recommender"
    assert default_target(n_users=3) is None and default_target(users=["u1"]) is None
    with pytest.raises(GisUsageError, match="only one of"):
        resolve_targets(rec, users=["u1"], n_users=3)
    with pytest.raises(GisUsageError, match="exceeds"):
        resolve_targets(rec, n_users=51)


_PURE_CALL = """
import pickle, sys, torch
import gis
from gis.data import load_dataset
from gis.engine import InvertSettings, run_gis, shift_settings

torch.set_num_threads(1)
gen, rec = gis.get_generator("progan"), gis.get_recommender("dvbpr")
item = load_dataset("fashion-colors").image_tensor([7])
run = run_gis(generator=gen, recommender=rec, users=rec.user_index(["u0001", "u0042"]),
              item=item, invert_settings=InvertSettings(steps=3, restarts=1),
              shift_settings=shift_settings(steps=4, n=3))
sys.stdout.buffer.write(pickle.dumps(run))
"""


def test_run_gis_is_a_pure_function_that_maps_across_processes():
    """What a Ray task does: the same call in a fresh interpreter (models loaded there by name,
    the GisRun pickled back) gives the same variants, scores and distances as in-process."""
    import pickle
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", _PURE_CALL], capture_output=True, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    remote = pickle.loads(proc.stdout)
    threads = torch.get_num_threads()
    try:
        namespace: dict = {}
        exec(_PURE_CALL.replace("sys.stdout.buffer.write(pickle.dumps(run))", ""), namespace)
    finally:
        torch.set_num_threads(threads)
    local = namespace["run"]
    for name in ("base_latent", "shifts", "latents", "images", "base_image"):
        assert torch.equal(getattr(remote.result, name), getattr(local.result, name)), name
    assert remote.result.scores == local.result.scores
    assert remote.item_scores == local.item_scores and remote.distances == local.distances
    # what computed it is read where it ran (a Ray worker records its own threads and ops)
    assert remote.provenance["provenance"].threads.intra_op == 1
    assert remote.provenance == local.provenance
    for key in local.ranks:
        assert torch.equal(remote.ranks[key], local.ranks[key]), key


def test_inversion_starts_from_the_candidates_closest_to_the_item(models):
    from gis.engine.invert import _closest_starts
    from gis.engine.objective import Objective
    from gis.engine.settings import invert_settings

    gen, _ = models
    with torch.no_grad():
        item = gen.synthesize(normalise_rows(torch.randn(1, 16,
                                                         generator=torch.Generator().manual_seed(7))))
    s = invert_settings(losses={"lpips": 0}, init_samples=64, restarts=3)
    obj = Objective.build("invert", s.losses, s.loss_options, device=gen.device, generator=gen)
    z = _closest_starts(gen, obj, s, item, None, torch.Generator().manual_seed(0), 3, chunk=10)
    # by hand: the same 64 seeded candidates, ranked by their pixel MSE to the item
    cand = normalise_rows(torch.randn(64, 16, generator=torch.Generator().manual_seed(0)))
    with torch.no_grad():
        mse = ((gen.synthesize(cand) - item) ** 2).flatten(1).mean(1)
    torch.testing.assert_close(z, cand[mse.argsort()[:3]])
    # a run from those starts ends closer than one from plain random starts, same steps
    fast = dict(losses={"lpips": 0}, steps=20, restarts=2, lr=0.05)
    near = invert(item, gen, init_samples=256, **fast)
    far = invert(item, gen, **fast)
    assert near.mse < far.mse
    assert near.settings.init_samples == 256


@pytest.mark.parametrize("bad,message", [
    (dict(init_samples=-1), "init samples must be an integer >= 0"),
    (dict(init_samples=1, restarts=2), r"init samples \(1\) must be at least the restarts"),
    (dict(init_samples=True), "init samples must be an integer >= 0, got True"),
    (dict(init_samples=64.0), "init samples must be an integer >= 0, got 64.0"),
    (dict(restarts=True), r"inversion restarts must be a positive integer \(got True\)"),
    (dict(steps=2.5), r"inversion steps must be a positive integer \(got 2.5\)"),
    (dict(steps="5"), r"inversion steps must be a positive integer \(got '5'\)"),
    (dict(seed=1.5), r"the inversion seed must be an integer \(got 1.5\)"),
])
def test_impossible_inversion_starts_are_refused(bad, message):
    from gis.engine.settings import invert_settings

    with pytest.raises(GisUsageError, match=message):
        invert_settings(**bad)


def test_numpy_integers_are_integers_and_bools_are_not():
    import numpy as np

    from gis.engine.settings import invert_settings, shift_settings

    s = invert_settings(steps=np.int64(5), restarts=np.int32(2), init_samples=np.int64(4),
                        seed=np.int64(3))
    s.validate()
    t = shift_settings(steps=np.int64(5), n=np.int64(3), top_k=np.int16(4), seed=np.int64(1))
    t.validate()
    for bad, message in ((dict(n=2.5), r"n must be an integer from 2 \(distinct variants "
                                       r"need two\) to 64 \(memory grows with n squared\), "
                                       r"got 2.5"),
                         (dict(n=True), r"n must be an integer from 2"),
                         (dict(n=65), r"to 64 .*got 65"),
                         (dict(eps=float("inf")), r"eps must be a finite number > 0"),
                         (dict(lr=float("nan")), r"shifting lr must be a finite number > 0"),
                         (dict(seed=True), r"the shifting seed must be an integer \(got True\)"),
                         (dict(top_k=np.bool_(True)), "top_k must be a positive integer")):
        with pytest.raises(GisUsageError, match=message):
            shift_settings(**bad).validate()


def test_shifting_terms_see_the_real_item_as_target(models):
    gen, rec = models

    class Seen(gis.LossTerm):
        stages = ("shift",)
        key = "silhouette"
        targets: list = []

        def forward(self, ctx):
            self.targets.append(ctx.target)
            return ctx.images.mean() * 0

    item = torch.rand(1, 3, 8, 8) * 2 - 1
    seen = Seen()
    run = run_gis(generator=gen, recommender=rec, users=torch.tensor([0]), item=item,
                  invert_settings=InvertSettings(steps=2, restarts=1, losses={"mse": 1.0}),
                  shift_settings=shift_settings(n=2, steps=2, losses={"silhouette": 1.0}),
                  terms={"silhouette": seen}, distance_net=None)
    assert len(seen.targets) >= 2
    # the item at the generator's resolution, in its output range ([-1, 1] for TinyGenerator)
    assert gen.output_range == (-1.0, 1.0)
    torch.testing.assert_close(seen.targets[0], run.inversion.target * 2 - 1)
    seen.targets.clear()
    run_gis(generator=gen, recommender=rec, users=torch.tensor([0]), item=None,
            shift_settings=shift_settings(n=2, steps=2, losses={"silhouette": 1.0}),
            terms={"silhouette": seen}, distance_net=None)
    assert seen.targets and all(t is None for t in seen.targets)  # random-latent mode
