"""The sandbox as a cluster: real nodes with fake GPUs, scheduling, pod networking, probes, lifecycle."""

from __future__ import annotations

import json
import os
import signal
import urllib.request

import pytest
from kubernetes import client

from llmops_sandbox.processes import alive
from llmops.waiting import wait_for

pytestmark = pytest.mark.cluster

TIMEOUT = 30
GPU = "nvidia.com/gpu"
EDGE_TOLERATION = {"key": "llmops.io/edge", "operator": "Equal", "value": "true", "effect": "NoSchedule"}
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture(autouse=True)
def _sandbox_only(sandbox):
    sandbox.require_sandbox("uses the sandbox's own images and its nodes' containerd")


def http_pod(name, *, gpus=0, ready_after=0.0, port=8080, labels=None, node_selector=None,
             tolerations=None, affinity=None, restart_policy="Always", annotations=None, **extra_spec):
    container = {
        "name": "web", "image": "llmops/test-http:1",
        "args": ["--port", str(port), "--ready-after", str(ready_after)],
        "ports": [{"containerPort": port, "name": "http"}],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 1},
    }
    if gpus:
        container["resources"] = {"limits": {GPU: str(gpus)}}
    spec = {"containers": [container], "restartPolicy": restart_policy, "terminationGracePeriodSeconds": 5}
    if node_selector:
        spec["nodeSelector"] = node_selector
    if tolerations:
        spec["tolerations"] = tolerations
    if affinity:
        spec["affinity"] = affinity
    spec.update(extra_spec)
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": labels or {"app": name}, "annotations": annotations or {}},
            "spec": spec}


def create(core, namespace, pod):
    core.create_namespaced_pod(namespace, pod)
    return pod["metadata"]["name"]


def pod_json(core, namespace, name):
    resp = core.read_namespaced_pod(name, namespace, _preload_content=False)
    return json.loads(resp.data)


def condition(pod, type_):
    return next((c for c in pod.get("status", {}).get("conditions") or () if c["type"] == type_), {})


def wait_ready(core, namespace, name, timeout=TIMEOUT):
    return wait_for(lambda: (p := pod_json(core, namespace, name)) and condition(p, "Ready").get("status") == "True" and p,
                    timeout, f"pod {namespace}/{name} did not become Ready")


def wait_unschedulable(core, namespace, name, timeout=TIMEOUT):
    def check():
        cond = condition(pod_json(core, namespace, name), "PodScheduled")
        return cond.get("status") == "False" and cond.get("reason") == "Unschedulable" and cond
    return wait_for(check, timeout, f"pod {namespace}/{name} was not reported Unschedulable")


def container_pid(core, sandbox, namespace, name, container="web"):
    return sandbox.container_pid(pod_json(core, namespace, name), container)


def http_get(url, timeout=2.0):
    with _NO_PROXY.open(url, timeout=timeout) as resp:
        return resp.status, resp.read().decode()


def processes_in_netns(netns: str) -> list[int]:
    found = []
    for proc in os.listdir("/proc"):
        try:
            if proc.isdigit() and os.readlink(f"/proc/{proc}/ns/net") == netns:
                found.append(int(proc))
        except OSError:
            pass
    return found


def http_unreachable(url, timeout=1.0) -> bool:
    try:
        http_get(url, timeout)
    except OSError:
        return True
    return False


def test_nodes_are_ready_with_gpu_capacity_and_realistic_labels(core):
    nodes = {n.metadata.name: n for n in core.list_node().items}
    a100 = [n for n in nodes.values() if n.metadata.labels.get("nvidia.com/gpu.product") == "NVIDIA-A100-SXM4-80GB"]
    l4 = [n for n in nodes.values() if n.metadata.labels.get("nvidia.com/gpu.product") == "NVIDIA-L4"]
    assert len(a100) == 2 and len(l4) == 4
    assert sorted(n.metadata.labels["topology.kubernetes.io/zone"] for n in l4) == \
        ["sandbox-edge-site-a"] * 2 + ["sandbox-edge-site-b"] * 2
    for n in nodes.values():
        ready = next(c for c in n.status.conditions if c.type == "Ready")
        assert ready.status == "True", n.metadata.name
        assert n.metadata.labels["kubernetes.io/hostname"] == n.metadata.name
        assert n.metadata.labels["topology.kubernetes.io/zone"]
    for n in a100:
        assert n.status.allocatable[GPU] == "4"
        assert n.metadata.labels["nvidia.com/gpu.memory"] == "81920"
        assert not n.spec.taints
    for n in l4:
        assert n.status.allocatable[GPU] == "1"
        assert n.metadata.labels["llmops.io/edge"] == "true"
        assert "node-role.kubernetes.io/edge" in n.metadata.labels
        assert [(t.key, t.value, t.effect) for t in n.spec.taints] == [("llmops.io/edge", "true", "NoSchedule")]


