"""What the CLI commands do: load models and inputs, call the engine, save the fixed outputs.

Outputs appear whole or not at all: everything is written into a hidden sibling folder that is
renamed into place at the end (``gis.io.atomic_folder``; an existing folder is replaced only with
``overwrite``).
"""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..errors import GisUsageError
from ..io import atomic_folder, check_output_folder, write_json
from ..provenance import record_fields, to_json
from ..record import (
    Checks,
    Distances,
    Inversion,
    PerUser,
    RankSummary,
    Scores,
    ShiftRecord,
    Targets,
    UserRanks,
    UserScores,
)

if TYPE_CHECKING:
    from .checks import CheckSettings
    from .settings import InvertSettings, ShiftSettings


def _load_models(generator, recommender, *, generator_checkpoint=None,
                 recommender_checkpoint=None, device="cpu", trust=False, latent_space=None):
    """The models; the generator in ``latent_space`` (``Generator.in_latent_space``: None is
    its first space; an unoffered one is a one-line GisUsageError)."""
    from ..plugins import get_generator, get_recommender

    gen = get_generator(generator, checkpoint=generator_checkpoint, device=device, trust=trust)
    if latent_space is not None:
        gen = gen.in_latent_space(latent_space)
    rec = None
    if recommender is not None:
        rec = get_recommender(recommender, checkpoint=recommender_checkpoint, device=device,
                              trust=trust)
    return gen, rec


def _load_item(item, item_id, dataset, size: int) -> tuple[torch.Tensor, dict]:
    """The item as (1, 3, size, size) in [-1, 1] and a description of where it came from."""
    from ..images import load_image

    if item is not None and item_id is not None:
        raise GisUsageError("pass either --item or --item-id, not both")
    if item is not None:
        return load_image(item, size=size), {"source": "file", "path": str(item)}
    from ..data import default_item_id

    key = item_id if item_id is not None else default_item_id(dataset)
    idx = _item_index(dataset, key)
    x = dataset.image_tensor([idx])
    if x.shape[-1] != size:
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear",
                                            align_corners=False, antialias=True)
    # the catalogue's own spelling of the id (the user may have typed ITEM013 or 13)
    return x, {"source": "dataset", "dataset": dataset.meta.get("name"),
               "item_id": str(dataset.item_ids[idx]),
               "category": dataset.category_names[int(dataset.categories[idx])],
               "default": item_id is None}


def _item_index(dataset, key) -> int:
    """The catalogue index of item id ``key`` (matched as ``Dataset.find_item`` matches:
    Unicode NFC, lost leading zeros, case)."""
    where, index = dataset.find_item(str(key))
    if where != "catalogue":
        raise GisUsageError(f"item id {key!r} is a held-out item of dataset "
                            f"{dataset.meta.get('name')!r}, not a catalogue item: pass its "
                            "image with --item instead")
    return index


def _dataset_for(recommender, data, trust):
    """``data``, else the dataset the recommender's card names when that is a registered
    dataset (a folder or file name in a card is never looked up in the current folder: it
    could be another catalogue of that name), else the default."""
    from .. import plugins
    from ..data import DEFAULT_DATASET, load_dataset

    name = data
    if name is None and recommender is not None:
        name = recommender.card.dataset_name
        if name is not None and name not in plugins.datasets:
            raise GisUsageError(f"the recommender was trained on {name!r} (its model card), "
                                "which is not a registered dataset: pass that catalogue's "
                                "folder or file with --data")
    return load_dataset(name or DEFAULT_DATASET, trust=trust)


