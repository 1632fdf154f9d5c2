"""Finding (or building) the control-plane binaries.

Search order: --bin-dir, $KUBEBUILDER_ASSETS, $PATH, the version cache
(~/.cache/llmops/control-plane/v1.20.2/); otherwise build-control-plane.sh fills the cache.
etcd and prometheus come from Debian packages (etcd-server, prometheus)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Callable, Mapping

K8S_VERSION = "v1.20.2"
CONTROL_PLANE = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
NODE_BINARIES = ("kubelet", "kube-proxy")      # real nodes; same source tree, same cache
BUILD_SCRIPT = Path(__file__).with_name("build-control-plane.sh")


def cache_dir(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_CACHE_HOME") or os.path.join(env.get("HOME", "/root"), ".cache")
    return Path(base) / "llmops" / "control-plane" / K8S_VERSION


def candidate_dirs(bin_dir: str | None, env: Mapping[str, str]) -> list[Path]:
    """Directories to search for a binary, most explicit first (pure)."""
    dirs: list[Path] = []
    if bin_dir:
        dirs.append(Path(bin_dir))
    if env.get("KUBEBUILDER_ASSETS"):
        dirs.append(Path(env["KUBEBUILDER_ASSETS"]))
    dirs += [Path(p) for p in env.get("PATH", "").split(os.pathsep) if p]
    dirs.append(cache_dir(env))
    return dirs


def find_binary(name: str, dirs: list[Path]) -> Path | None:
    for d in dirs:
        path = d / name
        if path.is_file() and os.access(path, os.X_OK):
            return path
    return None


class MissingBinary(Exception):
    pass


def locate(
    bin_dir: str | None,
    env: Mapping[str, str] | None = None,
    build: bool = True,
    progress: Callable[[str], None] = print,
) -> dict[str, Path]:
    """Paths of kube-apiserver, kube-controller-manager, kube-scheduler and etcd."""
    env = dict(os.environ if env is None else env)
    dirs = candidate_dirs(bin_dir, env)
    # All three from one directory, so they share a version (envtest's KUBEBUILDER_ASSETS,
    # for one, has only kube-apiserver and etcd).
    complete = _complete_dir(CONTROL_PLANE, dirs)
    found = {name: (find_binary(name, [complete]) if complete else None) for name in CONTROL_PLANE}
    missing = [n for n, p in found.items() if p is None]
    if missing:
        if not build:
            raise MissingBinary(
                f"control-plane binaries not found: {', '.join(missing)}; fix: pass --bin-dir, "
                f"set KUBEBUILDER_ASSETS, or let `llmops sandbox up` build them"
            )
        dest = _build_into_cache(env, "control plane", 10, progress)
        found = {name: find_binary(name, [dest]) for name in CONTROL_PLANE}
    etcd = find_binary("etcd", dirs + [Path("/usr/bin")])
    if etcd is None:
        raise MissingBinary("etcd not found; fix: apt-get install etcd-server")
    result = {name: path for name, path in found.items() if path is not None}
    result["etcd"] = etcd
    return result


def locate_node_binaries(
    bin_dir: str | None,
    env: Mapping[str, str] | None = None,
    build: bool = True,
    progress: Callable[[str], None] = print,
) -> dict[str, Path]:
    """Paths of kubelet and kube-proxy (real nodes), built once into the version cache."""
    env = dict(os.environ if env is None else env)
    complete = _complete_dir(NODE_BINARIES, candidate_dirs(bin_dir, env))
    if complete is None:
        if not build:
            raise MissingBinary(
                f"node binaries not found: {', '.join(NODE_BINARIES)}; fix: pass --bin-dir, or run "
                "`llmops sandbox binaries` once (builds them, about 8 min)"
            )
        complete = _build_into_cache(env, "kubelet and kube-proxy", 8, progress, *NODE_BINARIES)
    return {name: complete / name for name in NODE_BINARIES}


def _complete_dir(names: tuple[str, ...], dirs: list[Path]) -> Path | None:
    """The first directory holding all of `names`, so they share a version."""
    return next((d for d in dirs if all(find_binary(n, [d]) for n in names)), None)


def _build_into_cache(env: Mapping[str, str], what: str, minutes: int, progress: Callable[[str], None],
                      *targets: str) -> Path:
    dest = cache_dir(env)
    progress(f"building Kubernetes {K8S_VERSION} {what} into {dest} (about {minutes} min, once)")
    subprocess.run(["bash", str(BUILD_SCRIPT), str(dest), *targets], check=True)
    return dest


def server_minor_version(apiserver: Path) -> int:
    """Minor version of a kube-apiserver binary ("Kubernetes v1.20.2" -> 20); 20 if unknown."""
    try:
        out = subprocess.run([str(apiserver), "--version"], capture_output=True, text=True, timeout=20).stdout
        return parse_minor(out)
    except (OSError, subprocess.TimeoutExpired):
        return 20


def parse_minor(version_output: str) -> int:
    import re
    m = re.search(r"v1\.(\d+)\.", version_output)
    return int(m.group(1)) if m else 20


def find_prometheus(bin_dir: str | None = None) -> Path | None:
    env = dict(os.environ)
    found = find_binary("prometheus", candidate_dirs(bin_dir, env))
    return found or (Path(p) if (p := shutil.which("prometheus")) else None)