def test_node_leases_are_renewed(api_client):
    coord = client.CoordinationV1Api(api_client)
    leases = {l.metadata.name: l for l in coord.list_namespaced_lease("kube-node-lease").items}
    first = leases["dc-a100-0"].spec.renew_time
    wait_for(lambda: coord.read_namespaced_lease("dc-a100-0", "kube-node-lease").spec.renew_time > first,
             25, "lease of dc-a100-0 was not renewed")


def test_gpu_pod_lands_where_capacity_allows_or_pends_with_scheduler_reason(core, namespace):
    create(core, namespace, http_pod("four-gpus", gpus=4))
    pod = wait_ready(core, namespace, "four-gpus")
    assert pod["spec"]["nodeName"].startswith("dc-a100-")   # edge nodes have 1 GPU and a taint

    create(core, namespace, http_pod("five-gpus", gpus=5))
    cond = wait_unschedulable(core, namespace, "five-gpus")
    assert "Insufficient nvidia.com/gpu" in cond["message"]
    assert pod_json(core, namespace, "five-gpus")["status"].get("phase") == "Pending"


def test_edge_nodes_take_only_tolerating_pods(core, namespace):
    edge = {"llmops.io/edge": "true"}
    create(core, namespace, http_pod("no-toleration", node_selector=edge))
    cond = wait_unschedulable(core, namespace, "no-toleration")
    assert "taint" in cond["message"]

    create(core, namespace, http_pod("tolerates", node_selector=edge, tolerations=[EDGE_TOLERATION], gpus=1))
    pod = wait_ready(core, namespace, "tolerates")
    assert pod["spec"]["nodeName"].startswith(("edge-a-l4-", "edge-b-l4-"))


def test_node_affinity_and_gpu_product_selector_are_honoured(core, namespace):
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["dc-a100-1"]}]}]}}}
    create(core, namespace, http_pod("pinned", affinity=affinity))
    create(core, namespace, http_pod("l4", node_selector={"nvidia.com/gpu.product": "NVIDIA-L4"},
                                     tolerations=[EDGE_TOLERATION]))
    assert wait_ready(core, namespace, "pinned")["spec"]["nodeName"] == "dc-a100-1"
    assert wait_ready(core, namespace, "l4")["spec"]["nodeName"].startswith(("edge-a-l4-", "edge-b-l4-"))


