"""The `gis` command line. It only parses, prints and saves; the work is in the Python API."""

from __future__ import annotations

import functools
import sys

import click

from . import __version__
from .errors import GisError


class GisGroup(click.Group):
    """Turns domain errors into one-line messages with the right exit status."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except GisError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            ctx.exit(130)


@click.group(cls=GisGroup)
@click.version_option(__version__, prog_name="gis")
def cli():
    """gis: propose modified versions of an item that a set of users would prefer.

    GAN Inversion & Shifting (Kumar, Sharma & Narayan, PeerJ CS 2025) over pluggable
    generators, recommenders and losses.
    """


def _list_registry(kind: str) -> None:
    from .plugins import REGISTRIES

    reg = REGISTRIES[kind]
    entries = list(reg)
    if not entries:
        click.echo(f"no {kind} registered")
        return
    width = max(len(e.name) for e in entries)
    for e in entries:
        alias = f" (aliases: {', '.join(e.aliases)})" if e.aliases else ""
        click.echo(f"{e.name:<{width}}  [{e.plugin}] {e.description}{alias}")


@cli.command()
def plugins():
    """List loaded plugins, where each came from and the hooks it implements."""
    from .plugins import list_plugins

    infos = list_plugins()
    if not infos:
        click.echo("no plugins loaded")
    for info in infos:
        click.echo(f"{info.name}: {info.source}")
        click.echo(f"    hooks: {', '.join(info.hooks) or '-'}")


for _kind in ("generators", "recommenders", "losses", "datasets"):
    cli.command(name=_kind, help=f"List registered {_kind}.")(
        functools.partial(_list_registry, _kind)
    )


def _add_subcommands() -> None:
    """Core command groups live in their own modules; plugins add theirs through a hook."""
    import importlib

    for module, attr in (
        ("gis.data.cli", "data"),
        ("gis.training_cli", "train"),
        ("gis.engine.cli", "invert"),
        ("gis.engine.cli", "shift"),
        ("gis.engine.cli", "design"),
        ("gis.evaluation.cli", "evaluate"),
        ("gis.report", "report"),
    ):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("gis"):
                continue  # that part of gis is not built yet
            raise
        cmd = getattr(mod, attr, None)
        if cmd is not None:
            cli.add_command(cmd)

    from .plugins import load_plugins, pm

    load_plugins()
    pm.hook.register_commands(cli=cli)


_add_subcommands()


def main(argv=None):
    try:
        cli.main(args=argv, prog_name="gis", standalone_mode=True)
    except GisError as exc:  # errors raised while building the CLI itself
        click.echo(f"Error: {exc}", err=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
