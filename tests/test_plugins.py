"""The plugin system: registries, discovery through entry points, errors, the CLI listings."""

from __future__ import annotations

import importlib.metadata
import inspect
import os
import subprocess
import sys
import types
from pathlib import Path

import pluggy
import pytest
import torch
from click.testing import CliRunner

import gis
from gis import hookspecs, plugins
from gis.cli import CORE_COMMANDS, GisGroup, add_core_commands, cli
from gis.errors import (
    MissingAssetError,
    PluginContractError,
    UnknownGeneratorError,
    UnknownLossError,
)

ROOT = Path(__file__).resolve().parents[1]
BUILTINS = {"losses", "fashion_colors", "dvbpr", "progan", "dvbpr_gan", "vbpr", "stylegan2", "biggan"}


class TinyGen(gis.Generator):
    def __init__(self):
        super().__init__()
        self.latent_dim, self.resolution, self.card = 4, 2, {}
        self.w = torch.nn.Parameter(torch.ones(12, 4))

    def synthesize(self, z, *, labels=None):
        return torch.tanh(z @ self.w.T).view(-1, 3, 2, 2)


class L1Term(gis.LossTerm):
    """Mean absolute pixel value, per image (B,)."""

    def forward(self, ctx):
        return ctx.images.abs().flatten(1).mean(1)


class FixturePlugin:
    @gis.hookimpl
    def register_generators(self, register):
        register("tiny", lambda **kw: TinyGen(), aliases=("tiny-alias",), description="a test")

    @gis.hookimpl
    def register_losses(self, register):
        register("l1-test", lambda **kw: L1Term())


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
    assert isinstance(gis.get_loss("l1-test"), L1Term)
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


class ClashPlugin:
    @gis.hookimpl
    def register_generators(self, register):
        register("tiny", lambda **kw: TinyGen())


@pytest.fixture
def clash(fixture_plugin):
    name = gis.register_plugin(ClashPlugin(), name="clash")
    yield name
    gis.unregister_plugin(name)


def test_a_duplicate_name_leaves_the_later_plugin_out(clash):
    assert plugins.generators.get("tiny").plugin == "fixture-plugin"  # the first owner keeps it
    assert "clash" in {p.name for p in plugins.list_plugins() if p.broken}


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


def test_uninstalled_source_tree_reads_the_entry_points_from_its_pyproject():
    assert not hasattr(plugins, "BUILTIN_PLUGINS")  # one list: the entry points
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


# ----------------------------------------------------------------------------- checks at load
class TinyRec(gis.Recommender):
    """3 users, K=4; ``width`` changes what embed returns, ``rows`` the rows of theta."""

    def __init__(self, width=4, rows=3):
        super().__init__()
        self.image_size, self.embedding_dim, self.input_range = 2, 4, (-1.0, 1.0)
        self.user_ids = ["u0", "u1", "u2"]
        self.theta = torch.nn.Parameter(torch.ones(rows, 4))
        self.width = width

    def embed(self, images):
        return images.flatten(1)[:, :self.width]

    @property
    def user_vectors(self):
        return self.theta


class NoLatentGen(gis.Generator):
    resolution = 2

    def synthesize(self, z, *, labels=None):
        return torch.zeros(len(z), 3, 2, 2)


def _boom(**options):
    raise RuntimeError("boom\nsecond line")


class BadPlugin:
    @gis.hookimpl
    def register_generators(self, register):
        register("no-latent", lambda **kw: NoLatentGen())
        register("boom", _boom)

    @gis.hookimpl
    def register_recommenders(self, register):
        register("good-rec", lambda **kw: TinyRec())
        register("wide-rec", lambda **kw: TinyRec(width=5))
        register("short-rec", lambda **kw: TinyRec(rows=2))


@pytest.fixture
def bad_plugin():
    name = gis.register_plugin(BadPlugin(), name="bad")
    yield name
    gis.unregister_plugin(name)


