"""The progan generator plugin: layers, losses, checkpoint formats (training: test_progan_train).

Reference outputs for pro_gan_pytorch checkpoints come from the real client (PyPI
``pro-gan-pth==3.4``, installed with ``pip install --no-deps``); pytorch_GAN_zoo outputs from a
minimal re-implementation of its generator below (equalised layers that scale output and bias,
format layer, pixel norm, Upscale2d, alpha blending with the lower scale).
"""

from __future__ import annotations

import copy
import math
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from gis_progan import generator as progan_generator
from gis_progan.generator import ProGAN, load_progan
from gis_progan.model import (
    EqualizedConv2d,
    EqualizedProjection,
    ProGANConfig,
    ProGANDiscriminator,
    ProGANGenerator,
    default_channels,
    gradient_penalty,
    minibatch_stddev,
    pixel_norm,
    upsample2,
    wgan_gp_losses,
)
from torch import nn

from gis.errors import CheckpointError, GisUsageError, MissingAssetError, UntrustedFileError

TINY = {"latent_dim": 16, "resolution": 16, "channels": [16, 12, 8]}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ----------------------------------------------------------------------------- layers


def test_channels_follow_nf_formula():
    # pro_gan_pytorch's own defaults: nf(s) = min(512, 16384 / 2**s), block i = stage i + 1
    assert default_channels(128, 16384, 512) == [512, 512, 512, 512, 512, 256]
    assert default_channels(32) == [192, 192, 192, 128]
    assert ProGANConfig().channels == [192, 192, 192, 128]


def test_generator_shapes_and_range():
    g = ProGAN(ProGANConfig(**TINY))
    z = g.sample_latents(5)
    x = g.synthesize(z)
    assert x.shape == (5, 3, 16, 16)
    assert x.min() >= -1 and x.max() <= 1
    raw = ProGAN(ProGANConfig(**TINY), clamp=False)
    raw.load_state_dict(g.state_dict())
    torch.testing.assert_close(raw.synthesize(z).clamp(-1, 1), x)
    for stage, side in enumerate((4, 8, 16)):
        assert g.net(z, stage, 0.5).shape == (5, 3, side, side)
        assert ProGANDiscriminator(g.config)(g.net(z, stage), stage, 0.5).shape == (5,)
    with pytest.raises(GisUsageError, match=r"\(n, 16\)"):
        g.synthesize(torch.zeros(2, 7))


def test_synthesis_is_differentiable_in_z():
    g = ProGAN(ProGANConfig(**TINY), clamp=False).eval().requires_grad_(False)
    z = torch.randn(2, 16, requires_grad=True)
    g.synthesize(z).square().sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0


def test_equalized_lr_scaling():
    conv = EqualizedConv2d(4, 6, 3)
    assert conv.scale == pytest.approx(math.sqrt(2.0 / (4 * 3 * 3)))
    x = torch.randn(2, 4, 5, 5)
    ref = F.conv2d(x, conv.weight * math.sqrt(2 / 36), conv.bias, padding=1)
    torch.testing.assert_close(conv(x), ref)
    # weights are stored N(0, 1): the scale, not the init, sets the layer's gain
    big = EqualizedConv2d(64, 64, 3)
    assert big.weight.std().item() == pytest.approx(1.0, abs=0.02)
    # the 4x4 projection is a transposed conv whose fan-in is the latent size only
    proj = EqualizedProjection(10, 3)
    assert proj.scale == pytest.approx(math.sqrt(2.0 / 10))
    with torch.no_grad():
        proj.bias.normal_()
    z = torch.randn(4, 10)
    ref = F.conv_transpose2d(z[:, :, None, None], proj.weight * proj.scale) + proj.bias
    torch.testing.assert_close(proj(z), ref)
    assert EqualizedConv2d(4, 6, 3, equalized=False).scale == 1.0


