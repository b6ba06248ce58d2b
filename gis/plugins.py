"""The plugin manager and the registries that the core owns.

Every plugin, the built-in ones included, is declared in the ``gis`` entry-point group (gis's
own are in its pyproject.toml) and loaded by ``load_plugins``; when gis runs from a source tree
that is not installed (``PYTHONPATH=.:plugins``), the same declarations are read from that
tree's pyproject.toml. ``GIS_PLUGINS`` (comma-separated entry-point names) restricts which
plugins load; ``GIS_PLUGINS=""`` loads none.

A plugin that cannot load (an import error, an unknown or misspelt hook, a hook with wrong
argument names, a plugin name already taken, a hook that raises, an object name another plugin
registered first) is left out entirely with one line on stderr that names it, its module and
how to exclude it; ``list_plugins`` (``gis plugins``) lists it once, as broken. gis's own
plugins register first, so a third-party plugin never displaces a built-in name. Each object a
factory returns is checked at once (``gis.contracts``; docs/PLUGINS.md, "Checks").
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import inspect
import os
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import pluggy

from . import errors, hookspecs
from .errors import one_line
from .options import check_options, cli_scope, factory_options  # noqa: F401 - public here too

ENTRY_POINT_GROUP = "gis"
PLUGINS_ENV = "GIS_PLUGINS"

pm = pluggy.PluginManager("gis")
pm.add_hookspecs(hookspecs)

_loaded = False
_sources: dict[str, str] = {}  # plugin name -> where it came from ("entry point x = m (...)")
_builtin: set[str] = set()  # gis's own plugins (entry points of the gis distribution)
_entry_point_names: list[str] = []  # entry points allowed by GIS_PLUGINS, in load order
_broken: list[PluginInfo] = []  # plugins left out at load time
_hook_errors: dict[str, str] = {}  # plugin name -> why one of its registry hooks failed
_command_errors: dict[str, str] = {}  # plugin name -> why its register_commands failed


def load_plugins() -> None:
    """Load the plugins declared in the ``gis`` entry-point group, once (idempotent).

    A plugin that cannot load is left out with one line on stderr (see the module docstring).
    """
    global _loaded
    if _loaded:
        return
    _loaded = True
    allowed = os.environ.get(PLUGINS_ENV)
    allow = None if allowed is None else {s.strip() for s in allowed.split(",") if s.strip()}
    declared = [(ep, _origin(ep)) for ep in importlib.metadata.entry_points(
        group=ENTRY_POINT_GROUP)]  # origin: "dist version", or None
    if not _gis_installed():
        declared += [(ep, "source tree, gis not installed") for ep in _source_tree_entry_points()
                     if ep.name not in {d.name for d, _ in declared}]
    if allow is not None:
        unknown = sorted(allow - {ep.name for ep, _ in declared})
        if unknown:  # a misspelt name would otherwise load nothing, silently
            print(f"gis: {PLUGINS_ENV} names {', '.join(map(repr, unknown))}, which no installed "
                  f"plugin is called (installed: "
                  f"{', '.join(sorted({ep.name for ep, _ in declared})) or 'none'})",
                  file=sys.stderr)
    declared = [(ep, origin) for ep, origin in declared if allow is None or ep.name in allow]
    _entry_point_names[:] = list(dict.fromkeys(ep.name for ep, _ in declared))
    for ep, origin in declared:
        source = f"entry point {ep.name} = {ep.value}" + (f" ({origin})" if origin else "")
        builtin = origin is not None and (origin.startswith("source tree")
                                          or origin.split(" ")[0] == "gis")
        if pm.get_plugin(ep.name) is not None:
            _left_out(ep.name, source, f"the plugin name is taken by {_sources.get(ep.name)}",
                      "uninstall one of the two packages")
            continue
        try:
            module = ep.load()
        except Exception as exc:  # a broken third-party plugin must not break gis
            _left_out(ep.name, source, f"import failed: {one_line(exc)}")
            continue
        try:
            pm.register(module, name=ep.name)
        except (pluggy.PluginValidationError, ValueError) as exc:
            _forget(ep.name, module)
            _left_out(ep.name, source, validation_reason(exc))
            continue
        unknown = _unknown_hooks(module)
        if unknown:
            pm.unregister(module)
            _left_out(ep.name, source, unknown)
            continue
        _sources[ep.name] = source
        if builtin:
            _builtin.add(ep.name)


def reload_plugins() -> None:
    """Forget the plugins loaded from entry points (and the broken ones) and load them again,
    e.g. after installing a plugin package in a running notebook. Run-time registrations
    (``register_plugin``) stay."""
    global _loaded
    for name, source in list(_sources.items()):
        if source.startswith("entry point"):
            pm.unregister(name=name)
            del _sources[name]
    _broken.clear()
    _builtin.clear()
    _command_errors.clear()
    _loaded = False
    _reset_registries()
    load_plugins()


def _forget(name: str, plugin: Any) -> None:
    """Undo a registration that pluggy refused half-way (it registers the hooks before the
    one it refuses): nothing of the plugin stays."""
    if pm.get_plugin(name) is plugin:
        pm.unregister(name=name)


def validation_reason(exc: Exception) -> str:
    """pluggy's refusal of a plugin in one line, with its explanation (pluggy's first line
    only names the plugin) and, for wrong argument names, the arguments the hook takes."""
    text = str(exc)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    hook = re.search(r"for hook '(\w+)'", text)
    caller = getattr(pm.hook, hook.group(1), None) if hook else None
    spec = getattr(caller, "spec", None)
    detail = [line.removeprefix("hookimpl definition: ") for line in lines[1:]]
    if not detail:
        return one_line(exc)
    reason = "hook " + ": ".join(detail) if hook else "; ".join(detail)
    if spec is not None and "can not be found in the hookspec" in text:
        reason += f"; {hook.group(1)} takes ({', '.join(spec.argnames)})"
    return reason


def _origin(ep: importlib.metadata.EntryPoint) -> str | None:
    dist = getattr(ep, "dist", None)
    return f"{dist.name} {dist.version}" if dist is not None else None


def _gis_installed() -> bool:
    try:
        importlib.metadata.distribution("gis")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _source_tree_entry_points() -> list[importlib.metadata.EntryPoint]:
    """The ``[project.entry-points.gis]`` table of the pyproject.toml beside this package, when
    gis runs uninstalled from its source tree: the same declarations pip installs."""
    path = Path(__file__).resolve().parents[1] / "pyproject.toml"
    try:
        text = path.read_text()
    except OSError:
        return []
    if not re.search(r'^name\s*=\s*"gis"\s*$', text, re.M):
        return []
    table = re.search(r"^\[project\.entry-points\.gis\]\s*$(.*?)(?=^\[|\Z)", text, re.M | re.S)
    pairs = re.findall(r'^\s*([\w.-]+)\s*=\s*"([^"]+)"', table.group(1), re.M) if table else []
    return [importlib.metadata.EntryPoint(name=n, value=v, group=ENTRY_POINT_GROUP)
            for n, v in pairs]


def _unknown_hooks(plugin: Any) -> str:
    """'' when every hook the plugin implements has a specification, else why not."""
    known = sorted(n for n in dir(hookspecs) if n.startswith("register_"))
    for caller in pm.get_hookcallers(plugin) or []:
        if caller.has_spec():
            continue
        guess = difflib.get_close_matches(caller.name, known, n=1)
        hint = f"did you mean {guess[0]!r}?" if guess else f"the hooks are {', '.join(known)}"
        return f"unknown hook {caller.name!r} ({hint})"
    return ""


def exclusion_hint(name: str) -> str:
    """How to leave plugin ``name`` out: a ``GIS_PLUGINS`` setting without it, or, for a
    plugin registered at run time, ``gis.unregister_plugin``."""
    if name in _entry_point_names:
        others = ",".join(n for n in _entry_point_names if n != name)
        return f"exclude it with {PLUGINS_ENV}={others}"
    return f"remove it with gis.unregister_plugin({name!r})"


def _left_out(name: str, source: str, reason: str, hint: str | None = None) -> None:
    error = f"{reason}; {hint or exclusion_hint(name)}"
    _broken.append(PluginInfo(name, source, [], error))
    print(f"gis: plugin {name!r} ({source}) is broken: {error}", file=sys.stderr)


def _module_of(plugin: Any) -> str:
    return plugin.__name__ if inspect.ismodule(plugin) else type(plugin).__module__


def add_plugin_commands(cli: Any) -> None:
    """Call each plugin's ``register_commands(cli)``. A plugin whose hook raises is left out
    entirely, as for any other hook (docs/PLUGINS.md, "When a plugin is broken"): the
    commands it added before raising are taken back, none of its objects is registered, one
    line on stderr names it and ``gis plugins`` lists it as broken; the other plugins'
    commands stay."""
    load_plugins()
    for impl in pm.hook.register_commands.get_hookimpls():
        plugin = pm.get_name(impl.plugin) or "?"
        before = _command_tree(cli)
        try:
            impl.function(cli=cli)
        except Exception as exc:
            for group, commands in before:  # take back what it added (or replaced), nested
                group.commands.clear()     # groups (`gis data`, `gis train`) included
                group.commands.update(commands)
            error = f"register_commands failed: {one_line(exc)}; {exclusion_hint(plugin)}"
            _command_errors[plugin] = error
            for registry in REGISTRIES.values():
                registry.reset()
            print(f"gis: plugin {plugin!r} (module {_module_of(impl.plugin)}) is broken: "
                  f"{error}", file=sys.stderr)


def _command_tree(group: Any) -> list[tuple[Any, dict[str, Any]]]:
    """(group, a copy of its commands) for ``group`` and every group below it."""
    commands = getattr(group, "commands", None)
    if not isinstance(commands, dict):
        return []
    out = [(group, dict(commands))]
    for command in commands.values():
        out += _command_tree(command)
    return out


def register_plugin(plugin: Any, name: str | None = None) -> str:
    """Register a plugin object at run time (tests, notebooks). Registries are rebuilt.

    Raises ``pluggy.PluginValidationError`` (and registers nothing) when the plugin implements
    an unknown or misspelt hook."""
    load_plugins()
    try:
        registered = pm.register(plugin, name=name)
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        taken = pm.get_name(plugin)
        if taken is not None:  # refused half-way: nothing of it stays
            pm.unregister(name=taken)
        raise pluggy.PluginValidationError(plugin, validation_reason(exc)) from None
    _sources[registered] = "registered at run time"
    _reset_registries()
    return registered


def unregister_plugin(name: str) -> None:
    pm.unregister(name=name)
    _sources.pop(name, None)
    _hook_errors.pop(name, None)
    _command_errors.pop(name, None)
    _reset_registries()


@dataclass
class PluginInfo:
    """One plugin as ``gis plugins`` lists it; ``error`` (one line) when it is broken."""

    name: str
    source: str
    hooks: list[str]
    error: str | None = None

    @property
    def broken(self) -> bool:
        return self.error is not None


#: set (to anything) to let a third-party plugin's exception reach the traceback
DEBUG_ENV = "GIS_DEBUG"


def plugin_in_traceback(exc: BaseException) -> str | None:
    """``"plugin 'x' (module m, line 12 in forward)"`` when ``exc`` was raised in the code of
    a plugin that is not gis's own (the deepest frame of its traceback, or of an exception it
    chains, in a module of that plugin's top-level package); None when no such frame is
    there or ``GIS_DEBUG`` is set. The CLI reports such an exception in one line as the
    plugin's defect (``gis.cli.GisGroup``)."""
    import traceback
    import types

    if os.environ.get(DEBUG_ENV):
        return None
    packages: dict[str, str] = {}
    for name, plugin in pm.list_name_plugin():
        if name in _builtin:
            continue
        module = plugin.__name__ if isinstance(plugin, types.ModuleType) else \
            type(plugin).__module__
        top = (module or "").split(".")[0]
        if top and top not in ("gis", "builtins"):
            packages[top] = name
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen and packages:
        seen.add(id(exc))
        found = None
        for frame, line in traceback.walk_tb(exc.__traceback__):
            module = frame.f_globals.get("__name__", "")
            if module.split(".")[0] in packages:
                found = (packages[module.split(".")[0]], module, line, frame.f_code.co_name)
        if found is not None:
            name, module, line, function = found
            return f"plugin {name!r} (module {module}, line {line} in {function})"
        exc = exc.__cause__ or exc.__context__
    return None


