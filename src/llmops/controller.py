"""Kopf wiring. Handlers stay thin: each one calls `reconcile` or `refresh_status`.

Triggers: create / resume / spec change and a periodic drift check on the LLMDeployment,
plus events of the children we own (a Deployment or Service deleted by hand is recreated;
pod readiness changes refresh status promptly; the model-stage DaemonSet and its pods feed
the ModelStaged condition the same way).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import kopf

from llmops import metrics
from llmops.api.v1alpha1 import GROUP, PLURAL, VERSION
from llmops.autoscale.actuator import Scaled, autoscale_once
from llmops.autoscale.prometheus import PrometheusClient
from llmops.kube import Kube, load_api_client
from llmops.inventory import GPUNode
from llmops.reconcile import Note, reconcile, refresh_status
from llmops.render.context import DEFAULT_STAGER_IMAGE
from llmops.render.meta import DEPLOYMENT_LABEL, MANAGED_BY

DRIFT_CHECK_SECONDS = 60
OWNED = {"app.kubernetes.io/managed-by": MANAGED_BY}
ANNOTATION_PREFIX = GROUP

AUTOSCALE_TICK_SECONDS = 2  # each deployment's own evaluationIntervalSeconds gates decisions

# Set by `llmops run` before kopf starts.
KUBECONFIG: str | None = None
PROMETHEUS_URL: str | None = None
STAGER_IMAGE: str = DEFAULT_STAGER_IMAGE
ACTIVATOR: str | None = None  # NAMESPACE/NAME of the activator's Service (--activator)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATION_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration"
    )
    # Explicit watch timeouts: a silently dead watch connection must not freeze the operator.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = 60
    settings.posting.level = logging.WARNING  # our own Events say what happened
    settings.execution.max_workers = 16
    memo.kube = Kube(load_api_client(KUBECONFIG))
    memo.prometheus = PrometheusClient(PROMETHEUS_URL) if PROMETHEUS_URL else None
    memo.capabilities = dataclasses.replace(memo.kube.discover_capabilities(), stager_image=STAGER_IMAGE,
                                            activator=ACTIVATOR)
    logging.getLogger(__name__).info("cluster capabilities: %s", memo.capabilities)


@kopf.on.login()
def login(**_: Any) -> kopf.ConnectionInfo:
    """Credentials from the same loader kube.py uses (in-cluster, else --kubeconfig), so
    Kopf and our client always talk to the same cluster as the same user."""
    cfg = load_api_client(KUBECONFIG).configuration
    if cfg.refresh_api_key_hook:  # in-cluster: re-reads the rotated token file
        cfg.refresh_api_key_hook(cfg)
    token = (cfg.api_key.get("authorization") or cfg.api_key.get("BearerToken") or "").split(" ", 1)[-1] or None
    return kopf.ConnectionInfo(
        server=cfg.host,
        ca_path=cfg.ssl_ca_cert,
        insecure=not cfg.verify_ssl,
        scheme="Bearer" if token else None,
        token=token,
        certificate_path=cfg.cert_file,
        private_key_path=cfg.key_file,
    )


@kopf.index("", "v1", "nodes")
def gpu_nodes(name: str, labels: kopf.Labels, spec: kopf.Spec, status: kopf.Status, **_: Any) -> dict[str, GPUNode]:
    """The cluster's nodes as the planner sees them (GPU product, count, taints)."""
    return {name: GPUNode.from_node(name, dict(labels), dict(spec), dict(status))}


def _nodes(index: kopf.Index) -> list[GPUNode]:
    return [node for store in index.values() for node in store]


def _post(body: Any, notes: list[Note]) -> None:
    # kopf.event posts regardless of settings.posting.level (which only filters log lines).
    for note in notes:
        kopf.event(body, type=note.type, reason=note.reason, message=note.message)


def _reconcile(body: kopf.Body, memo: kopf.Memo, trigger: str, nodes: kopf.Index) -> None:
    started = time.perf_counter()
    try:
        outcome = reconcile(memo.kube, dict(body), memo.capabilities, _nodes(nodes))
    except Exception:
        metrics.RECONCILE_ERRORS.labels(trigger).inc()
        raise
    finally:
        metrics.RECONCILE_SECONDS.labels(trigger).observe(time.perf_counter() - started)
        metrics.RECONCILES.labels(trigger).inc()
    _post(body, outcome.notes)
    metrics.record_replicas(body["metadata"]["namespace"], body["metadata"]["name"], body["spec"], outcome.status)
    if outcome.invalid:
        raise kopf.PermanentError(outcome.invalid)


@kopf.on.resume(GROUP, VERSION, PLURAL, backoff=10)
@kopf.on.create(GROUP, VERSION, PLURAL, backoff=10)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec", backoff=10)
def on_spec(body: kopf.Body, memo: kopf.Memo, reason: str, gpu_nodes: kopf.Index, **_: Any) -> None:
    _reconcile(body, memo, str(reason), gpu_nodes)


