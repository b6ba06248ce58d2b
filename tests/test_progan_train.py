"""Training the progan generator in gis's run skeleton: the schedule, exact resume, warm
start, export, time budget, and checkpoints written before the skeleton existed."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from gis_progan.generator import ProGAN, load_progan
from gis_progan.train import ProGANTrainer, default_stage_weights, make_plan, train_progan

from gis.data import Dataset
from gis.errors import CheckpointError, GisUsageError
from gis.training import load_checkpoint, train

TINY = {"latent_dim": 16, "resolution": 16, "channels": [16, 12, 8]}
LEGACY = Path(__file__).parent / "data" / "progan-legacy" / "checkpoint.safetensors"


def tiny_dataset(n: int = 24, res: int = 16, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    images = np.zeros((n, res, res, 3), np.uint8)
    for i in range(n):
        a, b = sorted(rng.integers(1, res - 1, 2))
        images[i, a:b + 1, 2:res - 2] = rng.integers(0, 256, 3)
    cats = (np.arange(n) % 3).astype(np.int64)
    return Dataset(images=images, categories=cats, category_names=["a", "b", "c"],
                   user_ids=[], train=np.zeros((0, 2), np.int64), val=np.zeros(0, np.int64),
                   test=np.zeros(0, np.int64), meta={"name": "tiny"})


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_plan_gives_final_stage_the_most_time():
    assert default_stage_weights(4) == [1.0, 2.0, 3.0, 6.0]
    plan = make_plan(4, minutes=10, kimg_per_stage=None, stage_weights=None, fade=0.5,
                     reserve_s=20)
    assert plan.unit == "s" and plan.total == pytest.approx(0.995 * 580)
    assert plan.lengths[-1] == max(plan.lengths)
    assert plan.alpha(0, 0.0) == 1.0
    assert plan.alpha(2, plan.lengths[2] * 0.25) == pytest.approx(0.5)
    assert plan.alpha(2, plan.lengths[2] * 0.75) == 1.0
    img = make_plan(3, minutes=None, kimg_per_stage=2, stage_weights=None, fade=0.5,
                    reserve_s=0)
    assert img.unit == "img" and img.lengths == [2000.0] * 3
    with pytest.raises(GisUsageError):
        make_plan(3, minutes=None, kimg_per_stage=None, stage_weights=None, fade=0.5,
                  reserve_s=0)


TRAIN = {"kimg_per_stage": 0.008, "batch_size": 4, "progress": False, "sample_every_s": 1e9,
         "checkpoint_every_s": 1e9, "log_every": 2, "threads": 1,
         **{k: v for k, v in TINY.items() if k != "resolution"}}


@pytest.mark.parametrize("where,options,res", [
    ("--resolution is 48: pass --resolution 32 or 64", {"resolution": 48}, 16),
    ("the dataset's resolution is 24: pass --resolution 16 or 32", {}, 24),
    ("--resolution is 2: pass --resolution 4 or 8", {"resolution": 2}, 16),
])
def test_a_resolution_progan_cannot_grow_to_is_a_usage_error(tmp_path, where, options, res):
    """ProGAN doubles from 4x4: 48 (asked, or a folder dataset's) is a one-line error naming
    the powers of two around it (was a ValueError traceback)."""
    with pytest.raises(GisUsageError, match=where.replace("(", r"\(").replace(")", r"\)")):
        train_progan(tiny_dataset(res=res), out=tmp_path / "run", **{**TRAIN, **options})


def test_resume_is_exact(tmp_path):
    ds = tiny_dataset()
    # 6 steps (2 per stage, through two fade-ins) in one go ...
    train_progan(ds, out=tmp_path / "a", seed=3, max_steps=6, **TRAIN)
    # ... equal 3 steps, a checkpoint, and 3 more steps after resuming
    train_progan(ds, out=tmp_path / "b", seed=3, max_steps=3, **TRAIN)
    _, mid = load_checkpoint(tmp_path / "b" / "checkpoint.safetensors")
    assert mid["progan_state"]["step"] == 3 and mid["progan_state"]["stage"] == 1
    train_progan(ds, out=tmp_path / "b", seed=3, max_steps=6, resume=True, **TRAIN)
    ta, ma = load_checkpoint(tmp_path / "a" / "checkpoint.safetensors")
    tb, mb = load_checkpoint(tmp_path / "b" / "checkpoint.safetensors")
    assert ma["progan_state"]["step"] == mb["progan_state"]["step"] == 6
    assert ma["progan_state"]["stage"] == mb["progan_state"]["stage"] == 2
    assert ma["progan_state"]["done"] and mb["progan_state"]["done"]
    assert sorted(ta) == sorted(tb)
    for k in ta:
        torch.testing.assert_close(ta[k], tb[k], rtol=0, atol=0, msg=k)
    assert any(k.startswith("opt_d.state.") for k in ta)  # optimiser moments are saved


def test_warm_start_carries_weights_and_schedule_to_a_new_run(tmp_path):
    """--init-from: the float16 warm-start file (no optimiser) continues a run elsewhere."""
    from gis_progan.loaders import GIS_WARMSTART_FORMAT

    ds = tiny_dataset()
    train_progan(ds, out=tmp_path / "src", seed=3, max_steps=3, **TRAIN)  # mid stage 1
    warm, wmeta = load_checkpoint(tmp_path / "src" / "warmstart.safetensors")
    src, smeta = load_checkpoint(tmp_path / "src" / "checkpoint.safetensors")
    assert wmeta["format"] == GIS_WARMSTART_FORMAT
    assert wmeta["progan_state"] == smeta["progan_state"]
    assert not any(k.startswith("opt_") for k in warm)
    for k, v in warm.items():  # G, D and EMA, each the checkpoint's weights in float16
        assert k.split(".")[0] in ("g", "d", "ema") and v.dtype == torch.float16
        torch.testing.assert_close(v, src[k].half(), rtol=0, atol=0, msg=k)
    assert {k for k in src if k.split(".")[0] in ("g", "d", "ema")} == set(warm)
    # the file loads as a generator too (its EMA)
    assert load_progan(tmp_path / "src" / "warmstart.safetensors").resolution == 16

    # a new run from the folder: weights and schedule position carry over, step count goes on
    train_progan(ds, out=tmp_path / "new", max_steps=3, init_from=tmp_path / "src", **TRAIN)
    t0, m0 = load_checkpoint(tmp_path / "new" / "checkpoint.safetensors")
    assert m0["progan_state"]["step"] == 3 and m0["progan_state"]["stage"] == 1
    assert m0["progan_state"]["init_from"] == str(tmp_path / "src" / "warmstart.safetensors")
    assert not any(k.startswith("opt_g.state.") for k in t0)  # no step taken, fresh Adam
    for k, v in warm.items():
        torch.testing.assert_close(t0[k], v.float(), rtol=0, atol=0, msg=k)
    # ... and it trains on through the rest of the schedule (stage 2, done after step 6)
    train_progan(ds, out=tmp_path / "new2", max_steps=9, init_from=tmp_path / "src", **TRAIN)
    t2, m2 = load_checkpoint(tmp_path / "new2" / "checkpoint.safetensors")
    assert m2["progan_state"]["step"] == 6 and m2["progan_state"]["stage"] == 2
    assert m2["progan_state"]["done"]
    for k in ("g.blocks.1.conv1.weight", "d.blocks.0.conv1.weight", "ema.blocks.2.conv2.weight"):
        assert k in t2 and not torch.equal(t2[k], warm[k].float()), k
    assert load_progan(tmp_path / "new2").card["training"]["init_from"].endswith(
        "warmstart.safetensors")
    with pytest.raises(GisUsageError, match="already holds a training checkpoint"):
        train_progan(ds, out=tmp_path / "new2", max_steps=7, init_from=tmp_path / "src", **TRAIN)
    with pytest.raises(CheckpointError, match="no progan warm-start file"):
        train_progan(ds, out=tmp_path / "x", max_steps=1, init_from=tmp_path / "none", **TRAIN)
    with pytest.raises(CheckpointError, match="not a progan warm-start file"):
        train_progan(ds, out=tmp_path / "y", max_steps=1,
                     init_from=tmp_path / "src" / "checkpoint.safetensors", **TRAIN)


def test_training_writes_export_samples_and_card(tmp_path):
    ds = tiny_dataset()
    path = train_progan(ds, out=tmp_path, seed=0, max_steps=6, **TRAIN)
    assert path == tmp_path / "progan.safetensors"
    assert (tmp_path / "samples" / "reals.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "samples" / "latest.png").is_file()
    assert (tmp_path / "log.jsonl").read_text().count("\n") == 3
    g = load_progan(path)
    assert g.card["training"]["steps"] == 6 and g.card["training"]["seed"] == 0
    assert g.card["dataset"]["name"] == "tiny" and g.card["fid"] is None
    assert g.synthesize(g.sample_latents(2)).shape == (2, 3, 16, 16)
    # stored as float16: the EMA weights survive the round trip to that precision
    tensors, _ = load_checkpoint(tmp_path / "checkpoint.safetensors")
    ema = {k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}
    for k, v in g.net.state_dict().items():
        torch.testing.assert_close(v, ema[k].half().float())
    # the training checkpoint and the run folder load as well (EMA weights)
    for src in (tmp_path / "checkpoint.safetensors", tmp_path):
        g2 = load_progan(src)
        torch.testing.assert_close(g2.net.state_dict()["to_rgb.2.bias"], ema["to_rgb.2.bias"])


def test_partly_grown_run_exports_its_current_resolution(tmp_path):
    ds = tiny_dataset()
    path = train_progan(ds, out=tmp_path, seed=0, max_steps=3, **TRAIN)  # stops in stage 1
    g = load_progan(path)
    assert g.resolution == 8 and "warning" in g.card
    assert g.synthesize(g.sample_latents(2)).shape == (2, 3, 8, 8)


def test_timed_training_stops_on_budget(tmp_path):
    ds = tiny_dataset()
    opts = {k: v for k, v in TRAIN.items() if k != "kimg_per_stage"}
    path = train_progan(ds, out=tmp_path, seed=0, minutes=0.05, **opts)
    _, meta = load_checkpoint(tmp_path / "checkpoint.safetensors")
    assert meta["plan"]["unit"] == "s" and meta["progan_state"]["step"] > 0
    assert meta["progan_state"]["elapsed_s"] < 10.0
    assert meta["plan"]["lengths"][-1] == max(meta["plan"]["lengths"])
    assert path.is_file()


def test_registered_factory_and_trainer(tmp_path):
    import gis

    ds = tiny_dataset()
    from gis.plugins import generators

    entry = generators.get("progan")
    assert entry.trainer is ProGANTrainer
    path = train(entry.trainer, ds, out=tmp_path, seed=0, device="cpu", resume=False,
                 max_steps=2, **TRAIN)
    g = gis.get_generator("progan", checkpoint=path)
    assert isinstance(g, ProGAN) and not g.training
    assert all(not p.requires_grad for p in g.parameters())
    with pytest.raises(GisUsageError, match="unknown options"):
        gis.get_generator("progan", checkpoint=path, truncation=0.5)


def _legacy_dataset() -> Dataset:
    """The 16 images the legacy checkpoint was trained on (same recipe, res 8, seed 0)."""
    rng = np.random.default_rng(0)
    images = np.zeros((16, 8, 8, 3), np.uint8)
    for i in range(16):
        a, b = sorted(rng.integers(1, 7, 2))
        images[i, a:b + 1, 1:7] = rng.integers(0, 256, 3)
    return Dataset(images=images, categories=(np.arange(16) % 2).astype(np.int64),
                   category_names=["a", "b"], user_ids=[], train=np.zeros((0, 2), np.int64),
                   val=np.zeros(0, np.int64), test=np.zeros(0, np.int64),
                   meta={"name": "legacy"})


def test_checkpoint_written_before_the_skeleton_resumes(tmp_path):
    """tests/data/progan-legacy/checkpoint.safetensors was written by the hand-written trainer
    that the skeleton replaced (commit 021f394: ``train_progan(ds, seed=11, max_steps=3,
    kimg_per_stage=0.008, batch_size=4, log_every=1, latent_dim=8, channels=[8, 8])`` on
    :func:`_legacy_dataset`). Its run folder resumes as it is and ends where an uninterrupted
    run of today's trainer ends."""
    _, meta = load_checkpoint(LEGACY)
    assert meta["format"] == "gis-progan-train" and meta["progan_state"]["step"] == 3
    run = tmp_path / "legacy"
    run.mkdir()
    shutil.copy(LEGACY, run / LEGACY.name)
    opts = {"kimg_per_stage": 0.008, "batch_size": 4, "progress": False, "threads": 1,
            "sample_every_s": 1e9, "checkpoint_every_s": 1e9, "log_every": 1}
    ds = _legacy_dataset()
    train_progan(ds, out=run, resume=True, **opts)  # the schedule ends after step 4
    fresh = train_progan(ds, out=tmp_path / "fresh", seed=11, latent_dim=8, channels=[8, 8],
                         **opts)
    tr, mr = load_checkpoint(run / "checkpoint.safetensors")
    tf, mf = load_checkpoint(fresh.parent / "checkpoint.safetensors")
    assert mr["progan_state"]["step"] == mf["progan_state"]["step"] == 4
    assert mr["progan_state"]["done"] and mr["progan_state"]["sessions"] == 2
    assert mr["config"] == mf["config"] and mr["plan"] == mf["plan"] and mr["seed"] == 11
    assert len(mr["commands"]) == 2  # the legacy command, then this one
    assert sorted(tr) == sorted(tf)
    for k in tr:
        if k.startswith("rng.") or k.endswith(".step"):  # RNG streams and Adam counters
            assert torch.equal(tr[k], tf[k]), k
        else:  # same computation; a loose bound allows another CPU's rounding
            torch.testing.assert_close(tr[k], tf[k], rtol=0, atol=5e-3, msg=k)
    assert load_progan(run).card["training"]["steps"] == 4


def test_another_trainers_checkpoint_is_refused(tmp_path):
    from gis_dvbpr_gan.train import train_dvbpr_gan

    ds = tiny_dataset()
    train_progan(ds, out=tmp_path, max_steps=1, **TRAIN)
    with pytest.raises(CheckpointError, match=r"is not a dvbpr-gan training checkpoint \(format "
                                              r"'gis-progan-train'") as err:
        train_dvbpr_gan(ds, out=tmp_path, resume=True, max_steps=2, progress=False)
    assert "\n" not in str(err.value)
    with pytest.raises(GisUsageError, match="exists: pass resume=True"):
        train_progan(ds, out=tmp_path, max_steps=2, **TRAIN)
