"""Run `helm` on the project's chart (charts/llmops): render, lint, install. Used by tests and CI."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import yaml

from llmops_sandbox.tools.helm import helm_path

CHART_DIR = Path(__file__).resolve().parents[4] / "charts" / "llmops"

# Non-default value combinations that tests lint, render and dry-run against an API server.
VALUE_COMBINATIONS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "namespaced": {"operator": {"watchNamespaces": ["team-a", "team-b"]}},
    "no-webhook": {"webhook": {"enabled": False}},
    "high-availability": {"operator": {"leaderElection": {"enabled": True, "replicas": 2}}},
    "cert-manager": {"webhook": {"certificates": {"mode": "certManager"}}},
    "cert-manager-issuer": {"webhook": {"certificates": {
        "mode": "certManager", "certManager": {"issuerRef": {"kind": "ClusterIssuer", "name": "corp-ca"}}}}},
    "existing-cert": {"webhook": {"failurePolicy": "Ignore", "certificates": {
        "mode": "existing", "existingSecret": "my-tls", "caBundle": "UEVN"}}},  # base64 of "PEM"
    "monitoring-forced": {"monitoring": {"assumePrometheusOperator": True, "labels": {"release": "kps"}}},
    "everything-off": {"webhook": {"enabled": False}, "rbac": {"create": False},
                       "serviceAccount": {"create": False, "name": "existing-sa"},
                       "monitoring": {"serviceMonitor": {"enabled": False}, "podMonitor": {"enabled": False},
                                      "prometheusRule": {"enabled": False}, "grafanaDashboards": {"enabled": False}}},
    "lws-and-prometheus": {"rbac": {"leaderWorkerSet": True},
                           "operator": {"prometheusUrl": "http://prometheus.monitoring:9090", "verbose": True,
                                        "extraArgs": ["--some-flag"]}},
    "activator": {"activator": {"enabled": True, "replicas": 2}},
    "overrides": {"fullnameOverride": "ops", "image": {"tag": "1.2.3"},
                  "operator": {"nodeSelector": {"pool": "system"}, "tolerations": [{"operator": "Exists"}]}},
}


class HelmError(RuntimeError):
    def __init__(self, argv: Sequence[str], result: subprocess.CompletedProcess):
        self.stdout, self.stderr, self.returncode = result.stdout, result.stderr, result.returncode
        super().__init__(f"helm {' '.join(argv[1:3])} failed ({result.returncode}): {result.stderr.strip()[-2000:]}")


def helm(args: Sequence[str], values: Optional[dict[str, Any]] = None, kubeconfig: Optional[str] = None,
         timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
    """Run helm with `args` (+ `-f <values>` when given); raise HelmError on failure if check."""
    env = {**os.environ}
    if kubeconfig:
        env["KUBECONFIG"] = kubeconfig
    # Keep helm's caches and config out of the user's home (tests may run in parallel).
    helm_home = Path(tempfile.gettempdir()) / "llmops-helm-home"
    env.setdefault("HELM_CACHE_HOME", str(helm_home / "cache"))
    env.setdefault("HELM_CONFIG_HOME", str(helm_home / "config"))
    env.setdefault("HELM_DATA_HOME", str(helm_home / "data"))
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="llmops-values-") as values_file:
        argv = [str(helm_path()), *args]
        if values:
            # JSON (a subset of YAML) quotes every string: PyYAML would write 07e35 bare, which
            # Helm's YAML 1.2 parser reads as a number.
            json.dump(values, values_file)
            values_file.flush()
            argv += ["-f", values_file.name]
        result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout)
    if check and result.returncode != 0:
        raise HelmError(argv, result)
    return result


def render(values: Optional[dict[str, Any]] = None, *, release: str = "llmops", namespace: str = "llmops",
           api_versions: Iterable[str] = (), kube_version: str = "1.20.2") -> list[dict[str, Any]]:
    """`helm template` of the chart (CRDs included) as a list of objects."""
    args = ["template", release, str(CHART_DIR), "--namespace", namespace, "--include-crds",
            "--kube-version", kube_version]
    for api_version in api_versions:
        args += ["--api-versions", api_version]
    out = helm(args, values).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def lint(values: Optional[dict[str, Any]] = None) -> subprocess.CompletedProcess:
    return helm(["lint", str(CHART_DIR), "--strict"], values, check=False)