def test_pixel_norm_hand_case():
    x = torch.tensor([3.0, 4.0]).view(1, 2, 1, 1)
    rms = math.sqrt((9 + 16) / 2)
    torch.testing.assert_close(pixel_norm(x).flatten(), torch.tensor([3 / rms, 4 / rms]))
    y = pixel_norm(torch.randn(3, 7, 4, 4) * 5)
    torch.testing.assert_close(y.square().mean(1), torch.ones(3, 4, 4))


def test_minibatch_stddev_hand_case():
    x = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(4, 1, 1, 1)
    y = minibatch_stddev(x, group=4)
    assert y.shape == (4, 2, 1, 1)
    torch.testing.assert_close(y[:, 0], x[:, 0])
    torch.testing.assert_close(y[:, 1].flatten(), torch.full((4,), math.sqrt(1.25)))
    # 8 samples, groups of 4: samples i, i+2, i+4, i+6 form a group
    x8 = torch.tensor([0.0, 10.0, 2.0, 10.0, 4.0, 10.0, 6.0, 10.0]).view(8, 1, 1, 1)
    s = minibatch_stddev(x8, group=4)[:, 1].flatten()
    torch.testing.assert_close(s[0::2], torch.full((4,), math.sqrt(5.0)))
    torch.testing.assert_close(s[1::2], torch.full((4,), 1e-4), atol=1e-4, rtol=0)
    # averaged over features and pixels, replicated over them
    z = minibatch_stddev(torch.randn(6, 3, 2, 2), group=4)  # 6 -> groups of 3
    assert z.shape == (6, 4, 2, 2)
    assert torch.unique(z[:, 3]).numel() == 2  # one value per group of samples


def test_gradient_penalty_hand_case():
    # a linear critic D(x) = <w, x> has gradient w everywhere: GP = (||w|| - 1)^2
    w = torch.zeros(1, 3, 2, 2)
    w[0, 0, 0, 0], w[0, 1, 1, 1] = 2.0, math.sqrt(5.0)   # ||w|| = 3
    critic = lambda x: (x * w).flatten(1).sum(1)  # noqa: E731
    real, fake = torch.randn(4, 3, 2, 2), torch.randn(4, 3, 2, 2)
    assert gradient_penalty(critic, real, fake).item() == pytest.approx(4.0)
    unit = lambda x: x[:, 0, 0, 0]  # noqa: E731  ||grad|| = 1
    assert gradient_penalty(unit, real, fake).item() == pytest.approx(0.0)
    # the penalty is differentiable w.r.t. the critic's parameters
    lin = nn.Linear(12, 1)
    gp = gradient_penalty(lambda x: lin(x.flatten(1)).view(-1), real, fake)
    gp.backward()
    assert lin.weight.grad is not None


def test_wgan_gp_loss_value():
    d_real, d_fake = torch.tensor([1.0, 3.0]), torch.tensor([0.0, 2.0])
    loss = wgan_gp_losses(d_real, d_fake, torch.tensor(0.5), gp_weight=10.0, drift=0.001)
    assert loss.item() == pytest.approx(1.0 - 2.0 + 5.0 + 0.001 * 5.0)


def test_fade_in_blends_the_two_resolutions():
    net = ProGANGenerator(ProGANConfig(**TINY))
    z = torch.randn(3, 16)
    h = net.blocks[1](net.blocks[0](z))
    straight = net.to_rgb[2](net.blocks[2](h))
    low = upsample2(net.to_rgb[1](h))
    torch.testing.assert_close(net(z, 2, 1.0), straight)
    torch.testing.assert_close(net(z, 2, 0.0), low)
    torch.testing.assert_close(net(z, 2, 0.25), 0.25 * straight + 0.75 * low)


def test_missing_default_weights_name_the_command(monkeypatch, tmp_path):
    monkeypatch.setattr(progan_generator, "DEFAULT_WEIGHTS", tmp_path / "none.safetensors")
    with pytest.raises(MissingAssetError, match="gis train generator progan"):
        load_progan()


