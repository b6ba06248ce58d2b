"""Running a batch: one `gis shift` per task, on this machine or on a Ray cluster, resumable.

Layout of the output folder (docs/BATCH.md):

    OUT/batch.json           what the batch is (models, settings, recipes, tasks): a run again
                             with the same definition resumes; another definition is refused
    OUT/tasks/ID/            one `gis shift --out` folder per finished task, byte for byte what
                             `gis shift` writes for the same task and seed (docs/OUTPUTS.md)
    OUT/failed/ID.json       a failed task: its one-line error (and the traceback of an
                             unexpected one); removed when a later run finishes the task
    OUT/reports/ID.html      each finished task's `gis report` page
    OUT/summary.csv          one row per task (gis.batch.summary)
    OUT/index.html           one page ranking the items by gain, linking every report

Every task is computed by a ``TaskWorker``: the models, the dataset and the catalogue's
embeddings load once per worker process and serve every task it runs (the embeddings are
computed once, by the driver, and shared: pickled once per local worker, one object in Ray's
object store). A worker returns the finished folder's files; only the driver writes, each
task's folder atomically (``gis.io.atomic_folder``: whole or not at all), so a batch killed at
any moment (Ctrl-C, ``kill -9``, a lost Ray node) leaves finished folders and nothing else,
and the same command again skips them.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import logging
import multiprocessing
import os
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import GisError, GisUsageError, one_line
from ..interrupts import interrupt_behind
from ..io import atomic_folder, write_json
from .manifest import BatchTask
from .segments import dataset_segments, read_segments, resolve_segment

FORMAT = "gis-batch/1"


@dataclass(frozen=True)
class ModelSpec:
    """What every worker loads: the `gis shift` model options, and the factory options the
    command line gave (``gis.options``: (name, options) per kind)."""

    generator: str = "progan"
    recommender: str = "dvbpr"
    generator_checkpoint: str | None = None
    recommender_checkpoint: str | None = None
    data: str | None = None
    device: str = "cpu"
    trust: bool = False
    latent_space: str | None = None
    factory_scopes: dict = field(default_factory=dict)

    def scope(self):
        from ..options import factory_options

        return factory_options(**{k: (n, o) for k, (n, o) in self.factory_scopes.items()})


@dataclass
class Outcome:
    """What a worker sends back for one task: the folder's files, or the failure."""

    task_id: str
    files: dict[str, bytes] | None = None
    error: str | None = None
    traceback: str | None = None
    seconds: float = 0.0
    category: str | None = None  # a failed dataset item's category (the summary's column)


#: the batch/task options ``shift_overrides`` turns into `gis shift` settings
SHIFT_OPTIONS = ("seed", "invert_steps", "precision", "lr_schedule", "invert_losses", "recipe",
                 "n", "eps", "steps", "lr", "aggregation", "temperature", "top_k", "losses",
                 "loss_options",
                 "min_silhouette_iou", "min_distance", "no_realism_check", "no_category_check")


def shift_overrides(options: dict) -> tuple[dict, dict, dict]:
    """(invert, shift, check) overrides of `gis shift` from merged batch/task options (the
    names of ``gis.batch.manifest.SETTINGS``; missing ones take the recipe's value)."""
    from ..engine.objective import parse_loss_options, parse_loss_weights

    seed = options.get("seed", 0)
    invert = dict(steps=options.get("invert_steps"), seed=seed,
                  precision=options.get("precision"), lr_schedule=options.get("lr_schedule"),
                  losses=parse_loss_weights(options.get("invert_losses", ()), "--invert-loss"))
    shift = dict(recipe=options.get("recipe") or "seller", n=options.get("n"),
                 eps=options.get("eps"), steps=options.get("steps"), lr=options.get("lr"),
                 precision=options.get("precision"), lr_schedule=options.get("lr_schedule"),
                 aggregation=options.get("aggregation"),
                 temperature=options.get("temperature"), top_k=options.get("top_k"),
                 losses=parse_loss_weights(options.get("losses", ())),
                 loss_options=parse_loss_options(options.get("loss_options", ())) or None,
                 seed=seed)
    check = dict(min_silhouette_iou=options.get("min_silhouette_iou"),
                 min_distance=options.get("min_distance"),
                 realism=False if options.get("no_realism_check") else None,
                 category=False if options.get("no_category_check") else None)
    return invert, shift, check


