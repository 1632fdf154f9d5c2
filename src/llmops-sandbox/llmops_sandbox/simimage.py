"""The simulator and operator images for real nodes, built without Docker.

Layers (each cached by content under ~/.cache/llmops/images/):
  1. base: a Debian bookworm rootfs with python3, made by Debian's own mmdebstrap from the
     mirror apt already uses (what `python:3.11-slim` is, minus the pip toolchain);
  2. app: the product with its runtime dependencies and the [stage] extra, installed by pip
     into /usr/local/lib/python3.11/dist-packages (the same contents operator/Dockerfile
     installs); the simulator image's also holds llmops-sim and the stdlib test server;
  3. per image: the launchers of e2e/images/vllm-sim/Dockerfile (`vllm serve` and `ray start`
     run the simulator; `llmops stage fetch` the simulated hub) or the operator's entrypoint.

The simulator image is tagged with the vLLM image names manifests use, so an unchanged
manifest runs; each tag's LLMOPS_SIM_VLLM_VERSION says which release the simulator emulates."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from . import oci
from .nodeimages import BuiltImage, ImageError, Progress, _cached, content_key

DEBIAN_SUITE = "bookworm"
BASE_PACKAGES = ("python3", "ca-certificates")
SITE = "usr/local/lib/python3.11/dist-packages"
OPERATOR_IMAGES = ("llmops/operator:dev", "llmops/operator:0.1.0", "llmops/operator:e2e")   # 0.1.0: the chart's appVersion
# The vLLM releases the simulator emulates by tag (src/llmops-sim/llmops_sim/releases.py knows them);
# the default pin first.
SIM_TAGS = ("vllm/vllm-openai:v0.33.0", "vllm/vllm-openai:v0.11.0", "vllm/vllm-openai:v0.10.2",
            "vllm/vllm-openai:v0.10.1", "vllm/vllm-openai:v0.10.0", "vllm/vllm-openai:v0.8.5",
            "vllm/vllm-openai:latest", "llmops/vllm-sim:dev", "llmops/vllm-sim:latest")
TEST_HTTP_IMAGE, HOST_IMAGE, HOST_LATEST = "llmops/test-http:1", "llmops/host:1", "llmops/host:latest"
REPO_ROOT = Path(__file__).resolve().parents[3]

_VLLM = b"""#!/bin/sh
# `vllm serve ARGS` and `python3 -m vllm.entrypoints.openai.api_server ARGS` run the simulator.
[ "$1" = serve ] && shift
exec llmops sim serve "$@"
"""
_RAY = b"""#!/bin/sh
# A group's leader runs `ray start --head ... && exec vllm serve ...`: the head returns at
# once (the simulator's leader models the whole group). A worker's
# `ray start --block --address=LEADER:6379` stays up as the group's member.
[ "$1" = start ] && shift
for a in "$@"; do [ "$a" = --head ] && { echo "ray head (simulated): started"; exit 0; }; done
exec llmops sim worker "$@"
"""
_LLMOPS_SIM = b"""#!/bin/sh
# Pre-staging pods in e2e clusters fetch from the simulated hub (no network, no token).
if [ "$1" = stage ] && [ "$2" = fetch ]; then shift 2; exec llmops-real sim stage "$@"; fi
exec llmops-real "$@"
"""
_LLMOPS_REAL = b"""#!/usr/bin/python3
import sys
from llmops.cli import main
sys.exit(main())
"""
_ENTRYPOINT = (REPO_ROOT / "operator" / "entrypoint.sh")


def debian_mirror(sources: Path = Path("/etc/apt/sources.list.d/debian.sources")) -> str:
    """The Debian mirror apt already uses (first URIs: line of the main archive)."""
    try:
        for line in sources.read_text().splitlines():
            if line.startswith("URIs:") and "security" not in line:
                return line.split(":", 1)[1].strip()
    except FileNotFoundError:
        pass
    return "http://deb.debian.org/debian"


def base_layer(progress: Progress) -> Path:
    key = content_key("base", DEBIAN_SUITE, *BASE_PACKAGES)

    def build(archive: Path) -> None:
        if shutil.which("mmdebstrap") is None:
            raise ImageError("mmdebstrap not found; fix: apt-get install mmdebstrap (or run .ci/setup)")
        archive.parent.mkdir(parents=True, exist_ok=True)
        tmp = archive.with_suffix(".partial.tar")
        cmd = ["mmdebstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
               "--dpkgopt=path-exclude=/usr/share/doc/*", "--dpkgopt=path-exclude=/usr/share/man/*",
               "--dpkgopt=path-exclude=/usr/share/locale/*", "--format=tar", DEBIAN_SUITE, str(tmp),
               debian_mirror()]
        progress(f"  mmdebstrap {DEBIAN_SUITE} with {', '.join(BASE_PACKAGES)} (about a minute)")
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            tmp.unlink(missing_ok=True)
            raise ImageError("mmdebstrap failed:\n" + "\n".join(proc.stderr.splitlines()[-10:]))
        tmp.replace(archive)
    return _cached("debian-python3-layer", key, build, progress)


def _source_digest() -> str:
    h = hashlib.sha256()
    for path in sorted((REPO_ROOT / "src").rglob("*")):
        # Build output of pip's in-tree builds is not source (and must not re-key the layer).
        if path.is_file() and not {"__pycache__", "build"} & set(path.parts) \
                and not any(part.endswith(".egg-info") for part in path.parts):
            h.update(str(path.relative_to(REPO_ROOT)).encode())
            h.update(path.read_bytes())
    for name in ("pyproject.toml",):
        h.update((REPO_ROOT / name).read_bytes())
    return h.hexdigest()


# What each image's app layer installs: the operator image only the product (as
# operator/Dockerfile); the simulator image also the simulator (`llmops sim`, an entry point).
APP_DISTRIBUTIONS = {
    "operator": (f"{REPO_ROOT}[stage]",),
    "sim": (f"{REPO_ROOT}[stage]", str(REPO_ROOT / "src" / "llmops-sim")),
}
# The test-http image's server (stdlib only), copied alone rather than the whole sandbox.
_TEST_SERVER = Path(__file__).with_name("testserver.py")


IMAGE_PYTHON = (3, 11)     # Debian bookworm's python3, the images' interpreter


def check_host_python(version: tuple[int, ...] = tuple(sys.version_info[:2])) -> None:
    """The app layer is installed by this Python's pip: compiled wheels (pydantic-core, grpcio...)
    must be for the images' Python, so the two must agree."""
    if tuple(version[:2]) != IMAGE_PYTHON:
        want = ".".join(map(str, IMAGE_PYTHON))
        raise ImageError(f"the node images run Python {want} (Debian {DEBIAN_SUITE}), but their packages would be "
                         f"installed by Python {'.'.join(map(str, version[:2]))} ({sys.executable}), whose compiled "
                         f"wheels do not load there; fix: run llmops from a Python {want} environment "
                         f"(python{want} -m venv .venv; .ci/setup does this on Debian {DEBIAN_SUITE})")


