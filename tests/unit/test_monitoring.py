"""The monitoring files are valid for promtool, every expression uses metrics the worker defines the way
their type allows, and the Grafana files agree on one datasource."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, start_http_server

from stream_app.drift import DriftSnapshot
from stream_app.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "monitoring"
SCRIPT = ROOT / "scripts/prometheus"
DASHBOARD = MONITORING / "grafana/dashboards/content-tagger.json"
DATASOURCES = MONITORING / "grafana/provisioning/datasources/prometheus.yml"
PROVIDERS = MONITORING / "grafana/provisioning/dashboards/content-tagger.yml"
EDGES = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 1.0)
PROMQL_WORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring"}
PROMETHEUS_SERIES = {"up"}
"""Series Prometheus makes itself for each scrape target."""


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text(encoding="utf-8")))


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in load_yaml(MONITORING / "alerts.yml")["groups"] for rule in group["rules"]]


def expressions() -> list[str]:
    panels = [target["expr"] for panel in dashboard()["panels"] for target in panel["targets"]]
    return panels + [rule["expr"] for rule in alert_rules()]


def exported_metrics() -> tuple[CollectorRegistry, Metrics]:
    """A registry with every series of the worker present (consumer_lag needs a partition to appear)."""
    registry = CollectorRegistry()
    metrics = Metrics(registry, EDGES)
    metrics.set_lag(0, 0)
    metrics.set_model("test", 0.6, 0.2)
    return registry, metrics


def series_types() -> dict[str, str]:
    """Each exposed series name and the type of its family."""
    registry, _ = exported_metrics()
    return {s.name: f.type for f in registry.collect() for s in f.samples if not s.name.endswith("_created")}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers not functions, keywords or labels."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    return set(re.findall(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b(?!\s*\()", expr)) - PROMQL_WORDS


def test_metric_names_are_parsed_out_of_promql() -> None:
    expr = 'sum by (le) (rate(a_bucket{x="y z"}[5m])) / on (job) b_total > bool 2 * time() and up offset 5m'
    assert metric_names(expr) == {"a_bucket", "b_total", "up"}


@pytest.mark.parametrize("expr", expressions())
def test_every_expression_selects_only_series_the_worker_exports(expr: str) -> None:
    names = metric_names(expr)
    assert names, expr
    assert names <= set(series_types()) | PROMETHEUS_SERIES, names - set(series_types()) - PROMETHEUS_SERIES


@pytest.mark.parametrize("expr", expressions())
def test_rates_are_taken_of_counters_and_deltas_of_gauges(expr: str) -> None:
    types = series_types()
    calls = re.findall(r"\b(rate|irate|increase|delta|deriv)\s*\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)", expr)
    for function, name in calls:
        expected = ("gauge",) if function in ("delta", "deriv") else ("counter", "histogram")
        assert types[name] in expected, (function, name)
    if "histogram_quantile" in expr:
        assert all(name.endswith("_bucket") for name in metric_names(expr)), expr


def test_prometheus_scrapes_the_compose_worker_and_loads_the_alerts() -> None:
    config = load_yaml(MONITORING / "prometheus.yml")
    assert config["rule_files"] == ["alerts.yml"]
    assert config["global"]["scrape_interval"] == "5s"
    (job,) = config["scrape_configs"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    assert job["static_configs"] == [{"targets": ["worker:6066"]}]


def test_every_alert_has_a_severity_a_summary_a_description_and_a_duration() -> None:
    for rule in alert_rules():
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]
        assert re.fullmatch(r"\d+m", rule["for"]), rule["alert"]


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    tests = load_yaml(MONITORING / "alerts_test.yml")["tests"]
    cases = [case for test in tests for case in test["alert_rule_test"]]
    for rule in alert_rules():
        own = [case for case in cases if case["alertname"] == rule["alert"]]
        assert any(case["exp_alerts"] for case in own), f"{rule['alert']} never shown to fire"
        assert any(not case["exp_alerts"] for case in own), f"{rule['alert']} never shown to stay quiet"


def test_the_dashboard_uses_the_provisioned_datasource_everywhere() -> None:
    (datasource,) = load_yaml(DATASOURCES)["datasources"]
    assert (datasource["type"], datasource["uid"]) == ("prometheus", "content-tagger-prometheus")
    assert datasource["url"] == "http://prometheus:9090"
    board = dashboard()
    assert board["uid"] == "content-tagger"
    for panel in board["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": datasource["uid"]}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"], panel["title"]
        assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"]), panel["title"]
    assert len({p["id"] for p in board["panels"]}) == len(board["panels"])


def test_the_dashboard_covers_what_an_operator_watches() -> None:
    titles = " | ".join(p["title"].lower() for p in dashboard()["panels"])
    for topic in (
        "throughput",
        "latency",
        "confidence",
        "drift",
        "review",
        "dead-letter",
        "lag",
        "model",
        "dedupe",
        "skipped",
    ):
        assert topic in titles, topic
    drift = next(p for p in dashboard()["panels"] if "drift" in p["title"].lower())
    steps = drift["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert 0.2 in [step["value"] for step in steps]


def test_grafana_loads_dashboards_from_the_folder_the_json_is_mounted_in() -> None:
    (provider,) = load_yaml(PROVIDERS)["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"


# --- with the real promtool and Prometheus ---------------------------------------------------------


@pytest.mark.prometheus
@pytest.mark.parametrize(
    "command",
    [
        ["check", "config", "monitoring/prometheus.yml"],
        ["check", "rules", "monitoring/alerts.yml"],
        ["test", "rules", "monitoring/alerts_test.yml"],
    ],
    ids=["config", "rules", "rule-tests"],
)
def test_promtool_accepts(prometheus_installed: None, command: list[str]) -> None:
    result = subprocess.run(["promtool", *command], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def panel_expr(legend: str) -> str:
    """The dashboard's expression drawn as ``legend``."""
    (expr,) = [t["expr"] for p in dashboard()["panels"] for t in p["targets"] if t.get("legendFormat") == legend]
    return str(expr)


