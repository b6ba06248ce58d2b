"""What gis may do to the folders and files around it: ``--overwrite`` never deletes the
user's own files, impossible ``--out`` and ``--device`` values are one-line errors before
anything is created, a failed ``gis train`` leaves no empty folder, and everything gis writes
follows the user's umask."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import gis
from gis.cli import cli
from gis.errors import GisUsageError
from gis.io import atomic_folder, check_output_folder, removed_if_left_empty

FEW = ["--steps", "3", "--invert-steps", "2", "--n", "3", "--quiet"]
ADVICE = "--overwrite replaces only a folder that gis wrote: choose another --out or delete it " \
         "yourself"


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def one_line_error(res, code=2):
    assert res.exit_code == code, res.output
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1, \
        res.output
    return res.output.strip()


def users_folder(root: Path) -> Path:
    out = root / "mine"
    (out / "mydata" / "sub").mkdir(parents=True)
    (out / "notes.txt").write_text("my notes")
    (out / "mydata" / "sub" / "precious.csv").write_text("a,b\n1,2\n")
    return out


def assert_untouched(out: Path) -> None:
    assert (out / "notes.txt").read_text() == "my notes"
    assert (out / "mydata" / "sub" / "precious.csv").read_text() == "a,b\n1,2\n"


# ----------------------------------------------------------------------------- --overwrite
@pytest.mark.parametrize("command", [["shift", "--users", "u0001"], ["invert"],
                                     ["design", "--user", "u0001", "--category", "Bag"]])
def test_overwrite_refuses_a_folder_gis_did_not_write(tmp_path, command):
    out = users_folder(tmp_path)
    res = run(*command, "--out", out, "--overwrite", *FEW[-1:])
    assert one_line_error(res) == (f"Error: output folder {out} was not written by gis shift, "
                                   f"invert or design (no result.json of theirs): {ADVICE}")
    assert_untouched(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


def test_overwrite_refuses_user_files_inside_a_gis_folder(tmp_path):
    out = users_folder(tmp_path)
    (out / "result.json").write_text(json.dumps({"command": "shift", "files": ["grid.png"]}))
    with pytest.raises(GisUsageError) as e:
        check_output_folder(out, overwrite=True)
    assert str(e.value) == (f"output folder {out} holds mydata, notes.txt, which gis did not "
                            f"write: {ADVICE}")
    assert_untouched(out)


def test_overwrite_replaces_an_empty_folder_or_one_gis_wrote(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert check_output_folder(empty, overwrite=True) == empty
    out = tmp_path / "run"
    out.mkdir()
    for name in ("item.png", "base.png", "grid.png", "variant_00.png", "variant_11.png",
                 "design_03.png", "latents.safetensors", "report.html", "extra.bin"):
        (out / name).write_bytes(b"x")
    (out / "result.json").write_text(json.dumps({"command": "invert", "files": ["extra.bin"]}))
    with atomic_folder(out, overwrite=True) as tmp:
        (tmp / "result.json").write_text("{}")
    assert [p.name for p in out.iterdir()] == ["result.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "run"]


def test_impossible_out_folders_are_one_line_errors(tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    (work / "keep.txt").write_text("keep")
    monkeypatch.chdir(work)
    for out in (".", "..", "./", str(work)):
        res = run("shift", "--users", "u0001", "--out", out, "--overwrite", "--quiet")
        assert one_line_error(res) == (f"Error: --out {Path(out)} is the current folder or one "
                                       "above it: gis writes a new folder of its own, so name "
                                       "one, e.g. --out run1")
    res = run("invert", "--out", "/proc/nope", "--quiet")
    assert one_line_error(res) == ("Error: cannot create output folder /proc/nope (No such file "
                                   "or directory): choose another --out")
    res = run("shift", "--users", "u0001", "--out", "keep.txt/run", "--quiet")
    assert one_line_error(res) == (f"Error: cannot create output folder keep.txt/run: "
                                   f"{work / 'keep.txt'} is not a folder: choose another --out")
    assert sorted(p.name for p in work.iterdir()) == ["keep.txt"]


# ----------------------------------------------------------------------------- devices
@pytest.mark.parametrize("device, reason", [
    ("meta", "gis computes only on cpu, cuda, mps or xpu devices this machine has"),
    ("mps", f"this torch ({torch.__version__}) or machine has no Apple GPU (MPS) support"),
])
def test_unusable_devices_are_refused_before_anything_is_created(tmp_path, device, reason):
    if device == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has an Apple GPU")
    out = tmp_path / "out"
    line = f"Error: device {device!r} requested but {reason}: pass --device cpu"
    for command in (["shift", "--users", "u0001"], ["invert"],
                    ["design", "--user", "u0001", "--category", "Bag"], ["evaluate"],
                    ["train", "generator", "progan", "--minutes", "0.2"]):
        res = run(*command, "--device", device, "--out", out)
        assert one_line_error(res) == line, command
        assert not out.exists(), command
    res = run("plugins", "check", "progan", "--device", device)
    assert one_line_error(res) == line


# ----------------------------------------------------------------------------- gis train
def test_train_settings_are_checked_before_the_folder_is_made(tmp_path):
    out = tmp_path / "t"
    res = run("train", "generator", "progan", "--out", out, "--lr", "-1", "--minutes", "0.2")
    assert one_line_error(res) == "Error: progan: lr (--lr) must be > 0, got -1.0"
    for args, line in [
        (["--betas", "0.5,1"], "progan: betas (--betas) must be in [0, 1) for each value, got "
                               "(0.5, 1.0)"),
        (["--gp-weight", "-0.1"], "progan: gp_weight (--gp-weight) must be >= 0, got -0.1"),
        (["--sample-every-s", "-5"], "progan: sample_every_s (--sample-every-s) must be >= 0, "
                                     "got -5.0"),
    ]:
        res = run("train", "generator", "progan", "--out", out, *args)
        assert one_line_error(res) == f"Error: {line}"
    res = run("train", "recommender", "dvbpr", "--out", out, "--lambda-theta", "-1")
    assert one_line_error(res) == ("Error: dvbpr: lambda_theta (--lambda-theta) must be >= 0, "
                                   "got -1.0")
    res = run("train", "generator", "dvbpr-gan", "--out", out, "--lr", "0")
    assert one_line_error(res) == "Error: dvbpr-gan: lr (--lr) must be > 0, got 0.0"
    assert list(tmp_path.iterdir()) == []


def test_a_failed_run_leaves_no_empty_folder(tmp_path):
    fresh = tmp_path / "a" / "b"
    with pytest.raises(RuntimeError), removed_if_left_empty(fresh):
        (fresh / "samples").mkdir(parents=True)
        raise RuntimeError("the run failed")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError), removed_if_left_empty(fresh):
        fresh.mkdir(parents=True)
        (fresh / "log.jsonl").write_text("{}\n")  # something to resume from: kept
        raise RuntimeError("the run failed")
    assert (fresh / "log.jsonl").is_file()


def test_a_failed_gis_train_leaves_no_empty_out(tmp_path):
    from test_training import ToyPlugin, toy_dataset

    from gis.data import save_dataset

    data = save_dataset(toy_dataset(), tmp_path / "toy.npz")
    name = gis.register_plugin(ToyPlugin(), name="toy-plugin")
    try:
        res = run("train", "generator", "toy", "--data", data, "--out", tmp_path / "run",
                  "--mode", "nan", "--threads", "1", "--no-progress")
        assert one_line_error(res, 1).startswith("Error: toy training diverged at step 2")
    finally:
        gis.unregister_plugin(name)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["toy.npz"]


# ----------------------------------------------------------------------------- permissions
def test_everything_gis_writes_follows_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        out = tmp_path / "inv"
        res = run("invert", "--steps", "2", "--restarts", "1", "-q", "--out", out)
        assert res.exit_code == 0, res.output
        folder = tmp_path / "folder"
        with atomic_folder(folder) as tmp:
            from safetensors.torch import save_file

            (tmp / "sub").mkdir(mode=0o700)
            save_file({"x": torch.zeros(1)}, str(tmp / "sub" / "t.safetensors"))  # 0600
    finally:
        os.umask(old)
    for path in (out, folder, folder / "sub"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o755, path
    files = [*out.iterdir(), folder / "sub" / "t.safetensors"]
    assert "latents.safetensors" in {p.name for p in files}
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
