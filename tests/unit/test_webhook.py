"""The admission decision (pure): which requests are refused, and how the refusal reads."""

from __future__ import annotations

import copy

import pytest

from llmops import webhook
from llmops.validation import Problem

VALID = {
    "apiVersion": "llmops.io/v1alpha1",
    "kind": "LLMDeployment",
    "metadata": {"name": "chat", "namespace": "ml", "uid": "u-1", "generation": 1},
    "spec": {"model": {"source": "hf://Qwen/Qwen2.5-0.5B-Instruct"}, "replicas": 1},
}


def invalid() -> dict:
    body = copy.deepcopy(VALID)
    body["spec"]["engine"] = {"dtype": "fp17", "extraArgs": ["--port=9000"]}
    return body


def test_a_valid_create_is_admitted():
    assert webhook.admission_problems("CREATE", VALID, None) == []


def test_an_invalid_create_is_refused_with_every_problem_naming_its_field():
    problems = webhook.admission_problems("CREATE", invalid(), None)
    paths = {p.path for p in problems}
    assert paths == {"spec.engine.dtype", "spec.engine.extraArgs"}
    assert any("fp17" in p.message for p in problems) and any("--port" in p.message for p in problems)


def test_an_update_that_makes_the_spec_invalid_is_refused():
    assert webhook.admission_problems("UPDATE", invalid(), VALID)


def test_an_update_that_leaves_an_invalid_spec_alone_is_admitted():
    """Labels, finalizers and Kopf's annotations must stay writable on an object stored before
    the webhook (or a new validator) existed, or it could never be finalized and deleted."""
    old = invalid()
    new = copy.deepcopy(old)
    new["metadata"]["annotations"] = {"llmops.io/last-handled-configuration": "{}"}
    new["metadata"]["finalizers"] = []
    assert webhook.admission_problems("UPDATE", new, old) == []


def test_an_object_being_deleted_is_never_refused():
    new = invalid()
    new["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert webhook.admission_problems("UPDATE", new, VALID) == []


@pytest.mark.parametrize("operation", ["DELETE", "CONNECT"])
def test_other_operations_are_never_refused(operation):
    assert webhook.admission_problems(operation, invalid(), invalid()) == []


def test_server_metadata_and_status_do_not_make_a_valid_object_invalid():
    body = copy.deepcopy(VALID)
    body["metadata"].update({"resourceVersion": "7", "creationTimestamp": "2026-01-01T00:00:00Z",
                             "managedFields": [{"manager": "kubectl"}], "finalizers": ["x"]})
    body["status"] = {"phase": "Ready", "unknownStatusField": 1}
    assert webhook.admission_problems("CREATE", body, None) == []


def test_refusal_message_has_one_line_per_problem():
    problems = [Problem("spec.engine.dtype", "unknown dtype 'fp17'"), Problem("spec.replicas", "must be >= 0")]
    message = webhook.refusal_message(VALID, problems)
    assert message.splitlines() == [
        "LLMDeployment ml/chat is invalid (2 problems):",
        "- spec.engine.dtype: unknown dtype 'fp17'",
        "- spec.replicas: must be >= 0",
    ]


def test_check_cert_dir_names_the_missing_files(tmp_path):
    options = webhook.WebhookOptions(port=9443, cert_dir=tmp_path)
    assert [m.split(" ")[0] for m in webhook.check_cert_dir(options)] == [str(tmp_path / "tls.crt"), str(tmp_path / "tls.key")]
    (tmp_path / "tls.crt").write_text("x")
    (tmp_path / "tls.key").write_text("x")
    assert webhook.check_cert_dir(options) == []


def test_run_flags_require_both_port_and_cert_dir(tmp_path):
    from llmops.cli import UserError, build_parser
    from llmops.operator_main import _enable_webhook

    parser = build_parser()
    with pytest.raises(UserError, match="--webhook-cert-dir"):
        _enable_webhook(parser.parse_args(["run", "--webhook-port", "9443"]))
    with pytest.raises(UserError, match="--webhook-port"):
        _enable_webhook(parser.parse_args(["run", "--webhook-cert-dir", str(tmp_path)]))
    with pytest.raises(UserError, match="tls.crt"):
        _enable_webhook(parser.parse_args(["run", "--webhook-port", "9443", "--webhook-cert-dir", str(tmp_path)]))
    assert _enable_webhook(parser.parse_args(["run"])) is None  # no flags: no webhook, no error
