"""The biggan generator plugin (Brock et al. 2019): architecture, losses, regularisation, the
gis file and trainer, the shift_embedding latent, and the pytorch-pretrained-biggan loader."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from gis_biggan import generator as bg_generator
from gis_biggan.generator import BigGAN, load_biggan
from gis_biggan.model import (
    BigGANConfig,
    BigGANDiscriminator,
    BigGANGenerator,
    ConditionalBatchNorm,
    hinge_d_loss,
    hinge_g_loss,
    ortho_weights,
    orthogonal_regularisation,
    standing_statistics,
)
from gis_biggan.train import train_biggan

from gis.data import Dataset
from gis.errors import CheckpointError, GisUsageError, MissingAssetError, UntrustedFileError
from gis.training import load_checkpoint

pytestmark = pytest.mark.usefixtures("one_torch_thread")

NAMES = ["top", "trouser", "bag"]
TINY = {"latent_dim": 16, "shared_dim": 8, "g_channels": [16, 16, 8, 8],
        "d_channels": [8, 8, 16, 16], "attention": 16}
TRAIN = {"batch_size": 4, "progress": False, "sample_every_s": 1e9, "checkpoint_every_s": 1e9,
         "log_every": 2, "threads": 1, "standing_batches": 2, **TINY}


def tiny_dataset(n: int = 24, res: int = 32, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    cats = (np.arange(n) % 3).astype(np.int64)
    images = np.full((n, res, res, 3), 255, np.uint8)
    for i in range(n):
        w = 4 + 8 * int(cats[i])
        images[i, 4:res - 4, (res - w) // 2:(res + w) // 2] = rng.integers(0, 256, 3)
    return Dataset(images=images, categories=cats, category_names=list(NAMES), user_ids=[],
                   train=np.zeros((0, 2), np.int64), val=np.zeros(0, np.int64),
                   test=np.zeros(0, np.int64), meta={"name": "tiny"})


def tiny_cfg(num_classes: int = 3) -> BigGANConfig:
    return BigGANConfig(num_classes=num_classes, **TINY)


def tiny_model(num_classes: int = 3, **kw) -> BigGAN:
    cfg = tiny_cfg(num_classes)
    names = (NAMES + [f"c{i}" for i in range(num_classes)])[:num_classes]
    return BigGAN(BigGANGenerator(cfg).eval(), z_dim=cfg.latent_dim, resolution=32,
                  num_classes=num_classes, category_names=names,
                  discriminator=BigGANDiscriminator(cfg).eval(), **kw).eval()


# ----------------------------------------------------------------------------- architecture
def test_shapes_hierarchical_latents_and_default_size():
    cfg = BigGANConfig(num_classes=10)
    G, D = BigGANGenerator(cfg), BigGANDiscriminator(cfg)
    assert cfg.chunk == 32 and G.linear.in_features == 32
    assert G.blocks[0].cbn1.gain.in_features == 32 + 64        # chunk + shared embedding
    n_bytes = 2 * sum(v.numel() for m in (G, D) for v in m.state_dict().values())
    assert n_bytes < 8e6                                        # float16 file under 8 MB
    g = tiny_model()
    z = g.sample_latents(5, generator=torch.Generator().manual_seed(0))
    x = g.synthesize(z, labels=torch.tensor([0, 1, 2, 0, 1]))
    assert x.shape == (5, 3, 32, 32) and x.abs().max() <= 1
    assert g.discriminate(x, labels=1).shape == (5,)
    # every chunk matters: chunk 0 feeds the linear layer, chunk i block i's BatchNorms
    for i in range(4):
        z2 = z.clone()
        z2[:, 4 * i:4 * (i + 1)] += 1.0
        assert (g.synthesize(z2, labels=0) - g.synthesize(z, labels=0)).abs().max() > 1e-4
    with pytest.raises(CheckpointError, match="equal chunks"):
        BigGANConfig(num_classes=3, latent_dim=10)
    with pytest.raises(CheckpointError, match="give 32px, not 64px"):
        BigGANConfig(num_classes=3, resolution=64)


def test_conditional_batchnorm_uses_the_class():
    torch.manual_seed(1)
    cbn = ConditionalBatchNorm(4, 6, eps=1e-5, sn_eps=1e-6).eval()
    x, y = torch.randn(2, 4, 3, 3), torch.randn(2, 6)
    want = cbn.bn(x) * (1 + cbn.gain(y))[:, :, None, None] + cbn.bias(y)[:, :, None, None]
    torch.testing.assert_close(cbn(x, y), want)
    g = tiny_model()
    z = g.sample_latents(1, generator=torch.Generator().manual_seed(3)).expand(3, -1)
    x = g.synthesize(z, labels=torch.arange(3))       # same z, three classes
    assert (x[0] - x[1]).abs().max() > 1e-3 and (x[1] - x[2]).abs().max() > 1e-3
    # the class reaches the images only through the shared embedding
    e = g.net.embed(torch.arange(3))
    torch.testing.assert_close(g.net(z, e), x)
    # eval mode: a sample does not depend on the rest of the batch
    torch.testing.assert_close(g.synthesize(z[:1], labels=1), x[1:2])


def test_spectral_norm_everywhere_but_the_shared_embedding():
    cfg = tiny_cfg()
    G, D = BigGANGenerator(cfg), BigGANDiscriminator(cfg)
    for net in (G, D):
        layers = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear |
                                                         torch.nn.Embedding)]
        for m in layers:
            if m is getattr(net, "shared", None):
                assert not hasattr(m, "parametrizations")
                continue
            assert hasattr(m, "parametrizations") and "weight" in m.parametrizations, m
    assert G.attn is not None and D.attn is not None          # self-attention at 16 px
    # after power iterations the largest singular value of each weight is 1
    D.train()
    for _ in range(30):
        D(torch.randn(2, 3, 32, 32), torch.tensor([0, 1]))
    D.eval()
    for m in (D.blocks[1].conv1, D.linear, D.embed):
        w = m.weight.detach().reshape(m.weight.shape[0], -1)
        assert abs(float(torch.linalg.matrix_norm(w, 2)) - 1) < 0.02


def test_hinge_losses_hand_case():
    d_real, d_fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.0])
    assert float(hinge_d_loss(d_real, d_fake)) == pytest.approx(0.25 + 0.5)
    assert float(hinge_g_loss(d_fake)) == pytest.approx(1.0)


def test_orthogonal_regularisation_hand_case_and_gradient():
    w = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]], requires_grad=True)
    # W W^T = [[1, 1, 0], [1, 2, 2], [0, 2, 4]]: off-diagonal squares 2 * (1 + 0 + 4) = 10
    r = orthogonal_regularisation([w], beta=0.1)
    assert float(r.detach()) == pytest.approx(1.0)
    r.backward()
    off = torch.tensor([[0.0, 1, 0], [1, 0, 2], [0, 2, 0]])
    torch.testing.assert_close(w.grad, 4 * 0.1 * off @ w.detach())
    # a conv weight is read as (out, fan_in); orthonormal filters cost nothing
    q = torch.linalg.qr(torch.randn(18, 4))[0].t().reshape(4, 2, 3, 3)
    assert float(orthogonal_regularisation([q * 3.0], beta=1.0)) < 1e-8   # norms are free
    G = BigGANGenerator(tiny_cfg())
    names = {id(p) for p in ortho_weights(G)}
    assert id(G.shared.weight) not in names
    assert id(G.blocks[0].conv1.parametrizations.weight.original) in names


def test_standing_statistics_average_the_batch_statistics():
    G = BigGANGenerator(tiny_cfg())
    labels = torch.tensor([0, 1, 2, 2])
    standing_statistics(G, labels, n_batches=3, batch_size=4, seed=1)
    assert not G.training and G.out_bn.num_batches_tracked.item() == 3
    standing = G.out_bn.running_mean.clone()
    g = torch.Generator().manual_seed(1)
    means, seen = [], []
    hook = G.out_bn.register_forward_hook(lambda m, i, o: seen.append(i[0]))
    for m in G.modules():   # the same passes with batch statistics everywhere
        if isinstance(m, torch.nn.BatchNorm2d):
            m.train()
    for _ in range(3):
        y = labels[torch.randint(4, (4,), generator=g)]
        z = torch.randn(4, 16, generator=g)
        with torch.no_grad():
            G(z, G.embed(y))
        means.append(seen[-1].mean(dim=(0, 2, 3)))
    hook.remove()
    torch.testing.assert_close(standing, torch.stack(means).mean(0))


# ----------------------------------------------------------------------------- latents
def test_shift_embedding_latent_and_bad_labels():
    g = tiny_model()
    ge = tiny_model(shift_embedding=True, embedding_scale=0.5)
    ge.net.load_state_dict(g.net.state_dict())
    assert g.latent_dim == 16 and ge.latent_dim == 16 + 8
    z = g.sample_latents(2, generator=torch.Generator().manual_seed(0))
    # u = 0: the chosen class's own embedding, i.e. the default latent's output
    zu = torch.cat([z, torch.zeros(2, 8)], 1)
    torch.testing.assert_close(ge.synthesize(zu, labels=1), g.synthesize(z, labels=1))
    zu[:, 16:] = 1.0
    assert (ge.synthesize(zu, labels=1) - g.synthesize(z, labels=1)).abs().max() > 1e-3
    _, e = ge.embedding(zu, 1)
    spread = g.net.embed(torch.arange(3)).std(0, unbiased=False)
    torch.testing.assert_close(e, g.net.embed(torch.tensor([1, 1])) + 0.5 * spread)
    # differentiable in the whole latent (what inversion and shifting move)
    zu.requires_grad_(True)
    ge.synthesize(zu, labels=1).sum().backward()
    assert zu.grad[:, 16:].abs().sum() > 0
    with pytest.raises(GisUsageError, match="latents of shape \\(n, 24\\)"):
        ge.synthesize(z, labels=1)
    for bad in (3, -1):
        with pytest.raises(GisUsageError, match=r"labels must lie in 0\.\.2") as err:
            g.synthesize(z, labels=bad)
        assert "\n" not in str(err.value)
    with pytest.raises(GisUsageError, match="class-conditional"):
        g.synthesize(z)


# ----------------------------------------------------------------------------- files, training
def test_save_load_round_trip_and_wrong_files(tmp_path, monkeypatch):
    g = tiny_model()
    path = g.save(tmp_path / "m.safetensors", dtype=torch.float32)
    g2 = load_biggan(path)
    z = g.sample_latents(3, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(g2.synthesize(z, labels=2), g.synthesize(z, labels=2))
    x = g.synthesize(z, labels=2)
    torch.testing.assert_close(g2.discriminate(x, labels=2), g.discriminate(x, labels=2))
    assert g2.card.category_names == NAMES and not g2.training
    assert all(not p.requires_grad for p in g2.parameters())
    assert g2.realism_kinds == ("latent-prior",)
    assert load_biggan(path, critic=True).realism_kinds == ("critic", "latent-prior")
    with pytest.raises(GisUsageError, match="truncation applies"):
        load_biggan(path, truncation=0.5)
    (tmp_path / "x.bin").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="config.json"):
        load_biggan(tmp_path / "x.bin")
    monkeypatch.setattr(bg_generator, "DEFAULT_WEIGHTS", tmp_path / "none.safetensors")
    with pytest.raises(MissingAssetError, match="gis train generator biggan"):
        load_biggan()


def test_training_resumes_exactly_and_exports(tmp_path):
    import gis

    ds = tiny_dataset()
    train_biggan(ds, out=tmp_path / "a", seed=5, max_steps=4, **TRAIN)
    train_biggan(ds, out=tmp_path / "b", seed=5, max_steps=2, **TRAIN)
    path = train_biggan(ds, out=tmp_path / "b", seed=5, max_steps=4, resume=True, **TRAIN)
    ta, ma = load_checkpoint(tmp_path / "a" / "checkpoint.safetensors")
    tb, mb = load_checkpoint(tmp_path / "b" / "checkpoint.safetensors")
    assert ma["biggan_state"]["step"] == mb["biggan_state"]["step"] == 4
    assert mb["biggan_state"]["images"] == 4 * 2 * 4          # d_steps 2, batch 4
    assert sorted(ta) == sorted(tb) and any(k.startswith("ema.") for k in ta)
    for k in ta:
        torch.testing.assert_close(ta[k], tb[k], rtol=0, atol=0, msg=k)
    assert path == tmp_path / "b" / "biggan.safetensors"
    g = gis.get_generator("biggan", checkpoint=path, shift_embedding=True)
    assert isinstance(g, BigGAN) and g.latent_dim == 16 + 8 and g.category_names == NAMES
    tr = g.card["training"]
    assert tr["steps"] == 4 and tr["d_steps"] == 2 and tr["ortho_beta"] == 1e-4
    assert "standing statistics" in tr["batchnorm_statistics"]
    assert g.synthesize(g.sample_latents(2), labels=1).shape == (2, 3, 32, 32)
    assert load_biggan(tmp_path / "b").num_classes == 3       # run folder: the average
    log = [json.loads(line) for line in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert {"loss_d", "loss_g", "ortho", "d_real", "d_fake"} <= set(log[-1])
    with pytest.raises(GisUsageError, match="minutes, kimg or max_steps"):
        train_biggan(ds, out=tmp_path / "x", progress=False)


# ----------------------------------------------------------------------------- command line
@pytest.fixture
def fc_model(tmp_path, monkeypatch):
    """A tiny BigGAN for fashion-colors' 10 categories as the default weights."""
    from gis.data import load_dataset

    names = [str(n) for n in load_dataset("fashion-colors").category_names]
    cfg = tiny_cfg(10)
    g = BigGAN(BigGANGenerator(cfg).eval(), z_dim=16, resolution=32, num_classes=10,
               category_names=names, discriminator=BigGANDiscriminator(cfg).eval())
    path = g.save(tmp_path / "w" / "fashion-colors.safetensors", card={"name": "biggan"})
    monkeypatch.setattr(bg_generator, "DEFAULT_WEIGHTS", path)
    return path