def load_catalogue(spec: ModelSpec):
    """(recommender, catalogue dataset) of a batch, on ``spec.device``: the recommender's
    own dataset, or ``spec.data`` (GisUsageError when its users are not the recommender's)."""
    from ..engine.commands import shift_dataset
    from ..plugins import get_recommender

    with spec.scope():
        rec = get_recommender(spec.recommender, checkpoint=spec.recommender_checkpoint,
                              device=spec.device, trust=spec.trust)
        return rec, shift_dataset(rec, spec.data, spec.trust)


class TaskWorker:
    """The models of a batch, loaded once, and ``run(task)`` for each of its tasks.

    catalogue_phi: (N, K) float32 embeddings of the dataset's catalogue, computed once by the
    driver (``gis.engine.pipeline.embed_dataset``), or None to compute them here."""

    def __init__(self, spec: ModelSpec, options: dict, catalogue_phi=None,
                 segments: dict[str, list[str]] | None = None, catalogue=None):
        from ..engine.commands import _dataset_info, _load_models, _seed_globally
        from ..engine.pipeline import embed_dataset

        self.spec, self.options, self.segments = spec, options, segments or {}
        with spec.scope():
            _seed_globally(options.get("seed", 0))
            self.gen, _ = _load_models(
                spec.generator, None, generator_checkpoint=spec.generator_checkpoint,
                device=spec.device, trust=spec.trust, latent_space=spec.latent_space)
            self.rec, self.dataset = catalogue if catalogue is not None else \
                load_catalogue(spec)
            if catalogue_phi is None:
                catalogue_phi = embed_dataset(self.rec, self.dataset)
        self.catalogue_phi = catalogue_phi
        self.dataset_info = _dataset_info(self.dataset)  # what each result.json records of it
        self._category_reference = None  # built by the first task that runs the check

    def category_reference(self):
        """The catalogue's silhouettes for the category check (built once, when needed)."""
        if self._category_reference is None:
            from ..metrics.category import CategoryReference

            self._category_reference = CategoryReference.from_dataset(self.dataset)
        return self._category_reference

    def settings(self, task: BatchTask):
        """The task's validated `gis shift` settings (GisUsageError when impossible)."""
        from ..engine.commands import shift_task_settings

        return shift_task_settings(*shift_overrides({**self.options, **task.settings}))

    def run(self, task: BatchTask) -> Outcome:
        """Run one task; every error becomes a failed ``Outcome`` (never raised), except a
        stop (KeyboardInterrupt, SystemExit)."""
        t0 = time.perf_counter()
        try:
            files = self._run(task)
        except Exception as exc:
            stop = interrupt_behind(exc)
            if stop is not None:  # an error a stop signal caused (e.g. a C extension's
                raise stop from None  # import cut by Ctrl-C) is the stop, not a failed task
            if isinstance(exc, GisError):
                return Outcome(task.id, error=str(exc).splitlines()[0] if str(exc) else
                               type(exc).__name__, seconds=time.perf_counter() - t0,
                               category=self.category_of(task))
            # a bug or a resource problem: keep the traceback
            return Outcome(task.id, error=one_line(exc), traceback=traceback.format_exc(),
                           seconds=time.perf_counter() - t0, category=self.category_of(task))
        return Outcome(task.id, files=files, seconds=time.perf_counter() - t0)

    def category_of(self, task: BatchTask) -> str | None:
        """The category of the task's dataset item, catalogue or held-out (None for an image
        file or an item id the dataset lacks)."""
        if task.item_id is None:
            return None
        try:
            where, index = self.dataset.find_item(str(task.item_id))
            cats = (self.dataset.categories if where == "catalogue"
                    else self.dataset.heldout_categories)
            return None if cats is None else str(self.dataset.category_names[int(cats[index])])
        except Exception:  # a failure record must not fail in turn
            return None

    def _run(self, task: BatchTask) -> dict[str, bytes]:
        from ..engine.commands import resolve_shift_task, run_shift_task, save_shift_outputs

        users = list(task.users) if task.users is not None else None
        if task.segment is not None:
            users = resolve_segment(task.segment, self.segments)
        with self.spec.scope():
            stask = resolve_shift_task(
                self.gen, self.rec, self.dataset, self.settings(task),
                generator=self.spec.generator, item=task.image, item_id=task.item_id,
                users=users, users_file=task.users_file, n_users=task.n_users,
                category={**self.options, **task.settings}.get("category"))
            if task.image_as_given is not None:  # what `gis shift --item` records
                stask.source["path"] = task.image_as_given
            run = run_shift_task(self.gen, self.rec, stask, catalogue_phi=self.catalogue_phi,
                                 category_reference=(self.category_reference()
                                                     if stask.settings.check.category
                                                     else None))
            with tempfile.TemporaryDirectory(prefix="gis-batch-") as tmp:
                save_shift_outputs(Path(tmp), run, gen=self.gen, rec=self.rec,
                                   generator=self.spec.generator,
                                   recommender=self.spec.recommender, source=stask.source,
                                   dataset_info=self.dataset_info,
                                   category=stask.category,
                                   default_target=stask.default_target)
                return {p.name: p.read_bytes() for p in sorted(Path(tmp).iterdir())}


