"""The monitoring files are valid for promtool, and every expression uses metrics the worker defines."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from stream_app.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "monitoring"
DASHBOARD = MONITORING / "grafana/dashboards/content-tagger.json"


def defined_series() -> set[str]:
    registry = CollectorRegistry()
    Metrics(registry, (0.0, 0.5, 1.0))
    families = list(registry.collect())
    # A labelled gauge with no series yet (consumer_lag before partitions are assigned) has no samples.
    return {s.name for f in families for s in f.samples} | {f.name for f in families if f.type == "gauge"}


def expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    found = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    rules = yaml.safe_load((MONITORING / "alerts.yml").read_text())
    return found + [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


@pytest.mark.prometheus
def test_promtool_accepts_the_config_the_rules_and_their_unit_tests() -> None:
    result = subprocess.run([ROOT / "scripts/prometheus", "check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_expression_names_only_metrics_the_worker_exports() -> None:
    known = defined_series()
    for expr in expressions():
        names = set(re.findall(r"\bcontent_tagger_[a-z_]+", expr))
        assert names, expr
        assert names <= known, (expr, names - known)


def test_the_dashboard_has_a_stable_uid_and_uses_the_provisioned_datasource() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    datasource = yaml.safe_load((MONITORING / "grafana/provisioning/datasources/prometheus.yml").read_text())
    uid = datasource["datasources"][0]["uid"]
    assert dashboard["uid"] == "content-tagger"
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == uid
        assert all(target["datasource"]["uid"] == uid for target in panel["targets"])
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in ("throughput", "latency", "confidence", "drift", "review", "dead-letter", "lag", "model"):
        assert topic in titles


def test_every_alert_has_a_severity_and_a_description() -> None:
    rules = yaml.safe_load((MONITORING / "alerts.yml").read_text())
    for rule in (r for group in rules["groups"] for r in group["rules"]):
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
