"""What `gis batch` does: build the tasks, run them (gis.batch.runner), write the summary."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import click

from ..errors import GisUsageError
from ..interrupts import interrupt_behind
from .manifest import TARGETS, BatchTask, read_manifest, tasks_for_items
from .runner import BatchState, ModelSpec, Outcome, execute, finished_tasks, load_catalogue
from .summary import rows, write_index, write_summary_csv


def build_tasks(*, manifest, items, target: dict, catalogue_ids: Callable[[], list[str]]
                ) -> list[BatchTask]:
    """The batch's tasks: the manifest's, or one per catalogue item (``items``: "all" or a
    count; ``catalogue_ids()`` gives the catalogue's item ids, called only then and after the
    cheap checks); ``target`` (users, users_file, segment, n_users; at most one set) is the
    target of every task that names none."""
    given = {k: v for k, v in target.items() if v is not None}
    if len(given) > 1:
        flags = ", ".join("--" + k.replace("_", "-") for k in given)
        raise GisUsageError(f"pass only one of {flags}")
    if given.get("users_file") is not None:
        given["users_file"] = str(Path(given["users_file"]).resolve())
        if not Path(given["users_file"]).is_file():
            raise GisUsageError(f"--users-file {target['users_file']} not found")
    if given.get("users") is not None:
        given["users"] = tuple(u.strip() for u in given["users"] if u.strip())
        if not given["users"]:
            raise GisUsageError("--users: the target user set is empty: name users with "
                                "--users ID,ID,... or --users-file, or pick some with "
                                "--n-users N")
    if given.get("n_users") is not None and given["n_users"] < 1:
        raise GisUsageError(f"--n-users must be >= 1 (got {given['n_users']})")
    if manifest is not None:
        tasks = read_manifest(manifest)
        if given:
            tasks = [t if any(getattr(t, k) is not None for k in TARGETS)
                     else dataclasses.replace(t, **given) for t in tasks]
        return tasks
    ids = catalogue_ids()
    if items != "all":
        if int(items) > len(ids):
            raise GisUsageError(f"--items {items} exceeds the {len(ids)} catalogue items: pass "
                                f"--items all or a smaller number")
        ids = ids[:int(items)]
    return tasks_for_items(ids, **given)


def batch_command(*, manifest, items, target, segments_file, generator, recommender,
                  generator_checkpoint, recommender_checkpoint, data, latent_space, device,
                  trust, options, out: Path, workers, threads, ray_address, progress) -> None:
    from ..options import cli_scope

    spec = ModelSpec(generator=generator, recommender=recommender,
                     generator_checkpoint=_abs(generator_checkpoint),
                     recommender_checkpoint=_abs(recommender_checkpoint), data=data,
                     device=device, trust=trust, latent_space=latent_space,
                     factory_scopes={k: cli_scope(k) for k in ("generator", "recommender",
                                                               "dataset") if cli_scope(k)[1]})
    if workers < 1:  # the cheap checks before any model loads
        raise GisUsageError(f"--workers must be >= 1 (got {workers})")
    if threads is not None and threads < 1:
        raise GisUsageError(f"--threads must be >= 1 (got {threads})")
    if segments_file is not None:
        if not Path(segments_file).is_file():
            raise GisUsageError(f"--segments {segments_file}: file not found")
        segments_file = str(Path(segments_file).resolve())
    loaded = []  # --items loads the recommender and catalogue once, for its ids and the run

    def catalogue_ids() -> list[str]:
        loaded.append(load_catalogue(spec))
        return [str(i) for i in loaded[0][1].item_ids]

    tasks = build_tasks(manifest=manifest, items=items, target=target,
                        catalogue_ids=catalogue_ids)
    if segments_file is not None:  # part of the batch's definition (resuming checks it)
        options = {**options, "segments_file": segments_file}

    def report(task: BatchTask, outcome: Outcome, state: BatchState) -> None:
        if not progress:
            return
        from tqdm import tqdm

        if outcome.error is not None:
            tqdm.write(f"{task.id}: FAILED: {outcome.error}")

    state = None
    try:
        state = execute(out, spec, options, tasks, workers=workers, threads=threads,
                        ray_address=ray_address, segments_file=segments_file,
                        progress=progress, on_outcome=report,
                        catalogue=loaded.pop() if loaded else None,
                        batch_target=_batch_target(target))
    except BaseException as exc:
        if interrupt_behind(exc) is None:
            raise
        done = len(finished_tasks(out))
        click.echo(f"{done} of {len(tasks)} tasks are done in {out}: run the same command "
                   "again to finish the rest", err=True)
        raise
    table = rows(out, tasks, state.failed, options.get("seed", 0))
    write_summary_csv(out / "summary.csv", table)
    pending = len(tasks) - len(table)
    write_index(out, table, title=f"gis batch: {len(tasks)} tasks", pending=pending,
                header=_header(spec, options, tasks, ray_address))
    _print_summary(out, table, len(tasks))
    failed = [r for r in table if r["status"] == "failed"]
    if failed:
        click.echo(f"{len(failed)} of {len(tasks)} tasks failed (their errors are in "
                   f"{out / 'summary.csv'} and {out / 'failed'}/): fix them and run the same "
                   "command again to redo only those", err=True)
        click.get_current_context().exit(1)


def _batch_target(target: dict) -> dict:
    """The command line's user list or users file (``execute`` checks it up front)."""
    if target.get("users") is not None:
        return {"users": [u.strip() for u in target["users"] if u.strip()]}
    if target.get("users_file") is not None:
        return {"users_file": str(Path(target["users_file"]).resolve())}
    return {}


def _abs(path):
    return None if path is None else str(Path(path).resolve())



def _header(spec: ModelSpec, options: dict, tasks: list[BatchTask], ray_address):
    shown = {k: v for k, v in options.items() if k != "segments_file"}
    return [("Generator", spec.generator + (f" ({spec.latent_space})" if spec.latent_space
                                            else "")),
            ("Recommender", spec.recommender),
            ("Dataset", spec.data or "the recommender's"),
            ("Settings", ", ".join(f"{k}={v}" for k, v in shown.items()) or "the defaults"),
            ("Tasks", str(len(tasks))),
            ("Ran on", f"Ray ({ray_address})" if ray_address else "this machine")]


def _print_summary(out: Path, table: list[dict], total: int) -> None:
    done = [r for r in table if r["status"] == "done"]
    gaining = [r for r in done if r["beats_reference"] is True]
    click.echo(f"{len(done)} of {total} tasks done; {len(gaining)} with a recommended variant "
               "that beats the item")
    for r in gaining[:5]:
        change = (f", median rank {r['median_rank_reference']} -> "
                  f"{r['median_rank_recommended']}" if r["median_rank_reference"] != "" else "")
        click.echo(f"  {r['task']}: variant #{r['recommended_variant']} "
                   f"{r['best_gain']:+.3f}{change}")
    click.echo(f"-> {out}/index.html (items ranked by gain), {out}/summary.csv")
