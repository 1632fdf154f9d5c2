"""The sandbox's Prometheus: config, scrape targets (pure) and its command line.

Debian's prometheus package is built without Kubernetes service discovery (its config
parser has no `kubernetes_sd_configs`), so the sandbox's node services play that part
(nodeservices.py): they write the scrape targets of pods annotated
`prometheus.io/scrape: "true"` (port from `prometheus.io/port`, path from `prometheus.io/path`)
to a file_sd file, with the labels kubernetes_sd + the usual relabelling would give
(namespace, pod, node, and the pod's labels)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterable

import yaml

SCRAPE_INTERVAL = "2s"
TARGETS_FILE = "targets.json"


def prometheus_config(targets_file: str) -> dict:
    return {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "scrape_timeout": "1s",
                   "evaluation_interval": SCRAPE_INTERVAL},
        "scrape_configs": [{
            "job_name": "kubernetes-pods",
            "file_sd_configs": [{"files": [targets_file], "refresh_interval": "5s"}],
            "relabel_configs": [
                {"source_labels": ["__meta_metrics_path"], "action": "replace",
                 "target_label": "__metrics_path__", "regex": "(.+)"},
            ],
        }],
    }


def prometheus_yaml(targets_file: str) -> str:
    return yaml.safe_dump(prometheus_config(targets_file), sort_keys=False)


def _label_name(key: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", key)


def scrape_target(pod: dict) -> dict | None:
    """The file_sd entry for one pod, or None if it is not to be scraped (pure)."""
    meta = pod.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    status = pod.get("status") or {}
    if annotations.get("prometheus.io/scrape") != "true" or meta.get("deletionTimestamp"):
        return None
    if status.get("phase") != "Running" or not status.get("podIP"):
        return None
    port = annotations.get("prometheus.io/port")
    if not port:
        ports = [p["containerPort"] for c in (pod.get("spec") or {}).get("containers") or ()
                 for p in c.get("ports") or ()]
        if not ports:
            return None
        port = ports[0]
    labels = {_label_name(k): str(v) for k, v in (meta.get("labels") or {}).items()}
    deployment = (meta.get("labels") or {}).get("llmops.io/deployment")
    if deployment:
        # What the chart's PodMonitor relabelling does: the LLMDeployment's name becomes
        # `llmops_deployment`, the label the autoscaler's queries select on.
        labels["llmops_deployment"] = deployment
    labels.update({
        "namespace": meta.get("namespace", ""),
        "pod": meta.get("name", ""),
        "node": (pod.get("spec") or {}).get("nodeName", ""),
        "__meta_metrics_path": annotations.get("prometheus.io/path", "/metrics"),
    })
    return {"targets": [f"{status['podIP']}:{port}"], "labels": labels}


def scrape_targets(pods: Iterable[dict]) -> list[dict]:
    targets = [t for t in (scrape_target(p) for p in pods) if t]
    return sorted(targets, key=lambda t: (t["labels"]["namespace"], t["labels"]["pod"]))


def write_targets(path: Path, targets: list[dict]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(targets, indent=1))
    tmp.replace(path)   # atomic: Prometheus never reads half a file


def prometheus_argv(binary: Path, config_file: Path, data_dir: Path, port: int) -> list[str]:
    return [
        str(binary),
        f"--config.file={config_file}",
        f"--storage.tsdb.path={data_dir}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--storage.tsdb.retention.time=6h",
        "--web.enable-lifecycle",
        "--log.level=warn",
    ]
