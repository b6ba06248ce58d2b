"""The plugin manager and the registries that the core owns.

Plugins (built-in ones included) are found through the ``gis`` entry-point group.
``GIS_PLUGINS`` (comma-separated entry-point names) restricts which installed plugins load;
``GIS_PLUGINS=""`` loads none.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import pluggy

from . import errors, hookspecs

ENTRY_POINT_GROUP = "gis"
PLUGINS_ENV = "GIS_PLUGINS"

pm = pluggy.PluginManager("gis")
pm.add_hookspecs(hookspecs)

#: The built-in plugins, as declared in gis's own entry points (pyproject.toml). Used only when
#: gis runs from a source tree that is not installed (no entry-point metadata), e.g. with
#: PYTHONPATH=.:plugins on a machine where nothing may be installed.
BUILTIN_PLUGINS = {"losses": "gis_losses", "fashion_colors": "gis_fashion_colors",
                   "dvbpr": "gis_dvbpr", "progan": "gis_progan", "dvbpr_gan": "gis_dvbpr_gan"}

_loaded = False
_sources: dict[str, str] = {}  # plugin name -> where it came from ("entry point pkg==ver", ...)


def load_plugins() -> None:
    """Load installed plugins once (idempotent)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    allowed = os.environ.get(PLUGINS_ENV)
    allow = None if allowed is None else {s.strip() for s in allowed.split(",") if s.strip()}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if allow is not None and ep.name not in allow:
            continue
        if pm.get_plugin(ep.name) is not None:
            continue
        try:
            module = ep.load()
        except Exception as exc:  # a broken third-party plugin must not break gis
            print(f"gis: plugin {ep.name!r} failed to load: {exc}", file=sys.stderr)
            continue
        pm.register(module, name=ep.name)
        dist = getattr(ep, "dist", None)
        origin = f"{dist.name} {dist.version}" if dist is not None else ep.value
        _sources[ep.name] = f"entry point {ep.name} = {ep.value} ({origin})"
    if not _gis_installed():
        for name, module_name in BUILTIN_PLUGINS.items():
            if (allow is not None and name not in allow) or pm.get_plugin(name) is not None:
                continue
            pm.register(importlib.import_module(module_name), name=name)
            _sources[name] = f"built-in {module_name} (source tree, gis not installed)"
    pm.check_pending()


def _gis_installed() -> bool:
    try:
        importlib.metadata.distribution("gis")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def register_plugin(plugin: Any, name: str | None = None) -> str:
    """Register a plugin object at run time (tests, notebooks). Registries are rebuilt."""
    load_plugins()
    registered = pm.register(plugin, name=name)
    pm.check_pending()
    _sources[registered] = "registered at run time"
    _reset_registries()
    return registered


def unregister_plugin(name: str) -> None:
    pm.unregister(name=name)
    _sources.pop(name, None)
    _reset_registries()


@dataclass
class PluginInfo:
    name: str
    source: str
    hooks: list[str]


def list_plugins() -> list[PluginInfo]:
    load_plugins()
    out = []
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda t: t[0]):
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        out.append(PluginInfo(name, _sources.get(name, "registered"), hooks))
    return out


T = TypeVar("T")


@dataclass
class Entry(Generic[T]):
    name: str
    factory: Callable[..., T]
    plugin: str
    aliases: tuple[str, ...] = ()
    description: str = ""
    trainer: Callable[..., Any] | None = None


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
        hook = getattr(pm.hook, self.hook)
        for impl in hook.get_hookimpls():
            plugin_name = pm.get_name(impl.plugin) or "?"

            def register(name, factory, *, aliases=(), description="", trainer=None,
                         _plugin=plugin_name):
                names = tuple(aliases)
                for n in (name, *names):
                    if n in entries or n in alias_map:
                        owner = entries[n].plugin if n in entries else entries[alias_map[n]].plugin
                        raise errors.DuplicateRegistrationError(
                            f"{self.kind} name {n!r} registered by both {owner!r} and {_plugin!r}"
                        )
                entries[name] = Entry(name, factory, _plugin, names, description, trainer)
                for a in names:
                    alias_map[a] = name

            impl.function(register=register)
        self._entries, self._aliases = entries, alias_map
        return entries

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
            raise self.error(name, list(entries))
        return entries[key]

    def create(self, name: str, **options: Any) -> T:
        entry = self.get(name)
        if options.get("device") is not None:  # a one-line error, not torch's, for every plugin
            from .training import resolve_device

            resolve_device(options["device"])
        return entry.factory(**options)


generators: Registry = Registry("generator", "register_generators", errors.UnknownGeneratorError)
recommenders: Registry = Registry(
    "recommender", "register_recommenders", errors.UnknownRecommenderError
)
losses: Registry = Registry("loss", "register_losses", errors.UnknownLossError)
datasets: Registry = Registry("dataset", "register_datasets", errors.UnknownDatasetError)
REGISTRIES = {"generators": generators, "recommenders": recommenders, "losses": losses,
              "datasets": datasets}


def _reset_registries() -> None:
    for r in REGISTRIES.values():
        r.reset()


def get_generator(name: str, **options: Any):
    """Build generator ``name`` (see ``register_generators`` for the options)."""
    return generators.create(name, **options)


def get_recommender(name: str, **options: Any):
    return recommenders.create(name, **options)


def get_loss(name: str, **options: Any):
    return losses.create(name, **options)


def get_dataset(name: str, **options: Any):
    return datasets.create(name, **options)
