"""The dvbpr-gan generator plugin (Kang et al.'s conditional LSGAN with its discriminator)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gis_dvbpr_gan import generator as dv_generator
from gis_dvbpr_gan.generator import DVBPRGAN, load_dvbpr_gan
from gis_dvbpr_gan.model import (
    DVBPRDiscriminator,
    DVBPRGANConfig,
    DVBPRGenerator,
    default_strides,
    lsgan_d_loss,
    lsgan_g_loss,
    one_hot,
)
from gis_dvbpr_gan.train import train_dvbpr_gan

from gis.data import Dataset
from gis.errors import CheckpointError, GisUsageError, MissingAssetError
from gis.training import load_checkpoint

TINY = {"latent_dim": 8, "base_channels": 16, "g_channels": [16, 16, 16, 16, 8, 8],
        "d_channels": [8, 8, 16, 16]}
TRAIN = {"batch_size": 4, "progress": False, "sample_every_s": 1e9, "checkpoint_every_s": 1e9,
         "log_every": 2, **TINY}


@pytest.fixture(autouse=True)
def _seed_and_threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


def tiny_dataset(n: int = 24, res: int = 32, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    cats = (np.arange(n) % 3).astype(np.int64)
    images = np.full((n, res, res, 3), 255, np.uint8)
    for i in range(n):
        w = 4 + 8 * int(cats[i])
        images[i, 4:res - 4, (res - w) // 2:(res + w) // 2] = rng.integers(0, 256, 3)
    return Dataset(images=images, categories=cats, category_names=["top", "trouser", "bag"],
                   user_ids=[], train=np.zeros((0, 2), np.int64), val=np.zeros(0, np.int64),
                   test=np.zeros(0, np.int64), meta={"name": "tiny"})


def tiny_model(num_classes: int = 3) -> DVBPRGAN:
    return DVBPRGAN(DVBPRGANConfig(num_classes=num_classes, **TINY),
                    category_names=["top", "trouser", "bag"][:num_classes]).eval()


def test_stride_pattern_for_32_and_64_pixels():
    assert default_strides(32) == [2, 1, 2, 1, 2, 1]
    assert default_strides(64) == [2, 1, 2, 1, 2, 2]
    assert default_strides(16) == [2, 1, 2, 1, 1, 1]
    cfg = DVBPRGANConfig(num_classes=10)
    assert cfg.g_channels == [256, 256, 256, 256, 128, 64] and cfg.latent_dim == 256
    assert cfg.d_channels == [64, 128, 256, 512]
    with pytest.raises(CheckpointError, match="strides"):
        DVBPRGANConfig(num_classes=2, g_strides=[2, 2, 2, 2, 1, 1])


def test_full_size_networks_shapes():
    cfg = DVBPRGANConfig(num_classes=10)
    g, d = DVBPRGenerator(cfg).eval(), DVBPRDiscriminator(cfg).eval()
    y = one_hot(torch.tensor([0, 9]), 10)
    x = g(torch.randn(2, 256), y)
    assert x.shape == (2, 3, 32, 32)
    assert d(x, y).shape == (2,)
    # 5x5 stride-2 convs 64/128/256/512 with the label tiled in (3 + 10 input channels)
    convs = [m for m in d.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 128, 256, 512]
    assert convs[0].in_channels == 13 and all(c.kernel_size == (5, 5) for c in convs)
    tconvs = [m for m in g.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [c.out_channels for c in tconvs] == [256, 256, 256, 256, 128, 64, 3]
    assert all(c.kernel_size == (3, 3) for c in tconvs)


def test_conditional_synthesis_shapes_range_and_labels():
    g = tiny_model()
    z = g.sample_latents(5)
    x = g.synthesize(z, labels=torch.tensor([0, 1, 2, 0, 1]))
    assert x.shape == (5, 3, 32, 32) and g.num_classes == 3
    assert x.min() >= -1 and x.max() <= 1
    # one label broadcasts; the label changes the image
    same = g.synthesize(z, labels=torch.tensor(2))
    torch.testing.assert_close(same[1:2], g.synthesize(z[1:2], labels=torch.tensor([2])))
    assert not torch.allclose(g.synthesize(z, labels=0), g.synthesize(z, labels=1))
    with pytest.raises(GisUsageError, match="class-conditional: pass labels.*top, trouser, bag"):
        g.synthesize(z)
    with pytest.raises(GisUsageError, match="0..2"):
        g.synthesize(z, labels=3)
    with pytest.raises(GisUsageError, match="2 labels for 5 latents"):
        g.synthesize(z, labels=torch.tensor([0, 1]))
    with pytest.raises(GisUsageError, match=r"\(n, 8\)"):
        g.synthesize(torch.zeros(2, 5), labels=0)


def test_batchnorm_in_eval_mode_makes_samples_batch_independent():
    g = tiny_model()
    z = torch.randn(6, 8)
    lab = torch.tensor([0, 1, 2, 0, 1, 2])
    full = g.synthesize(z, labels=lab)
    torch.testing.assert_close(full[2:3], g.synthesize(z[2:3], labels=lab[2:3]))


def test_discriminator_output_and_gradient_through_g():
    g = tiny_model().requires_grad_(False)
    z = torch.randn(4, 8, requires_grad=True)
    lab = torch.tensor([0, 1, 2, 1])
    scores = g.discriminate(g.synthesize(z, labels=lab), lab)
    assert scores.shape == (4,)
    # the DVBPR design objective's realism term is differentiable w.r.t. z
    (scores - 1).square().mean().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    x = torch.zeros(2, 3, 32, 32)
    assert not torch.allclose(g.discriminate(x, 0), g.discriminate(x, 2))  # label tiled in
    with pytest.raises(GisUsageError, match="32, 32"):
        g.discriminate(torch.zeros(2, 3, 16, 16), 0)


def test_lsgan_losses_hand_case():
    d_real, d_fake = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])
    assert lsgan_d_loss(d_real, d_fake).item() == pytest.approx(0.5 * 0.5 + 0.5 * 2.0)
    assert lsgan_g_loss(d_fake).item() == pytest.approx(0.5 * (1 + 1) / 2)


def test_save_load_round_trip_keeps_g_d_and_categories(tmp_path):
    g = tiny_model()
    with torch.no_grad():  # non-trivial BN statistics
        for m in g.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
    path = g.save(tmp_path / "m.safetensors", dtype=None, card={"note": "x"})
    g2 = load_dvbpr_gan(path)
    assert g2.category_names == ["top", "trouser", "bag"] and g2.card["note"] == "x"
    z, lab = torch.randn(3, 8), torch.tensor([0, 1, 2])
    torch.testing.assert_close(g2.synthesize(z, labels=lab), g.synthesize(z, labels=lab))
    x = g.synthesize(z, labels=lab)
    torch.testing.assert_close(g2.discriminate(x, lab), g.discriminate(x, lab))
    assert not g2.training and all(not p.requires_grad for p in g2.parameters())


def test_resume_is_exact(tmp_path):
    ds = tiny_dataset()
    train_dvbpr_gan(ds, out=tmp_path / "a", seed=5, max_steps=4, **TRAIN)
    train_dvbpr_gan(ds, out=tmp_path / "b", seed=5, max_steps=2, **TRAIN)
    train_dvbpr_gan(ds, out=tmp_path / "b", seed=5, max_steps=4, resume=True, **TRAIN)
    ta, ma = load_checkpoint(tmp_path / "a" / "checkpoint.safetensors")
    tb, mb = load_checkpoint(tmp_path / "b" / "checkpoint.safetensors")
    assert ma["dvbpr_gan_state"]["step"] == mb["dvbpr_gan_state"]["step"] == 4
    assert mb["dvbpr_gan_state"]["sessions"] == 2
    assert sorted(ta) == sorted(tb)
    for k in ta:
        torch.testing.assert_close(ta[k], tb[k], rtol=0, atol=0, msg=k)
    assert any(k.startswith("opt_g.state.") for k in ta)


def test_training_export_card_samples_and_factory(tmp_path):
    import gis

    ds = tiny_dataset()
    from gis.plugins import generators

    path = generators.get("dvbpr-gan").trainer(ds, out=tmp_path, seed=0, device="cpu",
                                               resume=False, max_steps=3, **TRAIN)
    assert path == tmp_path / "dvbpr_gan.safetensors"
    assert (tmp_path / "samples" / "reals.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "samples" / "latest.png").is_file()
    g = gis.get_generator("dvbpr-gan", checkpoint=path)
    assert isinstance(g, DVBPRGAN) and g.category_names == ["top", "trouser", "bag"]
    assert g.card["training"]["batch_size"] == 4 and g.card["training"]["steps"] == 3
    assert g.card["training"]["lr"] == 1e-4 and g.card["training"]["betas"] == [0.5, 0.99]
    assert g.synthesize(g.sample_latents(2), labels=1).shape == (2, 3, 32, 32)
    # the training checkpoint and the run folder load too
    assert load_dvbpr_gan(tmp_path / "checkpoint.safetensors").num_classes == 3
    assert load_dvbpr_gan(tmp_path).num_classes == 3
    with pytest.raises(GisUsageError, match="minutes, kimg or max_steps"):
        train_dvbpr_gan(ds, out=tmp_path / "x", progress=False)


def test_kimg_limit_and_categories_mismatch_on_resume(tmp_path):
    ds = tiny_dataset()
    train_dvbpr_gan(ds, out=tmp_path, seed=0, kimg=0.008, **TRAIN)   # 8 images = 2 steps
    _, meta = load_checkpoint(tmp_path / "checkpoint.safetensors")
    assert meta["dvbpr_gan_state"]["step"] == 2
    other = tiny_dataset()
    other.category_names = ["a", "b", "c", "d"]
    other.categories = other.categories % 4
    with pytest.raises(CheckpointError, match="3 categories"):
        train_dvbpr_gan(other, out=tmp_path, seed=0, kimg=0.016, resume=True, **TRAIN)


def test_wrong_files_and_missing_default(tmp_path, monkeypatch):
    from gis_progan.generator import ProGAN
    from gis_progan.model import ProGANConfig

    p = ProGAN(ProGANConfig(latent_dim=8, resolution=8, channels=[8, 8])).save(
        tmp_path / "progan.safetensors")
    with pytest.raises(CheckpointError, match="not a dvbpr-gan checkpoint.*gis-progan"):
        load_dvbpr_gan(p)
    (tmp_path / "x.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="safetensors files only"):
        load_dvbpr_gan(tmp_path / "x.pth")
    g = tiny_model()
    path = g.save(tmp_path / "m.safetensors")
    from gis.training import save_checkpoint

    tensors, meta = load_checkpoint(path)
    meta["config"]["d_channels"] = [8, 8, 16, 32]
    save_checkpoint(tmp_path / "bad.safetensors", tensors, meta)
    with pytest.raises(CheckpointError, match=r"\(discriminator\).*body\.8\.(weight|bias) has shape"):
        load_dvbpr_gan(tmp_path / "bad.safetensors")
    monkeypatch.setattr(dv_generator, "DEFAULT_WEIGHTS", tmp_path / "none.safetensors")
    with pytest.raises(MissingAssetError, match="gis train generator dvbpr-gan"):
        load_dvbpr_gan()


def test_shipped_default_loads_when_present():
    if not dv_generator.DEFAULT_WEIGHTS.is_file():
        pytest.skip("plugins/gis_dvbpr_gan/weights/fashion-colors.safetensors not trained yet")
    g = load_dvbpr_gan()
    assert g.resolution == 32 and g.num_classes == 10 and "training" in g.card
    z = g.sample_latents(4, generator=torch.Generator().manual_seed(0))
    x = g.synthesize(z, labels=torch.arange(4))
    assert x.shape == (4, 3, 32, 32) and torch.isfinite(g.discriminate(x, torch.arange(4))).all()


def test_init_from_an_exported_file_warm_starts_g_and_d(tmp_path):
    """--init-from: a new run starts from the exported G and D (fp16 file, fresh Adam)."""
    ds = tiny_dataset()
    src = train_dvbpr_gan(ds, out=tmp_path / "src", seed=1, max_steps=3, **TRAIN)
    out = train_dvbpr_gan(ds, out=tmp_path / "warm", seed=2, max_steps=0, init_from=src, **TRAIN)
    a, b = load_dvbpr_gan(src), load_dvbpr_gan(out)
    for name in ("net", "discriminator"):
        sa, sb = getattr(a, name).state_dict(), getattr(b, name).state_dict()
        for k in sa:
            torch.testing.assert_close(sa[k], sb[k], rtol=0, atol=0, msg=k)
    assert b.card["training"]["init_from"] == str(src)
    # one more step moves away from the initial weights (the run really trains)
    out2 = train_dvbpr_gan(ds, out=tmp_path / "warm2", seed=2, max_steps=1, init_from=src, **TRAIN)
    moved = load_dvbpr_gan(out2).net.state_dict()
    assert any(not torch.equal(moved[k], a.net.state_dict()[k]) for k in moved)
    # an existing training run is not silently replaced
    with pytest.raises(GisUsageError, match="already holds a training checkpoint"):
        train_dvbpr_gan(ds, out=tmp_path / "warm", seed=2, max_steps=1, init_from=src, **TRAIN)
