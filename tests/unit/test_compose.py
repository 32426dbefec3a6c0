"""docker-compose.yml is a valid Compose file (checked against the Compose Specification's JSON Schema, as no
Docker engine runs here) whose Kafka is a pinned single-node KRaft broker that dependants await as healthy."""

from __future__ import annotations

import base64
import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "compose-schema"
BROKER_API_VERSIONS = "/opt/kafka/bin/kafka-broker-api-versions.sh"


def fetch_schema(cache_dir: Path | None = None) -> Path:
    """Run scripts/compose-schema (downloading at most once per cache folder) and return the schema's path."""
    env = {**os.environ, "PYTHON": sys.executable}
    if cache_dir is not None:
        env["COMPOSE_SCHEMA_DIR"] = str(cache_dir)
    result = subprocess.run([SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return Path(result.stdout.strip())


@pytest.fixture(scope="module")
def compose_validator() -> Any:
    schema = json.loads(fetch_schema().read_text(encoding="utf-8"))
    validator_class = jsonschema.validators.validator_for(schema)  # the draft the schema declares
    validator_class.check_schema(schema)
    return validator_class(schema)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    return document


def schema_errors(validator: Any, document: dict[str, Any]) -> list[str]:
    return sorted(f"{error.json_path}: {error.message}" for error in validator.iter_errors(document))


def test_the_compose_file_follows_the_compose_spec(compose_validator: Any, compose: dict[str, Any]) -> None:
    assert schema_errors(compose_validator, compose) == []


MISTAKES: list[tuple[str, dict[str, Any]]] = [
    ("misspelt service key", {"imagee": "apache/kafka:4.1.1"}),
    ("misspelt healthcheck key", {"healthcheck": {"tset": ["CMD", "true"]}}),
    ("unknown dependency condition", {"depends_on": {"kafka": {"condition": "healthy"}}}),
    ("ports of the wrong type", {"ports": {"29092": 29092}}),
]


@pytest.mark.parametrize(("mistake", "service"), MISTAKES, ids=[name for name, _ in MISTAKES])
def test_the_schema_check_catches_compose_mistakes(
    compose_validator: Any, compose: dict[str, Any], mistake: str, service: dict[str, Any]
) -> None:
    broken = copy.deepcopy(compose)
    broken["services"]["broken"] = {"image": "busybox:1.37", **service}
    assert schema_errors(compose_validator, broken), mistake


def test_the_schema_script_is_idempotent_and_replaces_a_damaged_copy(tmp_path: Path) -> None:
    schema = fetch_schema(tmp_path)
    first = schema.read_bytes()
    assert fetch_schema(tmp_path) == schema and schema.read_bytes() == first
    schema.write_bytes(first[: len(first) // 2])  # a half-written or tampered copy
    assert fetch_schema(tmp_path).read_bytes() == first
    licence = (tmp_path / "LICENSE.compose-spec").read_text(encoding="utf-8")
    assert licence.lstrip().startswith("Apache License")


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as strings, from either the mapping or the list form."""
    raw = service.get("environment", {})
    pairs = raw.items() if isinstance(raw, dict) else (entry.split("=", 1) for entry in raw)
    return {str(name): str(value) for name, value in pairs}


def listeners(text: str) -> dict[str, tuple[str, int]]:
    """``NAME://host:port,...`` as {name: (host, port)}."""
    parsed = (re.fullmatch(r"([A-Z_]+)://([^:,]*):(\d+)", item.strip()) for item in text.split(","))
    return {match[1]: (match[2], int(match[3])) for match in parsed if match}


def test_kafka_is_a_pinned_single_node_kraft_broker(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    assert re.fullmatch(r"apache/kafka:4\.\d+\.\d+", kafka["image"])
    env = environment(kafka)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    assert len(base64.urlsafe_b64decode(env["CLUSTER_ID"] + "==")) == 16 and len(env["CLUSTER_ID"]) == 22
    single_replica = [
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
    ]
    single_replica += [name for name in env if name.endswith(("_REPLICATION_FACTOR", "_MIN_ISR"))]
    assert {name: env[name] for name in single_replica} == dict.fromkeys(single_replica, "1")


def test_kafka_listens_for_the_compose_network_and_for_the_host(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    env = environment(kafka)
    bound, advertised = listeners(env["KAFKA_LISTENERS"]), listeners(env["KAFKA_ADVERTISED_LISTENERS"])
    protocols = dict(pair.split(":") for pair in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert set(bound) == set(protocols) and controller in bound and controller not in advertised
    assert set(advertised) <= set(bound) and env["KAFKA_INTER_BROKER_LISTENER_NAME"] in advertised
    for name, (_, port) in advertised.items():  # clients reach each advertised address on its bound port
        assert bound[name][1] == port
    by_address = {address: name for name, address in advertised.items()}
    assert ("kafka", 9092) in by_address
    host_listener = next(name for (host, _), name in by_address.items() if host == "localhost")
    host_port = str(advertised[host_listener][1])
    assert [host_port, host_port] in [str(published).split(":")[-2:] for published in kafka["ports"]]


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """A service's volumes as {path in the container: source}, from the short or the long form."""
    result = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            result[volume["target"]] = volume.get("source", "")
        else:
            source, target = volume.split(":")[:2]
            result[target] = source
    return result


def test_kafka_keeps_its_data_in_a_named_volume(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    assert mounts(kafka)[environment(kafka)["KAFKA_LOG_DIRS"]] in compose["volumes"]


def test_the_kafka_healthcheck_asks_the_broker_itself(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    check = kafka["healthcheck"]
    command = check["test"]
    assert command[0] == "CMD" and command[1] == BROKER_API_VERSIONS
    bootstrap = command[command.index("--bootstrap-server") + 1]
    ports = {port for _, port in listeners(environment(kafka)["KAFKA_LISTENERS"]).values()}
    assert bootstrap.startswith("localhost:") and int(bootstrap.split(":")[1]) in ports
    assert {"interval", "timeout", "retries", "start_period"} <= set(check)


def dependency_problems(document: dict[str, Any]) -> list[str]:
    """Dependencies that could start a service before what it needs is ready, as sentences."""
    services: dict[str, Any] = document.get("services", {})
    problems = []
    for name, service in services.items():
        depends_on = service.get("depends_on", {})
        if isinstance(depends_on, list):  # the short form means only "started"
            depends_on = {needed: {"condition": "service_started"} for needed in depends_on}
        for needed, how in depends_on.items():
            has_healthcheck = "healthcheck" in services.get(needed, {})
            condition = how.get("condition")
            if (needed == "kafka" or has_healthcheck) and condition != "service_healthy":
                problems.append(f"{name} starts when {needed} has started, not when it is healthy")
            if condition == "service_healthy" and not has_healthcheck:
                problems.append(f"{name} waits for {needed} to be healthy, but {needed} has no healthcheck")
    return problems


def test_services_that_need_kafka_wait_until_it_is_healthy(compose: dict[str, Any]) -> None:
    assert dependency_problems(compose) == []


@pytest.mark.parametrize(
    ("depends_on", "problems"),
    [
        (["kafka"], 1),
        ({"kafka": {"condition": "service_started"}}, 1),
        ({"kafka": {"condition": "service_healthy"}}, 0),
        ({"kafka": {"condition": "service_healthy"}, "cache": {"condition": "service_healthy"}}, 1),
    ],
)
def test_the_dependency_rule_tells_a_healthy_wait_from_a_start(
    compose: dict[str, Any], depends_on: Any, problems: int
) -> None:
    document = copy.deepcopy(compose)
    document["services"]["cache"] = {"image": "redis:8"}
    document["services"]["worker"] = {"image": "content-tagger", "depends_on": depends_on}
    assert len(dependency_problems(document)) == problems
