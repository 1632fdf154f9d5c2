"""Bad input gets one clear line naming the field and the fix, from the CLI too."""

from __future__ import annotations

import copy

import pytest

from llmops.cli import main
from llmops.validation import InvalidManifest, load_documents, validate_manifest

VALID = {
    "apiVersion": "llmops.io/v1alpha1",
    "kind": "LLMDeployment",
    "metadata": {"name": "m", "namespace": "ns"},
    "spec": {"model": {"source": "hf://meta-llama/Meta-Llama-3-8B-Instruct"}},
}


def problems_for(**patch):
    doc = copy.deepcopy(VALID)
    for path, value in patch.items():
        node = doc
        *parents, leaf = path.split("__")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    with pytest.raises(InvalidManifest) as info:
        validate_manifest(doc)
    return [str(p) for p in info.value.problems]


def test_valid_manifest_passes_with_defaults():
    d = validate_manifest(VALID)
    assert d.spec.replicas == 1
    assert d.spec.engine.gpu_memory_utilization == 0.9
    assert d.served_name == "m"


def test_unknown_field_names_the_path():
    assert problems_for(spec__sharding={"tensorParalelSize": 2}) == [
        "spec.sharding.tensorParalelSize: unknown field; check the spelling against "
        "`kubectl explain llmd.spec` (fields are camelCase)"
    ]


def test_wrong_type_names_the_field():
    [problem] = problems_for(spec__replicas="three")
    assert problem.startswith("spec.replicas: ")
    assert "integer" in problem


def test_tp_times_pp_beyond_any_node_is_refused_with_fix():
    [problem] = problems_for(spec__sharding={"tensorParallelSize": 8, "pipelineParallelSize": 4})
    assert problem.startswith("spec: sharding: tensorParallelSize x pipelineParallelSize = 32 GPUs")
    assert "allowMultiNode: true" in problem


def test_min_replicas_above_max_is_refused_with_fix():
    [problem] = problems_for(spec__autoscaling={"minReplicas": 5, "maxReplicas": 2})
    assert problem.startswith("spec.autoscaling: ")
    assert "minReplicas (5) is greater than maxReplicas (2)" in problem


@pytest.mark.parametrize("autoscaling, field, text", [
    ({"maxReplicas": 3, "mode": "predictive"}, "spec.autoscaling.mode: ", "'ratio' or 'demand'"),
    ({"maxReplicas": 3, "mode": "demand", "demand": {"coldStartSecondsHint": 0}},
     "spec.autoscaling.demand.coldStartSecondsHint: ", "greater than 0"),
    ({"maxReplicas": 3, "demand": {"fastWindowSeconds": 600, "slowWindowSeconds": 60}},
     "spec.autoscaling.demand: ", "make the slow window at least as long"),
])
def test_bad_demand_settings_name_the_field_and_the_fix(autoscaling, field, text):
    [problem] = problems_for(spec__autoscaling=autoscaling)
    assert problem.startswith(field) and text in problem, problem


def test_unknown_quantization_lists_allowed_values():
    [problem] = problems_for(spec__quantization={"method": "int3"})
    assert problem.startswith("spec.quantization.method: ")
    assert "'awq'" in problem and "'fp8'" in problem


def test_bad_model_source_scheme():
    [problem] = problems_for(spec__model={"source": "ftp://x/y"})
    assert problem.startswith("spec.model.source: ")


def test_extra_args_may_not_override_managed_flags():
    [problem] = problems_for(spec__engine={"extraArgs": ["--tensor-parallel-size=4"]})
    assert "spec.sharding.tensorParallelSize" in problem and problem.startswith("spec.engine.extraArgs")


def test_every_problem_is_reported_at_once():
    problems = problems_for(spec__replicas=-1, spec__engine={"gpuMemoryUtilization": 1.5})
    assert sorted(p.split(":")[0] for p in problems) == ["spec.engine.gpuMemoryUtilization", "spec.replicas"]


def test_list_items_are_indexed_in_paths():
    [problem] = problems_for(spec__autoscaling={"maxReplicas": 2, "metrics": [{"type": "queue", "target": 1}]})
    assert problem.startswith("spec.autoscaling.metrics[0].type: ")


def test_invalid_name_is_refused():
    doc = copy.deepcopy(VALID)
    doc["metadata"]["name"] = "Llama_3"
    with pytest.raises(InvalidManifest) as info:
        validate_manifest(doc)
    assert str(info.value.problems[0]).startswith("metadata.name: ")


def test_bad_yaml_points_at_line():
    with pytest.raises(InvalidManifest) as info:
        load_documents("spec:\n  model: [unclosed\n", source="x.yaml")
    assert str(info.value.problems[0]).startswith("x.yaml:")
    assert "invalid YAML" in str(info.value.problems[0])


@pytest.mark.parametrize(
    "content, expected",
    [
        ("spec: [", "invalid YAML"),
        ("", "no LLMDeployment found"),
        ("apiVersion: llmops.io/v1alpha1\nkind: LLMDeployment\nmetadata: {name: a}\nspec: {model: {source: hf://a/b}, replicas: x}\n",
         "spec.replicas"),
    ],
)
def test_cli_validate_prints_one_line_per_problem_and_no_traceback(tmp_path, capsys, content, expected):
    path = tmp_path / "m.yaml"
    path.write_text(content)
    code = main(["validate", "-f", str(path)])
    err = capsys.readouterr().err
    assert code != 0
    assert expected in err
    assert "Traceback" not in err


@pytest.mark.parametrize("sample, name", [("llama3-8b.yaml", "llama3-8b"),
                                          ("llama31-8b-edge-prestaged.yaml", "llama31-8b-edge")])
def test_cli_validate_accepts_the_samples(capsys, sample, name):
    assert main(["validate", "-f", f"e2e/samples/{sample}"]) == 0
    assert f"LLMDeployment/{name}: valid" in capsys.readouterr().out


def test_cli_missing_file_is_a_clear_error(capsys):
    assert main(["validate", "-f", "/nonexistent.yaml"]) == 2
    assert "cannot read /nonexistent.yaml" in capsys.readouterr().err


@pytest.mark.parametrize("image, refused", [
    (None, True),                                # the default pin, v0.33.0
    ("vllm/vllm-openai:v0.33.0", True),
    ("vllm/vllm-openai:v0.11.0", False),
    ("vllm/vllm-openai:latest", False),          # unknown release: vLLM decides
])
def test_quantization_methods_the_pinned_release_dropped_are_refused(image, refused):
    doc = copy.deepcopy(VALID)
    doc["spec"]["quantization"] = {"method": "gguf"}
    if image:
        doc["spec"]["engine"] = {"image": image}
    if not refused:
        validate_manifest(doc)
        return
    with pytest.raises(InvalidManifest) as info:
        validate_manifest(doc)
    [problem] = [str(p) for p in info.value.problems]
    assert problem.startswith("spec.quantization.method: vLLM 0.33") and "vllm/vllm-openai:v0.11.0" in problem


@pytest.mark.parametrize("value", [-1, 3601])
def test_drain_seconds_out_of_range_is_refused_with_the_bounds(value):
    [problem] = problems_for(spec__engine__drainSeconds=value)
    assert problem.startswith(f"spec.engine.drainSeconds: {value} is out of range; set 0..3600 seconds")


def test_shutdown_timeout_in_extra_args_points_at_drain_seconds():
    [problem] = problems_for(spec__engine__extraArgs=["--shutdown-timeout=30"])
    assert "spec.engine.drainSeconds" in problem
