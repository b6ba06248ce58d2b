"""Typed trainer settings: a dataclass per trainer, read by the Python API and the CLI alike.

Each field of a trainer's ``Config`` dataclass is one setting: its name is the keyword of
:func:`gis.training.train` and, with ``_`` as ``-``, the ``gis train`` option; its type
annotation gives the option's type; its default is the default; ``setting(default, help)``
puts the option's help text in the field's metadata. Supported types: ``bool`` (a
``--name/--no-name`` flag), ``int``, ``float``, ``str``, ``Path``, ``Literal[...]`` (a choice),
``tuple[X, ...]`` / ``tuple[X, X]`` of those (comma-separated on the command line), and any
of them ``| None``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..errors import GisUsageError

__all__ = ["SettingInfo", "check_ranges", "make_config", "setting", "settings_of"]


def setting(default: Any, help: str) -> Any:  # noqa: A002 - the name click uses
    """A documented dataclass field: ``lr: float = setting(1e-3, "Adam learning rate")``."""
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class SettingInfo:
    """One setting of a config dataclass, as the CLI needs it.

    ``kind``: "bool", "int", "float", "str", "path" or "choice" (``choices`` then lists the
    values);
    ``sequence``: a tuple of that kind (``length`` items, or any number when None);
    ``optional``: None is allowed (the default is then usually None)."""

    name: str
    kind: str
    default: Any
    help: str
    optional: bool = False
    sequence: bool = False
    length: int | None = None
    choices: tuple[Any, ...] = ()

    @property
    def option(self) -> str:
        return "--" + self.name.replace("_", "-")

    def parse(self, text: str) -> Any:
        """The value of the command-line text ``text`` (comma-separated for a sequence).
        Raises GisUsageError naming the option."""
        if self.sequence:
            parts = [p.strip() for p in text.split(",") if p.strip()]
            if self.length is not None and len(parts) != self.length:
                raise GisUsageError(f"{self.option} takes {self.length} comma-separated values, "
                                    f"got {text!r}")
            return tuple(self._scalar(p) for p in parts)
        return self._scalar(text)

    def _scalar(self, text: str) -> Any:
        try:
            if self.kind == "int":
                return int(text)
            if self.kind == "float":
                return float(text)
        except ValueError:
            raise GisUsageError(f"{self.option} takes {self.kind} values, got {text!r}") from None
        if self.kind == "path":
            return Path(text)
        if self.kind == "choice":
            for c in self.choices:
                if str(c) == text:
                    return c
            raise GisUsageError(f"{self.option} is one of {', '.join(map(str, self.choices))}, "
                                f"got {text!r}")
        return text


_SCALARS = {bool: "bool", int: "int", float: "float", str: "str", Path: "path"}


def _describe(name: str, tp: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) != len(typing.get_args(tp)) - 1 or len(args) != 1:
            raise TypeError(f"setting {name!r}: only `X | None` unions are supported")
        out["optional"] = True
        tp, origin = args[0], typing.get_origin(args[0])
    if origin in (tuple, list):
        args = typing.get_args(tp)
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            item, length = args[0], None
        elif origin is tuple and args and all(a == args[0] for a in args):
            item, length = args[0], len(args)
        elif origin is list and len(args) == 1:
            item, length = args[0], None
        else:
            raise TypeError(f"setting {name!r}: unsupported sequence type {tp!r}")
        out.update(sequence=True, length=length)
        tp, origin = item, typing.get_origin(item)
    if origin is Literal:
        out.update(kind="choice", choices=typing.get_args(tp))
    elif tp in _SCALARS and not (out.get("sequence") and tp is bool):
        out["kind"] = _SCALARS[tp]
    else:
        raise TypeError(f"setting {name!r}: unsupported type {tp!r}")
    return out


def settings_of(cls: type) -> list[SettingInfo]:
    """The settings of the config dataclass ``cls``, in field order. Raises TypeError for a
    field whose type the CLI cannot express (a plugin author's mistake, found by tests)."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = None
        out.append(SettingInfo(name=f.name, default=default, help=f.metadata.get("help", ""),
                               **_describe(f.name, hints[f.name])))
    return out


def make_config(cls: type, values: Mapping[str, Any], *, what: str) -> Any:
    """``cls(**values)`` with lists turned into tuples for sequence settings; unknown names
    give a one-line GisUsageError (``"unknown {what} option(s): ...; known: ..."``)."""
    infos = {s.name: s for s in settings_of(cls)}
    unknown = sorted(set(values) - set(infos))
    if unknown:
        raise GisUsageError(f"unknown {what} option(s): {', '.join(unknown)}; known: "
                            f"{', '.join(infos)}")
    clean = {k: tuple(v) if infos[k].sequence and isinstance(v, list) else v
             for k, v in values.items()}
    return cls(**clean)


#: the ranges :func:`check_ranges` knows: (test, what the message says)
_RANGES = {"positive": (lambda v: v > 0, "> 0"), "non_negative": (lambda v: v >= 0, ">= 0"),
           "fraction": (lambda v: 0 <= v <= 1, "in [0, 1]"),
           "below_one": (lambda v: 0 <= v < 1, "in [0, 1)")}
#: the fields of ``gis.training.PeriodicSettings``: checked >= 0 wherever a config has them
_PERIODIC = ("sample_every_s", "checkpoint_every_s", "log_every")


def check_ranges(config: Any, what: str, **ranges: tuple[str, ...]) -> None:
    """The numeric settings check of a trainer ``Config`` (call it in ``__post_init__``):
    ``check_ranges(self, "progan", positive=("lr", "batch_size"), below_one=("betas",))``.

    Ranges: ``positive`` (> 0), ``non_negative`` (>= 0), ``fraction`` ([0, 1]), ``below_one``
    ([0, 1)). A None value is not checked; a tuple is checked item by item; the fields of
    ``PeriodicSettings`` are checked >= 0 when ``config`` has them. Raises a one-line
    GisUsageError naming the first setting outside its range and its ``gis train`` option."""
    checks = [(name, kind) for kind, names in ranges.items() for name in names]
    checks += [(name, "non_negative") for name in _PERIODIC if hasattr(config, name)]
    for name, kind in checks:
        ok, text = _RANGES[kind]
        value = getattr(config, name)
        values = value if isinstance(value, (tuple, list)) else (value,)
        bad = next((v for v in values if v is not None and not (
            isinstance(v, (int, float)) and not isinstance(v, bool) and ok(v))), None)
        if bad is not None:
            flag = "--" + name.replace("_", "-")
            raise GisUsageError(f"{what}: {name} ({flag}) must be {text}"
                                f"{' for each value' if values is value else ''}, got "
                                f"{value!r}")
