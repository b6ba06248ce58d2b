"""Every ``--device`` of every command (core and plugin) goes through one check while the
command line is parsed (``gis.cli_options.DEVICE`` -> ``gis.training.resolve_device``): a
device this machine cannot use is a one-line error, exit status 2, before anything is
created (case device-mps-traceback)."""

from __future__ import annotations

import click
import pytest
import torch
from click.testing import CliRunner

import gis
from gis.cli import cli
from gis.cli_options import DEVICE, DeviceType, device_argument
from gis.errors import GisUsageError
from gis.training import resolve_device


def _walk(group: click.Group, path: tuple[str, ...] = ()):
    """(path, command) of every command under ``group``, the lazily built ones included
    (``gis train generator NAME``)."""
    ctx = click.Context(group, info_name=path[-1] if path else "gis")
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if isinstance(command, click.Group):
            yield from _walk(command, (*path, name))
        elif command is not None:
            yield (*path, name), command


def _device_commands() -> dict[tuple[str, ...], click.Command]:
    return {path: cmd for path, cmd in _walk(cli)
            if any("--device" in p.opts for p in cmd.params if isinstance(p, click.Option))}


DEVICE_COMMANDS = _device_commands()

#: device strings torch parses (or not) that this machine cannot compute on
BAD = ["mps", "xpu:0", "meta", "hpu", "cuda:7", "cpu:1", "gpu", "", "cuda:-1"]
if not torch.cuda.is_available():
    BAD.append("cuda")


def test_every_device_option_is_the_checked_type():
    expected = {("shift",), ("invert",), ("design",), ("evaluate",), ("plugins", "check"),
                ("train", "generator", "progan"), ("train", "generator", "dvbpr-gan"),
                ("train", "recommender", "dvbpr"), ("train", "classifier")}
    assert expected <= set(DEVICE_COMMANDS), sorted(DEVICE_COMMANDS)
    for path, cmd in DEVICE_COMMANDS.items():
        (opt,) = [p for p in cmd.params if "--device" in getattr(p, "opts", ())]
        assert isinstance(opt.type, DeviceType), (path, opt.type)
        assert opt.default == "cpu", path


@pytest.mark.parametrize("device", BAD)
@pytest.mark.parametrize("path", sorted(DEVICE_COMMANDS), ids=" ".join)
def test_unusable_device_is_one_line_before_anything_is_created(path, device, tmp_path,
                                                                 monkeypatch):
    monkeypatch.chdir(tmp_path)
    cmd = DEVICE_COMMANDS[path]
    args = [*path, "--device", device]
    if any("--out" in getattr(p, "opts", ()) for p in cmd.params):
        args += ["--out", str(tmp_path / "out")]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.output, res.output
    assert lines[0].startswith("Error: ") and f"{device!r}" in lines[0], lines[0]
    assert lines[0].endswith(("pass --device cpu", "pass cpu, cuda or cuda:N")), lines[0]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("device, message", [
    ("mps", "device 'mps' requested but this torch ({v}) or machine has no Apple GPU (MPS) "
            "support: pass --device cpu"),
    ("xpu", "device 'xpu' requested but this torch ({v}) or machine has no Intel GPU (XPU) "
            "support: pass --device cpu"),
    ("meta", "device 'meta' requested but gis computes only on cpu, cuda, mps or xpu devices "
             "this machine has: pass --device cpu"),
    ("cpu:1", "device 'cpu:1' requested but torch has one CPU device (its threads: "
              "OMP_NUM_THREADS, or --threads where the command has it): pass --device cpu"),
    ("cuda:-1", "unknown device 'cuda:-1': pass cpu, cuda or cuda:N"),
    ("CPU", "unknown device 'CPU': pass cpu, cuda or cuda:N"),
])
def test_resolve_device_says_what_to_pass(device, message):
    if device == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has an Apple GPU")
    if device == "xpu" and torch.xpu.is_available():
        pytest.skip("this machine has an Intel GPU")
    with pytest.raises(GisUsageError) as err:
        resolve_device(device)
    assert str(err.value) == message.format(v=torch.__version__)


def test_cuda_index_and_present_accelerators(monkeypatch):
    assert resolve_device("cpu:0") == torch.device("cpu", 0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(GisUsageError) as err:
        resolve_device("cuda:7")
    assert str(err.value) == ("device 'cuda:7' requested but this machine has 2 CUDA "
                              "device(s): pass cuda:0..cuda:1")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device("mps") == torch.device("mps")


def test_cuda_without_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(GisUsageError, match=r"^device 'cuda' requested but .*: pass --device "
                                            r"cpu$"):
        resolve_device("cuda")


def test_the_type_keeps_the_text_and_the_api_and_scripts_check_too(tmp_path, capsys):
    assert DEVICE.convert("cpu", None, None) == "cpu"
    assert DEVICE.convert(torch.device("cpu"), None, None) == "cpu"
    with pytest.raises(GisUsageError, match="no Intel GPU"):
        gis.get_generator("progan", device="xpu")
    from gis.evaluation.pairs import main

    with pytest.raises(SystemExit) as exit_:
        main(["--device", "meta", "--out", str(tmp_path / "p.json")])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(
        "argument --device: device 'meta' requested but gis computes only on cpu, cuda, mps "
        "or xpu devices this machine has: pass --device cpu")
    assert device_argument("cpu") == "cpu" and list(tmp_path.iterdir()) == []
