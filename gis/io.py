"""One home for how gis writes files and for the checks every command repeats.

* Atomic writes: :func:`atomic_path` (a temporary path beside the target, renamed onto it when
  the block ends without error, removed otherwise), :func:`write_bytes`, :func:`write_text`,
  :func:`write_json`; :func:`atomic_folder` builds a whole output folder in a hidden sibling
  and renames it into place. A reader sees the old file (or folder) or the new one, never a
  half-written one; an error, Ctrl-C or SIGTERM (``gis.interrupts``) leaves nothing behind.
  Files and folders get the permissions ``open()`` and ``mkdir`` give under the user's umask.
  Temporary names carry the writer's process id and host; what a killed process (``kill
  -9``) left is removed by the next write into that folder (:func:`remove_stale_partials`).
* :class:`JSONEncoder` / :func:`json_default`: numpy and torch scalars and arrays, paths,
  devices, dtypes and sets as JSON.
* :func:`require_trust`: the one check before any pickle-based file is loaded.
* :func:`check_output_folder`: the one check of an ``--out`` folder (``--overwrite`` replaces
  only an empty folder or one that ``gis shift``/``invert``/``design`` wrote: never the user's
  own files); :func:`removed_if_left_empty` for run folders filled over time.

Imported when the CLI starts: no numpy or torch at the top (types are recognised only when
their module is already loaded).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import GisUsageError, UntrustedFileError, error_chain

__all__ = ["JSONEncoder", "atomic_folder", "atomic_path", "check_output_folder", "json_default",
           "remove_stale_partials", "removed_if_left_empty", "require_trust", "write_bytes",
           "write_json", "write_text"]


# ------------------------------------------------------------------------------ atomic files
def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _ordinary_mode(path: str | os.PathLike) -> None:
    """rw for the owner, r/w for the rest as the umask allows (what ``open()`` would make;
    ``mkstemp`` and safetensors make 0600 files)."""
    os.chmod(path, 0o666 & ~_umask())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same folder, same suffix, so writers that add
    or check a suffix, such as ``np.save`` or safetensors, work); when the block ends without
    error the file is given ordinary permissions, flushed to disk and renamed onto ``path``
    (``os.replace``); on any error it is removed and ``path`` is left as it was. Parent
    folders are created. Raises OSError when the folder cannot be written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _sweep_once(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{_owner()}.",
                               suffix=f".partial{path.suffix}", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        _ordinary_mode(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Atomically write ``data`` to ``path`` (see :func:`atomic_path`); returns ``path``."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Atomically write ``text`` as UTF-8 to ``path``; returns ``path``."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any, *, sort_keys: bool = False) -> Path:
    """Atomically write ``obj`` as JSON indented by 2 with a final newline, encoded with
    :class:`JSONEncoder`; returns ``path``. Raises TypeError for a value it cannot encode."""
    return write_text(path, json.dumps(obj, indent=2, sort_keys=sort_keys, cls=JSONEncoder)
                      + "\n")


@contextlib.contextmanager
def atomic_folder(out: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty hidden folder beside ``out``; when the block ends without error it
    gets the umask's permissions (as everything in it) and becomes ``out`` (an existing
    ``out`` is replaced only with ``overwrite``; a stop signal waits for the renames); on any
    error, Ctrl-C or SIGTERM (``gis.interrupts``) it is removed with everything in it and
    ``out`` is left as it was. What a killed process left beside ``out`` is removed first
    (:func:`remove_stale_partials`).

    Checks ``out`` first with :func:`check_output_folder` (GisUsageError)."""
    out = check_output_folder(out, overwrite=overwrite)
    # an empty folder made beforehand (its permissions, owner, ACLs, a symlink to it, a mount
    # point, in a parent the user may not write) is filled in place rather than replaced: the
    # temporary folder is made inside it and its entries renamed up at the end
    fill = out.is_dir() and not any(out.iterdir())
    try:
        if not fill:
            out.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_partials(out if fill else out.parent)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial.{_owner()}.",
                                    dir=out if fill else out.parent))
    except OSError as exc:
        raise _cannot_create(out, exc) from None
    moved: list[Path] = []
    try:
        yield tmp
        _ordinary_modes(tmp)
        with _whole():  # a stop signal waits until out is the old folder or the new one
            if fill:
                for entry in sorted(tmp.iterdir()):
                    entry.rename(out / entry.name)
                    moved.append(out / entry.name)
                tmp.rmdir()
            elif out.exists():
                old = out.with_name(f".{out.name}.old.{_owner()}.x")
                out.rename(old)
                tmp.rename(out)
                shutil.rmtree(old, ignore_errors=True)
            else:
                tmp.rename(out)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        for path in moved:  # a fill cut half-way: the folder is left empty, as it was
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
        full = storage_full(exc, where=out.parent)
        if full is not None:
            raise GisUsageError(f"cannot write {out} ({full}): free space there or choose "
                                "another --out") from None
        raise


