import pytest

from llmops_sandbox.images import (
    ImageFileError, UnknownImage, container_argv, default_images_text, image_env, normalize_image, parse_images,
)

RULES = parse_images(default_images_text())
PY = "/venv/bin/python"


def test_vllm_image_runs_the_simulator_with_vllm_args():
    argv = container_argv("vllm/vllm-openai:v0.6.3", None, ["--model", "m", "--port", "8000"], RULES, PY)
    assert argv == [PY, "-m", "llmops.cli", "sim", "serve", "--model", "m", "--port", "8000"]


def test_the_images_own_entrypoint_is_stripped():
    argv = container_argv("docker.io/vllm/vllm-openai:latest", ["vllm", "serve"], ["m", "--port", "8000"], RULES, PY)
    assert argv[5:] == ["m", "--port", "8000"]
    argv = container_argv("vllm/vllm-openai:x", ["python3", "-m", "vllm.entrypoints.openai.api_server"],
                          ["--model", "m"], RULES, PY)
    assert argv[5:] == ["--model", "m"]


def test_operator_and_sim_images():
    assert container_argv("llmops/operator:0.1", None, ["run", "--namespace", "x"], RULES, PY) == \
        [PY, "-m", "llmops.cli", "run", "--namespace", "x"]
    assert container_argv("llmops/vllm-sim", None, ["--model", "m"], RULES, PY)[:5] == [PY, "-m", "llmops.cli", "sim", "serve"]


def test_host_image_runs_the_container_command_as_is():
    assert container_argv("llmops/host:1", ["sh", "-c"], ["exit 3"], RULES, PY) == ["sh", "-c", "exit 3"]
    with pytest.raises(UnknownImage, match="has none"):
        container_argv("llmops/host:1", None, None, RULES, PY)


def test_unknown_image_has_an_actionable_message():
    with pytest.raises(UnknownImage, match="not known to the llmops sandbox.*images.yaml"):
        container_argv("nginx:1.25", None, None, RULES, PY)


def test_normalize_image():
    assert normalize_image("vllm/vllm-openai") == "vllm/vllm-openai:latest"
    assert normalize_image("docker.io/library/busybox") == "busybox:latest"
    assert normalize_image("reg:5000/a/b@sha256:abc") == "reg:5000/a/b:latest"
    assert normalize_image("reg:5000/a/b:1") == "reg:5000/a/b:1"


@pytest.mark.parametrize("text, match", [
    ("images: []", "non-empty list"),
    ("images: [{command: [x]}]", r"images\[0\].image"),
    ("images: [{image: 'a:*'}]", r"images\[0\].command"),
])
def test_bad_image_files(text, match):
    with pytest.raises(ImageFileError, match=match):
        parse_images(text)


# --- multi-node groups: leader launcher and Ray workers ---------------------------------------

LEADER_SCRIPT = 'ray start --head --port=6379 && exec vllm serve "$@"'
SERVE_ARGS = ["--model", "m-70B", "--tensor-parallel-size", "4", "--pipeline-parallel-size", "2",
              "--distributed-executor-backend", "ray"]


@pytest.mark.parametrize("image", ["vllm/vllm-openai:v0.11.0", "llmops/vllm-sim:latest"])
def test_group_worker_runs_the_simulated_ray_worker_without_rays_arguments(image):
    argv = container_argv(image, ["ray", "start", "--block", "--address=10.244.1.5:6379"], None, RULES, PY)
    assert argv == [PY, "-m", "llmops.cli", "sim", "worker"]


@pytest.mark.parametrize("image", ["vllm/vllm-openai:v0.11.0", "llmops/vllm-sim:latest"])
def test_group_leader_launcher_is_replaced_and_its_args_go_to_the_simulator(image):
    argv = container_argv(image, ["/bin/sh", "-c", LEADER_SCRIPT, "vllm-leader"], SERVE_ARGS, RULES, PY)
    assert argv == [PY, "-m", "llmops.cli", "sim", "serve", *SERVE_ARGS]


