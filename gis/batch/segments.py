"""Named customer segments: groups of users a batch task can target by name.

Two sources, the file winning on a name both define:

* a segments file (``--segments FILE``): a CSV/TSV with the columns ``user_id`` (or ``user``)
  and ``segment``, one row per (user, segment) pair; a user may be in several segments;
* the segments every dataset with categories has, from its training interactions (observed
  behaviour, never a simulated user's hidden tastes): ``category:NAME`` holds the users whose
  training interactions fall most often in category NAME (ties go to the category listed
  first), and ``all`` every user.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.inputs import normalize_id, read_table
from ..errors import GisUsageError


def dataset_segments(dataset) -> dict[str, list[str]]:
    """``{"all": every user id, "category:NAME": ids of the users whose most frequent training
    category is NAME}`` of a ``gis.data.Dataset`` (users without interactions are only in
    ``all``). Empty category segments are left out."""
    out = {"all": list(dataset.user_ids)}
    names = list(dataset.category_names)
    if not names or len(dataset.train) == 0:
        return out
    counts = np.zeros((dataset.num_users, len(names)), dtype=np.int64)
    users, items = dataset.train[:, 0], dataset.train[:, 1]
    np.add.at(counts, (users, np.asarray(dataset.categories)[items]), 1)
    top = counts.argmax(1)  # the first maximum: ties go to the category listed first
    has = counts.sum(1) > 0
    for c, name in enumerate(names):
        rows = np.flatnonzero(has & (top == c))
        if len(rows):
            out[f"category:{name}"] = [dataset.user_ids[r] for r in rows]
    return out


def read_segments(path: str | Path) -> dict[str, list[str]]:
    """The segments of a segments file (module docstring), in file order.

    Raises GisUsageError when a column is missing or a row has an empty user or segment."""
    rows = read_table(path, (), what="segments file")
    out: dict[str, list[str]] = {}
    for line, row in rows:
        user = row.get("user_id", row.get("user"))
        if "segment" not in row or user is None:
            raise GisUsageError(f"{path}: a segments file needs the columns user_id and "
                                f"segment (found: {', '.join(row)})")
        if not user or not row["segment"]:
            raise GisUsageError(f"{path}, line {line}: empty user_id or segment")
        out.setdefault(normalize_id(row["segment"]), []).append(normalize_id(user))
    return out


def resolve_segment(name: str, segments: dict[str, list[str]]) -> list[str]:
    """The user ids of segment ``name``; GisUsageError naming a few known segments when
    unknown."""
    if name in segments:
        return segments[name]
    known = sorted(segments)
    listed = ", ".join(known[:12]) + (f" and {len(known) - 12} more" if len(known) > 12 else "")
    raise GisUsageError(f"unknown segment {name!r}; known segments: {listed} (define your own "
                        "with --segments FILE, a CSV of user_id,segment)")