# ------------------------------------------------------------------------------ executors
_WORKER: TaskWorker | None = None  # the local pool's worker of this process
_RAY_WORKERS: dict = {}  # a Ray worker process's TaskWorkers, by batch


def _watch_parent(parent: int, every: float = 1.0) -> None:
    """End this worker process soon after ``parent`` (the driver) is gone, even when it was
    killed with ``kill -9`` and could not stop its pool: a daemon thread polls the parent."""
    import threading

    def watch():
        while os.getppid() == parent:
            time.sleep(every)
        os._exit(1)

    threading.Thread(target=watch, name="gis-batch-parent-watch", daemon=True).start()


def _init_local(spec, options, catalogue_phi, segments, threads, parent):
    import signal

    import torch

    _watch_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver stops the pool on Ctrl-C
    # tqdm's default lock is a multiprocessing RLock, a named semaphore that a worker the
    # driver terminates cannot unlink ("leaked semaphore objects" at exit): a thread lock
    # does here (a worker's bars are off; the driver draws the progress)
    import threading

    from tqdm import tqdm

    tqdm.set_lock(threading.RLock())
    torch.set_num_threads(threads)
    global _WORKER
    _WORKER = TaskWorker(spec, options, catalogue_phi, segments)


def _run_local(task: BatchTask) -> Outcome:
    return _WORKER.run(task)


def _run_ray(key: str, spec, options, catalogue_phi, segments, threads, task) -> Outcome:
    import torch

    worker = _RAY_WORKERS.get(key)
    if worker is None:  # once per Ray worker process and batch
        torch.set_num_threads(threads)
        _RAY_WORKERS.clear()
        worker = _RAY_WORKERS[key] = TaskWorker(spec, options, catalogue_phi, segments)
    return worker.run(task)


def run_inline(worker: TaskWorker, tasks: list[BatchTask]) -> Iterator[Outcome]:
    """The tasks one after another in this process (``--workers 1``)."""
    for task in tasks:
        yield worker.run(task)


#: a task in flight when a worker process died twice is failed (once, it is run again)
POOL_ATTEMPTS = 2