def test_shipped_default_loads_when_present():
    if not progan_generator.DEFAULT_WEIGHTS.is_file():
        pytest.skip("plugins/gis_progan/weights/fashion-colors.safetensors not trained yet")
    g = load_progan()
    assert g.resolution == 32 and g.latent_dim == 512
    assert progan_generator.DEFAULT_WEIGHTS.stat().st_size < 10 * 2**20
    assert "training" in g.card
    x = g.synthesize(g.sample_latents(4, generator=torch.Generator().manual_seed(0)))
    assert x.shape == (4, 3, 32, 32) and torch.isfinite(x).all()


# ----------------------------------------------------------------------------- gis format errors


def test_mismatched_gis_checkpoint_names_the_tensor(tmp_path):
    g = ProGAN(ProGANConfig(**TINY))
    path = g.save(tmp_path / "g.safetensors")
    from gis.training import load_checkpoint as lc
    from gis.training import save_checkpoint

    tensors, meta = lc(path)
    meta["config"]["channels"] = [16, 12, 10]
    save_checkpoint(tmp_path / "bad.safetensors", tensors, meta)
    with pytest.raises(CheckpointError, match=r"blocks\.2\.conv1\.(weight|bias) has shape"):
        load_progan(tmp_path / "bad.safetensors")
    del tensors["to_rgb.0.bias"]
    save_checkpoint(tmp_path / "missing.safetensors", tensors, lc(path)[1])
    with pytest.raises(CheckpointError, match=r"missing \['to_rgb\.0\.bias'\]"):
        load_progan(tmp_path / "missing.safetensors")
    save_checkpoint(tmp_path / "other.safetensors", tensors, {"format": "gis-dvbpr-gan"})
    with pytest.raises(CheckpointError, match="not a ProGAN checkpoint.*gis-dvbpr-gan"):
        load_progan(tmp_path / "other.safetensors")
    with pytest.raises(CheckpointError, match="not found"):
        load_progan(tmp_path / "nope.safetensors")


# ----------------------------------------------------------------------------- trust


class _Evil:
    def __init__(self, target: Path):
        self.target = target

    def __reduce__(self):
        return (Path.touch, (self.target,))


def test_pickle_checkpoints_need_trust(tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "evil.bin"
    torch.save({"generator": _Evil(marker)}, bad)
    with pytest.raises(UntrustedFileError, match="trust"):
        load_progan(bad)
    assert not marker.exists()
    # even when trusted, classes outside torch/numpy/builtins are not imported or called
    with pytest.raises(CheckpointError):
        load_progan(bad, trust=True)
    assert not marker.exists()
    torch.save({"foo": 1}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="not a ProGAN checkpoint"):
        load_progan(tmp_path / "other.pth", trust=True)
    torch.save({"discriminator": {}}, tmp_path / "d.pth")
    with pytest.raises(CheckpointError, match="only a discriminator"):
        load_progan(tmp_path / "d.pth", trust=True)


# ----------------------------------------------------------------------------- pro_gan_pytorch


def _patched_output_padding(self, input, output_size, stride, padding, kernel_size,
                            num_spatial_dims=2, dilation=None):
    # pro_gan_pytorch 3.4 calls this with 5 arguments; torch >= 2.x needs num_spatial_dims
    return nn.ConvTranspose2d._output_padding(self, input, output_size, stride, padding,
                                              kernel_size, num_spatial_dims, dilation)


def _randomise(module: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.3 if p.ndim == 1 else 1.0))


@pytest.fixture
def pro_gan(monkeypatch):
    networks = pytest.importorskip(
        "pro_gan_pytorch.networks",
        reason="pro_gan_pytorch (pip install --no-deps pro-gan-pth==3.4) is not installed")
    from pro_gan_pytorch.custom_layers import EqualizedConvTranspose2d

    monkeypatch.setattr(EqualizedConvTranspose2d, "_output_padding", _patched_output_padding)
    return networks


