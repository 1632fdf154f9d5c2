"""PID 1 of a real sandbox node (in spirit): runs inside the node's network namespace and a
fresh mount namespace, mounts the node's private directories, then supervises containerd,
the kubelet and kube-proxy, restarting one that dies (as systemd does on a kind node).

It is a child subreaper, so containerd's shims and every container process stay its
descendants; on SIGTERM it stops the components and kills what is left. Its mount
namespace (the kubelet's bind mounts, containerd's overlays, pod netns mounts) dies with
the last of those processes. Started by realnodes.py as
  nsenter --net=/run/netns/NS unshare --mount --propagation private \
      python -m llmops_sandbox.nodeinit --spec NODE_DIR/node.json
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from . import cgroups, processes

PR_SET_CHILD_SUBREAPER = 36
RESTART_BACKOFF = 2.0


def log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} nodeinit: {msg}", flush=True)


def become_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def mount_private_dirs(rootfs: Path, dirs: list[str]) -> None:
    for d in dirs:
        src = rootfs / d.lstrip("/")
        src.mkdir(parents=True, exist_ok=True)
        Path(d).mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "--bind", str(src), d], check=True)


class Component:
    def __init__(self, name: str, argv: list[str], log_file: Path):
        self.name, self.argv, self.log_file = name, argv, log_file
        self.proc: subprocess.Popen | None = None
        self.restarts = 0

    def start(self) -> None:
        with open(self.log_file, "ab") as out:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        log(f"started {self.name} (pid {self.proc.pid})")

    def exited(self) -> int | None:
        return None if self.proc is None else self.proc.poll()


def descendants(root_pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat[stat.rfind(")") + 2:].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root_pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def wait_socket(path: Path, comp: Component, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if comp.exited() is not None:
            raise SystemExit(f"{comp.name} exited with {comp.exited()} before creating {path}")
        if time.monotonic() > deadline:
            raise SystemExit(f"{comp.name} did not create {path} within {timeout:g}s")
        time.sleep(0.05)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="llmops-sandbox-nodeinit")
    parser.add_argument("--spec", required=True, help="node.json written by realnodes.py")
    args = parser.parse_args(argv)
    spec = json.loads(Path(args.spec).read_text())
    cgroups.join(spec["cgroup"], os.getpid())
    become_subreaper()
    # Forwarding inside the node's namespace only: the node routes its pods' range.
    Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")
    mount_private_dirs(Path(spec["rootfs"]), spec["private_dirs"])
    for source, target in spec.get("bind_files", []):
        subprocess.run(["mount", "--bind", source, target], check=True)
    logs = Path(spec["log_dir"])
    comps = [Component(name, cmd, logs / f"{spec['name']}.{name}.log") for name, cmd in spec["components"]]
    stopping = False

    def on_term(signum, _frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    comps[0].start()   # containerd first: the kubelet gives up without its socket
    wait_socket(Path(spec["containerd_sock"]), comps[0], 30)
    for comp in comps[1:]:
        comp.start()
    next_start: dict[str, float] = {}
    while not stopping:
        try:    # reap orphans (exited shims and containers) re-parented to us
            while True:
                pid, _ = os.waitpid(-1, os.WNOHANG)
                if pid == 0:
                    break
                for comp in comps:
                    if comp.proc is not None and comp.proc.pid == pid:
                        comp.proc.returncode = _
        except ChildProcessError:
            pass
        for comp in comps:
            code = comp.proc.returncode if comp.proc else None
            if code is not None:
                now = time.monotonic()
                if comp.name not in next_start:
                    log(f"{comp.name} exited with {code}; restarting in {RESTART_BACKOFF:g}s")
                    next_start[comp.name] = now + RESTART_BACKOFF
                elif now >= next_start.pop(comp.name):
                    comp.restarts += 1
                    comp.start()
        time.sleep(0.2)
    log("stopping: kube-proxy, kubelet, then containers and containerd")
    for comp in reversed(comps):
        if comp.proc and comp.proc.poll() is None:
            comp.proc.terminate()
            try:
                comp.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                comp.proc.kill()
    for pid in descendants(os.getpid()):
        processes.kill_group(pid, signal.SIGKILL)
    for pid in cgroups.pids(spec["cgroup"]):
        if pid != os.getpid():
            processes.kill_group(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while descendants(os.getpid()) and time.monotonic() < deadline:
        try:
            os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        time.sleep(0.05)
    log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
