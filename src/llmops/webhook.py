"""Validating admission for LLMDeployments, served by the operator through Kopf's webhook server.

`kubectl apply` of a bad manifest is refused with the same problems `llmops validate` prints
(one per line, each naming the field), because both call `llmops.validation.validate_manifest`.

Off unless `llmops run --webhook-port N --webhook-cert-dir DIR` is given: Kopf refuses to start
when validating handlers exist without a server, so the handler is registered only by `enable()`.
The Helm chart owns the ValidatingWebhookConfiguration (rules: CREATE and UPDATE of
llmdeployments, not of their status or scale subresources); Kopf is told not to manage one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

import kopf

from llmops.api.v1alpha1 import GROUP, PLURAL, VERSION
from llmops.validation import InvalidManifest, Problem, api_view, validate_manifest

# The URL path Kopf routes to this handler: https://<service>:<port>/<HANDLER_ID>.
# The chart's ValidatingWebhookConfiguration points at exactly this path.
HANDLER_ID = "validate-llmdeployment"
CERT_FILE = "tls.crt"   # the file names of a kubernetes.io/tls Secret (and of cert-manager's)
KEY_FILE = "tls.key"
# HTTP status in the refusal; kubectl shows it with the message ("Unprocessable Entity").
REFUSAL_CODE = 422


@dataclass(frozen=True)
class WebhookOptions:
    port: int
    cert_dir: Path
    addr: str = "0.0.0.0"

    @property
    def certfile(self) -> Path:
        return self.cert_dir / CERT_FILE

    @property
    def keyfile(self) -> Path:
        return self.cert_dir / KEY_FILE


# -- pure decision ------------------------------------------------------------------------

def admission_problems(operation: str, new: Optional[Mapping[str, Any]],
                       old: Optional[Mapping[str, Any]]) -> list[Problem]:
    """Problems that make the API server refuse this request; empty = admit.

    Only a request that sets a spec is judged: CREATE, or an UPDATE that changes the spec.
    An UPDATE that leaves the spec alone (labels, annotations, finalizers, Kopf's progress
    annotations) is admitted even if the stored spec is invalid, so an object created before
    the webhook existed, or before a validator was added, can still be relabelled, finalized
    and deleted; the operator reports such a spec in its status instead.
    """
    if new is None or operation not in ("CREATE", "UPDATE"):
        return []
    if (new.get("metadata") or {}).get("deletionTimestamp"):
        return []
    if operation == "UPDATE" and old is not None and old.get("spec") == new.get("spec"):
        return []
    try:
        validate_manifest(api_view(new))
    except InvalidManifest as exc:
        return list(exc.problems)
    return []


def refusal_message(body: Mapping[str, Any], problems: list[Problem]) -> str:
    """One line per problem, each naming the field, after a line naming the object."""
    meta = body.get("metadata") or {}
    name = meta.get("name") or meta.get("generateName") or "(unnamed)"
    where = f"{meta['namespace']}/{name}" if meta.get("namespace") else name
    count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
    return "\n".join([f"LLMDeployment {where} is invalid ({count}):", *(f"- {p}" for p in problems)])


# -- Kopf wiring --------------------------------------------------------------------------

def validate_llmdeployment(operation: str, body: kopf.Body, old: Optional[kopf.BodyEssence],
                           new: Optional[kopf.BodyEssence], **_: Any) -> None:
    new_body = dict(body) if new is not None else None
    old_body = dict(old) if old is not None else None
    problems = admission_problems(operation, new_body, old_body)
    if problems:
        raise kopf.AdmissionError(refusal_message(body, problems), code=REFUSAL_CODE)


def check_cert_dir(options: WebhookOptions) -> list[str]:
    """Why the webhook cannot start with these options (empty = it can)."""
    return [f"{path} is missing (mount the webhook certificate Secret at {options.cert_dir})"
            for path in (options.certfile, options.keyfile) if not path.is_file()]


def server(options: WebhookOptions) -> kopf.WebhookServer:
    # Kopf re-reads the files when they change (cert-manager renewals) every file_check_interval.
    return kopf.WebhookServer(
        addr=options.addr,
        port=options.port,
        certfile=str(options.certfile),
        pkeyfile=str(options.keyfile),
        file_check_interval=30,
    )


def enable(options: WebhookOptions, registry: Optional[kopf.OperatorRegistry] = None) -> None:
    """Register the validating handler and a startup hook that starts Kopf's webhook server."""
    registry = registry or kopf.get_default_registry()
    # Subresource None: only the main resource (not /status, not /scale) is judged.
    kopf.on.validate(GROUP, VERSION, PLURAL, id=HANDLER_ID, operations=["CREATE", "UPDATE"],
                     registry=registry)(validate_llmdeployment)

    @kopf.on.startup(id="webhook-server", registry=registry)
    def start_webhook_server(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.admission.server = server(options)
        settings.admission.managed = None  # the Helm chart owns the ValidatingWebhookConfiguration
