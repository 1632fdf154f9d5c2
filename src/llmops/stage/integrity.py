"""Content hashes: SHA-256 for the manifest, git's blob SHA-1 for small non-LFS repo files."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

from llmops.stage.layout import SUMS_FILE

CHUNK = 4 * 1024 * 1024


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def git_blob_sha1(path: Path) -> str:
    """The id git (and the Hugging Face Hub) gives a file's content."""
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class Expected:
    """What the source says a file is. Any field may be unknown (None)."""

    name: str
    size: Optional[int] = None
    sha256: Optional[str] = None       # LFS files
    git_sha1: Optional[str] = None     # small files stored in git itself


def mismatch(path: Path, expected: Expected, against: str = "the source") -> Optional[str]:
    """Why the local file is not the expected one, or None if it is."""
    if not path.is_file():
        return f"{expected.name}: missing"
    size = path.stat().st_size
    if expected.size is not None and size != expected.size:
        return f"{expected.name}: {size} bytes, {against} has {expected.size}"
    if expected.sha256 is not None:
        got = sha256_file(path)
        if got != expected.sha256:
            return f"{expected.name}: sha256 {got[:16]}..., {against} has {expected.sha256[:16]}..."
    elif expected.git_sha1 is not None:
        got = git_blob_sha1(path)
        if got != expected.git_sha1:
            return f"{expected.name}: git blob {got[:12]}..., {against} has {expected.git_sha1[:12]}..."
    return None


def format_sums(hashes: Iterable[tuple[str, str]]) -> str:
    return "".join(f"{digest}  {name}\n" for name, digest in sorted(hashes))


def parse_sums(text: str) -> list[tuple[str, str]]:
    """(name, sha256) pairs from `sha256sum` output; raises ValueError on a malformed line."""
    pairs = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64 or not name:
            raise ValueError(f"{SUMS_FILE} line {number} is not '<sha256>  <file>'")
        pairs.append((name, digest))
    return pairs


def verify_sums(directory: Path) -> list[str]:
    """Problems found re-hashing every file listed in the directory's SHA256SUMS."""
    sums = directory / SUMS_FILE
    if not sums.is_file():
        return [f"{SUMS_FILE} is missing"]
    try:
        pairs = parse_sums(sums.read_text())
    except ValueError as exc:
        return [str(exc)]
    problems = []
    for name, digest in pairs:
        problem = mismatch(directory / name, Expected(name=name, sha256=digest), against=SUMS_FILE)
        if problem:
            problems.append(problem)
    return problems