def run_pool(spec, options, catalogue_phi, segments, tasks, *, workers: int,
             threads: int) -> Iterator[Outcome]:
    """The tasks on a local pool of ``workers`` spawned processes of ``threads`` torch threads
    each, in completion order; one task per worker in flight at a time. When a worker dies
    (killed, out of memory), the pool is started again and the tasks that were in flight run
    again; one in flight at ``POOL_ATTEMPTS`` such deaths fails with that reason. The workers
    end when this process does, even by ``kill -9`` (``_watch_parent``)."""
    from collections import deque

    ctx = multiprocessing.get_context("spawn")  # fork after torch's thread pools can hang
    queue, attempts = deque(tasks), dict.fromkeys((t.id for t in tasks), 0)
    while queue:
        pool = cf.ProcessPoolExecutor(
            max_workers=workers, mp_context=ctx, initializer=_init_local,
            initargs=(spec, options, catalogue_phi, segments, threads, os.getpid()))
        in_flight: dict = {}
        finished = False
        try:
            broken = None
            while (queue or in_flight) and broken is None:
                while queue and len(in_flight) < workers:
                    task = queue.popleft()
                    in_flight[pool.submit(_run_local, task)] = task
                done, _ = cf.wait(in_flight, return_when=cf.FIRST_COMPLETED)
                for fut in done:
                    task = in_flight.pop(fut)
                    try:
                        yield fut.result()
                    except cf.process.BrokenProcessPool as exc:
                        broken = exc
                        in_flight[fut] = task  # handled with the others below
            if broken is not None:
                for fut, task in in_flight.items():
                    if fut.done() and fut.exception() is None:
                        yield fut.result()
                        continue
                    attempts[task.id] += 1
                    if attempts[task.id] >= POOL_ATTEMPTS:
                        yield Outcome(task.id, error=f"a worker process died twice while "
                                      f"running it ({one_line(broken)}): out of memory? run "
                                      "again with fewer --workers")
                    else:
                        queue.appendleft(task)
                in_flight = {}
            finished = True
        finally:
            if not finished or in_flight:  # a stop (Ctrl-C, an error): do not wait
                for proc in list((getattr(pool, "_processes", None) or {}).values()):
                    if proc.is_alive():
                        proc.terminate()
            pool.shutdown(wait=True, cancel_futures=True)


def run_ray(address: str, spec, options, catalogue_phi, segments, tasks, *,
            threads: int) -> Iterator[Outcome]:
    """The tasks as Ray tasks of ``threads`` CPUs each, in completion order. ``address``:
    ``auto`` joins the cluster running on this machine or starts one; else the address of a
    running cluster (``HOST:PORT``, ``ray://...``). A task whose worker or node is lost is
    retried by Ray (3 times) before it fails."""
    import uuid

    import ray


    try:
        if address == "auto":
            ray.init(log_to_driver=False, include_dashboard=False, ignore_reinit_error=True,
                     logging_level=logging.ERROR)
        else:
            ray.init(address=address, log_to_driver=False, ignore_reinit_error=True,
                     logging_level=logging.ERROR)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise GisUsageError(f"cannot join the Ray cluster at {address!r} ({one_line(exc)}): "
                            "start one with `ray start --head`, or pass --ray auto") from None
    try:
        key = uuid.uuid4().hex
        remote = ray.remote(num_cpus=threads, max_retries=3)(_run_ray)
        refs = [ray.put(x) for x in (spec, options, catalogue_phi, segments)]
        pending = {remote.remote(key, *refs, threads, t): t for t in tasks}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            task = pending.pop(done[0])
            try:
                yield ray.get(done[0])
            except Exception as exc:  # lost after its retries (ray.exceptions.RayError)
                yield Outcome(task.id, error=f"Ray could not run the task: {one_line(exc)}")
    finally:
        for ref in list(locals().get("pending", {})):
            ray.cancel(ref, force=True)
        ray.shutdown()


def ray_preflight(address: str, timeout: float = 10.0) -> None:
    """A one-line GisUsageError unless Ray imports and, for an address other than ``auto``,
    something listens at its ``HOST:PORT`` (``ray://`` too): Ray itself retries an
    unreachable address for minutes."""
    import socket

    try:
        import ray  # noqa: F401
    except ImportError:
        raise GisUsageError("--ray needs Ray: pip install 'ray>=2.9' (or run without --ray "
                            "on this machine's cores)") from None
    if address == "auto":
        return

    host, _, port = address.split("://")[-1].rpartition(":")
    if not host or not port.isdigit():
        raise GisUsageError(f"--ray {address!r}: pass auto or the cluster's HOST:PORT (e.g. "
                            "10.0.0.5:6379)")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise GisUsageError(f"cannot join the Ray cluster at {address!r} (nothing answers: "
                            f"{exc.strerror or exc}): start one with `ray start --head`, or "
                            "pass --ray auto") from None


# ------------------------------------------------------------------------------ the batch
def all_segments(dataset, segments_file: str | None = None) -> dict[str, list[str]]:
    """The dataset's segments with those of ``segments_file`` on top (gis.batch.segments)."""
    segments = dataset_segments(dataset)
    if segments_file is not None:
        segments.update(read_segments(segments_file))
    return segments