# ------------------------------------------------------------------------------ invert
def invert_command(*, generator, generator_checkpoint, item, item_id, data, device, trust, out,
                   overwrite, progress, overrides, latent_space=None):
    from ..images import make_grid_png, save_image
    from .invert import invert
    from .settings import invert_settings

    settings = invert_settings("seller", **overrides)  # the inversion gis shift runs
    _seed_globally(settings.seed)
    gen, _ = _load_models(generator, None, generator_checkpoint=generator_checkpoint,
                          device=device, trust=trust, latent_space=latent_space)
    dataset = _dataset_for(None, data, trust) if item is None else None
    x, source = _load_item(item, item_id, dataset, gen.resolution)
    with atomic_folder(out, overwrite=overwrite) as tmp:
        res = invert(x, gen, settings=settings, progress=progress)
        save_image(res.target, tmp / "item.png", value_range=(0, 1))
        save_image(res.image, tmp / "base.png", value_range=(0, 1))
        make_grid_png(torch.cat([res.target, res.image]), tmp / "grid.png", nrow=2, tile=128,
                      # the tile holds ~18 characters: LPIPS only (result.json has every term)
                      labels=["item", f"G(z) LPIPS {res.lpips:.3f}" if res.lpips is not None
                              else "G(z)"],
                      value_range=(0, 1))
        _save_latents(tmp / "latents.safetensors", {"base": res.latent})
        write_json(tmp / "result.json", {
            "command": "invert", **_provenance(gen, generator=(gen, generator)), "item": source,
            "dataset": _dataset_info(dataset),
            "settings": vars(res.settings), "lpips": res.lpips, "mse": res.mse, "losses": res.losses, "history": res.history})
    _echo(f"inverted: {_terms(res.losses, '.4f')} -> {out}")


def _terms(losses: dict[str, float], fmt: str) -> str:
    """``lpips 0.123, mse 0.010``: the final value of each inversion term."""
    return ", ".join(f"{k} {v:{fmt}}" for k, v in losses.items())


def _seed_globally(seed: int) -> None:
    """Seeding happens in the command: the engine draws from its own generators seeded by its
    settings (docs/ENGINE.md), and this fixes any global draw a plugin's model makes."""
    torch.manual_seed(seed)


# ------------------------------------------------------------------------------ shift
def shift_command(*, generator, recommender, generator_checkpoint, recommender_checkpoint, item,
                  item_id, random_latent, data, users, users_file, n_users, device, trust, out,
                  overwrite, progress, invert_overrides, shift_overrides, category=None,
                  check_overrides=None, latent_space=None):
    check_output_folder(out, overwrite=overwrite)  # fail before any heavy work
    settings = shift_task_settings(invert_overrides, shift_overrides, check_overrides)
    _seed_globally(settings.shift.seed)
    gen, rec = _load_models(generator, recommender, generator_checkpoint=generator_checkpoint,
                            recommender_checkpoint=recommender_checkpoint, device=device,
                            trust=trust, latent_space=latent_space)
    dataset = shift_dataset(rec, data, trust)
    task = resolve_shift_task(gen, rec, dataset, settings, generator=generator, item=item,
                              item_id=item_id, random_latent=random_latent, users=users,
                              users_file=users_file, n_users=n_users, category=category)
    if task.default_target is not None:
        _echo(f"no --users, --users-file or --n-users: shifting for {task.default_target} "
              f"({len(task.users)} users of {recommender}, {settings.shift.aggregation} "
              "aggregation)")
    from ..memory import release_free_heap
    from ..metrics.category import CategoryReference
    from .pipeline import embed_dataset

    # what the run needs of the catalogue, then the catalogue itself is freed (peak memory)
    t0 = time.perf_counter()
    catalogue_phi = embed_dataset(rec, dataset)
    embed_seconds = time.perf_counter() - t0
    category_reference = (CategoryReference.from_dataset(dataset)
                          if task.settings.check.category else None)
    dataset_info = _dataset_info(dataset)
    del dataset
    release_free_heap()
    run = run_shift_task(gen, rec, task, catalogue_phi=catalogue_phi,
                         category_reference=category_reference, progress=progress)
    # result.json's seconds.catalogue: the embedding, done here rather than in run_gis
    run.seconds["catalogue"] = run.seconds.get("catalogue", 0.0) + embed_seconds
    with atomic_folder(out, overwrite=overwrite) as tmp:
        summary = save_shift_outputs(tmp, run, gen=gen, rec=rec, generator=generator,
                                     recommender=recommender, source=task.source,
                                     dataset_info=dataset_info, category=task.category,
                                     default_target=task.default_target)
    _echo(summary)
    _echo(f"-> {out} (docs/OUTPUTS.md); `gis report {shlex.quote(str(out))}` writes an HTML "
          "page for the seller")


@dataclass
class ShiftTaskSettings:
    """The three settings of one `gis shift` run, built and validated before any model loads."""

    invert: InvertSettings
    shift: ShiftSettings
    check: CheckSettings


