"""The node agent and its pod workers do not reach into each other: a worker gets a small
WorkerContext (llmops_sandbox.podrunner), never the agent, and imports nothing of agent.py."""

import ast
import dataclasses
from pathlib import Path

import llmops_sandbox.podrunner as podrunner


def test_the_pod_runner_does_not_import_the_agent():
    tree = ast.parse(Path(podrunner.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "agent" not in imported and "llmops_sandbox.agent" not in imported
    attributes = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    assert "agent" not in attributes


def test_a_worker_context_holds_only_what_a_worker_uses():
    fields = {f.name for f in dataclasses.fields(podrunner.WorkerContext)}
    source = Path(podrunner.__file__).read_text()
    used = {name for name in fields if f"ctx.{name}" in source}
    assert used == fields, f"fields no worker reads: {sorted(fields - used)}"