@dataclass
class BatchState:
    """What an output folder holds: the finished and the failed tasks."""

    out: Path
    done: set[str]
    failed: dict[str, dict]


def definition(spec: ModelSpec, options: dict, tasks: list[BatchTask]) -> dict:
    """The batch's identity (``OUT/batch.json``): what must be equal for a run to resume.
    The contents of the segments file and of each task's users file count as well as their
    paths (``segments_file_sha256``, ``users_file_sha256``): a file edited between two runs
    defines another batch (another task), not the same one."""
    options = dict(options)
    if options.get("segments_file"):
        options["segments_file_sha256"] = _sha256_of(options["segments_file"])
    jobs = []
    for t in tasks:
        d = t.as_json()
        if d.get("users_file"):
            d["users_file_sha256"] = _sha256_of(d["users_file"])
        jobs.append(d)
    return {"format": FORMAT, "models": asdict(spec), "options": options, "tasks": jobs,
            "recipes": recipe_definitions(options, tasks)}


def recipe_definitions(options: dict, tasks: list[BatchTask]) -> dict:
    """Each recipe the batch runs (its own and its tasks'), as this gis defines it: every
    setting of the three loops with no override (``gis.engine.commands.shift_task_settings``).
    Recorded in batch.json so that a batch started under one definition of a recipe is not
    resumed under another (a later gis that changed a recipe's default would mix two recipes
    in one batch). An unknown recipe is left out: the task is refused later with its own
    message."""
    from ..engine.commands import shift_task_settings

    names = {options.get("recipe") or "seller"}
    names |= {t.settings["recipe"] for t in tasks if t.settings.get("recipe")}
    recipes = {}
    for name in sorted(names):
        try:
            settings = shift_task_settings({}, {"recipe": name})
        except GisUsageError:
            continue
        recipes[name] = json.loads(json.dumps(asdict(settings)))
    return recipes


def canonical_options(options: dict, base: dict | None = None,
                      overlays: Iterable[dict] = ({},)) -> dict:
    """``options`` without the settings that only restate what leaving them out gives: the
    recipe's value, or under a task's own settings the batch's ``base`` options. So
    ``--n 8`` under the seller recipe (n = 8) is the same batch as no ``--n``, and a
    manifest's ``recipe=seller`` column the same task as an empty one. A batch-wide option
    is dropped only when it changes nothing for every task: ``overlays`` are the tasks' own
    settings, applied on top (``--steps 150`` is seller's value, but not under a task's
    ``recipe=paper``). What is not a setting (category, segments_file, file hashes) is kept
    as given, and so are impossible settings (they are refused later with their own
    message)."""
    from ..engine.commands import shift_task_settings

    base = base or {}
    overlays = list(overlays) or [{}]

    def resolved(opts: dict) -> list:
        return [shift_task_settings(*shift_overrides({**base, **opts, **over}))
                for over in overlays]

    try:
        target = resolved(options)
    except GisUsageError:
        return dict(options)
    kept = dict(options)
    for name in sorted(k for k in options if k in SHIFT_OPTIONS):
        trial = {k: v for k, v in kept.items() if k != name}
        try:
            if resolved(trial) == target:
                kept = trial
        except GisUsageError:
            pass
    return kept


def _canonical(defn: dict) -> dict:
    """A batch definition as it is compared (``canonical_options`` of the batch's and of
    each task's settings): two definitions that run the same settings are the same batch."""
    options = defn.get("options")
    if not isinstance(options, dict):
        return defn
    task_settings = [t["settings"] for t in defn.get("tasks") or []
                     if isinstance(t, dict) and isinstance(t.get("settings"), dict)]
    overlays = {json.dumps(o, sort_keys=True): o for o in [{}, *task_settings]}.values()
    tasks = []
    for t in defn.get("tasks") or []:
        if isinstance(t, dict) and isinstance(t.get("settings"), dict):
            settings = canonical_options(t["settings"], options)
            t = {k: v for k, v in t.items() if k != "settings"}
            if settings:
                t["settings"] = settings
        tasks.append(t)
    return {**defn, "options": canonical_options(options, overlays=overlays), "tasks": tasks}


