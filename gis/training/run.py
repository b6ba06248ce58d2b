"""The resumable-run skeleton every gis trainer runs in; plugins supply only the model step.

A plugin's trainer is a subclass of :class:`Trainer` with a typed ``Config`` dataclass (see
:mod:`gis.training.config`); :func:`train` runs it::

    train(ProGANTrainer, dataset, out="runs/progan", minutes=30, device="cuda", batch_size=64)

One session, whatever the model (docs/MODELS.md, "Training"):

1. **Run folder.** ``out/<checkpoint_file>`` holds the resumable state. It is resumed with
   ``resume=True`` (``--resume``) after its ``meta["format"]`` is checked (another trainer's
   file is refused in one line); without ``resume`` an existing one is refused rather than
   replaced. ``init_from`` (``--init-from``, trainers with ``warm_start = True``) starts a new
   run from another run's weights (:meth:`Trainer.read_warm_start`).
2. **Settings.** :meth:`Trainer.setup` settles architecture, hyper-parameters and the seed
   (a resumed run keeps its own), then everything is seeded (:func:`seed_everything`) and
   :meth:`Trainer.build` makes networks, optimisers and data on the device.
3. **State.** On resume the networks (:meth:`Trainer.modules`), weight averages
   (:meth:`Trainer.averages`), optimisers (:meth:`Trainer.optimizers`), learning-rate
   schedulers (:meth:`Trainer.schedulers`) and random generators (:meth:`Trainer.generators`)
   are restored from the file, so that a resumed run takes
   exactly the steps an uninterrupted one would have taken.
4. **Loop.** Until :meth:`Trainer.finished`, the session's time budget (``minutes``, less a
   reserve for the final save) or ``max_steps`` (counted from the start of the run): one
   :meth:`Trainer.step`, the weight averages' update, the loss log (``log.jsonl``, a line
   of means at every multiple of ``log_every`` steps: :class:`gis.training.log.LossLog`; a
   non-finite mean stops the run without saving it), the schedule (:meth:`Trainer.advance`),
   the progress bar, sample grids every ``sample_every_s`` and an atomic checkpoint + export
   every ``checkpoint_every_s`` seconds.
5. **End** (schedule done, budget spent, Ctrl-C, SIGTERM, SIGHUP): :meth:`Trainer.close`, the
   checkpoint, a final sample grid and :meth:`Trainer.export`, whose path :func:`train`
   returns. A stop signal is honoured at the next step boundary (``gis.interrupts``) and then
   re-raised (``KeyboardInterrupt``; ``gis train`` exits 130 / 143); a second one, or an
   error within a step, ends the session at once without saving the half-done step.

What ``kill -9`` (or a crash) loses: the steps since the last checkpoint, no more. The
checkpoint is replaced atomically, so it is always a whole one; the next session with
``resume`` starts from it, drops the ``log.jsonl`` lines written after it and the temporary
files the killed process left (``gis.io.remove_stale_partials``), and, given the same
CPU device, thread count and a schedule counted in steps or images (not wall-clock time),
repeats those steps bit for bit: the final weights equal an uninterrupted run's
(tests/test_resume.py; on a GPU, up to cuDNN's nondeterminism).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from ..errors import CheckpointError, GisUsageError, NonFiniteLossError
from ..interrupts import StopRequest, deferred_stop
from .checkpoint import (
    check_format,
    load_checkpoint,
    load_optimizer_state,
    load_rng_state,
    optimizer_state_tensors,
    rng_state_tensors,
    save_checkpoint,
    unflatten,
)
from .config import make_config
from .device import command_line, global_rng_aside, seed_everything, training_device
from .log import LossLog
from .options import RUN_OPTIONS, PeriodicSettings, RunOptions, save_reserve_s
from .state import Budget, WeightAverage, progress

#: checkpoint meta key of the losses logged at the next log line (:class:`LossLog`)
LOG_KEY = "log_pending"

__all__ = ["Checkpoint", "PeriodicSettings", "Run", "RunOptions", "Trainer", "save_reserve_s",
           "train"]


@dataclass
class Checkpoint:
    """A file a run starts from: ``kind`` "resume" (this trainer's own checkpoint) or "warm"
    (weights and settings for a new run, :meth:`Trainer.read_warm_start`)."""

    kind: str
    path: Path
    tensors: dict[str, torch.Tensor]
    meta: dict[str, Any]


class Trainer:
    """The model-specific part of a training run; subclass it in a plugin.

    Class attributes: ``name`` (the registered name, used in messages); ``Config`` (the
    settings dataclass); ``checkpoint_file`` and ``checkpoint_format`` (the resumable file
    in the run folder and its ``meta["format"]``); ``state_key`` (the meta key of the loop
    state dict); ``warm_start`` (whether ``init_from`` is accepted); ``progress_unit``.

    Instance attributes set by the skeleton before :meth:`setup`: ``dataset``, ``config`` (a
    ``Config``) and ``run`` (the :class:`Run`: ``run.device``, ``run.state``, ``run.out``,
    ...). ``log_every`` (steps), ``sample_every_s`` and ``checkpoint_every_s`` (seconds) set
    how often the skeleton logs, samples and saves (0 / inf: never); a ``Config`` that
    inherits :class:`PeriodicSettings` sets them from its fields.
    """

    name: ClassVar[str] = "?"
    Config: ClassVar[type]
    checkpoint_file: ClassVar[str] = "checkpoint.safetensors"
    checkpoint_format: ClassVar[str] = ""
    state_key: ClassVar[str] = "state"
    warm_start: ClassVar[bool] = False
    progress_unit: ClassVar[str] = "step"
    progress_format: ClassVar[str | None] = None

    log_every: int = 0
    sample_every_s: float = math.inf
    checkpoint_every_s: float = math.inf

    def __init__(self, dataset: Any, config: Any, run: Run):
        self.dataset = dataset
        self.config = config
        self.run = run

    # ----------------------------------------------------------------- to implement
    def setup(self, carried: Checkpoint | None) -> tuple[int, dict[str, Any]]:
        """Settle architecture, hyper-parameters and schedule: from ``carried.meta`` when
        resuming or warm-starting, else from the config and the dataset. Returns the seed and
        the loop state dict (JSON; the skeleton keeps ``step``, ``elapsed_s`` and
        ``sessions`` in it). Nothing random may happen here (seeding comes next)."""
        raise NotImplementedError

    def build(self) -> None:
        """Make networks, optimisers, generators and data on ``self.run.device`` (seeded)."""
        raise NotImplementedError

    def modules(self) -> dict[str, nn.Module]:
        """The trained networks, by tensor-name prefix in the checkpoint (e.g. ``"g."``)."""
        raise NotImplementedError

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """The optimisers, by prefix in the checkpoint (e.g. ``"opt_g."``)."""
        raise NotImplementedError

    def averages(self) -> dict[str, WeightAverage]:
        """Weight averages updated after every step, by prefix (e.g. ``"ema."``)."""
        return {}

    def generators(self) -> dict[str, torch.Generator]:
        """Random generators of the loop besides torch's global ones, by name."""
        return {}

    def schedulers(self) -> dict[str, Any]:
        """Learning-rate schedulers (``torch.optim.lr_scheduler``), by prefix; their state
        is JSON in the checkpoint's meta (``{prefix}scheduler``)."""
        return {}

    def checkpoint_meta(self) -> dict[str, Any]:
        """The JSON part of the checkpoint besides format, loop state and optimisers."""
        return {}

    def step(self) -> dict[str, torch.Tensor]:
        """One optimisation step; returns its losses as 0-d tensors (logged as means)."""
        raise NotImplementedError

    def export(self) -> Path:
        """Write the usable model (and its card) into the run folder; return its path."""
        raise NotImplementedError

    # ----------------------------------------------------------------- optional hooks
    def read_warm_start(self, path: Path) -> Checkpoint:
        """The file ``init_from`` names, for :meth:`setup` and :meth:`load_warm_start`."""
        raise GisUsageError(f"{self.name} training cannot start from another run (no "
                            "--init-from)")

    def restore(self, ckpt: Checkpoint) -> None:
        """Load networks, averages, optimisers and generators from this trainer's file."""
        tensors, meta = ckpt.tensors, ckpt.meta
        nets = {**self.modules(), **{p: a.module for p, a in self.averages().items()}}
        for prefix, net in nets.items():
            state = unflatten(tensors, prefix)
            if not state:
                raise CheckpointError(f"{ckpt.path} holds no {prefix}* tensors")
            try:
                net.load_state_dict(state)
            except RuntimeError as exc:
                raise CheckpointError(f"{ckpt.path} does not match its config: "
                                      f"{str(exc).splitlines()[0]}") from None
        for prefix, opt in self.optimizers().items():
            load_optimizer_state(opt, tensors, meta, prefix=prefix)
        for prefix, sched in self.schedulers().items():
            if f"{prefix}scheduler" not in meta:
                raise CheckpointError(f"{ckpt.path} holds no {prefix}scheduler state")
            sched.load_state_dict(meta[f"{prefix}scheduler"])
        load_rng_state(tensors, self.generators())

    def load_warm_start(self, ckpt: Checkpoint) -> None:
        """Load the networks (and averages) the warm-start file holds; an average it lacks
        restarts at its network's loaded weights. Optimisers and generators start fresh."""
        averages = self.averages()
        for prefix, net in {**self.modules(), **{p: a.module for p, a in averages.items()}
                            }.items():
            state = unflatten(ckpt.tensors, prefix)
            if not state:
                continue
            try:
                net.load_state_dict(state)
            except RuntimeError as exc:
                raise CheckpointError(f"{ckpt.path} does not match its config: "
                                      f"{str(exc).splitlines()[0]}") from None
        for prefix, avg in averages.items():
            if not unflatten(ckpt.tensors, prefix):
                avg.reset()

    def advance(self, dt: float) -> None:
        """After a step (``run.state["step"]`` already counts it): move the schedule on by
        the step's ``dt`` seconds of wall time (epochs, stages, ...)."""

    def finished(self) -> bool:
        """Whether the run's schedule is complete (the loop then ends)."""
        return False

    def reserve_s(self) -> float:
        """Seconds of this session's budget kept for the final save (:func:`save_reserve_s`;
        a trainer whose end costs nothing returns 0)."""
        return save_reserve_s(self.run.options.minutes)

    def progress_position(self) -> tuple[float, float | None]:
        """(done, total) in ``progress_unit`` for the progress bar."""
        return float(self.run.state["step"]), None

    def log_fields(self) -> dict[str, Any]:
        """Extra entries of a ``log.jsonl`` line and the bar's postfix (e.g. the stage)."""
        return {}

    def sample(self, suffix: str) -> None:
        """Write a sample grid (:meth:`Run.save_samples`); ``suffix`` is "" or "-final"."""

    def close(self) -> None:
        """End of the session (not after a divergence), before the last checkpoint."""

    def summary(self) -> str:
        """One closing line (printed with ``progress``)."""
        st = self.run.state
        return (f"{self.name}: {st['step']} steps, {st['elapsed_s'] / 60:.1f} min of training; "
                f"losses {self.run.last_losses}")


class Run:
    """One training session of ``trainer_cls`` (see the module docstring for the phases)."""

    def __init__(self, trainer_cls: type[Trainer], dataset: Any, config: Any,
                 options: RunOptions):
        self.trainer_cls = trainer_cls
        self.dataset = dataset
        self.config = config
        self.options = options
        self.out = options.out
        self.device: torch.device = torch.device("cpu")
        self.state: dict[str, Any] = {}
        self.seed = int(options.seed)
        self.commands: list[str] = []
        self.last_losses: dict[str, float] = {}
        self.checkpoint_path = self.out / trainer_cls.checkpoint_file
        self._t_session = time.monotonic()
        self._bar = None
        self.trainer: Trainer | None = None
        self.log: LossLog | None = None
        # what started the run (`gis train` sets it: the command's options, JSON), and whether
        # this session ended by its own plan or budget (not a stop signal): both go into the
        # checkpoint so that the same command again resumes an interrupted run only
        self.invocation: dict[str, Any] | None = None
        self.finished = False

    # ----------------------------------------------------------------- services
    @property
    def session_s(self) -> float:
        """Seconds since this session's loop started."""
        return time.monotonic() - self._t_session

    def write(self, message: str) -> None:
        """Print ``message`` (above the progress bar) when progress output is on."""
        if not self.options.progress:
            return
        if self._bar is not None:
            self._bar.write(message)
        else:
            print(message)

    def save_checkpoint(self) -> Path:
        """Atomically write the resumable state (networks, averages, optimisers, RNG states,
        loop state, the trainer's meta) to ``checkpoint_file``."""
        t = self.trainer
        tensors: dict[str, torch.Tensor] = {}
        meta: dict[str, Any] = {}
        nets = {**t.modules(), **{p: a.module for p, a in t.averages().items()}}
        for prefix, net in nets.items():
            tensors.update({f"{prefix}{k}": v for k, v in net.state_dict().items()})
        for prefix, opt in t.optimizers().items():
            ot, om = optimizer_state_tensors(opt, prefix)
            tensors.update(ot)
            meta.update(om)
        for prefix, sched in t.schedulers().items():
            meta[f"{prefix}scheduler"] = sched.state_dict()
        tensors.update(rng_state_tensors(t.generators()))
        meta.update(t.checkpoint_meta())
        meta["format"] = t.checkpoint_format
        meta[t.state_key] = self.state
        if self.invocation is not None:
            meta["invocation"] = self.invocation
        meta["finished"] = self.finished
        if self.log is not None:
            meta[LOG_KEY] = self.log.state()
        return save_checkpoint(self.checkpoint_path, tensors, meta)

    def save_samples(self, images: torch.Tensor, tag: str, *, nrow: int | None = None) -> Path:
        """Write a grid of ``images`` (float (N, 3, H, W) in [-1, 1]) to ``samples/{tag}.png``
        and ``samples/latest.png``."""
        from ..images import make_grid
        from ..io import atomic_path

        grid = make_grid(images.detach().float().cpu(), nrow=nrow)
        folder = self.out / "samples"
        folder.mkdir(parents=True, exist_ok=True)
        for name in (f"{tag}.png", "latest.png"):
            with atomic_path(folder / name) as tmp:
                grid.save(tmp, format="PNG")
        return folder / f"{tag}.png"

    # ----------------------------------------------------------------- phases
    def _start(self) -> Trainer:
        opts, cls = self.options, self.trainer_cls
        self.device = training_device(opts.device, opts.threads)  # before the folder exists
        self.out.mkdir(parents=True, exist_ok=True)
        path = self.checkpoint_path
        trainer = cls(self.dataset, self.config, self)
        self.trainer = trainer
        carried = None
        if opts.init_from is not None:
            if not cls.warm_start:
                raise GisUsageError(f"{cls.name} training cannot start from another run "
                                    "(no init_from / --init-from)")
            if path.is_file():
                raise GisUsageError(f"{self.out} already holds a training checkpoint: resume it "
                                    "(--resume) or pass a new --out for a run started with "
                                    "--init-from")
            carried = trainer.read_warm_start(Path(opts.init_from))
        elif path.is_file():
            if not opts.resume:
                raise GisUsageError(f"{path} exists: pass resume=True (--resume) to continue "
                                    "that run, or choose another output folder")
            tensors, meta = load_checkpoint(path)
            check_format(meta, path, cls.checkpoint_format, f"{cls.name} training checkpoint")
            carried = Checkpoint("resume", path, tensors, meta)
        elif opts.resume:
            self.write(f"{cls.name}: no checkpoint in {self.out}; starting a new run")

        if isinstance(self.config, PeriodicSettings):
            trainer.sample_every_s = float(self.config.sample_every_s)
            trainer.checkpoint_every_s = float(self.config.checkpoint_every_s)
            trainer.log_every = int(self.config.log_every)
        seed, state = trainer.setup(carried)
        self.seed = int(seed)
        state.setdefault("step", 0)
        state.setdefault("elapsed_s", 0.0)
        self.state = state
        self.commands = [*(carried.meta.get("commands", []) if carried else []), command_line()]
        seed_everything(self.seed)
        trainer.build()
        if carried is not None and carried.kind == "resume":
            trainer.restore(carried)
        elif carried is not None:
            trainer.load_warm_start(carried)
        state["sessions"] = int(state.get("sessions", 0)) + 1
        self.log = LossLog(self.out / "log.jsonl", trainer.log_every)
        self.log.trim(int(state["step"]))  # lines a killed session wrote after its checkpoint
        if carried is not None and carried.kind == "resume":
            self.log.load(carried.meta.get(LOG_KEY), self.device)
        return trainer

    def execute(self) -> Path:
        """Run the session; return the exported model's path."""
        trainer = self._start()
        opts, st = self.options, self.state
        minutes = opts.minutes
        budget = Budget(minutes=None if minutes is None else max(
            0.0, minutes - trainer.reserve_s() / 60.0))
        done, total = trainer.progress_position()
        bar = progress(total=total, desc=trainer.name, enabled=opts.progress,
                       unit=trainer.progress_unit, initial=done,
                       **({"bar_format": trainer.progress_format}
                          if trainer.progress_format else {}))
        self._bar = bar
        log = self.log
        budget.restart()  # a time plan and the budget both count from here
        self._t_session = t_ckpt = t_sample = t_prev = time.monotonic()
        failed = False
        whole = True  # the state is that of a whole number of steps (safe to save)
        averages = trainer.averages()
        with deferred_stop(self._stopping) as stop:  # Ctrl-C/SIGTERM end at a step boundary
            try:
                while not trainer.finished():
                    if opts.max_steps is not None and st["step"] >= opts.max_steps:
                        break
                    if budget.exhausted() or stop.requested:
                        break
                    whole = False
                    try:
                        losses = trainer.step()
                    except NonFiniteLossError:  # a trainer's own check: nothing is saved either
                        failed = True
                        raise
                    for avg in averages.values():
                        avg.update(st["step"])
                    log.add(losses)
                    st["step"] += 1
                    if log.due(st["step"]):
                        self.last_losses = log.means()
                        if not log.finite(self.last_losses):
                            failed = True
                            raise NonFiniteLossError(
                                f"{trainer.name} training diverged at step {st['step']} (losses "
                                f"{self.last_losses}); resume from the last checkpoint with a "
                                "lower learning rate")
                        fields_ = trainer.log_fields()
                        bar.set_postfix({**fields_, **{k: f"{v:.3f}" for k, v in
                                                       self.last_losses.items()}}, refresh=False)
                        log.write({"step": st["step"], **fields_,
                                   "elapsed_s": round(st["elapsed_s"], 2), **self.last_losses})
                    # wall time since the previous step, sample grids and checkpoints included,
                    # so that a time plan and the budget end together
                    now = time.monotonic()
                    dt, t_prev = now - t_prev, now
                    st["elapsed_s"] += dt
                    trainer.advance(dt)
                    whole = True
                    pos, _ = trainer.progress_position()
                    bar.update(pos - bar.n)
                    if now - t_sample >= trainer.sample_every_s:
                        with global_rng_aside(self.device):
                            trainer.sample("")
                        t_sample = now
                    if now - t_ckpt >= trainer.checkpoint_every_s:
                        self.save_checkpoint()
                        with global_rng_aside(self.device):  # a usable model at any time
                            trainer.export()
                        t_ckpt = now
            finally:
                bar.close()
                self._bar = None
                # not saved: a diverged state, and one cut within a step (an error, a second
                # Ctrl-C): the last checkpoint stays, and a resumed run repeats no half step
                if not failed and whole:
                    if not self.last_losses:  # ended before its first log line
                        peek = log.peek()
                        self.last_losses = peek if log.finite(peek) else {}
                    st["elapsed_s"] += time.monotonic() - t_prev
                    self.finished = not stop.requested  # its plan, budget or max_steps ended it
                    trainer.close()
                    self.save_checkpoint()
                    with global_rng_aside(self.device):
                        trainer.sample("-final")
                        path = trainer.export()
            if opts.progress:
                print(trainer.summary())
            if stop.requested:  # the signal acts when the block ends (gis.interrupts)
                self._stopping(stop, saved=True)
            return path

    def _stopping(self, stop: StopRequest, *, saved: bool = False) -> None:
        """What a stop signal (``gis.interrupts.deferred_stop``) does to a session: say that it
        ends after the current step (``saved``: that it has ended, and how to go on)."""
        import sys

        st = self.state
        if saved:
            line = (f"{stop.name}: stopped after step {st['step']}, checkpoint saved in "
                    f"{self.checkpoint_path}: the same command again continues it")
        else:
            line = (f"{stop.name}: stopping after this step and saving a resumable checkpoint "
                    "(again to stop at once, losing the steps since the last checkpoint)")
        if self._bar is not None:
            self._bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr, flush=True)


def train(trainer_cls: type[Trainer], dataset: Any, *, config: Any = None,
          **options: Any) -> Path:
    """Train (or resume) ``trainer_cls`` on ``dataset``; return the exported model's path.

    ``options``: the :class:`RunOptions` (``out`` required; ``seed``, ``device``, ``resume``,
    ``init_from``, ``minutes``, ``max_steps``, ``threads``, ``progress``) and the fields of
    ``trainer_cls.Config`` (or pass a ``config`` instance). Unknown names raise a one-line
    GisUsageError listing the known ones."""
    if not (isinstance(trainer_cls, type) and issubclass(trainer_cls, Trainer)):
        raise GisUsageError(f"{trainer_cls!r} is not a gis.training.Trainer subclass "
                            "(docs/PLUGINS.md, Trainers)")
    run_values = {k: options.pop(k) for k in list(options) if k in RUN_OPTIONS}
    if config is None:
        config = make_config(trainer_cls.Config, options, what=f"{trainer_cls.name} trainer")
    elif options:
        raise GisUsageError(f"unknown {trainer_cls.name} trainer option(s): "
                            f"{', '.join(sorted(options))} (settings go in config=)")
    return Run(trainer_cls, dataset, config, RunOptions(**run_values)).execute()
