"""Target users: explicit ids, a file of ids, or a seeded random sample."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import GisUsageError
from ..interfaces import Recommender


def read_user_file(path: str | Path) -> list[str]:
    """One user id per line (blank lines and lines starting with # ignored); a CSV's first
    column is used, and a header line named user/user_id is skipped."""
    p = Path(path)
    if not p.is_file():
        raise GisUsageError(f"users file {p} does not exist")
    ids = []
    for i, line in enumerate(p.read_text(encoding="utf-8", errors="replace").splitlines()):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        first = line.split(",")[0].strip()
        if i == 0 and first.lower() in {"user", "user_id", "userid", "id"}:
            continue
        ids.append(first)
    return ids


def resolve_targets(recommender: Recommender, *, users=None, users_file=None,
                    n_users: int | None = None, seed: int = 0,
                    candidates: torch.Tensor | None = None) -> torch.Tensor:
    """Row indices (long, unique, in given order) of the target users.

    Exactly one of ``users`` (ids), ``users_file`` or ``n_users`` (random sample without
    replacement, seeded; from ``candidates`` rows when given) must be set.
    """
    given = sum(x is not None and x != () and x != [] for x in (users, users_file, n_users))
    if given == 0:
        raise GisUsageError("no target users: pass --users ID[,ID...], --users-file FILE or "
                            "--n-users N")
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
    ids = [str(u).strip() for u in ids if str(u).strip()]
    if not ids:
        raise GisUsageError("the target user set is empty")
    idx = recommender.user_index(ids)
    # keep first occurrence order, drop duplicates
    seen: set[int] = set()
    keep = [i for i in idx.tolist() if not (i in seen or seen.add(i))]
    return torch.tensor(keep, dtype=torch.long)
