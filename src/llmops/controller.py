"""Kopf wiring. Handlers stay thin: watch events only enqueue; workers reconcile.

Every LLMDeployment is a key in one work queue (llmops.workqueue): its own events, its
children's and its pods' events add the key (routing.py decides what each one needs), a
burst coalesces into one entry, and no key is ever reconciled by two workers at once (so two
reconciles that saw different specs cannot prune each other's children). After each full
reconcile the key is re-queued after the drift-check period; a failure is retried with
backoff and its cause logged. Kopf's own per-object handlers (create/update/resume, timers)
would run beside each other for the same object, which is why they are not used for this.

Bodies, children and pods come from the watches (Kopf indices below), not from GETs or LISTs;
a child the cache already shows as rendered is not applied again. The
autoscaler is a separate writer with its own status fields and stays a Kopf timer.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Optional

import kopf

from llmops import metrics
from llmops.api.v1alpha1 import GROUP, PLURAL, VERSION
from llmops.autoscale.actuator import Scaled, autoscale_once
from llmops.autoscale.prometheus import PrometheusClient
from llmops.config import OperatorConfig
from llmops.inventory import GPUNode
from llmops.kube import Kube, load_api_client
from llmops.render import ClusterCapabilities
from llmops.reconcile import Note, merge_notes, reconcile, refresh_status
from llmops.render.meta import MANAGED_BY
from llmops.snapshot import Snapshot
from llmops.routing import Key, child_need, llmdeployment_need, owner_key, pod_need
from llmops.workqueue import FULL, WorkQueue

OWNED = {"app.kubernetes.io/managed-by": MANAGED_BY}
ANNOTATION_PREFIX = GROUP

AUTOSCALE_TICK_SECONDS = 2  # each deployment's own evaluationIntervalSeconds gates decisions

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """What the workers share: the queue, the latest body of each LLMDeployment, the node index."""

    config: OperatorConfig
    capabilities: ClusterCapabilities
    queue: WorkQueue = field(default_factory=WorkQueue)
    bodies: dict[Key, dict[str, Any]] = field(default_factory=dict)
    reconciled_generation: dict[Key, int] = field(default_factory=dict)
    failures: dict[Key, int] = field(default_factory=dict)
    nodes: Any = None  # Kopf's live gpu_nodes index, handed over by the first handler call
    indices: dict[str, Any] = field(default_factory=dict)  # the caches above, handed over likewise
    workers: list[asyncio.Task] = field(default_factory=list)

    def forget(self, key: Key) -> None:
        for table in (self.bodies, self.reconciled_generation, self.failures):
            table.pop(key, None)
        self.queue.forget(key)


def _config(memo: kopf.Memo) -> OperatorConfig:
    return getattr(memo, "config", None) or OperatorConfig()


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    config = _config(memo)
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
    settings.execution.max_workers = 4  # only the small sync handlers below run there
    memo.kube = Kube(load_api_client(config.kubeconfig, pool_size=config.reconcile_workers + 4))
    memo.prometheus = PrometheusClient(config.prometheus_url) if config.prometheus_url else None
    capabilities = dataclasses.replace(await asyncio.to_thread(memo.kube.discover_capabilities),
                                       stager_image=config.stager_image, activator=config.activator)
    log.info("cluster capabilities: %s", capabilities)
    # Kopf hands each object a shallow copy of the memo: what handlers change must live in a
    # shared object (the runtime), never in a memo attribute.
    memo.runtime = Runtime(config, capabilities)
    pool = concurrent.futures.ThreadPoolExecutor(config.reconcile_workers, thread_name_prefix="reconcile")
    memo.runtime.workers = [asyncio.create_task(_worker(memo, pool)) for _ in range(config.reconcile_workers)]


@kopf.on.login()
def login(memo: kopf.Memo, **_: Any) -> kopf.ConnectionInfo:
    """Credentials from the same loader kube.py uses (in-cluster, else --kubeconfig), so
    Kopf and our client always talk to the same cluster as the same user."""
    cfg = load_api_client(_config(memo).kubeconfig).configuration
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


# -- watch-fed caches -------------------------------------------------------------------------
# Kopf indices, not ad-hoc dicts: Kopf runs no resource handler before every index has been
# filled from its initial listing, so a reconcile never mistakes "not listed yet" for "missing".
# Each index maps an LLMDeployment's key to its children (or pods) of one kind.

def _cached(body: kopf.Body) -> Optional[dict[Key, dict[str, Any]]]:
    raw = dict(body)
    key = owner_key(raw)
    if key is None:
        return None
    # managedFields are most of an object's bytes and no decision reads them.
    raw["metadata"] = {k: v for k, v in raw["metadata"].items() if k != "managedFields"}
    return {key: raw}


@kopf.index("apps", "v1", "deployments", labels=OWNED)
def owned_deployments(body: kopf.Body, **_: Any):
    return _cached(body)


@kopf.index("apps", "v1", "statefulsets", labels=OWNED)
def owned_statefulsets(body: kopf.Body, **_: Any):
    return _cached(body)


@kopf.index("apps", "v1", "daemonsets", labels=OWNED)
def owned_daemonsets(body: kopf.Body, **_: Any):
    return _cached(body)


@kopf.index("", "v1", "services", labels=OWNED)
def owned_services(body: kopf.Body, **_: Any):
    return _cached(body)


@kopf.index("policy", "poddisruptionbudgets", labels=OWNED)  # the served version: v1, or v1beta1 before 1.21
def owned_pdbs(body: kopf.Body, **_: Any):
    return _cached(body)


@kopf.index("", "v1", "pods", labels=OWNED)
def owned_pods(body: kopf.Body, **_: Any):
    return _cached(body)


CHILD_INDICES = {"Deployment": "owned_deployments", "StatefulSet": "owned_statefulsets",
                 "DaemonSet": "owned_daemonsets", "Service": "owned_services",
                 "PodDisruptionBudget": "owned_pdbs"}


def _snapshot(runtime: "Runtime", key: Key) -> Optional[Snapshot]:
    if not runtime.indices:
        return None
    children = [obj for name in CHILD_INDICES.values() for obj in runtime.indices[name].get(key, ())]
    return Snapshot.of(children, runtime.indices["owned_pods"].get(key, ()), CHILD_INDICES)


@kopf.index("", "v1", "nodes")
def gpu_nodes(name: str, labels: kopf.Labels, spec: kopf.Spec, status: kopf.Status, **_: Any) -> dict[str, GPUNode]:
    """The cluster's nodes as the planner sees them (GPU product, count, taints)."""
    return {name: GPUNode.from_node(name, dict(labels), dict(spec), dict(status))}