def test_plugins_check_biggan(fc_model):
    from gis.cli import cli

    out = CliRunner().invoke(cli, ["plugins", "check", "biggan"])
    assert out.exit_code == 0, out.output
    assert "num_classes=10" in out.output and out.output.splitlines()[-1].endswith("all passed")
    out = CliRunner().invoke(cli, ["plugins", "check", "biggan", "-o", "shift_embedding=true"])
    assert out.exit_code == 0 and "latent_dim=24" in out.output, out.output
    out = CliRunner().invoke(cli, ["plugins", "check", "biggan", "-o", "truncation=2"])
    # a value the user passed that the factory refuses: a usage error, not a plugin failure
    assert out.exit_code == 2 and out.output.startswith("Error: ") and \
        "truncation must lie in (0, 1]" in out.output and out.output.count("\n") == 1


def test_shift_with_shifted_embedding_and_bad_category(fc_model, tmp_path):
    from gis.cli import cli

    base = ["shift", "--generator", "biggan", "--recommender", "dvbpr", "--n-users", "2",
            "--n", "2", "--steps", "2", "--invert-steps", "1", "--quiet"]
    out = CliRunner().invoke(cli, base + ["--category", "Trouser", "--generator-option",
                                          "shift_embedding=true", "--out",
                                          str(tmp_path / "run")])
    assert out.exit_code == 0, out.output
    res = json.loads((tmp_path / "run" / "result.json").read_text())
    assert res["generator"]["options"] == {"shift_embedding": True}
    from safetensors.torch import load_file

    lat = load_file(str(tmp_path / "run" / "latents.safetensors"))
    assert lat["variants"].shape == (2, 24) and lat["shifts"][:, 16:].abs().sum() > 0
    out = CliRunner().invoke(cli, base + ["--category", "12", "--out", str(tmp_path / "r2")])
    assert out.exit_code == 2 and "unknown category '12'" in out.output
    assert len(out.output.strip().splitlines()) == 1


