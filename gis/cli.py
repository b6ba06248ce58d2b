"""The `gis` command line. It only parses, prints and saves; the work is in the Python API."""

from __future__ import annotations

import contextlib
import functools
import os

import click

from . import __version__
from .cli_options import DEVICE
from .errors import GisError, one_line

KINDS = ("generator", "recommender", "dataset", "loss")


class GisGroup(click.Group):
    """Turns domain errors, and click's usage errors below the top level, into one-line
    messages with the right exit status, and keeps the command line's arguments
    (``ctx.meta["gis.argv"]``: what a record calls its command)."""

    def parse_args(self, ctx, args):
        ctx.meta["gis.argv"] = list(args)
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:  # the group's own options (`gis --bogus`)
            if type(exc).__name__ == "NoArgsIsHelpError":
                raise
            click.echo(f"Error: {exc.format_message()} See '{ctx.command_path} --help'.",
                       err=True)
            ctx.exit(exc.exit_code)

    def invoke(self, ctx):
        from .interrupts import describe, exit_status, interrupt_behind, stop_signals_raise

        try:
            try:
                # SIGTERM/SIGHUP clean up like Ctrl-C (gis.interrupts); warnings in one line
                with stop_signals_raise(), one_line_warnings():
                    return super().invoke(ctx)
            except Exception as exc:  # an error that a stop signal caused is that stop
                stop = interrupt_behind(exc)
                if stop is None or isinstance(exc, click.exceptions.Exit):
                    raise
                click.echo(describe(stop), err=True)
                ctx.exit(exit_status(stop))
        except GisError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except click.UsageError as exc:  # click's own (a bad option value, an unknown command)
            if type(exc).__name__ == "NoArgsIsHelpError":  # a bare command group: its help
                raise
            where = f" See '{exc.ctx.command_path} --help'." if exc.ctx is not None else ""
            click.echo(f"Error: {exc.format_message()}{where}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt as exc:
            click.echo(describe(exc), err=True)
            ctx.exit(exit_status(exc))
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise  # click's own ways out (a plugin's command may take them too)
        except Exception as exc:  # a third-party plugin's defect: one line naming it
            from .plugins import DEBUG_ENV, plugin_in_traceback

            culprit = plugin_in_traceback(exc)
            if culprit is None:  # gis's own defect: the traceback, for its report
                raise
            click.echo(f"Error: {culprit} raised {one_line(exc)}. This is a defect of that "
                       f"plugin: report it to its authors ({DEBUG_ENV}=1 shows the "
                       "traceback).", err=True)
            ctx.exit(1)


@contextlib.contextmanager
def one_line_warnings():
    """While a command runs, a warning prints as one ``WARNING: message`` line on stderr
    (gis's own, e.g. ``DataWarning`` for skipped images) or with its category and source
    appended (a library's), instead of Python's two lines of file, line number and source
    code. Only the format changes (``warnings.formatwarning``): filters (once per place,
    ``-W``, ``PYTHONWARNINGS``) and recorders (``catch_warnings(record=True)``) are as
    before."""
    import warnings

    def one_line(message, category, filename, lineno, line=None):
        module = category.__module__
        own = module == "gis" or module.startswith(("gis.", "gis_"))  # gis or a built-in plugin
        where = "" if own else f" ({category.__name__}, {os.path.basename(filename)}:{lineno})"
        return f"WARNING: {' '.join(str(message).split())}{where}\n"

    saved = warnings.formatwarning
    warnings.formatwarning = one_line
    try:
        yield
    finally:
        warnings.formatwarning = saved


@click.group(cls=GisGroup)
@click.version_option(__version__, prog_name="gis")
def cli():
    """gis: propose modified versions of an item that a set of users would prefer.

    GAN Inversion & Shifting (Kumar, Sharma & Narayan, PeerJ CS 2025) over pluggable
    generators, recommenders and losses.
    """
    from .memory import skip_triton_without_cuda

    skip_triton_without_cuda()  # ~75 MB resident that a machine without CUDA cannot use


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


@cli.group(invoke_without_command=True)
@click.pass_context
def plugins(ctx):
    """List plugins, where each came from and the hooks it implements; broken ones say why.

    `gis plugins check NAME` builds and checks a plugin's objects.
    """
    if ctx.invoked_subcommand is not None:
        return
    from .plugins import list_plugins

    infos = list_plugins()
    if not infos:
        click.echo("no plugins loaded")
    for info in infos:
        click.echo(f"{info.name}: {info.source}")
        if info.hooks or not info.broken:
            click.echo(f"    hooks: {', '.join(info.hooks) or '-'}")
        if info.broken:
            click.echo(f"    BROKEN: {info.error}")


@plugins.command("check")
@click.argument("name")
@click.option("--kind", type=click.Choice(KINDS), default=None,
              help="Check only the object of this kind named NAME.")
@click.option("--device", default="cpu", show_default=True, type=DEVICE,
              help="Device for generators and recommenders.")
@click.option("--option", "-o", "options", multiple=True, metavar="KEY=VALUE",
              help="Option for each factory (repeatable; VALUE is read as a JSON scalar, else "
                   "as text).")
def check(name, kind, device, options):
    """Build the generator, recommender, dataset or loss NAME (or every object plugin NAME
    registers) and run the checks gis runs at each load (docs/PLUGINS.md, "Checks").

    Exit status 1 when any check fails. An object that cannot be built because an offline
    asset it needs is not installed (e.g. default weights) is reported NOT CHECKED, with the
    command that provisions it, and does not fail the command.
    """
    from .cli_options import parse_key_values
    from .contracts import run_checks

    reports = run_checks(name, kind=kind, device=device,
                         options=parse_key_values(options, "--option"))
    for report in reports:
        click.echo(report.label)
        for line in report.passed:
            click.echo(f"  ok      {line}")
        if report.error is not None:
            click.echo(f"  FAILED  {report.error}")
        if report.missing is not None:
            click.echo(f"  NOT CHECKED  {report.missing}")
    failed = sum(r.error is not None for r in reports)
    missing = sum(r.missing is not None for r in reports)
    verdict = f"{failed} failed" if failed else ("none failed" if missing else "all passed")
    if missing:
        verdict += f", {missing} not checked (an asset is not installed: see above)"
    click.echo(f"{len(reports)} checked: {verdict}")
    if failed:
        click.get_current_context().exit(1)


for _kind in ("generators", "recommenders", "losses", "datasets"):
    cli.command(name=_kind, help=f"List registered {_kind}.")(
        functools.partial(_list_registry, _kind)
    )


#: the core commands: (module, command name); each module holds one click command
CORE_COMMANDS = (("gis.data.cli", "data"), ("gis.training.cli", "train"),
                 ("gis.engine.cli", "invert"), ("gis.engine.cli", "shift"),
                 ("gis.engine.cli", "design"), ("gis.batch.cli", "batch"),
                 ("gis.evaluation.cli", "evaluate"),
                 ("gis.report.cli", "report"))


def _unavailable(name: str, module: str, exc: BaseException) -> click.Command:
    """A stand-in for a core command whose module failed to import: listed by ``gis --help``,
    it fails with one line naming the import error (never a silently missing command)."""
    from .errors import GisRuntimeError, one_line

    reason = f"importing {module} failed: {one_line(exc)}"

    def fail(args):
        raise GisRuntimeError(f"gis {name} is unavailable: {reason} (`python -c \"import "
                              f"{module}\"` shows the traceback)")

    return click.Command(name, callback=fail, help=f"(unavailable: {reason})",
                         params=[click.Argument(["args"], nargs=-1, type=click.UNPROCESSED)],
                         context_settings={"ignore_unknown_options": True,
                                           "help_option_names": []})


def add_core_commands(group: click.Group, commands=CORE_COMMANDS) -> None:
    """Add each (module, name) command to ``group``; one whose module fails to import is added
    as a stand-in that says why (``_unavailable``)."""
    import importlib

    for module, name in commands:
        try:
            command = getattr(importlib.import_module(module), name)
        except Exception as exc:
            command = _unavailable(name, module, exc)
        group.add_command(command, name)


def _add_subcommands() -> None:
    """The core commands, then the plugins' (``register_commands``)."""
    from .plugins import add_plugin_commands

    add_core_commands(cli)
    add_plugin_commands(cli)


_add_subcommands()


def main(argv=None):
    """The `gis` console script: runs the command, then ends the process without the
    interpreter's teardown (``gis.memory.exit_now``)."""
    from .memory import exit_now

    try:
        cli.main(args=argv, prog_name="gis", standalone_mode=True)
    except GisError as exc:  # errors raised while building the CLI itself
        click.echo(f"Error: {exc}", err=True)
        exit_now(exc.exit_code)
    except SystemExit as exc:
        exit_now(exc.code)
    exit_now(0)


if __name__ == "__main__":
    main()