def shift_task_settings(invert_overrides: dict, shift_overrides: dict,
                        check_overrides: dict | None = None) -> ShiftTaskSettings:
    """``gis shift``'s settings from its option overrides (None = the recipe's value): the
    shifting recipe (``shift_overrides["recipe"]``) brings its own inversion loop, and
    ``--min-distance`` sets both the distinctness check and the distinct term's threshold.
    Raises GisUsageError for an impossible value."""
    from .checks import CheckSettings
    from .settings import invert_settings, shift_settings

    given_options = dict(shift_overrides.get("loss_options") or {})
    min_distance = (check_overrides or {}).get("min_distance")
    if min_distance and min_distance != CheckSettings.min_distance:
        # the distinct term pushes pairs apart to the check's threshold; at the default (0.02,
        # the term's own default too) no option is added, so `--min-distance 0.02` is the default
        shift_overrides = {**shift_overrides, "loss_options": {
            **(shift_overrides.get("loss_options") or {}),
            "distinct": {"threshold": float(min_distance)}}}
    s_shift = shift_settings(**shift_overrides)
    unused = [name for name in given_options if name not in s_shift.losses]
    if unused:
        raise GisUsageError(f"--loss-option {unused[0]}.*: {unused[0]!r} is not a term of the "
                            f"shifting objective ({', '.join(s_shift.losses)}); add it with "
                            f"--loss {unused[0]}=WEIGHT")
    s_inv = invert_settings(shift_overrides.get("recipe") or "paper", **invert_overrides)
    s_check = CheckSettings(**{k: v for k, v in (check_overrides or {}).items()
                               if v is not None})
    s_shift.validate()
    s_inv.validate()
    s_check.validate()
    return ShiftTaskSettings(invert=s_inv, shift=s_shift, check=s_check)


def shift_dataset(rec, data, trust):
    """The catalogue dataset of a shift (``data``, else the recommender's own); GisUsageError
    when its users are not the recommender's."""
    dataset = _dataset_for(rec, data, trust)
    if len(dataset.user_ids) == rec.num_users and list(dataset.user_ids) != list(rec.user_ids):
        raise GisUsageError("the dataset's users do not match the recommender's: pass the --data "
                            "the recommender was trained on")
    from ..memory import release_free_heap

    release_free_heap()  # rendering the embedded world leaves ~80 MB of free heap (issue 17)
    return dataset


@dataclass
class ShiftTask:
    """One resolved `gis shift` run: what ``run_shift_task`` computes and
    ``save_shift_outputs`` records. ``item`` is (1, 3, R, R) in [-1, 1] or None (random
    latent); ``users`` the recommender rows of the targets."""

    settings: ShiftTaskSettings
    users: torch.Tensor
    item: torch.Tensor | None
    source: dict
    labels: torch.Tensor | None
    category: dict | None
    default_target: str | None


def resolve_shift_task(gen, rec, dataset, settings: ShiftTaskSettings, *, generator: str,
                       item=None, item_id=None, random_latent=False, users=None,
                       users_file=None, n_users=None, category=None) -> ShiftTask:
    """The targets (``resolve_targets``, the sample seeded by the shifting seed), the item
    image and the class label of one run. Raises GisUsageError for an unknown user, item or
    category, or a missing/corrupt image."""
    from .targets import default_target, resolve_targets

    rows = resolve_targets(rec, users=users, users_file=users_file, n_users=n_users,
                           seed=settings.shift.seed)
    default = default_target(users=users, users_file=users_file, n_users=n_users)
    x, source = (None, {"source": "random latent"}) if random_latent else _load_item(
        item, item_id, dataset, max(gen.resolution, rec.image_size))
    labels, cat = _shift_labels(gen, generator, category, source)
    return ShiftTask(settings=settings, users=rows, item=x, source=source, labels=labels,
                     category=cat, default_target=default)


def run_shift_task(gen, rec, task: ShiftTask, *, catalogue=None, catalogue_phi=None,
                   category_reference=None, progress=False):
    """``run_gis`` on a resolved task, the global seed fixed first (``_seed_globally``), so
    that a worker that ran other tasks before computes what a fresh `gis shift` computes."""
    from .pipeline import run_gis

    _seed_globally(task.settings.shift.seed)
    return run_gis(generator=gen, recommender=rec, users=task.users, item=task.item,
                   invert_settings=task.settings.invert, shift_settings=task.settings.shift,
                   catalogue=catalogue, catalogue_phi=catalogue_phi, labels=task.labels,
                   progress=progress, check_settings=task.settings.check,
                   category_reference=category_reference,
                   expected_category=(task.category or {}).get("name"))


