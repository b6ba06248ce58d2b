"""Factory options: those the command line passes (``--generator-option KEY=VALUE`` ...,
scoped to the object the command names) and the check of every option against the factory's
signature (docs/PLUGINS.md, "Factories"). ``gis.plugins.Registry.create`` uses both.

Imported when the CLI starts: no numpy or torch here.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import numbers
import os
import types
import typing
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from .errors import GisUsageError

__all__ = ["check_options", "cli_scope", "factory_options"]


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


def cli_scope(kind: str) -> tuple[str | None, dict[str, Any]]:
    """(name or None, options) the command line set for objects of ``kind`` ((None, {}) when
    none)."""
    return (_cli_options.get() or {}).get(kind, (None, {}))


def check_options(entry: Any, options: Mapping[str, Any]) -> dict[str, Any]:
    """The options as the factory receives them: a one-line ``GisUsageError`` for an option
    its signature does not take (unless it has ``**options``) or whose value does not fit the
    parameter's annotation (``clamp: bool`` refuses ``"no"`` and ``None``; see
    :func:`_fit_option`)."""
    try:
        params = _parameters(entry.factory)
    except (TypeError, ValueError):
        return dict(options)
    takes = [n for n, p in params.items() if p.kind in (inspect.Parameter.KEYWORD_ONLY,
                                                         inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    unknown = sorted(set(options) - set(takes))
    if unknown and not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        from .cli_options import RESERVED

        kind = getattr(entry, "kind", "")
        # from a command's --X-option (which refuses these: they have their own flags)
        flags = RESERVED.get(kind, {}) if cli_scope(kind)[1] else {}
        own = [n for n in takes if n not in flags]
        by_flag = [f"{n} ({flags[n]})" for n in takes if n in flags]
        raise GisUsageError(
            f"{entry.label} takes no option {', '.join(map(repr, unknown))}; its options: "
            f"{', '.join(own) or 'none'}"
            + (f"; set by their own flags: {', '.join(by_flag)}" if by_flag else ""))
    out = dict(options)
    for key, value in options.items():
        hint = params[key].annotation if key in takes else inspect.Parameter.empty
        if hint is inspect.Parameter.empty:
            continue
        fits, out[key] = _fit_option(hint, value)
        if not fits:
            shown = json.dumps(value) if value is None or isinstance(
                value, (bool, int, float, str)) else repr(value)
            raise GisUsageError(f"{entry.label}: option {key} takes {_describe_type(hint)}, "
                                f"got {shown}")
    return out


def _parameters(factory: Any) -> Mapping[str, inspect.Parameter]:
    """The factory's parameters with their annotations evaluated, each on its own: one that
    does not evaluate (a name imported only for type checkers) stays text and is not
    checked."""
    try:
        return inspect.signature(factory, eval_str=True).parameters
    except Exception:  # noqa: BLE001 - any annotation may fail to evaluate
        params = inspect.signature(factory).parameters
    base = inspect.unwrap(factory)
    namespace = getattr(getattr(base, "func", base), "__globals__", {})
    out = {}
    for name, param in params.items():
        if isinstance(param.annotation, str):
            try:
                param = param.replace(annotation=eval(param.annotation, namespace))  # noqa: S307
            except Exception:  # noqa: BLE001
                pass
        out[name] = param
    return out


def _fit_option(hint: Any, value: Any) -> tuple[bool, Any]:
    """Whether ``value`` fits the annotation ``hint``, and the value to pass: ``bool`` takes
    True/False only, ``int`` integers (not bools), ``float`` numbers, ``str`` text, ``Path``
    text or paths, ``Literal[...]`` one of its values (``32`` for ``"32"`` too), ``X | None``
    None or an X. Annotations it does not know accept anything."""
    origin = typing.get_origin(hint)
    if hint is typing.Any or isinstance(hint, (str, typing.TypeVar)):
        return True, value
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            fits, fitted = _fit_option(arg, value)
            if fits:
                return True, fitted
        return False, value
    if hint is type(None):
        return value is None, value
    if origin is typing.Literal:
        choices = typing.get_args(hint)
        match = next((c for c in choices if c == value and type(c) is type(value)
                      or isinstance(c, str) and not isinstance(value, bool)
                      and isinstance(value, (int, str)) and str(value) == c), None)
        return match is not None, match if match is not None else value
    if hint is bool:
        return isinstance(value, bool), value
    if hint is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool), value
    if hint is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool), value
    if hint is str:
        return isinstance(value, str), value
    if hint is Path or (isinstance(hint, type) and issubclass(hint, os.PathLike)):
        return isinstance(value, (str, os.PathLike)), value
    if isinstance(origin or hint, type):
        return isinstance(value, origin or hint), value
    return True, value


def _describe_type(hint: Any) -> str:
    """An annotation in words for messages: "true or false", "an integer or null", ..."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe_type(a) for a in typing.get_args(hint))
    if origin is typing.Literal:
        return "one of " + ", ".join(map(str, typing.get_args(hint)))
    return {bool: "true or false", int: "an integer", float: "a number", str: "text",
            type(None): "null", Path: "a path"}.get(hint, getattr(hint, "__name__", str(hint)))