@kopf.timer(GROUP, VERSION, PLURAL, interval=DRIFT_CHECK_SECONDS, initial_delay=DRIFT_CHECK_SECONDS)
def drift_check(body: kopf.Body, memo: kopf.Memo, gpu_nodes: kopf.Index, **_: Any) -> None:
    _reconcile(body, memo, "drift", gpu_nodes)


@kopf.on.cleanup()
async def close_clients(memo: kopf.Memo, **_: Any) -> None:
    if getattr(memo, "prometheus", None) is not None:
        await memo.prometheus.close()


def _autoscaling_enabled(spec: kopf.Spec, **_: Any) -> bool:
    policy = spec.get("autoscaling")
    return bool(policy) and policy.get("enabled", True) is not False


@kopf.timer(GROUP, VERSION, PLURAL, interval=AUTOSCALE_TICK_SECONDS, when=_autoscaling_enabled)
async def autoscale(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    result = await autoscale_once(memo.kube, memo.prometheus, dict(body), time.time())
    if result is None:
        return
    evaluation = result.evaluation if isinstance(result, Scaled) else result
    metrics.record_autoscaler(body["metadata"]["namespace"], body["metadata"]["name"], evaluation.decision)
    if isinstance(result, Scaled):
        direction = "ScaledUp" if result.scaled_to > result.scaled_from else "ScaledDown"
        kopf.event(dict(body), type="Normal", reason=direction,
                   message=f"{result.scaled_from} -> {result.scaled_to} replicas: {evaluation.decision.message}"
                   + (f"; {result.victims.note}" if result.victims else ""))


@kopf.on.delete(GROUP, VERSION, PLURAL, optional=True)
def on_delete(name: str, namespace: str, **_: Any) -> None:
    # Owner references garbage-collect the children; nothing to do, and `optional`
    # means no finalizer is added, so deletion can never get stuck on us.
    metrics.forget(namespace, name)


def _owner_of(labels: dict[str, str]) -> str | None:
    return labels.get(DEPLOYMENT_LABEL)


@kopf.on.event("apps", "v1", "deployments", labels=OWNED)
@kopf.on.event("apps", "v1", "statefulsets", labels=OWNED)
@kopf.on.event("apps", "v1", "daemonsets", labels=OWNED)
@kopf.on.event("", "v1", "services", labels=OWNED)
def on_child(event: dict[str, Any], body: kopf.Body, labels: dict[str, str], namespace: str,
             memo: kopf.Memo, gpu_nodes: kopf.Index, **_: Any) -> None:
    owner_name = _owner_of(labels)
    # ADDED: we just created it (or the operator is starting, which resume handles);
    # a Service only matters when it disappears.
    if not owner_name or event.get("type") == "ADDED" or (body.get("kind") == "Service" and event.get("type") != "DELETED"):
        return
    owner = memo.kube.get_llmdeployment(owner_name, namespace)
    if owner is None or owner["metadata"].get("deletionTimestamp"):
        return
    # The workload whose replicas mirror spec.replicas: the Deployment, or the groups' leader set.
    mirrors_replicas = body.get("kind") == "Deployment" or body["metadata"]["name"] == f"{owner_name}-leader"
    replicas_edited = mirrors_replicas and body.get("spec", {}).get("replicas") != owner["spec"].get("replicas")
    if event.get("type") == "DELETED" or replicas_edited:
        # Put the child back now rather than at the next drift check.
        _reconcile(kopf.Body(owner), memo, "child-changed", gpu_nodes)
    else:
        _refresh(memo, owner_name, namespace, gpu_nodes)


@kopf.on.event("", "v1", "pods", labels=OWNED)
def on_pod(labels: dict[str, str], namespace: str, memo: kopf.Memo, gpu_nodes: kopf.Index, **_: Any) -> None:
    owner = _owner_of(labels)
    if owner:
        _refresh(memo, owner, namespace, gpu_nodes)


def on_routed_endpoints(labels: dict[str, str], namespace: str, memo: kopf.Memo, gpu_nodes: kopf.Index,
                        **_: Any) -> None:
    """Endpoints we point at the activator: if the endpoints controller overwrote them while
    the Service still had its selector, the refresh writes them again (llmops.activator.routing)."""
    owner = _owner_of(labels)
    if owner:
        _refresh(memo, owner, namespace, gpu_nodes)


def enable_activator(service: str) -> None:
    """`llmops run --activator NAMESPACE/NAME`: route waking deployments there, and watch
    Endpoints (only then: a cluster's Endpoints change often, and Kopf filters labels client-side)."""
    global ACTIVATOR
    ACTIVATOR = service
    kopf.on.event("", "v1", "endpoints", labels=OWNED, annotations={"llmops.io/route": "activator"})(
        on_routed_endpoints)


def _refresh(memo: kopf.Memo, name: str, namespace: str, nodes: kopf.Index) -> None:
    _, notes = refresh_status(memo.kube, name, namespace, memo.capabilities, _nodes(nodes))
    if notes:
        owner = memo.kube.get_llmdeployment(name, namespace)
        if owner:
            _post(owner, notes)
