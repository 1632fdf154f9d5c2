"""Which staged copies are still in use on a node, and removing the ones that are not.

Every stager keeps a lease for the copy it stages: `<key>.users/<namespace>.<name>`, touched
while it runs. A deployment that moves to another revision (or is deleted) stops touching
its old lease; once every lease of a copy is older than the retention time, any stager on
the node removes that copy (under its lock, so never while it is being staged). The
retention time leaves old serving pods of a rolling update their copy. Copies without
leases (put there by hand) are never touched.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import time
from pathlib import Path
from typing import Callable

from llmops.stage.layout import LOCK_SUFFIX, MARKER_FILE, PARTIAL_SUFFIX

USERS_SUFFIX = ".users"


def lease_path(copy_dir: Path, owner: str) -> Path:
    return copy_dir.with_name(copy_dir.name + USERS_SUFFIX) / re.sub(r"[^A-Za-z0-9._-]", ".", owner)


def renew(copy_dir: Path, owner: str) -> None:
    path = lease_path(copy_dir, owner)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    os.utime(path)


def unused_copies(root: Path, retain_seconds: float, now: float | None = None) -> list[Path]:
    """Copies whose every lease is older than `retain_seconds`."""
    now = time.time() if now is None else now
    unused = []
    for users in sorted(root.glob(f"*{USERS_SUFFIX}")):
        leases = [p for p in users.iterdir() if p.is_file()]
        if all(now - p.stat().st_mtime > retain_seconds for p in leases):
            unused.append(users.with_name(users.name[: -len(USERS_SUFFIX)]))
    return unused


def remove_unused(root: Path, retain_seconds: float, log: Callable[[str], None]) -> int:
    """Delete unused copies nobody is staging; the bytes freed."""
    freed = 0
    for copy_dir in unused_copies(root, retain_seconds):
        lock_file = copy_dir.with_name(copy_dir.name + LOCK_SUFFIX)
        with open(lock_file, "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue   # being staged right now: in use after all
            size = sum(f.stat().st_size for f in copy_dir.rglob("*") if f.is_file()) if copy_dir.exists() else 0
            # The marker goes first: a half-deleted copy never looks complete.
            (copy_dir / MARKER_FILE).unlink(missing_ok=True)
            for path in (copy_dir, copy_dir.with_name(copy_dir.name + PARTIAL_SUFFIX),
                         copy_dir.with_name(copy_dir.name + USERS_SUFFIX)):
                shutil.rmtree(path, ignore_errors=True)
            freed += size
            log(f"removed {copy_dir.name}: unused for over {retain_seconds / 3600:g} h ({size} bytes freed)")
    return freed
