import pytest

from llmops_sandbox.ipam import IpAllocator, PoolExhausted


def test_addresses_are_distinct_and_never_the_gateway_or_network():
    alloc = IpAllocator("10.244.0.0/16", "10.244.0.1")
    ips = [alloc.allocate(f"pod-{i}") for i in range(300)]
    assert len(set(ips)) == 300
    assert "10.244.0.1" not in ips and "10.244.0.0" not in ips
    assert ips[0] == "10.244.0.2"
    assert alloc.allocate("pod-7") == ips[7]   # idempotent per key


def test_a_released_address_is_not_handed_out_again_at_once():
    alloc = IpAllocator("10.1.0.0/29", "10.1.0.1")   # hosts .1-.6, .1 is the gateway
    a = alloc.allocate("a")
    alloc.release("a")
    assert alloc.allocate("b") != a


def test_exhaustion_and_reuse_after_release():
    alloc = IpAllocator("10.1.0.0/29", "10.1.0.1")
    for key in "abcde":
        alloc.allocate(key)
    with pytest.raises(PoolExhausted):
        alloc.allocate("f")
    freed = alloc.in_use()["c"]
    alloc.release("c")
    assert alloc.allocate("f") == freed


def test_gateway_must_be_inside_the_range():
    with pytest.raises(ValueError):
        IpAllocator("10.244.0.0/16", "192.168.0.1")