def _label(kind, name, plugin="bad"):
    return f"{kind} {name!r} from plugin {plugin!r} (module {__name__})"


def test_missing_attribute_is_one_line(bad_plugin):
    with pytest.raises(PluginContractError) as e:
        gis.get_generator("no-latent")
    assert str(e.value) == (f"{_label('generator', 'no-latent')}: missing attribute 'latent_dim' "
                            "(a gis.Generator sets latent_dim, resolution, output_range, "
                            "num_classes)")


def test_wrong_embed_shape_is_one_line(bad_plugin):
    assert gis.get_recommender("good-rec").embed(torch.zeros(1, 3, 2, 2)).shape == (1, 4)
    with pytest.raises(PluginContractError) as e:
        gis.get_recommender("wide-rec")
    assert str(e.value) == (f"{_label('recommender', 'wide-rec')}: embed returned shape (2, 5); "
                            "expected (2, 4) = (batch, embedding_dim)")


def test_user_vectors_must_match_the_user_ids(bad_plugin):
    with pytest.raises(PluginContractError) as e:
        gis.get_recommender("short-rec")
    assert str(e.value) == (f"{_label('recommender', 'short-rec')}: user_vectors returned shape "
                            "(2, 4); expected (3, 4) = (len(user_ids), embedding_dim)")


def test_a_factory_that_raises_is_wrapped_in_one_line(bad_plugin):
    with pytest.raises(PluginContractError) as e:
        gis.get_generator("boom")
    assert str(e.value) == f"{_label('generator', 'boom')}: the factory raised RuntimeError: boom"
    out = CliRunner().invoke(cli, ["shift", "--generator", "boom", "--out", "x"])
    assert out.exit_code == 1 and "Traceback" not in out.output


class Boom(Exception):
    pass


class FailsMidRun(gis.LossTerm):
    """A third party's term that passes its checks and fails during a run."""

    stages = ("shift",)

    def forward(self, ctx):
        if ctx.step >= 1:
            raise Boom("deliberate failure in forward")
        return ctx.images.mean((1, 2, 3))


class FailingCheck(gis.LossTerm):
    stages = ("shift",)

    def check_models(self, generator, recommender):
        raise ValueError("deliberate failure in check_models")

    def forward(self, ctx):
        return ctx.images.mean((1, 2, 3))


class FailingTermsPlugin:
    @gis.hookimpl
    def register_losses(self, register):
        register("fails-mid-run", lambda **kw: FailsMidRun())
        register("failing-check", lambda **kw: FailingCheck())


def test_a_third_party_plugins_exception_is_one_line_naming_it(tmp_path, monkeypatch):
    """A plugin's code that raises during a run: one line naming the plugin, its module and
    line, exit 1, no traceback, no output folder; GIS_DEBUG=1 lets the exception through.
    gis's own code raising is still a traceback (its defect, for its report)."""
    monkeypatch.delenv("GIS_DEBUG", raising=False)
    name = gis.register_plugin(FailingTermsPlugin(), name="failing-terms")
    try:
        args = ["shift", "--random-latent", "--users", "u0001", "--steps", "3", "--n", "2",
                "--quiet", "--loss", "fails-mid-run=1", "--out", str(tmp_path / "run")]
        res = CliRunner().invoke(cli, args)
        assert res.exit_code == 1 and "Traceback" not in res.output
        line = FailsMidRun.forward.__code__.co_firstlineno + 2  # the raise
        assert res.output.strip().splitlines() == [
            f"Error: plugin 'failing-terms' (module {__name__}, line {line} in forward) raised "
            "Boom: deliberate failure in forward. This is a defect of that plugin: report it "
            "to its authors (GIS_DEBUG=1 shows the traceback)."]
        assert not (tmp_path / "run").exists()
        monkeypatch.setenv("GIS_DEBUG", "1")
        res = CliRunner().invoke(cli, args)
        assert isinstance(res.exception, Boom)
        monkeypatch.delenv("GIS_DEBUG")
        # check_models may refuse with GisUsageError only: anything else is the plugin's defect
        res = CliRunner().invoke(cli, [*args[:-3], "failing-check=1", *args[-2:]])
        assert res.exit_code == 1 and "plugin 'failing-terms'" in res.output
        assert "ValueError: deliberate failure in check_models" in res.output
        res = CliRunner().invoke(cli, ["plugins", "check", "failing-check"])
        assert res.exit_code == 1 and "Traceback" not in res.output
        assert ("check_models(generator, recommender) raised ValueError: deliberate failure "
                "in check_models; it must return None or raise GisUsageError") in res.output
    finally:
        gis.unregister_plugin(name)
    assert plugins.plugin_in_traceback(RuntimeError("not raised")) is None


