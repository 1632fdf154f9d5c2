"""The sandbox's own Kubernetes reads (the node services' listings): a thin layer over the
official python client, returning plain dicts."""

from __future__ import annotations

import json
from typing import Any

import kubernetes


def api_client(kubeconfig: str, pool_size: int = 32) -> kubernetes.client.ApiClient:
    config = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(config_file=kubeconfig, client_configuration=config)
    config.connection_pool_maxsize = pool_size
    return kubernetes.client.ApiClient(config)


class ClusterLister:
    """Pods, Services and Endpoints of every namespace, as the API server sends them."""

    def __init__(self, client: kubernetes.client.ApiClient):
        self.core = kubernetes.client.CoreV1Api(client)

    def pods(self) -> list[dict]:
        return self._items(self.core.list_pod_for_all_namespaces)

    def services(self) -> list[dict]:
        return self._items(self.core.list_service_for_all_namespaces)

    def endpoints(self) -> list[dict]:
        return self._items(self.core.list_endpoints_for_all_namespaces)

    @staticmethod
    def _items(func) -> list[Any]:
        return json.loads(func(_preload_content=False).data)["items"]
