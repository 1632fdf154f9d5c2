import pytest

from llmops_sandbox.probes import ContainerProbes, Probe, ProbeConfigError, ProbeTracker, parse_probe

PORTS = [{"name": "http", "containerPort": 8000}]


def test_parse_http_probe_with_named_port_and_defaults():
    p = parse_probe({"httpGet": {"path": "/health", "port": "http"}}, PORTS)
    assert (p.kind, p.port, p.path, p.scheme) == ("http", 8000, "/health", "HTTP")
    assert (p.initial_delay, p.period, p.timeout, p.success_threshold, p.failure_threshold) == (0, 10, 1, 1, 3)


def test_parse_tcp_and_exec_probes():
    assert parse_probe({"tcpSocket": {"port": 9000}, "periodSeconds": 2}).port == 9000
    e = parse_probe({"exec": {"command": ["cat", "/tmp/ok"]}, "failureThreshold": 5})
    assert e.command == ("cat", "/tmp/ok") and e.failure_threshold == 5
    assert parse_probe(None) is None


@pytest.mark.parametrize("spec", [
    {"httpGet": {"port": "metrics"}},
    {"exec": {"command": []}},
    {"periodSeconds": 3},
])
def test_bad_probes(spec):
    with pytest.raises(ProbeConfigError):
        parse_probe(spec, PORTS)


def test_readiness_needs_success_threshold_and_drops_after_failure_threshold():
    t = ProbeTracker.readiness(Probe(kind="tcp", port=1, success_threshold=2, failure_threshold=2, period=1))
    assert not t.passing
    t.record(True, 0)
    assert not t.passing
    t.record(True, 1)
    assert t.passing
    t.record(False, 2)
    assert t.passing
    t.record(False, 3)
    assert not t.passing


def test_probe_timing_honours_initial_delay_and_period():
    t = ProbeTracker.readiness(Probe(kind="tcp", port=1, initial_delay=5, period=3))
    assert not t.due(now=104, started_at=100)
    assert t.due(now=105, started_at=100)
    t.record(True, 105)
    assert not t.due(now=107, started_at=100)
    assert t.due(now=108, started_at=100)


def test_startup_probe_gates_readiness_and_liveness():
    probes = ContainerProbes.from_container({
        "ports": PORTS,
        "startupProbe": {"httpGet": {"port": "http"}, "periodSeconds": 1, "failureThreshold": 2},
        "readinessProbe": {"httpGet": {"port": "http"}, "periodSeconds": 1},
        "livenessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 1},
    })
    assert [name for name, _ in probes.due(0, 0)] == ["startup"]
    assert not probes.started and not probes.ready
    probes.record("startup", True, 0)
    assert probes.started and not probes.ready
    assert sorted(name for name, _ in probes.due(1, 0)) == ["liveness", "readiness"]
    probes.record("readiness", True, 1)
    assert probes.ready and probes.restart_reason() is None


def test_failed_startup_or_liveness_asks_for_a_restart():
    probes = ContainerProbes.from_container({"startupProbe": {"tcpSocket": {"port": 1}, "failureThreshold": 2}})
    probes.record("startup", False, 0, "refused")
    assert probes.restart_reason() is None
    probes.record("startup", False, 1, "refused")
    assert "Startup probe failed: refused" == probes.restart_reason()

    live = ContainerProbes.from_container({"livenessProbe": {"tcpSocket": {"port": 1}, "failureThreshold": 1}})
    assert live.ready and live.started   # no readiness probe: ready once running
    live.record("liveness", False, 0, "timeout")
    assert live.restart_reason() == "Liveness probe failed: timeout"
