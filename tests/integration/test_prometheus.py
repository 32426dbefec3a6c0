"""A real Prometheus scrapes a real worker during a replay; every dashboard and alert expression has data."""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.harness import produce, read_outputs, run, unused_port_outside_the_ephemeral_range
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


PORT_IN_USE = 98
"""scripts/prometheus's exit status when its port was taken before it could bind it."""


def start_prometheus(config: Path, data: Path) -> int:
    """Start Prometheus on a free port and return the port; a port taken meanwhile is replaced by another."""
    for _ in range(5):
        port = unused_port_outside_the_ephemeral_range()
        started = subprocess.run([SCRIPT, "start", str(config), str(port), str(data)], check=False)
        if started.returncode == 0:
            return port
        assert started.returncode == PORT_IN_USE, f"scripts/prometheus start exited with {started.returncode}"
    raise AssertionError("no free port for Prometheus in 5 tries")


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``condition`` until it returns something truthy, and return that; fail naming ``what`` after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.2)


def consumed(port: int) -> float:
    """Events consumed as Prometheus last scraped them (-1 before any scrape)."""
    result = query(port, "content_tagger_events_consumed_total")
    return float(result[0]["value"][1]) if result else -1.0


@pytest.fixture
def prometheus_data(tmp_path: Path) -> Iterator[Path]:
    subprocess.run([SCRIPT, "install"], check=True)
    yield tmp_path
    subprocess.run([SCRIPT, "stop", str(tmp_path / "prometheus")], check=False)


def test_prometheus_scrapes_the_worker_and_every_expression_has_data(start_worker: Any, prometheus_data: Path) -> None:
    tmp_path = prometheus_data
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
    port = start_prometheus(config_path, tmp_path / "prometheus")
    wait_for(lambda: consumed(port) == 0, 60, "Prometheus scrapes the idle worker")

    bootstrap = worker.env["TAGGER_KAFKA_BOOTSTRAP_SERVERS"]
    messages = build_messages(read_rows(ROOT / "data/dataset.csv"), duplicate_share=0.1, malformed_share=0.02, seed=3)
    half = len(messages) // 2
    for sent, chunk in ((half, messages[:half]), (len(messages), messages[half:])):
        run(produce(bootstrap, topics.input, [(m.key, m.value, None) for m in chunk]))
        # Each half seen by a scrape of its own, so rate() over the window sees an increase.
        wait_for(lambda sent=sent: consumed(port) == sent, 120, f"Prometheus sees {sent} events consumed")
    outputs = run(read_outputs(bootstrap, topics, len(messages), 120, settle=0.5))
    assert sum(len(v) for v in outputs.values()) == len(messages)

    def empty() -> list[str]:
        return [expr for expr in dashboard_expressions() + alert_expressions() if not query(port, _as_data(expr))]

    # Rules are evaluated every second after the scrapes: wait for the expressions that read recorded data.
    try:
        wait_for(lambda: not empty(), 30, "every dashboard and alert expression has data")
    except AssertionError:
        assert empty() == []


def _as_data(expr: str) -> str:
    """An alert condition is empty while all is well; with ``bool`` comparisons it returns its data as 0/1."""
    return re.sub(r"\s(>=|<=|==|!=|>|<)\s+(?!bool\b)", r" \1 bool ", expr)
