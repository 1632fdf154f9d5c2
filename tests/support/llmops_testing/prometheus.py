"""Run a real Prometheus and real scrape targets on loopback, for tests and demos.

`LocalPrometheus` starts /usr/bin/prometheus (Debian package `prometheus`) with a temporary
config and TSDB, scraping `ScrapeTarget`s every second; static labels on each target stand
in for the labels the Kubernetes pod scrape config attaches (namespace, pod,
llmops_deployment). `MetricsTarget` is a tiny prometheus_client exposition server playing
one vLLM pod. All waits are bounded and say what they waited for.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Optional

import yaml
from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

PROMETHEUS_BINARY = os.environ.get("LLMOPS_PROMETHEUS_BINARY", "/usr/bin/prometheus")


def prometheus_available() -> bool:
    return shutil.which(PROMETHEUS_BINARY) is not None


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(check: Callable[[], Any], *, timeout: float, what: str, interval: float = 0.2) -> Any:
    """Poll `check` until it returns something truthy; raise TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout
    last_error: Optional[BaseException] = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except Exception as exc:  # noqa: BLE001 - the last error goes into the timeout message
            last_error = exc
        time.sleep(interval)
    suffix = f" (last error: {last_error})" if last_error else ""
    raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}{suffix}")


@dataclass(frozen=True)
class ScrapeTarget:
    address: str                      # host:port on loopback
    labels: dict[str, str] = field(default_factory=dict)
    job: str = "vllm"


class MetricsTarget:
    """One fake vLLM pod's /metrics: register metrics on `.registry`, then `start()`.

    negotiate=True serves what prometheus_client's own server serves (OpenMetrics when
    Prometheus asks for it; recent releases then escape ':' in sample names to '_').
    negotiate=False always serves the classic text format, which keeps 'vllm:' names.
    """

    def __init__(self, *, negotiate: bool = False) -> None:
        self.registry = CollectorRegistry()
        self.negotiate = negotiate
        self._server: Any = None
        self.port: Optional[int] = None

    def start(self) -> "MetricsTarget":
        if self.negotiate:
            self._server, _ = start_http_server(0, addr="127.0.0.1", registry=self.registry)
        else:
            self._server = ThreadingHTTPServer(("127.0.0.1", 0), _text_handler(self.registry))
            threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.port = self._server.server_port
        return self

    @property
    def address(self) -> str:
        assert self.port is not None, "start() the target first"
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def _text_handler(registry: CollectorRegistry) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            body = generate_latest(registry)
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE_PLAIN_0_0_4)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass  # one line per scrape would drown test output

    return Handler


class LocalPrometheus:
    def __init__(
        self,
        targets: list[ScrapeTarget],
        *,
        scrape_interval: str = "1s",
        workdir: Optional[Path] = None,
        port: Optional[int] = None,
    ) -> None:
        self.targets = targets
        self.scrape_interval = scrape_interval
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="llmops-prometheus-"))
        self.port = port or free_loopback_port()
        self.process: Optional[subprocess.Popen] = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> dict[str, Any]:
        jobs: dict[str, list[dict[str, Any]]] = {}
        for target in self.targets:
            jobs.setdefault(target.job, []).append({"targets": [target.address], "labels": dict(target.labels)})
        return {
            "global": {"scrape_interval": self.scrape_interval, "evaluation_interval": self.scrape_interval},
            "scrape_configs": [
                {"job_name": job, "scrape_timeout": self.scrape_interval, "static_configs": configs}
                for job, configs in jobs.items()
            ],
        }

    def start(self, timeout: float = 30) -> "LocalPrometheus":
        config_path = self.workdir / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(self.config()))
        self._log = open(self.workdir / "prometheus.log", "wb")
        self.process = subprocess.Popen(
            [
                PROMETHEUS_BINARY,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1h",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_for(self._ready, timeout=timeout, what=f"Prometheus ready on {self.url}")
        except TimeoutError as exc:
            self.stop()
            raise TimeoutError(f"{exc}; log tail:\n{self.log_tail()}") from None
        return self

    def _ready(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"prometheus exited with {self.process.returncode}: {self.log_tail()}")
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as response:
                return response.status == 200
        except (urllib.error.URLError, ConnectionError, OSError):
            return False

    def log_tail(self, lines: int = 20) -> str:
        path = self.workdir / "prometheus.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def query(self, promql: str) -> list[dict[str, Any]]:
        """Synchronous instant query for test set-up; raises on any error."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=5) as response:
            body = json.load(response)
        if body.get("status") != "success":
            raise RuntimeError(f"query {promql!r} failed: {body}")
        return body["data"]["result"]

    def wait_for_value(self, promql: str, predicate: Callable[[float], bool], *, timeout: float = 20) -> float:
        def check() -> Optional[tuple[float]]:
            result = self.query(promql)
            if result and predicate(float(result[0]["value"][1])):
                return (float(result[0]["value"][1]),)  # a tuple, so 0.0 still counts as found
            return None

        return wait_for(check, timeout=timeout, what=f"{promql} to satisfy the condition")[0]

    def wait_for_empty(self, promql: str, *, timeout: float = 20) -> None:
        wait_for(lambda: self.query(promql) == [], timeout=timeout, what=f"{promql} to return nothing")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None
        if getattr(self, "_log", None):
            self._log.close()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "LocalPrometheus":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