# ----------------------------------------------------------------------------- pretrained layout
def _package_model(tmp_path, fmt: str = "bin"):
    ppb = pytest.importorskip(
        "pytorch_pretrained_biggan",
        reason="pytorch-pretrained-biggan is not installed (bash scripts/install.sh --test)")
    torch.manual_seed(0)
    cfg = ppb.BigGANConfig(output_dim=32, z_dim=8, class_embed_dim=8, channel_width=4,
                           num_classes=10, layers=[(True, 16, 8), (True, 8, 4), (True, 4, 2),
                                                   (False, 2, 1)],
                           attention_layer_position=1, n_stats=5)
    m = ppb.BigGAN(cfg)
    with torch.no_grad():  # non-trivial statistics, attention gate and output BatchNorm
        for name, b in m.named_buffers():
            if name.endswith("running_means"):
                b.normal_(0, 0.3)
            elif name.endswith("running_vars"):
                b.uniform_(0.5, 2.0)
        for name, p in m.named_parameters():
            if name.endswith("gamma"):
                p.fill_(0.7)
        m.generator.bn.weight.normal_(1, 0.2)
        m.generator.bn.bias.normal_(0, 0.2)
        m.train()
        m(torch.randn(4, 8), torch.eye(10)[:4], 1.0)   # power iterations: u, v not at init
    m.eval()
    folder = tmp_path / "ppb"
    folder.mkdir()
    (folder / "config.json").write_text(cfg.to_json_string())
    if fmt == "bin":
        torch.save(m.state_dict(), folder / "pytorch_model.bin")
    else:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in m.state_dict().items()},
                  str(folder / "model.safetensors"))
    return m, folder