def test_pods_get_distinct_routable_ips_and_a_service_gets_endpoints(core, namespace, sandbox):
    import ipaddress
    for i in range(3):
        create(core, namespace, http_pod(f"web-{i}", labels={"app": "web"}))
    core.create_namespaced_service(namespace, {"metadata": {"name": "web"}, "spec": {
        "selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}})
    pods = [wait_ready(core, namespace, f"web-{i}") for i in range(3)]
    ips = {p["status"]["podIP"] for p in pods}
    assert len(ips) == 3
    pod_range = ipaddress.ip_network(sandbox.info.pod_cidr)
    assert all(ipaddress.ip_address(ip) in pod_range and not ipaddress.ip_address(ip).is_loopback for ip in ips)
    for p in pods:
        assert p["status"]["podIPs"] == [{"ip": p["status"]["podIP"]}]
        assert p["status"]["hostIP"] and p["status"]["startTime"]
        assert {c["type"] for c in p["status"]["conditions"]} >= {"PodScheduled", "Initialized", "ContainersReady", "Ready"}
        cs = p["status"]["containerStatuses"][0]
        assert cs["ready"] and cs["started"] and cs["restartCount"] == 0 and "running" in cs["state"]
        status, body = http_get(f"http://{p['status']['podIP']}:8080/")   # reachable from the host
        assert status == 200 and "test-http" in body

    def endpoint_ips():
        ep = core.read_namespaced_endpoints("web", namespace)
        return {a.ip for s in ep.subsets or () for a in s.addresses or ()}
    wait_for(lambda: endpoint_ips() == ips, TIMEOUT, "service endpoints did not list the three pod IPs")


def test_readiness_follows_the_probe(core, namespace):
    create(core, namespace, http_pod("slow", ready_after=3))
    wait_for(lambda: condition(pod_json(core, namespace, "slow"), "ContainersReady").get("status") == "False"
             and pod_json(core, namespace, "slow")["status"]["containerStatuses"][0]["state"].get("running"),
             TIMEOUT, "pod did not run unready first")
    wait_ready(core, namespace, "slow")


def test_killing_the_process_makes_the_pod_unready_then_it_restarts(core, namespace, sandbox):
    create(core, namespace, http_pod("victim"))
    wait_ready(core, namespace, "victim")
    pid = container_pid(core, sandbox, namespace, "victim")
    os.kill(pid, signal.SIGKILL)

    def restarted_unready_or_ready_again():
        cs = pod_json(core, namespace, "victim")["status"]["containerStatuses"][0]
        return cs["restartCount"] >= 1 and cs
    wait_for(lambda: not pod_json(core, namespace, "victim")["status"]["containerStatuses"][0]["ready"],
             TIMEOUT, "pod stayed ready after its process was killed")
    cs = wait_for(restarted_unready_or_ready_again, TIMEOUT, "container was not restarted")
    assert cs["lastState"]["terminated"]["exitCode"] == 137
    wait_ready(core, namespace, "victim")
    assert container_pid(core, sandbox, namespace, "victim") != pid


def test_restart_policy_never_reports_failure_and_success(core, namespace):
    for name, code in (("fails", 3), ("succeeds", 0)):
        core.create_namespaced_pod(namespace, {"metadata": {"name": name}, "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "c", "image": "llmops/host:1", "command": ["sh", "-c", f"exit {code}"]}]}})
    failed = wait_for(lambda: (p := pod_json(core, namespace, "fails"))["status"].get("phase") == "Failed" and p,
                      TIMEOUT, "pod exiting 3 did not fail")
    term = failed["status"]["containerStatuses"][0]["state"]["terminated"]
    assert term["exitCode"] == 3 and term["reason"] == "Error"
    wait_for(lambda: pod_json(core, namespace, "succeeds")["status"].get("phase") == "Succeeded",
             TIMEOUT, "pod exiting 0 did not succeed")


def test_unknown_image_is_reported_not_silently_pending(core, namespace):
    core.create_namespaced_pod(namespace, {"metadata": {"name": "mystery"}, "spec": {
        "containers": [{"name": "c", "image": "example.com/nope:1"}]}})

    def waiting_reason():
        statuses = pod_json(core, namespace, "mystery")["status"].get("containerStatuses") or []
        return statuses and statuses[0]["state"].get("waiting", {}).get("reason") in ("ErrImagePull", "ImagePullBackOff") and statuses[0]
    cs = wait_for(waiting_reason, TIMEOUT, "unknown image was not reported as an image pull error")
    assert "example.com/nope:1" in cs["state"]["waiting"].get("message", ""), cs


def test_deleting_the_pod_stops_its_process_and_namespace(core, namespace, sandbox):
    create(core, namespace, http_pod("doomed"))
    pod = wait_ready(core, namespace, "doomed")
    pid = container_pid(core, sandbox, namespace, "doomed")
    pod_netns = os.readlink(f"/proc/{pid}/ns/net")     # shared with the pod's pause container
    assert pod_netns != os.readlink("/proc/self/ns/net")
    core.delete_namespaced_pod("doomed", namespace)   # graceful: SIGTERM, then the object goes

    def gone():
        try:
            core.read_namespaced_pod("doomed", namespace)
            return False
        except client.rest.ApiException as exc:
            return exc.status == 404
    wait_for(gone, TIMEOUT, "pod object was not removed after its process stopped")
    assert not alive(pid)
    # The pod sandbox went with it: no process (pause included) is left in the pod's network namespace.
    wait_for(lambda: not processes_in_netns(pod_netns), TIMEOUT, "processes stayed in the deleted pod's namespace")
    assert http_unreachable(f"http://{pod['status']['podIP']}:8080/healthz")


def test_pod_environment_service_account_token_and_rbac(core, namespace, api_client):
    pod = http_pod("envcheck", gpus=2)
    pod["spec"]["containers"][0]["env"] = [
        {"name": "LITERAL", "value": "x-$(POD_NAME)"},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
    ]
    create(core, namespace, pod)
    ip = wait_ready(core, namespace, "envcheck")["status"]["podIP"]
    env = json.loads(http_get(f"http://{ip}:8080/env")[1])
    assert env["POD_NAME"] == "envcheck" and env["POD_IP"] == ip
    assert env["LITERAL"] == "x-$(POD_NAME)"   # only earlier variables expand, as in Kubernetes
    assert env["LLMOPS_SIM_GPU"] == "NVIDIA-A100-SXM4-80GB" and env["LLMOPS_SIM_GPU_COUNT"] == "2"
    sa_dir = "/var/run/secrets/kubernetes.io/serviceaccount"
    assert http_get(f"http://{ip}:8080/file?path={sa_dir}/namespace")[1] == namespace
    assert "BEGIN CERTIFICATE" in http_get(f"http://{ip}:8080/file?path={sa_dir}/ca.crt")[1]
    token = http_get(f"http://{ip}:8080/file?path={sa_dir}/token")[1]
    review = client.AuthenticationV1Api(api_client).create_token_review({"spec": {"token": token}})
    assert review.status.authenticated
    assert review.status.user.username == f"system:serviceaccount:{namespace}:default"


def test_in_cluster_client_in_a_pod_is_subject_to_rbac(core, namespace, api_client, sandbox):
    script = ("import kubernetes\n"
              "kubernetes.config.load_incluster_config()\n"
              "v1 = kubernetes.client.CoreV1Api()\n"
              "try:\n"
              f"    v1.list_namespaced_config_map({namespace!r}); print('RESULT allowed')\n"
              "except kubernetes.client.rest.ApiException as e:\n"
              "    print('RESULT', e.status)\n")

    def run(name):
        core.create_namespaced_pod(namespace, {"metadata": {"name": name}, "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "c", "image": "llmops/host:1",
                            "command": ["python3", "-c", script]}]}})
        wait_for(lambda: pod_json(core, namespace, name)["status"].get("phase") == "Succeeded",
                 TIMEOUT, f"in-cluster client pod {name} did not succeed (kubectl logs -n {namespace} {name})")
        return [l for l in sandbox.pod_log(namespace, name, "c").splitlines() if l.startswith("RESULT")]

    assert run("before") == ["RESULT 403"]
    rbac = client.RbacAuthorizationV1Api(api_client)
    rbac.create_namespaced_role(namespace, {"metadata": {"name": "cm-reader"}, "rules": [
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}]})
    rbac.create_namespaced_role_binding(namespace, {"metadata": {"name": "cm-reader"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "cm-reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": namespace}]})
    assert run("after") == ["RESULT allowed"]