def _nodes(index: Any) -> Optional[list[GPUNode]]:
    return [node for store in index.values() for node in store] if index is not None else None


@kopf.on.cleanup()
async def close_clients(memo: kopf.Memo, **_: Any) -> None:
    for task in getattr(getattr(memo, "runtime", None), "workers", []):
        task.cancel()
    if getattr(memo, "prometheus", None) is not None:
        await memo.prometheus.close()


# -- cluster capabilities that change while the operator runs ---------------------------------
# Discovery at start-up is only the first reading: a CRD such as LeaderWorkerSet can be
# installed or removed at any time. Each change is logged, posted as an Event on the
# deployments it concerns, and every deployment is reconciled with the new reading;
# backend.py makes sure running groups are not swapped without being asked.

CAPABILITY_CRDS = {"leaderworkersets.leaderworkerset.x-k8s.io": ("leader_worker_set", "v1"),
                   "podmonitors.monitoring.coreos.com": ("pod_monitor", "v1")}


def _capability_crd(name: str, **_: Any) -> bool:
    return name in CAPABILITY_CRDS


def crd_serves(crd: dict[str, Any], version: str) -> bool:
    established = any(c.get("type") == "Established" and c.get("status") == "True"
                      for c in (crd.get("status") or {}).get("conditions") or [])
    return established and any(v.get("name") == version and v.get("served")
                               for v in (crd.get("spec") or {}).get("versions") or [])


def capability_note(field_name: str, available: bool) -> Note:
    if field_name == "leader_worker_set":
        if available:
            return Note("Normal", "LeaderWorkerSetInstalled",
                        "LeaderWorkerSet is now installed. Running groups stay StatefulSets (switching re-creates "
                        "every group); set annotation llmops.io/group-backend: LeaderWorkerSet to switch. New "
                        "multi-node deployments use LeaderWorkerSet.")
        return Note("Warning", "LeaderWorkerSetRemoved",
                    "LeaderWorkerSet was removed: groups that ran on it are re-created as StatefulSets.")
    return Note("Normal", "PodMonitorInstalled" if available else "PodMonitorRemoved",
                "PodMonitor (monitoring.coreos.com) is now served" if available
                else "PodMonitor (monitoring.coreos.com) is no longer served")


