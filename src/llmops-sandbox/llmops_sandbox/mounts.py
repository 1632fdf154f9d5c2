"""Per-pod mount namespace plan: which host directories appear where inside a container (pure).

A container runs via `ip netns exec` (which already gives it a private mount namespace) and a
small sh script that bind-mounts the pod's run directory over /run (so
/var/run/secrets/kubernetes.io/serviceaccount/ shows the pod's own token without touching the
host's /run) and each volume at its mountPath, then execs the command."""

from __future__ import annotations

import posixpath
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
SERVICE_ACCOUNT_SUBDIR = "secrets/kubernetes.io/serviceaccount"   # inside the pod's /run


@dataclass(frozen=True)
class Mount:
    source: str
    target: str
    read_only: bool = False


def volume_dir(volumes_root: Path, volume_name: str) -> Path:
    return volumes_root / volume_name


def host_path_source(volume: dict, node_root: Path) -> str:
    """A hostPath inside the simulated node's own root (see StateDir.node_root)."""
    return str(node_root / volume["hostPath"]["path"].lstrip("/"))


def volume_source(volume: dict, volumes_root: Path, node_root: Path) -> str:
    if volume.get("hostPath"):
        return host_path_source(volume, node_root)
    return str(volume_dir(volumes_root, volume["name"]))


def shadows(target: str, protected: Sequence[str]) -> bool:
    """True if mounting over `target` would hide one of the `protected` host paths."""
    target = posixpath.normpath(target)
    return any(p == target or p.startswith(target.rstrip("/") + "/") for p in map(posixpath.normpath, protected))


def plan_mounts(pod: dict, container: dict, volumes_root: Path, node_root: Path,
                protected: Sequence[str] = ()) -> list[Mount]:
    """Bind mounts for one container from its volumeMounts (the SA token dir is handled apart).

    A pod's processes run from the host's filesystem, so a volume mounted over a directory
    holding the Python that runs them, the project, or the sandbox's own state (volume
    sources) would hide them: such mounts (typically an emptyDir at /tmp) are skipped and
    the container sees the host directory there instead."""
    volumes = {v["name"]: v for v in (pod.get("spec") or {}).get("volumes") or ()}
    mounts = []
    for vm in container.get("volumeMounts") or ():
        target = vm["mountPath"]
        if posixpath.normpath(target) in (SERVICE_ACCOUNT_DIR, "/run/secrets/kubernetes.io/serviceaccount"):
            continue   # the agent's bound TokenRequest token is already there
        if shadows(target, protected):
            continue
        volume = volumes.get(vm["name"])
        if volume is None:
            continue   # the API server rejects this; nothing sensible to mount
        source = volume_source(volume, volumes_root, node_root)
        if vm.get("subPath"):
            source = posixpath.join(source, vm["subPath"])
        mounts.append(Mount(source=source, target=target, read_only=bool(vm.get("readOnly"))))
    return mounts


def launch_script(run_dir: str, mounts: Sequence[Mount], workdir: str | None) -> str:
    """sh script run inside the pod's namespaces; argv follows as "$@"."""
    q = shlex.quote
    lines = ["set -e", f"mount --bind {q(run_dir)} /run"]
    for m in mounts:
        # Missing mount points are created (a file for a file source, else a directory).
        lines.append(
            f"if [ -d {q(m.source)} ]; then mkdir -p {q(m.target)}; "
            f"else mkdir -p \"$(dirname {q(m.target)})\"; [ -e {q(m.target)} ] || : > {q(m.target)}; fi"
        )
        lines.append(f"mount --bind {q(m.source)} {q(m.target)}")
        if m.read_only:
            lines.append(f"mount -o remount,bind,ro {q(m.target)}")
    if workdir:
        lines.append(f"mkdir -p {q(workdir)} && cd {q(workdir)}")
    lines.append('exec "$@"')
    return "\n".join(lines)
