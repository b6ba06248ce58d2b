"""A gis command stopped by SIGTERM or Ctrl-C leaves no partial or hidden folder behind; one
killed with SIGKILL leaves hidden temporary entries that the next write there removes; a
training run stops at a step boundary with a whole, resumable checkpoint (case
output-permissions; gis.interrupts)."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from gis.cli import cli
from gis.interrupts import Stopped, deferred_stop, interrupt_behind, stop_signals_raise
from gis.io import atomic_folder, atomic_path, remove_stale_partials, removed_if_left_empty

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "GIS_THREADS": "1"}

pytestmark = pytest.mark.skipif(signal.getsignal(signal.SIGTERM) != signal.SIG_DFL,
                                reason="the test runner handles SIGTERM itself")


@pytest.fixture(autouse=True)
def python_sigint_handler():
    """These tests raise SIGINT in-process: start from Python's own handler even where the
    launching shell made the process ignore SIGINT (a job started with `&`), which gis rightly
    leaves ignored."""
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)


def start_gis(args, cwd: Path, umask: int = 0o022) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "from gis.cli import main; main()",
                             *map(str, args)], cwd=cwd, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: os.umask(umask))


def wait_for(procs, ready, timeout: float = 90.0):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        value = ready()
        if value:
            return value
        for p in procs:
            if p.poll() is not None:
                pytest.fail(f"gis ended (status {p.returncode}) too early: "
                            f"{p.stderr.read()[-2000:]}")
        time.sleep(0.02)
    for p in procs:
        p.kill()
    pytest.fail("timed out")


def entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ----------------------------------------------------------------------------- in process
def test_sigterm_raises_inside_gis_and_is_restored_after():
    with pytest.raises(Stopped) as err, stop_signals_raise():
        signal.raise_signal(signal.SIGTERM)
    assert err.value.signum == signal.SIGTERM and isinstance(err.value, KeyboardInterrupt)
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    # a signal the embedding program ignores (nohup: SIGHUP) stays ignored
    old = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with stop_signals_raise():
            signal.raise_signal(signal.SIGHUP)
            assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, old)


def _raised(exc: BaseException, cause: BaseException | None = None,
            implicit: bool = False) -> BaseException:
    """``exc`` as Python leaves it after ``raise exc from cause`` (or, ``implicit``, raised
    while handling ``cause``)."""
    try:
        try:
            raise cause if cause is not None else exc
        except BaseException:
            if cause is None:
                raise
            if implicit:
                raise exc  # noqa: B904 (the implicit __context__ is what is tested)
            raise exc from cause
    except BaseException as caught:
        return caught


def test_interrupt_behind_finds_the_stop_in_an_errors_chain():
    assert interrupt_behind(ValueError("x")) is None
    ki = KeyboardInterrupt()
    assert interrupt_behind(ki) is ki
    err = _raised(ImportError("initialization failed"), ki)
    assert interrupt_behind(err) is ki
    stop = Stopped(signal.SIGTERM)
    found = interrupt_behind(_raised(OSError("write"), stop, implicit=True))
    assert found is stop and found.signum == signal.SIGTERM
    plain = _raised(RuntimeError("a"), ValueError("b"))
    assert interrupt_behind(plain) is None
    assert interrupt_behind(_raised(ValueError("a deliberate error"), ki)) is ki
    hidden = _raised(ValueError("raised from None"), KeyboardInterrupt(), implicit=True)
    hidden.__suppress_context__ = True  # as `raise ... from None` leaves it
    assert interrupt_behind(hidden) is None
    looped = ValueError("loop")
    looped.__context__ = RuntimeError("back")
    looped.__context__.__context__ = looped  # a cycle ends the walk
    assert interrupt_behind(looped) is None


def test_a_deferred_stop_acts_when_the_block_ends_and_a_second_at_once():
    steps, seen = [], []
    with pytest.raises(Stopped), stop_signals_raise():
        with deferred_stop(lambda r: seen.append(r.name)) as stop:
            for step in range(5):
                if stop.requested:
                    break
                steps.append(step)
                if step == 1:
                    signal.raise_signal(signal.SIGTERM)  # mid-step: the step finishes
                    steps.append("end of step 1")
    assert steps == [0, 1, "end of step 1"] and seen == ["SIGTERM"]
    with pytest.raises(KeyboardInterrupt) as err, deferred_stop() as stop:
        signal.raise_signal(signal.SIGINT)
        assert stop.requested
        signal.raise_signal(signal.SIGINT)  # again: now
        pytest.fail("the second Ctrl-C did not stop the block")
    assert not isinstance(err.value, Stopped)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.parametrize("signum, exc", [(signal.SIGTERM, Stopped),
                                         (signal.SIGINT, KeyboardInterrupt)])
def test_a_stopped_folder_or_file_leaves_nothing(tmp_path, signum, exc):
    with pytest.raises(exc), stop_signals_raise(), atomic_folder(tmp_path / "out") as tmp:
        (tmp / "sub").mkdir()
        (tmp / "result.json").write_text("{}")
        signal.raise_signal(signum)
    with pytest.raises(exc), stop_signals_raise(), atomic_path(tmp_path / "a.json") as tmp:
        tmp.write_text("{")
        signal.raise_signal(signum)
    with pytest.raises(exc), stop_signals_raise(), removed_if_left_empty(
            tmp_path / "run" / "deep", keep="checkpoint.safetensors"):
        (tmp_path / "run" / "deep" / "samples").mkdir(parents=True)
        (tmp_path / "run" / "deep" / "samples" / "reals.png").write_bytes(b"png")
        signal.raise_signal(signum)  # before the first checkpoint: nothing to resume
    assert entries(tmp_path) == []


def test_remove_stale_partials_only_takes_dead_writers_on_this_host(tmp_path):
    host = socket.gethostname()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    names = {f".out.partial.{dead}@{host}.a1b2c3d4": "dir",           # killed: removed
             f".x.json.{dead}@{host}.a1b2c3d4.partial.json": "file",  # killed: removed
             f".out.partial.{os.getpid()}@{host}.a1b2c3d4": "dir",    # alive: kept
             f".out.partial.{dead}@another-host.a1b2c3d4": "dir",     # elsewhere: kept
             f".prev.old.{dead}@{host}.x": "dir",                     # put back as prev
             ".bashrc": "file", "out": "dir"}
    for name, kind in names.items():
        (tmp_path / name).mkdir() if kind == "dir" else (tmp_path / name).write_text("x")
    (tmp_path / f".prev.old.{dead}@{host}.x" / "result.json").write_text("{}")
    gone = remove_stale_partials(tmp_path)
    assert sorted(p.name for p in gone) == sorted(
        [f".out.partial.{dead}@{host}.a1b2c3d4", f".x.json.{dead}@{host}.a1b2c3d4.partial.json",
         "prev"])
    assert entries(tmp_path) == sorted([".bashrc", "out", "prev",
                                        f".out.partial.{os.getpid()}@{host}.a1b2c3d4",
                                        f".out.partial.{dead}@another-host.a1b2c3d4"])
    assert (tmp_path / "prev" / "result.json").exists()


# ----------------------------------------------------------------------------- gis commands
def test_gis_invert_stopped_or_killed_while_writing(tmp_path):
    """SIGTERM while the result is built in its hidden folder: exit 143, nothing left.
    SIGKILL there: the hidden folder stays until the next write into that folder."""
    a, b = tmp_path / "term", tmp_path / "kill"
    a.mkdir(), b.mkdir()
    command = ["invert", "--steps", "400", "--restarts", "1", "-q", "--out", "inv"]
    procs = [start_gis(command, a), start_gis(command, b)]
    wait_for(procs, lambda: all(any(n.startswith(".inv.partial.") for n in entries(folder))
                                for folder in (a, b)))
    term, kill = procs
    term.send_signal(signal.SIGTERM)
    kill.send_signal(signal.SIGKILL)
    _, err = term.communicate(timeout=60)
    kill.communicate(timeout=60)
    assert term.returncode == 128 + signal.SIGTERM, err
    assert err.strip().splitlines()[-1] == "Interrupted (SIGTERM)."
    assert entries(a) == []
    assert kill.returncode == -signal.SIGKILL
    (left,) = entries(b)
    assert left.startswith(f".inv.partial.{kill.pid}@")
    with atomic_folder(b / "next") as tmp:  # gis writes there again
        (tmp / "result.json").write_text("{}")
    assert entries(b) == ["next"]


def test_gis_train_stopped_by_sigterm_saves_at_a_step_boundary(tmp_path):
    from test_progan_train import tiny_dataset
    from test_resume import tiny_progan_command

    from gis.data import save_dataset
    from gis.training import load_checkpoint

    data = save_dataset(tiny_dataset(res=8), tmp_path / "tiny.npz")
    command = tiny_progan_command(data, kimg="0.4", checkpoint_every_s="1e9")
    run = tmp_path / "run"
    proc = start_gis([*command, "--out", run], tmp_path, umask=0o027)
    wait_for([proc], lambda: (run / "log.jsonl").exists())  # within the loop
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    lines = err.strip().splitlines()
    assert lines[-1] == "Interrupted (SIGTERM)."
    assert lines[0] == ("SIGTERM: stopping after this step and saving a resumable checkpoint "
                        "(again to stop at once, losing the steps since the last checkpoint)")
    _, meta = load_checkpoint(run / "checkpoint.safetensors")
    step = meta["progan_state"]["step"]
    assert 0 < step < 200 and not meta["progan_state"]["done"]
    assert lines[1] == (f"SIGTERM: stopped after step {step}, checkpoint saved in "
                        f"{run / 'checkpoint.safetensors'}: the same command again "
                        "continues it")
    assert [p.name for p in run.rglob(".*")] == []
    # everything follows the umask (0o027 here): checkpoint, exports, samples, log
    modes = {str(p.relative_to(run)): stat.S_IMODE(p.stat().st_mode)
             for p in [run, *run.rglob("*")]}
    assert {"checkpoint.safetensors", "progan.safetensors", "log.jsonl"} <= set(modes)
    assert modes == {k: 0o750 if (run / k).is_dir() else 0o640 for k in modes}
    # it goes on exactly: the same command again ends where an uninterrupted run ends
    for out in (run, tmp_path / "whole"):
        res = CliRunner().invoke(cli, [*map(str, command), "--max-steps", str(step + 8),
                                       "--out", str(out)])
        assert res.exit_code == 0, res.output
    ta, _ = load_checkpoint(run / "checkpoint.safetensors")
    tb, mb = load_checkpoint(tmp_path / "whole" / "checkpoint.safetensors")
    assert mb["progan_state"]["step"] == step + 8
    for k in ta:
        torch.testing.assert_close(ta[k], tb[k], rtol=0, atol=0, msg=k)
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log] == list(range(4, step + 9, 4))
