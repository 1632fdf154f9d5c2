"""`llmops plan`: a readable breakdown, JSON for tools, and exit codes that mean something."""

from __future__ import annotations

import json

import pytest

from llmops.cli import main
from llmops.planner.cli import parse_nodes
from llmops.planner.fit import NodeGPUs

FITS = """
apiVersion: llmops.io/v1alpha1
kind: LLMDeployment
metadata: {name: small}
spec:
  model: {source: hf://meta-llama/Meta-Llama-3-8B-Instruct}
  resources: {gpu: {type: NVIDIA-L4}}
"""

FP8_ON_T4 = """
apiVersion: llmops.io/v1alpha1
kind: LLMDeployment
metadata: {name: old-gpu}
spec:
  model: {source: hf://meta-llama/Meta-Llama-3-8B-Instruct}
  quantization: {method: fp8}
  sharding: {tensorParallelSize: 1}
  resources: {gpu: {type: Tesla-T4}}
"""


def write(tmp_path, text):
    path = tmp_path / "m.yaml"
    path.write_text(text)
    return str(path)


def test_plan_prints_the_breakdown(tmp_path, capsys):
    assert main(["plan", "-f", write(tmp_path, FITS)]) == 0
    out = capsys.readouterr().out
    assert "LLMDeployment/small (hf://meta-llama/Meta-Llama-3-8B-Instruct)" in out
    assert "figures from https://huggingface.co/meta-llama/Meta-Llama-3-8B/blob/main/config.json" in out
    assert "tensorParallelSize 1 x pipelineParallelSize 1" in out and "chosen by the planner" in out
    for row in ("budget: 0.9 x 22.49 GiB", "weights (bf16/fp16; 14.96 GiB in all)", "left for the KV cache",
                "one 8192-token sequence (minimum)", "headroom", "128 KiB per token", "fits: yes"):
        assert row in out


def test_plan_exits_1_and_names_the_field_when_it_cannot_run(tmp_path, capsys):
    assert main(["plan", "-f", write(tmp_path, FITS + "---" + FP8_ON_T4)]) == 1
    out = capsys.readouterr().out
    assert "LLMDeployment/small" in out  # the good one is still reported
    assert "error: spec.quantization.method: quantization fp8 needs GPU compute capability 8.0" in out


def test_plan_json(tmp_path, capsys):
    assert main(["plan", "-f", write(tmp_path, FITS), "-o", "json"]) == 0
    [report] = json.loads(capsys.readouterr().out)
    assert report["name"] == "LLMDeployment/small" and report["ok"] is True
    assert report["plan"]["tensorParallelSize"] == 1
    assert report["plan"]["memory"]["kvBytesPerToken"] == 131072
    assert report["model"]["layers"] == 32 and report["gpu"]["computeCapability"] == "8.9"


def test_gpu_flag_overrides_the_spec(tmp_path, capsys):
    assert main(["plan", "-f", write(tmp_path, FP8_ON_T4), "--gpu", "NVIDIA-L4", "-o", "json"]) == 0
    [report] = json.loads(capsys.readouterr().out)
    assert report["gpu"]["product"] == "NVIDIA-L4" and report["problems"] == []


def test_nodes_flag_feeds_the_inventory(tmp_path, capsys):
    text = FITS.replace("Meta-Llama-3-8B-Instruct", "Llama-3.3-70B-Instruct").replace(
        "resources:", "sharding: {allowMultiNode: true}\n  resources:")
    assert main(["plan", "-f", write(tmp_path, text), "--nodes", "NVIDIA-L4:8x2", "-o", "json"]) == 0
    [report] = json.loads(capsys.readouterr().out)
    plan = report["plan"]
    assert (plan["tensorParallelSize"], plan["pipelineParallelSize"], plan["nodesPerReplica"]) == (8, 2, 2)
    assert main(["plan", "-f", write(tmp_path, text), "--nodes", "NVIDIA-L4:8"]) == 1
    assert "error: spec." in capsys.readouterr().out


def test_unknown_model_is_a_warning_not_a_failure(tmp_path, capsys):
    text = FITS.replace("meta-llama/Meta-Llama-3-8B-Instruct", "acme/in-house").replace(
        "resources:", "sharding: {tensorParallelSize: 2}\n  resources:")
    assert main(["plan", "-f", write(tmp_path, text)]) == 0
    assert "warning: the planner does not know the model hf://acme/in-house" in capsys.readouterr().out


def test_schema_errors_are_reported_per_document(tmp_path, capsys):
    assert main(["plan", "-f", write(tmp_path, FITS.replace("source:", "sauce:"))]) == 1
    assert "error: spec.model.sauce" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["plan"], "give a manifest with -f FILE"),
    (["plan", "-f", "/nonexistent/m.yaml"], "cannot read /nonexistent/m.yaml"),
    (["plan", "-f", "FILE", "--nodes", "NVIDIA-L4"], "--nodes 'NVIDIA-L4': expected PRODUCT:GPUS"),
])
def test_user_errors_are_one_line(tmp_path, capsys, argv, message):
    argv = [write(tmp_path, FITS) if a == "FILE" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_parse_nodes():
    assert parse_nodes(["NVIDIA-L4:2x2, Tesla-T4:1", "NVIDIA-A10G:4"]) == [
        NodeGPUs("NVIDIA-L4", 2), NodeGPUs("NVIDIA-L4", 2), NodeGPUs("Tesla-T4", 1), NodeGPUs("NVIDIA-A10G", 4)]
    assert parse_nodes(None) is None


def test_list_shows_the_catalogues(capsys):
    assert main(["plan", "--list"]) == 0
    out = capsys.readouterr().out
    assert "Qwen/Qwen3-32B" in out and "Tesla-T4" in out and "config.json" in out
