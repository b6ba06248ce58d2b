"""Broken plugins are left out entirely and said so once; duplicate names break only the later
plugin; typed factory options are checked; `gis plugins check` runs a loss term's forward."""

from __future__ import annotations

import importlib.metadata
import sys
import types

import pluggy
import pytest
import torch
from click.testing import CliRunner

import gis
from gis import plugins
from gis.cli import cli
from gis.errors import GisUsageError


@pytest.fixture
def entry_points_first(monkeypatch):
    """Declare extra ``gis`` entry points (module objects), loaded *before* gis's own, and
    reload the plugins."""
    real = importlib.metadata.entry_points
    added = []

    def add(name, module):
        monkeypatch.setitem(sys.modules, module.__name__, module)
        added.append(importlib.metadata.EntryPoint(name=name, value=module.__name__,
                                                   group="gis"))
        monkeypatch.setattr(importlib.metadata, "entry_points", lambda **kw: (
            [*added, *real(**kw)] if kw.get("group") == "gis" else real(**kw)))
        plugins.reload_plugins()

    yield add
    monkeypatch.undo()
    plugins.reload_plugins()


class Flat(gis.LossTerm):
    def forward(self, ctx):
        return ctx.images.mean()


def _module(name: str, **hooks) -> types.ModuleType:
    module = types.ModuleType(name)
    for hook, function in hooks.items():
        setattr(module, hook, gis.hookimpl(function, specname=hook))
    return module


def _plugins_output() -> str:
    res = CliRunner().invoke(cli, ["plugins"])
    assert res.exit_code == 0, res.output
    return res.output


# ----------------------------------------------------------------------------- argument names
def register_generators(register):
    register("half-loaded-gen", lambda **kw: None)


def register_losses(reg):  # the hook passes `register`
    pass


WRONG = ("hook register_losses(reg): Argument(s) {'reg'} are declared in the hookimpl but can "
         "not be found in the hookspec; register_losses takes (register)")


def test_a_hook_with_wrong_argument_names_leaves_the_whole_plugin_out(entry_points_first,
                                                                       capsys):
    entry_points_first("wrongarg", _module("gis_wrongarg_plugin",
                                           register_generators=register_generators,
                                           register_losses=register_losses))
    error = f"{WRONG}; {plugins.exclusion_hint('wrongarg')}"
    assert capsys.readouterr().err == ("gis: plugin 'wrongarg' (entry point wrongarg = "
                                       f"gis_wrongarg_plugin) is broken: {error}\n")
    assert plugins.pm.get_plugin("wrongarg") is None  # nothing half-registered
    assert "half-loaded-gen" not in plugins.generators and "progan" in plugins.generators
    out = _plugins_output()
    assert out.count("wrongarg:") == 1
    assert f"wrongarg: entry point wrongarg = gis_wrongarg_plugin\n    BROKEN: {error}\n" in out
    res = CliRunner().invoke(cli, ["plugins", "check", "wrongarg"])
    assert res.exit_code == 1
    assert res.output.splitlines()[-2:] == [f"  FAILED  {error}", "1 checked: 1 failed"]


def test_register_plugin_with_wrong_argument_names_registers_nothing():
    class Wrong:
        @gis.hookimpl
        def register_generators(self, register):
            register("half-loaded-gen", lambda **kw: None)

        @gis.hookimpl
        def register_losses(self, reg):
            pass

    plugin = Wrong()
    with pytest.raises(pluggy.PluginValidationError) as e:
        gis.register_plugin(plugin, name="wrong")
    assert str(e.value) == WRONG
    assert plugins.pm.get_name(plugin) is None and plugins.pm.get_plugin("wrong") is None
    assert "half-loaded-gen" not in plugins.generators


# ----------------------------------------------------------------------------- duplicate names
def _clash_losses(register):
    register("identity", lambda **kw: Flat())


def _clash_datasets(register):
    register("fashion-colors", lambda **kw: None)


def _other_losses(register):
    register("clash-own-loss", lambda **kw: Flat())


def _other_generators(register):
    register("clash-own-gen", lambda **kw: None)


