"""The ONLY place that talks to the Kubernetes API (official client, dynamic + core).

Everything here is a thin verb: apply with our field manager, get, list, patch status or
replicas, discover what the cluster supports. Decisions live elsewhere.
"""

from __future__ import annotations

import datetime
import functools
import threading
from dataclasses import dataclass
from typing import Any, Optional

from kubernetes import client, config
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import NotFoundError, ResourceNotFoundError

from llmops.api.v1alpha1 import API_VERSION, GROUP, KIND, PLURAL, VERSION
from llmops.render.context import ClusterCapabilities
from llmops.render.meta import FIELD_MANAGER


def load_api_client(kubeconfig: Optional[str] = None, pool_size: Optional[int] = None) -> client.ApiClient:
    """In-cluster credentials when running as a pod, else the kubeconfig. `pool_size`: HTTP
    connections kept open (the client's default is 5 per CPU; one per worker thread is needed)."""
    if kubeconfig is None:
        try:
            config.load_incluster_config()
            cfg = client.Configuration.get_default_copy()
            if pool_size:
                cfg.connection_pool_maxsize = pool_size
            return client.ApiClient(cfg)
        except config.ConfigException:
            pass
    cfg = client.Configuration()
    config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
    if pool_size:
        cfg.connection_pool_maxsize = pool_size
    return client.ApiClient(cfg)


