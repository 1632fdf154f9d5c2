"""One staging run (the DaemonSet pod) and the serving pods' wait-and-verify step.

Staging is resumable and safe to run twice at once on a node (a file lock serialises
stagers sharing the cache): files go to `<key>.partial/`, each is checked against the
source's size and hash, SHA256SUMS and the marker are written, and only then the directory
is renamed to `<key>/`. A serving pod therefore never sees a half-written model.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

from llmops.stage.fetchers import Fetcher, FetchError, wanted
from llmops.stage.integrity import Expected, format_sums, mismatch, sha256_file, verify_sums
from llmops.stage.leases import remove_unused, renew
from llmops.stage.layout import LOCK_SUFFIX, MARKER_FILE, PARTIAL_SUFFIX, SUMS_FILE, cache_key
from llmops.timestamps import utc_now

Log = Callable[[str], None]
PROGRESS_SECONDS = 30.0   # a multi-GiB shard takes minutes: say how far it got meanwhile


class StageError(Exception):
    """Staging failed in a way a retry (pod restart) may fix; the message says what."""


@dataclass(frozen=True)
class StageRequest:
    repo: str
    revision: str
    root: Path
    ignore_patterns: Sequence[str] = ()
    owner: Optional[str] = None                 # "namespace/name": keeps this copy's lease
    retain_unused_seconds: Optional[float] = None  # remove other copies unused this long; None = never

    @property
    def directory(self) -> Path:
        return self.root / cache_key(self.repo, self.revision)


def read_marker(directory: Path) -> Optional[dict]:
    try:
        return json.loads((directory / MARKER_FILE).read_text())
    except (OSError, ValueError):
        return None


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} GiB"


def stage(request: StageRequest, fetcher: Fetcher, log: Log = print) -> dict:
    """Make `request.directory` a complete, checked copy; returns its marker."""
    request.root.mkdir(parents=True, exist_ok=True)
    final = request.directory
    if request.owner:
        renew(final, request.owner)   # before anything else: a copy being staged is in use
    with open(final.with_name(final.name + LOCK_SUFFIX), "w") as lock:
        if not _try_lock(lock):
            log(f"another stager on this node is staging {final.name}; waiting for it")
            fcntl.flock(lock, fcntl.LOCK_EX)
        marker = read_marker(final)
        if marker and marker.get("source") == request.repo and marker.get("revision") == request.revision:
            log(f"{request.repo}@{request.revision} already staged in {final} "
                f"({marker.get('files')} files, {_human(marker.get('bytes', 0))})")
            return marker
        return _stage_locked(request, fetcher, log)


def _try_lock(lock) -> bool:
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _stage_locked(request: StageRequest, fetcher: Fetcher, log: Log) -> dict:
    started = time.monotonic()
    log(f"listing {request.repo}@{request.revision}")
    try:
        snapshot = fetcher.snapshot(request.repo, request.revision)
    except FetchError as exc:
        raise StageError(str(exc)) from None
    files = wanted(snapshot.files, request.ignore_patterns)
    if not files:
        raise StageError(f"{request.repo}@{request.revision}: no files left after ignorePatterns "
                         f"{list(request.ignore_patterns)}; fix spec.model.prestage.ignorePatterns")
    total = sum(f.size or 0 for f in files)
    skipped = len(snapshot.files) - len(files)
    log(f"commit {snapshot.commit}: {len(files)} files, {_human(total)}"
        + (f" ({skipped} skipped by ignorePatterns)" if skipped else ""))
    partial = request.directory.with_name(request.directory.name + PARTIAL_SUFFIX)
    _ensure_space(request, files, partial, log)
    if request.directory.exists() and not partial.exists():
        # A copy without a valid marker (damaged, or another revision): reuse every file
        # that still matches the source, fetch the rest.
        os.replace(request.directory, partial)
        (partial / MARKER_FILE).unlink(missing_ok=True)
    partial.mkdir(parents=True, exist_ok=True)
    with _progress(partial, total, log):
        hashes = _fetch_all(request, fetcher, snapshot.commit, files, partial, total, log)
    (partial / SUMS_FILE).write_text(format_sums(hashes))
    marker = {
        "source": request.repo, "revision": request.revision, "commit": snapshot.commit,
        "files": len(files), "bytes": total, "stagedAt": utc_now(),
        "seconds": round(time.monotonic() - started, 3),
    }
    (partial / MARKER_FILE).write_text(json.dumps(marker, indent=2) + "\n")
    if request.directory.exists():
        shutil.rmtree(request.directory)   # appeared while we staged into partial; ours is checked
    os.replace(partial, request.directory)
    log(f"staged {request.repo}@{request.revision} in {request.directory} ({marker['seconds']} s)")
    return marker


def _bytes_under(directory: Path) -> int:
    total = 0
    for path in directory.rglob("*"):
        with contextlib.suppress(OSError):   # files come and go while we count
            if path.is_file():
                total += path.stat().st_size
    return total


@contextlib.contextmanager
def _progress(partial: Path, total: int, log: Log):
    """Log bytes on disk (partial downloads included) every PROGRESS_SECONDS while staging."""
    stop, every = threading.Event(), PROGRESS_SECONDS

    def tick() -> None:
        last, last_at = _bytes_under(partial), time.monotonic()
        while not stop.wait(every):
            now_bytes, now_at = _bytes_under(partial), time.monotonic()
            rate = (now_bytes - last) / max(now_at - last_at, 1e-6)
            log(f"progress: {_human(now_bytes)} of {_human(total)} on disk ({_human(max(rate, 0))}/s)")
            last, last_at = now_bytes, now_at

    ticker = threading.Thread(target=tick, name="stage-progress", daemon=True)
    ticker.start()
    try:
        yield
    finally:
        stop.set()
        ticker.join()


def _fetch_all(request: StageRequest, fetcher: Fetcher, commit: str, files: Sequence[Expected], partial: Path,
               total: int, log: Log) -> list[tuple[str, str]]:
    """Download what is missing or wrong, check each file against the source; (name, sha256) pairs."""
    done_bytes = 0
    hashes = []
    for index, expected in enumerate(files, 1):
        path = partial / expected.name
        if mismatch(path, expected) is None:
            state = "present"   # resumed: a previous run already fetched and checked it
        else:
            # A fetcher may trust a file that is already there (huggingface_hub does, when its
            # local metadata names the same commit): a damaged copy must go first.
            path.unlink(missing_ok=True)
            t0 = time.monotonic()
            try:
                fetcher.download(request.repo, commit, expected.name, partial)
            except FetchError as exc:
                raise StageError(str(exc)) from None
            problem = mismatch(path, expected)
            if problem:
                path.unlink(missing_ok=True)   # never keep bytes that do not match the source
                raise StageError(f"integrity check failed: {problem}; the file was removed and is "
                                 "downloaded again on the next attempt")
            rate = (expected.size or 0) / max(time.monotonic() - t0, 1e-6)
            state = f"downloaded, {_human(rate)}/s"
        done_bytes += expected.size or 0
        hashes.append((expected.name, sha256_file(path)))
        log(f"[{index}/{len(files)}] {expected.name} {_human(expected.size or 0)} {state} "
            f"({100 * done_bytes / max(total, 1):.0f}% of {_human(total)})")
    return hashes


# Left free on the node's disk after a download (logs, images, other pods need room too).
RESERVE_BYTES = 1024 ** 3


def _has_size(path: Path, size: Optional[int]) -> bool:
    return path.is_file() and path.stat().st_size == size


def _ensure_space(request: StageRequest, files: Sequence[Expected], partial: Path, log: Log) -> None:
    """Refuse a download the node's disk cannot hold, after removing copies nobody uses."""
    needed = sum(f.size or 0 for f in files
                 if not (_has_size(partial / f.name, f.size) or _has_size(request.directory / f.name, f.size)))
    free = shutil.disk_usage(request.root).free
    if needed + RESERVE_BYTES <= free:
        return
    if request.retain_unused_seconds is not None:
        remove_unused(request.root, request.retain_unused_seconds, log)
        free = shutil.disk_usage(request.root).free
        if needed + RESERVE_BYTES <= free:
            return
    raise StageError(
        f"not enough disk for {request.repo}@{request.revision} in {request.root}: {_human(needed)} to download "
        f"+ {_human(RESERVE_BYTES)} reserve, {_human(free)} free; free space on the node, lower "
        "spec.model.prestage.retainUnusedHours, add ignorePatterns, or point prestage.hostPath at a larger disk")