def _shift_labels(gen, name, category, source) -> tuple[torch.Tensor | None, dict | None]:
    """The class label a conditional generator shifts under: ``--category``, else the dataset
    item's own category. Unconditional generators take none."""
    if gen.num_classes == 0:
        if category is not None:
            raise GisUsageError(f"--category is for class-conditional generators and {name} is "
                                "unconditional: drop --category")
        return None, None
    names = _category_names(gen)
    if category is None:
        category = source.get("category")
    if category is None:
        raise GisUsageError(f"{name} is class-conditional: pass --category (one of "
                            f"{', '.join(names) or f'0..{gen.num_classes - 1}'})")
    idx = _category_index(gen, category)
    return torch.tensor([idx]), {"index": idx, "name": names[idx] if idx < len(names) else None}


def save_shift_outputs(tmp: Path, run, *, gen, rec, generator, recommender, source,
                       dataset_info: dict | None, category: dict | None = None,
                       default_target: str | None = None) -> str:
    """Write the documented files of a shift run (docs/OUTPUTS.md) into ``tmp``.
    ``dataset_info``: the catalogue's record (``_dataset_info``); ``default_target``: what the
    targets were when the user chose none (``targets.default``)."""
    from ..images import make_grid_png, save_image

    res = run.result
    agg = res.optimised
    n = len(res.images)
    if run.item is not None:
        save_image(run.item, tmp / "item.png", value_range=(0, 1))
    save_image(res.base_image, tmp / "base.png", value_range=(0, 1))
    for i in range(n):
        save_image(res.images[i:i + 1], tmp / f"variant_{i:02d}.png", value_range=(0, 1))
    base = res.scores[agg]["base"][0]
    tiles = ([run.item] if run.item is not None else []) + [res.base_image, res.images]
    labels = ([f"item {run.item_scores[agg]:.2f}"] if run.item is not None else [])
    labels += [f"base {base:.2f}"]
    rec_i = (run.checks or {}).get("recommended")
    passed = (run.checks or {}).get("passed") or [True] * n
    # "*": the recommended variant; "x": fails a check (result.json "checks" says which);
    # in brackets the change against the real item (the base without one), as the report's
    ref = run.item_scores[agg] if run.item is not None else base
    labels += [f"{'*' if i == rec_i else 'x' if not passed[i] else ''}#{i} {v:.2f} "
               f"({v - ref:+.2f})" for i, v in enumerate(res.scores[agg]["variants"])]
    make_grid_png(torch.cat(tiles), tmp / "grid.png", labels=labels, nrow=len(labels),
                  value_range=(0, 1), tile=128)
    _save_latents(tmp / "latents.safetensors", {"base": res.base_latent, "shifts": res.shifts,
                                                "variants": res.latents})
    user_ids = [rec.user_ids[int(u)] for u in res.users]
    inv = run.inversion
    ShiftRecord(
        **_with_latent_space(record_fields(gen.device, measured=run.provenance,
                                           generator=(gen, generator),
                                           recommender=(rec, recommender)), gen),
        item=source, dataset=dataset_info,
        category=category, bridge=run.bridge,
        settings=vars(res.settings), invert_settings=vars(inv.settings) if inv else None,
        inversion=Inversion(lpips_vgg=inv.lpips, mse=inv.mse, history=inv.history) if inv
        else None,
        targets=Targets(count=len(user_ids), user_ids=user_ids[:1000],
                        user_ids_truncated=len(user_ids) > 1000, default=default_target),
        optimised_aggregation=agg,
        scores=Scores(item=run.item_scores or None,
                      base={a: v["base"][0] for a, v in res.scores.items()},
                      variants=[{a: v["variants"][i] for a, v in res.scores.items()}
                                for i in range(n)]),
        per_user=_per_user(run, user_ids),
        distances=Distances(**run.distances) if run.distances else None,
        checks=Checks(**run.checks) if run.checks else None,
        catalogue_size=run.catalogue_size, seconds=run.seconds, history=res.history,
        files=sorted(p.name for p in tmp.iterdir()) + ["result.json"],
    ).write(tmp / "result.json")
    return shift_summary(run, n_users=len(user_ids))


