"""Factory options from the command line: --generator-option and its kin (gis/cli_options.py),
and the registry refusing an option a factory does not take (gis/plugins.py)."""

from __future__ import annotations

import click
import pytest
import torch
from click.testing import CliRunner

import gis
from gis.cli import GisGroup, cli
from gis.cli_options import factory_options, parse_key_values
from gis.errors import GisUsageError


class Const(gis.Generator):
    latent_dim, resolution = 2, 1

    def synthesize(self, z, *, labels=None):
        return torch.tanh(z[:, :1, None, None]).expand(-1, 3, 1, 1)


received: list[tuple[str, dict]] = []


def _strict(*, device="cpu", scale=1.0):
    received.append(("strict", {"scale": scale}))
    return Const()


def _other(**options):
    received.append(("other", options))
    return Const()


class OptionsPlugin:
    @gis.hookimpl
    def register_generators(self, register):
        register("strict", _strict)
        register("other", _other)


@pytest.fixture
def options_plugin():
    name = gis.register_plugin(OptionsPlugin(), name="options")
    received.clear()
    yield name
    gis.unregister_plugin(name)


STRICT = f"generator 'strict' from plugin 'options' (module {__name__})"


def test_option_values_are_json_scalars_else_text():
    assert parse_key_values(["a=3", "b=0.5", "c=true", "d=null", "e=text", 'f="32"', "g=[1]",
                             "h=", "i=x=y"], "--x") == {
        "a": 3, "b": 0.5, "c": True, "d": None, "e": "text", "f": "32", "g": "[1]", "h": "",
        "i": "x=y"}
    with pytest.raises(GisUsageError, match=r"^--x expects KEY=VALUE with KEY a name, got 'a'$"):
        parse_key_values(["a"], "--x")
    with pytest.raises(GisUsageError, match=r"^--x a given twice$"):
        parse_key_values(["a=1", "a=2"], "--x")


def test_an_option_the_factory_does_not_take_is_refused(options_plugin):
    with pytest.raises(GisUsageError) as e:
        gis.get_generator("strict", colour=1)
    # from Python every keyword is the caller's to pass: all are listed
    assert str(e.value) == f"{STRICT} takes no option 'colour'; its options: device, scale"
    assert received == []


def _options_command():
    @click.command()
    @click.option("--generator", "generator_name", default="strict")
    @factory_options("generator")
    def make(generator_name):
        gis.get_generator(generator_name)
        gis.get_generator("other")  # another generator: the options are not its own

    group = GisGroup()
    group.add_command(make)
    return group


def test_generator_options_reach_the_named_factory(options_plugin):
    group = _options_command()
    out = CliRunner().invoke(group, ["make", "--generator-option", "scale=0.5"])
    assert out.exit_code == 0, out.output
    assert received == [("strict", {"scale": 0.5}), ("other", {})]
    cases = {"colour=red": f"{STRICT} takes no option 'colour'; its options: scale; set by their own flags: device (--device)",
             "device=cuda": "--generator-option device: use --device",
             "scale": "--generator-option expects KEY=VALUE with KEY a name, got 'scale'"}
    for value, message in cases.items():
        out = CliRunner().invoke(group, ["make", "--generator-option", value])
        assert (out.exit_code, out.output) == (2, f"Error: {message}\n")


def test_commands_that_build_objects_take_factory_options():
    for name, kinds in {"shift": ("generator", "recommender", "dataset"),
                        "invert": ("generator", "dataset"), "design": ("generator", "recommender"),
                        "evaluate": ("generator", "recommender", "dataset")}.items():
        flags = {o for p in cli.commands[name].params for o in p.opts}
        assert {f"--{k}-option" for k in kinds} <= flags, name
