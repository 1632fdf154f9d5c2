"""Run the operator as a separate process against a cluster, for tests and the demo."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from kubernetes import client
from kubernetes.client.rest import ApiException

from llmops.crd import build_crd
from llmops.waiting import wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def install_crd(api: client.ApiClient, timeout: float = 30) -> None:
    """Create or update the LLMDeployment CRD and wait until it is served."""
    ext = client.ApiextensionsV1Api(api)
    crd = build_crd()
    name = crd["metadata"]["name"]
    try:
        existing = ext.read_custom_resource_definition(name)
        crd["metadata"]["resourceVersion"] = existing.metadata.resource_version
        ext.replace_custom_resource_definition(name, crd)
    except ApiException as exc:
        if exc.status != 404:
            raise
        ext.create_custom_resource_definition(crd)

    def established() -> bool:
        conditions = ext.read_custom_resource_definition(name).status.conditions or []
        return any(c.type == "Established" and c.status == "True" for c in conditions)

    wait_for(established, timeout, f"CRD {name} not Established within {timeout}s")


@dataclass
class OperatorProcess:
    cmd: list[str]
    metrics_port: int
    health_port: int
    log_path: Path
    process: Optional[subprocess.Popen] = None

    def start(self, timeout: float = 60) -> None:
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT,
                                        env={**os.environ, "PYTHONUNBUFFERED": "1"})
        proc = self.process

        def up() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"operator exited with {proc.returncode}:\n{self.log_tail()}")
            return _healthy(self.health_port)

        wait_for(up, timeout, f"operator did not report healthy within {timeout}s")

    def restart(self, timeout: float = 60) -> None:
        self.stop()
        self.start(timeout)

    def metrics_text(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            return r.read().decode()

    def stop(self, timeout: float = 20) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def start_operator(kubeconfig: str, log_path: Path, prometheus_url: Optional[str] = None,
                   extra_args: tuple[str, ...] = (), timeout: float = 60) -> OperatorProcess:
    metrics_port, health_port = free_port(), free_port()
    cmd = [sys.executable, "-m", "llmops.cli", "run", "--kubeconfig", kubeconfig,
           "--metrics-port", str(metrics_port), "--health-port", str(health_port), *extra_args]
    if prometheus_url:
        cmd += ["--prometheus-url", prometheus_url]
    op = OperatorProcess(cmd, metrics_port, health_port, log_path)
    op.start(timeout)
    return op
