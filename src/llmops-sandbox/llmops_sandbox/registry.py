"""A read-only OCI registry (distribution API v2, pulls only) serving the locally built
image archives, as the nodes' containerd mirror for docker.io and registry.k8s.io.

Without it a manifest whose image tag is `latest` (pull policy Always) or that sets
`imagePullPolicy: Always` fails with ErrImagePull, as nothing can be pulled here. The nodes
already hold every blob (their containerd roots are seeded), so a pull only fetches the
manifest and finds the rest present; that is what a pull through a local mirror does."""

from __future__ import annotations

import json
import re
import tarfile
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from .oci import MANIFEST_MEDIA, full_name

_PATH = re.compile(r"^/v2/(?P<name>.+)/(?P<kind>manifests|blobs)/(?P<ref>[^/]+)$")


@dataclass(frozen=True)
class _Blob:
    archive: Path
    offset: int
    size: int


class ImageStore:
    """name:tag -> manifest digest, and digest -> where its bytes are in which archive."""

    def __init__(self, archives: list[Path]):
        self.tags: dict[str, str] = {}
        self.blobs: dict[str, _Blob] = {}
        for archive in archives:
            with tarfile.open(archive) as tar:
                for member in tar.getmembers():
                    if member.name.startswith("blobs/sha256/"):
                        self.blobs["sha256:" + member.name.rsplit("/", 1)[1]] = _Blob(archive, member.offset_data, member.size)
                index = json.loads(tar.extractfile("index.json").read())
            for m in index["manifests"]:
                name = m.get("annotations", {}).get("io.containerd.image.name")
                if name:
                    self.tags[name] = m["digest"]

    def read(self, digest: str) -> bytes | None:
        blob = self.blobs.get(digest)
        if blob is None:
            return None
        with open(blob.archive, "rb") as fh:
            fh.seek(blob.offset)
            return fh.read(blob.size)

    def manifest_digest(self, host: str, name: str, ref: str) -> str | None:
        if ref.startswith("sha256:"):
            return ref if ref in self.blobs else None
        repo = name if host == "docker.io" else f"{host}/{name}"
        return self.tags.get(full_name(f"{repo}:{ref}"))


def _handler(store: ImageStore):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):   # quiet: one line per request is noise here
            pass

        def _send(self, code: int, body: bytes = b"", headers: dict | None = None, head: bool = False) -> None:
            self.send_response(code)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Docker-Distribution-API-Version", "registry/2.0")
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def _serve(self, head: bool) -> None:
            path, _, query = self.path.partition("?")
            if path in ("/v2", "/v2/"):
                return self._send(200, b"{}", {"Content-Type": "application/json"}, head)
            m = _PATH.match(path)
            if not m:
                return self._send(404, b'{"errors":[{"code":"NAME_UNKNOWN"}]}', head=head)
            host = re.search(r"(?:^|&)ns=([^&]+)", query)
            host = host.group(1) if host else "docker.io"
            if m["kind"] == "manifests":
                digest = store.manifest_digest(host, m["name"], m["ref"])
                media = MANIFEST_MEDIA
            else:
                digest, media = m["ref"], "application/octet-stream"
            body = store.read(digest) if digest else None
            if body is None:
                return self._send(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}', head=head)
            self._send(200, body, {"Content-Type": media, "Docker-Content-Digest": digest}, head)

        def do_GET(self):
            self._serve(head=False)

        def do_HEAD(self):
            self._serve(head=True)
    return Handler


def start_registry(host: str, port: int, archives: list[Path]) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((host, port), _handler(ImageStore(archives)))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="registry", daemon=True).start()
    return server
