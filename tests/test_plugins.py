"""The plugin system: registries, discovery through entry points, errors, the CLI listings."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path

import pluggy
import pytest
import torch
from click.testing import CliRunner

import gis
from gis import hookspecs, plugins
from gis.cli import cli
from gis.errors import DuplicateRegistrationError, UnknownGeneratorError, UnknownLossError

ROOT = Path(__file__).resolve().parents[1]
BUILTINS = {"losses", "fashion_colors", "dvbpr", "progan", "dvbpr_gan"}


class TinyGen(gis.Generator):
    def __init__(self):
        super().__init__()
        self.latent_dim, self.resolution, self.card = 4, 2, {}
        self.w = torch.nn.Parameter(torch.ones(12, 4))

    def synthesize(self, z, *, labels=None):
        return torch.tanh(z @ self.w.T).view(-1, 3, 2, 2)


class FixturePlugin:
    @gis.hookimpl
    def register_generators(self, register):
        register("tiny", lambda **kw: TinyGen(), aliases=("tiny-alias",), description="a test")

    @gis.hookimpl
    def register_losses(self, register):
        register("l1-test", lambda **kw: torch.nn.L1Loss())


@pytest.fixture
def fixture_plugin():
    name = gis.register_plugin(FixturePlugin(), name="fixture-plugin")
    yield name
    gis.unregister_plugin(name)


def test_builtin_plugins_come_from_entry_points():
    infos = {p.name: p for p in plugins.list_plugins()}
    assert BUILTINS <= set(infos)
    for name in BUILTINS:
        assert infos[name].source.startswith("entry point"), infos[name].source


def test_fixture_plugin_appears_in_registries_and_cli(fixture_plugin):
    assert "tiny" in plugins.generators and "tiny-alias" in plugins.generators
    g = gis.get_generator("tiny-alias")
    assert g.synthesize(torch.zeros(2, 4)).shape == (2, 3, 2, 2)
    assert plugins.generators.get("tiny").plugin == "fixture-plugin"
    assert isinstance(gis.get_loss("l1-test"), torch.nn.L1Loss)
    runner = CliRunner()
    out = runner.invoke(cli, ["plugins"])
    assert out.exit_code == 0, out.output
    assert "fixture-plugin: registered at run time" in out.output
    assert "register_generators" in out.output
    out = runner.invoke(cli, ["generators"])
    assert "tiny" in out.output and "tiny-alias" in out.output
    gis.unregister_plugin(fixture_plugin)
    assert "tiny" not in plugins.generators
    gis.register_plugin(FixturePlugin(), name=fixture_plugin)  # for the fixture's teardown


def test_unknown_names_list_what_is_available(fixture_plugin):
    with pytest.raises(UnknownGeneratorError) as e:
        gis.get_generator("nope")
    assert "unknown generator 'nope'" in str(e.value) and "tiny" in str(e.value)
    with pytest.raises(UnknownLossError):
        gis.get_loss("nope")


def test_duplicate_names_are_refused(fixture_plugin):
    class Clash:
        @gis.hookimpl
        def register_generators(self, register):
            register("tiny", lambda **kw: TinyGen())

    gis.register_plugin(Clash(), name="clash")
    try:
        with pytest.raises(DuplicateRegistrationError, match="'tiny'"):
            plugins.generators.names()
    finally:
        gis.unregister_plugin("clash")


def test_misspelt_hook_is_caught():
    class Misspelt:
        @gis.hookimpl
        def register_generatorz(self, register):  # noqa: D401 - the typo is the test
            pass

    with pytest.raises(pluggy.PluginValidationError):
        gis.register_plugin(Misspelt(), name="misspelt")
    if plugins.pm.get_plugin("misspelt") is not None:
        plugins.pm.unregister(name="misspelt")


def test_every_hook_is_documented():
    specs = [f for name, f in inspect.getmembers(hookspecs, inspect.isfunction)
             if name.startswith("register_")]
    assert {f.__name__ for f in specs} >= {"register_generators", "register_recommenders",
                                          "register_losses", "register_datasets",
                                          "register_commands"}
    for f in specs:
        doc = inspect.getdoc(f) or ""
        assert len(doc) > 60 and "Called" in doc, f"hook {f.__name__} lacks documentation"


def test_unknown_generator_on_the_cli_is_one_line():
    out = CliRunner().invoke(cli, ["shift", "--generator", "nope", "--out", "x"])
    assert out.exit_code == 2
    assert out.output.strip().startswith("Error: unknown generator 'nope'")
    assert "Traceback" not in out.output


def _run_gis(args, env_extra=None):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "gis.cli", *args], capture_output=True,
                          text=True, env=env, timeout=120)


def test_environment_variable_restricts_plugins():
    res = _run_gis(["plugins"], {"GIS_PLUGINS": "losses"})
    assert res.returncode == 0, res.stderr
    assert "losses:" in res.stdout and "progan:" not in res.stdout


def test_out_of_tree_plugin_is_discovered_through_its_entry_point(tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--no-index", "--target", str(target),
                    str(ROOT / "examples" / "gis-example-plugin")], check=True, timeout=300)
    env = {"PYTHONPATH": os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")])}
    res = _run_gis(["plugins"], env)
    assert res.returncode == 0, res.stderr
    assert "example: entry point example = gis_example_plugin (gis-example-plugin 0.1.0)" \
        in res.stdout
    res = _run_gis(["losses"], env)
    assert "total-variation" in res.stdout and "[example]" in res.stdout


def test_uninstalled_source_tree_falls_back_to_the_builtin_list():
    code = (
        "import importlib.metadata as md\n"
        "md.entry_points = lambda **kw: []\n"
        "import gis.plugins as p\n"
        "p._gis_installed = lambda: False\n"
        "print(sorted(i.name for i in p.list_plugins()))\n"
        "print(p.list_plugins()[0].source)\n"
        "print('progan' in p.generators)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    names, source, found = res.stdout.strip().splitlines()
    assert set(eval(names)) == BUILTINS  # noqa: S307 - our own repr of a list of str
    assert "source tree, gis not installed" in source and found == "True"