def test_configmap_and_secret_volumes_are_mounted(core, namespace):
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "cfg"}, "data": {"app.yaml": "a: 1\n"}})
    core.create_namespaced_secret(namespace, {"metadata": {"name": "sec"}, "stringData": {"tls.key": "KEY"}})
    pod = http_pod("volumes")
    pod["spec"]["volumes"] = [{"name": "cfg", "configMap": {"name": "cfg"}},
                              {"name": "sec", "secret": {"secretName": "sec"}},
                              {"name": "scratch", "emptyDir": {}}]
    pod["spec"]["containers"][0]["volumeMounts"] = [
        {"name": "cfg", "mountPath": "/run/llmops-test/config"},
        {"name": "sec", "mountPath": "/run/llmops-test/certs", "readOnly": True},
        {"name": "scratch", "mountPath": "/run/llmops-test/scratch"}]
    create(core, namespace, pod)
    ip = wait_ready(core, namespace, "volumes")["status"]["podIP"]
    assert http_get(f"http://{ip}:8080/file?path=/run/llmops-test/config/app.yaml")[1] == "a: 1\n"
    assert http_get(f"http://{ip}:8080/file?path=/run/llmops-test/certs/tls.key")[1] == "KEY"
    assert not os.path.exists("/run/llmops-test")   # mounted in the pod's mount namespace only