@kopf.on.event("apiextensions.k8s.io", "v1", "customresourcedefinitions", when=_capability_crd)
async def on_capability_crd(event: dict[str, Any], name: str, memo: kopf.Memo, **_: Any) -> None:
    field_name, version = CAPABILITY_CRDS[name]
    available = event.get("type") != "DELETED" and crd_serves(event["object"], version)
    runtime: Runtime = memo.runtime
    if getattr(runtime.capabilities, field_name) == available:
        return
    runtime.capabilities = dataclasses.replace(runtime.capabilities, **{field_name: available})
    note = capability_note(field_name, available)
    log.warning("cluster capability changed: %s = %s (%s)", field_name, available, note.message)
    for key, body in list(runtime.bodies.items()):
        if field_name != "leader_worker_set" or int((body.get("status") or {}).get("nodesPerReplica") or 1) > 1:
            await asyncio.to_thread(_post, memo.kube, body, [note])
        runtime.queue.add(key, FULL)


# -- events enqueue ------------------------------------------------------------------------
# These handlers are coroutines on purpose: they run in the event loop, the only thread that
# may touch the asyncio work queue (a sync Kopf handler would run in a thread pool).
# Kopf calls resource handlers only after every index (gpu_nodes) is filled
# (kopf/_core/reactor/processing.py waits on `operator_indexed`), so the index handed over
# here is complete before the first key is queued.

@kopf.on.event(GROUP, VERSION, PLURAL)
async def on_llmdeployment(event: dict[str, Any], memo: kopf.Memo, gpu_nodes: kopf.Index, **kwargs: Any) -> None:
    runtime: Runtime = memo.runtime
    runtime.nodes = gpu_nodes
    if not runtime.indices:
        runtime.indices = {name: kwargs[name] for name in (*CHILD_INDICES.values(), "owned_pods")}
    body = event["object"]
    key = (body["metadata"]["namespace"], body["metadata"]["name"])
    if event.get("type") == "DELETED":
        # Owner references garbage-collect the children; nothing to do but forget it.
        runtime.forget(key)
        metrics.forget(*key)
        return
    runtime.bodies[key] = body
    need = llmdeployment_need(event.get("type"), body, runtime.reconciled_generation.get(key))
    if need:
        runtime.queue.add(key, need)


@kopf.on.event("apps", "v1", "deployments", labels=OWNED)
@kopf.on.event("apps", "v1", "statefulsets", labels=OWNED)
@kopf.on.event("apps", "v1", "daemonsets", labels=OWNED)
@kopf.on.event("", "v1", "services", labels=OWNED)
@kopf.on.event("policy", "poddisruptionbudgets", labels=OWNED)
async def on_child(event: dict[str, Any], memo: kopf.Memo, **_: Any) -> None:
    _route(memo.runtime, event, lambda owner: child_need(event.get("type"), event["object"], owner))


@kopf.on.event("", "v1", "pods", labels=OWNED)
async def on_pod(event: dict[str, Any], memo: kopf.Memo, **_: Any) -> None:
    _route(memo.runtime, event, lambda owner: pod_need(event.get("type"), owner))


async def on_routed_endpoints(event: dict[str, Any], memo: kopf.Memo, **_: Any) -> None:
    """Endpoints we point at the activator: if the endpoints controller overwrote them while
    the Service still had its selector, the status refresh writes them again (llmops.activator.routing)."""
    _route(memo.runtime, event, lambda owner: pod_need(event.get("type"), owner))


def watch_routed_endpoints() -> None:
    """`llmops run --activator`: watch Endpoints only then (a cluster's Endpoints change often,
    and Kopf filters labels client-side)."""
    kopf.on.event("", "v1", "endpoints", labels=OWNED, annotations={"llmops.io/route": "activator"})(
        on_routed_endpoints)


def _route(runtime: Runtime, event: dict[str, Any], need_of) -> None:
    key = owner_key(event["object"])
    if key is None:
        return
    need = need_of(runtime.bodies.get(key))
    if need:
        runtime.queue.add(key, need)


# -- workers reconcile -----------------------------------------------------------------------