def promql_values(tmp_path: Path, series: dict[str, str], expr: str) -> list[float]:
    """The values of ``expr`` after 5 minutes of ``series`` (selector: value, constant, or ``a+b`` for one growing by b
    a minute), evaluated by promtool."""
    test = {
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [{"series": name, "values": f"{value}x10"} for name, value in series.items()],
                "promql_expr_test": [{"expr": expr, "eval_time": "5m", "exp_samples": []}],
            }
        ],
    }
    (tmp_path / "test.yml").write_text(yaml.safe_dump(test))
    result = subprocess.run(["promtool", "test", "rules", "test.yml"], cwd=tmp_path, capture_output=True, text=True)
    if result.returncode == 0:
        return []
    # promtool prints what it got when the (empty) expected samples differ: "got: {labels} value, ...".
    got = (result.stdout + result.stderr).split("got:", 1)
    assert len(got) == 2, result.stdout + result.stderr
    return [float(value) for value in re.findall(r"\}\s*([-+\d.eE]+)", got[1])]


@pytest.mark.prometheus
@pytest.mark.parametrize("legend", ["confidence PSI", "tag PSI", "below threshold (window)"])
def test_the_drift_panels_leave_out_a_worker_whose_window_is_not_full_as_the_alerts_do(
    prometheus_installed: None, tmp_path: Path, legend: str
) -> None:
    """A worker that just started (or swapped models) has a window of a few events, whose PSI is noise: 7.6 for one
    event. The panels take the fleet's max, so one such worker would draw drift where there is none."""
    gauge = metric_names(panel_expr(legend)) - {"content_tagger_drift_window_events"}
    (name,) = gauge
    series = {
        f'{name}{{instance="new"}}': "7.6",
        'content_tagger_drift_window_events{instance="new"}': "1",
        f'{name}{{instance="old"}}': "0.05",
        'content_tagger_drift_window_events{instance="old"}': "1000",
    }
    assert promql_values(tmp_path, series, panel_expr(legend)) == [0.05]