def test_pretrained_biggan_layout_matches_the_package(tmp_path):
    m, folder = _package_model(tmp_path)
    z = torch.randn(6, 8, generator=torch.Generator().manual_seed(1)).clamp(-2, 2)
    labels = torch.tensor([0, 3, 5, 9, 2, 2])
    for t in (1.0, 0.4, 0.55):
        g = load_biggan(folder, truncation=t)            # the folder from_pretrained reads
        with torch.no_grad():
            want = m(z, torch.eye(10)[labels], t)
        got = g.synthesize(z, labels=labels)
        assert got.shape == (6, 3, 32, 32)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    # soft class vectors, the package's other input
    cv = torch.softmax(torch.randn(6, 10), 1)
    with torch.no_grad():
        torch.testing.assert_close(g.net.forward_class_vector(z, cv), m(z, cv, 0.55),
                                   rtol=0, atol=1e-5)
    assert g.num_classes == 10 and g.latent_dim == 8 and g.resolution == 32
    assert g.card["source_format"] == "pytorch-pretrained-biggan"
    ge = load_biggan(folder / "pytorch_model.bin", shift_embedding=True)
    assert ge.latent_dim == 16
    torch.testing.assert_close(ge.synthesize(torch.cat([z, torch.zeros(6, 8)], 1),
                                             labels=labels), m(z, torch.eye(10)[labels], 1.0),
                               rtol=0, atol=1e-5)