def shift_summary(run, *, n_users: int) -> str:
    """What `gis shift` prints: the recommended variant (the best-scoring one that passes the
    checks, gis.engine.checks), the others with the reason they are not, and distinctness."""
    from ..report import smallest_gaining_change
    from ..report.summary import base_warning

    res = run.result
    agg, n = res.optimised, len(res.images)
    scores = res.scores[agg]["variants"]
    base = res.scores[agg]["base"][0]
    gains = res.gains()
    ref = run.item_scores.get(agg) if run.item_scores else None
    dist = run.distances
    ref_name = "item" if dist.get("to_item") is not None else "base"
    change = dist.get(f"to_{ref_name}")
    checks = run.checks or {}
    record_checks = Checks(**checks) if checks else None
    passed = checks.get("passed") or [True] * n
    rec = checks.get("recommended") if checks else max(range(n), key=lambda i: scores[i])

    def describe(i: int) -> str:
        # the gain against the real item when there is one, as grid.png and the report show
        # it (and as the recommendation is decided); else against the base image G(z)
        moved = f", LPIPS {change[i]:.3f} from the {ref_name}" if change else ""
        gain, vs = (scores[i] - ref, "item") if ref is not None else (gains[i], "base")
        return f"#{i}: {scores[i]:.3f} ({gain:+.3f} vs the {vs}{moved})"

    lines = [f"{n} variants for {n_users} target user(s), aggregation {agg}:",
             f"  base G(z) score {base:.3f}" + (f", real item {ref:.3f}" if ref is not None
                                                 else "")]
    warning = base_warning(checks.get("base"))
    if warning:
        lines.append(f"  WARNING: {warning}")
    unchecked = (checks.get("realism") or {}).get("passed") is None
    keep = ": keep the item" if ref is not None else ""
    if rec is None:
        lines.append(f"  WARNING: no variant passes the {record_checks.ran_text()}{keep} "
                     "(the reasons are below)")
    elif scores[rec] <= (ref if ref is not None else base):
        lines.append(f"  best variant that passes the checks {describe(rec)}")
        lines.append("  WARNING: no variant that passes the checks beats the " + (
            "real item for these users: keep the item" if ref is not None
            else "base image G(z) for these users"))
    else:
        lines.append(f"  recommended variant {describe(rec)}"
                     + (" (NOT checked for realism: look at it)" if unchecked else ""))
    top = max(range(n), key=lambda i: scores[i])
    if top != rec and not passed[top]:
        lines.append(f"  highest score {describe(top)}, not recommended: "
                     f"{'; '.join(checks['reasons'][top])}")
    failing = [f"    #{i}: {'; '.join(checks['reasons'][i])}" for i in range(n)
               if not passed[i] and i != top]
    if failing:
        lines += ["  not recommended:", *failing]
    if record_checks is not None:
        lines += [f"  {name} check not run: {why}" for name, why in record_checks.not_run()]
    if change:
        c = smallest_gaining_change(scores, base, change, passed)
        if c is not None and c != rec:
            lines.append(f"  smallest change with a gain that passes the checks: "
                         f"{describe(c)}")
        lines.append(f"  distinctness: mean pairwise LPIPS {dist['mean_pairwise']:.3f}, "
                     f"closest pair {dist['min_pairwise']:.3f}")
    return "\n".join(lines)