def app_layer(progress: Progress, kind: str) -> Path:
    check_host_python()
    distributions = APP_DISTRIBUTIONS[kind]
    key = content_key("app", kind, _source_digest())

    def build(archive: Path) -> None:
        with tempfile.TemporaryDirectory(prefix="llmops-app-") as tmp:
            site = Path(tmp) / "root" / SITE
            names = ", ".join(Path(d).name for d in distributions)
            progress(f"  pip: {names} and their dependencies into the image's dist-packages")
            proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                                   "--no-compile", "--target", str(site), *distributions],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                raise ImageError("pip install into the image failed:\n" + "\n".join(proc.stderr.splitlines()[-10:]))
            shutil.rmtree(site / "bin", ignore_errors=True)     # host-Python shebangs; launchers below
            layer = oci.Layer().tree(Path(tmp) / "root", "/")
            layer.file("usr/local/bin/llmops-real", _LLMOPS_REAL, 0o755)
            if kind == "sim":
                layer.file(f"{SITE}/llmops_sandbox/__init__.py", b"")
                layer.copy(f"{SITE}/llmops_sandbox/testserver.py", _TEST_SERVER, 0o644)
            oci.build_layer_file(layer, archive)
    return _cached(f"llmops-{kind}-app-layer", key, build, progress)


