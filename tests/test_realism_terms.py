"""Issue 14's seller terms: the generators' realism capability (latent prior, shipped critics),
the ``realism`` and ``silhouette`` loss terms, the closest pair of variants, the seller recipe."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from test_engine import ColourRecommender, TinyGenerator
from test_losses import _losses_registered  # noqa: F401  (autouse: the loss plugin)

from gis import ops, plugins
from gis.engine import shift, shift_settings
from gis.engine.invert import normalise_rows
from gis.engine.objective import Objective
from gis.engine.settings import PAPER_SHIFT_LOSSES, RECIPES
from gis.errors import CheckpointError, GisUsageError
from gis.interfaces import LossContext
from gis.realism import latent_norm_log_prior

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class NoPriorGenerator(TinyGenerator):
    latent_prior = None  # latents from some other prior: no realism offered


def _ctx(images, generator, **fields) -> LossContext:
    return LossContext(stage="shift", step=0, images=images,
                       latents=fields.pop("latents", torch.zeros(len(images), 4)),
                       generator=generator, settings=None, **fields)


def _unit_gen():
    return SimpleNamespace(output_range=(0.0, 1.0), realism_kinds=())


def _object(top=8, left=8, size=16, colour=(0.8, 0.1, 0.1), side=32) -> torch.Tensor:
    """A product photo (1, 3, side, side) in [0, 1]: a coloured square on a near-white ground."""
    x = torch.full((1, 3, side, side), 0.95)
    x[0, :, top:top + size, left:left + size] = torch.tensor(colour)[:, None, None]
    return x


# ---------------------------------------------------------------------------- latent prior


def test_latent_prior_is_maximal_on_the_typical_set():
    d = 512
    direction = torch.randn(6, d)
    direction = direction / direction.norm(dim=1, keepdim=True)
    radii = torch.tensor([0.5, 0.9, 1.0, 1.1, 1.5, 2.0]) * math.sqrt(d - 1)
    score = latent_norm_log_prior(direction * radii[:, None])
    assert score[2].abs() < 1e-3 and (score <= 1e-3).all()
    assert score[0] < score[1] < score[2] > score[3] > score[4] > score[5]
    # close to the mode it is -(r - sqrt(d - 1))^2 (chi log-density, second derivative -2)
    assert score[3].item() == pytest.approx(-(0.1 * math.sqrt(d - 1)) ** 2, rel=0.1)
    # the latents of gis's loops (each row to mean 0, std 1) sit on the typical set: flat there
    z, k = torch.randn(1, d), torch.rand(8, d) * 0.8 - 0.4
    assert latent_norm_log_prior(ops.clip_shift_normalize(z, k, 0.4)).abs().max() < 1e-2
    assert latent_norm_log_prior(normalise_rows(torch.randn(4, d))).abs().max() < 1e-2


def test_latent_prior_gradient_moves_latents_to_the_typical_set():
    gen = TinyGenerator()
    z = (torch.randn(4, 16) * torch.tensor([0.3, 0.7, 1.6, 3.0])[:, None]).requires_grad_(True)
    term = plugins.get_loss("realism", kind="latent-prior")
    assert term.maximise
    total, _ = Objective("shift", [_term("realism", term)])(
        _ctx(gen.synthesize(z), gen, latents=z))
    total.backward()
    with torch.no_grad():
        before = (z.norm(dim=1) - math.sqrt(15)).abs()
        after = ((z - 0.01 * z.grad).norm(dim=1) - math.sqrt(15)).abs()
    assert (after < before).all()


def _term(name, module, weight=1.0):
    from gis.engine.objective import Term

    return Term(name, module.key or name, weight, module)


# ---------------------------------------------------------------------------- realism term


def test_base_generator_offers_the_latent_prior_and_nothing_else():
    gen = TinyGenerator()
    assert gen.realism_kinds == ("latent-prior",)
    z = torch.randn(3, 16)
    torch.testing.assert_close(gen.realism(latents=z), latent_norm_log_prior(z))
    with pytest.raises(GisUsageError, match="offers no 'critic'"):
        gen.realism(images=gen.synthesize(z), kind="critic")
    assert NoPriorGenerator().realism_kinds == ()


def test_realism_term_refuses_a_generator_that_offers_nothing_in_one_line():
    gen, rec = NoPriorGenerator(), ColourRecommender()
    with pytest.raises(GisUsageError) as err:
        Objective.build("shift", {"realism": 1.0}, generator=gen, recommender=rec)
    assert "offers no realism score" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(GisUsageError, match="offers no realism score"):  # before any step
        shift(normalise_rows(torch.randn(1, 16)), torch.tensor([0]), gen, rec, steps=1, n=2,
              losses={"realism": 1.0})
    with pytest.raises(GisUsageError, match="offers no 'critic'"):
        Objective.build("shift", {"realism": 1.0}, {"realism": {"kind": "critic"}},
                        generator=TinyGenerator())
    with pytest.raises(GisUsageError, match="unknown kind"):
        plugins.get_loss("realism", kind="vibes")


def test_weight_zero_switches_the_new_terms_off():
    gen, rec = NoPriorGenerator(), ColourRecommender()  # weight 0: not even checked
    z, users = normalise_rows(torch.randn(1, 16)), torch.tensor([0, 3])
    plain = shift(z, users, gen, rec, steps=4, n=2)
    off = shift(z, users, gen, rec, steps=4, n=2, losses={"realism": 0.0, "silhouette": 0.0,
                                                          "chroma_tv": 0.0})
    torch.testing.assert_close(off.images, plain.images, rtol=0, atol=0)
    assert off.history == plain.history
    alone = dict.fromkeys(PAPER_SHIFT_LOSSES, 0.0)  # Adam's first steps follow the sign
    on = shift(z, users, TinyGenerator(), rec, steps=4, n=2,
               losses={**alone, "silhouette": 1.0})
    assert "silhouette" in on.history and not torch.equal(on.images, plain.images)
    on = shift(z, users, TinyGenerator(), rec, steps=4, n=2,
               losses={**alone, "chroma_tv": 1.0})
    assert "chroma_tv" in on.history and len(on.history["chroma_tv"]) == 4


@pytest.fixture(scope="module")
def tiny_progan_run(tmp_path_factory):
    """A tiny ProGAN trained a few steps: its run folder (generator, critic, checkpoint)."""
    from gis_progan.train import train_progan
    from test_progan_train import TRAIN, tiny_dataset

    out = tmp_path_factory.mktemp("progan-critic")
    train_progan(tiny_dataset(), out=out, seed=0, max_steps=6, **TRAIN)  # fully grown
    return out


def test_progan_critic_round_trips_through_export_and_load(tiny_progan_run):
    from gis_progan.critic import critic_path, export_critic
    from gis_progan.generator import load_progan

    from gis.training import load_checkpoint

    run = tiny_progan_run
    assert (run / "progan-critic.safetensors").is_file()
    g = load_progan(run / "progan.safetensors")
    assert g.realism_kinds == ("critic", "latent-prior") and g.critic is not None
    assert not any(p.requires_grad for p in g.critic.parameters())
    tensors, _ = load_checkpoint(run / "checkpoint.safetensors")
    trained = {k[2:]: v for k, v in tensors.items() if k.startswith("d.")}
    for k, v in g.critic.state_dict().items():  # shipped in float16
        torch.testing.assert_close(v, trained[k].half().float())
    x = g.synthesize(g.sample_latents(4, generator=torch.Generator().manual_seed(0)))
    torch.testing.assert_close(g.realism(images=x), g.critic(x))
    torch.testing.assert_close(g.realism(images=x), g.discriminate(x))
    # the training checkpoint carries its critic too; critic=False leaves it out
    assert load_progan(run / "checkpoint.safetensors").realism_kinds[0] == "critic"
    bare = load_progan(run / "progan.safetensors", critic=False)
    assert bare.critic is None and bare.realism_kinds == ("latent-prior",)
    with pytest.raises(NotImplementedError):
        bare.discriminate(x)
    # a run exported before the trainer wrote the critic gets it from its checkpoint
    first = critic_path(run / "progan.safetensors").read_bytes()
    critic_path(run / "progan.safetensors").unlink()
    assert load_progan(run).realism_kinds == ("latent-prior",)
    assert export_critic(run).read_bytes() == first


def test_progan_critic_of_another_config_is_refused(tiny_progan_run, tmp_path):
    import shutil

    from gis_progan.critic import save_critic
    from gis_progan.generator import load_progan
    from gis_progan.model import ProGANConfig, ProGANDiscriminator

    shutil.copy(tiny_progan_run / "progan.safetensors", tmp_path / "g.safetensors")
    other = ProGANConfig(latent_dim=16, resolution=8, channels=[8, 8])
    save_critic(tmp_path / "g-critic.safetensors", ProGANDiscriminator(other))
    with pytest.raises(CheckpointError, match="another config"):
        load_progan(tmp_path / "g.safetensors")


def test_realism_term_gradient_raises_the_critic_score(tiny_progan_run):
    from gis_progan.generator import load_progan

    g = load_progan(tiny_progan_run)
    x = g.synthesize(g.sample_latents(8, generator=torch.Generator().manual_seed(1)))
    x = x.detach().requires_grad_(True)
    term = plugins.get_loss("realism")  # the first kind offered: the critic
    total, values = Objective("shift", [_term("realism", term)])(_ctx(x, g))
    total.backward()
    with torch.no_grad():
        stepped = g.realism(images=x - 1e-3 * x.grad / x.grad.norm())
    assert stepped.mean() > values["realism"]


def test_shipped_progan_offers_its_critic_only_when_asked():
    from gis_progan.critic import critic_path
    from gis_progan.generator import DEFAULT_WEIGHTS

    assert critic_path(DEFAULT_WEIGHTS).is_file()
    # off by default: on the shipped generator the critic disagrees with the realism truth
    assert plugins.get_generator("progan").realism_kinds == ("latent-prior",)
    g = plugins.get_generator("progan", critic=True)
    assert g.realism_kinds == ("critic", "latent-prior")


def test_dvbpr_gan_critic_realism_is_the_lsgan_term():
    g = plugins.get_generator("dvbpr-gan")
    assert g.realism_kinds == ("critic", "latent-prior")
    z = g.sample_latents(4, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 2, 3])
    x = g.synthesize(z, labels=labels)
    r = g.realism(images=x, latents=z, labels=labels)
    torch.testing.assert_close(r, -(g.discriminate(x, labels) - 1) ** 2)
    assert (r <= 0).all()
    with pytest.raises(GisUsageError, match="class-conditional"):
        g.realism(images=x)


# ---------------------------------------------------------------------------- silhouette


def test_silhouette_is_zero_for_the_same_shape_whatever_the_colour():
    term = plugins.get_loss("silhouette")
    base = _object()
    same = torch.cat([base, _object(colour=(0.1, 0.2, 0.9)), _object(top=2, size=28),
                      _object(top=10, left=2, size=6)])
    loss = term(_ctx(same, _unit_gen(), base_image=base))
    assert loss[0] < 1e-4 and loss[1] < 0.02  # recoloured: same silhouette
    assert loss[2] > 0.3 and loss[3] > 0.6  # grown, shrunk and moved: different shapes


def test_silhouette_gradient_moves_the_shape_back():
    term = plugins.get_loss("silhouette")
    assert not term.maximise and term.stages == ("shift",)
    base = _object()
    x = _object(top=4, size=22).requires_grad_(True)  # a larger item
    total, values = Objective("shift", [_term("silhouette", term)])(
        _ctx(x, _unit_gen(), base_image=base))
    total.backward()
    with torch.no_grad():
        stepped = term(_ctx(x - 0.05 * x.grad / x.grad.abs().max(), _unit_gen(),
                            base_image=base))
    assert stepped.item() < values["silhouette"].item()
    with pytest.raises(GisUsageError, match="threshold"):
        plugins.get_loss("silhouette", threshold=2.0)


def _speckled(x: torch.Tensor, amount: float = 0.25, seed: int = 0) -> torch.Tensor:
    """``x`` with independent colour noise on every pixel of the object (not the ground)."""
    g = torch.Generator().manual_seed(seed)
    noise = (torch.rand(x.shape, generator=g) * 2 - 1) * amount
    inside = (x - 0.95).abs().amax(1, keepdim=True) > 0.05
    return (x + noise * inside).clamp(0, 1)


def test_chroma_tv_is_zero_unless_a_variant_adds_colour_speckle():
    from gis.metrics.chroma import chroma_variation

    term = plugins.get_loss("chroma_tv")
    assert not term.maximise and term.stages == ("shift",) and term.key == "chroma_tv"
    base = _object(colour=(0.6, 0.35, 0.3))  # a muted red
    variants = torch.cat([base, _object(colour=(0.9, 0.05, 0.05)),   # more saturated
                          _object(colour=(0.1, 0.3, 0.9)),            # recoloured
                          _object(top=4, size=22, colour=(0.2, 0.7, 0.2)),  # grown
                          _speckled(base), _speckled(_object(colour=(0.1, 0.3, 0.9)))])
    loss = term(_ctx(variants, _unit_gen(), base_image=base))
    assert loss.shape == (6,) and (loss >= 0).all()
    assert loss[0] == 0 and loss[1] == 0 and loss[2] == 0 and loss[3] == 0
    assert loss[4] > 0.5 and loss[5] > 0.5
    # the ratio moves less than the term's margin when one tint is made more saturated
    v = chroma_variation(torch.cat([_object(colour=(0.95 - d, 0.95 - d / 2, 0.95 - d / 4))
                                    for d in (0.4, 0.6, 0.8)]))
    assert float(v.max() - v.min()) < term.margin
    # a patterned base is not flattened: the same speckle as the base costs nothing
    assert term(_ctx(_speckled(base), _unit_gen(), base_image=_speckled(base))).item() == 0
    with pytest.raises(GisUsageError, match="option margin takes a number"):  # its signature
        plugins.get_loss("chroma_tv", margin="abc")
    for bad in (dict(eps=0), dict(eps=float("inf")), dict(margin=float("inf")),
                dict(margin=-0.1)):
        with pytest.raises(GisUsageError, match="loss 'chroma_tv': margin is a finite number"):
            plugins.get_loss("chroma_tv", **bad)


def test_chroma_tv_gradient_removes_the_speckle():
    term = plugins.get_loss("chroma_tv")
    base = _object(colour=(0.2, 0.4, 0.8))
    x = _speckled(base).requires_grad_(True)
    total, values = Objective("shift", [_term("chroma_tv", term)])(
        _ctx(x, _unit_gen(), base_image=base))
    total.backward()
    with torch.no_grad():
        stepped = x - 0.05 * x.grad / x.grad.abs().max()
        after = term(_ctx(stepped, _unit_gen(), base_image=base))
    assert after.item() < values["chroma_tv"].item()
    inside = (base - 0.95).abs().amax(1, keepdim=True) > 0.05
    assert ((stepped - base).abs() * inside).sum() < ((x - base).abs() * inside).sum()
    # the ground is left alone beyond the object's edge: no colour added to lower the ratio
    near = torch.nn.functional.max_pool2d(inside.float(), 3, stride=1, padding=1) > 0
    assert ((stepped - x).abs() * ~near).amax() == 0


def test_silhouette_reads_the_real_item_when_there_is_one():
    item = _object()  # the real item: a square
    base = _object(top=12, left=4, size=8)  # an inversion that lost its shape
    same_as_item = _object(colour=(0.1, 0.2, 0.9))
    assert plugins.get_loss("silhouette").reference == "base"  # the measured default
    term = plugins.get_loss("silhouette", reference="item")
    on_item = term(_ctx(same_as_item, _unit_gen(), base_image=base, target=item))
    assert on_item.item() < 0.02  # the item's shape, recoloured: nothing to pull back
    # without an item (random-latent mode), or by default, it keeps the base's shape instead
    no_item = term(_ctx(same_as_item, _unit_gen(), base_image=base))
    as_base = plugins.get_loss("silhouette")(
        _ctx(same_as_item, _unit_gen(), base_image=base, target=item))
    assert no_item.item() == pytest.approx(as_base.item()) and no_item.item() > 0.5
    # its gradient moves the base's shape towards the item's
    x = base.clone().requires_grad_(True)
    total, values = Objective("shift", [_term("silhouette", term)])(
        _ctx(x, _unit_gen(), base_image=base, target=item))
    total.backward()
    with torch.no_grad():
        stepped = term(_ctx(x - 0.05 * x.grad / x.grad.abs().max(), _unit_gen(),
                            base_image=base, target=item))
    assert stepped.item() < values["silhouette"].item()
    with pytest.raises(GisUsageError, match="reference is 'item' or 'base'"):
        plugins.get_loss("silhouette", reference="catalogue")


# ---------------------------------------------------------------------------- run, recipe


def test_distances_report_the_closest_pair():
    from gis.metrics.lpips_metric import variant_distances

    v = torch.rand(4, 3, 32, 32)
    v[3] = v[1]
    d = variant_distances(v, v[:1])
    assert d["min_pairwise"] == pytest.approx(min(d["nearest_variant"]), abs=1e-6)
    assert d["min_pairwise"] < 1e-4 <= d["mean_pairwise"]


def test_seller_recipe_adds_the_seller_terms_to_the_paper():
    s = shift_settings("seller")
    assert {k: s.losses[k] for k in PAPER_SHIFT_LOSSES} == PAPER_SHIFT_LOSSES
    assert all(s.losses[k] > 0 for k in ("realism", "identity", "silhouette"))
    assert (s.n, s.eps, s.normalize) == (8, 0.4, "vector")
    assert shift_settings().recipe == "paper" and set(RECIPES) >= {"paper", "official-code"}
