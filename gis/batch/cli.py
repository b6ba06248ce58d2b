"""`gis batch`: many `gis shift` runs, on this machine or a Ray cluster, resumable."""

from __future__ import annotations

import os
from pathlib import Path

import click

from ..cli_options import DEVICE, factory_options
from ..engine.cli import _latent_space_option, shift_settings_options
from ..errors import GisUsageError


def _items(value: str | None) -> str | None:
    if value is None or value == "all":
        return value
    if not value.isdigit() or int(value) < 1:
        raise click.BadParameter(f"{value!r} is neither 'all' nor a number >= 1")
    return value


def default_workers() -> int:
    """Local worker processes when --workers is not given: one per core (each with 1 torch
    thread), and at most one per 2 GB of memory (a worker holds the models, ~1.2 GB with the
    shipped ones). On the 2-core machine two 1-thread workers run 14 % more tasks an hour than
    one 2-thread process (benchmarks/RESULTS.md, "gis batch")."""
    cores = os.cpu_count() or 1
    try:
        mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        mem_gb = 2.0 * cores
    return max(1, min(cores, int(mem_gb // 2)))


@click.command()
@click.option("--manifest", type=click.Path(dir_okay=False), default=None,
              help="CSV or JSONL file of tasks: an item (item / item_id / image) and a target "
                   "(users / users_file / segment / n_users) per line, with optional per-task "
                   "settings (docs/BATCH.md).")
@click.option("--items", "items", default=None, callback=lambda c, p, v: _items(v),
              help="Instead of --manifest: one task per catalogue item, 'all' or the first N "
                   "in catalogue order.")
@click.option("--users", default=None, help="Target of every task without one: comma-separated "
                                            "user ids.")
@click.option("--users-file", type=click.Path(dir_okay=False), default=None,
              help="Target of every task without one: a file of user ids.")
@click.option("--segment", default=None,
              help="Target of every task without one: a named segment (category:NAME for the "
                   "users who buy most in category NAME, all, or one of --segments).")
@click.option("--n-users", type=int, default=None,
              help="Target of every task without one: N random users (seeded by --seed, as "
                   "`gis shift --n-users`).")
@click.option("--segments", "segments_file", type=click.Path(dir_okay=False), default=None,
              help="CSV of user_id,segment rows defining named segments.")
@click.option("--generator", "generator_name", default="progan", show_default=True)
@click.option("--recommender", "recommender_name", default="dvbpr", show_default=True)
@click.option("--generator-checkpoint", type=click.Path(dir_okay=False), default=None)
@click.option("--recommender-checkpoint", type=click.Path(dir_okay=False), default=None)
@click.option("--data", default=None,
              help="Catalogue dataset. Default: the one the recommender was trained on.")
@shift_settings_options
@_latent_space_option
@click.option("--seed", default=0, show_default=True, type=int,
              help="Seed of every task without its own (as `gis shift --seed`).")
@click.option("--device", default="cpu", show_default=True, type=DEVICE,
              help="torch device of every worker (cpu, cuda, cuda:1).")
@click.option("--trust", is_flag=True,
              help="Allow pickle-based checkpoints/data you trust.")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Output folder; the same command again resumes it (docs/BATCH.md).")
@click.option("--workers", type=int, default=None,
              help="Local worker processes [one per core, memory permitting; 1 runs the "
                   "tasks in this process].")
@click.option("--threads", type=int, default=None,
              help="torch threads of each worker [the cores shared out among the workers; 1 "
                   "CPU a task on Ray].")
@click.option("--ray", "ray_address", default=None, metavar="auto|ADDRESS",
              help="Run the tasks on Ray: 'auto' joins the cluster running on this machine or "
                   "starts one, ADDRESS joins a running cluster (HOST:PORT).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@factory_options("generator", "recommender", "dataset")
def batch(manifest, items, users, users_file, segment, n_users, segments_file, generator_name,
          recommender_name, generator_checkpoint, recommender_checkpoint, data, recipe,
          category, n, eps, steps, invert_steps, lr, lr_schedule, aggregation, temperature,
          top_k, losses, loss_options, invert_losses, min_silhouette_iou, min_distance, no_realism_check,
          no_category_check, precision, latent_space, seed, device, trust, out, workers, threads, ray_address,
          quiet):
    """Shift many items for their targets: one `gis shift` folder per task.

    Writes OUT/tasks/TASK/ (what `gis shift --out` writes), OUT/reports/TASK.html,
    OUT/summary.csv (one row per task: best gain, checks, rank change, seconds) and
    OUT/index.html (the items ranked by gain). Interrupted, the same command again finishes
    only the tasks not done; a failed task is recorded in OUT/failed/ and does not stop the
    others (exit status 1 at the end).

    \b
    gis batch --items 20 --n-users 10 --out cat
    gis batch --manifest tasks.csv --out cat --ray auto
    """
    from . import commands

    if (manifest is None) == (items is None):
        raise GisUsageError("pass either --manifest FILE or --items all|N")
    options = {k: v for k, v in dict(
        recipe=recipe, category=category, n=n, eps=eps, steps=steps, invert_steps=invert_steps,
        lr=lr, lr_schedule=lr_schedule, aggregation=aggregation, temperature=temperature,
        top_k=top_k, losses=list(losses), loss_options=list(loss_options),
        invert_losses=list(invert_losses),
        min_silhouette_iou=min_silhouette_iou, min_distance=min_distance,
        no_realism_check=no_realism_check or None,
        no_category_check=no_category_check or None, precision=precision, seed=seed).items()
        if v not in (None, [])}
    commands.batch_command(
        manifest=manifest, items=items,
        target=dict(users=users.split(",") if users is not None else None, users_file=users_file,
                    segment=segment, n_users=n_users),
        segments_file=segments_file, generator=generator_name, recommender=recommender_name,
        generator_checkpoint=generator_checkpoint,
        recommender_checkpoint=recommender_checkpoint, data=data, latent_space=latent_space,
        device=device, trust=trust, options=options, out=Path(out),
        workers=workers if workers is not None else default_workers(), threads=threads,
        ray_address=ray_address, progress=not quiet)
