"""Running a probe against a pod (I/O): HTTP and TCP from the host to the pod IP, exec inside
the container's namespaces with nsenter."""

from __future__ import annotations

import socket
import ssl
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Mapping

from .probes import Probe

# Probes must never go through a proxy from the environment.
_OPENER = urllib.request.build_opener(
    urllib.request.ProxyHandler({}),
    urllib.request.HTTPSHandler(context=ssl._create_unverified_context()),  # kubelet skips TLS verify
)


def run_probe(probe: Probe, pod_ip: str, pid: int | None, env: Mapping[str, str]) -> tuple[bool, str]:
    """(success, message). Never raises."""
    try:
        if probe.kind == "http":
            host = probe.host or pod_ip
            url = f"{probe.scheme.lower()}://{host}:{probe.port}{probe.path}"
            req = urllib.request.Request(url, headers={"User-Agent": "kube-probe/1.20", **dict(probe.headers)})
            try:
                with _OPENER.open(req, timeout=probe.timeout) as resp:
                    code = resp.status
            except urllib.error.HTTPError as exc:
                code = exc.code
            ok = 200 <= code < 400
            return ok, "" if ok else f"HTTP probe failed with statuscode: {code}"
        if probe.kind == "tcp":
            with socket.create_connection((probe.host or pod_ip, probe.port), timeout=probe.timeout):
                return True, ""
        if probe.kind == "exec":
            if pid is None:
                return False, "container is not running"
            proc = subprocess.run(
                ["nsenter", "--target", str(pid), "--net", "--mount", "--", *probe.command],
                env=dict(env), capture_output=True, text=True, timeout=probe.timeout,
            )
            out = (proc.stdout + proc.stderr).strip()[-200:]
            return proc.returncode == 0, "" if proc.returncode == 0 else f"exit {proc.returncode}: {out}"
        return False, f"unknown probe kind {probe.kind}"
    except subprocess.TimeoutExpired:
        return False, f"command timed out after {probe.timeout:g}s"
    except (OSError, urllib.error.URLError) as exc:
        target = f"{probe.host or pod_ip}:{probe.port}"
        return False, f"{probe.kind} probe to {target} failed: {getattr(exc, 'reason', exc)}"


def run_hook(handler: Probe, pod_ip: str, pid: int | None, env: Mapping[str, str], log_path: Path) -> tuple[bool, str]:
    """A lifecycle hook (exec or httpGet; `handler.timeout` is its whole budget). An exec
    hook's output goes to the container's log, so a drain can be read with `kubectl logs`
    (the kubelet discards it; the sandbox keeps it for the curious). Never raises."""
    if handler.kind != "exec":
        return run_probe(handler, pod_ip, pid, env)
    if pid is None:
        return False, "container is not running"
    try:
        with open(log_path, "ab") as out:
            proc = subprocess.run(["nsenter", "--target", str(pid), "--net", "--mount", "--", *handler.command],
                                  env=dict(env), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                  timeout=handler.timeout)
    except subprocess.TimeoutExpired:
        return False, f"command timed out after {handler.timeout:g}s"
    except OSError as exc:
        return False, f"exec hook failed: {exc}"
    return proc.returncode == 0, "" if proc.returncode == 0 else f"exit {proc.returncode}"