def _sha256_of(path: str) -> str | None:
    """The file's sha256, or None when it cannot be read (the task then fails on its own)."""
    import hashlib

    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def _unhashed(old: dict, new: dict) -> dict:
    """``new`` without the file hashes that ``old`` (a batch.json written before gis recorded
    them) lacks, so that such a batch still resumes."""
    return {k: v for k, v in new.items() if not k.endswith("_sha256") or k in old}


def read_out(out: Path, defn: dict) -> BatchState:
    """The finished and failed tasks of ``out`` (none when it does not exist yet), after
    checking that it holds this same batch. Reads only. GisUsageError when ``out`` is a file,
    another batch, or a folder gis did not write."""
    record = out / "batch.json"
    if out.exists() and not out.is_dir():
        raise GisUsageError(f"--out {out} is a file: choose a folder")
    if record.is_file():
        try:
            old = json.loads(record.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise GisUsageError(f"{record} is unreadable ({one_line(exc)}): choose another "
                                "--out") from None
        old = _canonical(old)
        _check_same_batch(out, old, _canonical(json.loads(json.dumps(defn))))
    elif out.is_dir() and any(out.iterdir()):
        raise GisUsageError(f"--out {out} exists and is not a gis batch folder (no "
                            "batch.json): choose another --out")
    done = finished_tasks(out)
    if record.is_file():  # a finished task must still be the task it was
        old_tasks = {t["id"]: t for t in old.get("tasks", [])}
        for t in _canonical(json.loads(json.dumps(defn)))["tasks"]:
            was = old_tasks.get(t["id"])
            if t["id"] in done and was is not None and was != _unhashed(
                    was, json.loads(json.dumps(t))):
                raise GisUsageError(
                    f"--out {out}: task {t['id']} is finished but the manifest now defines it "
                    f"otherwise ({_first_difference(was, t)}): give the changed task a new id, "
                    "or choose another --out")
    failed = {}
    defined = {t["id"] for t in defn.get("tasks", [])}
    for p in sorted((out / "failed").glob("*.json")):
        if p.stem in done:  # finished after it failed (a run stopped before removing this)
            continue
        if p.stem not in defined:  # its manifest row was deleted (drop_stale_failures)
            continue
        try:
            failed[p.stem] = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            failed[p.stem] = {"error": "unreadable failure record"}
    return BatchState(out=out, done=done, failed=failed)


def drop_stale_failures(out: Path, tasks: list[BatchTask]) -> list[str]:
    """Remove ``out/failed/ID.json`` of the tasks the batch no longer defines (a failed
    manifest row the user deleted): gis's own failure records, never a task's results (a
    finished task's folder stays). Returns the ids removed."""
    defined = {t.id for t in tasks}
    stale = [p for p in sorted((out / "failed").glob("*.json")) if p.stem not in defined]
    for p in stale:
        p.unlink(missing_ok=True)
    return [p.stem for p in stale]


def finished_tasks(out: Path) -> set[str]:
    """The ids of the tasks whose folder is in ``out/tasks`` (whole: it has result.json)."""
    tasks_dir = out / "tasks"
    if not tasks_dir.is_dir():
        return set()
    return {p.name for p in tasks_dir.iterdir()
            if not p.name.startswith(".") and (p / "result.json").is_file()}


_UNSET = object()


def _first_difference(old, new, where: str = "") -> str:
    """``steps: 2 -> 3``: the first key path at which two JSON values differ (a key one side
    lacks reads ``the default``)."""
    if isinstance(old, dict) and isinstance(new, dict):
        for k in [*old, *(k for k in new if k not in old)]:
            if old.get(k, _UNSET) != new.get(k, _UNSET):
                return _first_difference(old.get(k, _UNSET), new.get(k, _UNSET),
                                         f"{where}{k}." if where else f"{k}.")
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            if a != b:
                return _first_difference(a, b, f"{where}{i}.")
    def show(v) -> str:
        return "the default" if v is _UNSET else json.dumps(v)

    return f"{where.rstrip('.') or 'value'}: {show(old)} -> {show(new)}"


def _check_same_batch(out: Path, old: dict, new: dict) -> None:
    """The models and the batch-wide settings must be those ``out`` was started with; tasks
    may be added, and those not finished may change (``read_out`` checks the finished ones)."""
    old_recipes, new_recipes = old.get("recipes") or {}, new.get("recipes") or {}
    for name in sorted(set(old_recipes) & set(new_recipes)):  # (a batch.json before gis
        if old_recipes[name] != new_recipes[name]:            # recorded them: none to compare)
            raise GisUsageError(
                f"--out {out} was started under another definition of recipe {name!r} "
                f"({_first_difference(old_recipes[name], new_recipes[name])}): resume it with "
                "the gis version that started it (batch.json's \"recipes\" records that "
                "definition), or choose another --out")
    for key in ("format", "models", "options"):
        if key == "options" and isinstance(old.get(key), dict) and isinstance(new.get(key), dict):
            new = {**new, key: _unhashed(old[key], new[key])}
        if old.get(key) != new.get(key):
            raise GisUsageError(
                f"--out {out} holds a batch run with other {key} "
                f"({_first_difference(old.get(key), new.get(key))}): run it with the "
                "settings it was started with to resume it, or choose another --out")


def create_out(out: Path, defn: dict) -> None:
    """Make ``out`` and its batch.json (the definition and the command line); a batch.json
    already there is updated to the new tasks (added ones, changed unfinished ones)."""
    record = out / "batch.json"
    if record.is_file():
        old = json.loads(record.read_text(encoding="utf-8"))
        if {k: v for k, v in old.items() if k != "command"} != json.loads(json.dumps(defn)):
            write_json(record, {**defn, "command": old.get("command", _command_line())})
        return
    try:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "batch.json", {**defn, "command": _command_line()})
    except OSError as exc:
        raise GisUsageError(f"cannot create --out {out} ({exc.strerror or exc}): choose "
                            "another --out") from None