def _per_user(run, user_ids: list[str], cap: int = 1000) -> PerUser:
    """Per target user: scores and catalogue ranks of item, base and each variant (first
    ``cap`` users; summaries over all)."""
    res = run.result
    out = PerUser(truncated_to=cap if len(user_ids) > cap else None)
    if res.user_scores:
        sv, sb = res.user_scores["variants"], res.user_scores["base"]
        out.scores = [UserScores(user=u, base=float(sb[j]),
                                 variants=[float(v) for v in sv[:, j]])
                      for j, u in enumerate(user_ids[:cap])]
        out.share_of_users_with_a_better_variant = float((sv > sb).any(0).float().mean())
    if run.ranks:
        ranks = {k: v for k, v in run.ranks.items()}
        ref = ranks.get("item", ranks["base"])[0]
        best_rank = ranks["variants"].min(0).values
        out.ranks = [UserRanks(user=u, item=int(ranks["item"][0, j]) if "item" in ranks
                               else None, base=int(ranks["base"][0, j]),
                               variants=[int(r) for r in ranks["variants"][:, j]])
                     for j, u in enumerate(user_ids[:cap])]
        out.rank_summary = RankSummary(
            reference="item" if "item" in ranks else "base",
            median_reference_rank=float(ref.float().median()),
            median_best_variant_rank=float(best_rank.float().median()),
            share_of_users_whose_best_variant_ranks_higher=float(
                (best_rank < ref).float().mean()))
    return out


# ------------------------------------------------------------------------------ design
def design_command(*, user, category, generator, recommender, n, steps, lr, eta, personalized,
                   device, trust, out, overwrite, progress, seed, latent_space=None):
    from ..images import make_grid_png, save_image
    from .design import design

    check_output_folder(out, overwrite=overwrite)
    _seed_globally(seed)
    gen, rec = _load_models(generator, recommender, device=device, trust=trust,
                            latent_space=latent_space)
    user_row = rec.user_index([user])
    cat = _category_index(gen, category)
    res = design(gen, rec, user_row, cat, n=n, steps=steps, lr=lr, eta=eta,
                 personalized=personalized, seed=seed, progress=progress)
    with atomic_folder(out, overwrite=overwrite) as tmp:
        for i in range(n):
            save_image(res.images[i:i + 1], tmp / f"design_{i:02d}.png", value_range=(0, 1))
        make_grid_png(res.images, tmp / "grid.png", value_range=(0, 1), tile=96,
                      labels=[f"{s:.2f}" for s in res.scores])
        write_json(tmp / "result.json", {
            "command": "design", **_provenance(gen, generator=(gen, generator),
                                               recommender=(rec, recommender)), "user": user,
            "category": {"index": cat, "name": (_category_names(gen) or [None] * (cat + 1))[cat]},
            "personalized": personalized, "settings": dict(n=n, steps=steps, lr=lr, eta=eta,
                                                           seed=seed),
            "scores": res.scores, "history": res.history})
    _echo(f"{n} designs for user {user}: mean score {sum(res.scores) / n:.3f} -> {out}")


def _category_names(gen) -> list[str]:
    return gen.card.category_names


def _category_index(gen, category) -> int:
    if not gen.num_classes:
        raise GisUsageError(f"{gen.card.name or type(gen).__name__} is unconditional (no "
                            "categories): this needs a class-conditional generator, e.g. "
                            "--generator dvbpr-gan")
    names = _category_names(gen)
    if str(category).isdigit() and int(category) < gen.num_classes:
        return int(category)
    if category in names:
        return names.index(category)
    raise GisUsageError(f"unknown category {category!r}; choose one of "
                        f"{', '.join(names) or f'0..{gen.num_classes - 1}'}")


# ------------------------------------------------------------------------------ helpers
def _provenance(gen, **models) -> dict:
    """A record's ``versions``, ``provenance`` and model entries (``gis.provenance``), as
    JSON: the same fields `gis shift`'s ShiftRecord holds."""
    return to_json(_with_latent_space(record_fields(gen.device, **models), gen))


def _with_latent_space(fields: dict, gen) -> dict:
    """``fields`` with ``generator.latent_space``: the space the engine worked in (the first
    of the generator's ``latent_spaces`` after ``in_latent_space``)."""
    if fields.get("generator") is not None:
        fields["generator"] = {**fields["generator"], "latent_space": getattr(
            gen, "latent_spaces", ("z",))[0]}
    return fields


def _dataset_info(dataset) -> dict | None:
    """The catalogue dataset's name and the ``--dataset-option`` options it was built with."""
    from ..options import cli_scope

    if dataset is None:
        return None
    return {"name": dataset.meta.get("name"), "options": cli_scope("dataset")[1]}


def _save_latents(path: Path, tensors: dict) -> None:
    from safetensors.torch import save_file

    save_file({k: v.detach().float().cpu().contiguous() for k, v in tensors.items()}, str(path))


def _echo(msg: str) -> None:
    import click

    click.echo(msg)
