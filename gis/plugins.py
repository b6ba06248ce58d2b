"""The plugin manager and the registries that the core owns.

Every plugin, the built-in ones included, is declared in the ``gis`` entry-point group (gis's
own are in its pyproject.toml) and loaded by ``load_plugins``; when gis runs from a source tree
that is not installed (``PYTHONPATH=.:plugins``), the same declarations are read from that
tree's pyproject.toml. ``GIS_PLUGINS`` (comma-separated entry-point names) restricts which
plugins load; ``GIS_PLUGINS=""`` loads none.

A plugin that cannot load (an import error, an unknown or misspelt hook, a plugin name already
taken, a hook that raises) is left out with one line on stderr that names it, its module and
how to exclude it; ``list_plugins`` (``gis plugins``) lists it as broken. Each object a factory
returns is checked at once (``gis.contracts``; docs/PLUGINS.md, "Checks").
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import importlib.metadata
import inspect
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import pluggy

from . import errors, hookspecs
from .errors import one_line

ENTRY_POINT_GROUP = "gis"
PLUGINS_ENV = "GIS_PLUGINS"

pm = pluggy.PluginManager("gis")
pm.add_hookspecs(hookspecs)

_loaded = False
_sources: dict[str, str] = {}  # plugin name -> where it came from ("entry point x = m (...)")
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
    declared = [(ep, origin) for ep, origin in declared if allow is None or ep.name in allow]
    _entry_point_names[:] = list(dict.fromkeys(ep.name for ep, _ in declared))
    for ep, origin in declared:
        source = f"entry point {ep.name} = {ep.value}" + (f" ({origin})" if origin else "")
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
            _left_out(ep.name, source, one_line(exc))
            continue
        unknown = _unknown_hooks(module)
        if unknown:
            pm.unregister(module)
            _left_out(ep.name, source, unknown)
            continue
        _sources[ep.name] = source


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
    _loaded = False
    _reset_registries()
    load_plugins()


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
    """Call each plugin's ``register_commands(cli)``; a plugin whose hook raises is named in
    one line on stderr (and listed as broken) and the other commands stay."""
    load_plugins()
    for impl in pm.hook.register_commands.get_hookimpls():
        plugin = pm.get_name(impl.plugin) or "?"
        try:
            impl.function(cli=cli)
        except Exception as exc:
            error = f"register_commands failed: {one_line(exc)}; {exclusion_hint(plugin)}"
            _command_errors[plugin] = error
            print(f"gis: plugin {plugin!r} (module {_module_of(impl.plugin)}) is broken: "
                  f"{error}", file=sys.stderr)


def register_plugin(plugin: Any, name: str | None = None) -> str:
    """Register a plugin object at run time (tests, notebooks). Registries are rebuilt.

    Raises ``pluggy.PluginValidationError`` (and registers nothing) when the plugin implements
    an unknown or misspelt hook."""
    load_plugins()
    registered = pm.register(plugin, name=name)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError:
        pm.unregister(name=registered)
        raise
    _sources[registered] = "registered at run time"
    _reset_registries()
    return registered


def unregister_plugin(name: str) -> None:
    pm.unregister(name=name)
    _sources.pop(name, None)
    _hook_errors.pop(name, None)
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


def list_plugins() -> list[PluginInfo]:
    """Every plugin, loaded or broken, sorted by name. Builds the registries so that a plugin
    whose hook fails or that registers a name another plugin holds shows as broken."""
    load_plugins()
    problems: dict[str, str] = {}
    for registry in REGISTRIES.values():
        try:
            registry.names()
        except errors.DuplicateRegistrationError as exc:
            problems.setdefault(exc.plugins[1], str(exc))
    problems.update(_hook_errors)
    problems.update(_command_errors)
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


#: options from the command line (--generator-option ...), per kind: (name or None, options)
_cli_options: ContextVar[dict[str, tuple[str | None, dict[str, Any]]] | None] = ContextVar(
    "gis_factory_options", default=None)


@contextlib.contextmanager
def factory_options(**scopes: tuple[str | None, Mapping[str, Any]]) -> Iterator[None]:
    """Within the block, ``create`` adds ``options`` to the factory call of the object of kind
    ``kind`` named ``name`` (any object of that kind when ``name`` is None):
    ``factory_options(generator=("progan", {"clamp": False}))``. The command line's
    ``--generator-option`` / ``--recommender-option`` / ``--dataset-option`` use it
    (``gis.cli_options``); options passed to ``create`` itself win."""
    current = dict(_cli_options.get() or {})
    current.update({kind: (name, dict(opts)) for kind, (name, opts) in scopes.items() if opts})
    token = _cli_options.set(current)
    try:
        yield
    finally:
        _cli_options.reset(token)


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
        for impl in getattr(pm.hook, self.hook).get_hookimpls():
            plugin = pm.get_name(impl.plugin) or "?"
            mine: dict[str, Entry[T]] = {}
            register = self._register_function(plugin, _module_of(impl.plugin), entries,
                                               alias_map, mine)
            try:
                impl.function(register=register)
            except errors.DuplicateRegistrationError:
                raise
            except Exception as exc:  # a plugin whose hook fails is left out, not gis
                error = f"{self.hook} failed: {one_line(exc)}; {exclusion_hint(plugin)}"
                if plugin not in _hook_errors:
                    print(f"gis: plugin {plugin!r} (module {_module_of(impl.plugin)}) is "
                          f"broken: {error}", file=sys.stderr)
                _hook_errors[plugin] = error
                continue
            entries.update(mine)
            alias_map.update({a: e.name for e in mine.values() for a in e.aliases})
        self._entries, self._aliases = entries, alias_map
        return entries

    def _register_function(self, plugin: str, module: str, entries: dict[str, Entry[T]],
                           alias_map: dict[str, str], mine: dict[str, Entry[T]]):
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
                    raise errors.DuplicateRegistrationError(
                        f"{self.kind} name {n!r} registered by both {owner!r} and {plugin!r}; "
                        f"{exclusion_hint(plugin)}", plugins=(owner, plugin))
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
            broken = sorted({p.name for p in _broken} | set(_hook_errors))
            note = f"; broken plugins: {', '.join(broken)} (gis plugins says why)" if broken else ""
            raise self.error(name, list(entries), note)
        return entries[key]

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
        scope_name, scoped = (_cli_options.get() or {}).get(self.kind, (None, {}))
        if scoped and (scope_name is None
                       or (scope_name in self and self.get(scope_name).name == entry.name)):
            options = {**scoped, **options}
        if options.get("device") is not None:  # a one-line error, not torch's, for every plugin
            from .training import resolve_device

            resolve_device(options["device"])
        _check_options(entry, options)
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


def _check_options(entry: Entry, options: Mapping[str, Any]) -> None:
    """A one-line ``GisUsageError`` for an option the factory's signature does not take."""
    try:
        params = inspect.signature(entry.factory).parameters
    except (TypeError, ValueError):
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    takes = [n for n, p in params.items() if p.kind in (inspect.Parameter.KEYWORD_ONLY,
                                                         inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    unknown = sorted(set(options) - set(takes))
    if unknown:
        raise errors.GisUsageError(
            f"{entry.label} takes no option {', '.join(map(repr, unknown))}; its options: "
            f"{', '.join(takes) or 'none'}")


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