@pytest.mark.parametrize("use_eql,small", [(True, True), (False, True), (True, False)])
def test_pro_gan_pytorch_checkpoint_matches_the_original(pro_gan, monkeypatch, tmp_path,
                                                         use_eql, small):
    if small:  # shrink its fixed nf() (fmap_base 16384, max 512) to keep the test light
        orig_nf = pro_gan.nf
        monkeypatch.setattr(pro_gan, "nf", lambda s: orig_nf(s, fmap_base=256, fmap_max=64))
        depth, latent = 5, 24                  # 32x32, channels 64, 64, 32, 16
    else:
        depth, latent = 3, 8                   # the real nf(): 512 channels, 8x8
    gen = pro_gan.Generator(depth=depth, latent_size=latent, use_eql=use_eql)
    shadow = copy.deepcopy(gen)
    _randomise(gen, 1)
    _randomise(shadow, 2)
    dis = pro_gan.Discriminator(depth=depth, latent_size=latent, use_eql=use_eql)
    opt = torch.optim.Adam(gen.parameters())
    # the layout of pro_gan_pytorch's ProGAN.get_save_info (depth_N_epoch_M.bin)
    path = tmp_path / f"depth_{depth}_epoch_50.bin"
    torch.save({"generator": gen.get_save_info(), "discriminator": dis.get_save_info(),
                "gen_optim": opt.state_dict(), "dis_optim": opt.state_dict(),
                "shadow_generator": shadow.get_save_info()}, path)

    with pytest.raises(UntrustedFileError):
        load_progan(path)
    g = load_progan(path, trust=True, clamp=False)
    assert g.card["source_format"] == "pro_gan_pytorch"
    assert g.card["network"] == "shadow_generator"
    assert (g.resolution, g.latent_dim) == (2 ** depth, latent)
    z = torch.randn(6, latent)
    with torch.no_grad():
        ref = shadow(z)                          # the EMA generator is the one loaded
        ours = g.synthesize(z)
        torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4)
        # intermediate depth with fade-in agrees as well
        torch.testing.assert_close(g.net(z, stage=1, alpha=0.3), shadow(z, depth=3, alpha=0.3),
                                   rtol=1e-4, atol=1e-4)
    assert g.synthesize(z).abs().max() > 1  # unbounded output...
    clamped = load_progan(path, trust=True)
    torch.testing.assert_close(clamped.synthesize(z), ref.clamp(-1, 1), rtol=1e-4, atol=1e-4)

    # without a shadow generator the plain one is used
    torch.save({"generator": gen.get_save_info()}, tmp_path / "plain.bin")
    g2 = load_progan(tmp_path / "plain.bin", trust=True, clamp=False)
    with torch.no_grad():
        torch.testing.assert_close(g2.synthesize(z), gen(z), rtol=1e-4, atol=1e-4)


def test_pro_gan_pytorch_mismatch_is_named(pro_gan, tmp_path):
    gen = pro_gan.Generator(depth=3, latent_size=8)
    info = gen.get_save_info()
    info["conf"] = {**info["conf"], "depth": 4}
    torch.save({"generator": info}, tmp_path / "bad.bin")
    with pytest.raises(CheckpointError, match="depth 4 needs layers 0..2"):
        load_progan(tmp_path / "bad.bin", trust=True)
    info = gen.get_save_info()
    info["conf"] = {**info["conf"], "latent_size": 16}
    torch.save({"generator": info}, tmp_path / "bad2.bin")
    with pytest.raises(CheckpointError, match="latent_size 16"):
        load_progan(tmp_path / "bad2.bin", trust=True)


# ----------------------------------------------------------------------------- pytorch_GAN_zoo
# A minimal, faithful re-implementation of pytorch_GAN_zoo's PGAN generator (GNet) and the
# layers it uses, to produce checkpoints in its layout and reference outputs.


class ZooNormalizationLayer(nn.Module):
    def forward(self, x, epsilon=1e-8):
        return x * (((x ** 2).mean(dim=1, keepdim=True) + epsilon).rsqrt())


def zoo_upscale2d(x, factor=2):
    s = x.size()
    x = x.view(-1, s[1], s[2], 1, s[3], 1)
    x = x.expand(-1, s[1], s[2], factor, s[3], factor)
    return x.contiguous().view(-1, s[1], s[2] * factor, s[3] * factor)


