"""Interrupted long work loses nothing (issue 16, part 7): a `gis train` or `gis evaluate`
killed with SIGKILL (no clean-up possible) and started again with the same command resumes
from its last saved state and ends exactly where an uninterrupted run ends."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from gis.cli import cli
from gis.data import save_dataset
from gis.errors import CheckpointError
from gis.training import load_checkpoint, read_checkpoint_meta
from gis.training.log import LossLog

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "GIS_THREADS": "1"}


def tiny_progan_command(data, *, kimg: str, checkpoint_every_s: str,
                        resume: bool = True) -> list:
    """`gis train generator progan` on an 8 px tiny dataset. The image plan (not --minutes'
    time plan) makes the schedule a function of the steps; --resume on an empty folder starts
    the run, so the command is the same every time."""
    return ["train", "generator", "progan", "--data", data, "--resolution", "8",
            "--channels", "8,8", "--latent-dim", "8", "--batch-size", "4",
            "--kimg-per-stage", kimg, "--threads", "1", "--checkpoint-every-s",
            checkpoint_every_s, "--sample-every-s", "1e9", "--log-every", "4", "--no-progress",
            *(["--resume"] if resume else []), "--seed", "3"]


def start_gis(args, cwd: Path) -> subprocess.Popen:
    """`gis ARGS` in a new process (the installed CLI's entry point)."""
    return subprocess.Popen([sys.executable, "-c", "from gis.cli import main; main()",
                             *map(str, args)], cwd=cwd, env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def wait_for(proc: subprocess.Popen, ready, timeout: float = 60.0):
    """Poll ``ready()`` until it returns something truthy; fail if the process ends first."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        value = ready()
        if value:
            return value
        if proc.poll() is not None:
            pytest.fail(f"gis ended (status {proc.returncode}) before it was killed: "
                        f"{proc.stderr.read()[-2000:]}")
        time.sleep(0.02)
    proc.kill()
    pytest.fail("timed out waiting for the run to get going")


def kill9(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL


def meta_or_none(path: Path):
    try:
        return read_checkpoint_meta(path) if path.exists() else None
    except CheckpointError:
        return None


def plant_stale_partials(run: Path, pid: int) -> list[Path]:
    """What a process killed while writing leaves (gis.io.atomic_path's temporary names)."""
    owner = f"{pid}@{socket.gethostname()}"
    stale = [run / f".checkpoint.safetensors.{owner}.k1ll3d00.partial.safetensors",
             run / "samples" / f".latest.png.{owner}.k1ll3d00.partial.png"]
    for p in stale:
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(b"half a file")
    return stale


def hidden(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*"))


def log_lines(run: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k != "elapsed_s"}  # wall clock
            for line in (run / "log.jsonl").read_text().splitlines()]


def same_tensors(a: Path, b: Path, prefixes: tuple[str, ...] | None = None) -> int:
    ta, _ = load_checkpoint(a)
    tb, _ = load_checkpoint(b)
    assert sorted(ta) == sorted(tb)
    keys = [k for k in ta if prefixes is None or k.startswith(prefixes)]
    for k in keys:
        torch.testing.assert_close(ta[k], tb[k], rtol=0, atol=0, msg=k)
    return len(keys)


def invoke(args) -> None:
    res = CliRunner().invoke(cli, [str(a) for a in args])
    assert res.exit_code == 0, res.output


# ----------------------------------------------------------------------------- gis train
@pytest.mark.parametrize("resume", [True, False], ids=["with-resume", "plain-command"])
def test_progan_killed_between_checkpoints_resumes_bit_identically(tmp_path, resume):
    """kill -9, then the same command again: it resumes (with --resume, or by itself when the
    folder holds this same command's interrupted run) and ends as an uninterrupted run."""
    from test_progan_train import tiny_dataset

    data = save_dataset(tiny_dataset(res=8), tmp_path / "tiny.npz")
    command = tiny_progan_command(data, kimg="0.24", checkpoint_every_s="0.4", resume=resume)
    killed = tmp_path / "killed"
    proc = start_gis([*command, "--out", killed], tmp_path)
    ckpt = killed / "checkpoint.safetensors"
    meta = wait_for(proc, lambda: (m := meta_or_none(ckpt)) and m["progan_state"]["step"] >= 8
                    and m)
    kill9(proc)
    meta = read_checkpoint_meta(ckpt)  # the last whole checkpoint
    assert not meta["progan_state"]["done"], "the run ended before it was killed"
    stale = plant_stale_partials(killed, proc.pid)

    invoke([*command, "--out", killed])  # the same command again
    invoke([*command, "--out", tmp_path / "whole"])  # an uninterrupted run
    assert all(not p.exists() for p in stale) and hidden(killed) == []
    n = same_tensors(tmp_path / "whole" / "checkpoint.safetensors", ckpt)
    assert n > 40  # G, D, EMA, both Adam states, RNG states
    _, done = load_checkpoint(ckpt)
    assert done["progan_state"]["step"] == 120 and done["progan_state"]["done"]
    assert done["progan_state"]["sessions"] == 2
    # the log: the lines of an uninterrupted run, none twice (lines a killed session wrote
    # after its checkpoint were dropped; the losses waiting for a line were in the checkpoint)
    assert log_lines(killed) == log_lines(tmp_path / "whole")
    assert [e["step"] for e in log_lines(killed)] == list(range(4, 121, 4))
    if not resume:  # the same command on its finished run: nothing to do, one line
        res = CliRunner().invoke(cli, [str(a) for a in [*command, "--out", killed]])
        assert res.exit_code == 2 and "finished run: nothing to do" in res.output
        other = CliRunner().invoke(cli, [str(a) for a in [*command, "--seed", "4", "--out",
                                                          killed]])
        assert other.exit_code == 2 and "--resume" in other.output  # another command


def test_dvbpr_killed_mid_run_resumes_bit_identically(tmp_path):
    from test_dvbpr import tiny_dataset

    data = save_dataset(tiny_dataset(num_users=24, per_user=8), tmp_path / "colours.npz")
    command = ["train", "recommender", "dvbpr", "--data", data, "--epochs", "6",
               "--width", "0.125", "--batch-size", "8", "--lr", "3e-3", "--threads", "1",
               "--eval-negatives", "20", "--no-progress", "--resume", "--seed", "3"]
    killed = tmp_path / "killed"
    proc = start_gis([*command, "--out", killed], tmp_path)
    state = killed / "train-state.safetensors"
    wait_for(proc, lambda: (m := meta_or_none(state)) and m["train_state"]["epoch"] >= 2)
    kill9(proc)
    meta = read_checkpoint_meta(state)
    assert meta["train_state"]["epoch"] < 6, "the run ended before it was killed"

    invoke([*command, "--out", killed])
    invoke([*command, "--out", tmp_path / "whole"])
    assert hidden(killed) == []
    same_tensors(tmp_path / "whole" / "train-state.safetensors", state, ("model.", "optim."))
    same_tensors(tmp_path / "whole" / "tiny-colours.safetensors",
                 killed / "tiny-colours.safetensors")
    _, a = load_checkpoint(tmp_path / "whole" / "train-state.safetensors")
    _, b = load_checkpoint(state)
    drop = ("time_s",)
    for key in ("history", "best"):
        strip = (lambda x: [{k: v for k, v in e.items() if k not in drop} for e in x]) \
            if key == "history" else (lambda x: x)
        assert strip(a["train_state"][key]) == strip(b["train_state"][key]), key
    assert [e["epoch"] for e in b["train_state"]["history"]] == [1, 2, 3, 4, 5, 6]
    assert log_lines(killed) == log_lines(tmp_path / "whole")


def test_loss_log_keeps_whole_lines_up_to_the_checkpoint(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text('{"step": 4, "mse": 1.0}\n{"step": 8, "mse": 0.5}\n{"step": 12, "mse": 0.25}'
                    '\n{"step": 16, "ms')  # killed mid-line
    log = LossLog(path, 4)
    log.trim(8)
    assert path.read_text() == '{"step": 4, "mse": 1.0}\n{"step": 8, "mse": 0.5}\n'
    for v in (0.1, 0.2, 0.7):
        log.add({"mse": torch.tensor(v)})
    saved = json.loads(json.dumps(log.state()))
    again = LossLog(path, 4)
    again.load(saved, torch.device("cpu"))
    assert again.due(12) and not again.due(11)
    assert again.means() == log.means() == {"mse": pytest.approx(1.0 / 3.0)}


# ----------------------------------------------------------------------------- gis evaluate
def test_evaluate_killed_mid_trial_resumes_to_the_uninterrupted_records(tmp_path):
    from gis.evaluation.experiments import EvalSettings, TrialLog, run_experiment
    from gis.evaluation.runs import World

    tiny = ["--trials", "1", "--steps", "2", "--invert-steps", "2", "--n", "3",
            "--n-users", "1,2", "--fid-real", "24", "--quiet"]
    killed = tmp_path / "killed"
    proc = start_gis(["evaluate", "--experiment", "table5", "--out", killed, *tiny], tmp_path)
    # meanwhile, the models the resumed and the uninterrupted runs use (as gis evaluate does)
    world = World.load(generator="progan", baseline_generator="dvbpr-gan",
                       recommender="dvbpr", data="fashion-colors")
    log_file = killed / "table5" / "trials.jsonl"
    wait_for(proc, lambda: log_file.exists() and log_file.read_text().count("\n") >= 1,
             timeout=180)
    kill9(proc)  # within the second (and last) trial, which runs for seconds
    done_before = [json.loads(x) for x in log_file.read_text().splitlines(keepends=True)
                   if x.endswith("\n")]
    assert len(done_before) == 1
    with log_file.open("a") as fh:  # as if killed while appending the next line
        fh.write('{"key": "users-000002-0000", "item"')

    s = EvalSettings(trials=1, shift_steps=2, invert_steps=2, n=3, n_users=(1, 2),
                     fid_real=24)
    resumed = run_experiment("table5", world, s, killed, progress=False)
    whole = run_experiment("table5", world, s, tmp_path / "whole", progress=False)
    assert hidden(killed) == []
    lines = log_file.read_text().splitlines()
    assert [json.loads(x)["key"] for x in lines] == [r["key"] for r in whole]  # once each
    assert resumed[:len(done_before)] == done_before  # whole trials are not run again

    def timeless(r):
        return {k: v for k, v in r.items() if k != "seconds"}

    assert [timeless(r) for r in resumed] == [timeless(r) for r in whole]
    images_a = TrialLog(killed / "table5", s)
    images_b = TrialLog(tmp_path / "whole" / "table5", s)
    for r in whole:
        a, b = images_a.load_images(r["key"]), images_b.load_images(r["key"])
        assert sorted(a) == sorted(b)
        for k in a:
            np.testing.assert_array_equal(a[k].numpy(), b[k].numpy(), err_msg=k)
