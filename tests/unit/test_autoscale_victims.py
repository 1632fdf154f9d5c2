"""Scale-down victims: the idlest pods get the lowest pod-deletion-cost; groups are explained."""

from llmops.autoscale.queries import in_flight_by_pod_query
from llmops.autoscale.victims import NOT_READY_COST, deletion_costs, plan_scale_down


def pod(name, ready=True, deleting=False, phase="Running"):
    meta = {"name": name, **({"deletionTimestamp": "2026-12-01T10:00:00Z"} if deleting else {})}
    return {"metadata": meta, "status": {"phase": phase, "conditions": [
        {"type": "Ready", "status": "True" if ready else "False"}]}}


def test_costs_follow_in_flight_work_and_not_ready_pods_go_first():
    pods = [pod("busy"), pod("idle"), pod("loading", ready=False), pod("new"), pod("pending", ready=False, phase="Pending"),
            pod("leaving", deleting=True), pod("done", phase="Succeeded")]
    costs = deletion_costs(pods, {"busy": 7.0, "idle": 0.0, "loading": 0.0, "leaving": 3.0})
    # "new" has no sample yet (not scraped): no traffic to speak of. Terminating and finished pods are left alone.
    assert costs == {"busy": 7, "idle": 0, "loading": NOT_READY_COST, "new": 0, "pending": NOT_READY_COST}


def test_plan_names_the_idlest_pods_as_the_ones_that_go():
    pods = [pod("a"), pod("b"), pod("c")]
    victims = plan_scale_down(pods, {"a": 5, "b": 1, "c": 9}, current=3, desired=1, multi_node=False)
    assert victims.costs == {"a": 5, "b": 1, "c": 9}
    assert "b (1 in flight), a (5 in flight)" in victims.note
    assert "c" not in victims.note.split(":")[1].split(";")[0]


def test_no_plan_unless_scaling_down():
    assert plan_scale_down([pod("a")], {}, current=1, desired=1, multi_node=False) is None
    assert plan_scale_down([pod("a")], {}, current=1, desired=3, multi_node=False) is None


def test_groups_remove_the_highest_index_and_say_so():
    pods = [pod("m-leader-0"), pod("m-leader-1"), pod("m-leader-2"), pod("m-workers-2-0")]
    victims = plan_scale_down(pods, {"m-leader-0": 4, "m-leader-1": 2, "m-leader-2": 6}, current=3, desired=1,
                              multi_node=True)
    assert victims.costs == {}  # a StatefulSet or LeaderWorkerSet does not read deletion costs
    assert victims.note.startswith("removing groups 2, 1 ")
    assert "group 2: 6 in flight, group 1: 2 in flight" in victims.note
    assert "drains" in victims.note


def test_in_flight_query_sums_running_and_waiting_per_pod():
    query = in_flight_by_pod_query("team-a", "llama")
    assert query == ('sum by (pod) (vllm:num_requests_running{namespace="team-a",llmops_deployment="llama"})'
                     ' + sum by (pod) (vllm:num_requests_waiting{namespace="team-a",llmops_deployment="llama"})')