#: errno values of a write that failed for lack of room: no space, quota, file too large
_FULL_ERRNOS = frozenset(getattr(errno, n) for n in ("ENOSPC", "EDQUOT", "EFBIG")
                         if hasattr(errno, n))
#: how libraries that do not raise OSError (safetensors' Rust writer) word those errors
_FULL_WORDS = ("No space left on device", "Disk quota exceeded", "File too large")


def storage_full(exc: BaseException, where: Path | None = None) -> str | None:
    """Why ``exc`` (or an error in its chain of causes) is a write that failed for lack of
    room (``"No space left on device"``, a quota, a file too large): the reason in the
    system's words, else None. safetensors reports ENOSPC as a ``SafetensorError`` whose
    text carries it, PIL and numpy as OSError. With ``where``, an OSError naming a file
    elsewhere (a full cache or /tmp, not the output) does not count."""
    for err in error_chain(exc):
        if isinstance(err, OSError) and err.errno in _FULL_ERRNOS:
            named = err.filename
            if where is not None and named is not None and not Path(
                    os.fsdecode(named)).absolute().is_relative_to(where.absolute()):
                return None
            return err.strerror or os.strerror(err.errno)
        text = str(err)
        for words in _FULL_WORDS:
            if words in text:
                return words
    return None


def _owner() -> str:
    """``PID@HOST`` of this process, in temporary names (``remove_stale_partials``)."""
    return f"{os.getpid()}@{socket.gethostname()}"


#: a temporary file of atomic_path or folder of atomic_folder: .NAME.PID@HOST.XXXX.partial.EXT,
#: .NAME.partial.PID@HOST.XXXX, .NAME.old.PID@HOST.x
_PARTIAL = re.compile(r"\.(?P<name>.+?)\.(?:(?:partial|old)\.)?(?P<pid>\d+)@(?P<host>[^/]+?)\."
                      r"(?:[^.]+\.partial.*|[^.]+)")
_swept: set[str] = set()


def _alive(pid: int) -> bool:
    if pid == os.getpid() or os.name == "nt":  # Windows' os.kill would end the process
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, another user's
        return True
    return True


def remove_stale_partials(folder: str | os.PathLike) -> list[Path]:
    """Remove what a gis process that was killed (``kill -9``, a power cut) left in
    ``folder``: the hidden temporary files of :func:`atomic_path` and folders of
    :func:`atomic_folder` whose writer ran on this host and is no longer running. A folder
    that was moved aside while a result replaced it is put back when the result is missing.
    Returns the paths removed or restored; unreadable folders are skipped."""
    folder = Path(folder)
    host, done = socket.gethostname(), []
    try:
        entries = [e for e in os.scandir(folder) if e.name.startswith(".")]
    except OSError:
        return done
    for entry in entries:
        m = _PARTIAL.fullmatch(entry.name)
        if m is None or m["host"] != host or _alive(int(m["pid"])):
            continue
        path = Path(entry.path)
        target = folder / m["name"]
        if entry.name.startswith(f".{m['name']}.old.") and not target.exists():
            with contextlib.suppress(OSError):
                path.rename(target)  # killed between the two renames: the old result stays
                done.append(target)
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                path.unlink()
        done.append(path)
    return done


def _sweep_once(folder: Path) -> None:
    """:func:`remove_stale_partials` the first time this process writes into ``folder``."""
    key = os.path.abspath(folder)
    if key not in _swept:
        _swept.add(key)
        remove_stale_partials(folder)


def _whole():
    """A block that a stop signal does not cut (``gis.interrupts.deferred_stop``)."""
    from .interrupts import deferred_stop

    return deferred_stop()


def _ordinary_modes(folder: Path) -> None:
    """What ``mkdir`` and ``open()`` would have made under the user's umask, for ``folder``
    and everything in it (``mkdtemp`` makes 0700 folders, ``mkstemp`` and safetensors 0600
    files)."""
    umask = _umask()
    os.chmod(folder, 0o777 & ~umask)
    for root, dirs, files in os.walk(folder):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o777 & ~umask)
        for name in files:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                os.chmod(path, 0o666 & ~umask)


