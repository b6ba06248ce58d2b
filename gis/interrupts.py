"""Stop signals (Ctrl-C's SIGINT, SIGTERM from ``kill``, a batch scheduler or a container
stop, SIGHUP from a closed terminal) as Python exceptions, so that what a stopped command has
half-written is cleaned up as after any error (case output-permissions).

* :func:`stop_signals_raise`: while a ``gis`` command runs, SIGTERM and SIGHUP raise
  :class:`Stopped` (a ``KeyboardInterrupt``, as SIGINT raises) instead of ending the process
  at once; ``gis.io.atomic_folder`` and ``atomic_path`` then remove their hidden temporary
  folder or file, and the CLI exits with status 128 + the signal number (130 for Ctrl-C,
  143 for SIGTERM).
* :func:`deferred_stop`: within a block that must not be cut (a training step, the renames
  that put a finished folder in place), a stop signal is only recorded; the block (a training
  loop) may look at the request and end early; at the block's end the signal is re-delivered
  to the handler that was there before. A second signal is delivered at once.

Only handlers Python or gis installed are taken over (the default action, Python's Ctrl-C
handler, gis's own): a signal the embedding program ignores (``nohup``) or handles itself is
left alone. Signal handlers exist only in the main thread; elsewhere both are no-ops.
SIGKILL (``kill -9``) cannot be caught: what it leaves (hidden temporary files and folders
named with the process id) is removed by the next gis command that writes there
(``gis.io.remove_stale_partials``), and training and ``gis evaluate`` resume from their last
saved state (docs/MODELS.md, "Training").

Imported when the CLI starts: no numpy or torch here.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["STOP_SIGNALS", "StopRequest", "Stopped", "deferred_stop", "describe",
           "exit_status", "interrupt_behind", "stop_signals_raise"]

#: the signals that ask a process to stop and that gis turns into a clean stop
STOP_SIGNALS: tuple[signal.Signals, ...] = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


class Stopped(KeyboardInterrupt):
    """A stop signal other than Ctrl-C, raised like ``KeyboardInterrupt`` (so every
    ``except BaseException`` clean-up and every ``KeyboardInterrupt`` handler runs).
    ``signum``: the signal's number."""

    def __init__(self, signum: int):
        self.signum = int(signum)
        super().__init__(signal.Signals(self.signum).name)


def _raise_stopped(signum: int, frame: Any) -> None:
    raise Stopped(signum)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _ours(handler: Any) -> bool:
    """Whether gis may take over a signal whose current handler is ``handler``."""
    return handler in (signal.SIG_DFL, signal.default_int_handler, _raise_stopped)


def _restore(previous: dict[int, Any]) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)


@contextlib.contextmanager
def stop_signals_raise() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise :class:`Stopped` (where their action is the
    default one); SIGINT keeps raising ``KeyboardInterrupt``. The previous handlers are back
    afterwards."""
    previous: dict[int, Any] = {}
    if _in_main_thread():
        for signum in STOP_SIGNALS:
            if signum != signal.SIGINT and signal.getsignal(signum) == signal.SIG_DFL:
                previous[signum] = signal.signal(signum, _raise_stopped)
    try:
        yield
    finally:
        _restore(previous)


@dataclass
class StopRequest:
    """What :func:`deferred_stop` recorded: ``signum`` of the first stop signal, or None."""

    signum: int | None = None

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        return "" if self.signum is None else signal.Signals(self.signum).name


@contextlib.contextmanager
def deferred_stop(on_request: Callable[[StopRequest], None] | None = None
                  ) -> Iterator[StopRequest]:
    """Within the block, the first stop signal is recorded in the yielded
    :class:`StopRequest` (and ``on_request(request)`` is called, e.g. to print "stopping after
    this step") instead of acting; a second one acts at once. When the block ends without
    error, a recorded signal is delivered to the previous handler (``KeyboardInterrupt`` for
    SIGINT, :class:`Stopped` under :func:`stop_signals_raise`, the default action
    otherwise)."""
    request = StopRequest()
    previous: dict[int, Any] = {}

    def handler(signum: int, frame: Any) -> None:
        if request.signum is not None:  # asked twice: now
            _restore(previous)
            signal.raise_signal(signum)
            return
        request.signum = signum
        if on_request is not None:
            on_request(request)

    if _in_main_thread():
        for signum in STOP_SIGNALS:
            current = signal.getsignal(signum)
            if _ours(current):
                previous[signum] = current
                signal.signal(signum, handler)
    try:
        yield request
    finally:
        _restore(previous)
    if request.signum is not None:
        signal.raise_signal(request.signum)


def interrupt_behind(exc: BaseException) -> KeyboardInterrupt | None:
    """The stop behind ``exc``: ``exc`` itself when it is a ``KeyboardInterrupt`` (or
    :class:`Stopped`), else the first one in its chain of causes (``__cause__``, then
    ``__context__``); ``None`` when no stop signal is behind it.

    A signal that arrives while Python initialises a C extension module surfaces as
    ``ImportError: initialization failed`` raised from the ``KeyboardInterrupt`` (matplotlib's
    ``_path`` imported lazily by a report, seen in CI): that is Ctrl-C too, not a defect."""
    from .errors import error_chain

    return next((e for e in error_chain(exc) if isinstance(e, KeyboardInterrupt)), None)


def exit_status(exc: BaseException) -> int:
    """The shell's status of a process ended by the signal behind ``exc``: 128 + its number
    (130 for a plain ``KeyboardInterrupt``, Ctrl-C)."""
    return 128 + int(getattr(exc, "signum", signal.SIGINT))


def describe(exc: BaseException) -> str:
    """``"Interrupted (SIGTERM)."``: the line the CLI prints for a stopped command."""
    name = signal.Signals(int(getattr(exc, "signum", signal.SIGINT))).name
    return f"Interrupted ({name})."
