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
from gis.training import load_checkpoint, train

TINY = {"latent_dim": 8, "base_channels": 16, "g_channels": [16, 16, 16, 16, 8, 8],
        "d_channels": [8, 8, 16, 16]}
TRAIN = {"batch_size": 4, "progress": False, "sample_every_s": 1e9, "checkpoint_every_s": 1e9,
         "log_every": 2, "threads": 1, **TINY}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


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

    path = train(generators.get("dvbpr-gan").trainer, ds, out=tmp_path, seed=0, device="cpu",
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
    # the weights carry over exactly; G's BatchNorm statistics are re-stood at export
    for name in ("net", "discriminator"):
        sa = dict(getattr(a, name).named_parameters())
        sb = dict(getattr(b, name).named_parameters())
        for k in sa:
            torch.testing.assert_close(sa[k], sb[k], rtol=0, atol=0, msg=k)
    for k, v in a.discriminator.state_dict().items():
        torch.testing.assert_close(v, b.discriminator.state_dict()[k], rtol=0, atol=0, msg=k)
    assert b.card["training"]["init_from"] == str(src)
    # the lineage: the source run's commands come first, its length is recorded
    assert b.card["training"]["commands"][:1] == a.card["training"]["commands"]
    assert len(b.card["training"]["commands"]) == 2 and b.card["training"]["steps"] == 0
    assert b.card["training"]["init_from_training"]["steps"] == 3
    # one more step moves away from the initial weights (the run really trains)
    out2 = train_dvbpr_gan(ds, out=tmp_path / "warm2", seed=2, max_steps=1, init_from=src, **TRAIN)
    moved = load_dvbpr_gan(out2).net.state_dict()
    assert any(not torch.equal(moved[k], a.net.state_dict()[k]) for k in moved)
    # an existing training run is not silently replaced
    with pytest.raises(GisUsageError, match="already holds a training checkpoint"):
        train_dvbpr_gan(ds, out=tmp_path / "warm", seed=2, max_steps=1, init_from=src, **TRAIN)


def test_recalibrate_batchnorm_gives_the_average_of_the_batch_statistics():
    from gis_dvbpr_gan.model import recalibrate_batchnorm

    net = tiny_model().net
    for m in net.modules():  # stale statistics, as after weight averaging
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.fill_(3.0)
            m.running_var.fill_(7.0)
    seen: dict[str, list[torch.Tensor]] = {}
    hooks = [m.register_forward_hook(lambda mod, inp, out, name=name: seen.setdefault(
        name, []).append(inp[0].detach().clone()))
        for name, m in net.named_modules() if isinstance(m, torch.nn.BatchNorm2d)]
    labels = torch.tensor([0, 0, 1, 2])
    recalibrate_batchnorm(net, labels, n_batches=3, batch_size=5, seed=4)
    for h in hooks:
        h.remove()
    assert not net.training
    mods = dict(net.named_modules())
    for name, batches in seen.items():
        assert len(batches) == 3
        mean = torch.stack([x.mean((0, 2, 3)) for x in batches]).mean(0)
        var = torch.stack([x.transpose(0, 1).flatten(1).var(1, unbiased=True)
                           for x in batches]).mean(0)
        torch.testing.assert_close(mods[name].running_mean, mean, msg=name)
        torch.testing.assert_close(mods[name].running_var, var, msg=name)
        assert mods[name].momentum == 0.1
    # seeded: the same call gives the same statistics
    ref = {k: v.clone() for k, v in net.state_dict().items()}
    recalibrate_batchnorm(net, labels, n_batches=3, batch_size=5, seed=4)
    for k, v in net.state_dict().items():
        torch.testing.assert_close(v, ref[k], rtol=0, atol=0, msg=k)


def test_weight_average_is_what_is_exported_and_resumes(tmp_path):
    from gis.training import seed_everything

    ds = tiny_dataset()
    path = train_dvbpr_gan(ds, out=tmp_path / "ema", seed=3, max_steps=3, ema_beta=0.9, **TRAIN)
    tensors, meta = load_checkpoint(tmp_path / "ema" / "checkpoint.safetensors")
    assert meta["hyper"]["ema_beta"] == 0.9
    g = {k[2:]: v for k, v in tensors.items() if k.startswith("g.")}
    e = {k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}
    assert sorted(g) == sorted(e) and any(not torch.equal(g[k], e[k]) for k in g)
    exported = load_dvbpr_gan(path)
    assert exported.card["training"]["ema_beta"] == 0.9
    assert "standing statistics" in exported.card["training"]["batchnorm_statistics"]
    params = dict(exported.net.named_parameters())
    for k, v in params.items():  # the averaged weights (in the file's float16)
        torch.testing.assert_close(v, e[k].half().float(), rtol=0, atol=0, msg=k)
    # one step of a fresh run: the ramped beta is (1 + 0) / (10 + 0) = 0.1, so the average is
    # 0.1 * G_init + 0.9 * G_1 (G_init rebuilt from the seed, as the trainer builds it)
    train_dvbpr_gan(ds, out=tmp_path / "one", seed=3, max_steps=1, ema_beta=0.9, **TRAIN)
    t1, _ = load_checkpoint(tmp_path / "one" / "checkpoint.safetensors")
    seed_everything(3)
    g0 = DVBPRGenerator(DVBPRGANConfig(num_classes=3, **TINY))
    for k, p0 in g0.named_parameters():
        assert not torch.equal(t1[f"g.{k}"], p0.detach()), k  # the step moved G
        torch.testing.assert_close(t1[f"ema.{k}"], 0.1 * p0.detach() + 0.9 * t1[f"g.{k}"],
                                   msg=k)
    # 0 turns averaging off: the raw G is exported, with its own running statistics
    raw = train_dvbpr_gan(ds, out=tmp_path / "raw", seed=3, max_steps=3, ema_beta=0.0, **TRAIN)
    t_raw, _ = load_checkpoint(tmp_path / "raw" / "checkpoint.safetensors")
    assert not any(k.startswith("ema.") for k in t_raw)
    for k, v in load_dvbpr_gan(raw).net.state_dict().items():
        want = t_raw[f"g.{k}"]
        torch.testing.assert_close(v, want.half().to(want.dtype) if want.is_floating_point()
                                   else want, rtol=0, atol=0, msg=k)
    with pytest.raises(GisUsageError, match="ema_beta must lie in"):
        train_dvbpr_gan(ds, out=tmp_path / "bad", max_steps=1, ema_beta=1.0, **TRAIN)