@pytest.mark.parametrize("hook, function, kind, name, owner", [
    ("register_losses", _clash_losses, "loss", "identity", "losses"),
    ("register_datasets", _clash_datasets, "dataset", "fashion-colors", "fashion_colors"),
])
def test_a_third_party_duplicate_breaks_only_its_own_plugin(entry_points_first, capsys, hook,
                                                            function, kind, name, owner):
    hooks = {"register_generators": _other_generators, "register_losses": _other_losses,
             hook: function}
    entry_points_first("aaa_clash", _module("gis_clash_plugin", **hooks))
    plugins.list_plugins()  # builds every registry
    error = (f"{kind} name {name!r} already registered by plugin {owner!r}; "
             f"{plugins.exclusion_hint('aaa_clash')}")
    assert capsys.readouterr().err == (f"gis: plugin 'aaa_clash' (module gis_clash_plugin) is "
                                       f"broken: {error}\n")
    out = _plugins_output()  # exit status 0
    assert out.count("aaa_clash:") == 1 and f"    BROKEN: {error}\n" in out
    # gis's own object wins, and nothing of the broken plugin is registered
    assert plugins.REGISTRIES[f"{kind}s" if kind != "loss" else "losses"].get(name).plugin \
        == owner
    assert "clash-own-gen" not in plugins.generators and "clash-own-loss" not in plugins.losses
    assert isinstance(gis.get_loss("identity"), gis.LossTerm)
    res = CliRunner().invoke(cli, ["plugins", "check", "aaa_clash"])
    assert res.exit_code == 1 and res.output.splitlines()[-1] == "1 checked: 1 failed"


# ----------------------------------------------------------------------------- typed options
def test_typed_factory_options_are_checked(tmp_path):
    prefix = "generator 'progan' from plugin 'progan' (module gis_progan): option clamp takes " \
             "true or false, got "
    for value, shown in (("no", '"no"'), (None, "null"), (1, "1")):
        with pytest.raises(GisUsageError) as e:
            gis.get_generator("progan", clamp=value)
        assert str(e.value) == prefix + shown
    assert gis.get_generator("progan", clamp=False).clamp is False
    for option in ("clamp=no", "clamp=null", "critic=yes"):
        res = CliRunner().invoke(cli, ["shift", "--users", "u0001", "--out", str(tmp_path / "o"),
                                       "--generator-option", option, "--quiet"])
        assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1, res.output
        assert res.output.startswith(f"Error: generator 'progan' from plugin 'progan' (module "
                                     f"gis_progan): option {option.split('=')[0]} takes true or "
                                     "false, got ")
    assert list(tmp_path.iterdir()) == []
    label = "recommender 'dvbpr' from plugin 'dvbpr' (module gis_dvbpr)"
    tiny = dict(pretrained=False, user_ids=["a", "b"], width=0.25, k=4)
    assert gis.get_recommender("dvbpr", layout=32, **tiny).embedding_dim == 4  # 32 -> "32"
    for options, message in [
        ({"layout": "33"}, f"{label}: option layout takes one of 32, 128, 224 or null, got "
                           '"33"'),
        ({"k": "a"}, f"{label}: option k takes an integer, got \"a\""),
        ({"k": 2.5}, f"{label}: option k takes an integer, got 2.5"),
        ({"width": "x"}, f"{label}: option width takes a number, got \"x\""),
        ({"k": 0}, "dvbpr needs k >= 1 and width > 0, got k=0 and width=0.25"),
        ({"pretrained": "false"}, f"{label}: option pretrained takes true or false, got "
                                  '"false"'),
    ]:
        with pytest.raises(GisUsageError) as e:
            gis.get_recommender("dvbpr", **{**tiny, **options})
        assert str(e.value) == message
    with pytest.raises(GisUsageError, match="dvbpr-robust' .*option width takes a number"):
        gis.get_recommender("dvbpr-robust", width="x")


def test_an_annotation_that_does_not_evaluate_leaves_the_others_checked():
    from gis.options import check_options

    def factory(*, thing: NotImportedHere | None = None, flag: bool = True):  # noqa: F821
        return thing, flag

    entry = types.SimpleNamespace(factory=factory, label="loss 'x'")
    assert check_options(entry, {"thing": 3, "flag": False}) == {"thing": 3, "flag": False}
    with pytest.raises(GisUsageError, match='^loss \'x\': option flag takes true or false, '
                                            'got "no"$'):
        check_options(entry, {"flag": "no"})


# ----------------------------------------------------------------------------- loss forward
class NaNTerm(gis.LossTerm):
    stages = ("shift",)

    def forward(self, ctx):
        return ctx.images.mean((1, 2, 3)) * float("nan")


class DetachedTerm(gis.LossTerm):
    def forward(self, ctx):
        return ctx.images.detach().mean()


class WrongShapeTerm(gis.LossTerm):
    stages = ("invert",)

    def forward(self, ctx):
        return ctx.images.mean((2, 3))


class GoodTerm(gis.LossTerm):
    def forward(self, ctx):
        return (ctx.images - ctx.images.mean()).abs().flatten(1).mean(1)