class ZooConstrainedLayer(nn.Module):
    def __init__(self, module, equalized=True, initBiasToZero=True):
        super().__init__()
        self.module = module
        self.equalized = equalized
        if initBiasToZero:
            self.module.bias.data.fill_(0)
        if equalized:
            self.module.weight.data.normal_(0, 1)
            self.weight = math.sqrt(2.0 / np.prod(self.module.weight.size()[1:]))

    def forward(self, x):
        x = self.module(x)
        if self.equalized:
            x = x * self.weight
        return x


def zoo_conv(cin, cout, k, padding=0, **kw):
    return ZooConstrainedLayer(nn.Conv2d(cin, cout, k, padding=padding), **kw)


def zoo_linear(cin, cout, **kw):
    return ZooConstrainedLayer(nn.Linear(cin, cout), **kw)


class ZooGNet(nn.Module):
    def __init__(self, dimLatent, depthScale0, leakyReluLeak=0.2, dimOutput=3,
                 equalizedlR=True):
        super().__init__()
        self.equalizedlR = equalizedlR
        self.scalesDepth = [depthScale0]
        self.scaleLayers = nn.ModuleList()
        self.toRGBLayers = nn.ModuleList()
        self.formatLayer = zoo_linear(dimLatent, 16 * depthScale0, equalized=equalizedlR)
        self.groupScale0 = nn.ModuleList(
            [zoo_conv(depthScale0, depthScale0, 3, padding=1, equalized=equalizedlR)])
        self.toRGBLayers.append(zoo_conv(depthScale0, dimOutput, 1, equalized=equalizedlR))
        self.dimOutput = dimOutput
        self.alpha = 0
        self.leakyRelu = nn.LeakyReLU(leakyReluLeak)
        self.normalizationLayer = ZooNormalizationLayer()

    def addScale(self, depthNewScale):
        last = self.scalesDepth[-1]
        self.scalesDepth.append(depthNewScale)
        self.scaleLayers.append(nn.ModuleList([
            zoo_conv(last, depthNewScale, 3, padding=1, equalized=self.equalizedlR),
            zoo_conv(depthNewScale, depthNewScale, 3, padding=1, equalized=self.equalizedlR)]))
        self.toRGBLayers.append(zoo_conv(depthNewScale, self.dimOutput, 1,
                                         equalized=self.equalizedlR))

    def forward(self, x):
        x = self.normalizationLayer(x)
        x = x.view(x.size(0), -1)
        x = self.leakyRelu(self.formatLayer(x))
        x = x.view(x.size()[0], -1, 4, 4)
        x = self.normalizationLayer(x)
        for convLayer in self.groupScale0:
            x = self.normalizationLayer(self.leakyRelu(convLayer(x)))
        if self.alpha > 0 and len(self.scaleLayers) == 1:
            y = zoo_upscale2d(self.toRGBLayers[-2](x))
        for scale, layerGroup in enumerate(self.scaleLayers, 0):
            x = zoo_upscale2d(x)
            for convLayer in layerGroup:
                x = self.normalizationLayer(self.leakyRelu(convLayer(x)))
            if self.alpha > 0 and scale == (len(self.scaleLayers) - 2):
                y = zoo_upscale2d(self.toRGBLayers[-2](x))
        x = self.toRGBLayers[-1](x)
        if self.alpha > 0:
            x = self.alpha * y + (1.0 - self.alpha) * x
        return x


def _zoo_model(latent, scales, seed, alpha=0.0, equalized=True):
    net = ZooGNet(latent, scales[0], equalizedlR=equalized)
    for s in scales[1:]:
        net.addScale(s)
    net.alpha = alpha
    _randomise(net, seed)
    return net