@pytest.mark.prometheus
@pytest.mark.parametrize(("reference", "alert_above"), [(0.0, 0.05), (0.02, 0.07), (0.2, 0.4), (0.6, 0.8)])
def test_the_review_share_panel_draws_the_alert_s_line(
    prometheus_installed: None, tmp_path: Path, reference: float, alert_above: float
) -> None:
    series = {'content_tagger_reference_below_threshold_share{instance="w1"}': str(reference)}
    assert promql_values(tmp_path, series, panel_expr("alert above")) == pytest.approx([alert_above])


@pytest.mark.prometheus
def test_the_skipped_records_panel_counts_the_fleet_s_records_once_by_topic_and_reason(
    prometheus_installed: None, tmp_path: Path
) -> None:
    """Every worker reads every record of these topics, so each counts the same ones: summed, a fleet of two would
    draw twice the records there are. Topics and reasons with none are left out of the legend."""
    counts = {("w1", "feedback", "invalid_value"): 3, ("w2", "feedback", "invalid_value"): 3}
    counts |= {("w1", "title_index", "missing_field"): 1, ("w2", "title_index", "missing_field"): 1}
    counts |= {("w1", "review", "not_json"): 0, ("w2", "review", "not_json"): 0}
    series = {
        f'content_tagger_skipped_records_total{{instance="{worker}",topic="{topic}",reason="{reason}"}}': str(n)
        for (worker, topic, reason), n in counts.items()
    }
    assert sorted(promql_values(tmp_path, series, panel_expr("{{topic}} {{reason}}"))) == [1, 3]


@pytest.mark.prometheus
def test_the_batch_size_panel_draws_the_mean_events_per_onnx_call(prometheus_installed: None, tmp_path: Path) -> None:
    """Nine batches of one event and one of three: a quantile interpolates inside the lowest bucket (0 to 1) and
    draws less than one event a batch; the mean is 1.2."""
    (target,) = [t for p in dashboard()["panels"] for t in p["targets"] if "content_tagger_batch_size" in t["expr"]]
    assert "mean" in target["legendFormat"]
    buckets = {"1.0": 9, "2.0": 9, "4.0": 10, "+Inf": 10}
    series = {f'content_tagger_batch_size_bucket{{instance="w1",le="{le}"}}': f"0+{n}" for le, n in buckets.items()}
    series |= {
        'content_tagger_batch_size_sum{instance="w1"}': "0+12",
        'content_tagger_batch_size_count{instance="w1"}': "0+10",
    }
    assert promql_values(tmp_path, series, target["expr"]) == pytest.approx([1.2])


def panel(title: str) -> dict[str, Any]:
    (found,) = [p for p in dashboard()["panels"] if p["title"] == title]
    return found


def test_the_review_share_panel_states_the_alert_s_rule() -> None:
    description = panel("Review share vs reference")["description"]
    assert "more than twice the card's reference share and 5 points above it" in description
    assert "more than halfway from it to 100%" in description


def test_the_lag_panel_says_the_lag_counts_what_the_agent_has_not_finished() -> None:
    """The lag counts from the first offset not yet published: a stuck agent's batch shows as lag."""
    (family,) = [f for f in exported_metrics()[0].collect() if f.name == "content_tagger_consumer_lag"]
    description = panel("Consumer lag")["description"]
    for text in (family.documentation, description):
        assert "has not finished" in text and "the batch in work" in text, text


def test_the_operations_page_names_every_alert() -> None:
    operations = (ROOT / "docs/operations.md").read_text(encoding="utf-8")
    assert [rule["alert"] for rule in alert_rules() if f"`{rule['alert']}`" not in operations] == []


def markdown_anchors(text: str) -> set[str]:
    """The anchors of a Markdown page's headings, as GitHub makes them."""
    headings = re.findall(r"^#+ (.+)$", text, flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading).strip().lower().replace(" ", "-") for heading in headings}


