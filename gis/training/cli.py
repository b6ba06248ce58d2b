"""`gis train generator|recommender NAME --data DATASET --out DIR [options]`: run a plugin's
trainer in the resumable-run skeleton (:mod:`gis.training.run`).

Each trainable plugin is a subcommand whose options are built from its trainer: the run
options (:class:`gis.training.RunOptions`) and one option per field of the trainer's
``Config`` dataclass (name, type, default and help from the field; see
:mod:`gis.training.config`). ``gis train generator progan --help`` lists them.

Plugins add other ``gis train`` commands through ``register_commands`` (the fashion-colors
plugin adds ``gis train classifier``, its domain classifier).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..cli_options import DEVICE
from ..errors import GisUsageError
from .config import SettingInfo, settings_of

_SKIP_RUN = ("out", "init_from")  # declared by hand below (required / only with warm start)


def _click_option(s: SettingInfo) -> click.Option:
    help_text = s.help
    if s.name == "device":  # checked while the command line is parsed, like every --device
        return click.Option([s.option, s.name], type=DEVICE, default=s.default,
                            show_default=True, help=help_text)
    if s.kind == "bool":  # a flag that switches the default off: --x (False) / --no-x (True)
        decl = f"--no-{s.option[2:]}" if s.default else s.option
        text = f"Turn off: {help_text}" if s.default else help_text
        return click.Option([decl, s.name], is_flag=True, flag_value=not s.default,
                            default=bool(s.default), help=text)
    if s.sequence:
        n = "N" if s.length is None else str(s.length)
        default = None if s.default is None else ",".join(str(v) for v in s.default)
        kind = "|".join(map(str, s.choices)) if s.kind == "choice" else s.kind
        return click.Option([s.option, s.name], type=str, default=default,
                            show_default=default is not None,
                            metavar=f"{kind.upper()},...", help=f"{help_text} ({n} "
                            "values, comma-separated)")
    if s.kind == "choice":
        typ: Any = click.Choice([str(c) for c in s.choices])
        default = None if s.default is None else str(s.default)
    else:
        typ = {"int": int, "float": float, "str": str, "path": click.Path()}[s.kind]
        default = s.default
    return click.Option([s.option, s.name], type=typ, default=default,
                        show_default=default is not None, help=help_text)


def trainer_command(trainer_cls: type, name: str, *, help: str | None = None  # noqa: A002
                    ) -> click.Command:
    """A click command that runs ``trainer_cls`` (a :class:`gis.training.Trainer` subclass)
    in the skeleton: ``--data``, ``--out``, ``--trust``, ``--init-from`` (with
    ``warm_start``), the run options and one option per field of ``trainer_cls.Config``.
    Plugins that add a ``gis train`` command of their own (``register_commands``) use it."""
    from .options import RunOptions

    run_settings = [s for s in settings_of(RunOptions) if s.name not in _SKIP_RUN]
    config_settings = settings_of(trainer_cls.Config)
    clash = {s.name for s in config_settings} & ({s.name for s in run_settings}
                                                 | {"out", "init_from", "data", "trust"})
    if clash:
        raise GisUsageError(f"trainer {name!r}: its config redefines the run option(s) "
                            f"{', '.join(sorted(clash))}")
    params: list[click.Parameter] = [
        click.Option(["--data"], default="fashion-colors", show_default=True,
                     help="Registered dataset name or a path (folder, .npz, DVBPR .npy)."),
        click.Option(["--out"], required=True, type=click.Path(file_okay=False),
                     help="Run folder: checkpoint, exported model + card, samples, log."),
        click.Option(["--trust"], is_flag=True,
                     help="Allow pickle-based data files (trusted only)."),
    ]
    if getattr(trainer_cls, "warm_start", False):
        params.append(click.Option(
            ["--init-from"], type=click.Path(exists=False), default=None,
            help="Start a new run from another run's weights (a run folder or file)."))
    params += [_click_option(s) for s in run_settings]
    params += [_click_option(s) for s in config_settings]
    by_name = {s.name: s for s in config_settings}

    def callback(data: str, out: str, trust: bool, **values: Any) -> None:
        from ..data import load_dataset
        from ..io import check_output_folder, removed_if_left_empty
        from .config import make_config
        from .run import Run

        run_values = {s.name: values.pop(s.name) for s in run_settings}
        run_values["init_from"] = values.pop("init_from", None)
        config_values = {}
        for key, value in values.items():
            s = by_name[key]
            if s.sequence and isinstance(value, str):
                value = s.parse(value)
            elif s.kind in ("choice", "path") and value is not None:
                value = s.parse(str(value))
            config_values[key] = value
        invocation = _invocation(name, data, config_values, run_values)
        if not run_values["resume"] and _same_command_interrupted(
                Path(out) / trainer_cls.checkpoint_file, invocation):
            run_values["resume"] = True
        check_output_folder(out, resume=bool(run_values["resume"]),
                            checkpoint=trainer_cls.checkpoint_file)
        config = make_config(trainer_cls.Config, config_values,
                             what=f"{trainer_cls.name} trainer")
        dataset = load_dataset(data, trust=trust)
        # a run stopped or failed before its first checkpoint leaves no --out behind
        with removed_if_left_empty(out, keep=trainer_cls.checkpoint_file):
            run = Run(trainer_cls, dataset, config, RunOptions(out=Path(out), **run_values))
            run.invocation = invocation
            path = run.execute()
        click.echo(f"checkpoint: {path}")

    doc = " ".join((trainer_cls.__doc__ or "").strip().split("\n\n")[0].split())
    return click.Command(name=name, params=params, callback=callback,
                         help=help or f"Train {name} (resumable). {doc}", short_help=doc)


def _invocation(name: str, data: str, config_values: dict, run_values: dict) -> dict:
    """What makes two `gis train` commands "the same command" (JSON): the trainer, the data,
    every config option and the run options except --resume, --progress and --threads."""
    import json

    run = {k: v for k, v in run_values.items() if k not in ("resume", "progress", "threads")}
    doc = {"trainer": name, "data": str(data), "config": config_values, "run": run}
    return json.loads(json.dumps(doc, default=str))


def _same_command_interrupted(checkpoint: Path, invocation: dict) -> bool:
    """Whether ``checkpoint`` is an interrupted run of this same command (then it resumes, and
    says so). The same command's finished run is a one-line error (nothing to do)."""
    if not checkpoint.is_file():
        return False
    from .checkpoint import read_checkpoint_meta

    try:
        meta = read_checkpoint_meta(checkpoint)
    except GisUsageError:
        return False  # the refusal that follows names the file
    if meta.get("invocation") != invocation:
        return False
    if meta.get("finished"):
        raise GisUsageError(f"{checkpoint.parent} holds this same command's finished run: "
                            "nothing to do (pass --resume to train it further, or a new --out)")
    click.echo(f"{checkpoint.parent}: resuming this same command's interrupted run from its "
               "last checkpoint", err=True)
    return True


