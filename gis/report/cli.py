"""The `gis report` command."""

from __future__ import annotations

from pathlib import Path

import click

from .page import write_report


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Where to write the page (default: RUN_DIR/report.html).")
@click.option("--overwrite", is_flag=True, help="Replace an existing, different report file.")
def report(run_dir: Path, out: Path | None, overwrite: bool) -> None:
    """Write a self-contained HTML report of a `gis shift` output folder for the seller.

    The page shows the item, the base image and every variant, their scores and catalogue
    ranks for the target users, the recommended variant, charts and the run's settings. It
    needs no network and no other file. Prints the path of the page."""
    click.echo(str(write_report(run_dir, out, overwrite=overwrite)))
