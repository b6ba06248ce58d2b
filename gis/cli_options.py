"""``--generator-option`` / ``--recommender-option`` / ``--dataset-option KEY=VALUE``: factory
options from the command line (docs/PLUGINS.md, "Factories").

Commands that build those objects apply ``factory_options(...)``; each option is repeatable, its
value is read as a JSON scalar (``3``, ``0.5``, ``true``, ``null``, ``"32"``) and otherwise kept
as a string, and it reaches the factory of the object the command names (``--generator``,
``--recommender``, ``--data``) through ``gis.options.factory_options``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable
from typing import Any

import click

from .errors import GisUsageError

#: options each command sets through its own flags, per kind
RESERVED = {"generator": {"checkpoint": "--generator-checkpoint", "device": "--device",
                          "trust": "--trust"},
            "recommender": {"checkpoint": "--recommender-checkpoint", "device": "--device",
                            "trust": "--trust"},
            "dataset": {"path": "--data", "trust": "--trust"}}
#: the command parameters that hold the name of the object of each kind
NAME_PARAMS = {"generator": ("generator_name", "generator"),
               "recommender": ("recommender_name", "recommender"),
               "dataset": ("data",)}


def parse_key_values(values: Iterable[str], flag: str) -> dict[str, Any]:
    """``["k=3", "name=x"]`` -> ``{"k": 3, "name": "x"}``: JSON scalars, else strings.

    Raises ``GisUsageError`` (one line) for a value without ``=``, a key that is not a Python
    identifier, or a key given twice."""
    out: dict[str, Any] = {}
    for text in values:
        key, sep, raw = text.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise GisUsageError(f"{flag} expects KEY=VALUE with KEY a name, got {text!r}")
        if key in out:
            raise GisUsageError(f"{flag} {key} given twice")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        out[key] = value if value is None or isinstance(value, (bool, int, float, str)) else raw
    return out


class DeviceType(click.ParamType):
    """The click type of every ``--device`` option (``type=gis.cli_options.DEVICE``): the value
    is checked while the command line is parsed, by ``gis.training.resolve_device``, so a
    device this machine cannot use (``mps``, ``xpu`` or ``cuda`` without one, ``cuda:7`` on a
    one-GPU machine, ``meta``, ``cpu:1``, a misspelling) is a one-line ``GisUsageError``
    (exit status 2) before the command creates anything. The value stays the text given."""

    name = "device"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        if value is None:
            return None
        from .training.device import resolve_device  # torch: only once a device is parsed

        resolve_device(value)
        return value if isinstance(value, str) else str(value)


#: the one ``--device`` type (plugins that add commands with a device use it too)
DEVICE = DeviceType()


def device_argument(text: str) -> str:
    """The same check as an ``argparse`` ``type=`` (the ``python -m gis.evaluation.*``
    scripts): argparse then prints its usage line and the one-line reason, exit status 2."""
    import argparse

    from .errors import GisUsageError

    try:
        return DEVICE.convert(text, None, None)
    except GisUsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def factory_options(*kinds: str) -> Callable:
    """A click decorator adding ``--<kind>-option KEY=VALUE`` (repeatable) for each of
    ``kinds`` ("generator", "recommender", "dataset") to a command; while the command runs, the
    options reach the factory of the object it names (docs/PLUGINS.md, "Factories")."""
    for kind in kinds:
        if kind not in RESERVED:
            raise ValueError(f"unknown kind {kind!r}")

    def decorate(command: Callable) -> Callable:
        @functools.wraps(command)
        def run(*args: Any, **kwargs: Any) -> Any:
            from .options import factory_options as scope

            scopes = {}
            for kind in kinds:
                flag = f"--{kind}-option"
                opts = parse_key_values(kwargs.pop(f"{kind}_options"), flag)
                clash = sorted(opts.keys() & RESERVED[kind].keys())
                if clash:
                    raise GisUsageError(f"{flag} {clash[0]}: use {RESERVED[kind][clash[0]]}")
                name = next((kwargs[p] for p in NAME_PARAMS[kind] if p in kwargs), None)
                scopes[kind] = (None if name is None else str(name), opts)
            with scope(**scopes):
                return command(*args, **kwargs)

        for kind in reversed(kinds):
            run = click.option(
                f"--{kind}-option", f"{kind}_options", multiple=True, metavar="KEY=VALUE",
                help=f"Option for the {kind} factory, KEY=VALUE (repeatable; VALUE is read "
                     "as a JSON scalar, else as text).")(run)
        return run

    return decorate
