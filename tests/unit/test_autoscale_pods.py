"""What the autoscaler reads from pods: capacity, first-start durations, the scheduler's word."""

from llmops.autoscale.pods import COLD_START_HISTORY, merge_cold_starts, pod_facts

NOW = 1_700_000_000.0  # 2023-11-14T22:13:20Z


def iso(epoch: float) -> str:
    import datetime as dt
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod(name, created_ago, ready_after=None, restarts=0, unschedulable=None, deleting=False, phase="Running"):
    conditions = []
    if ready_after is not None:
        conditions.append({"type": "Ready", "status": "True", "lastTransitionTime": iso(NOW - created_ago + ready_after)})
    else:
        conditions.append({"type": "Ready", "status": "False"})
    if unschedulable:
        conditions.append({"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": unschedulable})
    meta = {"name": name, "creationTimestamp": iso(NOW - created_ago)}
    if deleting:
        meta["deletionTimestamp"] = iso(NOW)
    return {"metadata": meta, "status": {"phase": "Pending" if unschedulable else phase, "conditions": conditions,
                                          "containerStatuses": [{"restartCount": restarts}]}}


def test_counts_ages_first_starts_and_the_schedulers_reason():
    why = "0/6 nodes are available: 6 Insufficient nvidia.com/gpu."
    facts = pod_facts(5, [
        pod("a", 600, ready_after=95),
        pod("b", 600, ready_after=130, restarts=1),   # a restart says nothing about a cold start
        pod("c", 40),                                  # loading
        pod("d", 20, unschedulable=why),
        pod("e", 900, ready_after=60, deleting=True),  # terminating: neither
        pod("f", 900, phase="Failed"),
    ], NOW)
    assert (facts.counts.current, facts.counts.ready, facts.counts.starting) == (5, 2, 2)
    assert facts.starting_ages == (20.0, 40.0)
    assert facts.started == (("a", 95.0),)
    assert facts.capacity.unschedulable == 1 and facts.capacity.message == why


def test_cold_start_history_is_one_entry_per_pod_bounded_and_tolerant():
    known = [["a", 90.0], "junk", ["b", "x"]]
    merged = merge_cold_starts(known, (("a", 95.0), ("c", 100.0)))
    assert merged == [["a", 90.0], ["c", 100.0]]
    many = merge_cold_starts([], tuple((f"p{i}", float(i)) for i in range(COLD_START_HISTORY + 5)))
    assert len(many) == COLD_START_HISTORY and many[-1] == [f"p{COLD_START_HISTORY + 4}", float(COLD_START_HISTORY + 4)]