def test_a_loss_plugin_is_checkable_without_the_builtin_losses(monkeypatch):
    """`GIS_PLUGINS=myplugin gis plugins check ...`: the check's tiny context does not need
    gis's own loss terms."""
    class Mean(gis.LossTerm):
        stages = ("invert", "shift")

        def forward(self, ctx):
            return ctx.images.mean((1, 2, 3))

    class P:
        @gis.hookimpl
        def register_losses(self, register):
            register("mean-brightness", lambda **kw: Mean())

    monkeypatch.setenv("GIS_PLUGINS", "")
    plugins.reload_plugins()
    name = gis.register_plugin(P(), name="alone")
    try:
        assert [e.name for e in plugins.REGISTRIES["losses"]] == ["mean-brightness"]
        res = CliRunner().invoke(cli, ["plugins", "check", "mean-brightness"])
        assert res.exit_code == 0 and "FAILED" not in res.output, res.output
    finally:
        gis.unregister_plugin(name)
        monkeypatch.delenv("GIS_PLUGINS")
        plugins.reload_plugins()
    assert "shift_ce" in [e.name for e in plugins.REGISTRIES["losses"]]


def test_a_loss_term_must_name_known_stages():
    from gis.interfaces import LossTerm

    class Odd(LossTerm):
        stages = ("train",)

    class P:
        @gis.hookimpl
        def register_losses(self, register):
            register("odd", lambda **kw: Odd())

    name = gis.register_plugin(P(), name="odd-plugin")
    try:
        with pytest.raises(PluginContractError) as e:
            gis.get_loss("odd")
        assert str(e.value) == (f"{_label('loss', 'odd', 'odd-plugin')}: stages must be a "
                                "non-empty subset of ('invert', 'shift'), got ('train',)")
    finally:
        gis.unregister_plugin(name)


def test_checks_leave_no_trace():
    class TrainModeGen(TinyGen):
        def synthesize(self, z, *, labels=None):
            return torch.nn.functional.dropout(super().synthesize(z), 0.5, self.training)

    class P:
        @gis.hookimpl
        def register_generators(self, register):
            register("train-mode", lambda **kw: TrainModeGen().train())

    name = gis.register_plugin(P(), name="train-mode-plugin")
    try:
        torch.manual_seed(3)
        expected = torch.rand(2)
        torch.manual_seed(3)
        g = gis.get_generator("train-mode")
        assert torch.equal(torch.rand(2), expected) and g.training
    finally:
        gis.unregister_plugin(name)


def test_builtin_objects_pass_their_checks():
    _, passed = plugins.recommenders.create_checked("dvbpr")
    assert passed[-3:] == ["user_vectors -> (3000, 100) matches the user ids",
                           "embed(2 images 32x32 in input_range) -> (2, 100)",
                           "item_bias -> None"]


