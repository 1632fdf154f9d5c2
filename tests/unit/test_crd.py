"""The committed CRD is exactly what the models generate, and is structural."""

from __future__ import annotations

from pathlib import Path

import yaml

from llmops.crd import build_crd, crd_yaml

CRD_FILE = Path(__file__).resolve().parents[2] / "crds" / "llmdeployments.llmops.io.yaml"


def test_committed_crd_has_not_drifted():
    assert CRD_FILE.read_text() == crd_yaml(), "crds/ drifted from the models: run `llmops crds > " + str(CRD_FILE.relative_to(CRD_FILE.parents[1])) + "`"


def _walk(node, path="openAPIV3Schema"):
    yield path, node
    for key, child in (node.get("properties") or {}).items():
        yield from _walk(child, f"{path}.{key}")
    if "items" in node:
        yield from _walk(node["items"], f"{path}[]")


def test_schema_is_structural():
    schema = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in _walk(schema):
        assert "type" in node, f"{path} has no type"
        assert not {"$ref", "anyOf", "allOf", "oneOf", "$defs", "title"} & node.keys(), path
        if "exclusiveMinimum" in node:
            assert node["exclusiveMinimum"] is True and "minimum" in node, path
        if node["type"] == "object" and "properties" not in node and path != "openAPIV3Schema.metadata":
            assert node.get("x-kubernetes-preserve-unknown-fields") or "additionalProperties" in node, path


def test_scale_and_status_subresources_and_columns():
    version = build_crd()["spec"]["versions"][0]
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    assert "status" in version["subresources"]
    names = [c["name"] for c in version["additionalPrinterColumns"]]
    assert names == ["Model", "TP", "PP", "Ready", "Desired", "Phase", "Staged", "Age"]
    wide_only = [c["name"] for c in version["additionalPrinterColumns"] if c.get("priority")]
    assert wide_only == ["Staged"]  # `kubectl get llmd -o wide`: only pre-staging users care


def test_fields_carry_descriptions_for_kubectl_explain():
    spec = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    sharding = spec["properties"]["sharding"]
    assert sharding["description"]
    assert all(field.get("description") for field in sharding["properties"].values())


def test_short_name_and_yaml_round_trip():
    crd = yaml.safe_load(CRD_FILE.read_text())
    assert crd["spec"]["names"]["shortNames"] == ["llmd"]
    assert crd == build_crd()
