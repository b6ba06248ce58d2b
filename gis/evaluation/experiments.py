"""The paper's experiments (Kumar, Sharma & Narayan 2025, Tables 2-5) on a gis dataset.

    gis evaluate --experiment table2|table3|table4|table5|all --trials N --out DIR

Protocols (docs/METHOD.md), one trial = one GIS run (n variants) unless stated:

- table2, class-centric, one user: a random latent (no inversion) shifted for a random user,
  against the DVBPR personalized design (Kang et al. 2017) and its non-personalized samples with
  the conditional GAN, in the category the domain classifier reads from GIS's base image, from
  the same n codes. Per method: top-3 preference, opposite SSIM, diversity, IS, FID/KID.
- table3, item level: per user, their held-out test item (preferred) and an item outside their
  history that they rank in the bottom half of the catalogue (unpreferred); both shifted.
- table4, per category: random (user, item of category c outside the user's history).
- table5, N target users: a random item shifted for N random users (mean aggregation); N is
  capped at the number of users the dataset has (recorded); Fig. 6 box plot.

Every trial is appended to DIR/<experiment>/trials.jsonl (its images to images/<key>.npz) as
soon as it finishes; a rerun skips the trials already there, so an interrupted evaluation
resumes where it stopped. Tables, JSON and figures are rewritten from the trial log at the end.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import GisUsageError
from ..io import JSONEncoder, atomic_path, write_json, write_text
from .runs import World, from_uint8, measure, to_uint8

EXPERIMENTS = ("table2", "table3", "table4", "table5")
DEFAULT_N_USERS = (1, 5, 10, 50, 100, 500, 1000, 10000)

#: The paper's numbers (Amazon Fashion, top-3 of n, 1,000 trials), for the side-by-side tables.
PAPER = {
    "table2": {"GIS": {"pref": "8.97 ± 3.55", "opposite_ssim": "0.63", "is": "8.22",
                       "fid": "13.1"},
               "DVBPR personalized": {"pref": "7.68 ± 4.1", "opposite_ssim": "0.53",
                                      "is": "7.65", "fid": "-"},
               "DVBPR non-personalized": {"pref": "-1.94 ± 3.7", "opposite_ssim": "0.56",
                                          "is": "6.81", "fid": "-"}},
    "table3": {"unpreferred": {"pref": "5.48", "shift": "7.31 ± 3.04"},
               "preferred": {"pref": "7.40", "shift": "5.64 ± 2.63"}},
    "table4": {"shirts": "7.26", "footwear": "7.54", "trousers": "7.33"},
    "table5": {1: "7.31", 5: "4.37", 10: "3.77", 50: "3.06", 100: "3.22", 500: "3.12",
               1000: "3.15", 10000: "3.12"},
}


@dataclass(frozen=True)
class EvalSettings:
    """What a trial depends on (a resumed evaluation must use the same)."""

    trials: int = 10
    seed: int = 0
    generator: str = "progan"
    baseline_generator: str = "dvbpr-gan"
    recommender: str = "dvbpr"
    data: str = "fashion-colors"
    shift_steps: int | None = None  # None: the engine's default
    invert_steps: int | None = None
    n: int | None = None  # variants per run (None: the engine's default, 8)
    n_users: tuple[int, ...] = DEFAULT_N_USERS
    design_steps: int = 10  # Kang et al.'s preference maximisation
    fid_real: int = 2000
    latent_space: str | None = None  # the generator's latent space (None: its first, z)

    def validate(self) -> None:
        if self.trials < 1:
            raise GisUsageError(f"--trials must be >= 1 (got {self.trials})")
        if self.fid_real < 2:
            raise GisUsageError(f"--fid-real must be >= 2 (got {self.fid_real})")
        if not self.n_users or min(self.n_users) < 1:
            raise GisUsageError("--n-users needs positive user counts, e.g. 1,5,10")
        for name in ("shift_steps", "invert_steps"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise GisUsageError(f"--{name.replace('_', '-')} must be >= 1 (got {v})")

    def shift(self, seed: int):
        from ..engine import shift_settings

        return shift_settings(steps=self.shift_steps, n=self.n, seed=seed)

    def invert(self, seed: int):
        from ..engine import InvertSettings

        kw = {"seed": seed}
        if self.invert_steps is not None:
            kw["steps"] = self.invert_steps
        return InvertSettings(**kw)


# ------------------------------------------------------------------------------ trial specs
def trial_specs(experiment: str, world: World, s: EvalSettings) -> list[dict]:
    """The deterministic list of trials of ``experiment``.

    Each trial draws from its own generator seeded by (seed, experiment, cell, trial), so a
    larger ``trials`` only appends trials: a resumed evaluation may ask for more.
    """
    ds = world.dataset
    exp = EXPERIMENTS.index(experiment) if experiment in EXPERIMENTS else -1

    def rng(cell: int, t: int) -> np.random.Generator:
        return np.random.default_rng([s.seed, exp, cell, t])

    def outside_history(r, u: int, pool: np.ndarray) -> int:
        while True:
            i = int(r.choice(pool))
            if i not in world.history[u]:
                return i

    specs: list[dict] = []
    if experiment == "table2":
        for t in range(s.trials):
            specs.append({"key": f"trial-{t:04d}", "users": [int(rng(0, t).integers(ds.num_users))]})
    elif experiment == "table3":
        theta = world.recommender.user_vectors.float().cpu()
        phi = world.catalogue_phi.float().cpu()
        used: set[int] = set()
        for t in range(min(s.trials, ds.num_users)):
            r = rng(0, t)
            u = int(r.integers(ds.num_users))
            while u in used:
                u = int(r.integers(ds.num_users))
            used.add(u)
            order = np.argsort(-(theta[u] @ phi.T).numpy())  # best first
            bottom = order[len(order) // 2:]
            specs.append({"key": f"user-{t:04d}-preferred", "users": [u],
                          "item": int(ds.test[u]), "kind": "preferred"})
            specs.append({"key": f"user-{t:04d}-unpreferred", "users": [u],
                          "item": outside_history(r, u, bottom), "kind": "unpreferred"})
    elif experiment == "table4":
        for c in range(len(ds.category_names)):
            pool = np.flatnonzero(ds.categories == c)
            for t in range(s.trials):
                r = rng(c, t)
                u = int(r.integers(ds.num_users))
                specs.append({"key": f"cat-{c:02d}-{t:04d}", "users": [u],
                              "item": outside_history(r, u, pool), "category": c})
    elif experiment == "table5":
        for n_req in s.n_users:
            n_used = min(int(n_req), ds.num_users)
            for t in range(s.trials):
                r = rng(int(n_req), t)
                users = np.sort(r.choice(ds.num_users, size=n_used, replace=False))
                specs.append({"key": f"users-{n_req:06d}-{t:04d}", "users": users.tolist(),
                              "item": int(r.integers(ds.num_items)), "n_requested": int(n_req),
                              "n_used": n_used})
    else:
        raise GisUsageError(f"unknown experiment {experiment!r}; choose one of "
                            f"{', '.join(EXPERIMENTS)} or all")
    return specs


# ------------------------------------------------------------------------------ one trial
def _gis(world: World, s: EvalSettings, users: torch.Tensor, item: int | None, seed: int):
    from ..engine import run_gis
    from ..engine.pipeline import build_terms

    x = None if item is None else world.dataset.image_tensor([item])
    if world.terms is None:  # built once: the LPIPS trunks cost ~2 s a trial otherwise
        world.terms = build_terms(world.generator, world.recommender,
                                  invert_settings=s.invert(seed), shift_settings=s.shift(seed))
    run = run_gis(generator=world.generator, recommender=world.recommender, users=users,
                  item=x, invert_settings=s.invert(seed), shift_settings=s.shift(seed),
                  distance_net=None, terms=world.terms)  # measure() computes the tables' metrics
    res = run.result
    cat = None if item is None else int(world.dataset.categories[item])
    rec = measure(world, variants=res.images, reference=res.base_image, users=users,
                  item=run.item, item_category=cat)
    if run.inversion is not None:
        rec["inversion_lpips_vgg"] = run.inversion.lpips
    images = {"base": to_uint8(res.base_image), "variants": to_uint8(res.images)}
    if run.item is not None:
        images["item"] = to_uint8(run.item)
    return rec, images


def run_trial(experiment: str, spec: dict, world: World, s: EvalSettings):
    """(record, images) of one trial."""
    from ..engine.design import design

    seed = (s.seed * 1_000_003 + zlib.crc32(spec["key"].encode())) % 2**31  # per trial key
    users = torch.tensor(spec["users"], dtype=torch.long)
    t0 = time.perf_counter()
    record = {k: v for k, v in spec.items() if k != "users"}
    record["n_target_users"] = len(spec["users"])
    record["users_head"] = [world.dataset.user_ids[u] for u in spec["users"][:10]]
    if experiment == "table2":
        gis_rec, images = _gis(world, s, users, None, seed)
        category = int(gis_rec["reference_categories"][0])  # what GIS's random base shows
        gen = world.baseline_generator
        if gen is None:
            raise GisUsageError("table2 needs a baseline generator (--baseline-generator)")
        n = len(gis_rec["variant_scores"])
        z = torch.randn(n, gen.latent_dim, generator=torch.Generator().manual_seed(seed)) * 0.5
        kw = dict(users=users, category=category, n=n, steps=s.design_steps, seed=seed, z=z)
        personal = design(gen, world.recommender, personalized=True, **kw)
        plain = design(gen, world.recommender, personalized=False, **kw)
        record.update(category=category, gis=gis_rec,
                      dvbpr_personalized=measure(world, variants=personal.images,
                                                 reference=plain.images, users=users,
                                                 item_category=category),
                      dvbpr_non_personalized=measure(world, variants=plain.images,
                                                     reference=plain.images, users=users,
                                                     item_category=category,
                                                     reference_is_start=False))
        images.update(dvbpr_personalized=to_uint8(personal.images),
                      dvbpr_non_personalized=to_uint8(plain.images))
    else:
        gis_rec, images = _gis(world, s, users, spec["item"], seed)
        record["item_id"] = world.dataset.item_ids[spec["item"]]
        record["item_category"] = world.dataset.category_names[
            int(world.dataset.categories[spec["item"]])]
        record["gis"] = gis_rec
    record["seconds"] = time.perf_counter() - t0
    return record, images


# ------------------------------------------------------------------------------ trial log
class TrialLog:
    """DIR/<experiment>/trials.jsonl + images/<key>.npz, appended trial by trial."""

    def __init__(self, folder: Path, settings: EvalSettings):
        self.folder = folder
        self.images = folder / "images"
        self.path = folder / "trials.jsonl"
        check_settings(folder, settings)
        self.images.mkdir(parents=True, exist_ok=True)
        write_json(folder / "settings.json", _settings_doc(settings))
        self._repair()

    def _repair(self) -> None:
        """Drop a line cut by an interruption (its trial runs again), keep every whole one."""
        if not self.path.exists():
            return
        text = self.path.read_text()
        if not text or text.endswith("\n"):
            return
        whole = text[:text.rfind("\n") + 1]
        write_text(self.path, whole)

    def records(self) -> dict[str, dict]:
        out: dict[str, dict] = {}
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by an interruption: that trial runs again
                if (self.images / f"{rec['key']}.npz").exists():
                    out[rec["key"]] = rec
        return out

    def append(self, record: dict, images: dict[str, np.ndarray]) -> None:
        with atomic_path(self.images / f"{record['key']}.npz") as tmp, open(tmp, "wb") as f:
            np.savez_compressed(f, **images)
        with open(self.path, "a") as f:
            f.write(json.dumps(record, cls=JSONEncoder) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def load_images(self, key: str) -> dict[str, torch.Tensor]:
        with np.load(self.images / f"{key}.npz") as z:
            return {k: from_uint8(z[k]) for k in z.files}


def check_settings(folder: Path, s: EvalSettings) -> None:
    """Refuse to resume ``folder`` with settings other than those it was started with (only
    ``trials`` may differ: more trials append, fewer report a prefix)."""
    meta = folder / "settings.json"
    if not meta.exists():
        return
    theirs = json.loads(meta.read_text())
    mine = _settings_doc(s)
    diff = sorted(k for k in mine if k != "trials" and theirs.get(k) != mine[k])
    if diff:
        raise GisUsageError(
            f"{folder} was started with other settings ({', '.join(diff)} differ): resume "
            "with the same settings, or choose another --out")


def _settings_doc(s: EvalSettings) -> dict:
    d = dataclasses.asdict(s)
    d["n_users"] = list(d["n_users"])
    return d


def run_experiment(experiment: str, world: World, s: EvalSettings, out: Path, *,
                   progress: bool = True) -> list[dict]:
    """Run (or resume) every trial of ``experiment``; returns the records in spec order."""
    from ..training import progress as progress_bar

    log = TrialLog(out / experiment, s)
    done = log.records()
    specs = trial_specs(experiment, world, s)
    todo = [sp for sp in specs if sp["key"] not in done]
    bar = progress_bar(total=len(specs), initial=len(specs) - len(todo), desc=experiment,
                       enabled=progress, unit="trial", leave=True)
    for spec in todo:
        record, images = run_trial(experiment, spec, world, s)
        log.append(record, images)
        done[spec["key"]] = record
        g = record.get("gis", {})
        bar.set_postfix_str(f"shift {g.get('shift_vs_reference', float('nan')):+.2f} "
                            f"({record['seconds']:.0f} s)")
        bar.update(1)
    bar.close()
    return [done[sp["key"]] for sp in specs]
