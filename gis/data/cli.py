"""``gis data``: inspect, convert and look at datasets (dataset plugins may add commands, such
as a ``build`` command, through the ``register_commands`` hook)."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from ..errors import GisUsageError

DATASET_HELP = ("a registered dataset name (see `gis datasets`), a folder of images with "
                "interactions.csv, a DVBPR .npy (with --trust) or a gis .npz; default: "
                "fashion-colors")


def _dataset_options(f):
    f = click.option("--resolution", type=int, default=None,
                     help="Resize images to this many pixels a side.")(f)
    f = click.option("--trust", is_flag=True,
                     help="Allow loading pickle-based files (DVBPR .npy) you trust.")(f)
    return click.argument("dataset", required=False, metavar="[DATASET]")(f)


def _load(dataset, trust, resolution):
    from . import load_dataset

    return load_dataset(dataset, trust=trust, resolution=resolution)


@click.group(name="data")
def data():
    """Inspect, build and convert datasets (items, users, implicit feedback)."""


def _counts_line(names, counts) -> str:
    return ", ".join(f"{n} {c}" for n, c in zip(names, counts, strict=True))


@data.command(help="Counts, categories, colours and interaction statistics of DATASET.\n\n"
              f"DATASET is {DATASET_HELP}.")
@_dataset_options
@click.option("--auc", "with_auc", is_flag=True,
              help="Also report sampled AUCs (100 negatives): popularity, and the ground-truth "
                   "utility for datasets that offer ground truth.")
def info(dataset, trust, resolution, with_auc):
    from . import default_item_id
    from .split import activity, item_popularity, oracle_auc, popularity_auc

    ds = _load(dataset, trust, resolution)
    m = ds.meta
    click.echo(f"dataset:      {m.get('name', dataset)}"
               + (f"  ({m['path']})" if m.get("path") else ""))
    click.echo(f"items:        {ds.num_items} catalogue ({ds.resolution}x{ds.resolution} RGB), "
               f"{ds.num_heldout} held out")
    cat_counts = np.bincount(ds.categories, minlength=len(ds.category_names))
    click.echo(f"categories:   {len(ds.category_names)}: "
               + _counts_line(ds.category_names, cat_counts))
    names = m.get("color_names")
    if names and "color" in ds.attributes:
        col_counts = np.bincount(ds.attributes["color"], minlength=len(names))
        click.echo(f"colours:      {len(names)}: " + _counts_line(names, col_counts))
    act = activity(ds)
    n_val, n_test = int((ds.val >= 0).sum()), int((ds.test >= 0).sum())
    click.echo(f"users:        {ds.num_users} (e.g. {', '.join(ds.user_ids[:5])})")
    click.echo(f"interactions: {len(ds.train) + n_val + n_test} = {len(ds.train)} train + "
               f"{n_val} validation + {n_test} test; "
               f"{ds.num_users - n_test} users train-only")
    if ds.num_users:
        q = np.percentile(act, [0, 25, 50, 75, 90, 99, 100])
        click.echo("per user:     min {:.0f}, p25 {:.0f}, median {:.0f}, p75 {:.0f}, "
                   "p90 {:.0f}, p99 {:.0f}, max {:.0f}; mean {:.1f}".format(*q, act.mean()))
    pop = item_popularity(ds)
    if ds.num_items:
        click.echo(f"per item:     median {np.median(pop):.0f}, max {pop.max()}; "
                   f"{int((pop == 0).sum())} items without training interactions")
    if ds.tastes:
        click.echo(f"ground truth: hidden tastes ({', '.join(sorted(ds.tastes))})")
    if ds.num_items:
        key = default_item_id(ds)
        where, _ = ds.find_item(key)
        click.echo(f"default item: {key} ({where}; {_describe_item(ds, key)})")
    if with_auc:
        if len(ds.train) == 0 or n_test == 0:
            raise GisUsageError("no test interactions to compute an AUC on")
        click.echo(f"AUC popularity (non-visual baseline): {popularity_auc(ds):.3f}")
        if ds.has_ground_truth:
            click.echo(f"AUC true utility (oracle ceiling):    {oracle_auc(ds):.3f}")


def _describe_item(ds, item_id) -> str:
    where, idx = ds.find_item(item_id)
    cats = ds.categories if where == "catalogue" else ds.heldout_categories
    attrs = ds.attributes if where == "catalogue" else ds.heldout_attributes
    parts = [ds.category_names[int(cats[idx])]]
    names = ds.meta.get("color_names")
    if names and "color" in attrs:
        parts.append(names[int(attrs["color"][idx])])
    return ", ".join(parts)


@data.command()
@_dataset_options
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The PNG file to write.")
@click.option("--n", "count", type=int, default=64, show_default=True,
              help="Number of images.")
@click.option("--by", type=click.Choice(["random", "category", "color"]), default="random",
              show_default=True, help="Sample at random, or one row per category / colour.")
@click.option("--heldout", is_flag=True, help="Show held-out items instead of the catalogue.")
@click.option("--seed", type=int, default=0, show_default=True)
def show(dataset, trust, resolution, out, count, by, heldout, seed):
    """Write a labelled PNG grid of sample items of DATASET."""
    from ..images import make_grid_png

    if count < 1:
        raise GisUsageError("--n must be at least 1")
    ds = _load(dataset, trust, resolution)
    if heldout:
        if ds.heldout_images is None:
            raise GisUsageError(f"dataset {ds.meta.get('name', dataset)!r} has no held-out items")
        images, cats, attrs = ds.heldout_images, ds.heldout_categories, ds.heldout_attributes
        ids = ds.heldout_item_ids
    else:
        images, cats, attrs, ids = ds.images, ds.categories, ds.attributes, ds.item_ids
    color_names = ds.meta.get("color_names") if "color" in attrs else None
    rng = np.random.default_rng(seed)
    nrow = None
    if by == "random":
        idx = rng.choice(len(images), size=min(count, len(images)), replace=False)
    else:
        if by == "color" and color_names is None:
            raise GisUsageError("this dataset has no colour attribute; use --by category")
        groups = cats if by == "category" else attrs["color"]
        values = np.unique(groups)
        per = max(1, count // len(values))
        idx_list = []
        for v in values:
            members = np.flatnonzero(groups == v)
            pick = rng.choice(members, size=min(per, len(members)), replace=False)
            idx_list.extend(pick.tolist() + [-1] * (per - len(pick)))
        idx = np.array(idx_list)
        nrow = per
    labels, tiles = [], []
    blank = np.full(images.shape[1:], 255, np.uint8)
    for i in idx:
        if i < 0:
            tiles.append(blank)
            labels.append("")
            continue
        text = ds.category_names[int(cats[i])]
        if color_names is not None:
            text = f"{color_names[int(attrs['color'][i])]} {text}"
        tiles.append(images[i])
        labels.append(f"{ids[i]}\n{text}")  # the id: what --item-id takes
    path = make_grid_png(np.stack(tiles), out, labels=labels, nrow=nrow, tile=96)
    shown = int((np.asarray(idx) >= 0).sum())  # not the blank tiles of a short group
    click.echo(f"wrote {path} ({shown} items of {ds.meta.get('name', dataset)}, labelled "
               "id and category)")


@data.command()
@_dataset_options
@click.option("--top", type=int, default=20, show_default=True,
              help="Number of users to list (0: all).")
@click.option("--sort", type=click.Choice(["activity", "id"]), default="activity",
              show_default=True)
def users(dataset, trust, resolution, top, sort):
    """List users of DATASET with their activity (and hidden tastes when simulated)."""
    from .split import activity

    ds = _load(dataset, trust, resolution)
    act = activity(ds)
    order = np.argsort(-act, kind="stable") if sort == "activity" else np.arange(ds.num_users)
    if top > 0:
        order = order[:top]
    t = ds.tastes
    color_names = ds.meta.get("color_names")
    show_taste = "category" in t and "favorite_color" in t and color_names
    header = f"{'user':<10} {'total':>6} {'train':>6} {'val item':>12} {'test item':>12}"
    if show_taste:
        header += "  favourite colour  top categories (hidden taste)"
    click.echo(header)
    train_counts = np.bincount(ds.train[:, 0], minlength=ds.num_users)
    for r in order:
        line = (f"{ds.user_ids[r]:<10} {act[r]:>6} {train_counts[r]:>6} "
                f"{ds.item_ids[ds.val[r]] if ds.val[r] >= 0 else '-':>12} "
                f"{ds.item_ids[ds.test[r]] if ds.test[r] >= 0 else '-':>12}")
        if show_taste:
            top_c = np.argsort(-t["category"][r])[:2]
            cats = ", ".join(f"{ds.category_names[c]} {t['category'][r, c]:.2f}" for c in top_c)
            line += f"  {color_names[int(t['favorite_color'][r])]:<16}  {cats}"
        click.echo(line)


@data.command()
@_dataset_options
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The .npz file to write (gis's own format: no pickle).")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out file.")
def convert(dataset, trust, resolution, out, overwrite):
    """Save DATASET in gis's own .npz format (e.g. a DVBPR .npy, read once with --trust)."""
    from .store import save_dataset

    if out.suffix.lower() != ".npz":
        raise GisUsageError(f"--out {out}: gis's dataset files end in .npz (the format "
                            "`--data FILE` recognises): name it e.g. "
                            f"{out.with_suffix('.npz').name}")
    if out.exists() and not overwrite:
        raise GisUsageError(f"--out {out} exists: pass --overwrite to replace it, or choose "
                            "another file")
    ds = _load(dataset, trust, resolution)
    path = save_dataset(ds, out)
    click.echo(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB): {ds.num_items} items, "
               f"{ds.num_users} users")
