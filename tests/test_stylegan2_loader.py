"""The rosinality stylegan2-pytorch loader, on files written in that layout.

The reference below re-states the layout and forward pass of rosinality's ``model.py``
(``Generator(size, style_dim, n_mlp, channel_multiplier)``, its native ``upfirdn2d``,
``FusedLeakyReLU`` and the *fused* grouped modulated convolution) independently of gis's
modules; a random state dict in that layout is saved as ``{"g_ema": ..., "args": ...}`` and
read back by gis; both must give the same images.
"""

from __future__ import annotations

import argparse
import math

import pytest
import torch
import torch.nn.functional as F

from gis.errors import CheckpointError, UntrustedFileError

STYLE, N_MLP, SIZE, LR_MLP = 16, 3, 16, 0.01
CHANNELS = {4: 8, 8: 8, 16: 6}


def make_kernel(k):
    k = torch.tensor(k, dtype=torch.float32)
    k = k[None, :] * k[:, None]
    return k / k.sum()


def rosinality_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A g_ema state dict with rosinality's keys and shapes (parameters drawn at random, also
    the ones rosinality initialises to 0/1, so that every convention is exercised)."""
    g = torch.Generator().manual_seed(seed)

    def rn(*s, scale=1.0):
        return torch.randn(*s, generator=g) * scale

    sd = {}
    for i in range(1, N_MLP + 1):
        sd[f"style.{i}.weight"] = rn(STYLE, STYLE) / LR_MLP
        sd[f"style.{i}.bias"] = rn(STYLE, scale=10.0)  # times lr_mul 0.01 at run time

    def styled(prefix, cin, cout, up):
        sd[f"{prefix}.conv.weight"] = rn(1, cout, cin, 3, 3)
        sd[f"{prefix}.conv.modulation.weight"] = rn(cin, STYLE)
        sd[f"{prefix}.conv.modulation.bias"] = 1.0 + rn(cin, scale=0.3)
        if up:
            sd[f"{prefix}.conv.blur.kernel"] = make_kernel([1, 3, 3, 1]) * 4
        sd[f"{prefix}.noise.weight"] = rn(1, scale=0.5)
        sd[f"{prefix}.activate.bias"] = rn(cout, scale=0.2)

    def to_rgb(prefix, cin, up):
        sd[f"{prefix}.conv.weight"] = rn(1, 3, cin, 1, 1)
        sd[f"{prefix}.conv.modulation.weight"] = rn(cin, STYLE)
        sd[f"{prefix}.conv.modulation.bias"] = 1.0 + rn(cin, scale=0.3)
        sd[f"{prefix}.bias"] = rn(1, 3, 1, 1, scale=0.2)
        if up:
            sd[f"{prefix}.upsample.kernel"] = make_kernel([1, 3, 3, 1]) * 4

    sd["input.input"] = rn(1, CHANNELS[4], 4, 4)
    styled("conv1", CHANNELS[4], CHANNELS[4], False)
    to_rgb("to_rgb1", CHANNELS[4], False)
    log_size = int(math.log2(SIZE))
    cin = CHANNELS[4]
    for j, i in enumerate(range(3, log_size + 1)):
        cout = CHANNELS[2 ** i]
        styled(f"convs.{2 * j}", cin, cout, True)
        styled(f"convs.{2 * j + 1}", cout, cout, False)
        to_rgb(f"to_rgbs.{j}", cout, True)
        cin = cout
    for layer_idx in range((log_size - 2) * 2 + 1):
        res = (layer_idx + 5) // 2
        sd[f"noises.noise_{layer_idx}"] = rn(1, 1, 2 ** res, 2 ** res)
    return sd


# ------------------------------------------------------------------ the reference forward
def upfirdn2d_native(x, kernel, up=1, down=1, pad=(0, 0)):
    b, c, h, w = x.shape
    out = x.reshape(-1, h, 1, w, 1, 1)
    out = F.pad(out, [0, 0, 0, up - 1, 0, 0, 0, up - 1]).view(-1, h * up, w * up, 1)
    out = F.pad(out, [0, 0, pad[0], pad[1], pad[0], pad[1]])
    out = out.permute(0, 3, 1, 2).reshape(-1, 1, h * up + sum(pad), w * up + sum(pad))
    out = F.conv2d(out, torch.flip(kernel, [0, 1]).view(1, 1, *kernel.shape))
    out = out.reshape(b, c, out.shape[-2], out.shape[-1])
    return out[:, :, ::down, ::down]


def fused_leaky_relu(x, bias):
    return F.leaky_relu(x + bias.view(1, -1, *([1] * (x.ndim - 2))), 0.2) * 2 ** 0.5


def modulated_conv_fused(sd, prefix, x, style, *, demodulate=True, upsample=False):
    b, cin, h, w = x.shape
    weight = sd[f"{prefix}.weight"]
    _, cout, _, k, _ = weight.shape
    mod_w, mod_b = sd[f"{prefix}.modulation.weight"], sd[f"{prefix}.modulation.bias"]
    s = F.linear(style, mod_w * (1 / math.sqrt(STYLE)), bias=mod_b * 1.0).view(b, 1, cin, 1, 1)
    wt = (1 / math.sqrt(cin * k * k)) * weight * s
    if demodulate:
        wt = wt * torch.rsqrt(wt.pow(2).sum([2, 3, 4]) + 1e-8).view(b, cout, 1, 1, 1)
    wt = wt.view(b * cout, cin, k, k)
    if upsample:
        wt = wt.view(b, cout, cin, k, k).transpose(1, 2).reshape(b * cin, cout, k, k)
        out = F.conv_transpose2d(x.view(1, b * cin, h, w), wt, padding=0, stride=2, groups=b)
        out = out.view(b, cout, out.shape[-2], out.shape[-1])
        p = (4 - 2) - (k - 1)
        return upfirdn2d_native(out, sd[f"{prefix}.blur.kernel"], pad=((p + 1) // 2 + 1,
                                                                      p // 2 + 1))
    out = F.conv2d(x.view(1, b * cin, h, w), wt, padding=k // 2, groups=b)
    return out.view(b, cout, h, w)


def reference_generator(sd, z):
    """rosinality Generator.forward([z], randomize_noise=False), truncation 1."""
    x = z * torch.rsqrt(torch.mean(z ** 2, dim=1, keepdim=True) + 1e-8)
    for i in range(1, N_MLP + 1):
        x = F.linear(x, sd[f"style.{i}.weight"] * (LR_MLP / math.sqrt(STYLE)))
        x = fused_leaky_relu(x, sd[f"style.{i}.bias"] * LR_MLP)
    log_size = int(math.log2(SIZE))
    n_latent = log_size * 2 - 2
    latent = x.unsqueeze(1).repeat(1, n_latent, 1)
    noise = [sd[f"noises.noise_{i}"] for i in range((log_size - 2) * 2 + 1)]

    def styled(prefix, h, w, nz, up=False):
        out = modulated_conv_fused(sd, f"{prefix}.conv", h, w, upsample=up)
        out = out + sd[f"{prefix}.noise.weight"] * nz
        return fused_leaky_relu(out, sd[f"{prefix}.activate.bias"])

    def to_rgb(prefix, h, w, skip=None):
        out = modulated_conv_fused(sd, f"{prefix}.conv", h, w, demodulate=False)
        out = out + sd[f"{prefix}.bias"]
        if skip is not None:
            out = out + upfirdn2d_native(skip, sd[f"{prefix}.upsample.kernel"], up=2,
                                         pad=(2, 1))
        return out

    out = sd["input.input"].repeat(z.shape[0], 1, 1, 1)
    out = styled("conv1", out, latent[:, 0], noise[0])
    skip = to_rgb("to_rgb1", out, latent[:, 1])
    i = 1
    for j in range(log_size - 2):
        out = styled(f"convs.{2 * j}", out, latent[:, i], noise[i], up=True)
        out = styled(f"convs.{2 * j + 1}", out, latent[:, i + 1], noise[i + 1])
        skip = to_rgb(f"to_rgbs.{j}", out, latent[:, i + 2], skip)
        i += 2
    return skip


# ------------------------------------------------------------------ tests
@pytest.fixture(scope="module")
def rosinality_file(tmp_path_factory):
    sd = rosinality_state()
    path = tmp_path_factory.mktemp("ros") / "040000.pt"
    args = argparse.Namespace(size=SIZE, latent=STYLE, n_mlp=N_MLP, channel_multiplier=2)
    torch.save({"g": rosinality_state(1), "d": {}, "g_ema": sd, "args": args}, path)
    return path, sd


def test_rosinality_file_needs_trust(rosinality_file):
    from gis_stylegan2.generator import load_stylegan2

    with pytest.raises(UntrustedFileError, match="--trust"):
        load_stylegan2(rosinality_file[0])


def test_rosinality_g_ema_matches_the_reference_forward(rosinality_file):
    from gis_stylegan2.generator import load_stylegan2

    path, sd = rosinality_file
    gen = load_stylegan2(path, trust=True, clamp=False)
    assert gen.card["source_format"] == "rosinality" and gen.card["network"] == "g_ema"
    assert (gen.resolution, gen.latent_dim, gen.num_ws) == (SIZE, STYLE, 6)
    assert gen.config.channels == [8, 8, 6] and gen.config.n_mlp == N_MLP
    z = torch.randn(5, STYLE, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = reference_generator(sd, z)
        out = gen.synthesize(z)
    assert out.shape == ref.shape == (5, 3, SIZE, SIZE)
    assert ref.abs().max() > 0.5  # a non-trivial output
    torch.testing.assert_close(out, ref, atol=2e-5, rtol=1e-4)
    # w statistics were estimated at load (seeded): the W view reproduces the same image
    w = gen.net.mapping(z)
    torch.testing.assert_close(gen.in_latent_space("w").synthesize(gen.whiten(w)), ref,
                               atol=5e-5, rtol=1e-4)


def test_rosinality_loader_errors(tmp_path, rosinality_file):
    from gis_stylegan2.generator import load_stylegan2

    sd = dict(rosinality_file[1])
    bad = dict(sd)
    bad["convs.0.conv.blur.kernel"] = make_kernel([1, 2, 1, 0]) * 4
    torch.save({"g_ema": bad}, tmp_path / "kernel.pt")
    with pytest.raises(CheckpointError, match=r"\[1, 3, 3, 1\] blur kernel"):
        load_stylegan2(tmp_path / "kernel.pt", trust=True)
    bad = {k: v for k, v in sd.items() if k != "noises.noise_2"}
    torch.save({"g_ema": bad}, tmp_path / "noise.pt")
    with pytest.raises(CheckpointError, match="noises.noise_2"):
        load_stylegan2(tmp_path / "noise.pt", trust=True)
    torch.save({"generator": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="no 'g_ema' or 'g'"):
        load_stylegan2(tmp_path / "other.pt", trust=True)
    # a bare state dict is accepted too
    torch.save(sd, tmp_path / "bare.pt")
    assert load_stylegan2(tmp_path / "bare.pt", trust=True).card["network"] == "state_dict"


def test_rosinality_roundtrip_through_gis_format(tmp_path, rosinality_file):
    """Converted once, saved as gis .safetensors (float32), the same images come back
    without pickle or trust."""
    from gis_stylegan2.generator import load_stylegan2

    gen = load_stylegan2(rosinality_file[0], trust=True, clamp=False)
    path = gen.save(tmp_path / "converted.safetensors", dtype=None)
    again = load_stylegan2(path, clamp=False)
    z = torch.randn(3, STYLE, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(again.synthesize(z), gen.synthesize(z))
    torch.testing.assert_close(again.net.w_std, gen.net.w_std)
