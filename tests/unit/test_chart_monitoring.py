"""Dashboards and alerts query metrics that really exist, in PromQL Prometheus accepts.

Exported names come from running the real expositions: the operator's registry (llmops.metrics,
in a subprocess so this test's registry stays clean) and the vLLM simulator's (both metric
generations). Rules are checked and unit-tested with Debian's promtool when it is installed."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import textwrap

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from llmops.autoscale.policy import Reason
from llmops_sim.metrics import VllmMetrics
from llmops_sim.releases import RELEASES
from llmops_sandbox.tools.chart import CHART_DIR, render

PROMETHEUS_BUILTINS = {"up"}  # series Prometheus itself writes for every target
PROMQL_WORDS = {
    "sum", "avg", "min", "max", "count", "stddev", "stdvar", "topk", "bottomk", "quantile", "count_values", "group",
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset",
    "inf", "nan",
}


def promql_metric_names(expr: str) -> set[str]:
    """Metric names an expression selects: identifiers left once strings, label matchers, grouping
    clauses, range/offset durations, functions (identifier + '(') and keywords are removed."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)                 # string literals
    text = re.sub(r"\$\{?\w+\}?", "1", text)                          # Grafana variables ($__rate_interval)
    text = re.sub(r"\{[^}]*\}", "", text)                             # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)                            # range selectors
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        name = match.group(0)
        following = text[match.end():].lstrip()
        if following.startswith("(") or name.lower() in PROMQL_WORDS:
            continue
        if re.fullmatch(r"\d+[smhdwy]", name) or text[max(0, match.start() - 1)].isdigit():
            continue
        names.add(name)
    return names


def test_promql_metric_names():
    assert promql_metric_names(
        'histogram_quantile(0.9, sum by (le, namespace) (rate(vllm:ttft_bucket{a="b(c)"}[$__rate_interval])))'
    ) == {"vllm:ttft_bucket"}
    assert promql_metric_names("llmops_ready_replicas < llmops_desired_replicas") == \
        {"llmops_ready_replicas", "llmops_desired_replicas"}
    assert promql_metric_names('(a == 0) and on (namespace, x) (b > 0) or vector(0)') == {"a", "b"}
    assert promql_metric_names('label_replace(deriv(q[10m]), "d", "$1", "l", "(.+)") > 0 unless c offset 5m') == {"q", "c"}


def exported_names(exposition: str) -> set[str]:
    return {sample.name for family in text_string_to_metric_families(exposition) for sample in family.samples}


OPERATOR_EXPOSITION = textwrap.dedent("""
    from prometheus_client import Counter, Gauge, Histogram, generate_latest
    from llmops import metrics
    from llmops.activator import metrics as activator_metrics  # the activator's own process
    # Give every labelled metric one child so each series name appears in the exposition.
    for value in [*vars(metrics).values(), *vars(activator_metrics).values()]:
        if isinstance(value, (Counter, Gauge, Histogram)) and value._labelnames:
            value.labels(*["x"] * len(value._labelnames))
    print(generate_latest().decode())
""")


@pytest.fixture(scope="module")
def exported() -> set[str]:
    operator = subprocess.run([sys.executable, "-c", OPERATOR_EXPOSITION], capture_output=True, text=True, check=True)
    names = exported_names(operator.stdout)
    for release in RELEASES.values():
        sim = VllmMetrics("m", 4096, release, cache_info={"block_size": "16"})
        names |= exported_names(sim.exposition().decode())
    return names | PROMETHEUS_BUILTINS


def dashboards() -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted((CHART_DIR / "dashboards").glob("*.json"))}


def dashboard_exprs(dashboard: dict) -> list[str]:
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            # label_values(metric{...}, label): the metric is the first argument.
            exprs.append(re.sub(r"^label_values\((.*),\s*\w+\)$", r"\1", variable["query"]["query"]))
    return exprs


@pytest.fixture(scope="module")
def rule_groups() -> list[dict]:
    docs = render({"monitoring": {"assumePrometheusOperator": True}})
    (rule,) = [d for d in docs if d["kind"] == "PrometheusRule"]
    return rule["spec"]["groups"]


def test_dashboards_query_only_exported_metrics(exported):
    for name, dashboard in dashboards().items():
        for expr in dashboard_exprs(dashboard):
            unknown = promql_metric_names(expr) - exported
            assert not unknown, f"{name}: {expr!r} queries {sorted(unknown)}, which neither the operator nor vLLM exports"


def test_alerts_query_only_exported_metrics(exported, rule_groups):
    for group in rule_groups:
        for rule in group["rules"]:
            unknown = promql_metric_names(rule["expr"]) - exported
            assert not unknown, f"{rule['alert']}: queries {sorted(unknown)}, which nothing exports"


