"""Short host paths for unix sockets. A socket's path is limited to 107 bytes (containerd
refuses more than 104 for its ttrpc socket), and a sandbox's state dir (say, a pytest
tmp_path) can make the real path longer. A symlink under /run/llmops, named by a hash of the
real directory, stands in for it; sockets are bound and dialled through the link."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

SHORT_DIR_ROOT = Path("/run/llmops")


def short_dir(real_dir: Path, kind: str) -> Path:
    """The link's path (pure): /run/llmops/<kind>-<10 hex digits>."""
    return SHORT_DIR_ROOT / f"{kind}-{hashlib.sha256(str(real_dir).encode()).hexdigest()[:10]}"


def link_short_dir(real_dir: Path, kind: str) -> Path:
    link = short_dir(real_dir, kind)
    link.parent.mkdir(parents=True, exist_ok=True)
    if not (link.is_symlink() and os.readlink(link) == str(real_dir)):
        link.unlink(missing_ok=True)
        link.symlink_to(real_dir)
    return link


def unlink_short_dir(real_dir: Path, kind: str) -> None:
    short_dir(real_dir, kind).unlink(missing_ok=True)
