"""Post-hoc ProGAN critic (gis_progan.posthoc): the shipped one, its calibration, the fit
command, and the realism floors of progan and dvbpr-gan (``Generator.realism_floor``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_progan_train import TINY, tiny_dataset

from gis import plugins
from gis.errors import CheckpointError, GisUsageError
from gis.realism import calibrate_floor, roc_auc

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: the shipped critic separates held-out real images from generator samples with a measured
#: ROC AUC of 0.99 on 2,000 + 2,000 images (its meta, docs/MODELS.md); on 256 + 256 the AUC's
#: standard error is about 0.005 (Hanley & McNeil 1982), so 0.95 fails only for a broken critic
MIN_AUC_256 = 0.95


@pytest.fixture(scope="module")
def shipped():
    """The shipped progan with its critic, 256 held-out real images (never in the generator's
    or the critic's training) and 256 seeded generator samples, in [-1, 1]."""
    from gis.data import load_dataset

    g = plugins.get_generator("progan", critic=True)  # opt-in (gis_progan docstring)
    ds = load_dataset("fashion-colors")
    real = ds.heldout_tensor(np.arange(256))
    with torch.no_grad():
        fake = g.synthesize(g.sample_latents(256, generator=torch.Generator().manual_seed(7)))
        return g, real, fake, g.realism(images=real), g.realism(images=fake)


def test_shipped_progan_offers_its_posthoc_critic_with_no_download(shipped):
    from gis_progan.critic import critic_path
    from gis_progan.generator import DEFAULT_WEIGHTS

    g = shipped[0]
    path = critic_path(DEFAULT_WEIGHTS)
    assert path.is_file() and path.stat().st_size < 6 * 2**20  # fp16: 5.3 MB
    assert g.realism_kinds == ("critic", "latent-prior")
    meta = g.critic.meta
    assert meta["objective"] == "logistic" and meta["mbstd"] is False
    assert g.critic.cfg.mbstd_group == 0 and g.config.mbstd_group == 4
    assert {"steps", "batch_size", "lr", "r1_gamma", "seed", "seconds", "machine", "command",
            "data"} <= set(meta["fit"])
    assert meta["calibration"]["n_real"] >= 1000


def test_shipped_critic_scores_each_image_on_its_own(shipped):
    g, real, fake = shipped[:3]
    x = torch.cat([real[:3], fake[:3], fake[:1].clone()])  # a copy too: no batch statistics
    with torch.no_grad():
        batch = g.realism(images=x)
        alone = torch.cat([g.realism(images=x[i:i + 1]) for i in range(len(x))])
        shuffled = g.realism(images=x.flip(0)).flip(0)
    torch.testing.assert_close(alone, batch, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(shuffled, batch, rtol=1e-4, atol=1e-4)
    assert batch[5] != batch[4]  # distinct images, distinct scores


def test_shipped_critic_separates_heldout_reals_from_samples(shipped):
    g, _, _, real_scores, fake_scores = shipped
    assert roc_auc(real_scores, fake_scores) > MIN_AUC_256
    # the calibrated floor passes about 95 % of these unseen real images (binomial sd 1.4 %)
    floor = g.realism_floor("critic")
    assert floor == g.critic.meta["calibration"]["floor"]
    assert 0.01 <= float((real_scores < floor).double().mean()) <= 0.11


def test_realism_floor_of_both_generators_and_none_for_the_latent_prior():
    prog, dv = plugins.get_generator("progan", critic=True), plugins.get_generator("dvbpr-gan")
    assert plugins.get_generator("progan").realism_floor("critic") is None  # off by default
    assert prog.realism_floor("critic") == prog.critic.meta["calibration"]["floor"]
    card = dv.card["realism_calibration"]["critic"]
    assert dv.realism_floor("critic") == card["floor"] < 0  # -(D - 1)^2 <= 0
    assert card["n_real"] >= 1000 and card["share_real_below_floor"] == pytest.approx(0.05)
    assert prog.realism_floor("latent-prior") is None and dv.realism_floor("latent-prior") is None


def test_calibrate_floor_is_the_quantile_and_refuses_bad_input():
    scores = torch.arange(100, dtype=torch.float32)  # 0..99
    assert calibrate_floor(scores) == pytest.approx(4.95)
    assert calibrate_floor(scores, 0.5) == pytest.approx(49.5)
    with pytest.raises(GisUsageError, match="too few"):
        calibrate_floor(scores[:10])
    with pytest.raises(GisUsageError, match="NaN"):
        calibrate_floor(torch.tensor([float("nan")] * 40))
    assert roc_auc([3.0, 4.0], [1.0, 2.0]) == 1.0 and roc_auc([1.0], [1.0]) == 0.5


@pytest.fixture
def tiny_generator(tmp_path):
    from gis_progan.generator import ProGAN
    from gis_progan.model import ProGANConfig

    from gis.data.store import save_dataset

    torch.manual_seed(0)
    g = ProGAN(ProGANConfig(**TINY))
    gen = g.save(tmp_path / "g.safetensors")
    data = save_dataset(tiny_dataset(n=120), tmp_path / "tiny.npz")
    return gen, data


def test_tiny_fit_writes_a_calibrated_per_image_critic(tiny_generator, capsys):
    from gis_progan.critic import critic_path, main
    from gis_progan.generator import load_progan
    from gis_progan.posthoc import heldout_reals, to_float

    from gis.data import load_dataset
    from gis.training import load_checkpoint

    gen, data = tiny_generator
    assert main(["fit", str(gen), "--data", str(data), "--steps", "3", "--batch-size", "4",
                 "--n-calibration", "24", "--n-fake", "24", "--no-progress"]) == 0
    printed = json.loads(capsys.readouterr().out)
    path = critic_path(gen)
    assert printed["critic"] == str(path)
    _, meta = load_checkpoint(path)
    assert meta["format"] == "gis-progan-critic" and meta["objective"] == "logistic"
    assert meta["mbstd"] is False and meta["config"]["mbstd_group"] == 0
    fit, cal = meta["fit"], meta["calibration"]
    assert (fit["steps"], fit["batch_size"], fit["images_seen"]) == (3, 4, 12)
    assert fit["data"]["num_images"] == 96  # 24 of the 120 held out for the calibration
    assert fit["seconds"] >= 0 and "gis_progan.critic" in fit["command"] and fit["machine"]
    assert cal["heldout"]["source"] == "fit-data-slice" and cal["n_real"] == 24
    # the floor is the 5th percentile of the stored critic's scores on those held-out images
    g = load_progan(gen)
    assert g.realism_kinds == ("critic", "latent-prior")
    held, _, _ = heldout_reals(load_dataset(str(data)), None, 24, seed=0, resolution=16)
    with torch.no_grad():
        scores = g.realism(images=to_float(held))
    assert g.realism_floor("critic") == pytest.approx(float(np.quantile(scores.numpy(), 0.05)),
                                                      abs=1e-5)
    assert cal["share_real_below_floor"] == pytest.approx(float((scores < cal["floor"])
                                                                .double().mean()))


def test_fit_refuses_bad_settings_in_one_line(tiny_generator, capsys):
    from gis_progan.critic import main

    gen, data = tiny_generator
    assert main(["fit", str(gen), "--data", str(data), "--steps", "0"]) == 2
    err = capsys.readouterr().err
    assert "steps >= 1" in err and err.count("\n") == 1
    assert main(["fit", str(gen.with_suffix(".json")), "--data", str(data)]) == 2
    assert "pass --out" in capsys.readouterr().err


def test_a_critic_may_differ_from_its_generator_only_in_mbstd(tiny_generator):
    from gis_progan.critic import load_critic, save_critic
    from gis_progan.model import ProGANConfig, ProGANDiscriminator

    gen, _ = tiny_generator
    cfg = ProGANConfig(**TINY)
    ok = tmp = gen.with_name("ok-critic.safetensors")
    save_critic(ok, ProGANDiscriminator(ProGANConfig(**{**TINY, "mbstd_group": 0})))
    assert load_critic(ok, cfg).cfg.mbstd_group == 0
    tmp = gen.with_name("bad-critic.safetensors")
    save_critic(tmp, ProGANDiscriminator(ProGANConfig(**{**TINY, "channels": [16, 12, 12],
                                                         "mbstd_group": 0})))
    with pytest.raises(CheckpointError) as err:
        load_critic(tmp, cfg)
    msg = str(err.value)
    assert "channels [16, 12, 12] vs [16, 12, 8]" in msg and "only mbstd_group" in msg
    assert "\n" not in msg