def test_every_alert_links_its_own_entry_of_the_operations_runbook() -> None:
    """An alert that fires at night says where to look: its ``runbook_url`` is its own heading of
    docs/operations.md, which exists."""
    anchors = markdown_anchors((ROOT / "docs/operations.md").read_text(encoding="utf-8"))
    for rule in alert_rules():
        page, _, anchor = rule["annotations"].get("runbook_url", "").partition("#")
        assert page == "docs/operations.md" and (ROOT / page).is_file(), rule["alert"]
        assert anchor == rule["alert"].lower() and anchor in anchors, rule["alert"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def query(port: int, expr: str) -> list[Any]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as response:
        body = json.loads(response.read())
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def as_data(expr: str) -> str:
    """An alert condition is empty while all is well; ``bool`` comparisons return its data as 0 or 1."""
    return re.sub(r"\s(>=|<=|==|!=|>|<)\s+(?!bool\b)", r" \1 bool ", expr)


@pytest.fixture
def scraped_metrics(prometheus_installed: None, tmp_path: Path) -> Iterator[tuple[int, Metrics]]:
    """A real Prometheus scraping a ``Metrics`` served over HTTP every second, with the alert rules loaded."""
    registry, metrics = exported_metrics()
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    port, data = free_port(), tmp_path / "prometheus"
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(MONITORING / "alerts.yml")],
        "scrape_configs": [
            {
                "job_name": "content-tagger",
                "static_configs": [{"targets": [f"127.0.0.1:{server.server_port}"]}],
            }
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    try:
        subprocess.run([SCRIPT, "start", str(tmp_path / "prometheus.yml"), str(port), str(data)], check=True)
        yield port, metrics
    finally:
        subprocess.run([SCRIPT, "stop", str(data)], check=False)
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.mark.prometheus
@pytest.mark.slow
def test_every_expression_is_valid_promql_with_data_from_a_real_scrape(
    scraped_metrics: tuple[int, Metrics],
) -> None:
    port, metrics = scraped_metrics
    for _ in range(50):  # until Prometheus holds enough scrapes for rate() over the counters
        metrics.consumed(10)
        metrics.emitted("tagged", 9)
        metrics.dead_lettered("not_json")
        metrics.classified("mlops", 0.9)
        metrics.latency(0.003)
        metrics.batch(8, 0.002)
        metrics.set_drift(DriftSnapshot(0.05, 0.02, 0.25, 300))
        metrics.set_last_event(time.time(), now=time.time())
        time.sleep(0.5)
        if query(port, "rate(content_tagger_events_consumed_total[1m]) > 0"):
            break
    empty = [expr for expr in expressions() if not query(port, as_data(expr))]
    assert empty == []


@pytest.mark.prometheus
def test_a_prometheus_still_starting_is_not_taken_for_one_that_exited(
    prometheus_installed: None, tmp_path: Path
) -> None:
    """A started child that has not exec'd the binary yet does not bear its name; the start waits for it all the
    same, and leaves no server behind after ``stop``. Here the child takes half a second to become the real
    Prometheus: a ``prometheus`` first on the PATH that waits, then execs it."""
    real = shutil.which("prometheus")
    assert real is not None
    wrappers = tmp_path / "bin"
    wrappers.mkdir()
    slow = wrappers / "prometheus"
    slow.write_text(f'#!/usr/bin/env sh\nsleep 0.5\nexec {real} "$@"\n')
    slow.chmod(0o755)
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump({"global": {"scrape_interval": "1m"}}))
    data = tmp_path / "data"
    env = {**os.environ, "PATH": f"{wrappers}{os.pathsep}{os.environ['PATH']}"}
    try:
        started = subprocess.run(
            [SCRIPT, "start", str(tmp_path / "prometheus.yml"), str(free_port()), str(data)],
            capture_output=True,
            text=True,
            env=env,
        )
        assert started.returncode == 0, started.stdout + started.stderr
        assert "ready on" in started.stdout
    finally:
        subprocess.run([SCRIPT, "stop", str(data)], check=False, env=env)
    left = subprocess.run(["pgrep", "-f", f"storage.tsdb.path={data}/tsdb"], capture_output=True, text=True)
    assert not left.stdout.strip(), f"a server was left running: {left.stdout}"
