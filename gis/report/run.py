"""Reading a `gis shift` output folder for the report: its record and its images, checked.

Every problem is a GisUsageError with a one-line message that says how to get a usable folder.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import GisUsageError
from ..record import FORMAT, RecordError, ShiftRecord


@dataclass
class Run:
    """A checked `gis shift` folder."""

    dir: Path
    record: ShiftRecord
    mtime: float
    """When result.json was written (seconds since the epoch): the page's run date."""
    images: dict[str, tuple[bytes, tuple[int, int]]]
    """File name -> (PNG bytes, (width, height)) for the item (when there is one), the base
    and every variant."""


def _hint(run_dir: Path) -> str:
    return f"run `gis shift ... --out {run_dir}` first"


def load_run(run_dir: str | os.PathLike) -> Run:
    """Read and check a `gis shift` output folder: result.json plus its images.

    Raises GisUsageError with a one-line message when the folder is not a usable shift run."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise GisUsageError(f"RUN_DIR {run_dir} does not exist: {_hint(run_dir)}, or pass the "
                            "folder that `gis shift --out` wrote")
    if not run_dir.is_dir():
        raise GisUsageError(f"RUN_DIR {run_dir} is not a folder: pass the folder that "
                            "`gis shift --out` wrote")
    path = run_dir / "result.json"
    if not path.is_file() and (run_dir / "batch.json").is_file():
        raise GisUsageError(f"RUN_DIR {run_dir} is a `gis batch` folder: its pages are "
                            f"{run_dir / 'index.html'} and {run_dir / 'reports'}/TASK.html; pass "
                            f"one task's folder, {run_dir / 'tasks'}/TASK")
    if not path.is_file():
        raise GisUsageError(f"RUN_DIR {run_dir} is not a gis shift output folder (no "
                            f"result.json): pass the folder that `gis shift --out` wrote")
    rerun = f"rerun `gis shift ... --out {run_dir} --overwrite`"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        msg = " ".join(str(exc).split())
        raise GisUsageError(f"{path} is not readable JSON ({msg}): {rerun}") from None
    command = doc.get("command") if isinstance(doc, dict) else None
    if command not in (None, "shift"):
        raise GisUsageError(f"RUN_DIR {run_dir} holds the output of `gis {command}`, not of "
                            f"`gis shift`: gis report needs a `gis shift ... --out RUN_DIR` folder")
    fmt = doc.get("format") if isinstance(doc, dict) else None
    if fmt is not None and not str(fmt).startswith("gis-shift/"):
        raise GisUsageError(f"{path} is not a gis shift record (format {fmt!r}): gis report "
                            "needs a `gis shift ... --out RUN_DIR` folder")
    if fmt is not None and fmt != FORMAT:
        raise GisUsageError(f"{path} was written by another gis version (format {fmt!r}; this "
                            f"gis reads {FORMAT!r}): report it with the gis that wrote it")
    try:
        record = ShiftRecord.from_json(doc)
    except RecordError as exc:
        raise GisUsageError(f"result.json in {run_dir} is incomplete or damaged ({exc}): "
                            f"{rerun}") from None
    names = ["base.png"] + [f"variant_{i:02d}.png" for i in range(len(record.scores.variants))]
    if record.has_item:
        names.insert(0, "item.png")
    images = {name: _read_png(run_dir / name, run_dir) for name in names}
    return Run(dir=run_dir, record=record, mtime=path.stat().st_mtime, images=images)


def _read_png(path: Path, run_dir: Path) -> tuple[bytes, tuple[int, int]]:
    """The image's PNG bytes (other formats converted; the page embeds PNGs only) and size."""
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise GisUsageError(f"{path.name} is missing from RUN_DIR {run_dir}: the folder is "
                            f"incomplete; rerun `gis shift ... --out {run_dir} --overwrite`")
    try:
        data = path.read_bytes()
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            size, fmt = im.size, im.format
            if fmt != "PNG":
                buf = io.BytesIO()
                im.convert("RGBA" if "A" in im.getbands() else "RGB").save(buf, format="PNG")
                data = buf.getvalue()
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        msg = " ".join(str(exc).split())
        raise GisUsageError(f"{path.name} in RUN_DIR {run_dir} is not a readable image ({msg}): "
                            f"rerun `gis shift ... --out {run_dir} --overwrite`") from None
    return data, size