def still_staged(request: StageRequest) -> bool:
    """Cheap check the holder repeats: marker present and every listed file at its size."""
    marker = read_marker(request.directory)
    if not marker or marker.get("source") != request.repo:
        return False
    sums = request.directory / SUMS_FILE
    try:
        names = [line.partition("  ")[2] for line in sums.read_text().splitlines() if line.strip()]
    except OSError:
        return False
    return len(names) == marker.get("files") and all((request.directory / n).is_file() for n in names)


def wait_for_stage(directory: Path, timeout: float, verify: bool, log: Log = print,
                   poll: float = 2.0, node: str = "") -> None:
    """The serving pod's init step: wait for the marker, then (optionally) re-hash every file."""
    where = f" on node {node}" if node else ""
    deadline = time.monotonic() + timeout
    announced = False
    while read_marker(directory) is None:
        if time.monotonic() >= deadline:
            raise StageError(
                f"{directory} was not staged{where} within {timeout:g} s; check this deployment's "
                "model-stage DaemonSet pod on that node (kubectl logs) or raise spec.engine.startupTimeoutSeconds")
        if not announced:
            log(f"waiting for the model-stage pod{where} to finish staging {directory}")
            announced = True
        time.sleep(poll)
    marker = read_marker(directory) or {}
    if not verify:
        log(f"{directory} is staged (commit {marker.get('commit')}); not re-verified (verifyOnStart: false)")
        return
    t0 = time.monotonic()
    problems = verify_sums(directory)
    if problems:
        # Dropping the marker makes the node's model-stage pod fetch the damaged files again.
        (directory / MARKER_FILE).unlink(missing_ok=True)
        raise StageError(
            f"staged copy in {directory}{where} is damaged: " + "; ".join(problems[:3])
            + (f" (and {len(problems) - 3} more)" if len(problems) > 3 else "")
            + "; its marker was removed so the model-stage pod re-stages it, and this pod retries")
    log(f"verified {marker.get('files')} files, {_human(marker.get('bytes', 0))} in "
        f"{time.monotonic() - t0:.1f} s (commit {marker.get('commit')})")
