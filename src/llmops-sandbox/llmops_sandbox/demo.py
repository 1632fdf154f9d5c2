"""`llmops sandbox demo`: the whole loop on one machine, narrated.

Sandbox up -> CRD -> operator (a local process using the sandbox's Prometheus) -> a sample
LLMDeployment -> load from `llmops load` -> replicas follow demand -> load stops -> replicas
come back down. Each step prints what it waits for; every wait is bounded.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from llmops.api.v1alpha1 import GROUP, PLURAL, VERSION
from llmops.kube import load_api_client
from llmops_load.generator import LoadConfig, run_load_sync
from llmops_sandbox.operator_process import install_crd, start_operator
from llmops.waiting import wait_for

from . import lifecycle
from .state import resolve_dir

SAMPLE = Path(__file__).with_name("demo.yaml")


def say(message: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {message}", flush=True)


def _get(crs: client.CustomObjectsApi, ns: str, name: str) -> dict[str, Any]:
    return crs.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)


def describe(cr: dict[str, Any]) -> str:
    """One line: replicas and the autoscaler's last word (pure)."""
    status = cr.get("status") or {}
    line = (f"replicas desired={cr['spec']['replicas']} ready={status.get('readyReplicas', 0)} "
            f"phase={status.get('phase', '-')}")
    decision = (status.get("autoscaling") or {}).get("lastDecision")
    if decision and decision.get("terms"):
        steady = decision["terms"][0]["inputs"]
        asked = ", ".join(f"{t['name']}={t['replicas']}" for t in decision["terms"])
        line += (f" | autoscaler: {decision['reason']} ({asked}; {steady['arrivalUsed'] or 0:.2f} req/s x "
                 f"{steady['serviceSeconds']:.1f}s = {steady['load']:.1f} busy slots)")
    elif decision:
        values = ", ".join(
            f"{m['name']}={m['value']:.2f}/{m['target']:g}" for m in decision.get("metrics", [])
            if m.get("value") is not None
        )
        line += f" | autoscaler: {decision['reason']} ({values or 'no fresh metrics'})"
    return line


def _apply_sample(api: client.ApiClient, manifest: dict[str, Any]) -> None:
    ns = manifest["metadata"]["namespace"]
    core = client.CoreV1Api(api)
    try:
        core.create_namespace({"metadata": {"name": ns}})
    except ApiException as exc:
        if exc.status != 409:
            raise
    wait_for(lambda: core.read_namespaced_service_account("default", ns), 30,
             f"namespace {ns} has no default ServiceAccount")
    crs = client.CustomObjectsApi(api)
    try:
        crs.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, manifest)
    except ApiException as exc:
        if exc.status != 409:
            raise
        current = _get(crs, ns, manifest["metadata"]["name"])
        manifest = {**manifest, "metadata": {**manifest["metadata"],
                                             "resourceVersion": current["metadata"]["resourceVersion"]}}
        crs.replace_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, manifest["metadata"]["name"], manifest)


class Narrator:
    """Prints the deployment's line whenever it changes."""

    def __init__(self, crs: client.CustomObjectsApi, namespace: str, name: str):
        self.crs, self.namespace, self.name, self.last = crs, namespace, name, None

    def show(self) -> dict[str, Any]:
        cr = _get(self.crs, self.namespace, self.name)
        line = describe(cr)
        if line != self.last:
            say(line)
            self.last = line
        return cr

    def until(self, predicate, timeout: float, every: float = 3.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while not predicate(cr := self.show()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"gave up after {timeout:.0f}s; last state: {self.last}")
            time.sleep(every)
        return cr


def run_demo(args: argparse.Namespace) -> int:
    root = resolve_dir(args.dir)
    say(f"bringing the sandbox up in {root}")
    info, _ = lifecycle.up(lifecycle.UpOptions(dir=root, pin=True), progress=lambda m: say(m))
    if not info.prometheus_url:
        info = lifecycle.start_prometheus(lifecycle.StateDir(root), progress=lambda m: say(m))
    api = load_api_client(str(info.kubeconfig))
    say("installing the LLMDeployment CRD")
    install_crd(api)

    log = Path(tempfile.mkdtemp(prefix="llmops-demo-")) / "operator.log"
    say(f"starting the operator (Prometheus {info.prometheus_url}; log {log})")
    operator = start_operator(str(info.kubeconfig), log, prometheus_url=info.prometheus_url)
    try:
        manifest = yaml.safe_load(Path(args.file or SAMPLE).read_text())
        ns, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
        say(f"applying LLMDeployment {ns}/{name} ({manifest['spec']['model']['source']})")
        _apply_sample(api, manifest)
        narrator = Narrator(client.CustomObjectsApi(api), ns, name)
        narrator.until(lambda cr: (cr.get("status") or {}).get("phase") == "Ready", 120)
        floor = manifest["spec"]["autoscaling"]["minReplicas"]

        say(f"driving load: {args.users} concurrent users for {args.seconds:.0f}s via Service {ns}/{name}")
        reports: list = []
        load = threading.Thread(target=lambda: reports.append(run_load_sync(LoadConfig(
            service=f"{ns}/{name}", kubeconfig=str(info.kubeconfig), concurrency=args.users,
            duration=args.seconds, prompt_tokens=64, max_tokens=64, progress_interval=0, endpoint_refresh=2,
        ))), daemon=True)
        load.start()
        peak = floor
        while load.is_alive():
            peak = max(peak, narrator.show()["spec"]["replicas"])
            load.join(timeout=3)
        if reports:
            say("load finished:\n" + reports[0].table())
        say(f"load stopped; waiting for replicas to come back to {floor} after the scale-down window")
        narrator.until(lambda cr: cr["spec"]["replicas"] == floor
                       and (cr.get("status") or {}).get("readyReplicas") == floor, 180)
        say(f"done: replicas went 1 -> {peak} under load and back to {floor}")
        say(f"the sandbox stays up: export KUBECONFIG={info.kubeconfig}; kubectl get llmd -A; "
            f"`llmops sandbox down` removes it")
        return 0 if peak > floor else 1
    except TimeoutError as exc:
        say(f"FAILED: {exc}\noperator log tail:\n{operator.log_tail()}")
        return 1
    finally:
        operator.stop()


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="sandbox up, operator, sample LLMDeployment, load, watch it scale")
    p.add_argument("--dir", help="sandbox state directory (default $LLMOPS_SANDBOX_DIR or /tmp/llmops-sandbox)")
    p.add_argument("-f", "--file", help="LLMDeployment to use instead of the built-in sample")
    p.add_argument("--users", type=int, default=16, help="concurrent users during the load phase")
    p.add_argument("--seconds", type=float, default=60, help="length of the load phase")
    p.set_defaults(func=run_demo)
