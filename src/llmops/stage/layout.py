"""Where a staged model lives on a node, and the files that mark it complete (pure)."""

from __future__ import annotations

import posixpath
import re

DEFAULT_REVISION = "main"
SUMS_FILE = "SHA256SUMS"               # `sha256sum -c` format, one line per weight file
MARKER_FILE = ".llmops-staged.json"    # written last: its presence means complete and checked
PARTIAL_SUFFIX = ".partial"            # downloads in progress (resumable)
LOCK_SUFFIX = ".lock"


def cache_key(repo: str, revision: str | None) -> str:
    """Directory name for one repo at one revision: readable, flat and filesystem-safe.

    The repo name stays visible (the simulator reads the model size from it, people read it
    in `ls`); '/' becomes '--' as in the Hugging Face cache."""
    raw = f"{repo.replace('/', '--')}--{(revision or DEFAULT_REVISION).replace('/', '--')}"
    return re.sub(r"[^A-Za-z0-9._-]", "-", raw)


def model_dir(root: str, repo: str, revision: str | None) -> str:
    return posixpath.join(root, cache_key(repo, revision))


def marker_path(directory: str) -> str:
    return posixpath.join(directory, MARKER_FILE)