# ----------------------------------------------------------------------------- broken plugins
@pytest.fixture
def add_entry_point(monkeypatch):
    """Declare extra ``gis`` entry points (module objects or import paths) and reload."""
    real = importlib.metadata.entry_points
    added = []

    def add(name, module):
        if isinstance(module, types.ModuleType):
            monkeypatch.setitem(sys.modules, module.__name__, module)
            module = module.__name__
        added.append(importlib.metadata.EntryPoint(name=name, value=module, group="gis"))
        monkeypatch.setattr(importlib.metadata, "entry_points",
                            lambda **kw: [*real(**kw), *added])
        plugins.reload_plugins()

    yield add
    monkeypatch.undo()
    plugins.reload_plugins()


def _module_with_misspelt_hook():
    module = types.ModuleType("gis_typo_plugin")

    @gis.hookimpl
    def register_generatorz(register):
        pass

    module.register_generatorz = register_generatorz
    return module


def test_misspelt_hook_in_an_installed_plugin_is_listed_as_broken(add_entry_point, capsys):
    add_entry_point("typo", _module_with_misspelt_hook())
    hint = plugins.exclusion_hint("typo")
    assert hint.startswith("exclude it with GIS_PLUGINS=")
    assert set(hint.split("=")[1].split(",")) == BUILTINS
    error = f"unknown hook 'register_generatorz' (did you mean 'register_generators'?); {hint}"
    assert capsys.readouterr().err == (f"gis: plugin 'typo' (entry point typo = gis_typo_plugin) "
                                       f"is broken: {error}\n")
    out = CliRunner().invoke(cli, ["plugins"])
    assert out.exit_code == 0, out.output
    assert f"typo: entry point typo = gis_typo_plugin\n    BROKEN: {error}\n" in out.output
    assert "progan: entry point progan = gis_progan" in out.output  # the others still load
    assert "progan" in plugins.generators and plugins.pm.get_plugin("typo") is None
    with pytest.raises(UnknownGeneratorError, match=r"broken plugins: typo \(gis plugins"):
        gis.get_generator("nope")


def test_import_error_and_taken_plugin_name_are_listed_as_broken(add_entry_point, capsys):
    add_entry_point("ghost", "gis_no_such_module_xyz")
    add_entry_point("progan", "gis_losses")
    infos = [p for p in plugins.list_plugins() if p.broken]
    assert [(p.name, p.error) for p in infos] == [
        ("ghost", "import failed: ModuleNotFoundError: No module named 'gis_no_such_module_xyz'; "
                  + plugins.exclusion_hint("ghost")),
        ("progan", "the plugin name is taken by entry point progan = gis_progan (gis 0.1.0); "
                   "uninstall one of the two packages")]
    assert CliRunner().invoke(cli, ["plugins"]).exit_code == 0


def test_duplicate_name_names_both_plugins_and_lists_the_second_as_broken(clash):
    message = ("generator name 'tiny' already registered by plugin 'fixture-plugin'; "
               "remove it with gis.unregister_plugin('clash')")
    out = CliRunner().invoke(cli, ["generators"])
    assert out.exit_code == 0 and "[fixture-plugin]" in out.output
    out = CliRunner().invoke(cli, ["plugins"])
    assert out.exit_code == 0
    assert f"clash: registered at run time\n    hooks: register_generators\n    BROKEN: " \
           f"{message}\n" in out.output


def test_a_hook_that_raises_leaves_only_its_plugin_out(capsys):
    class Raising:
        @gis.hookimpl
        def register_generators(self, register):
            raise ImportError("no module named 'stylegan2_ops'")

    gis.register_plugin(Raising(), name="raising")
    try:
        assert "progan" in plugins.generators
        error = ("register_generators failed: ImportError: no module named 'stylegan2_ops'; "
                 "remove it with gis.unregister_plugin('raising')")
        assert capsys.readouterr().err == (f"gis: plugin 'raising' (module {__name__}) is "
                                           f"broken: {error}\n")
        info = next(p for p in plugins.list_plugins() if p.name == "raising")
        assert info.error == error
    finally:
        gis.unregister_plugin("raising")