def test_prometheus_scrapes_annotated_pods_and_can_be_restarted(core, namespace, sandbox):
    url = sandbox.prometheus_url
    assert url, "sandbox has no Prometheus"
    create(core, namespace, http_pod("scraped", annotations={"prometheus.io/scrape": "true",
                                                             "prometheus.io/port": "8080"}))
    create(core, namespace, http_pod("ignored"))
    wait_ready(core, namespace, "scraped")
    wait_ready(core, namespace, "ignored")

    def up_pods():
        query = urllib.request.quote(f'up{{namespace="{namespace}"}}')
        data = json.loads(http_get(f"{url}/api/v1/query?query={query}")[1])
        return {r["metric"]["pod"]: r["value"][1] for r in data["data"]["result"]}
    wait_for(lambda: up_pods() == {"scraped": "1"}, TIMEOUT, "Prometheus did not scrape exactly the annotated pod")

    # Pods reach the loopback-only Prometheus at the gateway IP.
    script = (f"import urllib.request as u; o = u.build_opener(u.ProxyHandler({{}}));"
              f"print('RESULT', o.open({sandbox.prometheus_pod_url + '/-/ready'!r}, timeout=5).status)")
    core.create_namespaced_pod(namespace, {"metadata": {"name": "asks-prometheus"}, "spec": {
        "restartPolicy": "Never",
        "containers": [{"name": "c", "image": "llmops/host:1", "command": ["python3", "-c", script]}]}})
    wait_for(lambda: pod_json(core, namespace, "asks-prometheus")["status"].get("phase") == "Succeeded",
             TIMEOUT, "pod could not reach Prometheus at the pod URL")
    assert "RESULT 200" in sandbox.pod_log(namespace, "asks-prometheus", "c")

    sandbox.stop_prometheus()
    with pytest.raises(OSError):
        http_get(f"{url}/-/ready")
    assert sandbox.start_prometheus() == url
    wait_for(lambda: up_pods().get("scraped") == "1", TIMEOUT, "restarted Prometheus did not scrape again")


def test_liveness_failure_restarts_and_exec_probe_runs_inside_the_pod(core, namespace):
    pod = http_pod("probed")
    c = pod["spec"]["containers"][0]
    # Only true inside the pod's mount namespace: the host has no service-account dir.
    c["readinessProbe"] = {"exec": {"command": ["cat", "/var/run/secrets/kubernetes.io/serviceaccount/namespace"]},
                           "periodSeconds": 1}
    c["livenessProbe"] = {"tcpSocket": {"port": 9}, "periodSeconds": 1, "failureThreshold": 2,
                          "initialDelaySeconds": 2}
    create(core, namespace, pod)
    wait_ready(core, namespace, "probed")

    def restarted():
        cs = pod_json(core, namespace, "probed")["status"]["containerStatuses"][0]
        return cs["restartCount"] >= 1 and cs
    wait_for(restarted, TIMEOUT, "liveness failures did not restart the container")
    events = core.list_namespaced_event(namespace, field_selector="involvedObject.name=probed").items
    assert any(e.reason == "Unhealthy" and "Liveness probe failed" in e.message for e in events), \
        [(e.reason, e.message) for e in events]


def test_container_logs_through_the_api_server(core, namespace):
    core.create_namespaced_pod(namespace, {"metadata": {"name": "talker"}, "spec": {
        "restartPolicy": "Never",
        "containers": [{"name": "c", "image": "llmops/host:1", "command": ["sh", "-c", "echo one; echo two"]}]}})
    wait_for(lambda: pod_json(core, namespace, "talker")["status"].get("phase") == "Succeeded",
             TIMEOUT, "talker did not finish")
    assert core.read_namespaced_pod_log("talker", namespace, container="c") == "one\ntwo\n"
    assert core.read_namespaced_pod_log("talker", namespace, container="c", tail_lines=1) == "two\n"


def test_host_network_pod_uses_the_node_address(core, namespace, sandbox):
    from llmops_sandbox.lifecycle import free_ports
    port = free_ports(1)[0]
    create(core, namespace, http_pod("hostnet", port=port, hostNetwork=True))
    pod = wait_ready(core, namespace, "hostnet")
    # The node's own network namespace and address, not the host's.
    node = core.read_node(pod["spec"]["nodeName"])
    internal = next(a.address for a in node.status.addresses if a.type == "InternalIP")
    assert pod["status"]["podIP"] == pod["status"]["hostIP"] == internal != sandbox.info.gateway_ip
    assert http_get(f"http://{internal}:{port}/healthz")[0] == 200
    assert http_unreachable(f"http://127.0.0.1:{port}/healthz")


