"""Where requests go: a fixed URL, or the ready endpoints of a Kubernetes Service.

Our sandbox has no kube-proxy, so Service cluster IPs do not route; the generator reads
the Service's Endpoints and balances round-robin over ready pod addresses itself,
re-reading them periodically as pods come and go."""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Any, Mapping

log = logging.getLogger(__name__)


class TargetError(Exception):
    """No usable target; the message says what to fix."""


def ready_endpoint_urls(endpoints: Mapping[str, Any], port: str | int | None = None) -> list[str]:
    """Base URLs from a v1 Endpoints object (as a plain dict, camelCase or snake_case keys):
    ready addresses only (notReadyAddresses are skipped), on the port named/numbered
    `port`, else the only port, else the port named 'http', else the first."""
    urls: list[str] = []
    for subset in endpoints.get("subsets") or []:
        ports = subset.get("ports") or []
        chosen = _choose_port(ports, port)
        if chosen is None:
            continue
        for address in subset.get("addresses") or []:
            ip = address.get("ip")
            if ip:
                host = f"[{ip}]" if ":" in ip else ip
                urls.append(f"http://{host}:{chosen}")
    return sorted(set(urls))


def _choose_port(ports: list[Mapping[str, Any]], wanted: str | int | None) -> int | None:
    if not ports:
        return None
    if wanted is not None:
        for p in ports:
            if str(p.get("port")) == str(wanted) or p.get("name") == str(wanted):
                return int(p["port"])
        return None
    if len(ports) == 1:
        return int(ports[0]["port"])
    for p in ports:
        if p.get("name") == "http":
            return int(p["port"])
    return int(ports[0]["port"])


def parse_service_ref(ref: str) -> tuple[str, str]:
    namespace, sep, name = ref.partition("/")
    if not sep or not namespace or not name:
        raise TargetError(f"--service {ref!r}: expected NAMESPACE/NAME, e.g. default/llama")
    return namespace, name


class Targets:
    """Round-robin over the current target URLs."""

    def __init__(self, urls: list[str]):
        self._set(urls)

    def _set(self, urls: list[str]) -> None:
        self.urls = list(urls)
        self._cycle = itertools.cycle(self.urls) if self.urls else None

    def next(self) -> str | None:
        return next(self._cycle) if self._cycle else None

    async def refresh_forever(self) -> None:  # static targets never change
        return None


class ServiceTargets(Targets):
    """Targets from a Service's Endpoints, refreshed every `interval` seconds."""

    def __init__(self, namespace: str, name: str, kubeconfig: str | None, port: str | int | None,
                 interval: float = 5.0):
        super().__init__([])
        self.namespace, self.name, self.port, self.interval = namespace, name, port, interval
        self._api = _core_api(kubeconfig)

    async def resolve(self) -> list[str]:
        from kubernetes.client.exceptions import ApiException

        try:
            endpoints = await asyncio.to_thread(self._api.read_namespaced_endpoints, self.name, self.namespace)
        except ApiException as exc:
            raise TargetError(f"cannot read Endpoints {self.namespace}/{self.name}: {exc.status} {exc.reason}; "
                              "fix: check the Service name and that its pods exist") from None
        data = self._api.api_client.sanitize_for_serialization(endpoints)
        urls = ready_endpoint_urls(data, self.port)
        if urls != self.urls:
            log.info("service %s/%s endpoints: %s", self.namespace, self.name, ", ".join(urls) or "none ready")
            self._set(urls)
        return urls

    async def refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.resolve()
            except TargetError as exc:  # keep the last good list; pods may be restarting
                log.warning("%s", exc)
            except Exception as exc:  # network blips to the API server must not end the run
                log.warning("endpoint refresh failed: %s", exc)


def _core_api(kubeconfig: str | None):
    from kubernetes import client, config

    try:
        if kubeconfig:
            api_client = config.new_client_from_config(config_file=kubeconfig)
        else:
            try:
                config.load_incluster_config()
                api_client = client.ApiClient()
            except config.ConfigException:
                api_client = config.new_client_from_config()
    except (config.ConfigException, OSError) as exc:
        raise TargetError(f"cannot load kubeconfig {kubeconfig or '(default)'}: {exc}; fix: pass --kubeconfig FILE")
    return client.CoreV1Api(api_client)
