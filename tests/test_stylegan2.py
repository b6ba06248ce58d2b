"""The stylegan2 generator plugin: networks, latent spaces, training, CLI (tiny models)."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from gis_stylegan2 import generator as sg_generator
from gis_stylegan2.generator import StyleGAN2, load_stylegan2
from gis_stylegan2.model import (
    ModulatedConv2d,
    StyleGAN2Config,
    StyleGAN2Discriminator,
    StyleGAN2Generator,
    fir_kernel,
)
from gis_stylegan2.train import path_length, r1_penalty, train_step

from gis.errors import GisUsageError

TINY = dict(resolution=16, w_dim=16, n_mlp=2, channels=[8, 8, 8])


def tiny_model(seed: int = 0, resolution: int = 16) -> StyleGAN2:
    torch.manual_seed(seed)
    cfg = StyleGAN2Config(**{**TINY, "resolution": resolution,
                             "channels": [8] * (int(math.log2(resolution)) - 1)})
    g = StyleGAN2(cfg, card={"name": "stylegan2"})
    with torch.no_grad():  # non-zero noise strengths and biases: every path is exercised
        for m in g.net.modules():
            if hasattr(m, "noise_strength"):
                m.noise_strength.fill_(0.3)
    g.net.estimate_w_stats(n=2000)
    return g.eval().requires_grad_(False)


def test_shapes_and_counts():
    g = tiny_model()
    assert (g.latent_dim, g.resolution, g.num_ws) == (16, 16, 6)
    assert g.latent_spaces == ("z", "w", "wplus")
    z = g.sample_latents(4, generator=torch.Generator().manual_seed(0))
    x = g.synthesize(z)
    assert x.shape == (4, 3, 16, 16) and x.min() >= -1 and x.max() <= 1
    assert StyleGAN2Discriminator(g.config)(x).shape == (4,)
    with pytest.raises(GisUsageError, match=r"expects latents of shape \(n, 16\)"):
        g.synthesize(torch.zeros(2, 5))
    # noise buffers: one per styled conv, at its resolution
    sizes = [getattr(g.net.synthesis, f"noise_{i}").shape[-1] for i in range(5)]
    assert sizes == [4, 8, 8, 16, 16]


def test_synthesis_is_deterministic_and_noise_matters():
    g = tiny_model()
    z = torch.randn(3, 16, generator=torch.Generator().manual_seed(1))
    assert torch.equal(g.synthesize(z), g.synthesize(z))
    assert torch.equal(g.synthesize(z), tiny_model().synthesize(z))  # same seed, same model
    ws = g.net.broadcast(g.net.mapping(z))
    rng = torch.Generator().manual_seed(0)
    a = g.net.synthesis(ws, noise_mode="random", rng=rng)
    b = g.net.synthesis(ws, noise_mode="const")
    assert (a - b).abs().max() > 1e-3  # training noise is random, synthesis noise fixed


def test_modulated_conv_equals_hand_computation():
    torch.manual_seed(0)
    conv = ModulatedConv2d(5, 4, 3, 7)
    with torch.no_grad():
        conv.modulation.bias.normal_()
    x, w = torch.randn(2, 5, 6, 6), torch.randn(2, 7)
    out = conv(x, w)
    for b in range(2):
        s = w[b] @ (conv.modulation.weight / math.sqrt(7)).T + conv.modulation.bias  # (in,)
        wp = conv.weight / math.sqrt(5 * 9) * s[None, :, None, None]  # W'_oik
        d = 1 / torch.sqrt((wp ** 2).sum(dim=(1, 2, 3)) + 1e-8)  # (out,)
        ref = F.conv2d(x[b:b + 1], wp * d[:, None, None, None], padding=1)
        torch.testing.assert_close(out[b:b + 1], ref, atol=1e-5, rtol=1e-5)
    # demodulation: unit-variance input gives about unit-variance output per channel
    y = conv(torch.randn(64, 5, 16, 16), torch.randn(64, 7)).detach()
    assert 0.7 < float(y.std()) < 1.3
    # not demodulated (toRGB)
    rgb = ModulatedConv2d(5, 3, 1, 7, demodulate=False)
    s = rgb.modulation(w)
    ref = F.conv2d(x * s[:, :, None, None], rgb.weight / math.sqrt(5))
    torch.testing.assert_close(rgb(x, w), ref, atol=1e-5, rtol=1e-5)


def test_upsampling_modulated_conv_equals_zero_insertion_and_fir():
    """Transposed conv (stride 2) + blur = zero insertion (4 -> 7), 3x3 conv with the
    flipped kernel and pad 2 (-> 9), then the 4x4 FIR kernel x4 with pad 1 (-> 8): the
    published upsampling conv, computed another way."""
    torch.manual_seed(1)
    conv = ModulatedConv2d(3, 2, 3, 4, upsample=True, demodulate=False)
    x, w = torch.randn(1, 3, 4, 4), torch.randn(1, 4)
    s = conv.modulation(w).detach()
    up = torch.zeros(1, 3, 7, 7)
    up[:, :, ::2, ::2] = x * s[:, :, None, None]
    y = F.conv2d(F.pad(up, [2, 2, 2, 2]), (conv.weight.detach() / math.sqrt(27)).flip([2, 3]))
    k = fir_kernel(gain=4.0)[None, None].repeat(2, 1, 1, 1)
    ref = F.conv2d(F.pad(y, [1, 1, 1, 1]), k, groups=2)
    assert ref.shape == conv(x, w).shape == (1, 2, 8, 8)
    torch.testing.assert_close(conv(x, w).detach(), ref, atol=1e-5, rtol=1e-5)


def test_latent_space_views_round_trip():
    g = tiny_model()
    z = torch.randn(4, 16, generator=torch.Generator().manual_seed(2))
    img = g.synthesize(z)
    w = g.net.mapping(z)
    gw, gp = g.in_latent_space("w"), g.in_latent_space("wplus")
    assert g.in_latent_space("z") is g and g.in_latent_space(None) is g
    assert (gw.latent_dim, gp.latent_dim) == (16, 6 * 16)
    assert gp.card["latent_space"] == "wplus" and gw.latent_spaces == ("w",)
    assert g.in_latent_space("w+").space == "wplus" and gw.in_latent_space("w") is gw
    torch.testing.assert_close(gw.synthesize(gw.encode_w(w)), img, atol=1e-5, rtol=1e-5)
    xp = gp.encode_w(w)
    assert xp.shape == (4, 96)
    torch.testing.assert_close(gp.synthesize(xp), img, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gp.to_ws(xp), g.net.broadcast(w), atol=1e-5, rtol=1e-5)
    # whitened: samples have about mean 0 / std 1 per dimension, and W+ layers differ freely
    s = gw.sample_latents(2000, generator=torch.Generator().manual_seed(3))
    assert s.mean(0).abs().max() < 0.15 and (s.std(0) - 1).abs().max() < 0.15
    mixed = xp.clone().view(4, 6, 16)
    mixed[:, 3:] = gw.encode_w(g.net.mapping(torch.randn(4, 16)))[:, None]
    assert (gp.synthesize(mixed.view(4, -1)) - img).abs().max() > 1e-3
    # differentiable in the view's latents
    x = gp.sample_latents(2).requires_grad_(True)
    gp.synthesize(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert gw.realism_kinds == () and g.realism_kinds == ("latent-prior",)


def test_bad_latent_space_is_a_one_line_error():
    g = tiny_model()
    with pytest.raises(GisUsageError) as e:
        g.in_latent_space("s")
    assert "z, w, wplus" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(GisUsageError, match="expects latents of shape"):
        g.in_latent_space("wplus").synthesize(torch.zeros(1, 16))

    from gis.interfaces import Generator

    class Plain(Generator):
        latent_dim, resolution = 4, 8

    p = Plain()
    assert p.in_latent_space("z") is p and p.in_latent_space(None) is p
    with pytest.raises(GisUsageError, match=r"offers the latent spaces z; got 'w'"):
        p.in_latent_space("w")


def test_save_and_load_gis_format(tmp_path):
    g = tiny_model()
    path = g.save(tmp_path / "g.safetensors", card={"fid": None})
    h = load_stylegan2(path)
    z = torch.randn(2, 16, generator=torch.Generator().manual_seed(4))
    assert (h.synthesize(z) - g.synthesize(z)).abs().max() < 2e-2  # float16 weights
    torch.testing.assert_close(h.net.w_mean, g.net.w_mean)  # statistics kept in float32
    torch.testing.assert_close(h.net.synthesis.noise_3, g.net.synthesis.noise_3)
    assert json.loads(path.with_suffix(".json").read_text())["name"] == "stylegan2"


def test_training_steps_finite_with_regularisers():
    torch.manual_seed(0)
    cfg = StyleGAN2Config(**TINY)
    G, D = StyleGAN2Generator(cfg), StyleGAN2Discriminator(cfg)
    before = [p.clone() for p in G.parameters()]
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-3, betas=(0.0, 0.99))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-3, betas=(0.0, 0.99))
    hyper = dict(r1_gamma=1.0, r1_every=2, pl_weight=2.0, pl_every=2, pl_batch_shrink=2,
                 mixing_prob=0.9)
    real = torch.rand(8, 3, 16, 16) * 2 - 1
    rng = torch.Generator().manual_seed(0)
    st = {"pl_mean": 0.0}
    for step in range(4):
        st["step"] = step
        out = train_step(G, D, opt_g, opt_d, real, st, hyper, rng)
        assert all(torch.isfinite(v) for v in out.values())
        assert 0 < float(out["loss_d"]) < 5 and 0 < float(out["loss_g"]) < 5
    assert st["r1"] > 0 and st["pl"] >= 0 and st["pl_mean"] > 0
    assert any((a - b).abs().max() > 0 for a, b in zip(before, G.parameters(), strict=True))
    # the penalties by themselves: R1 = E||grad D||^2, path lengths (B,) positive
    r1, _ = r1_penalty(D, real)
    assert r1 > 0 and r1.requires_grad
    lengths = path_length(G, G.broadcast(G.mapping(torch.randn(4, 16))), rng)
    assert lengths.shape == (4,) and (lengths > 0).all()


def test_gis_train_writes_a_loadable_generator_and_resumes_exactly(tmp_path):
    from gis_stylegan2.train import train_stylegan2

    from gis.data import load_dataset

    ds = load_dataset("fashion-colors")
    opts = dict(batch_size=4, w_dim=16, n_mlp=2, channels=(8, 8, 8, 8), r1_every=2,
                pl_every=2, threads=1, progress=False, seed=3)
    full = train_stylegan2(ds, out=tmp_path / "a", max_steps=4, **opts)
    train_stylegan2(ds, out=tmp_path / "b", max_steps=2, **opts)
    with pytest.raises(GisUsageError, match="resume"):
        train_stylegan2(ds, out=tmp_path / "b", max_steps=4, **opts)
    part = train_stylegan2(ds, out=tmp_path / "b", max_steps=4, resume=True, **opts)
    a, b = load_stylegan2(full), load_stylegan2(part)
    for (k, va), vb in zip(a.net.state_dict().items(), b.net.state_dict().values(), strict=True):
        assert torch.equal(va, vb), k
    card = json.loads(full.with_suffix(".json").read_text())
    assert card["training"]["steps"] == 4 and card["resolution"] == 32
    assert load_stylegan2(tmp_path / "a").resolution == 32  # a run folder loads too
    ck = load_stylegan2(tmp_path / "a" / "checkpoint.safetensors")
    assert ck.latent_dim == 16
    torch.testing.assert_close(ck.net.w_mean, a.net.w_mean, atol=2e-3, rtol=2e-2)  # estimated


@pytest.fixture
def fc_model(tmp_path, monkeypatch):
    """A tiny 32 px stylegan2 in place of the shipped weights."""
    path = tiny_model(resolution=32).save(tmp_path / "w" / "fashion-colors.safetensors")
    monkeypatch.setattr(sg_generator, "DEFAULT_WEIGHTS", path)
    return path


def test_plugins_check_stylegan2(fc_model):
    from gis.cli import cli

    out = CliRunner().invoke(cli, ["plugins", "check", "stylegan2"])
    assert out.exit_code == 0, out.output
    assert out.output.splitlines()[-1].endswith("all passed")
    out = CliRunner().invoke(cli, ["plugins", "check", "stylegan2", "-o", "colour=1"])
    assert out.exit_code == 2 and "unknown options ['colour']" in out.output  # the user's error


def test_shift_in_wplus_end_to_end(fc_model, tmp_path):
    from gis.cli import cli

    few = ["--steps", "2", "--invert-steps", "2", "--n", "2", "--quiet", "--users", "u0001",
           "--recipe", "paper"]
    out = CliRunner().invoke(cli, ["shift", "--generator", "stylegan2", "--latent-space",
                                   "wplus", "--out", str(tmp_path / "s"), *few])
    assert out.exit_code == 0, out.output
    doc = json.loads((tmp_path / "s" / "result.json").read_text())
    assert doc["generator"]["name"] == "stylegan2"
    assert doc["generator"]["latent_space"] == "wplus"
    from safetensors.torch import load_file

    lat = load_file(str(tmp_path / "s" / "latents.safetensors"))
    assert lat["variants"].shape == (2, 8 * 16)
    out = CliRunner().invoke(cli, ["shift", "--generator", "stylegan2", "--latent-space",
                                   "s", "--out", str(tmp_path / "t"), *few])
    assert out.exit_code != 0 and "offers the latent spaces z, w, wplus" in out.output
    assert not (tmp_path / "t").exists()
    out = CliRunner().invoke(cli, ["invert", "--generator", "stylegan2", "--latent-space", "w",
                                   "--steps", "2", "--quiet", "--out", str(tmp_path / "i")])
    assert out.exit_code == 0, out.output
    doc = json.loads((tmp_path / "i" / "result.json").read_text())
    assert doc["generator"]["latent_space"] == "w"


def test_run_gis_latent_space_and_design_refusal(fc_model, tmp_path):
    import gis
    from gis.cli import cli
    from gis.engine import shift_settings
    from gis.engine.pipeline import run_gis

    gen, rec = gis.get_generator("stylegan2"), gis.get_recommender("dvbpr")
    run = run_gis(generator=gen, recommender=rec, users=torch.tensor([0]), item=None,
                  shift_settings=shift_settings("paper", steps=1, n=2), distance_net=None,
                  latent_space="w")
    assert run.result.latents.shape == (2, 16)
    # a generator that offers only z: the space is refused in one line, nothing written
    out = CliRunner().invoke(cli, ["design", "--user", "u0001", "--category", "0",
                                   "--latent-space", "w", "--steps", "1", "--n", "2",
                                   "--quiet", "--out", str(tmp_path / "d")])
    assert out.exit_code != 0 and "offers the latent spaces z; got 'w'" in out.output
    assert not (tmp_path / "d").exists()