class TrainerGroup(click.Group):
    """``gis train generator|recommender``: one subcommand per registered plugin that gives a
    trainer, built when it is asked for (the registry is read then, not at start-up)."""

    def __init__(self, kind: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.kind = kind

    def _trainable(self) -> dict[str, Any]:
        from ..plugins import REGISTRIES

        return {e.name: e for e in REGISTRIES[self.kind] if e.trainer is not None}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(self._trainable())

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        from ..plugins import REGISTRIES

        entry = REGISTRIES[self.kind].get(cmd_name)  # an unknown name: the registry's error
        if entry.trainer is None:
            raise GisUsageError(f"{self.kind[:-1]} {entry.name!r} cannot be trained by gis (its "
                                "plugin gives no trainer)")
        from .run import Trainer

        if not (isinstance(entry.trainer, type) and issubclass(entry.trainer, Trainer)):
            raise GisUsageError(f"{self.kind[:-1]} {entry.name!r} (plugin {entry.plugin}): its "
                                "trainer is not a gis.training.Trainer subclass (docs/PLUGINS.md)")
        doc = " ".join((entry.trainer.__doc__ or "").strip().split("\n\n")[0].split())
        return trainer_command(entry.trainer, entry.name, help=f"Train {self.kind[:-1]} "
                               f"{entry.name!r} (resumable). {doc}")


@click.group()
def train():
    """Train generators and recommenders (resumable with --resume), and what plugins add."""


train.add_command(TrainerGroup("generators", name="generator",
                               help="Train a registered generator NAME on a dataset."))
train.add_command(TrainerGroup("recommenders", name="recommender",
                               help="Train a registered recommender NAME on a dataset."))
