import subprocess
from pathlib import Path

from llmops_sandbox.mounts import Mount, launch_script, plan_mounts
from llmops_sandbox.prometheus import prometheus_config, scrape_target, scrape_targets

POD = {"spec": {"volumes": [
    {"name": "cfg", "configMap": {"name": "cfg"}},
    {"name": "default-token-abc", "secret": {"secretName": "default-token-abc"}},
    {"name": "host", "hostPath": {"path": "/data"}},
]}}


def test_plan_mounts_skips_the_service_account_dir_and_handles_subpath():
    container = {"volumeMounts": [
        {"name": "cfg", "mountPath": "/etc/app", "readOnly": True},
        {"name": "default-token-abc", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"},
        {"name": "host", "mountPath": "/models/m", "subPath": "m"},
    ]}
    assert plan_mounts(POD, container, Path("/state/pod/volumes"), Path("/state/nodes/n1/rootfs")) == [
        Mount("/state/pod/volumes/cfg", "/etc/app", True),
        # hostPath volumes live in the simulated node's own root, not on the host's /.
        Mount("/state/nodes/n1/rootfs/data/m", "/models/m", False),
    ]


def test_launch_script_is_valid_sh_and_execs_the_command():
    script = launch_script("/state/pod/run", [Mount("/a b", "/etc/x", True)], "/work dir")
    assert script.splitlines()[1] == "mount --bind /state/pod/run /run"
    assert "mount -o remount,bind,ro /etc/x" in script and script.endswith('exec "$@"')
    assert subprocess.run(["sh", "-n", "-c", script]).returncode == 0


def pod(**over):
    p = {"metadata": {"name": "p", "namespace": "ns", "labels": {"app.kubernetes.io/name": "x"},
                      "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "8000"}},
         "spec": {"nodeName": "n1", "containers": [{"ports": [{"containerPort": 9000}]}]},
         "status": {"phase": "Running", "podIP": "10.244.0.7"}}
    for k, v in over.items():
        p[k] = {**p[k], **v}
    return p


def test_scrape_target_from_annotations():
    t = scrape_target(pod())
    assert t["targets"] == ["10.244.0.7:8000"]
    assert t["labels"] == {"app_kubernetes_io_name": "x", "namespace": "ns", "pod": "p", "node": "n1",
                           "__meta_metrics_path": "/metrics"}


def test_scrape_port_and_path_fallbacks_and_exclusions():
    p = pod(metadata={"annotations": {"prometheus.io/scrape": "true", "prometheus.io/path": "/m"}})
    assert scrape_target(p)["targets"] == ["10.244.0.7:9000"]
    assert scrape_target(p)["labels"]["__meta_metrics_path"] == "/m"
    assert scrape_target(pod(metadata={"annotations": {}})) is None
    assert scrape_target(pod(status={"phase": "Pending"})) is None
    assert scrape_target(pod(metadata={"deletionTimestamp": "x"})) is None
    assert len(scrape_targets([pod(), pod(status={"podIP": None})])) == 1


def test_prometheus_config_scrapes_every_2s_from_the_targets_file():
    cfg = prometheus_config("/s/targets.json")
    assert cfg["global"]["scrape_interval"] == "2s"
    assert cfg["scrape_configs"][0]["file_sd_configs"][0]["files"] == ["/s/targets.json"]


def test_llmops_deployment_label_becomes_the_target_label_queries_use():
    p = pod(metadata={"labels": {"llmops.io/deployment": "chat"}})
    assert scrape_target(p)["labels"]["llmops_deployment"] == "chat"


def test_mounts_that_would_hide_the_running_python_or_sandbox_state_are_skipped():
    from llmops_sandbox.mounts import plan_mounts, shadows

    assert shadows("/tmp", ["/tmp/ci/.venv"]) and shadows("/tmp/", ["/tmp"])
    assert not shadows("/tmp/x", ["/tmp/xy"]) and not shadows("/data", ["/tmp/ci/.venv"])
    pod = {"spec": {"volumes": [{"name": "tmp", "emptyDir": {}}, {"name": "data", "emptyDir": {}}]}}
    container = {"volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, {"name": "data", "mountPath": "/data"}]}
    mounts = plan_mounts(pod, container, Path("/tmp/sbx/volumes"), Path("/tmp/sbx/nodes/n1/rootfs"),
                         protected=["/tmp/ci/.venv"])
    assert [m.target for m in mounts] == ["/data"]