# ----------------------------------------------------------------------------- gis plugins check
def test_plugins_check_prints_what_passed(fixture_plugin):
    out = CliRunner().invoke(cli, ["plugins", "check", "tiny"])
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert lines[:5] == [_label("generator", "tiny", "fixture-plugin"),
                         "  ok      returned TinyGen, a gis.Generator",
                         "  ok      attributes: latent_dim=4, resolution=2, output_range=(-1, 1), "
                         "num_classes=0",
                         "  ok      card: a ModelCard (no dataset named)",
                         "  ok      sample_latents(2) -> (2, 4)"]
    assert lines[5].startswith("  ok      synthesize -> (2, 3, 2, 2), values in [")
    assert lines[-1] == "1 checked: all passed"
    out = CliRunner().invoke(cli, ["plugins", "check", "fixture-plugin"])
    assert out.exit_code == 0 and out.output.splitlines()[-1] == "2 checked: all passed"


def test_plugins_check_fails_with_the_one_line_reason(bad_plugin):
    out = CliRunner().invoke(cli, ["plugins", "check", "wide-rec"])
    assert out.exit_code == 1
    assert out.output.splitlines()[-2:] == [
        "  FAILED  embed returned shape (2, 5); expected (2, 4) = (batch, embedding_dim)",
        "1 checked: 1 failed"]
    out = CliRunner().invoke(cli, ["plugins", "check", "bad", "--kind", "recommender"])
    assert out.exit_code == 1 and out.output.splitlines()[-1] == "3 checked: 2 failed"
    out = CliRunner().invoke(cli, ["plugins", "check", "nope"])
    assert out.exit_code == 2
    assert out.output.startswith("Error: nothing named 'nope': not a registered generator, ")


class UnweightedPlugin:
    @gis.hookimpl
    def register_generators(self, register):
        def factory(**kw):
            raise MissingAssetError("the unweighted default weights are not installed; train "
                                    "them with `gis train generator unweighted`")
        register("unweighted", factory)
        register("tiny-ok", lambda **kw: NoLatentGen())


def test_plugins_check_missing_weights_is_not_a_failure():
    """An object whose offline asset (default weights) is not installed is NOT CHECKED, with the
    provisioning command, and does not fail the command; a broken one beside it still does."""
    name = gis.register_plugin(UnweightedPlugin(), name="unweighted-plugin")
    try:
        out = CliRunner().invoke(cli, ["plugins", "check", "unweighted"])
        assert out.exit_code == 0, out.output
        assert out.output.splitlines()[-2:] == [
            "  NOT CHECKED  the unweighted default weights are not installed; train them with "
            "`gis train generator unweighted`",
            "1 checked: none failed, 1 not checked (an asset is not installed: see above)"]
        out = CliRunner().invoke(cli, ["plugins", "check", name])
        assert out.exit_code == 1
        assert out.output.splitlines()[-1] == ("2 checked: 1 failed, 1 not checked (an asset is "
                                               "not installed: see above)")
    finally:
        gis.unregister_plugin(name)


# ----------------------------------------------------------------------------- the CLI itself
def test_every_core_command_is_there():
    for _module, name in CORE_COMMANDS:
        assert not (cli.commands[name].help or "").startswith("(unavailable"), \
            cli.commands[name].help


def test_a_core_command_that_fails_to_import_says_why():
    group = GisGroup()
    add_core_commands(group, (("gis_no_such_module_xyz", "ghost"),))
    out = CliRunner().invoke(group, ["ghost", "--out", "x"])
    assert out.exit_code == 1
    assert out.output == ("Error: gis ghost is unavailable: importing gis_no_such_module_xyz "
                          "failed: ModuleNotFoundError: No module named 'gis_no_such_module_xyz' "
                          "(`python -c \"import gis_no_such_module_xyz\"` shows the traceback)\n")
    assert "ghost  (unavailable: importing gis_no_such_module_xyz" in \
        CliRunner().invoke(group, ["--help"]).output