@contextlib.contextmanager
def removed_if_left_empty(folder: str | os.PathLike, *, keep: str | None = None
                          ) -> Iterator[Path]:
    """For a folder filled over time (``gis train``): when the block raises (an error,
    Ctrl-C, SIGTERM) and the folder did not exist before it, the folder (and any parent the
    block created with it) is removed again if it holds no file, or, with ``keep``, no file of
    that name (a run's checkpoint: without it nothing can resume), so a failed command leaves
    no empty or half-made ``--out`` behind."""
    folder = Path(folder)
    top = None  # the highest folder of the path that does not exist yet
    for p in (folder, *folder.parents):
        if p.exists():
            break
        top = p
    try:
        yield folder
    except BaseException:
        if top is not None and top.is_dir():
            kept = (folder / keep).exists() if keep is not None else any(
                not q.is_dir() or q.is_symlink() for q in top.rglob("*"))
            if not kept:
                shutil.rmtree(top, ignore_errors=True)
        raise


# ------------------------------------------------------------------------------ checks
def check_output_folder(out: str | os.PathLike, *, overwrite: bool = False,
                        resume: bool | None = None, checkpoint: str | None = None) -> Path:
    """Refuse an ``--out`` folder that a command must not write into; returns it as a Path.

    A folder written whole (``resume=None``, e.g. ``gis shift``): an empty one is used as is
    (made beforehand, e.g. with the right permissions); one that holds anything is refused
    unless ``overwrite``, and even then unless it is a folder gis wrote
    (:func:`_check_replaceable`: the user's own files are never replaced); the current folder
    or one above it (``--out .``, ``--out ..``) is refused. A run folder filled over time
    (``resume`` True or False, e.g. ``gis train``): refused when it already holds files,
    unless ``resume``; with ``checkpoint`` (the run's resumable file name) a folder that holds
    files but not that one (a data folder, another model's run) is refused even with
    ``resume``, since resuming it would train into it. An ``--out`` that is a file, or that
    cannot be created (its parent is not writable), is always refused. Raises GisUsageError
    with a one-line message."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise GisUsageError(f"--out {out} exists and is not a folder")
    if resume is None:
        _check_not_a_working_folder(out)
    if not out.exists():
        _check_creatable(out)
    if resume is None:
        if out.exists() and not overwrite and any(out.iterdir()):  # an empty one holds nothing
            raise GisUsageError(f"output folder {out} already exists: pass --overwrite to "
                                "replace it, or choose another --out")
        if out.exists():
            _check_replaceable(out)
    elif out.is_dir() and any(out.iterdir()):
        # what a run writes before its first checkpoint (a run killed then can still resume)
        own = {"log.jsonl", "samples"}
        foreign = [p for p in out.iterdir() if p.name not in own and not p.name.startswith(".")]
        if checkpoint is not None and not (out / checkpoint).is_file() and foreign:
            names = sorted(p.name for p in foreign)
            shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
            raise GisUsageError(f"output folder {out} holds files ({shown}) but no run to "
                                f"continue (no {checkpoint}): choose a new or empty --out")
        if not resume:
            raise GisUsageError(f"output folder {out} is not empty: pass --resume to continue "
                                "that run, or choose another --out")
    return out


#: what ``gis shift``, ``gis invert`` and ``gis design`` write into their folder (and ``gis
#: report`` beside it): the only names ``--overwrite`` replaces
GIS_FOLDER_FILES = re.compile(r"(item|base|grid)\.png|(variant|design)_\d+\.png|result\.json|"
                              r"latents\.safetensors|report\.html")
#: the ``command`` field of the result.json of those commands
GIS_FOLDER_COMMANDS = ("shift", "invert", "design")


def _check_not_a_working_folder(out: Path) -> None:
    """``--out .``, ``..`` or another folder that holds the current one: a folder written
    whole is renamed into place, which these cannot be (and replacing them would take the
    user's files with them)."""
    resolved, cwd = out.resolve(), Path.cwd().resolve()
    if out.name in ("", ".", "..") or resolved == cwd or resolved in cwd.parents:
        raise GisUsageError(f"--out {out} is the current folder or one above it: gis writes a "
                            "new folder of its own, so name one, e.g. --out run1")


def _cannot_create(out: Path, exc: OSError) -> GisUsageError:
    why = exc.strerror or type(exc).__name__
    return GisUsageError(f"cannot create output folder {out} ({why}): choose another --out")


def _check_creatable(out: Path) -> None:
    """A one-line error, before any work, when ``out`` cannot be created: its nearest existing
    parent is a file or not writable (probed with a temporary folder, removed at once)."""
    parent = next((p for p in out.absolute().parents if p.exists()), None)
    if parent is None:
        return
    if not parent.is_dir():
        raise GisUsageError(f"cannot create output folder {out}: {parent} is not a folder: "
                            "choose another --out")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".gis-probe-", dir=parent))
    except OSError as exc:
        raise _cannot_create(out, exc) from None


