"""What produced a run: each model's weights file, the operator implementation, the device,
torch's thread counts and the versions. Every command that writes a record (``gis shift``,
``gis invert``, ``gis design``, ``gis evaluate``) takes these facts from :func:`record_fields`,
so they are built in one place and read the same everywhere (docs/OUTPUTS.md, "provenance").

Why each fact is there: a gis run is bit-identical when repeated with the same seed, inputs,
weights files, device, operator implementation and thread counts, and only then. The shifting
loop is chaotic at float32 resolution (docs/ENGINE.md, "Compiled ops and reproducibility"), so
anything that reorders float sums (another intra-op thread count, the compiled ops against the
PyTorch reference, another CPU instruction set or GPU) gives other variants from the same seed.
A record that names all of them says why a rerun differs.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Provenance", "Threads", "checkpoint_facts", "environment", "file_sha256",
           "model_entry", "provenance", "record_fields", "to_json", "versions"]

#: environment variables that set torch's CPU thread pools when torch starts
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass(kw_only=True)
class Threads:
    """torch's CPU thread pools while the run computed."""

    intra_op: int
    """``torch.get_num_threads()``: threads inside one operator (matrix products,
    convolutions). Another count splits the float sums differently, so the same seed gives
    other variants; set it with ``OMP_NUM_THREADS=N`` or ``torch.set_num_threads(N)``."""
    inter_op: int
    """``torch.get_num_interop_threads()``: threads running independent operators."""
    cpu_count: int | None = None
    """``os.cpu_count()``: logical CPUs of the machine."""
    environment: dict[str, str] = field(default_factory=dict)
    """``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` as set in the environment ({} when unset)."""


@dataclass(kw_only=True)
class Provenance:
    """Where and how the run computed (``result.json`` ``provenance``)."""

    device: str
    """The torch device the models ran on (``"cpu"``, ``"cuda:0"``)."""
    device_name: str | None = None
    """The CPU model (``cpu``) or the GPU name (``cuda``)."""
    ops: dict[str, Any] = field(default_factory=dict)
    """Which implementation of gis's fused operators ran (``gis.ops.implementation``):
    ``implementation`` ``"native"`` (the compiled C++/CUDA kernels of ``gis._C``) or
    ``"reference"`` (pure PyTorch, ``gis.ops.reference``); ``selected_by`` (``"auto"`` or
    ``"GIS_OPS=..."``); ``compiled`` / ``compiled_cuda`` (whether ``gis._C`` is built, with
    CUDA kernels); ``fallback_reason`` (why not native; null when native)."""
    threads: Threads
    """torch's thread counts."""
    numerics: dict[str, Any] = field(default_factory=dict)
    """Settings that change float results: ``cpu_capability`` (the vector instruction set
    torch's CPU kernels use, ``torch.backends.cpu.get_cpu_capability()``: ``"AVX2"``,
    ``"AVX512"``, ...), ``deterministic_algorithms``
    (``torch.are_deterministic_algorithms_enabled()``) and, on CUDA, ``cudnn_deterministic``,
    ``cudnn_benchmark``, ``matmul_tf32`` and ``cudnn_tf32``."""


# ------------------------------------------------------------------------------ the facts
def versions(device: Any = None) -> dict[str, Any]:
    """gis, torch and python versions, the platform and the CPU model; with a CUDA device also
    the CUDA and cuDNN versions and the GPU name (``result.json`` ``versions``)."""
    import torch

    from . import __version__
    from .training.device import machine_info

    machine = machine_info(device)
    out: dict[str, Any] = {"gis": __version__, "torch": torch.__version__,
                           "python": platform.python_version(), "platform": platform.platform(),
                           "cpu": machine.get("cpu")}
    if "gpu" in machine:
        out.update(cuda=machine.get("cuda"), cudnn=torch.backends.cudnn.version(),
                   gpu=machine["gpu"])
    return out


def provenance(device: Any = "cpu") -> Provenance:
    """The provenance block of a run on ``device`` (a torch device or its text), read now: call
    it in the process that ran the computation, after it ran. Raises what
    ``gis.ops.implementation`` raises for a bad ``GIS_OPS``."""
    import torch

    from .ops import implementation
    from .training.device import machine_info

    dev = torch.device(device)
    machine = machine_info(dev)
    numerics: dict[str, Any] = {
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled()}
    if dev.type == "cuda":
        numerics.update(cudnn_deterministic=torch.backends.cudnn.deterministic,
                        cudnn_benchmark=torch.backends.cudnn.benchmark,
                        matmul_tf32=torch.backends.cuda.matmul.allow_tf32,
                        cudnn_tf32=torch.backends.cudnn.allow_tf32)
    return Provenance(
        device=str(dev), device_name=machine.get("gpu") or machine.get("cpu"),
        ops=implementation(dev),
        threads=Threads(intra_op=torch.get_num_threads(),
                        inter_op=torch.get_num_interop_threads(), cpu_count=os.cpu_count(),
                        environment={k: os.environ[k] for k in THREAD_VARIABLES
                                     if k in os.environ}),
        numerics=numerics)


