"""`llmops sim worker`: where the simulated Ray worker says it joins (pure parts)."""

from llmops_sim.worker import join_message, leader_address


def test_leader_address_comes_from_the_environment_with_rays_port():
    assert leader_address([], {"LLMOPS_LEADER_ADDRESS": "10.244.2.7"}) == "10.244.2.7:6379"
    assert leader_address(["--block"], {"LLMOPS_LEADER_ADDRESS": " "}) is None


def test_an_explicit_address_argument_wins_and_other_args_are_tolerated():
    env = {"LLMOPS_LEADER_ADDRESS": "10.244.2.7"}
    assert leader_address(["--block", "--address=10.0.0.1:6380", "--num-gpus", "1"], env) == "10.0.0.1:6380"
    assert leader_address(["--address", "h:1"], env) == "h:1"
    assert leader_address(["--address"], env) == "10.244.2.7:6379"


def test_join_message_names_the_group_position_and_gpus():
    message = join_message("10.244.2.7:6379", {"LLMOPS_GROUP_INDEX": "1", "LLMOPS_GROUP_SIZE": "2",
                                               "LLMOPS_SIM_GPU_COUNT": "1", "LLMOPS_SIM_GPU": "NVIDIA-L4"})
    assert "worker 1 of a 2-node group" in message and "at 10.244.2.7:6379 with 1 x NVIDIA-L4" in message
    assert "no connection is made" in message
    assert " with " not in join_message("h:1", {})