class TermsPlugin:
    @gis.hookimpl
    def register_losses(self, register):
        for name, term in (("nan-term", NaNTerm), ("detached-term", DetachedTerm),
                           ("wrong-shape-term", WrongShapeTerm), ("good-term", GoodTerm)):
            register(name, lambda term=term, **kw: term())


@pytest.fixture
def terms_plugin():
    name = gis.register_plugin(TermsPlugin(), name="terms")
    yield name
    gis.unregister_plugin(name)


@pytest.mark.parametrize("name, error", [
    ("nan-term", "forward(ctx) at stage 'shift' returned non-finite values (NaN or inf)"),
    ("detached-term", "forward(ctx) at stage 'invert' has no gradient with respect to "
                      "ctx.images (nor the latents or shifts): it cannot steer the optimisation"),
    ("wrong-shape-term", "forward(ctx) at stage 'invert' returned (2, 3); expected a scalar or "
                         "(2,), one value per image"),
])
def test_plugins_check_runs_a_loss_term(terms_plugin, name, error):
    res = CliRunner().invoke(cli, ["plugins", "check", name])
    assert res.exit_code == 1, res.output
    assert res.output.splitlines()[0] == (f"loss {name!r} from plugin 'terms' (module "
                                          f"{__name__})")
    assert res.output.splitlines()[-2:] == [f"  FAILED  {error}", "1 checked: 1 failed"]


def test_plugins_check_passes_a_good_term_and_the_builtin_ones(terms_plugin):
    res = CliRunner().invoke(cli, ["plugins", "check", "good-term"])
    assert res.exit_code == 0, res.output
    assert res.output.splitlines()[-3:] == [
        "  ok      forward at stage 'invert' on a tiny context -> (2,), finite, with a gradient",
        "  ok      forward at stage 'shift' on a tiny context -> (2,), finite, with a gradient",
        "1 checked: all passed"]
    with torch.random.fork_rng():
        res = CliRunner().invoke(cli, ["plugins", "check", "losses"])
    assert res.exit_code == 0, res.output
    assert res.output.count("on a tiny context") >= 9  # every built-in term, every stage


def test_a_register_commands_hook_that_raises_leaves_the_plugin_out_entirely(capsys):
    """Its commands (added before it raised) are taken back and its loss is not registered,
    as the docs promise for any failed hook (a new user's trial: `gis trial-hello` still ran
    and the plugin's loss still loaded); the other plugins' commands stay."""
    import click

    def register_losses(register):
        register("trial-flat", Flat)

    def register_commands(cli):
        cli.add_command(click.Command("trial-hello", callback=lambda: None))
        cli.commands["data"].add_command(click.Command("trial-nested", callback=lambda: None))
        raise RuntimeError("half-way")

    name = gis.register_plugin(_module("trialcmd", register_losses=register_losses,
                                       register_commands=register_commands), name="trialcmd")
    try:
        group = click.Group("gis")
        group.add_command(click.Command("shift", callback=lambda: None))
        group.add_command(click.Group("data", commands={"info": click.Command("info")}))
        plugins.add_plugin_commands(group)
        assert "trial-hello" not in group.commands and "shift" in group.commands
        nested = group.commands["data"].commands  # fashion-colors adds `build` there
        assert "trial-nested" not in nested and "info" in nested  # taken back too
        err = capsys.readouterr().err
        assert "plugin 'trialcmd'" in err and "register_commands failed: RuntimeError: half-way" in err
        assert "trial-flat" not in plugins.losses.names() and "identity" in plugins.losses.names()
        with pytest.raises(GisUsageError, match="broken plugins: .*trialcmd"):
            plugins.losses.get("trial-flat")
        info = {p.name: p for p in plugins.list_plugins()}["trialcmd"]
        assert "register_commands failed" in info.error
    finally:
        gis.unregister_plugin(name)
    assert "trialcmd" not in plugins._command_errors


def test_a_misspelt_name_in_gis_plugins_is_said(monkeypatch, capsys):
    """GIS_PLUGINS=losses,trialplg loads `losses` and names 'trialplg' as no installed
    plugin, with the installed names (was silent)."""
    monkeypatch.setenv(plugins.PLUGINS_ENV, "losses,trialplg")
    try:
        plugins.reload_plugins()
        err = capsys.readouterr().err
        assert ("GIS_PLUGINS names 'trialplg', which no installed plugin is called (installed: "
                in err) and "progan" in err
        assert "losses" in {name for name, _ in plugins.pm.list_name_plugin()}
        assert "identity" in plugins.losses.names() and not plugins.generators.names()
    finally:
        monkeypatch.delenv(plugins.PLUGINS_ENV)
        plugins.reload_plugins()
    assert "progan" in plugins.generators.names()
