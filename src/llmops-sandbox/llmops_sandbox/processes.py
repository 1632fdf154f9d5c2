"""Daemon processes recorded by pid file, and killing whole process groups.

Each daemon is started in its own session (so it outlives `up` and its group can be
signalled as one). The pid file holds "<pid> <start-time>" so a recycled pid is never
mistaken for our process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Mapping, Sequence


def process_start_time(pid: int) -> str | None:
    """Start time in clock ticks from /proc (field 22), or None if gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name may contain spaces; fields after the last ')' are fixed.
    fields = stat[stat.rfind(")") + 2:].split()
    if fields[0] in ("Z", "X"):
        return None
    return fields[19]


def start_daemon(
    argv: Sequence[str],
    pid_file: Path,
    log_file: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> int:
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=dict(env) if env is not None else None,
            cwd=str(cwd) if cwd else None,
        )
    # Popen objects of daemons are dropped on purpose; reap_if_child() collects them.
    started = process_start_time(proc.pid) or "0"
    pid_file.write_text(f"{proc.pid} {started}\n")
    return proc.pid


def read_pid(pid_file: Path) -> int | None:
    """The pid recorded in pid_file if that very process still runs."""
    try:
        pid_text, started = pid_file.read_text().split()[:2]
        pid = int(pid_text)
    except (FileNotFoundError, ValueError):
        return None
    reap_if_child(pid)
    current = process_start_time(pid)
    if current is None or (started != "0" and current != started):
        return None
    return pid


def reap_if_child(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def alive(pid: int) -> bool:
    reap_if_child(pid)
    return process_start_time(pid) is not None


def kill_group(pid: int, sig: int) -> None:
    """Signal the process group led by pid (our daemons and containers lead their own)."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        pass
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def terminate_group(pid: int, grace_seconds: float) -> bool:
    """SIGTERM the group, wait up to grace_seconds, then SIGKILL. True if it was running."""
    if not alive(pid):
        kill_group(pid, signal.SIGKILL)  # stragglers of a dead leader
        return False
    kill_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline and alive(pid):
        time.sleep(0.05)
    kill_group(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and alive(pid):
        time.sleep(0.05)
    return True


def stop_daemon(pid_file: Path, grace_seconds: float = 10.0) -> bool:
    """Stop the daemon recorded in pid_file; True if one was running."""
    pid = read_pid(pid_file)
    was_running = False
    if pid is not None:
        was_running = terminate_group(pid, grace_seconds)
    pid_file.unlink(missing_ok=True)
    return was_running
