"""A real Prometheus scrapes a real worker during a replay; every dashboard and alert expression has data."""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.harness import free_port, produce, read_outputs, run
from tools.replay import build_messages, read_rows

pytestmark = [pytest.mark.kafka, pytest.mark.prometheus, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "prometheus"


def query(port: int, expr: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback only
        body = json.loads(response.read())
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def dashboard_expressions() -> list[str]:
    dashboard = json.loads((ROOT / "monitoring/grafana/dashboards/content-tagger.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", []) if t.get("expr")]
    assert exprs
    return exprs


def alert_expressions() -> list[str]:
    rules = yaml.safe_load((ROOT / "monitoring/alerts.yml").read_text())
    exprs = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    assert exprs
    return exprs


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    subprocess.run([SCRIPT, "install"], check=True)
    port = free_port()
    yield port, tmp_path
    subprocess.run([SCRIPT, "stop", str(tmp_path / "prometheus")], check=False)


def test_prometheus_scrapes_the_worker_and_every_expression_has_data(
    start_worker: Any, prometheus: tuple[int, Path]
) -> None:
    port, tmp_path = prometheus
    worker, topics = start_worker()
    config = yaml.safe_load((ROOT / "monitoring/prometheus.yml").read_text())
    config["global"]["scrape_interval"] = "1s"
    config["global"]["evaluation_interval"] = "1s"
    config["rule_files"] = [str(ROOT / "monitoring/alerts.yml")]
    config["scrape_configs"] = [
        {"job_name": "content-tagger", "static_configs": [{"targets": [f"127.0.0.1:{worker.port}"]}]}
    ]
    config.pop("alerting", None)
    config_path = tmp_path / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config))
    subprocess.run([SCRIPT, "start", str(config_path), str(port), str(tmp_path / "prometheus")], check=True)

    bootstrap = worker.env["TAGGER_KAFKA_BOOTSTRAP_SERVERS"]
    messages = build_messages(read_rows(ROOT / "data/dataset.csv"), duplicate_share=0.1, malformed_share=0.02, seed=3)
    half = len(messages) // 2
    for chunk in (messages[:half], messages[half:]):
        run(produce(bootstrap, topics.input, [(m.key, m.value, None) for m in chunk]))
        time.sleep(3)  # two scrapes apart, so rate() over the window sees an increase
    outputs = run(read_outputs(bootstrap, topics, len(messages), 120, settle=0.5))
    assert sum(len(v) for v in outputs.values()) == len(messages)
    time.sleep(4)

    consumed = query(port, "content_tagger_events_consumed_total")
    assert consumed and float(consumed[0]["value"][1]) == len(messages)
    empty = [expr for expr in dashboard_expressions() + alert_expressions() if not query(port, _as_data(expr))]
    assert empty == []


def _as_data(expr: str) -> str:
    """An alert condition is empty while all is well; with ``bool`` comparisons it returns its data as 0/1."""
    return re.sub(r"\s(>=|<=|==|!=|>|<)\s+(?!bool\b)", r" \1 bool ", expr)