def list_plugins() -> list[PluginInfo]:
    """Every plugin, loaded or broken, sorted by name. Builds the registries so that a plugin
    whose hook fails or that registers a name another plugin holds shows as broken."""
    load_plugins()
    for registry in REGISTRIES.values():
        registry.names()
    problems = {**_hook_errors, **_command_errors}
    out = list(_broken)
    for name, plugin in pm.list_name_plugin():
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        out.append(PluginInfo(name, _sources.get(name, "registered"), hooks, problems.get(name)))
    return sorted(out, key=lambda p: p.name)


# ----------------------------------------------------------------------------- registries
T = TypeVar("T")


@dataclass
class Entry(Generic[T]):
    name: str
    factory: Callable[..., T]
    plugin: str
    aliases: tuple[str, ...] = ()
    description: str = ""
    trainer: Callable[..., Any] | None = None
    kind: str = "object"
    module: str = "?"

    @property
    def label(self) -> str:
        """``generator 'x' from plugin 'p' (module m)``: how errors name it."""
        return f"{self.kind} {self.name!r} from plugin {self.plugin!r} (module {self.module})"


@dataclass
class Registry(Generic[T]):
    """Names -> factories for one kind of plugin object, filled lazily from one hook."""

    kind: str
    hook: str
    error: type[errors.UnknownPluginObjectError]
    _entries: dict[str, Entry[T]] | None = field(default=None, repr=False)
    _aliases: dict[str, str] = field(default_factory=dict, repr=False)

    def _build(self) -> dict[str, Entry[T]]:
        if self._entries is not None:
            return self._entries
        load_plugins()
        entries: dict[str, Entry[T]] = {}
        alias_map: dict[str, str] = {}
        impls = sorted(getattr(pm.hook, self.hook).get_hookimpls(),  # gis's own first
                       key=lambda impl: pm.get_name(impl.plugin) not in _builtin)
        for impl in impls:
            plugin = pm.get_name(impl.plugin) or "?"
            if plugin in _hook_errors or plugin in _command_errors:  # broken elsewhere:
                continue                                               # left out entirely
            mine: dict[str, Entry[T]] = {}
            clashes: list[str] = []
            register = self._register_function(plugin, _module_of(impl.plugin), entries,
                                               alias_map, mine, clashes)
            try:
                impl.function(register=register)
            except Exception as exc:  # a plugin whose hook fails is left out, not gis
                clashes.append(f"{self.hook} failed: {one_line(exc)}")
            if clashes:  # the first problem, even when the hook caught the exception
                self._exclude(plugin, _module_of(impl.plugin), clashes[0])
                continue
            entries.update(mine)
            alias_map.update({a: e.name for e in mine.values() for a in e.aliases})
        self._entries, self._aliases = entries, alias_map
        return entries

    def _exclude(self, plugin: str, module: str, reason: str) -> None:
        """Leave ``plugin`` out of every registry (one line on stderr, ``gis plugins`` lists
        it as broken); the registries built already are rebuilt without it."""
        error = f"{reason}; {exclusion_hint(plugin)}"
        print(f"gis: plugin {plugin!r} (module {module}) is broken: {error}", file=sys.stderr)
        _hook_errors[plugin] = error
        for other in REGISTRIES.values():
            if other is not self:
                other.reset()

    def _register_function(self, plugin: str, module: str, entries: dict[str, Entry[T]],
                           alias_map: dict[str, str], mine: dict[str, Entry[T]],
                           clashes: list[str]):
        def register(name, factory, *, aliases=(), description="", trainer=None):
            names = (name, *aliases)
            if not all(isinstance(n, str) and n for n in names):
                raise errors.PluginLoadError(f"{self.kind} names and aliases must be non-empty "
                                             f"strings, got {names!r}")
            if not callable(factory):
                raise errors.PluginLoadError(f"the factory of {self.kind} {name!r} is not "
                                             f"callable ({type(factory).__name__})")
            own_aliases = {a: e.name for e in mine.values() for a in e.aliases}
            for n in names:
                owner = next((table[aliases.get(n, n)].plugin for table, aliases in
                              ((entries, alias_map), (mine, own_aliases))
                              if aliases.get(n, n) in table), None)
                if owner is not None:
                    reason = f"{self.kind} name {n!r} already registered by plugin {owner!r}"
                    clashes.append(reason)
                    raise errors.DuplicateRegistrationError(
                        f"{reason}; {exclusion_hint(plugin)}", plugins=(owner, plugin))
            mine[name] = Entry(name, factory, plugin, tuple(aliases), description, trainer,
                               self.kind, module)

        return register

    def reset(self) -> None:
        self._entries = None
        self._aliases = {}

    def names(self) -> list[str]:
        return sorted(self._build())

    def __iter__(self) -> Iterator[Entry[T]]:
        return iter(sorted(self._build().values(), key=lambda e: e.name))

    def __contains__(self, name: str) -> bool:
        entries = self._build()
        return name in entries or name in self._aliases

    def get(self, name: str) -> Entry[T]:
        entries = self._build()
        key = self._aliases.get(name, name)
        if key not in entries:
            broken = sorted({p.name for p in _broken} | set(_hook_errors)
                            | set(_command_errors))
            note = f"; broken plugins: {', '.join(broken)} (gis plugins says why)" if broken else ""
            raise self.error(name, list(entries), note)
        return entries[key]

    def scoped_options(self, name: str | None) -> dict[str, Any]:
        """The command-line options (``factory_options``) that reach the factory of object
        ``name`` now: ``{}`` when none do. Commands record them beside the object's name."""
        scope_name, scoped = cli_scope(self.kind)
        if not scoped:
            return {}
        if scope_name is None or name is None or scope_name == name:
            return dict(scoped)
        try:
            same = self.get(scope_name).name == self.get(name).name
        except errors.UnknownPluginObjectError:
            same = False
        return dict(scoped) if same else {}

    def create(self, name: str, **options: Any) -> T:
        """Build object ``name`` with ``options`` and check it (``gis.contracts``).

        Raises the registry's ``Unknown...Error`` for an unknown name, ``GisUsageError`` for
        an option the factory does not take, ``PluginContractError`` when the factory raises
        something other than a gis error or its object breaks the interface."""
        return self.create_checked(name, **options)[0]

    def create_checked(self, name: str, **options: Any) -> tuple[T, list[str]]:
        """``create``, also returning the checks that passed (one line each)."""
        from . import contracts

        entry = self.get(name)
        options = {**self.scoped_options(entry.name), **options}
        if options.get("device") is not None:  # a one-line error, not torch's, for every plugin
            from .training import resolve_device

            resolve_device(options["device"])
        options = check_options(entry, options)
        try:
            obj = entry.factory(**options)
        except errors.GisError:
            raise
        except Exception as exc:
            raise errors.PluginContractError(
                f"{entry.label}: the factory raised {one_line(exc)}") from exc
        try:
            passed = contracts.check(self.kind, obj)
        except contracts.ContractMismatch as exc:
            raise errors.PluginContractError(f"{entry.label}: {exc}") from None
        return obj, passed


generators: Registry = Registry("generator", "register_generators", errors.UnknownGeneratorError)
recommenders: Registry = Registry(
    "recommender", "register_recommenders", errors.UnknownRecommenderError
)
losses: Registry = Registry("loss", "register_losses", errors.UnknownLossError)
datasets: Registry = Registry("dataset", "register_datasets", errors.UnknownDatasetError)
REGISTRIES = {"generators": generators, "recommenders": recommenders, "losses": losses,
              "datasets": datasets}


def _reset_registries() -> None:
    _hook_errors.clear()
    for r in REGISTRIES.values():
        r.reset()


def get_generator(name: str, **options: Any):
    """Build generator ``name`` (see ``register_generators`` for the options)."""
    return generators.create(name, **options)


def get_recommender(name: str, **options: Any):
    """Build recommender ``name`` (see ``register_recommenders`` for the options)."""
    return recommenders.create(name, **options)


def get_loss(name: str, **options: Any):
    """Build loss ``name`` (see ``register_losses`` for the options)."""
    return losses.create(name, **options)


def get_dataset(name: str, **options: Any):
    """Build dataset ``name`` (see ``register_datasets`` for the options)."""
    return datasets.create(name, **options)
