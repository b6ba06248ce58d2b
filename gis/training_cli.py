"""`gis train generator|recommender NAME --data DATASET --out DIR`: run a plugin's trainer."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .errors import GisUsageError


def _parse_options(pairs: tuple[str, ...]) -> dict:
    """`-o key=value` pairs; values parsed as JSON when they parse (numbers, bools), else str."""
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise GisUsageError(f"option {pair!r} must look like key=value (e.g. -o lr=0.001)")
        key, value = pair.split("=", 1)
        try:
            out[key.strip().replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip().replace("-", "_")] = value
    return out


def _train(kind: str, name: str, data: str, out: str, seed: int, device: str, resume: bool,
           minutes: float | None, trust: bool, options: tuple[str, ...]) -> None:
    from .data import load_dataset
    from .plugins import REGISTRIES

    entry = REGISTRIES[kind].get(name)
    if entry.trainer is None:
        raise GisUsageError(f"{kind[:-1]} {name!r} cannot be trained by gis (its plugin gives no "
                            "trainer)")
    out_dir = Path(out)
    if out_dir.exists() and any(out_dir.iterdir()) and not resume:
        raise GisUsageError(f"output folder {out_dir} is not empty: pass --resume to continue "
                            "that run, or choose another --out")
    dataset = load_dataset(data, trust=trust)
    kwargs = _parse_options(options)
    if minutes is not None:
        kwargs["minutes"] = minutes
    path = entry.trainer(dataset, out=out_dir, seed=seed, device=device, resume=resume, **kwargs)
    click.echo(f"checkpoint: {path}")


def _train_command(kind: str) -> click.Command:
    singular = kind[:-1]

    @click.command(name=singular, help=f"Train {singular} NAME on a dataset (resumable).")
    @click.argument("name")
    @click.option("--data", default="fashion-colors", show_default=True,
                  help="Registered dataset name or a path (folder, .npz, DVBPR .npy).")
    @click.option("--out", required=True, type=click.Path(file_okay=False),
                  help="Folder for checkpoints, samples and the model card.")
    @click.option("--seed", default=0, show_default=True, type=int)
    @click.option("--device", default="cpu", show_default=True)
    @click.option("--resume", is_flag=True, help="Continue from the checkpoint in --out.")
    @click.option("--minutes", type=float, default=None, help="Wall-clock budget.")
    @click.option("--trust", is_flag=True, help="Allow pickle-based data files (trusted only).")
    @click.option("-o", "--option", "options", multiple=True, metavar="KEY=VALUE",
                  help="Trainer-specific setting, e.g. -o lr=0.001 (repeatable).")
    def command(name, data, out, seed, device, resume, minutes, trust, options):
        _train(kind, name, data, out, seed, device, resume, minutes, trust, options)

    return command


@click.group()
def train():
    """Train generators and recommenders (checkpoints resume with --resume)."""


train.add_command(_train_command("generators"))
train.add_command(_train_command("recommenders"))