def test_alerts_use_reasons_the_autoscaler_reports(rule_groups):
    reasons = {r.value for r in Reason}
    for group in rule_groups:
        for rule in group["rules"]:
            for matcher in re.findall(r'reason[=!~]+"([^"]+)"', rule["expr"]):
                assert set(matcher.split("|")) <= reasons, f"{rule['alert']}: unknown reason in {matcher!r}"


def test_the_alerts_users_need_exist(rule_groups):
    alerts = {r["alert"] for g in rule_groups for r in g["rules"]}
    assert {"LLMDeploymentNotReady", "LLMDeploymentAutoscalerBlind", "LLMDeploymentSaturatedAtMaxReplicas",
            "LLMOpsOperatorDown"} <= alerts
    for group in rule_groups:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in ("warning", "critical")
            assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_dashboards_are_valid_grafana_models():
    for name, dashboard in dashboards().items():
        assert dashboard["uid"] and dashboard["title"] and isinstance(dashboard["schemaVersion"], int)
        assert dashboard["schemaVersion"] >= 36, "datasource variables by uid need schemaVersion >= 36"
        variables = {v["name"]: v for v in dashboard["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
        ids = [p["id"] for p in dashboard["panels"]]
        assert len(ids) == len(set(ids)), f"{name}: duplicate panel ids"
        for panel in dashboard["panels"]:
            grid = panel["gridPos"]
            assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24 and grid["h"] > 0
            if panel["type"] == "row":
                continue
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert panel["targets"], f"{name}: panel {panel['title']!r} has no query"
            ref_ids = [t["refId"] for t in panel["targets"]]
            assert len(ref_ids) == len(set(ref_ids))
            for target in panel["targets"]:
                assert target["expr"].strip()
                for variable in re.findall(r"\$(\w+)", target["expr"]):
                    assert variable in variables or variable.startswith("__"), f"{name}: ${variable} undefined"


def test_per_deployment_dashboard_shows_replicas_next_to_the_scaling_signals():
    dashboard = dashboards()["deployment-autoscaling.json"]
    queried = {name for expr in dashboard_exprs(dashboard) for name in promql_metric_names(expr)}
    assert {"llmops_desired_replicas", "llmops_current_replicas", "llmops_ready_replicas",
            "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc", "vllm:time_to_first_token_seconds_bucket"} <= queried


def test_per_deployment_dashboard_shows_every_demand_term_and_input():
    dashboard = dashboards()["deployment-autoscaling.json"]
    queried = {name for expr in dashboard_exprs(dashboard) for name in promql_metric_names(expr)}
    assert {"llmops_autoscaler_term_replicas", "llmops_autoscaler_arrival_rate", "llmops_autoscaler_offered_load_slots",
            "llmops_autoscaler_service_seconds", "llmops_autoscaler_cold_start_seconds",
            "llmops_autoscaler_projected_queue", "llmops_autoscaler_capacity_cap",
            "llmops_autoscaler_slots_per_replica"} <= queried


def test_per_deployment_dashboard_shows_the_activators_held_forwarded_refused_and_hold_time():
    dashboard = dashboards()["deployment-autoscaling.json"]
    queried = {name for expr in dashboard_exprs(dashboard) for name in promql_metric_names(expr)}
    assert {"llmops_activator_holding_requests", "llmops_activator_held_requests_total",
            "llmops_activator_forwarded_requests_total", "llmops_activator_refused_requests_total",
            "llmops_activator_hold_seconds_bucket"} <= queried


def test_activator_service_monitor_keeps_the_deployments_own_namespace_label():
    docs = render({"activator": {"enabled": True}, "monitoring": {"assumePrometheusOperator": True}})
    monitors = [d for d in docs if d["kind"] == "ServiceMonitor"
                and d["metadata"]["labels"]["app.kubernetes.io/component"] == "activator"]
    assert len(monitors) == 1 and monitors[0]["spec"]["endpoints"][0]["honorLabels"] is True
    assert monitors[0]["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "activator"


promtool = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(promtool is None, reason="promtool not installed (apt-get install prometheus)")


@needs_promtool
def test_promtool_accepts_the_rules(rule_groups, tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule_groups}))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_accepts_the_dashboard_queries(tmp_path):
    """Every dashboard query parses (as a recording rule expression, Grafana variables filled in)."""
    rules = []
    for name, dashboard in dashboards().items():
        for index, expr in enumerate(dashboard_exprs(dashboard)):
            concrete = expr.replace("$__rate_interval", "5m").replace("$namespace", "ns").replace("$llmdeployment", "d")
            rules.append({"record": f"dashboard:{name.split('.')[0].replace('-', '_')}:{index}", "expr": concrete})
    path = tmp_path / "dashboards.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def _write_rules_without_annotations(path, groups):
    """promtool compares annotations too; the tests here are about when alerts fire."""
    bare = [{**g, "rules": [{k: v for k, v in r.items() if k != "annotations"} for r in g["rules"]]} for g in groups]
    path.write_text(yaml.safe_dump({"groups": bare}))


def _alert_test(rule_file, series, alert, eval_time, labels):
    return {
        "rule_files": [str(rule_file)],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [{"series": s, "values": v} for s, v in series],
            "alert_rule_test": [{"eval_time": eval_time, "alertname": alert,
                                 "exp_alerts": [{"exp_labels": labels}] if labels else []}],
        }],
    }


