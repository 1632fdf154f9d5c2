"""The slice of the kubelet's HTTPS API the API server proxies to: container logs, so
`kubectl logs` and `read_namespaced_pod_log` work. Served by the agent for all its nodes
(every node's daemonEndpoints point here)."""

from __future__ import annotations

import datetime
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable
from urllib.parse import parse_qs, unquote, urlparse

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from .certs import _key_pem, make_serving_cert

START_MARKER = b"--- "   # lines the agent writes between runs of a container


def select_log_lines(data: bytes, tail_lines: int | None, previous: bool) -> bytes:
    """The current (or previous) run's output, optionally only the last lines (pure)."""
    runs: list[list[bytes]] = [[]]
    for line in data.splitlines(keepends=True):
        if line.startswith(START_MARKER) and b" starting [" in line:
            runs.append([])
        else:
            runs[-1].append(line)
    runs = [r for r in runs[1:]] or [runs[0]]
    chosen = runs[-2] if previous and len(runs) >= 2 else ([] if previous else runs[-1])
    if tail_lines is not None:
        chosen = chosen[-tail_lines:] if tail_lines > 0 else []
    return b"".join(chosen)


def write_serving_cert(pki_dir: Path, ip: str, out_dir: Path) -> tuple[Path, Path]:
    ca_cert = x509.load_pem_x509_certificate((pki_dir / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((pki_dir / "ca.key").read_bytes(), password=None)
    cert, key = make_serving_cert(ca_cert, ca_key, "llmops-sandbox-kubelet", [ip, "127.0.0.1"], ["localhost"],
                                  datetime.datetime.now(datetime.timezone.utc))
    out_dir.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = out_dir / "kubelet.crt", out_dir / "kubelet.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(_key_pem(key))
    key_path.chmod(0o600)
    return cert_path, key_path


def start_kubelet_api(
    host: str, cert: Path, key: Path, find_log: Callable[[str, str, str], Path | None],
    stopping: threading.Event,
) -> int:
    """Serve in a daemon thread; returns the port."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802
            url = urlparse(self.path)
            parts = [unquote(p) for p in url.path.strip("/").split("/")]
            if parts == ["healthz"]:
                return self._send(200, b"ok")
            if len(parts) != 4 or parts[0] != "containerLogs":
                return self._send(404, b"only /containerLogs/{namespace}/{pod}/{container} is served by the sandbox")
            _, namespace, pod, container = parts
            query = parse_qs(url.query)
            path = find_log(namespace, pod, container)
            if path is None or not path.exists():
                return self._send(404, f"no logs for container {container} of pod {namespace}/{pod}".encode())
            tail = int(query["tailLines"][0]) if "tailLines" in query else None
            previous = query.get("previous", ["false"])[0] == "true"
            data = select_log_lines(path.read_bytes(), tail, previous)
            if query.get("follow", ["false"])[0] != "true":
                return self._send(200, data)
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            offset = path.stat().st_size
            try:
                self._chunk(data)
                while not stopping.is_set() and path.exists():
                    size = path.stat().st_size
                    if size > offset:
                        with open(path, "rb") as f:
                            f.seek(offset)
                            self._chunk(f.read(size - offset))
                        offset = size
                    time.sleep(0.2)
                self._chunk(b"")
            except (BrokenPipeError, ConnectionResetError, FileNotFoundError):
                pass

        def _chunk(self, data: bytes) -> None:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        def _send(self, code: int, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt: str, *args) -> None:
            pass

    server = ThreadingHTTPServer((host, 0), Handler)
    server.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, name="kubelet-api", daemon=True).start()
    return server.server_address[1]
