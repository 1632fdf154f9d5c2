"""The images real sandbox nodes run, built locally and cached by content, then imported
into each node's containerd (no registry is reachable, and no Docker runs here).

- pause (registry.k8s.io/pause:3.2, the CRI sandbox image): a static busybox sleeping;
- llmops/busybox:1: static busybox with its applets, for test pods (sh, wget, nc, httpd);
- the simulator and operator images (simimage.py).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import oci
from .realnode_config import PAUSE_IMAGE

Progress = Callable[[str], None]
BUSYBOX = Path("/usr/bin/busybox")     # Debian's busybox-static
BUSYBOX_IMAGE = "llmops/busybox:1"
RECIPE_VERSION = "1"                   # bump when a recipe below changes


class ImageError(RuntimeError):
    pass


@dataclass(frozen=True)
class BuiltImage:
    archive: Path
    names: tuple[str, ...]


def cache_root(env: dict | None = None) -> Path:
    env = os.environ if env is None else env
    base = env.get("XDG_CACHE_HOME") or os.path.join(env.get("HOME", "/root"), ".cache")
    return Path(base) / "llmops" / "images"


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def content_key(*parts: str) -> str:
    return hashlib.sha256("\0".join((RECIPE_VERSION, *parts)).encode()).hexdigest()[:16]


def busybox_applets() -> list[str]:
    out = subprocess.run([str(BUSYBOX), "--list"], capture_output=True, text=True, check=True).stdout
    return sorted(a for a in out.split() if a and a != "busybox")


def busybox_layer() -> oci.Layer:
    layer = oci.Layer().copy("bin/busybox", BUSYBOX, 0o755)
    for applet in busybox_applets():
        layer.symlink(f"bin/{applet}", "busybox")
    for d in ("tmp", "etc", "proc", "sys", "dev", "var/run", "root"):
        layer.directory(d, 0o1777 if d == "tmp" else 0o755)
    layer.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
    layer.file("etc/group", b"root:x:0:\nnogroup:x:65534:\n")
    return layer


def _cached(name: str, key: str, build: Callable[[Path], None], progress: Progress) -> Path:
    archive = cache_root() / f"{name}-{key}.tar"
    if archive.exists():
        return archive
    t0 = time.monotonic()
    progress(f"building image {name} (once; cached as {archive.name})")
    build(archive)
    progress(f"built image {name} in {time.monotonic() - t0:.1f}s ({archive.stat().st_size / 1e6:.1f} MB)")
    return archive


def pause_image(progress: Progress = print) -> BuiltImage:
    if not BUSYBOX.exists():
        raise ImageError(f"{BUSYBOX} not found; fix: apt-get install busybox-static")
    key = content_key("pause-2", file_digest(BUSYBOX))

    def build(archive: Path) -> None:
        layer = oci.build_layer_file(oci.Layer().copy("busybox", BUSYBOX, 0o755), archive.with_suffix(".layer"))
        # Called as `busybox`, busybox runs the applet named by argv[1]: a sleep holds the
        # pod sandbox's namespaces (what the real pause does, minus zombie reaping).
        oci.write_image_archive([layer], [oci.Tag(PAUSE_IMAGE, entrypoint=("/busybox", "sleep", "2147483647"))],
                                archive)
        layer.unlink()
    return BuiltImage(_cached("pause", key, build, progress), (PAUSE_IMAGE,))


def busybox_image(progress: Progress = print) -> BuiltImage:
    key = content_key("busybox", file_digest(BUSYBOX))

    def build(archive: Path) -> None:
        layer = oci.build_layer_file(busybox_layer(), archive.with_suffix(".layer"))
        oci.write_image_archive([layer], [oci.Tag(BUSYBOX_IMAGE, cmd=("/bin/sh",))], archive)
        layer.unlink()
    return BuiltImage(_cached("busybox", key, build, progress), (BUSYBOX_IMAGE,))


def import_image(image: BuiltImage, containerd_sock: Path, ctr: str = "ctr") -> None:
    """Import into the node's containerd in the CRI's namespace (k8s.io)."""
    proc = subprocess.run([ctr, "--address", str(containerd_sock), "-n", "k8s.io", "images", "import",
                           str(image.archive)],
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-10:])
        raise ImageError(f"importing {', '.join(image.names)} into {containerd_sock} failed:\n{tail}")


def imported_names(containerd_sock: Path, ctr: str = "ctr") -> set[str]:
    proc = subprocess.run([ctr, "--address", str(containerd_sock), "-n", "k8s.io", "images", "ls", "-q"],
                          capture_output=True, text=True, timeout=60)
    return set(proc.stdout.split()) if proc.returncode == 0 else set()


def node_images(progress: Progress = print, with_simulator: bool = True) -> list[BuiltImage]:
    """Every image a real node gets: built (or found in the cache) before any node starts."""
    images = [pause_image(progress), busybox_image(progress)]
    if with_simulator:
        from .simimage import operator_image, simulator_image
        images += [simulator_image(progress), operator_image(progress)]
    return images


# Importing ~300 MB of images into every node's containerd costs ~10 s a node. Instead the
# images are imported once into a template containerd root (cached by the images' content),
# and each node's root starts as a hard-linked copy of it: blobs and unpacked snapshot files
# are only ever read (containers write to their own overlay upper dirs), while the two bolt
# databases each containerd writes are real copies.
TEMPLATE_DBS = ("io.containerd.metadata.v1.bolt/meta.db", "io.containerd.snapshotter.v1.overlayfs/metadata.db")


def template_config(root: Path, state: Path, sock: Path) -> str:
    return f"""version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
                    "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
"""


def containerd_template(images: list[BuiltImage], progress: Progress = print) -> Path:
    key = content_key("containerd-template", *(i.archive.name for i in images))
    root = cache_root() / f"containerd-root-{key}"
    if (root / TEMPLATE_DBS[0]).exists():
        return root
    import shutil
    import tempfile
    t0 = time.monotonic()
    progress("importing the images into a template containerd root (once per set of images)")
    partial = root.with_name(root.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix="llmops-ctd-") as tmp:
        sock = Path(tmp) / "c.sock"
        config = Path(tmp) / "config.toml"
        config.write_text(template_config(partial, Path(tmp) / "state", sock))
        # Its own mount namespace: unpacking mounts snapshots; none may land in the host's.
        proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "containerd", "--config",
                                 str(config)], stdout=subprocess.DEVNULL, stderr=open(Path(tmp) / "log", "wb"))
        try:
            deadline = time.monotonic() + 30
            while not sock.exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise ImageError("template containerd did not start:\n" + (Path(tmp) / "log").read_text()[-800:])
                time.sleep(0.05)
            for image in images:
                import_image(image, sock)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    partial.replace(root)
    progress(f"template containerd root ready in {time.monotonic() - t0:.1f}s")
    return root


def seed_containerd_root(template: Path, dest: Path) -> None:
    """dest becomes a hard-linked copy of the template, with private copies of the databases."""
    import shutil
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        shutil.rmtree(dest)
    subprocess.run(["cp", "-al", str(template), str(dest)], check=True)
    for db in TEMPLATE_DBS:
        target = dest / db
        if target.exists():
            target.unlink()
            shutil.copy2(template / db, target)
