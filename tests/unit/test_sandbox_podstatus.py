from llmops_sandbox.podstatus import (
    ContainerView, build_pod_status, container_status, pod_phase, restart_backoff, should_restart,
)

NOW, EARLIER = "2024-01-01T00:01:00Z", "2024-01-01T00:00:00Z"


def running(name="c", ready=True, **kw):
    return ContainerView(name=name, image="img", state="running", started_at=EARLIER, ready=ready, started=True, **kw)


def terminated(name="c", code=0, **kw):
    return ContainerView(name=name, image="img", state="terminated", exit_code=code, started_at=EARLIER,
                         finished_at=NOW, reason="Completed" if code == 0 else "Error", **kw)


def status(containers, policy="Always", previous=(), **kw):
    return build_pod_status(containers=containers, restart_policy=policy, pod_ip="10.244.0.9",
                            host_ip="10.244.0.1", start_time=EARLIER, now=NOW, previous_conditions=previous, **kw)


def conds(st):
    return {c["type"]: c for c in st["conditions"]}


def test_ready_running_pod():
    st = status([running()])
    assert st["phase"] == "Running"
    assert st["podIP"] == "10.244.0.9" and st["podIPs"] == [{"ip": "10.244.0.9"}]
    assert st["hostIP"] == "10.244.0.1" and st["startTime"] == EARLIER
    assert {t: c["status"] for t, c in conds(st).items()} == {
        "PodScheduled": "True", "Initialized": "True", "ContainersReady": "True", "Ready": "True"}
    cs = st["containerStatuses"][0]
    assert cs["ready"] and cs["started"] and cs["restartCount"] == 0
    assert cs["state"] == {"running": {"startedAt": EARLIER}}


def test_unready_container_names_itself_in_the_condition():
    c = conds(status([running("a"), running("b", ready=False)]))["Ready"]
    assert c["status"] == "False" and c["reason"] == "ContainersNotReady"
    assert c["message"] == "containers with unready status: [b]"


def test_transition_time_kept_while_status_unchanged():
    previous = [{"type": "Ready", "status": "True", "lastTransitionTime": EARLIER}]
    assert conds(status([running()], previous=previous))["Ready"]["lastTransitionTime"] == EARLIER
    assert conds(status([running(ready=False)], previous=previous))["Ready"]["lastTransitionTime"] == NOW


def test_phases():
    waiting = ContainerView(name="c", image="i", state="waiting", reason="ContainerCreating")
    assert pod_phase([waiting], "Always", True, False) == "Pending"
    assert pod_phase([terminated(code=0)], "Never", True, False) == "Succeeded"
    assert pod_phase([terminated(code=2)], "Never", True, False) == "Failed"
    assert pod_phase([terminated(code=0)], "OnFailure", True, False) == "Succeeded"
    assert pod_phase([terminated(code=1)], "OnFailure", True, False) == "Running"
    backoff = ContainerView(name="c", image="i", state="waiting", reason="CrashLoopBackOff", restart_count=2)
    assert pod_phase([backoff], "Always", True, False) == "Running"
    assert pod_phase([running()], "Always", False, False) == "Pending"   # init containers still running
    assert pod_phase([running()], "Never", True, True) == "Failed"       # init container failed


def test_terminated_and_crashlooping_container_status():
    cs = container_status(terminated(code=3))
    assert cs["state"]["terminated"]["exitCode"] == 3 and cs["state"]["terminated"]["reason"] == "Error"
    assert not cs["ready"]
    last = {"exitCode": 137, "reason": "Error", "startedAt": EARLIER, "finishedAt": NOW}
    cs = container_status(ContainerView(name="c", image="i", state="waiting", reason="CrashLoopBackOff",
                                        message="back-off", restart_count=1, last_terminated=last))
    assert cs["state"] == {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}}
    assert cs["lastState"] == {"terminated": last} and cs["restartCount"] == 1


def test_succeeded_pod_is_not_ready_with_pod_completed():
    st = status([terminated(code=0)], policy="Never")
    assert st["phase"] == "Succeeded" and conds(st)["Ready"]["reason"] == "PodCompleted"


def test_no_pod_ip_before_the_network_exists():
    st = build_pod_status(containers=[ContainerView(name="c", image="i", state="waiting")], restart_policy="Always",
                          pod_ip=None, host_ip="10.244.0.1", start_time=EARLIER, now=NOW)
    assert "podIP" not in st and st["phase"] == "Pending"


def test_init_containers_reported_and_gate_initialized():
    init = ContainerView(name="init", image="i", state="running", started_at=EARLIER)
    st = status([ContainerView(name="c", image="i", state="waiting")], init_containers=[init])
    assert conds(st)["Initialized"]["status"] == "False"
    assert st["initContainerStatuses"][0]["name"] == "init"


def test_readiness_gates_keep_pod_unready_until_true():
    st = status([running()], readiness_gates=["example.com/gate"])
    assert conds(st)["Ready"]["status"] == "False" and conds(st)["ContainersReady"]["status"] == "True"
    gate = {"type": "example.com/gate", "status": "True", "lastTransitionTime": EARLIER}
    st = status([running()], readiness_gates=["example.com/gate"], previous=[gate])
    assert conds(st)["Ready"]["status"] == "True" and conds(st)["example.com/gate"] == gate


def test_restart_policy_and_backoff():
    assert should_restart("Always", 0) and should_restart("OnFailure", 1)
    assert not should_restart("OnFailure", 0) and not should_restart("Never", 1)
    delays = [restart_backoff(n) for n in range(1, 10)]
    assert delays[0] == 2 and delays[1] == 4 and delays == sorted(delays) and delays[-1] == 60


def test_fallback_to_logs_reports_only_the_last_runs_output(tmp_path):
    from llmops_sandbox.podrunner import log_tail

    log = tmp_path / "stage.log"
    assert log_tail(log) is None
    log.write_text("--- 2026-01-01T00:00:00Z starting ['x']\nold error\n"
                   "--- 2026-01-01T00:00:10Z starting ['x']\nlisting\nerror: not enough disk\n")
    assert log_tail(log) == "listing\nerror: not enough disk"
    log.write_text("".join(f"line {i}\n" for i in range(200)))
    tail = log_tail(log)
    assert tail.splitlines()[0] == "line 120" and tail.endswith("line 199")  # the kubelet's 80 lines