def model_entry(model, name: str) -> dict[str, Any]:
    """What a record says about one model (``result.json`` ``generator`` / ``recommender``):
    its registered ``name``; ``checkpoint_facts`` of its weights file (``checkpoint``,
    ``sha256``, ``format``, ``layout``, ``epoch``); the ``dataset`` its card says it was
    trained on; the factory ``options`` the command line gave it ({} when none)."""
    from .interfaces import Generator
    from .plugins import generators, recommenders

    registry = generators if isinstance(model, Generator) else recommenders
    card = model.card
    return {"name": name, **checkpoint_facts(card), "dataset": card.dataset,
            "options": registry.scoped_options(name)}


def environment(device: Any = "cpu") -> dict[str, Any]:
    """``{"versions": versions(device), "provenance": provenance(device)}``, read now (``run_gis``
    keeps it in ``GisRun.provenance``, read in the process that computed)."""
    return {"versions": versions(device), "provenance": provenance(device)}


def record_fields(device: Any, *, measured: dict[str, Any] | None = None,
                  **models: tuple[Any, str] | None) -> dict[str, Any]:
    """The provenance fields of a record, for every command that writes one: ``versions``,
    ``provenance`` (a :class:`Provenance`) and one :func:`model_entry` per ``role=(model,
    registered name)`` (``generator=(gen, "progan")``; a role given None is left out).
    ``measured``: the ``environment`` captured where the computation ran (``GisRun.provenance``,
    e.g. by a Ray worker); when None it is read now, in this process."""
    out: dict[str, Any] = dict(measured) if measured else environment(device)
    out.update({role: model_entry(*m) for role, m in models.items() if m is not None})
    return out


def to_json(fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` with dataclasses (the :class:`Provenance`) as JSON objects."""
    return {k: dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v
            for k, v in fields.items()}


# ------------------------------------------------------------------------------ weights files
def checkpoint_facts(card) -> dict[str, Any]:
    """The weights file a model card names, as five facts (each None when unknown):

    ``checkpoint``: the file the weights were read from (absolute path; the card's
    ``path`` when a loader resolved a folder to a file, else its ``checkpoint``);
    ``sha256``: the SHA-256 hex digest of that file's bytes (the card's own when the file is
    gone); ``format``: the file's format (the card's ``source_format``, else the ``format`` in
    a safetensors file's metadata, else the card's ``source``); ``layout``: the architecture
    variant the card or the file names (e.g. DVBPR ``"128"``); ``epoch``: the training epoch
    the file was saved at, where the file says (AIP ``.tar`` files, gis training
    checkpoints)."""
    extra = dict(card.extra)
    named = [c for c in (extra.get("path"), card.checkpoint) if isinstance(c, (str, os.PathLike))]
    file = next((Path(c) for c in named if Path(c).is_file()), None)
    meta = _safetensors_meta(file) if file is not None and file.suffix == ".safetensors" else {}
    layout = extra.get("layout", meta.get("layout"))
    if isinstance(layout, dict):
        layout = layout.get("name")
    return {
        "checkpoint": str(file.resolve()) if file is not None else
        (str(named[-1]) if named else None),
        "sha256": file_sha256(file) if file is not None else card.sha256,
        "format": (extra.get("source_format") or meta.get("format") or extra.get("source"))
        if named else None,
        "layout": None if layout is None else str(layout),
        "epoch": _epoch(extra, meta),
    }


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 hex digest of a file's bytes (cached per path, size and modification time)."""
    st = os.stat(path)
    return _sha256(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime_ns: int) -> str:  # size, mtime: cache keys only
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _safetensors_meta(path: Path) -> dict[str, Any]:
    """A gis safetensors file's metadata ({} for another or an unreadable file)."""
    from .errors import CheckpointError
    from .training.checkpoint import read_checkpoint_meta

    try:
        return read_checkpoint_meta(path)
    except CheckpointError:
        return {}


def _epoch(extra: dict[str, Any], meta: dict[str, Any]) -> int | None:
    """The epoch the card or the file's metadata (or its training state) records."""
    places = [extra, meta, *(v for v in meta.values() if isinstance(v, dict))]
    for place in places:
        epoch = place.get("epoch")
        if isinstance(epoch, int) and not isinstance(epoch, bool):
            return epoch
    return None
