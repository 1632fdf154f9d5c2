"""The sandbox's Prometheus: scrape targets from pod annotations and its config (pure)."""

from llmops_sandbox.prometheus import prometheus_config, scrape_target, scrape_targets


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
