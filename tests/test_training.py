"""The resumable-run skeleton (gis.training.run), the typed trainer settings and `gis train`.

A toy trainer (least squares with Adam, its own random stream, dropout from torch's global
one, and a weight average) exercises every part of the skeleton in milliseconds.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import gis
from gis.cli import cli
from gis.data import Dataset, save_dataset
from gis.errors import CheckpointError, GisUsageError, NonFiniteLossError
from gis.training import (
    Checkpoint,
    Trainer,
    WeightAverage,
    load_checkpoint,
    setting,
    settings_of,
    train,
)


@dataclass
class ToyConfig:
    """Settings of the toy trainer."""

    steps: int = setting(8, "Steps of the whole run.")
    lr: float = setting(0.05, "Adam learning rate.")
    batch_size: int = setting(4, "Rows per step.")
    betas: tuple[float, float] = setting((0.9, 0.99), "Adam betas.")
    widths: tuple[int, ...] | None = setting(None, "Unused; a sequence setting.")
    mode: Literal["plain", "nan"] = setting("plain", "nan: the loss becomes NaN.")
    noisy: bool = setting(True, "Dropout before the linear layer.")


class ToyTrainer(Trainer):
    """Least squares y = X w on the dataset's image means (a test double)."""

    name = "toy"
    Config = ToyConfig
    checkpoint_format = "toy-train"
    state_key = "toy_state"
    log_every = 2

    def setup(self, carried: Checkpoint | None) -> tuple[int, dict[str, Any]]:
        if carried is not None:
            return int(carried.meta["seed"]), dict(carried.meta["toy_state"])
        return int(self.run.options.seed), {"step": 0}

    def build(self) -> None:
        x = torch.from_numpy(self.dataset.images.reshape(len(self.dataset.images), -1)[:, :6]
                             .astype(np.float32) / 255.0)
        self.x, self.y = x, x @ torch.arange(6.0)
        self.net = torch.nn.Sequential(torch.nn.Dropout(0.1 if self.config.noisy else 0.0),
                                       torch.nn.Linear(6, 1))
        self.opt = torch.optim.Adam(self.net.parameters(), lr=self.config.lr,
                                    betas=self.config.betas)
        self.rng = torch.Generator().manual_seed(self.run.seed)
        self.avg = WeightAverage(self.net, 0.9)
        self.exports = 0

    def modules(self):
        return {"net.": self.net}

    def averages(self):
        return {"avg.": self.avg}

    def optimizers(self):
        return {"opt.": self.opt}

    def generators(self):
        return {"batches": self.rng}

    def checkpoint_meta(self):
        return {"seed": self.run.seed, "commands": self.run.commands}

    def step(self):
        idx = torch.randint(len(self.x), (self.config.batch_size,), generator=self.rng)
        loss = (self.net(self.x[idx]).squeeze(1) - self.y[idx]).square().mean()
        if self.config.mode == "nan":
            loss = loss * float("nan")
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return {"mse": loss.detach()}

    def finished(self):
        return self.run.state["step"] >= self.config.steps

    def export(self) -> Path:
        self.exports += 1
        path = self.run.out / "toy.json"
        path.write_text(json.dumps({"step": self.run.state["step"], "exports": self.exports}))
        return path


class OtherTrainer(ToyTrainer):
    name = "other"
    checkpoint_format = "other-train"


def toy_dataset() -> Dataset:
    rng = np.random.default_rng(0)
    return Dataset(images=rng.integers(0, 256, (16, 4, 4, 3), dtype=np.uint8),
                   categories=np.zeros(16, np.int64), category_names=["x"], user_ids=[],
                   train=np.zeros((0, 2), np.int64), val=np.zeros(0, np.int64),
                   test=np.zeros(0, np.int64), meta={"name": "toy"})


RUN = {"progress": False, "threads": 1, "seed": 5}


# ----------------------------------------------------------------------------- the skeleton


