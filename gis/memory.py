"""Resident memory of a gis process (issue 17: the main job within 1 GB on a 2-core CPU).

Three process-level measures, measured in benchmarks/RESULTS.md ("Memory"):

* ``skip_triton_without_cuda``: torchvision's import pulls in ``torch._dynamo``, which imports
  triton when it is installed (the CUDA build of torch ships it): about 75 MB resident of a
  GPU kernel compiler that a process without CUDA cannot use. The `gis` command marks triton
  as unavailable on such a machine, which is what the CPU-only torch wheel has anyway
  (``torch.compile`` on CPU uses its C++ backend, not triton).
* ``release_free_heap``: glibc keeps memory that tensors freed between the run's phases
  (the embedded world's rendering, the catalogue embedding, the inversion's LPIPS VGG) as
  resident free heap; ``malloc_trim(0)`` returns it to the system before the next phase.
  A no-op where the C library is not glibc.
* ``exit_now``: when a `gis` command has finished, the interpreter's teardown runs the
  static destructors of torch's libraries, which page about 110 MB of their code back in
  (resident file pages) just to exit: the `gis` console script flushes its output, runs the
  ``atexit`` handlers (Ray's shutdown, tqdm's) and ends the process without that teardown,
  unless a non-daemon thread still runs.
"""

from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import functools
import os
import sys
import threading

# set to 1 to keep triton importable on a machine without CUDA (e.g. to study torch.compile)
KEEP_TRITON_ENV = "GIS_KEEP_TRITON"


def skip_triton_without_cuda() -> bool:
    """Make ``import triton`` fail (``sys.modules["triton"] = None``) when this machine has
    no CUDA device, unless triton is already imported or ``GIS_KEEP_TRITON=1``. Returns
    whether it did. For the `gis` command, which owns its process; a library user's process
    is left alone."""
    if "triton" in sys.modules or os.environ.get(KEEP_TRITON_ENV) == "1":
        return False
    import torch

    if torch.cuda.is_available():
        return False
    sys.modules["triton"] = None
    return True


@functools.cache
def _malloc_trim():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):  # not glibc (e.g. musl has no malloc_trim)
        return None


def release_free_heap() -> bool:
    """Return the C heap's free memory to the system (glibc ``malloc_trim(0)``); no effect on
    any live tensor. Returns whether it could (False off glibc)."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


def exit_now(status=0) -> None:
    """End the process with ``status`` (as ``sys.exit`` reads it: None is 0, a string is
    printed to stderr and exits 1) without the interpreter's teardown: stdout and stderr are
    flushed and the ``atexit`` handlers run first. Falls back to ``sys.exit(status)`` while
    another non-daemon thread runs, or where CPython's ``atexit._run_exitfuncs`` is missing."""
    others = [t for t in threading.enumerate()
              if t is not threading.main_thread() and not t.daemon and t.is_alive()]
    run_exitfuncs = getattr(atexit, "_run_exitfuncs", None)
    if others or run_exitfuncs is None:
        sys.exit(status)
    if status is None:
        code = 0
    elif isinstance(status, int):
        code = status
    else:
        print(status, file=sys.stderr)
        code = 1
    run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:  # None: the process was started with that stream closed
                stream.flush()
        except (OSError, ValueError):  # closed or broken pipe: nothing more can be said
            pass
    os._exit(code & 0xFF)
