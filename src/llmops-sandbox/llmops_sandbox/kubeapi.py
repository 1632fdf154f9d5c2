"""The sandbox's only Kubernetes I/O: a thin layer over the official python client."""

from __future__ import annotations

import datetime
import json
from typing import Any, Iterator

import kubernetes
from kubernetes.client.rest import ApiException

from llmops.timestamps import utc_now as now_iso


def now_micro() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def api_client(kubeconfig: str, pool_size: int = 32) -> kubernetes.client.ApiClient:
    config = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(config_file=kubeconfig, client_configuration=config)
    config.connection_pool_maxsize = pool_size
    return kubernetes.client.ApiClient(config)


class NodeApi:
    def __init__(self, client: kubernetes.client.ApiClient):
        self.client = client
        self.core = kubernetes.client.CoreV1Api(client)
        self.coord = kubernetes.client.CoordinationV1Api(client)

    # --- nodes
    def upsert_node(self, node: dict) -> None:
        name = node["metadata"]["name"]
        try:
            self.core.create_node(node)
        except ApiException as exc:
            if exc.status != 409:
                raise
            self.core.patch_node(name, {"metadata": {"labels": node["metadata"]["labels"]},
                                        "spec": {"taints": node.get("spec", {}).get("taints") or None}})

    def patch_node_status(self, name: str, status: dict) -> None:
        self.core.patch_node_status(name, {"status": status})

    def list_nodes(self) -> list[dict]:
        return self._raw(self.core.list_node)["items"]

    def renew_lease(self, node: str, duration: int = 40) -> None:
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": node, "namespace": "kube-node-lease"},
                "spec": {"holderIdentity": node, "leaseDurationSeconds": duration, "renewTime": now_micro()}}
        try:
            self.coord.patch_namespaced_lease(node, "kube-node-lease", {"spec": body["spec"]})
        except ApiException as exc:
            if exc.status != 404:
                raise
            self.coord.create_namespaced_lease("kube-node-lease", body)

    # --- pods
    def list_pods(self) -> tuple[list[dict], str]:
        data = self._raw(self.core.list_pod_for_all_namespaces)
        return data["items"], data["metadata"]["resourceVersion"]

    def watch_pods(self, resource_version: str, timeout_seconds: int = 300) -> Iterator[dict]:
        """Raw watch events ({"type", "object"} with dict objects)."""
        w = kubernetes.watch.Watch()
        yield from w.stream(self.core.list_pod_for_all_namespaces, resource_version=resource_version,
                            timeout_seconds=timeout_seconds, allow_watch_bookmarks=True,
                            deserialize=False)

    def patch_pod_status(self, namespace: str, name: str, status: dict) -> None:
        self.core.patch_namespaced_pod_status(name, namespace, {"status": status})

    def delete_pod_now(self, namespace: str, name: str, uid: str) -> None:
        """What the kubelet does once containers are gone: delete with grace 0, uid-guarded."""
        try:
            self.core.delete_namespaced_pod(name, namespace, body={"gracePeriodSeconds": 0,
                                            "preconditions": {"uid": uid}})
        except ApiException as exc:
            if exc.status not in (404, 409):
                raise

    def get_pod(self, namespace: str, name: str) -> dict | None:
        try:
            return self._raw(self.core.read_namespaced_pod, name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def request_token(self, namespace: str, service_account: str, pod_name: str, pod_uid: str,
                      audience: str, expiration: int = 3600) -> str:
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": {"audiences": [audience], "expirationSeconds": expiration,
                         "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": pod_name, "uid": pod_uid}}}
        result = self.core.create_namespaced_service_account_token(service_account, namespace, body)
        return result.status.token

    def read_data(self, kind: str, namespace: str, name: str) -> dict[str, str] | None:
        """Data of a secret (decoded) or configmap, or None if it does not exist."""
        import base64
        try:
            if kind == "secret":
                obj = self._raw(self.core.read_namespaced_secret, name, namespace)
                return {k: base64.b64decode(v).decode("utf-8", "replace") for k, v in (obj.get("data") or {}).items()}
            obj = self._raw(self.core.read_namespaced_config_map, name, namespace)
            return dict(obj.get("data") or {})
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def read_data_bytes(self, kind: str, namespace: str, name: str) -> dict[str, bytes] | None:
        import base64
        try:
            if kind == "secret":
                obj = self._raw(self.core.read_namespaced_secret, name, namespace)
                return {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
            obj = self._raw(self.core.read_namespaced_config_map, name, namespace)
            out = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
            out.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
            return out
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def post_event(self, namespace: str, pod: dict, reason: str, message: str, type_: str = "Normal",
                   component: str = "llmops-sandbox-agent", host: str = "") -> None:
        meta = pod["metadata"]
        ts = now_iso()
        body = {"apiVersion": "v1", "kind": "Event",
                "metadata": {"generateName": f"{meta['name']}.", "namespace": namespace},
                "involvedObject": {"kind": "Pod", "namespace": namespace, "name": meta["name"],
                                   "uid": meta["uid"], "apiVersion": "v1"},
                "reason": reason, "message": message, "type": type_,
                "source": {"component": component, "host": host},
                "firstTimestamp": ts, "lastTimestamp": ts, "count": 1}
        try:
            self.core.create_namespaced_event(namespace, body)
        except ApiException:
            pass  # events are best effort, as in the kubelet

    @staticmethod
    def _raw(func, *args, **kwargs) -> Any:
        resp = func(*args, _preload_content=False, **kwargs)
        return json.loads(resp.data)
