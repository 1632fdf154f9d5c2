"""Probe configuration and the kubelet's probe bookkeeping (pure: time is passed in)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence


class ProbeConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Probe:
    kind: str                       # "http" | "tcp" | "exec"
    port: int | None = None
    path: str = "/"
    scheme: str = "HTTP"
    host: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    command: tuple[str, ...] = ()
    initial_delay: float = 0.0
    period: float = 10.0
    timeout: float = 1.0
    success_threshold: int = 1
    failure_threshold: int = 3


def resolve_port(port: Any, container_ports: Sequence[dict]) -> int:
    """A probe port is a number or the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    if isinstance(port, str) and port.isdigit():
        return int(port)
    for p in container_ports or ():
        if p.get("name") == port:
            return int(p["containerPort"])
    raise ProbeConfigError(f"probe port {port!r} is neither a number nor a named container port")


def parse_probe(spec: dict | None, container_ports: Sequence[dict] = ()) -> Probe | None:
    """A Kubernetes Probe (camelCase dict as in the API) -> Probe, or None if absent."""
    if not spec:
        return None
    timing = dict(
        initial_delay=float(spec.get("initialDelaySeconds") or 0),
        period=float(spec.get("periodSeconds") or 10),
        timeout=float(spec.get("timeoutSeconds") or 1),
        success_threshold=int(spec.get("successThreshold") or 1),
        failure_threshold=int(spec.get("failureThreshold") or 3),
    )
    if spec.get("httpGet"):
        h = spec["httpGet"]
        headers = tuple((hd["name"], hd["value"]) for hd in h.get("httpHeaders") or ())
        return Probe(kind="http", port=resolve_port(h.get("port"), container_ports),
                     path=h.get("path") or "/", scheme=(h.get("scheme") or "HTTP").upper(),
                     host=h.get("host") or None, headers=headers, **timing)
    if spec.get("tcpSocket"):
        t = spec["tcpSocket"]
        return Probe(kind="tcp", port=resolve_port(t.get("port"), container_ports),
                     host=t.get("host") or None, **timing)
    if spec.get("exec"):
        command = tuple(spec["exec"].get("command") or ())
        if not command:
            raise ProbeConfigError("exec probe has no command")
        return Probe(kind="exec", command=command, **timing)
    raise ProbeConfigError("probe has none of httpGet, tcpSocket, exec")


@dataclass
class ProbeTracker:
    """Consecutive-result bookkeeping for one probe of one container run.

    `passing` starts False for readiness/startup and True for liveness, as in the kubelet.
    """

    probe: Probe
    passing: bool
    successes: int = 0
    failures: int = 0
    last_run: float | None = None
    last_message: str = ""

    @classmethod
    def readiness(cls, probe: Probe) -> "ProbeTracker":
        return cls(probe, passing=False)

    @classmethod
    def startup(cls, probe: Probe) -> "ProbeTracker":
        return cls(probe, passing=False)

    @classmethod
    def liveness(cls, probe: Probe) -> "ProbeTracker":
        return cls(probe, passing=True)

    def due(self, now: float, started_at: float) -> bool:
        if now < started_at + self.probe.initial_delay:
            return False
        return self.last_run is None or now >= self.last_run + self.probe.period

    def record(self, ok: bool, now: float, message: str = "") -> None:
        self.last_run = now
        self.last_message = message
        if ok:
            self.successes += 1
            self.failures = 0
            if self.successes >= self.probe.success_threshold:
                self.passing = True
        else:
            self.failures += 1
            self.successes = 0
            if self.failures >= self.probe.failure_threshold:
                self.passing = False

    @property
    def failed_out(self) -> bool:
        """Liveness/startup verdict: enough consecutive failures to restart the container."""
        return self.failures >= self.probe.failure_threshold


@dataclass
class ContainerProbes:
    startup: ProbeTracker | None = None
    readiness: ProbeTracker | None = None
    liveness: ProbeTracker | None = None
    startup_passed: bool = field(default=False)

    @classmethod
    def from_container(cls, container: dict) -> "ContainerProbes":
        ports = container.get("ports") or ()
        s = parse_probe(container.get("startupProbe"), ports)
        r = parse_probe(container.get("readinessProbe"), ports)
        lv = parse_probe(container.get("livenessProbe"), ports)
        return cls(
            startup=ProbeTracker.startup(s) if s else None,
            readiness=ProbeTracker.readiness(r) if r else None,
            liveness=ProbeTracker.liveness(lv) if lv else None,
            startup_passed=s is None,
        )

    def due(self, now: float, started_at: float) -> list[tuple[str, ProbeTracker]]:
        """Probes to run now. Readiness and liveness wait for the startup probe, as in the kubelet."""
        if not self.startup_passed:
            return [("startup", self.startup)] if self.startup and self.startup.due(now, started_at) else []
        due = []
        for name in ("readiness", "liveness"):
            tracker = getattr(self, name)
            if tracker and tracker.due(now, started_at):
                due.append((name, tracker))
        return due

    def record(self, which: str, ok: bool, now: float, message: str = "") -> None:
        tracker = getattr(self, which)
        tracker.record(ok, now, message)
        if which == "startup" and tracker.passing:
            self.startup_passed = True

    @property
    def started(self) -> bool:
        return self.startup_passed

    @property
    def ready(self) -> bool:
        if not self.startup_passed:
            return False
        return self.readiness.passing if self.readiness else True

    def restart_reason(self) -> str | None:
        """Why the kubelet would kill this container now, or None."""
        if self.startup and not self.startup_passed and self.startup.failed_out:
            return f"Startup probe failed: {self.startup.last_message}"
        if self.startup_passed and self.liveness and self.liveness.failed_out:
            return f"Liveness probe failed: {self.liveness.last_message}"
        return None
