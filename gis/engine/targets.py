"""Target users: explicit ids, a file of ids, a seeded random sample, or, when none is chosen,
the default target: every user of the recommender (``DEFAULT_TARGET``)."""

from __future__ import annotations

from pathlib import Path

import torch

from ..data.inputs import normalize_id, read_id_list
from ..errors import GisUsageError
from ..interfaces import Recommender

#: the targets of a run that chose none (no ids, file or sample): the recommender's whole
#: customer base. With the mean aggregation (the paper's) this costs what one user costs:
#: mean_u theta_u . phi = (mean_u theta_u) . phi, so the loop scores one mean user vector.
DEFAULT_TARGET = "all users of the recommender"


def read_user_file(path: str | Path) -> list[str]:
    """User ids, one per line, or the first column of a CSV/TSV; blank lines and lines
    starting with # are skipped, and so is a header line named user/user_id/userid/id.
    Read as ``gis.data.inputs.read_id_list`` reads (byte-order marks, CRLF, NFC)."""
    return read_id_list(path, header_names=("user", "user_id", "userid", "id"),
                        what="users file")


def resolve_targets(recommender: Recommender, *, users=None, users_file=None,
                    n_users: int | None = None, seed: int = 0,
                    candidates: torch.Tensor | None = None) -> torch.Tensor:
    """Row indices (long, unique, in given order) of the target users.

    At most one of ``users`` (ids), ``users_file`` or ``n_users`` (random sample without
    replacement, seeded; from ``candidates`` rows when given) may be set; with none, the
    default target ``DEFAULT_TARGET``: every user of the recommender, rows
    0..num_users - 1. Raises GisUsageError when more than one is set.
    """
    given = _given(users, users_file, n_users)
    if given == 0:
        return torch.arange(recommender.num_users)
    if given > 1:
        raise GisUsageError("pass only one of --users, --users-file, --n-users")
    if n_users is not None:
        pool = candidates if candidates is not None else torch.arange(recommender.num_users)
        if n_users <= 0:
            raise GisUsageError(f"--n-users must be >= 1 (got {n_users})")
        if n_users > len(pool):
            raise GisUsageError(f"--n-users {n_users} exceeds the {len(pool)} users available")
        g = torch.Generator().manual_seed(seed)
        return pool[torch.randperm(len(pool), generator=g)[:n_users]].sort().values
    ids = read_user_file(users_file) if users_file is not None else list(users)
    ids = [normalize_id(u) for u in ids if normalize_id(u)]
    if not ids:
        raise GisUsageError("the target user set is empty: name users with --users "
                            "ID,ID,... or --users-file, or pick some with --n-users N")
    idx = recommender.user_index(ids)  # matched as gis.data.inputs.IdIndex matches
    # keep first occurrence order, drop duplicates
    seen: set[int] = set()
    keep = [i for i in idx.tolist() if not (i in seen or seen.add(i))]
    return torch.tensor(keep, dtype=torch.long)


def default_target(*, users=None, users_file=None, n_users: int | None = None) -> str | None:
    """``DEFAULT_TARGET`` when none of ``users``, ``users_file``, ``n_users`` is given (the
    targets ``resolve_targets`` then returns), else None."""
    return None if _given(users, users_file, n_users) else DEFAULT_TARGET


def _given(*choices) -> int:
    """How many of the target choices are set (None and empty lists count as unset)."""
    return sum(x is not None and x != () and x != [] for x in choices)