def test_pretrained_biggan_safetensors_trust_and_bad_files(tmp_path):
    m, folder = _package_model(tmp_path, fmt="safetensors")
    g = load_biggan(folder / "model.safetensors")
    z = torch.randn(2, 8)
    with torch.no_grad():
        torch.testing.assert_close(g.synthesize(z, labels=4), m(z, torch.eye(10)[[4, 4]], 1.0),
                                   rtol=0, atol=1e-5)
    # a pickle holding more than tensors loads only when trusted
    torch.save({"state_dict": m.state_dict(), "args": argparse.Namespace(lr=1.0)},
               folder / "pickled.bin")
    with pytest.raises(UntrustedFileError, match="--trust"):
        load_biggan(folder / "pickled.bin")
    assert load_biggan(folder / "pickled.bin", trust=True).num_classes == 10
    state = m.state_dict()
    state["generator.gen_z.bias"] = torch.zeros(5)
    torch.save(state, folder / "bad.bin")
    with pytest.raises(CheckpointError, match="gen_z.bias has shape \\(5,\\)"):
        load_biggan(folder / "bad.bin")


def test_shipped_default_loads_when_present():
    if not bg_generator.DEFAULT_WEIGHTS.is_file():
        pytest.skip("plugins/gis_biggan/weights/fashion-colors.safetensors not trained yet")
    g = load_biggan()
    assert g.resolution == 32 and g.num_classes == 10 and g.latent_dim == 128
    assert g.card.category_names[7] == "Sneaker" and "commands" in g.card["training"]
    z = g.sample_latents(4, generator=torch.Generator().manual_seed(0))
    x = g.synthesize(z, labels=torch.arange(4))
    assert x.shape == (4, 3, 32, 32) and torch.isfinite(g.discriminate(x, labels=torch.arange(4))).all()