@dataclass
class Kube:
    api: client.ApiClient

    @functools.cached_property
    def dynamic(self) -> DynamicClient:
        return DynamicClient(self.api)

    @functools.cached_property
    def _resource_lock(self) -> threading.Lock:
        return threading.Lock()

    def _resource(self, api_version: str, kind: str):
        with self._resource_lock:  # discovery cache is not thread-safe while it fills
            return self.dynamic.resources.get(api_version=api_version, kind=kind)

    # -- generic verbs -------------------------------------------------------------

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply with our field manager; we own every field we render."""
        resource = self._resource(obj["apiVersion"], obj["kind"])
        result = self.dynamic.server_side_apply(
            resource,
            body=obj,
            name=obj["metadata"]["name"],
            namespace=obj["metadata"].get("namespace"),
            field_manager=FIELD_MANAGER,
            force_conflicts=True,
        )
        return result.to_dict()

    def get(self, api_version: str, kind: str, name: str, namespace: Optional[str]) -> Optional[dict[str, Any]]:
        try:
            return self._resource(api_version, kind).get(name=name, namespace=namespace).to_dict()
        except NotFoundError:
            return None

    def list(self, api_version: str, kind: str, namespace: Optional[str], selector: str = "") -> list[dict[str, Any]]:
        result = self._resource(api_version, kind).get(namespace=namespace, label_selector=selector)
        return [item.to_dict() for item in result.items]

    def delete(self, api_version: str, kind: str, name: str, namespace: Optional[str]) -> None:
        try:
            self._resource(api_version, kind).delete(name=name, namespace=namespace)
        except NotFoundError:
            pass

    # -- LLMDeployment verbs ------------------------------------------------------------

    def get_llmdeployment(self, name: str, namespace: str) -> Optional[dict[str, Any]]:
        return self.get(API_VERSION, KIND, name, namespace)

    def apply_llmdeployment_status(self, name: str, namespace: str, status: dict[str, Any], manager: str) -> None:
        """Server-side apply on /status as `manager`: the API server merges each writer's
        fields (conditions keyed by type) and drops only fields this manager stopped sending,
        so concurrent writers cannot replace or roll back each other's fields.
        Forced: our writers own disjoint fields; force only takes over fields an older
        operator wrote with merge patches."""
        body = {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": name, "namespace": namespace},
                "status": status}
        try:
            client.CustomObjectsApi(self.api).patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, PLURAL, name, body,
                field_manager=manager, force=True, _content_type="application/apply-patch+yaml",
            )
        except client.ApiException as exc:
            if exc.status != 404:  # deleted meanwhile: nothing left to report on
                raise

    def list_llmdeployments(self) -> list[dict[str, Any]]:
        """Every LLMDeployment the caller may list (all namespaces): the activator's registry."""
        result = client.CustomObjectsApi(self.api).list_cluster_custom_object(GROUP, VERSION, PLURAL)
        return list(result.get("items") or [])

    def annotate_llmdeployment(self, name: str, namespace: str, annotations: dict[str, str]) -> None:
        """A merge patch of annotations only (the activator's wake signal, llmops.io/wake)."""
        client.CustomObjectsApi(self.api).patch_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name, {"metadata": {"annotations": annotations}}
        )

    def scale_llmdeployment(self, name: str, namespace: str, replicas: int) -> None:
        """Write spec.replicas through the /scale subresource, as any autoscaler would."""
        client.CustomObjectsApi(self.api).patch_namespaced_custom_object_scale(
            GROUP, VERSION, namespace, PLURAL, name, {"spec": {"replicas": replicas}}
        )

    def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        pods = client.CoreV1Api(self.api).list_namespaced_pod(namespace, label_selector=selector)
        return [self.api.sanitize_for_serialization(p) for p in pods.items]

    def set_pod_condition(self, namespace: str, name: str, condition: dict[str, Any]) -> None:
        """Strategic merge keyed by condition type: the kubelet's conditions stay untouched."""
        client.CoreV1Api(self.api).patch_namespaced_pod_status(
            name, namespace, {"status": {"conditions": [condition]}},
            _content_type="application/strategic-merge-patch+json",
        )

    def annotate_pod(self, namespace: str, name: str, annotations: dict[str, str]) -> None:
        client.CoreV1Api(self.api).patch_namespaced_pod(name, namespace, {"metadata": {"annotations": annotations}})

    def annotate_pod_if_present(self, namespace: str, name: str, annotations: dict[str, str]) -> bool:
        """annotate_pod for a pod that may have gone meanwhile (False then)."""
        try:
            self.annotate_pod(namespace, name, annotations)
            return True
        except client.ApiException as exc:
            if exc.status != 404:
                raise
            return False

    def delete_pod(self, namespace: str, name: str, uid: str) -> bool:
        """Delete exactly the pod that was observed: the UID precondition makes the API server
        refuse (409) when a replacement of the same name exists. False when it was gone."""
        options = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=uid))
        try:
            client.CoreV1Api(self.api).delete_namespaced_pod(name, namespace, body=options, _preload_content=False)
            return True
        except client.ApiException as exc:
            if exc.status in (404, 409):
                return False
            raise

    def post_event(self, involved: dict[str, Any], type_: str, reason: str, message: str) -> None:
        """A Kubernetes Event on `involved` (an LLMDeployment), from the operator's component."""
        meta = involved["metadata"]
        now = datetime.datetime.now(datetime.timezone.utc)
        client.CoreV1Api(self.api).create_namespaced_event(meta["namespace"], client.CoreV1Event(
            metadata=client.V1ObjectMeta(generate_name=f"{meta['name']}.", namespace=meta["namespace"]),
            involved_object=client.V1ObjectReference(
                api_version=involved.get("apiVersion"), kind=involved.get("kind"), name=meta["name"],
                namespace=meta["namespace"], uid=meta.get("uid"), resource_version=meta.get("resourceVersion")),
            type=type_, reason=reason, message=message[:1024],
            source=client.V1EventSource(component=FIELD_MANAGER),
            first_timestamp=now, last_timestamp=now, count=1,
        ))

    # -- leader election (leader.py) -----------------------------------------------------------

    def read_lease(self, namespace: str, name: str):
        from llmops.leader import LeaseRecord
        try:
            lease = client.CoordinationV1Api(self.api).read_namespaced_lease(name, namespace)
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        spec = lease.spec
        return LeaseRecord(holder=spec.holder_identity or None,
                           renew_time=spec.renew_time.isoformat() if spec.renew_time else None,
                           duration=float(spec.lease_duration_seconds or 0),
                           transitions=spec.lease_transitions or 0,
                           resource_version=lease.metadata.resource_version)

    def write_lease(self, namespace: str, name: str, holder: str, duration: float, transitions: int,
                    resource_version: Optional[str]) -> bool:
        """Create the Lease (no resource_version) or replace it only if unchanged since read
        (optimistic concurrency: two candidates racing, one wins). False when we lost the race."""
        now = datetime.datetime.now(datetime.timezone.utc)
        body = client.V1Lease(
            metadata=client.V1ObjectMeta(name=name, namespace=namespace, resource_version=resource_version),
            spec=client.V1LeaseSpec(holder_identity=holder or None, lease_duration_seconds=int(duration),
                                    lease_transitions=transitions, renew_time=now if holder else None))
        api = client.CoordinationV1Api(self.api)
        try:
            if resource_version is None:
                api.create_namespaced_lease(namespace, body)
            else:
                api.replace_namespaced_lease(name, namespace, body)
            return True
        except client.ApiException as exc:
            if exc.status == 409:
                return False
            raise

    def list_nodes(self) -> list[dict[str, Any]]:
        return [self.api.sanitize_for_serialization(n) for n in client.CoreV1Api(self.api).list_node().items]

    # -- discovery ----------------------------------------------------------------------

    def discover_capabilities(self) -> ClusterCapabilities:
        return ClusterCapabilities(
            pdb_api_version="policy/v1" if self._served("policy/v1", "PodDisruptionBudget") else "policy/v1beta1",
            leader_worker_set=self._served("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet"),
            pod_monitor=self._served("monitoring.coreos.com/v1", "PodMonitor"),
        )

    def _served(self, api_version: str, kind: str) -> bool:
        try:
            self._resource(api_version, kind)
            return True
        except ResourceNotFoundError:
            return False