def _command_line() -> str:
    """The `gis ...` command line that is running (``gis.cli.GisGroup`` keeps its arguments),
    else this process's arguments."""
    import shlex
    import sys

    import click

    ctx = click.get_current_context(silent=True)
    argv = ctx.meta.get("gis.argv") if ctx is not None else None
    return " ".join(shlex.quote(str(a)) for a in ["gis", *(argv if argv is not None
                                                          else sys.argv[1:])])


def record_outcome(state: BatchState, task: BatchTask, outcome: Outcome) -> Outcome:
    """Write a worker's outcome into the output folder: the task's folder (atomically) and
    report, or its failure record. A task whose folder cannot be written (a full disk, say)
    becomes a failed task; returns the outcome as recorded."""
    fail = state.out / "failed" / f"{task.id}.json"
    if outcome.files is not None:
        try:
            with atomic_folder(state.out / "tasks" / task.id, overwrite=True) as tmp:
                for name, data in outcome.files.items():
                    (tmp / name).write_bytes(data)
        except (GisError, OSError) as exc:
            outcome = Outcome(task.id, error=f"cannot write its folder: {one_line(exc)}",
                              seconds=outcome.seconds, category=outcome.category)
        else:
            fail.unlink(missing_ok=True)
            state.failed.pop(task.id, None)
            state.done.add(task.id)
            write_task_report(state.out, task.id)
            return outcome
    entry = {"task": task.as_json(), "line": task.line, "error": outcome.error,
             "seconds": outcome.seconds}
    if outcome.category is not None:
        entry["category"] = outcome.category
    if outcome.traceback:
        entry["traceback"] = outcome.traceback
    write_json(fail, entry)
    state.failed[task.id] = entry
    return outcome


def write_task_report(out: Path, task_id: str) -> Path:
    """``OUT/reports/ID.html``: the `gis report` page of a finished task."""
    from ..report import write_report

    return write_report(out / "tasks" / task_id, out / "reports" / f"{task_id}.html",
                        overwrite=True)


def missing_reports(out: Path, done: set[str]) -> list[str]:
    """The finished tasks without a report (a run stopped between the two writes)."""
    return sorted(t for t in done if not (out / "reports" / f"{t}.html").is_file())