def test_pod_events_are_recorded(core, namespace):
    create(core, namespace, http_pod("evented"))
    wait_ready(core, namespace, "evented")

    def reasons():
        events = core.list_namespaced_event(namespace, field_selector="involvedObject.name=evented").items
        return {e.reason for e in events}
    wait_for(lambda: {"Scheduled", "Started"} <= reasons(), TIMEOUT, "Scheduled/Started events missing")


WEBHOOK_SERVER = r'''
import json, ssl
from http.server import BaseHTTPRequestHandler, HTTPServer
class H(BaseHTTPRequestHandler):
    def do_POST(self):
        review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        labels = review["request"]["object"]["metadata"].get("labels") or {}
        allowed = labels.get("deny") != "yes"
        body = json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": {
            "uid": review["request"]["uid"], "allowed": allowed,
            "status": {"message": "denied by the in-pod webhook"}}}).encode()
        self.send_response(200); self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
srv = HTTPServer(("0.0.0.0", 8443), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain("/run/webhook/tls.crt", "/run/webhook/tls.key")
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
'''


def test_admission_webhook_served_from_a_pod_is_called_at_its_endpoint(core, namespace, api_client):
    import base64
    import datetime

    from cryptography.hazmat.primitives import serialization

    from llmops_sandbox.certs import _key_pem, make_ca, make_serving_cert
    now = datetime.datetime.now(datetime.timezone.utc)
    ca, ca_key = make_ca("webhook-ca", now)
    cert, key = make_serving_cert(ca, ca_key, "hook", [], [f"hook.{namespace}.svc"], now)
    core.create_namespaced_secret(namespace, {"metadata": {"name": "hook-tls"}, "stringData": {
        "tls.crt": cert.public_bytes(serialization.Encoding.PEM).decode(), "tls.key": _key_pem(key).decode()}})
    core.create_namespaced_pod(namespace, {"metadata": {"name": "hook", "labels": {"app": "hook"}}, "spec": {
        "volumes": [{"name": "tls", "secret": {"secretName": "hook-tls"}}],
        "containers": [{"name": "c", "image": "llmops/host:1", "command": ["python3", "-c", WEBHOOK_SERVER],
                        "volumeMounts": [{"name": "tls", "mountPath": "/run/webhook"}],
                        "readinessProbe": {"httpGet": {"port": 8443, "scheme": "HTTPS"}, "periodSeconds": 1}}]}})
    core.create_namespaced_service(namespace, {"metadata": {"name": "hook"}, "spec": {
        "selector": {"app": "hook"}, "ports": [{"port": 443, "targetPort": 8443}]}})
    wait_ready(core, namespace, "hook")
    admission = client.AdmissionregistrationV1Api(api_client)
    name = f"{namespace}-hook"
    admission.create_validating_webhook_configuration({"metadata": {"name": name}, "webhooks": [{
        "name": "deny.llmops.io", "admissionReviewVersions": ["v1"], "sideEffects": "None",
        "failurePolicy": "Fail", "timeoutSeconds": 5,
        "namespaceSelector": {"matchLabels": {"hook-test": namespace}},
        "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["configmaps"]}],
        "clientConfig": {"service": {"namespace": namespace, "name": "hook", "path": "/validate"},
                         "caBundle": base64.b64encode(ca.public_bytes(serialization.Encoding.PEM)).decode()}}]})
    try:
        core.patch_namespace(namespace, {"metadata": {"labels": {"hook-test": namespace}}})

        def denied():
            try:
                core.create_namespaced_config_map(namespace, {"metadata": {"generateName": "c-", "labels": {"deny": "yes"}}})
                return False
            except client.rest.ApiException as exc:
                return exc.status == 400 and "denied by the in-pod webhook" in exc.body
        wait_for(denied, TIMEOUT, "the webhook in the pod was not consulted")
        core.create_namespaced_config_map(namespace, {"metadata": {"name": "fine"}})   # allowed
    finally:
        admission.delete_validating_webhook_configuration(name)


def _gone(core, namespace, name):
    try:
        core.read_namespaced_pod(name, namespace)
        return False
    except client.rest.ApiException as exc:
        return exc.status == 404