@pytest.fixture
def zoo_config_class(monkeypatch):
    """pytorch_GAN_zoo pickles its config as models.utils.config.BaseConfig: provide that
    module while saving; it is gone again (as on a user's machine) when gis loads the file."""
    pkg, utils, mod = (types.ModuleType(n) for n in ("models", "models.utils",
                                                       "models.utils.config"))

    class BaseConfig:
        pass

    BaseConfig.__module__ = "models.utils.config"
    BaseConfig.__qualname__ = "BaseConfig"
    mod.BaseConfig = BaseConfig
    for name, m in (("models", pkg), ("models.utils", utils), ("models.utils.config", mod)):
        monkeypatch.setitem(sys.modules, name, m)
    yield BaseConfig
    for name in ("models.utils.config", "models.utils", "models"):
        sys.modules.pop(name, None)


@pytest.mark.parametrize("alpha,old_keys,equalized", [(0.0, False, True), (0.4, False, True),
                                                     (0.0, True, True), (0.0, False, False)])
def test_gan_zoo_checkpoint_matches_the_original(zoo_config_class, tmp_path, alpha, old_keys,
                                                 equalized):
    latent, scales = 24, [32, 16, 8]  # 16x16
    net_g = _zoo_model(latent, scales, seed=1, alpha=alpha, equalized=equalized)
    avg_g = _zoo_model(latent, scales, seed=2, alpha=alpha, equalized=equalized)
    config = zoo_config_class()
    config.__dict__.update({"depthScale0": 32, "depthOtherScales": [16, 8], "alpha": alpha,
                            "latentVectorDim": latent, "noiseVectorDim": latent,
                            "perChannelNormalization": True, "leakyReluLeak": 0.2,
                            "equalizedlR": equalized, "dimOutput": 3,
                            "lossCriterion": "WGANGP", "miniBatchStdDev": True})

    def sd(net):
        state = net.state_dict()
        if old_keys:  # checkpoints written by older versions lack the ".module" level
            state = {k.replace(".module.", "."): v for k, v in state.items()}
        return state

    assert "formatLayer.module.weight" in net_g.state_dict()
    assert "scaleLayers.1.0.module.bias" in net_g.state_dict()
    path = tmp_path / "celeba_s3_i1000.pth"
    torch.save({"config": config, "netG": sd(net_g), "netD": {}, "avgG": sd(avg_g)}, path)
    for name in ("models.utils.config", "models.utils", "models"):
        sys.modules.pop(name, None)

    with pytest.raises(UntrustedFileError):
        load_progan(path)
    g = load_progan(path, trust=True, clamp=False)
    assert g.card["source_format"] == "pytorch_GAN_zoo" and g.card["network"] == "avgG"
    assert g.resolution == 16 and g.config.norm_after_projection
    z = torch.randn(5, latent)
    with torch.no_grad():
        torch.testing.assert_close(g.synthesize(z), avg_g(z), rtol=1e-4, atol=1e-4)
    # only netG: that one is used
    torch.save({"config": {"alpha": alpha, "equalizedlR": equalized}, "netG": sd(net_g)},
               tmp_path / "g_only.pth")
    g2 = load_progan(tmp_path / "g_only.pth", trust=True, clamp=False)
    with torch.no_grad():
        torch.testing.assert_close(g2.synthesize(z), net_g(z), rtol=1e-4, atol=1e-4)


def test_gan_zoo_mismatch_is_named(tmp_path):
    net = _zoo_model(8, [16, 8], seed=0)
    state = net.state_dict()
    torch.save({"config": {"latentVectorDim": 12}, "netG": state}, tmp_path / "a.pth")
    with pytest.raises(CheckpointError, match="latentVectorDim 12"):
        load_progan(tmp_path / "a.pth", trust=True)
    broken = {k: v for k, v in state.items() if not k.startswith("toRGBLayers.1")}
    torch.save({"config": {}, "netG": broken}, tmp_path / "b.pth")
    with pytest.raises(CheckpointError, match="toRGBLayers"):
        load_progan(tmp_path / "b.pth", trust=True)
    wrong = dict(state)
    wrong["scaleLayers.0.0.module.weight"] = torch.zeros(8, 5, 3, 3)
    torch.save({"config": {}, "netG": wrong}, tmp_path / "c.pth")
    with pytest.raises(CheckpointError, match="scaleLayers.0.0 takes 5 channels"):
        load_progan(tmp_path / "c.pth", trust=True)
