"""OCI image layouts built without Docker: a layer tarball, a config, a manifest per tag and
an index.json, packed as one tar that `ctr images import` takes.

Layers are written deterministically (sorted entries, mtime 0, root-owned), so the same
inputs give the same digests and a cache keyed by content stays valid across machines.
Image names are stored fully qualified (docker.io/..., as the CRI normalises them) in the
`io.containerd.image.name` annotation that ctr's importer reads."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

LAYER_MEDIA = "application/vnd.oci.image.layer.v1.tar"
CONFIG_MEDIA = "application/vnd.oci.image.config.v1+json"
MANIFEST_MEDIA = "application/vnd.oci.image.manifest.v1+json"
INDEX_MEDIA = "application/vnd.oci.image.index.v1+json"


@dataclass(frozen=True)
class Tag:
    """One name of an image, with the config that differs per name (env, entrypoint)."""

    name: str
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",)
    workdir: str = "/"


@dataclass
class LayerEntry:
    """A file, directory or symlink in a layer (path relative to /)."""

    path: str
    data: bytes | None = None       # a regular file's content
    source: Path | None = None      # or a host file to copy
    mode: int = 0o644
    link: str | None = None         # a symlink's target
    is_dir: bool = False


@dataclass
class Layer:
    entries: list[LayerEntry] = field(default_factory=list)
    trees: list[tuple[Path, str]] = field(default_factory=list)   # (host dir, path in image)

    def file(self, path: str, data: bytes, mode: int = 0o644) -> "Layer":
        self.entries.append(LayerEntry(path=path, data=data, mode=mode))
        return self

    def copy(self, path: str, source: Path, mode: int | None = None) -> "Layer":
        self.entries.append(LayerEntry(path=path, source=source, mode=mode or (source.stat().st_mode & 0o7777)))
        return self

    def symlink(self, path: str, target: str) -> "Layer":
        self.entries.append(LayerEntry(path=path, link=target, mode=0o777))
        return self

    def directory(self, path: str, mode: int = 0o755) -> "Layer":
        self.entries.append(LayerEntry(path=path, is_dir=True, mode=mode))
        return self

    def tree(self, host_dir: Path, path: str = "/") -> "Layer":
        self.trees.append((host_dir, path))
        return self


def full_name(name: str) -> str:
    """The name the CRI looks up: vllm/vllm-openai:v1 -> docker.io/vllm/vllm-openai:v1."""
    first = name.split("/", 1)[0]
    if "/" not in name:
        name = f"docker.io/library/{name}"
    elif not ("." in first or ":" in first or first == "localhost"):
        name = f"docker.io/{name}"
    if ":" not in name.rsplit("/", 1)[-1] and "@" not in name:
        name += ":latest"
    return name


def _tarinfo(name: str, **kw) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "root", "root"
    for k, v in kw.items():
        setattr(info, k, v)
    return info


def _parents(path: str) -> list[str]:
    parts = path.strip("/").split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def write_layer(layer: Layer, out) -> None:
    """Write the layer as a deterministic tar to the binary stream out."""
    items: dict[str, tuple] = {}
    for host_dir, dest in layer.trees:
        for root, dirs, files in os.walk(host_dir):
            dirs.sort()
            rel_root = os.path.relpath(root, host_dir)
            for name in dirs + sorted(files):
                host = Path(root) / name
                rel = os.path.normpath(os.path.join(dest.strip("/"), rel_root, name)).lstrip("./")
                st = host.lstat()
                if host.is_symlink():
                    items[rel] = ("link", os.readlink(host), 0o777)
                elif host.is_dir():
                    items[rel] = ("dir", None, st.st_mode & 0o7777)
                elif host.is_file():
                    items[rel] = ("file", host, st.st_mode & 0o7777)
    for e in layer.entries:
        rel = e.path.strip("/")
        if e.link is not None:
            items[rel] = ("link", e.link, 0o777)
        elif e.is_dir:
            items[rel] = ("dir", None, e.mode)
        elif e.data is not None:
            items[rel] = ("bytes", e.data, e.mode)
        else:
            items[rel] = ("file", e.source, e.mode)
    for rel in list(items):
        for parent in _parents(rel):
            items.setdefault(parent, ("dir", None, 0o755))
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel in sorted(items):
            kind, value, mode = items[rel]
            if kind == "dir":
                tar.addfile(_tarinfo(rel, type=tarfile.DIRTYPE, mode=mode))
            elif kind == "link":
                tar.addfile(_tarinfo(rel, type=tarfile.SYMTYPE, linkname=value, mode=mode))
            elif kind == "bytes":
                tar.addfile(_tarinfo(rel, size=len(value), mode=mode), io.BytesIO(value))
            else:
                with open(value, "rb") as fh:
                    tar.addfile(_tarinfo(rel, size=os.fstat(fh.fileno()).st_size, mode=mode), fh)


class _Blobs:
    def __init__(self, tar: tarfile.TarFile):
        self.tar = tar
        self.seen: set[str] = set()

    def add(self, data: bytes) -> tuple[str, int]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if digest not in self.seen:
            self.seen.add(digest)
            self.tar.addfile(_tarinfo(f"blobs/sha256/{digest[7:]}", size=len(data), mode=0o644), io.BytesIO(data))
        return digest, len(data)


def _json(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def write_image_archive(layers: Iterable[Path], tags: Iterable[Tag], archive: Path) -> list[str]:
    """An OCI layout tar of the given layer tarballs with one manifest per tag; returns the
    manifest digests. Layer files are read into memory one at a time."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    tmp = archive.with_suffix(".partial")
    digests = []
    with tarfile.open(tmp, mode="w", format=tarfile.PAX_FORMAT) as tar:
        blobs = _Blobs(tar)
        tar.addfile(_tarinfo("oci-layout", size=30, mode=0o644), io.BytesIO(b'{"imageLayoutVersion":"1.0.0"}'))
        layer_descs = []
        for path in layers:
            digest, size = blobs.add(path.read_bytes())
            layer_descs.append({"mediaType": LAYER_MEDIA, "digest": digest, "size": size})
        manifests = []
        for tag in tags:
            config = {
                "architecture": "amd64", "os": "linux",
                "config": {"Env": list(tag.env), "Entrypoint": list(tag.entrypoint) or None,
                           "Cmd": list(tag.cmd) or None, "WorkingDir": tag.workdir},
                "rootfs": {"type": "layers", "diff_ids": [d["digest"] for d in layer_descs]},
            }
            cdigest, csize = blobs.add(_json(config))
            manifest = {"schemaVersion": 2, "mediaType": MANIFEST_MEDIA,
                        "config": {"mediaType": CONFIG_MEDIA, "digest": cdigest, "size": csize},
                        "layers": layer_descs}
            mdigest, msize = blobs.add(_json(manifest))
            digests.append(mdigest)
            manifests.append({"mediaType": MANIFEST_MEDIA, "digest": mdigest, "size": msize,
                              "platform": {"architecture": "amd64", "os": "linux"},
                              "annotations": {"io.containerd.image.name": full_name(tag.name),
                                              "org.opencontainers.image.ref.name": full_name(tag.name).rsplit(":", 1)[-1]}})
        index = _json({"schemaVersion": 2, "mediaType": INDEX_MEDIA, "manifests": manifests})
        tar.addfile(_tarinfo("index.json", size=len(index), mode=0o644), io.BytesIO(index))
    tmp.replace(archive)
    return digests


def build_layer_file(layer: Layer, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".partial")
    with open(tmp, "wb") as out:
        write_layer(layer, out)
    tmp.replace(dest)
    return dest