async def _worker(memo: kopf.Memo, pool: concurrent.futures.Executor) -> None:
    runtime: Runtime = memo.runtime
    loop = asyncio.get_running_loop()
    while True:
        key, need = await runtime.queue.get()
        retry: Optional[float] = None
        try:
            full = await loop.run_in_executor(pool, _process, memo, key, need)
            runtime.failures.pop(key, None)
            if full and key in runtime.bodies:
                runtime.queue.add_after(key, runtime.config.drift_check_seconds, FULL)
        except Exception as exc:  # noqa: BLE001 - one object's failure never stops the others
            attempt = runtime.failures.get(key, 0)
            runtime.failures[key] = attempt + 1
            delays = runtime.config.retry_seconds
            retry = delays[min(attempt, len(delays) - 1)]
            log.warning("reconcile of %s/%s failed (attempt %d, retrying in %gs): %s",
                        key[0], key[1], attempt + 1, retry, _cause(exc), exc_info=attempt == 0)
        finally:
            runtime.queue.done(key)
        if retry is not None and key in runtime.bodies:
            runtime.queue.add_after(key, retry, FULL)


def _cause(exc: BaseException) -> str:
    body = getattr(exc, "body", None)  # an API server refusal says why in its body
    return f"{exc.__class__.__name__}: {body or exc}"


def _process(memo: kopf.Memo, key: Key, need: int) -> bool:
    """One reconcile (or status refresh) of one key, in a worker thread. True if it was full."""
    runtime: Runtime = memo.runtime
    body = runtime.bodies.get(key)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return False
    nodes = _nodes(runtime.nodes)
    if need == FULL:
        trigger = "reconcile"
        started = time.perf_counter()
        try:
            outcome = reconcile(memo.kube, body, runtime.capabilities, nodes, _snapshot(runtime, key))
        except Exception:
            metrics.RECONCILE_ERRORS.labels(trigger).inc()
            raise
        finally:
            metrics.RECONCILE_SECONDS.labels(trigger).observe(time.perf_counter() - started)
            metrics.RECONCILES.labels(trigger).inc()
        runtime.reconciled_generation[key] = body["metadata"].get("generation")
        _post(memo.kube, body, outcome.notes)
        metrics.record_replicas(key[0], key[1], body["spec"], outcome.status)
        if outcome.invalid:
            log.warning("%s/%s not applied: %s", key[0], key[1], outcome.invalid)
        return True
    _, notes = refresh_status(memo.kube, body, runtime.capabilities, nodes, _snapshot(runtime, key))
    _post(memo.kube, body, notes)
    return False


def _post(kube: Kube, body: dict[str, Any], notes: list[Note]) -> None:
    # Events inform; one refused (e.g. the namespace is terminating) must not redo the reconcile.
    for note in merge_notes(notes):
        try:
            kube.post_event(body, note.type, note.reason, note.message)
        except Exception as exc:  # noqa: BLE001
            log.info("event %s on %s not posted: %s", note.reason, body["metadata"]["name"], _cause(exc))


# -- the autoscaler: its own writer, its own status fields ----------------------------------

def _autoscaling_enabled(spec: kopf.Spec, **_: Any) -> bool:
    policy = spec.get("autoscaling")
    return bool(policy) and policy.get("enabled", True) is not False


@kopf.timer(GROUP, VERSION, PLURAL, interval=AUTOSCALE_TICK_SECONDS, when=_autoscaling_enabled)
async def autoscale(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    runtime: Runtime = memo.runtime
    key = (body["metadata"]["namespace"], body["metadata"]["name"])
    pods = list(runtime.indices["owned_pods"].get(key, ())) if runtime.indices else None
    result = await autoscale_once(memo.kube, memo.prometheus, dict(body), time.time(), pods)
    if result is None:
        return
    evaluation = result.evaluation if isinstance(result, Scaled) else result
    metrics.record_autoscaler(body["metadata"]["namespace"], body["metadata"]["name"], evaluation.decision)
    if isinstance(result, Scaled):
        direction = "ScaledUp" if result.scaled_to > result.scaled_from else "ScaledDown"
        kopf.event(dict(body), type="Normal", reason=direction,
                   message=f"{result.scaled_from} -> {result.scaled_to} replicas: {evaluation.decision.message}"
                   + (f"; {result.victims.note}" if result.victims else ""))
