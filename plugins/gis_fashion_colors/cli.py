"""The commands this plugin adds to ``gis`` (through the ``register_commands`` hook):

``gis data build``        build the fashion-colors archive from Fashion-MNIST;
``gis train classifier``  train a dataset's domain classifier (``classifier``, in gis's
                          training skeleton: ``gis.training.cli.trainer_command``).
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np


@click.command()
@click.option("--source", type=click.Path(file_okay=False, path_type=Path),
              default=None, show_default="/usr/share/datasets/fashion-mnist",
              help="Folder with the four Fashion-MNIST IDX files (.gz).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The .npz file to write (load it with --data PATH).")
@click.option("--full", is_flag=True,
              help="All 60,000 train images as catalogue, all 10,000 test images held out, "
                   "20,000 users (default: 6,000 / 2,000 / 3,000 as shipped).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--items", type=int, default=None, help="Catalogue size (override).")
@click.option("--heldout", type=int, default=None, help="Held-out set size (override).")
@click.option("--users", type=int, default=None, help="Number of simulated users (override).")
def build(source, out, full, seed, items, heldout, users):
    """Build the fashion-colors dataset from Fashion-MNIST (deterministic for a seed)."""
    from gis.data.split import activity

    from . import simulation as fc

    sizes = dict(fc.FULL if full else fc.SUBSET)
    for key, value in (("items", items), ("heldout", heldout), ("users", users)):
        if value is not None:
            sizes[key] = value
    click.echo(f"building fashion-colors: {sizes['items']} items, {sizes['heldout']} held out, "
               f"{sizes['users']} users, seed {seed}", err=True)
    arrays = fc.build_arrays(source or fc.DEFAULT_SOURCE, seed=seed, **sizes)
    meta = json.loads(str(arrays["meta"]))
    meta["built_by"] = "gis data build" + (" --full" if full else "")
    meta["source"] = str(source or fc.DEFAULT_SOURCE)
    arrays["meta"] = np.array(json.dumps(meta))
    path = fc.save_compact(arrays, out)
    ds = fc.from_compact(arrays)
    act = activity(ds)
    click.echo(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB): {ds.num_items} items, "
               f"{ds.num_heldout} held out, {ds.num_users} users, "
               f"{len(ds.train)} train interactions, median activity {np.median(act):.0f}")


def _classifier_command() -> click.Command:
    from gis.training.cli import trainer_command

    from .classifier import ClassifierTrainer

    return trainer_command(
        ClassifierTrainer, "classifier",
        help="Train the domain classifier of a dataset (categories from images; used for the "
             "domain Inception Score and category checks): domain-classifier.safetensors and "
             ".json in --out, resumable like every gis training run.")


def add_commands(cli: click.Group) -> None:
    """Add ``build`` to the ``gis data`` group and ``classifier`` to ``gis train`` (a group the
    core could not build is reported by the core; its command is then left out)."""
    for group, command in (("data", build), ("train", _classifier_command())):
        parent = cli.commands.get(group)
        if isinstance(parent, click.Group):
            parent.add_command(command)