def _check_replaceable(out: Path) -> None:
    """``--overwrite`` replaces ``out`` only when it is empty or gis wrote it: a result.json of
    ``gis shift``, ``invert`` or ``design`` and nothing but the files those commands (and
    ``gis report``) write. Anything else is the user's: a one-line GisUsageError."""
    entries = sorted(p.name for p in out.iterdir())
    if not entries:
        return
    advice = "--overwrite replaces only a folder that gis wrote: choose another --out or " \
             "delete it yourself"
    try:
        doc = json.loads((out / "result.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        doc = None
    if not isinstance(doc, dict) or doc.get("command") not in GIS_FOLDER_COMMANDS:
        raise GisUsageError(f"output folder {out} was not written by gis shift, invert or "
                            f"design (no result.json of theirs): {advice}")
    listed = {f for f in doc.get("files") or [] if isinstance(f, str)}
    foreign = [n for n in entries if not ((GIS_FOLDER_FILES.fullmatch(n) or n in listed)
                                          and (out / n).is_file())]
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5
                                          else "")
        raise GisUsageError(f"output folder {out} holds {shown}, which gis did not write: "
                            f"{advice}")


#: how a pickle-based file starts: a zip archive (torch.save since 1.6), a pickle of protocol
#: 2+ (legacy torch.save, pickle.dump), protocol 0/1 ("(" or "}" or "]"), a .npy file
_PICKLE_BASED_MAGIC = (b"PK\x03\x04", b"\x80", b"(", b"}", b"]", b"\x93NUMPY")


def require_trust(path: str | os.PathLike, *, trust: bool, what: str, hint: str = "") -> None:
    """The check before loading a pickle-based file: unpickling runs code chosen by whoever
    wrote the file, so it happens only with the user's explicit ``trust``.

    ``what`` names the file's kind ("DVBPR data file", "ProGAN checkpoint"); ``hint`` is an
    alternative to offer ("convert it to a .safetensors file"). Raises UntrustedFileError
    (one line naming ``--trust``) when ``trust`` is false, and GisUsageError when the file is
    not a pickle-based file at all (neither a zip archive as torch.save writes, nor a pickle,
    nor a .npy): no user is asked to trust a file that cannot be one."""
    try:
        with open(path, "rb") as f:
            head = f.read(6)
    except OSError as exc:
        raise GisUsageError(f"cannot read {path} ({exc.strerror or exc})") from None
    if not head.startswith(_PICKLE_BASED_MAGIC):
        raise GisUsageError(f"{path} is not a {what}: it is neither a torch.save file (zip or "
                            f"pickle) nor a .npy file (it starts with {head!r})")
    if not trust:
        alt = f", or {hint}" if hint else ""
        raise UntrustedFileError(
            f"{path} is a pickle-based {what}: loading it can run arbitrary code. Pass --trust "
            f"(trust=True) only for files you trust{alt}")


# ------------------------------------------------------------------------------ JSON
def json_default(o: Any) -> Any:
    """The JSON form of what ``json`` cannot encode itself: numpy and torch scalars (their
    value) and arrays/tensors (nested lists), paths, torch devices and dtypes (their text),
    sets and frozensets (sorted lists). Raises TypeError for anything else."""
    np = sys.modules.get("numpy")
    torch = sys.modules.get("torch")
    if np is not None:
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    if torch is not None:
        if isinstance(o, torch.Tensor):
            return o.detach().cpu().tolist()
        if isinstance(o, (torch.device, torch.dtype)):
            return str(o)
    if isinstance(o, os.PathLike):
        return os.fspath(o)
    if isinstance(o, (set, frozenset)):
        return sorted(o, key=str)
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


class JSONEncoder(json.JSONEncoder):
    """``json.dumps(obj, cls=JSONEncoder)``: the standard encoder plus :func:`json_default`."""

    def default(self, o: Any) -> Any:
        return json_default(o)
