"""`gis train generator|recommender NAME --data DATASET --out DIR`: run a plugin's trainer.

`gis train classifier --data DATASET --out DIR`: train the dataset's domain classifier
(``gis.evaluation.classifier``; no plugin involved)."""

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


@click.command(name="classifier",
               help="Train the domain classifier of a dataset (categories from images; used "
                    "for the domain Inception Score and category checks).")
@click.option("--data", default="fashion-colors", show_default=True,
              help="Registered dataset name or a path (folder, .npz, DVBPR .npy).")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Folder for domain-classifier.safetensors and domain-classifier.json.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--epochs", default=None, type=int,
              help="Training epochs  [default: 18, gis.evaluation.classifier.DEFAULT_EPOCHS]")
@click.option("--device", default="cpu", show_default=True)
@click.option("--threads", default=None, type=int,
              help="torch CPU threads (default: GIS_THREADS, else all CPUs).")
@click.option("--limit", default=None, type=int,
              help="Use only the first N catalogue and held-out items (quick trials).")
@click.option("--trust", is_flag=True, help="Allow pickle-based data files (trusted only).")
def classifier(data, out, seed, epochs, device, threads, limit, trust):
    from .data import load_dataset
    from .evaluation.classifier import (
        DEFAULT_EPOCHS,
        save_domain_classifier,
        train_domain_classifier,
    )
    from .training import set_threads

    out_dir = Path(out)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise GisUsageError(f"output folder {out_dir} is not empty: choose another --out")
    if str(device).startswith("cpu") or threads is not None:
        set_threads(threads)
    dataset = load_dataset(data, trust=trust)
    model, card = train_domain_classifier(
        dataset, epochs=DEFAULT_EPOCHS if epochs is None else epochs, seed=seed, device=device,
        limit=limit)
    weights, card_path = save_domain_classifier(model, out_dir)
    m = card["metrics"]
    if m.get("heldout_accuracy") is None:
        click.echo("held-out accuracy: n/a (the dataset has no held-out items)")
    else:
        click.echo(f"held-out accuracy: {m['heldout_accuracy']:.4f} ({m['heldout_n']} items)")
        click.echo("per class: " + ", ".join(f"{k} {v:.3f}" for k, v in
                                             m["per_class_accuracy"].items() if v is not None))
    click.echo(f"training time: {card['training']['time_s']:.1f} s")
    click.echo(f"weights: {weights}")
    click.echo(f"model card: {card_path}")


@click.group()
def train():
    """Train generators and recommenders (checkpoints resume with --resume), and domain
    classifiers."""


train.add_command(_train_command("generators"))
train.add_command(_train_command("recommenders"))
train.add_command(classifier)
