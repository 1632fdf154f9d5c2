"""pytest fixtures for tests that need a Kubernetes cluster.

pytest loads it wherever llmops-sandbox is installed (its `pytest11` entry point).

- If LLMOPS_TEST_KUBECONFIG is set, that cluster is used as is (kind / e2e path);
  fixtures needing sandbox-only things skip there.
- Otherwise the local sandbox ($LLMOPS_SANDBOX_DIR, default /tmp/llmops-sandbox; bridge and
  pod range from $LLMOPS_SANDBOX_BRIDGE / $LLMOPS_SANDBOX_POD_CIDR) is brought up once per
  session. A running one is reused and left running; one the session started is taken down
  at the end unless `llmops sandbox up` pinned it or another pytest session still uses it.

Fixtures: `sandbox` (SandboxHandle), `kubeconfig` (path), `api_client` (kubernetes ApiClient),
`namespace` (fresh per test, deleted after).
"""

from __future__ import annotations

import os
import re
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from llmops.waiting import wait_for

FOREIGN_KUBECONFIG_ENV = "LLMOPS_TEST_KUBECONFIG"


@dataclass
class SandboxHandle:
    """What tests may know about the cluster they run against."""

    kubeconfig: str
    is_sandbox: bool
    dir: Path | None = None

    @property
    def info(self):
        from .state import StateDir
        return StateDir(self.dir).read_info() if self.dir else None

    @property
    def prometheus_url(self) -> str | None:
        info = self.info
        return info.prometheus_url if info else None

    @property
    def prometheus_pod_url(self) -> str | None:
        """Prometheus as seen from inside pods (the bridge gateway IP)."""
        info = self.info
        return info.prometheus_pod_url if info else None

    def require_sandbox(self, why: str = "needs the local llmops sandbox") -> None:
        if not self.is_sandbox:
            pytest.skip(f"{why}; running against {FOREIGN_KUBECONFIG_ENV}={self.kubeconfig}")

    def stop_prometheus(self) -> None:
        from . import lifecycle
        from .state import StateDir
        self.require_sandbox("stops the sandbox's Prometheus")
        lifecycle.stop_prometheus(StateDir(self.dir), progress=lambda m: None)

    def start_prometheus(self) -> str:
        from . import lifecycle
        from .state import StateDir
        self.require_sandbox("starts the sandbox's Prometheus")
        return lifecycle.start_prometheus(StateDir(self.dir), progress=lambda m: None).prometheus_url

    def node_path(self, node: str, path: str) -> Path:
        """Where a node's `path` (e.g. a hostPath volume) lives on this machine."""
        from .state import StateDir
        self.require_sandbox("reads a sandbox node's filesystem")
        return StateDir(self.dir).node_root(node) / path.lstrip("/")

    def pod_log(self, namespace: str, pod: str, container: str) -> str:
        """A container's output, from its kubelet through the API server ("" if there is none yet)."""
        import kubernetes
        client = kubernetes.config.new_client_from_config(config_file=self.kubeconfig)
        try:
            return kubernetes.client.CoreV1Api(client).read_namespaced_pod_log(pod, namespace, container=container)
        except kubernetes.client.rest.ApiException:
            return ""
        finally:
            client.close()

    def container_pid(self, pod: dict, container: str) -> int:
        """The host pid of a running container's main process (pod: the Pod as a dict), from
        its node's containerd."""
        from . import realnodes
        from .state import StateDir
        self.require_sandbox("finds container processes on the sandbox's nodes")
        status = next((c for c in (pod.get("status") or {}).get("containerStatuses") or () if c["name"] == container),
                      None)
        assert status and status.get("containerID"), f"container {container} of {pod['metadata']['name']} has no id yet"
        container_id = status["containerID"].split("://", 1)[-1]
        pids = realnodes.container_pids(StateDir(self.dir), pod["spec"]["nodeName"])
        assert container_id in pids, f"container {container_id[:12]} is not running on {pod['spec']['nodeName']}"
        return pids[container_id]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "cluster: needs a real Kubernetes API server (the sandbox or a kubeconfig)")


@pytest.fixture(scope="session")
def sandbox() -> SandboxHandle:
    foreign = os.environ.get(FOREIGN_KUBECONFIG_ENV)
    if foreign:
        yield SandboxHandle(kubeconfig=foreign, is_sandbox=False)
        return
    from . import lifecycle
    from .state import resolve_dir

    if os.geteuid() != 0:
        pytest.skip("the llmops sandbox needs root (network namespaces); "
                    f"or set {FOREIGN_KUBECONFIG_ENV} to use an existing cluster")
    root = resolve_dir()
    try:
        info, started = lifecycle.up(lifecycle.UpOptions(dir=root),
                                     progress=lambda m: print(f"sandbox: {m}", file=sys.stderr, flush=True))
    except lifecycle.SandboxError as exc:
        pytest.fail(f"could not start the llmops sandbox: {exc}", pytrace=False)
    lifecycle.register_user(root, os.getpid())
    try:
        yield SandboxHandle(kubeconfig=info.kubeconfig, is_sandbox=True, dir=root)
    finally:
        # Only a sandbox this session started goes down, and only if nobody pinned it
        # (`llmops sandbox up`) or joined it (another pytest session) meanwhile.
        if lifecycle.release_user(root, os.getpid()) and started:
            lifecycle.down(root, progress=lambda m: None)


@pytest.fixture(scope="session")
def kubeconfig(sandbox: SandboxHandle) -> str:
    return sandbox.kubeconfig


@pytest.fixture(scope="session")
def api_client(kubeconfig: str):
    import kubernetes
    client = kubernetes.config.new_client_from_config(config_file=kubeconfig)
    yield client
    client.close()


def _server_minor(api_client) -> int:
    import kubernetes
    version = kubernetes.client.VersionApi(api_client).get_code()
    return int(re.sub(r"\D", "", version.minor) or 0)


@pytest.fixture
def namespace(api_client, request: pytest.FixtureRequest) -> str:
    """A fresh namespace (ready for pods: its default ServiceAccount exists), deleted afterwards."""
    import kubernetes
    core = kubernetes.client.CoreV1Api(api_client)
    base = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"t-{base}-{uuid.uuid4().hex[:5]}"
    core.create_namespace({"metadata": {"name": name, "labels": {"llmops.io/test": "true"}}})
    legacy_tokens = _server_minor(api_client) < 24  # pods are rejected until the SA token secret exists

    def default_sa_ready():
        sa = core.read_namespaced_service_account("default", name)
        return sa and (not legacy_tokens or sa.secrets)

    wait_for(default_sa_ready, 30, f"default ServiceAccount of namespace {name} was not created")
    yield name
    try:
        core.delete_namespace(name)
    except kubernetes.client.rest.ApiException as exc:
        if exc.status != 404:
            raise