def _with_llmops_user(base: Path) -> tuple[bytes, bytes]:
    """/etc/passwd and /etc/group of the base layer plus the operator image's user (uid 65532,
    as operator/Dockerfile's useradd): the chart runs the operator as that uid."""
    import tarfile
    with tarfile.open(base) as tar:
        passwd = tar.extractfile("./etc/passwd").read()
        group = tar.extractfile("./etc/group").read()
    return (passwd + b"llmops:x:65532:65532::/nonexistent:/usr/sbin/nologin\n", group + b"llmops:x:65532:\n")


def _launchers(kind: str, base: Path) -> Path:
    key = content_key("launchers-2", kind, base.name, hashlib.sha256(_VLLM + _RAY + _LLMOPS_SIM).hexdigest(),
                      hashlib.sha256(_ENTRYPOINT.read_bytes()).hexdigest())

    def build(archive: Path) -> None:
        layer = oci.Layer()
        passwd, group = _with_llmops_user(base)
        layer.file("etc/passwd", passwd).file("etc/group", group)
        if kind == "sim":
            layer.file("usr/local/bin/vllm", _VLLM, 0o755).file("usr/local/bin/ray", _RAY, 0o755)
            layer.file("usr/local/bin/llmops", _LLMOPS_SIM, 0o755)
            # `python3 -m vllm.entrypoints.openai.api_server`: a module that runs the simulator.
            layer.file(f"{SITE}/vllm/__init__.py", b"")
            layer.file(f"{SITE}/vllm/entrypoints/__init__.py", b"")
            layer.file(f"{SITE}/vllm/entrypoints/openai/__init__.py", b"")
            layer.file(f"{SITE}/vllm/entrypoints/openai/api_server.py",
                       b"import sys\nfrom llmops.cli import main\nsys.exit(main(['sim', 'serve', *sys.argv[1:]]))\n")
        else:
            layer.file("usr/local/bin/llmops", _LLMOPS_REAL, 0o755)
            layer.copy("usr/local/bin/llmops-entrypoint", _ENTRYPOINT, 0o755)
        oci.build_layer_file(layer, archive)
    return _cached(f"{kind}-launchers-layer", key, build, lambda m: None)


def sim_version(tag: str) -> str | None:
    m = re.search(r":v?(\d+\.\d+\.\d+)$", tag)
    return m.group(1) if m else None


def _env(extra: dict[str, str]) -> tuple[str, ...]:
    base = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1"}
    return tuple(f"{k}={v}" for k, v in {**base, **extra}.items())


def simulator_image(progress: Progress = print) -> BuiltImage:
    base = base_layer(progress)
    layers = [base, app_layer(progress, "sim"), _launchers("sim", base)]
    key = content_key("sim-image", *(p.name for p in layers), *SIM_TAGS, TEST_HTTP_IMAGE, HOST_IMAGE, HOST_LATEST)
    tags = [oci.Tag(t, entrypoint=("llmops", "sim", "serve"),
                    env=_env({"LLMOPS_SIM_VLLM_VERSION": v} if (v := sim_version(t)) else {})) for t in SIM_TAGS]
    # Test images of images.yaml, on the same layers: the tiny HTTP server, and `llmops/host`
    # (on simulated nodes: the container's command run on the host; here: in this image).
    tags += [oci.Tag(TEST_HTTP_IMAGE, entrypoint=("python3", "-m", "llmops_sandbox.testserver"), env=_env({})),
             oci.Tag(HOST_IMAGE, env=_env({})), oci.Tag(HOST_LATEST, env=_env({}))]

    def build(archive: Path) -> None:
        oci.write_image_archive(layers, tags, archive)
    return BuiltImage(_cached("simulator", key, build, progress), (*SIM_TAGS, TEST_HTTP_IMAGE, HOST_IMAGE, HOST_LATEST))


def operator_image(progress: Progress = print) -> BuiltImage:
    base = base_layer(progress)
    layers = [base, app_layer(progress, "operator"), _launchers("operator", base)]
    key = content_key("operator-image", *(p.name for p in layers), *OPERATOR_IMAGES)
    tags = [oci.Tag(t, entrypoint=("/usr/local/bin/llmops-entrypoint",), cmd=("run",), env=_env({}))
            for t in OPERATOR_IMAGES]

    def build(archive: Path) -> None:
        oci.write_image_archive(layers, tags, archive)
    return BuiltImage(_cached("operator", key, build, progress), OPERATOR_IMAGES)
