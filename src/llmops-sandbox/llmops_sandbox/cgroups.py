"""cgroup v1 directories of real sandbox nodes.

Each node's processes (its supervisor, containerd, the kubelet, shims, containers: the
kubelet's --cgroup-root) live in one cgroup path under the cgroup this sandbox was started
from, in every v1 controller, so `down` finds every process by cgroup and removes the
directories. Nesting under our own cgroup keeps the nodes inside whatever accounts for us."""

from __future__ import annotations

from pathlib import Path

CGROUP_FS = Path("/sys/fs/cgroup")


def controllers() -> list[Path]:
    """Mounted v1 hierarchies (cpu, memory, pids, ..., name=systemd), not the unified one."""
    found = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        parts = line.split()
        if len(parts) > 2 and parts[2] == "cgroup" and parts[1].startswith(str(CGROUP_FS)):
            found.append(Path(parts[1]))
    return found


def own_base() -> str:
    """The deepest cgroup path of this process across v1 controllers (e.g. the memory one a
    supervisor put us in); '' for the root."""
    paths = []
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, ctrl, path = line.split(":", 2)
        if ctrl:
            paths.append(path.rstrip("/"))
    return max(paths, key=len, default="")


def node_cgroup(bridge: str, node: str, base: str | None = None) -> str:
    base = own_base() if base is None else base
    return f"{base}/llmops-{bridge}/{node}"


def create(path: str) -> None:
    for ctrl in controllers():
        current = ctrl
        for part in path.strip("/").split("/"):
            parent, current = current, current / part
            if not current.exists():
                current.mkdir()
                # A new cpuset cgroup has no cpus/mems: copy the parent's, or no task may join.
                for knob in ("cpuset.cpus", "cpuset.mems"):
                    if (parent / knob).exists():
                        (current / knob).write_text((parent / knob).read_text())


def join(path: str, pid: int) -> None:
    for ctrl in controllers():
        procs = ctrl / path.strip("/") / "cgroup.procs"
        if procs.exists():
            procs.write_text(f"{pid}\n")


def pids(path: str) -> set[int]:
    """Every process in the cgroup subtree, in any controller."""
    found: set[int] = set()
    for ctrl in controllers():
        top = ctrl / path.strip("/")
        if not top.exists():
            continue
        for procs in top.rglob("cgroup.procs"):
            try:
                found.update(int(p) for p in procs.read_text().split())
            except OSError:
                pass
    return found


def remove(path: str) -> list[str]:
    """rmdir the subtree bottom-up in every controller; returns what could not be removed."""
    left = []
    for ctrl in controllers():
        top = ctrl / path.strip("/")
        if not top.exists():
            continue
        for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            try:
                d.rmdir()
            except OSError:
                left.append(str(d))
        try:
            top.rmdir()
        except OSError:
            left.append(str(top))
    return left


def leftovers(prefix_path: str) -> list[str]:
    """Directories named by prefix_path that still exist in any controller."""
    return [str(ctrl / prefix_path.strip("/")) for ctrl in controllers() if (ctrl / prefix_path.strip("/")).exists()]
