"""The tasks of a batch: a manifest file (CSV or JSONL) or the common case (``--items``).

A task is one `gis shift` run: an item (a dataset item id or an image file) and a target (user
ids, a users file, a named segment, or N random users), with optional per-task settings that
override the batch's own (the options of `gis shift` of the same names). Columns / keys
(docs/BATCH.md):

=================  ===========================================================================
``id``             the task's folder name under ``OUT/tasks/`` (default: ``NNNN-ITEM``)
``item``           a dataset item id, or an image file (a path that exists, relative to the
                   manifest's folder); ``item_id`` and ``image`` say which explicitly
``users``          user ids separated by ``;`` or ``,`` or white space (JSONL: also a list)
``users_file``     a file of user ids (relative to the manifest's folder)
``segment``        a named segment (``gis.batch.segments``)
``n_users``        a seeded random sample of N users (the seed is the task's ``seed``)
settings           ``recipe n eps steps invert_steps lr lr_schedule aggregation temperature
                   top_k seed precision category min_silhouette_iou min_distance``
=================  ===========================================================================

Every problem is a ``GisUsageError`` naming the file and line; nothing runs before the whole
manifest reads.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..data.inputs import normalize_id, read_table, read_text
from ..errors import GisUsageError

#: per-task settings: name -> type (the `gis shift` options of the same names)
SETTINGS: dict[str, type] = {
    "recipe": str, "n": int, "eps": float, "steps": int, "invert_steps": int, "lr": float,
    "lr_schedule": str, "aggregation": str, "temperature": float, "top_k": int, "seed": int,
    "precision": str, "category": str, "min_silhouette_iou": float, "min_distance": float,
}
TARGETS = ("users", "users_file", "segment", "n_users")
ITEMS = ("item", "item_id", "image")
COLUMNS = ("id", *ITEMS, *TARGETS, *SETTINGS)
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
#: the longest task id: its folder's temporary name adds ~60 characters, and file names end at
#: 255 bytes on the common file systems
MAX_ID = 120


@dataclass(frozen=True)
class BatchTask:
    """One `gis shift` run of a batch. Exactly one of ``item_id``/``image`` and at most one of
    the targets is set (none: the recommender's every user, as `gis shift`)."""

    id: str
    line: int  # where it was defined: the manifest's line (1-based); 0 for --items
    item_id: str | None = None
    image: str | None = None  # absolute path (what is read)
    image_as_given: str | None = None  # as the manifest wrote it (what result.json records)
    users: tuple[str, ...] | None = None
    users_file: str | None = None  # absolute path
    segment: str | None = None
    n_users: int | None = None
    settings: dict = field(default_factory=dict)
    manifest: str | None = None  # the manifest file it came from, as given (None for --items)

    @property
    def item(self) -> str:
        """The item as the summary shows it: its id, or the image file's name."""
        return self.item_id if self.item_id is not None else Path(self.image).name

    def target_text(self, seed: int = 0) -> str:
        """The target in words: ``segment NAME``, ``10 random users (seed S)``, ``3 users``...
        ``seed``: the batch's seed, which a task's own ``seed`` overrides."""
        if self.segment is not None:
            return f"segment {self.segment}"
        if self.n_users is not None:
            return f"{self.n_users} random users (seed {self.settings.get('seed', seed)})"
        if self.users is not None:
            return f"{len(self.users)} user{'s' if len(self.users) != 1 else ''}"
        if self.users_file is not None:
            return f"users file {Path(self.users_file).name}"
        return "all users"

    def as_json(self) -> dict:
        d = asdict(self)
        d.pop("line")
        d.pop("manifest")  # where a task was defined is not what it is
        if d["users"] is not None:
            d["users"] = list(d["users"])
        return {k: v for k, v in d.items() if v not in (None, {})}


def task_id(k: int, item: str) -> str:
    """The default folder name of the k-th task (1-based): ``0007-ITEM`` with the item's
    characters outside ``A-Za-z0-9._-`` replaced by ``_``."""
    return f"{k:04d}-{_UNSAFE.sub('_', item)[:60].strip('._') or 'item'}"


def tasks_for_items(item_ids: list[str], *, users=None, users_file=None, segment=None,
                    n_users=None) -> list[BatchTask]:
    """The common case: one task per catalogue item, all with the same target."""
    users = tuple(users) if users is not None else None
    return [BatchTask(id=task_id(k, i), line=0, item_id=i, users=users,
                      users_file=users_file, segment=segment, n_users=n_users)
            for k, i in enumerate(item_ids, 1)]


def read_manifest(path: str | Path) -> list[BatchTask]:
    """The tasks of a manifest: CSV/TSV with a header line (``gis.data.inputs.read_table``:
    encodings, separators and header spellings as everywhere in gis), or JSON Lines (one
    object per line; ``.jsonl``/``.ndjson``, or a first non-blank character ``{``).

    Raises GisUsageError for an unknown column, a value of the wrong type, an item or target
    given twice, a missing item, a duplicate task id or an empty manifest."""
    path = Path(path)
    text = read_text(path, what="manifest")
    first = text.lstrip()[:1]
    if path.suffix.lower() in (".jsonl", ".ndjson") or first == "{":
        rows = _jsonl_rows(path, text)
    else:
        rows = [(line, {k: v for k, v in row.items() if v != ""})
                for line, row in read_table(path, (), what="manifest")]
        if rows:
            unknown = sorted(set().union(*(r.keys() for _, r in rows)) - set(COLUMNS))
            if unknown:
                raise GisUsageError(f"{path}: unknown column(s) {', '.join(unknown)}; a "
                                    f"manifest's columns are {', '.join(COLUMNS)} (docs/BATCH.md)")
    if not rows:
        raise GisUsageError(f"manifest {path} holds no task: add one line per (item, target)")
    tasks = [_task(path, line, k, row) for k, (line, row) in enumerate(rows, 1)]
    seen: dict[str, int] = {}
    for t in tasks:
        if t.id in seen:
            raise GisUsageError(f"{path}, line {t.line}: task id {t.id!r} is also on line "
                                f"{seen[t.id]}: each task needs its own id")
        seen[t.id] = t.line
    return tasks


def _jsonl_rows(path: Path, text: str) -> list[tuple[int, dict]]:
    rows = []
    for line, raw in enumerate(text.splitlines(), 1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        try:
            row = json.loads(raw)
        except ValueError as exc:
            raise GisUsageError(f"{path}, line {line}: not a JSON object ({exc.msg})") from None
        if not isinstance(row, dict):
            raise GisUsageError(f"{path}, line {line}: each line must be a JSON object such "
                                'as {"item": "123", "n_users": 10}')
        unknown = sorted(set(row) - set(COLUMNS))
        if unknown:
            raise GisUsageError(f"{path}, line {line}: unknown key(s) {', '.join(unknown)}; a "
                                f"task's keys are {', '.join(COLUMNS)} (docs/BATCH.md)")
        rows.append((line, {k: v for k, v in row.items() if v is not None and v != ""}))
    return rows


def _task(path: Path, line: int, k: int, row: dict) -> BatchTask:
    where = f"{path}, line {line}"
    base = path.parent

    def fail(msg: str):
        raise GisUsageError(f"{where}: {msg}")

    items = [c for c in ITEMS if c in row]
    if len(items) != 1:
        fail("each task needs exactly one of item, item_id, image" if not items else
             f"give only one of {', '.join(items)}")
    item_id = image = image_as_given = None
    if "image" in row:
        image = _existing(base, row["image"], where, "image")
        image_as_given = str(row["image"])
    elif "item_id" in row:
        item_id = normalize_id(row["item_id"])
    else:
        value = str(row["item"])
        candidate = base / value
        if candidate.is_file():
            image, image_as_given = str(candidate.resolve()), value
        elif Path(value).suffix.lower() in _IMAGE_SUFFIXES or "/" in value or "\\" in value:
            fail(f"image {value!r} not found (relative paths are read from {base.resolve()}); "
                 "a dataset "
                 "item id goes in an item_id column")
        else:
            item_id = normalize_id(value)
    targets = [c for c in TARGETS if c in row]
    if len(targets) > 1:
        fail(f"give only one target of {', '.join(targets)}")
    users = users_file = segment = n_users = None
    if "users" in row:
        raw = row["users"]
        ids = [str(u) for u in raw] if isinstance(raw, list) else re.split(r"[;,\s]+", str(raw))
        users = tuple(u for u in (normalize_id(x) for x in ids) if u)
        if not users:
            fail("users is empty")
    elif "users_file" in row:
        users_file = _existing(base, row["users_file"], where, "users file")
    elif "segment" in row:
        segment = normalize_id(row["segment"])
    elif "n_users" in row:
        n_users = _typed(row["n_users"], int, "n_users", fail)
        if n_users <= 0:
            fail(f"n_users must be >= 1 (got {n_users})")
    settings = {name: _typed(row[name], kind, name, fail)
                for name, kind in SETTINGS.items() if name in row}
    tid = str(row["id"]) if "id" in row else task_id(k, item_id or Path(image).stem)
    if not tid or _UNSAFE.search(tid):
        fail(f"task id {tid!r} must be a folder name of letters, digits, '.', '_' or '-'")
    if tid.startswith("."):
        fail(f"task id {tid!r} must not start with '.' (gis hides its partial folders so)")
    if len(tid) > MAX_ID:
        fail(f"task id {tid[:20]!r}... is {len(tid)} characters long: at most {MAX_ID}")
    return BatchTask(id=tid, line=line, item_id=item_id, image=image,
                     image_as_given=image_as_given, users=users,
                     users_file=users_file, segment=segment, n_users=n_users,
                     settings=settings, manifest=str(path))


def _existing(base: Path, value, where: str, what: str) -> str:
    p = Path(str(value)).expanduser()
    p = p if p.is_absolute() else base / p
    if not p.is_file():
        raise GisUsageError(f"{where}: {what} {value!r} not found (relative paths are read "
                            f"from {base.resolve()})")
    return str(p.resolve())


def _typed(value, kind: type, name: str, fail):
    if kind is str:
        return str(value)
    try:
        if kind is int:
            number = float(value) if isinstance(value, str) else value
            if isinstance(number, float) and not number.is_integer():
                raise ValueError
            out = int(number)
        else:
            out = float(value)
        if isinstance(value, bool):
            raise ValueError
    except (TypeError, ValueError):
        fail(f"{name} must be {'a whole number' if kind is int else 'a number'} (got "
             f"{value!r})")
    return out