def execute(out: Path, spec: ModelSpec, options: dict, tasks: list[BatchTask], *,
            workers: int = 1, threads: int | None = None, ray_address: str | None = None,
            segments_file: str | None = None, progress: bool = True,
            on_outcome: Callable[[BatchTask, Outcome, BatchState], None] | None = None,
            catalogue=None, batch_target: dict | None = None) -> BatchState:
    """Run the tasks of ``out`` not finished yet; returns the folder's state after.

    workers: local processes (1: in this process); threads: torch threads of each (default:
    the cores shared out among the workers; on Ray 1 CPU a task). ray_address: run on Ray
    instead (``run_ray``). catalogue: (recommender, dataset) the caller loaded already
    (``load_catalogue``), else loaded here. batch_target: the command line's target for
    every task without one (``users`` or ``users_file``), checked against the recommender
    before any task runs. Raises GisUsageError, before anything is written, when ``out``
    holds another batch, a task's settings are impossible or its segment unknown."""
    defn = definition(spec, options, tasks)
    state = read_out(out, defn)
    for task_id in missing_reports(out, state.done & {t.id for t in tasks}):
        write_task_report(out, task_id)
    todo = [t for t in tasks if t.id not in state.done]
    by_id = {t.id: t for t in tasks}
    if not todo:
        if (out / "batch.json").is_file():
            create_out(out, defn)  # tasks may have been added or changed
            drop_stale_failures(out, tasks)
        return state
    if workers < 1:
        raise GisUsageError(f"--workers must be >= 1 (got {workers})")
    if threads is not None and threads < 1:
        raise GisUsageError(f"--threads must be >= 1 (got {threads})")
    from ..engine.commands import shift_task_settings

    shift_task_settings(*shift_overrides(options))  # the command line's own settings first
    worker = TaskWorker(spec, options, catalogue=catalogue)
    del catalogue  # the worker holds it (and frees it with itself before a pool starts)
    worker.segments = segments = all_segments(worker.dataset, segments_file)
    if batch_target:  # an unknown user or an empty file is the command's error, not a task's
        from ..engine.targets import resolve_targets

        resolve_targets(worker.rec, users=batch_target.get("users"),
                        users_file=batch_target.get("users_file"))
    for t in todo:  # every task's settings and segment checked before the first one runs
        where = (f"{t.manifest or 'manifest'}, line {t.line}, task {t.id}" if t.line
                 else f"task {t.id}")
        try:
            worker.settings(t)
        except GisUsageError as exc:
            raise GisUsageError(f"{where}: {exc}") from None
        if t.segment is not None:
            try:
                resolve_segment(t.segment, segments)
            except GisUsageError as exc:
                if not t.line:  # --segment of the command line: the command's error
                    raise
                raise GisUsageError(f"{where}: {exc}") from None
    if ray_address is not None:
        ray_preflight(ray_address)
    create_out(out, defn)
    drop_stale_failures(out, tasks)
    # a failure the worker could not describe (a dead worker, Ray, an unwritable folder) still
    # gets its item's category in the summary
    categories = {t.id: worker.category_of(t) for t in todo}
    if ray_address is None and workers == 1:
        if threads is not None:
            import torch

            torch.set_num_threads(threads)
        outcomes: Iterable[Outcome] = run_inline(worker, todo)
    else:
        phi = worker.catalogue_phi  # embedded once, by the driver, for every worker
        del worker
        if ray_address is not None:
            outcomes = run_ray(ray_address, spec, options, phi, segments, todo,
                               threads=threads or 1)
        else:
            outcomes = run_pool(spec, options, phi, segments, todo, workers=workers,
                                threads=threads or max(1, (os.cpu_count() or 1) // workers))
    bar = _progress(len(tasks), len(tasks) - len(todo), progress)
    try:
        for outcome in outcomes:
            task = by_id[outcome.task_id]
            if outcome.category is None:
                outcome.category = categories.get(task.id)
            outcome = record_outcome(state, task, outcome)
            if on_outcome is not None:
                on_outcome(task, outcome, state)
            bar.update(1)
            bar.set_postfix_str(f"{len(state.failed)} failed" if state.failed else "",
                                refresh=False)  # redrawn by update, at its pace
    finally:
        bar.close()
    return state


def _progress(total: int, done: int, enabled: bool):
    """The batch's bar (``gis.training.progress``: redrawn at most every 30 s into a log
    file); it stays on screen at the end."""
    from ..training import progress

    return progress(total=total, initial=done, unit="task", desc="gis batch", enabled=enabled,
                    leave=True)
