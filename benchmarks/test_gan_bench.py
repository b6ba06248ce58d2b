"""The GAN generators: one training step (critic/D + G, incl. ProGAN's gradient penalty and
EMA update) and one synthesis batch (64 images, eval mode, no grad), per model and size.

    pytest benchmarks/test_gan_bench.py --benchmark-enable --benchmark-only

Sizes: "default" is the shipped 32x32 architecture (progan: latent 512, channels
192/192/192/128, batch 64, timed at the final 32x32 stage with fade-in; dvbpr-gan: the
paper's channels, batch 16); "small" is the CPU-fallback progan (channels 128/128/64/32, batch
16) and a half-width dvbpr-gan. Default-size training steps take several seconds each on a CPU
and run only with ``GIS_BENCH_FULL=1`` (synthesis always runs). CUDA cases run where a GPU is
present. Each result records the commit, torch version, device and thread count.
"""

from __future__ import annotations

import os

import pytest
import torch

gis_progan = pytest.importorskip("gis_progan")
gis_dvbpr_gan = pytest.importorskip("gis_dvbpr_gan")

from gis_dvbpr_gan.model import (  # noqa: E402
    DVBPRDiscriminator,
    DVBPRGANConfig,
    DVBPRGenerator,
    one_hot,
)
from gis_dvbpr_gan.train import train_step as dvbpr_train_step  # noqa: E402
from gis_progan.model import ProGANConfig, ProGANDiscriminator, ProGANGenerator  # noqa: E402
from gis_progan.train import train_step as progan_train_step  # noqa: E402

from gis.training import WeightAverage  # noqa: E402

FULL = os.environ.get("GIS_BENCH_FULL") == "1"
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

PROGAN = {
    "default": ({"channels": [192, 192, 192, 128]}, 64),
    "small": ({"channels": [128, 128, 64, 32]}, 16),
}
DVBPR = {
    "default": ({}, 16),
    "small": ({"base_channels": 128, "g_channels": [128, 128, 128, 128, 64, 32],
               "d_channels": [32, 64, 128, 256]}, 16),
}


def _train_cases() -> list:
    """(size, device) of the training-step benchmarks; default-size CPU steps are skipped
    unless GIS_BENCH_FULL=1 (by a mark, so that no benchmark fixture is set up for them)."""
    slow = pytest.mark.skip(reason="default-size CPU training step: set GIS_BENCH_FULL=1")
    return [pytest.param(size, device, marks=slow if size == "default" and device == "cpu"
                         and not FULL else ())
            for device in DEVICES for size in ("small", "default")]


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


@pytest.mark.parametrize("size,device", _train_cases())
def test_progan_train_step(record, size, device):
    record.group = "progan-train-step"
    torch.manual_seed(0)
    opts, batch = PROGAN[size]
    cfg = ProGANConfig(**opts)
    G, D = ProGANGenerator(cfg).to(device), ProGANDiscriminator(cfg).to(device)
    ema = WeightAverage(G, 0.999)  # the trainer's EMA generator
    opt_g = torch.optim.Adam(G.parameters(), lr=1e-3, betas=(0.0, 0.99))
    opt_d = torch.optim.Adam(D.parameters(), lr=1e-3, betas=(0.0, 0.99))
    real = torch.rand(batch, 3, 32, 32, device=device) * 2 - 1
    stage = cfg.num_stages - 1

    def step():
        out = progan_train_step(G, D, opt_g, opt_d, real, stage, 0.5, rng=None)
        ema.update(100)
        _sync(device)
        return out

    losses = step()  # warm-up, and check the result before timing
    assert all(torch.isfinite(v) for v in losses)
    record.extra_info.update(batch=batch, resolution=32, stage=stage, alpha=0.5,
                             params_g=sum(p.numel() for p in G.parameters()),
                             params_d=sum(p.numel() for p in D.parameters()))
    record.pedantic(step, rounds=3, iterations=1)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("size", ["small", "default"])
def test_progan_synthesis(record, size, device):
    record.group = "progan-synthesis"
    torch.manual_seed(0)
    g = gis_progan.generator.ProGAN(ProGANConfig(**PROGAN[size][0])).to(device).eval()
    z = torch.randn(64, 512, device=device)

    def synth():
        with torch.no_grad():
            x = g.synthesize(z)
        _sync(device)
        return x

    x = synth()
    assert x.shape == (64, 3, 32, 32) and x.abs().max() <= 1
    record.extra_info.update(batch=64, resolution=32)
    record(synth)


@pytest.mark.parametrize("size,device", _train_cases())
def test_dvbpr_gan_train_step(record, size, device):
    record.group = "dvbpr-gan-train-step"
    torch.manual_seed(0)
    opts, batch = DVBPR[size]
    cfg = DVBPRGANConfig(num_classes=10, **opts)
    G, D = DVBPRGenerator(cfg).to(device), DVBPRDiscriminator(cfg).to(device)
    opt_g = torch.optim.Adam(G.parameters(), lr=1e-4, betas=(0.5, 0.99))
    opt_d = torch.optim.Adam(D.parameters(), lr=1e-4, betas=(0.5, 0.99))
    real = torch.rand(batch, 3, 32, 32, device=device) * 2 - 1
    y = one_hot(torch.arange(batch, device=device) % 10, 10)
    z = torch.randn(batch, cfg.latent_dim, device=device)
    ema = WeightAverage(G, 0.999, ramp=False)  # the trainer's weight average (ema_beta 0.999)

    def step():
        out = dvbpr_train_step(G, D, opt_g, opt_d, real, y, z, y)
        ema.update(100)
        _sync(device)
        return out

    losses = step()
    assert all(torch.isfinite(v) for v in losses)
    record.extra_info.update(batch=batch, resolution=32,
                             params_g=sum(p.numel() for p in G.parameters()),
                             params_d=sum(p.numel() for p in D.parameters()))
    record.pedantic(step, rounds=3, iterations=1)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("size", ["small", "default"])
def test_dvbpr_gan_synthesis(record, size, device):
    record.group = "dvbpr-gan-synthesis"
    torch.manual_seed(0)
    cfg = DVBPRGANConfig(num_classes=10, **DVBPR[size][0])
    g = gis_dvbpr_gan.generator.DVBPRGAN(cfg).to(device).eval()
    z = torch.randn(64, cfg.latent_dim, device=device)
    labels = torch.arange(64, device=device) % 10

    def synth():
        with torch.no_grad():
            x = g.synthesize(z, labels=labels)
        _sync(device)
        return x

    x = synth()
    assert x.shape == (64, 3, 32, 32) and x.abs().max() <= 1
    record.extra_info.update(batch=64, resolution=32)
    record(synth)