TERM_IGNORER = """
import signal, sys, time
def on_term(*_):
    print(f"TERM {time.time():.3f}", flush=True)
signal.signal(signal.SIGTERM, on_term)
print(f"UP {time.time():.3f}", flush=True)
while True:
    time.sleep(0.1)
"""


def _log_times(text):
    times = {}
    for line in text.splitlines():
        word, _, value = line.partition(" ")
        if word in ("UP", "TERM", "HOOK-START", "HOOK-END"):
            times.setdefault(word, float(value))
    return times


def _follow_log(core, namespace, name, container):
    """The container's output from now until it ends (the kubelet drops it with the pod)."""
    import threading
    resp = core.read_namespaced_pod_log(name, namespace, container=container, follow=True, _preload_content=False)
    chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: chunks.extend(resp.stream(1024)), daemon=True)
    reader.start()

    def collected(timeout=TIMEOUT) -> str:
        reader.join(timeout)
        return b"".join(chunks).decode(errors="replace")
    return collected


def test_deletion_runs_the_prestop_hook_then_sigterm_then_sigkill_at_the_end_of_the_grace_period(core, namespace,
                                                                                                  sandbox):
    # A hook's own output is not the container's log; /proc/1/fd/1 is (pid 1: the container's process).
    hook = 'echo HOOK-START $(date +%s.%N) >/proc/1/fd/1; sleep 2; echo HOOK-END $(date +%s.%N) >/proc/1/fd/1'
    create(core, namespace, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "graceful"}, "spec": {
        "terminationGracePeriodSeconds": 6,
        "containers": [{"name": "c", "image": "llmops/host:1", "command": ["python3", "-c", TERM_IGNORER],
                        "lifecycle": {"preStop": {"exec": {"command": ["sh", "-c", hook]}}}}]}})
    wait_ready(core, namespace, "graceful")
    wait_for(lambda: "UP" in _log_times(sandbox.pod_log(namespace, "graceful", "c")), TIMEOUT,
             "container did not start")
    pid = container_pid(core, sandbox, namespace, "graceful", "c")
    output = _follow_log(core, namespace, "graceful", "c")
    import time
    deleted = time.time()
    core.delete_namespaced_pod("graceful", namespace)
    wait_for(lambda: not alive(pid), TIMEOUT, "the container outlived its grace period")
    killed_after = time.time() - deleted
    wait_for(lambda: _gone(core, namespace, "graceful"), TIMEOUT, "pod object was not removed after its grace period")
    times = _log_times(output())
    assert {"HOOK-START", "HOOK-END", "TERM"} <= set(times), times
    # preStop first, SIGTERM only after it; the process ignored SIGTERM, so SIGKILL came at the grace period's end.
    assert times["HOOK-START"] < times["HOOK-END"] <= times["TERM"], times
    assert times["HOOK-END"] - times["HOOK-START"] >= 1.9
    assert 5.5 <= killed_after < 9, killed_after


def test_a_terminating_pod_leaves_the_endpoints_while_its_prestop_hook_keeps_it_serving(core, namespace, sandbox):
    pod = http_pod("draining", labels={"app": "draining"}, terminationGracePeriodSeconds=20)
    pod["spec"]["containers"][0]["lifecycle"] = {"preStop": {"exec": {"command": ["sleep", "8"]}}}
    create(core, namespace, pod)
    core.create_namespaced_service(namespace, {"metadata": {"name": "draining"}, "spec": {
        "selector": {"app": "draining"}, "ports": [{"port": 8080, "targetPort": 8080}]}})
    ip = wait_ready(core, namespace, "draining")["status"]["podIP"]

    def addresses():
        subsets = core.read_namespaced_endpoints("draining", namespace).subsets or []
        return [a.ip for s in subsets for a in s.addresses or []]
    wait_for(lambda: addresses() == [ip], TIMEOUT, "the Service never listed the pod")
    core.delete_namespaced_pod("draining", namespace)
    wait_for(lambda: addresses() == [], 5, "a terminating pod stayed in the Service's endpoints")
    assert http_get(f"http://{ip}:8080/healthz")[0] == 200  # still serving while the hook runs
    wait_for(lambda: _gone(core, namespace, "draining"), TIMEOUT, "pod was not removed after its hook")