def test_other_commands_of_a_vllm_image_keep_the_unconditional_rule():
    # `sh -c` is not `/bin/sh -c`, and a command merely containing "ray start" is not one starting with it.
    argv = container_argv("vllm/vllm-openai:v0.11.0", ["sh", "-c", "x"], ["--model", "m"], RULES, PY)
    assert argv == [PY, "-m", "llmops.cli", "sim", "serve", "sh", "-c", "x", "--model", "m"]
    argv = container_argv("vllm/vllm-openai:v0.11.0", ["vllm", "serve", "ray", "start"], None, RULES, PY)
    assert argv == [PY, "-m", "llmops.cli", "sim", "serve", "ray", "start"]


def test_rules_are_tried_in_file_order():
    rules = parse_images("""
images:
  - {image: "a:*", whenCommand: [go], argsOnly: true, command: [first]}
  - {image: "a:*", command: [second]}
  - {image: "a:*", whenCommand: [go], command: [never]}
""")
    assert container_argv("a:1", ["go", "now"], ["x"], rules, PY) == ["first", "x"]
    assert container_argv("a:1", ["stop"], ["x"], rules, PY) == ["second", "stop", "x"]
    assert container_argv("a:1", None, ["x"], rules, PY) == ["second", "x"]


def test_an_image_whose_rules_all_want_another_command_says_so():
    rules = parse_images('images: [{image: "a:*", whenCommand: [ray, start], command: [w]}]')
    assert container_argv("a:1", ["ray", "start", "--block"], None, rules, PY) == ["w", "ray", "start", "--block"]
    with pytest.raises(UnknownImage, match=r"only with other commands.*whenCommand"):
        container_argv("a:1", ["ray"], None, rules, PY)


@pytest.mark.parametrize("text, match", [
    ("images: [{image: 'a:*', command: [x], whenCommand: []}]", r"images\[0\].whenCommand"),
    ("images: [{image: 'a:*', command: [x], whenCommand: ray}]", r"images\[0\].whenCommand"),
    ("images: [{image: 'a:*', command: [x], argsOnly: 'yes'}]", r"images\[0\].argsOnly"),
    ("images: [{image: 'a:*', useContainerCommand: true, argsOnly: true}]", r"images\[0\].argsOnly"),
])
def test_bad_group_rule_fields(text, match):
    with pytest.raises(ImageFileError, match=match):
        parse_images(text)


@pytest.mark.parametrize("image", ["llmops/operator:0.1.0", "llmops/vllm-sim:latest"])
def test_stager_downloads_from_the_simulated_hub_and_waiting_runs_for_real(image):
    fetch = container_argv(image, ["llmops", "stage", "fetch"], ["--source", "hf://a/b", "--hold"], RULES, PY)
    assert fetch == [PY, "-m", "llmops.cli", "sim", "stage", "--source", "hf://a/b", "--hold"]
    wait = container_argv(image, ["llmops", "stage", "wait"], ["--dir", "/d"], RULES, PY)
    assert wait == [PY, "-m", "llmops.cli", "stage", "wait", "--dir", "/d"]


@pytest.mark.parametrize("image,command,expected", [
    ("vllm/vllm-openai:v0.11.0", ["vllm", "serve"], {"LLMOPS_SIM_VLLM_VERSION": "0.11.0"}),
    ("docker.io/vllm/vllm-openai:v0.33.0", ["/bin/sh", "-c"], {"LLMOPS_SIM_VLLM_VERSION": "0.33.0"}),
    ("vllm/vllm-openai:latest", [], {}),  # no version in the tag: the simulator's default release
    ("vllm/vllm-openai:v0.11.0", ["ray", "start"], {}),  # a Ray worker runs no vLLM server
])
def test_the_image_tag_selects_the_emulated_vllm_release(image, command, expected):
    assert image_env(image, RULES, command) == expected


def test_env_from_tag_needs_a_capturing_regex():
    with pytest.raises(ImageFileError, match=r"envFromTag: each regex needs a group"):
        parse_images('images: [{image: "x:*", command: [x], envFromTag: {V: "^v"}}]')