@needs_promtool
@pytest.mark.parametrize("case", [
    # Fewer ready than desired for 20 minutes -> fires after the 15m window; not after 10.
    ("LLMDeploymentNotReady", "20m", True,
     [('llmops_desired_replicas{namespace="ns",llmdeployment="d"}', "3x30"),
      ('llmops_ready_replicas{namespace="ns",llmdeployment="d"}', "1x30")]),
    ("LLMDeploymentNotReady", "10m", False,
     [('llmops_desired_replicas{namespace="ns",llmdeployment="d"}', "3x30"),
      ('llmops_ready_replicas{namespace="ns",llmdeployment="d"}', "1x30")]),
    ("LLMDeploymentNotReady", "20m", False,
     [('llmops_desired_replicas{namespace="ns",llmdeployment="d"}', "3x30"),
      ('llmops_ready_replicas{namespace="ns",llmdeployment="d"}', "3x30")]),
    # Only stale decisions for 20 minutes -> blind.
    ("LLMDeploymentAutoscalerBlind", "20m", True,
     [('llmops_autoscaler_decisions_total{namespace="ns",llmdeployment="d",reason="metrics-stale"}', "0+4x30")]),
    # Stale decisions interleaved with real ones -> not blind.
    ("LLMDeploymentAutoscalerBlind", "20m", False,
     [('llmops_autoscaler_decisions_total{namespace="ns",llmdeployment="d",reason="metrics-stale"}', "0+4x30"),
      ('llmops_autoscaler_decisions_total{namespace="ns",llmdeployment="d",reason="held-tolerance"}', "0+4x30")]),
    # At max with a growing queue -> saturated; at max with a flat queue -> not.
    ("LLMDeploymentSaturatedAtMaxReplicas", "25m", True,
     [('llmops_autoscaler_decisions_total{namespace="ns",llmdeployment="d",reason="at-max"}', "0+4x30"),
      ('vllm:num_requests_waiting{namespace="ns",llmops_deployment="d",pod="p1"}', "0+2x30")]),
    ("LLMDeploymentSaturatedAtMaxReplicas", "25m", False,
     [('llmops_autoscaler_decisions_total{namespace="ns",llmdeployment="d",reason="at-max"}', "0+4x30"),
      ('vllm:num_requests_waiting{namespace="ns",llmops_deployment="d",pod="p1"}', "5x30")]),
], ids=lambda c: f"{c[0]}-{'fires' if c[2] else 'quiet'}-{c[1]}")
def test_alert_fires_exactly_when_it_should(case, rule_groups, tmp_path):
    alert, eval_time, fires, series = case
    rule_file = tmp_path / "rules.yaml"
    _write_rules_without_annotations(rule_file, rule_groups)
    rule = next(r for g in rule_groups for r in g["rules"] if r["alert"] == alert)
    labels = {"namespace": "ns", "llmdeployment": "d", **rule["labels"]} if fires else None
    test_file = tmp_path / "test.yaml"
    test_file.write_text(yaml.safe_dump(_alert_test(rule_file, series, alert, eval_time, labels)))
    result = subprocess.run([promtool, "test", "rules", str(test_file)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_operator_down_alert_fires_when_its_target_is_down(rule_groups, tmp_path):
    rule_file = tmp_path / "rules.yaml"
    _write_rules_without_annotations(rule_file, rule_groups)
    spec = _alert_test(rule_file, [('up{job="llmops",namespace="llmops",instance="i"}', "0x20")],
                       "LLMOpsOperatorDown", "10m",
                       {"job": "llmops", "namespace": "llmops", "instance": "i", "severity": "critical"})
    test_file = tmp_path / "test.yaml"
    test_file.write_text(yaml.safe_dump(spec))
    result = subprocess.run([promtool, "test", "rules", str(test_file)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