def test_resume_after_interruption_equals_an_uninterrupted_run(tmp_path):
    ds = toy_dataset()
    train(ToyTrainer, ds, out=tmp_path / "a", **RUN)
    train(ToyTrainer, ds, out=tmp_path / "b", max_steps=3, **RUN)
    mid, mid_meta = load_checkpoint(tmp_path / "b" / "checkpoint.safetensors")
    assert mid_meta["toy_state"]["step"] == 3 and mid_meta["format"] == "toy-train"
    path = train(ToyTrainer, ds, out=tmp_path / "b", resume=True, seed=99, progress=False)
    assert json.loads(path.read_text())["step"] == 8
    ta, ma = load_checkpoint(tmp_path / "a" / "checkpoint.safetensors")
    tb, mb = load_checkpoint(tmp_path / "b" / "checkpoint.safetensors")
    assert sorted(ta) == sorted(tb)
    assert {k.split(".")[0] for k in ta} == {"net", "avg", "opt", "rng"}
    for k in ta:
        torch.testing.assert_close(ta[k], tb[k], rtol=0, atol=0, msg=k)
    assert ma["toy_state"]["step"] == mb["toy_state"]["step"] == 8
    assert mb["toy_state"]["sessions"] == 2 and mb["seed"] == 5  # the run keeps its seed
    assert len(mb["commands"]) == 2
    # the weight average moved with the steps, and differs from the network
    assert not torch.equal(ta["avg.1.weight"], ta["net.1.weight"])
    # log.jsonl: the mean losses of every 2 steps of the run; step 3's loss waited in the
    # checkpoint for the line of step 4, so both runs log the same lines
    la = [json.loads(x) for x in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    lb = [json.loads(x) for x in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in la] == [x["step"] for x in lb] == [2, 4, 6, 8]
    assert [x["mse"] for x in la] == [x["mse"] for x in lb] and la[0]["elapsed_s"] >= 0
    assert len(mid_meta["log_pending"]["values"]) == 1  # step 3's loss


def test_another_trainers_checkpoint_is_refused_in_one_line(tmp_path):
    train(ToyTrainer, toy_dataset(), out=tmp_path, max_steps=1, **RUN)
    with pytest.raises(CheckpointError) as err:
        train(OtherTrainer, toy_dataset(), out=tmp_path, resume=True, **RUN)
    assert str(err.value) == (f"{tmp_path / 'checkpoint.safetensors'} is not a other training "
                              "checkpoint (format 'toy-train'; expected 'other-train')")


def test_refusals_are_one_line_usage_errors(tmp_path):
    ds = toy_dataset()
    train(ToyTrainer, ds, out=tmp_path, max_steps=1, **RUN)
    with pytest.raises(GisUsageError, match="exists: pass resume=True"):
        train(ToyTrainer, ds, out=tmp_path, **RUN)
    with pytest.raises(GisUsageError, match="toy training cannot start from another run"):
        train(ToyTrainer, ds, out=tmp_path / "x", init_from=tmp_path, **RUN)
    with pytest.raises(GisUsageError, match=r"unknown toy trainer option\(s\): lr_max; known: "
                                            r"steps, lr, batch_size"):
        train(ToyTrainer, ds, out=tmp_path / "y", lr_max=1, **RUN)
    with pytest.raises(GisUsageError, match="not a gis.training.Trainer subclass"):
        train(lambda *a, **k: None, ds, out=tmp_path / "z")


def test_a_diverged_run_keeps_its_last_checkpoint(tmp_path):
    ds = toy_dataset()
    train(ToyTrainer, ds, out=tmp_path, max_steps=2, **RUN)
    before = (tmp_path / "checkpoint.safetensors").read_bytes()
    with pytest.raises(NonFiniteLossError, match="toy training diverged at step 4"):
        train(ToyTrainer, ds, out=tmp_path, resume=True, mode="nan", **RUN)
    assert (tmp_path / "checkpoint.safetensors").read_bytes() == before


def test_a_budget_below_the_save_reserve_saves_a_resumable_state(tmp_path):
    # minutes 0.001 less the 2 s reserve for the final save: no step, but everything saved
    path = train(ToyTrainer, toy_dataset(), out=tmp_path, minutes=0.001, **RUN)
    _, meta = load_checkpoint(tmp_path / "checkpoint.safetensors")
    assert meta["toy_state"]["step"] == 0 and json.loads(path.read_text())["exports"] == 1


def test_weight_average_ramps_up():
    net = torch.nn.Linear(2, 1)
    avg = WeightAverage(net, 0.999)
    assert avg.beta_at(0) == pytest.approx(0.1) and avg.beta_at(10**6) == 0.999
    assert WeightAverage(net, 0.5, ramp=False).beta_at(0) == 0.5
    start = avg.module.weight.detach().clone()
    with torch.no_grad():
        net.weight.add_(1.0)
    avg.update(0)  # 0.1 * start + 0.9 * moved
    torch.testing.assert_close(avg.module.weight, 0.1 * start + 0.9 * net.weight.detach())
    assert not avg.module.weight.requires_grad


# ----------------------------------------------------------------------------- settings


def test_settings_come_from_the_dataclass():
    info = {s.name: s for s in settings_of(ToyConfig)}
    assert info["lr"].kind == "float" and info["lr"].default == 0.05
    assert info["lr"].help == "Adam learning rate." and info["lr"].option == "--lr"
    assert info["betas"].sequence and info["betas"].length == 2
    assert info["betas"].parse("0.5, 0.9") == (0.5, 0.9)
    assert info["widths"].optional and info["widths"].parse("3,4,5") == (3, 4, 5)
    assert info["mode"].kind == "choice" and info["mode"].parse("nan") == "nan"
    assert info["noisy"].kind == "bool"
    with pytest.raises(GisUsageError, match="--betas takes 2 comma-separated values"):
        info["betas"].parse("1")
    with pytest.raises(GisUsageError, match="--batch-size takes int values"):
        info["batch_size"].parse("x")

    @dataclass
    class Bad:
        table: dict[str, int] = setting(None, "not expressible as an option")

    with pytest.raises(TypeError, match="setting 'table': unsupported type"):
        settings_of(Bad)


# ----------------------------------------------------------------------------- gis train


class ToyPlugin:
    @gis.hookimpl
    def register_generators(self, register):
        register("toy", lambda **kw: None, description="toy", trainer=ToyTrainer)
        register("untrained", lambda **kw: None, description="no trainer")


@pytest.fixture
def toy_plugin():
    name = gis.register_plugin(ToyPlugin(), name="toy-plugin")
    yield name
    gis.unregister_plugin(name)


def test_gis_train_help_lists_the_dataclass_options():
    out = CliRunner().invoke(cli, ["train", "generator", "progan", "--help"])
    assert out.exit_code == 0, out.output
    for option in ("--kimg-per-stage", "--batch-size", "--ema-beta", "--mirror ",
                   "--channels", "--export-dtype [float16|float32]", "--init-from",
                   "--minutes", "--max-steps", "--resume", "--device", "--data"):
        assert option in out.output, option
    assert "Decay of the EMA generator that is exported." in out.output
    out = CliRunner().invoke(cli, ["train", "recommender", "dvbpr", "--help"])
    assert out.exit_code == 0, out.output
    assert "--lambda-cnn" in out.output and "--layout [32|128|224]" in out.output
    assert "--init-from" not in out.output  # dvbpr has no warm start
    assert "--half " in out.output and "--no-half" not in out.output
    listing = CliRunner().invoke(cli, ["train", "generator", "--help"]).output
    assert "progan" in listing and "dvbpr-gan" in listing


def test_gis_train_runs_and_resumes_a_plugin_trainer(toy_plugin, tmp_path):
    data = save_dataset(toy_dataset(), tmp_path / "toy.npz")
    out = tmp_path / "run"
    args = ["train", "generator", "toy", "--data", str(data), "--out", str(out), "--threads",
            "1", "--no-progress", "--betas", "0.8,0.9", "--no-noisy"]
    res = CliRunner().invoke(cli, [*args, "--max-steps", "3"])
    assert res.exit_code == 0, res.output
    assert f"checkpoint: {out / 'toy.json'}" in res.output
    _, meta = load_checkpoint(out / "checkpoint.safetensors")
    assert meta["opt.param_groups"][0]["betas"] == [0.8, 0.9]
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 2 and "is not empty: pass --resume" in again.output
    res = CliRunner().invoke(cli, [*args, "--resume"])
    assert res.exit_code == 0, res.output
    assert json.loads((out / "toy.json").read_text())["step"] == 8
    bad = CliRunner().invoke(cli, [*args[:-4], "--betas", "0.8", "--out", str(tmp_path / "b")])
    assert bad.exit_code == 2 and bad.output.count("\n") == 1
    assert "--betas takes 2 comma-separated values" in bad.output
    none = CliRunner().invoke(cli, ["train", "generator", "untrained", "--out", str(tmp_path)])
    assert none.exit_code == 2 and "cannot be trained by gis" in none.output


def test_resume_into_a_folder_without_the_run_is_refused(toy_plugin, tmp_path):
    """`--resume` names a folder that holds files but not this trainer's checkpoint (the data
    folder, another model's run): refused, nothing written into it (a new user's trial:
    dvbpr trained into the dataset folder and beside a progan run)."""
    data = save_dataset(toy_dataset(), tmp_path / "toy.npz")
    shop = tmp_path / "shop"
    (shop / "images").mkdir(parents=True)
    (shop / "interactions.csv").write_text("user_id,item_id\n")
    other = tmp_path / "other-run"
    other.mkdir()
    (other / "train-state.safetensors").write_bytes(b"another trainer's")
    for folder in (shop, other):
        before = sorted(p.name for p in folder.iterdir())
        for resume in (["--resume"], []):
            res = CliRunner().invoke(cli, ["train", "generator", "toy", "--data", str(data),
                                           "--out", str(folder), "--max-steps", "1",
                                           "--no-progress", *resume])
            assert res.exit_code == 2, res.output
            assert "but no run to continue (no checkpoint.safetensors)" in res.output
            assert res.output.count("\n") == 1
        assert sorted(p.name for p in folder.iterdir()) == before

    # a run killed before its first checkpoint left its log, reals grid and a hidden partial:
    # that is this run's own, and --resume starts it again there
    killed = tmp_path / "killed"
    (killed / "samples").mkdir(parents=True)
    (killed / "samples" / "reals.png").write_bytes(b"png")
    (killed / "log.jsonl").write_text("")
    (killed / ".checkpoint.safetensors.1@host.x.partial.safetensors").write_bytes(b"")
    res = CliRunner().invoke(cli, ["train", "generator", "toy", "--data", str(data), "--out",
                                   str(killed), "--max-steps", "1", "--no-progress",
                                   "--resume"])
    assert res.exit_code == 0, res.output
    assert (killed / "checkpoint.safetensors").is_file()


def test_save_reserve_is_a_small_share_of_the_budget():
    from gis.training import save_reserve_s

    assert save_reserve_s(None) == 0.0
    assert save_reserve_s(0.5) == 2.0 and save_reserve_s(10) == 20.0
    assert save_reserve_s(5) == pytest.approx(12.0)
    assert math.isclose(save_reserve_s(1), 2.4)


def test_domain_classifier_resumes_within_an_epoch_exactly(tmp_path):
    """The classifier's run: a one-cycle scheduler and an epoch order drawn from the training
    stream, both restored when a session ends within an epoch."""
    from gis_fashion_colors.classifier import ClassifierTrainer

    from gis.data import load_dataset

    fc = load_dataset("fashion-colors")
    opts = {"epochs": 2, "limit": 256, "seed": 5, "progress": False, "threads": 1}
    train(ClassifierTrainer, fc, out=tmp_path / "a", **opts)  # 4 steps per epoch
    train(ClassifierTrainer, fc, out=tmp_path / "b", max_steps=3, **opts)
    _, mid = load_checkpoint(tmp_path / "b" / "checkpoint.safetensors")
    assert mid["classifier_state"]["step"] == 3 and mid["sched.scheduler"]["last_epoch"] == 3
    train(ClassifierTrainer, fc, out=tmp_path / "b", resume=True, progress=False, threads=1)
    ta, ma = load_checkpoint(tmp_path / "a" / "checkpoint.safetensors")
    tb, mb = load_checkpoint(tmp_path / "b" / "checkpoint.safetensors")
    assert sorted(ta) == sorted(tb)
    for k in ta:
        torch.testing.assert_close(ta[k], tb[k], rtol=0, atol=0, msg=k)
    ha, hb = ([{k: v for k, v in row.items() if k != "time_s"} for row in m["classifier_state"]
               ["history"]] for m in (ma, mb))
    assert ha == hb and len(ha) == 2
    card = json.loads((tmp_path / "b" / "domain-classifier.json").read_text())
    assert card["training"]["epochs_completed"] == 2 and len(card["commands"]) == 2


def test_a_session_shorter_than_its_log_interval_still_reports_its_losses(tmp_path):
    """LossLog.peek: the mean of the pending steps without logging them (they stay for the
    next line and the checkpoint), so a 3-step run's summary and card are not `losses {}`."""
    from gis.training.log import LossLog

    log = LossLog(tmp_path / "log.jsonl", every=20)
    assert log.peek() == {}
    for v in (1.0, 2.0, 6.0):
        log.add({"loss_d": torch.tensor(v), "loss_g": torch.tensor(-v)})
    assert log.peek() == {"loss_d": 3.0, "loss_g": -3.0}
    assert len(log.pending) == 3 and log.state()["values"][2] == [6.0, -6.0]
    assert log.means() == {"loss_d": 3.0, "loss_g": -3.0} and log.peek() == {}
