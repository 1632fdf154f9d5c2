"""Group readiness gates and whole-group restarts (pure decisions)."""

from __future__ import annotations

from llmops.groups import MEMBERS_ANNOTATION, Restart, SetGate, fingerprint, collect_groups, plan_group_actions

LEADERS = "m-leader"


def pod(name, role, uid, *, group=None, ready=True, containers_ready=None, gate=None, restarts=0,
        members=None, deleting=False):
    labels = {"llmops.io/role": role}
    if group is not None:
        labels["llmops.io/group"] = str(group)
    conditions = [{"type": "Ready", "status": "True" if ready else "False"},
                  {"type": "ContainersReady", "status": "True" if (ready if containers_ready is None else containers_ready) else "False"}]
    if gate is not None:
        conditions.append({"type": "llmops.io/group-ready", "status": gate})
    meta = {"name": name, "uid": uid, "labels": labels,
            "annotations": {MEMBERS_ANNOTATION: members} if members else {}}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta, "status": {"phase": "Running", "conditions": conditions,
                                         "containerStatuses": [{"restartCount": restarts}]}}


def test_pods_are_grouped_by_leader_ordinal_and_worker_label():
    groups = collect_groups([pod("m-leader-1", "leader", "l1"), pod("m-workers-1-0", "worker", "w1", group=1),
                             pod("m-leader-0", "leader", "l0"), pod("other", "worker", "x", group="a")], LEADERS)
    assert sorted(groups) == [0, 1]
    assert groups[1].leader["metadata"]["uid"] == "l1" and len(groups[1].workers) == 1
    assert groups[0].workers == []


def test_complete_group_opens_the_gate_and_records_its_members():
    leader = pod("m-leader-0", "leader", "l0", ready=False, containers_ready=True, gate="False")
    worker = pod("m-workers-0-0", "worker", "w0", group=0)
    [action] = plan_group_actions([leader, worker], LEADERS, group_size=2)
    assert action == SetGate("m-leader-0", True, "l0:0,w0:0")


def test_incomplete_group_keeps_the_gate_closed():
    leader = pod("m-leader-0", "leader", "l0", ready=False, containers_ready=True)
    worker = pod("m-workers-0-0", "worker", "w0", group=0, ready=False)
    assert plan_group_actions([leader, worker], LEADERS, group_size=2) == [SetGate("m-leader-0", False, "")]
    leader = pod("m-leader-0", "leader", "l0", ready=False, containers_ready=True, gate="False")
    assert plan_group_actions([leader, worker], LEADERS, group_size=2) == []


def test_replaced_member_restarts_the_whole_group():
    leader = pod("m-leader-0", "leader", "l0", gate="True", members="l0:0,w0:0")
    replacement = pod("m-workers-0-0", "worker", "w0-new", group=0, ready=False)
    [action] = plan_group_actions([leader, replacement], LEADERS, group_size=2)
    assert isinstance(action, Restart) and action.group == 0
    assert set(action.pods) == {"m-leader-0", "m-workers-0-0"}
    # The deletes carry UID preconditions: exactly the pods observed, never a newer namesake.
    assert dict(zip(action.pods, action.uids)) == {"m-leader-0": "l0", "m-workers-0-0": "w0-new"}


def test_restarted_container_restarts_the_group_but_a_readiness_flap_does_not():
    leader = pod("m-leader-0", "leader", "l0", gate="True", members="l0:0,w0:0")
    crashed = pod("m-workers-0-0", "worker", "w0", group=0, restarts=1)
    assert isinstance(plan_group_actions([leader, crashed], LEADERS, 2)[0], Restart)
    flapping = pod("m-workers-0-0", "worker", "w0", group=0, ready=False)
    assert plan_group_actions([leader, flapping], LEADERS, 2) == [SetGate("m-leader-0", False, "l0:0,w0:0")]


def test_missing_worker_after_forming_restarts_the_group():
    leader = pod("m-leader-0", "leader", "l0", gate="True", members="l0:0,w0:0")
    assert isinstance(plan_group_actions([leader], LEADERS, 2)[0], Restart)


def test_terminating_leader_is_left_to_its_statefulset():
    leader = pod("m-leader-0", "leader", "l0", gate="True", members="l0:0,w0:0", deleting=True)
    assert plan_group_actions([leader], LEADERS, 2) == []


def test_fingerprint_is_order_independent():
    a, b = pod("x", "leader", "u1", restarts=2), pod("y", "worker", "u2", group=0)
    from llmops.groups import Group
    assert fingerprint(Group(0, a, [b])) == fingerprint(Group(0, a, [b])) == "u1:2,u2:0"
