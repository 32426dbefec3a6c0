"""docker-compose.yml is a valid Compose file (checked against the Compose Specification's JSON Schema, as no
Docker engine runs here) whose Kafka is a pinned single-node KRaft broker that dependants await as healthy."""

from __future__ import annotations

import base64
import copy
import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from stream_app.settings import Settings

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
    # The host's listener is advertised on the address it is published on: `localhost` may resolve to ::1 first.
    host_listener = next(name for (host, _), name in by_address.items() if host == "127.0.0.1")
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


def dependencies(service: dict[str, Any]) -> dict[str, str]:
    """A service's depends_on as {service it needs: condition}, from the short or the long form."""
    depends_on = service.get("depends_on", {})
    if isinstance(depends_on, list):  # the short form means only "started"
        return dict.fromkeys(depends_on, "service_started")
    return {needed: how.get("condition", "service_started") for needed, how in depends_on.items()}


def dependency_problems(document: dict[str, Any]) -> list[str]:
    """Dependencies that could start a service before what it needs is ready, as sentences."""
    services: dict[str, Any] = document.get("services", {})
    problems = []
    for name, service in services.items():
        for needed, condition in dependencies(service).items():
            if needed not in services:
                problems.append(f"{name} depends on {needed}, which is not a service")
            check = services.get(needed, {}).get("healthcheck") or {}
            has_healthcheck = bool(check) and not check.get("disable", False)
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
        ({"kafka": {"condition": "service_healthy"}, "missing": {"condition": "service_started"}}, 1),
    ],
)
def test_the_dependency_rule_tells_a_healthy_wait_from_a_start(
    compose: dict[str, Any], depends_on: Any, problems: int
) -> None:
    document = copy.deepcopy(compose)
    document["services"]["cache"] = {"image": "redis:8"}
    document["services"]["dependant"] = {"image": "content-tagger", "depends_on": depends_on}
    assert len([p for p in dependency_problems(document) if p.startswith("dependant ")]) == problems


# --- the whole stack: services, files, names and ports agree -----------------------------------------

STACK = ("kafka", "worker", "prometheus", "grafana", "replay")
LONG_RUNNING = ("kafka", "worker", "prometheus", "grafana")
DATASOURCE_UID = "content-tagger-prometheus"


def dependency_cycle(document: dict[str, Any]) -> list[str]:
    """A chain of depends_on that comes back to where it started, or [] when there is none."""
    services: dict[str, Any] = document.get("services", {})
    needs = {name: [n for n in dependencies(service) if n in services] for name, service in services.items()}
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> list[str]:
        if name in path:
            return path[path.index(name) :] + [name]
        if name in done:
            return []
        for needed in needs[name]:
            cycle = visit(needed, [*path, name])
            if cycle:
                return cycle
        done.add(name)
        return []

    return next((cycle for name in services if (cycle := visit(name, []))), [])


def test_the_stack_has_every_service_and_no_dependency_cycle(compose: dict[str, Any]) -> None:
    assert set(STACK) <= set(compose["services"])
    assert dependency_cycle(compose) == []


def test_the_cycle_check_finds_a_cycle(compose: dict[str, Any]) -> None:
    document = copy.deepcopy(compose)
    document["services"]["kafka"]["depends_on"] = {"grafana": {"condition": "service_healthy"}}
    cycle = dependency_cycle(document)
    assert cycle[0] == cycle[-1] and {"kafka", "worker", "prometheus", "grafana"} <= set(cycle)


def test_every_long_running_service_has_a_healthcheck_on_its_own_port(compose: dict[str, Any]) -> None:
    for name in LONG_RUNNING:
        service = compose["services"][name]
        command = service["healthcheck"]["test"]
        assert command[0] in ("CMD", "CMD-SHELL"), name
        published = {str(port).split(":")[-1] for port in service["ports"]}
        for port in re.findall(r"https?://(?:127\.0\.0\.1|localhost):(\d+)", " ".join(command)):
            assert port in published, (name, port)


def test_every_image_is_pinned_to_a_version(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        assert re.fullmatch(r"[\w./-]+:v?\d+\.\d+\.\d+", service["image"]), name


def build_context(service: dict[str, Any]) -> Path:
    build = service["build"]
    return ROOT / (build if isinstance(build, str) else build.get("context", "."))


def local_sources(document: dict[str, Any]) -> list[str]:
    """Every path on the host the compose file builds from or bind-mounts, relative to the repository."""
    paths = []
    for service in document["services"].values():
        if "build" in service:
            context = build_context(service)
            build = service["build"]
            dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
            paths += [str(context.relative_to(ROOT)), str((context / dockerfile).relative_to(ROOT))]
        paths += [source for source in mounts(service).values() if source.startswith((".", "/"))]
    return paths


def test_every_file_the_stack_builds_from_or_mounts_is_in_the_repository(compose: dict[str, Any]) -> None:
    sources = local_sources(compose)
    assert {"Dockerfile", "./monitoring/prometheus.yml", "./monitoring/grafana/provisioning"} <= set(sources)
    missing = [source for source in sources if not (ROOT / source).exists()]
    assert missing == []
    named = [s for service in compose["services"].values() for s in mounts(service).values() if s[:1] not in "./"]
    assert set(named) <= set(compose["volumes"])


def test_the_services_set_only_real_settings_to_valid_values(compose: dict[str, Any]) -> None:
    """``Settings.from_env`` refuses a TAGGER_ variable that is no setting, and a value no worker runs with."""
    for name in ("worker", "replay"):
        env = environment(compose["services"][name])
        assert env["TAGGER_KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092", name
        Settings.from_env(env)
    Settings.from_env(dockerfile_env())


def test_everything_the_worker_writes_is_in_its_state_folder_kept_in_a_named_volume(compose: dict[str, Any]) -> None:
    """The image's user owns only its state folder: a decision, a reviewer account or a candidate model written
    anywhere else would fail (and a container recreated without the volume would lose them)."""
    worker = compose["services"]["worker"]
    settings = Settings.from_env({**dockerfile_env(), **environment(worker)})
    state = settings.data_dir
    assert state.is_absolute()
    for path in (settings.labels_path, settings.reviewers_file, settings.candidates_dir):
        assert path.is_relative_to(state), path
    volume = mounts(worker)[str(state)]
    assert volume in compose["volumes"], volume
    assert any(i == "RUN" and f"chown tagger {state}" in a for i, a in dockerfile())


def test_the_stack_s_workers_following_the_registry_have_one_decider(compose: dict[str, Any]) -> None:
    """With a registry the candidates folder is ignored and only a decider moves a registered model past shadow:
    without one a model never serves, and two would judge the same canary."""
    workers = [s for s in compose["services"].values() if s.get("build") and "command" not in s]
    following = [Settings.from_env({**dockerfile_env(), **environment(w)}) for w in workers]
    following = [settings for settings in following if settings.registry_url]
    assert following
    assert [settings.canary_decider for settings in following].count(True) == 1


def worker_address(compose: dict[str, Any]) -> tuple[str, int]:
    """The worker service's name and the port its HTTP server listens on."""
    env = environment(compose["services"]["worker"])
    assert env["TAGGER_WEB_HOST"] == "0.0.0.0"  # noqa: S104 - reachable from the Prometheus container
    return "worker", int(env["TAGGER_WEB_PORT"])


def test_the_worker_runs_the_images_command_and_publishes_metrics_and_health(compose: dict[str, Any]) -> None:
    worker = compose["services"]["worker"]
    _, port = worker_address(compose)
    assert "command" not in worker and "entrypoint" not in worker  # the Dockerfile's CMD: the worker
    assert f"127.0.0.1:{port}:{port}" in worker["ports"]
    assert f"http://127.0.0.1:{port}/health" in " ".join(worker["healthcheck"]["test"])


def compose_seconds(duration: str) -> float:
    """A Compose duration (``1m30s``, ``40s``, ``500ms``) in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 0.000001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", duration)
    assert parts and "".join(number + unit for number, unit in parts) == duration, duration
    return sum(float(number) * units[unit] for number, unit in parts)


def test_docker_waits_for_the_worker_s_own_bounded_stop_before_killing_it(compose: dict[str, Any]) -> None:
    """Docker kills a container that has not stopped 10 s after its SIGTERM (its default grace period), while the
    worker's stop may take up to ``TAGGER_STOP_TIMEOUT_SECONDS`` (delivering and committing what it holds)."""
    worker = compose["services"]["worker"]
    env = environment(worker)
    stop_timeout = float(env.get("TAGGER_STOP_TIMEOUT_SECONDS", Settings().stop_timeout_seconds))
    assert compose_seconds(str(worker.get("stop_grace_period", "10s"))) > stop_timeout


def option(command: list[str], name: str) -> str:
    """The value of ``--name=value`` in a command."""
    return next(arg.split("=", 1)[1] for arg in command if arg.startswith(f"--{name}="))


def prometheus_files(compose: dict[str, Any]) -> dict[str, Path]:
    """The files the prometheus service reads, by their path in the container."""
    return {target: ROOT / source for target, source in mounts(compose["services"]["prometheus"]).items()}


def prometheus_config(compose: dict[str, Any]) -> dict[str, Any]:
    path = option(compose["services"]["prometheus"]["command"], "config.file")
    return dict(yaml.safe_load(prometheus_files(compose)[path].read_text(encoding="utf-8")))


def test_prometheus_scrapes_the_worker_service_on_its_web_port(compose: dict[str, Any]) -> None:
    config = prometheus_config(compose)
    targets = [t for job in config["scrape_configs"] for group in job["static_configs"] for t in group["targets"]]
    host, port = worker_address(compose)
    assert targets == [f"{host}:{port}"]
    assert host in compose["services"]


def test_prometheus_finds_its_rule_files_where_they_are_mounted(compose: dict[str, Any]) -> None:
    config_path = option(compose["services"]["prometheus"]["command"], "config.file")
    for rule_file in prometheus_config(compose)["rule_files"]:
        in_container = str(Path(config_path).parent / rule_file)
        assert prometheus_files(compose)[in_container].is_file(), in_container


def grafana_mount(compose: dict[str, Any], target: str) -> Path:
    return ROOT / mounts(compose["services"]["grafana"])[target]


def test_the_grafana_datasource_points_at_the_prometheus_service(compose: dict[str, Any]) -> None:
    provisioning = grafana_mount(compose, "/etc/grafana/provisioning")
    datasources = [
        source
        for path in sorted((provisioning / "datasources").glob("*.y*ml"))
        for source in yaml.safe_load(path.read_text(encoding="utf-8"))["datasources"]
    ]
    (datasource,) = [source for source in datasources if source["uid"] == DATASOURCE_UID]
    prometheus = compose["services"]["prometheus"]
    port = option(prometheus["command"], "web.listen-address").rsplit(":", 1)[1]
    assert datasource["url"] == f"http://prometheus:{port}"
    assert prometheus["image"].startswith("prom/prometheus:")


def test_grafana_loads_the_dashboard_from_where_it_is_mounted(compose: dict[str, Any]) -> None:
    provisioning = grafana_mount(compose, "/etc/grafana/provisioning")
    (provider,) = yaml.safe_load((provisioning / "dashboards/content-tagger.yml").read_text())["providers"]
    folder = provider["options"]["path"]
    board = json.loads((grafana_mount(compose, folder) / "content-tagger.json").read_text(encoding="utf-8"))
    assert board["uid"] == "content-tagger"
    home = environment(compose["services"]["grafana"])["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (grafana_mount(compose, str(Path(home).parent)) / Path(home).name).is_file()


def test_the_replay_runs_once_the_worker_is_healthy(compose: dict[str, Any]) -> None:
    replay = compose["services"]["replay"]
    assert replay["image"] == compose["services"]["worker"]["image"]
    assert replay["build"] == compose["services"]["worker"]["build"]
    assert dependencies(replay)["worker"] == "service_healthy" and replay["restart"] == "no"
    command = replay["command"]
    assert command[:3] == ["python", "-m", "tools.replay"]
    data = command[command.index("--data") + 1]
    assert (ROOT / data).is_file() and Path(data).parts[0] in copied_into_the_image()
    usage = subprocess.run([sys.executable, *command[1:], "--help"], cwd=ROOT, capture_output=True, text=True)
    assert usage.returncode == 0, usage.stderr
    assert all(arg in usage.stdout for arg in command[3:] if arg.startswith("--"))


def test_the_readme_documents_every_published_port(compose: dict[str, Any]) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Docker Compose", 1)[1].split("\n## ", 1)[0]
    for name, service in compose["services"].items():
        (row,) = [line for line in section.splitlines() if line.startswith(f"| `{name}` |")] or [""]
        for published in service.get("ports", []):
            host_address = ":".join(str(published).split(":")[:-1])  # 127.0.0.1:PORT
            assert host_address in row, (name, host_address)


# --- the worker's image -------------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (INSTRUCTION, arguments), continuation lines joined."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in joined.splitlines() if line.strip()]


def dockerfile_env() -> dict[str, str]:
    """Every ENV of the Dockerfile."""
    items = [item for instruction, args in dockerfile() if instruction == "ENV" for item in shlex.split(args)]
    return {name: value for name, _, value in (item.partition("=") for item in items)}


def copies() -> list[tuple[list[str], str, list[str]]]:
    """Every COPY as (flags, destination, sources)."""
    result = []
    for instruction, args in dockerfile():
        if instruction == "COPY":
            words = shlex.split(args)
            flags = [w for w in words if w.startswith("--")]
            *sources, destination = [w for w in words if not w.startswith("--")]
            result.append((flags, destination, sources))
    return result


def copied_into_the_image() -> set[str]:
    """Top-level repository paths the final stage copies from the build context."""
    stages = [i for i, (instruction, _) in enumerate(dockerfile()) if instruction == "FROM"]
    final = dockerfile()[stages[-1] :]
    return {s.rstrip("/") for i, a in final if i == "COPY" and "--from" not in a for s in shlex.split(a)[:-1]}


def dockerignored(path: str) -> bool:
    """Whether .dockerignore keeps ``path`` out of the build context (the patterns this repository uses)."""
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    parts = Path(path).parts
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    for pattern in patterns:
        if pattern.startswith("**/"):  # any file or folder of that name, at any depth
            if any(fnmatch.fnmatch(part, pattern[3:]) for part in parts):
                return True
        elif any(fnmatch.fnmatch(prefix, pattern) for prefix in prefixes):
            return True
    return False


def test_every_copy_source_of_the_dockerfile_is_in_the_build_context(compose: dict[str, Any]) -> None:
    context = build_context(compose["services"]["worker"])
    sources = [s for flags, _, found in copies() if not any(f.startswith("--from") for f in flags) for s in found]
    assert {"stream_app", "model_export", "data", "schemas", "pyproject.toml"} <= set(sources)
    assert [s for s in sources if not (context / s).exists() or dockerignored(s)] == []
    assert dockerignored(".venv/bin/python") and dockerignored("stream_app/__pycache__/x.pyc")
    assert not dockerignored("Dockerfile") and not dockerignored("data/dataset.csv")


def test_the_image_serves_a_model_trained_while_it_builds() -> None:
    runs = " && ".join(args for instruction, args in dockerfile() if instruction == "RUN")
    trained_in = re.search(r"python -m model_export(?: [^&]*)? --out (\S+)", runs)
    assert trained_in, runs
    model_copies = [dest for flags, dest, found in copies() if "--from=build" in flags and trained_in[1] in found]
    assert model_copies == [dockerfile_env()["TAGGER_MODEL_DIR"]]


def test_the_images_command_starts_the_worker(trained_model_dir: Path, tmp_path: Path) -> None:
    (command,) = [json.loads(args) for instruction, args in dockerfile() if instruction == "CMD"]
    assert command[:3] == ["python", "-m", "stream_app"] and "worker" in command
    env = {**os.environ, **dockerfile_env(), "TAGGER_MODEL_DIR": str(trained_model_dir)}
    env["TAGGER_DATA_DIR"] = str(tmp_path)
    # Faust's own command line: --help after the image's arguments parses them, loads the model and exits.
    result = subprocess.run([sys.executable, *command[1:], "--help"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "Usage: python -m stream_app worker" in result.stdout


@pytest.mark.prometheus
def test_promtool_accepts_the_prometheus_config_as_compose_mounts_it(
    compose: dict[str, Any], prometheus_installed: None, tmp_path: Path
) -> None:
    for target, source in prometheus_files(compose).items():  # the container's files, at their paths
        if source.is_file():
            (tmp_path / target.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, tmp_path / target.lstrip("/"))
    config = tmp_path / option(compose["services"]["prometheus"]["command"], "config.file").lstrip("/")
    result = subprocess.run(["promtool", "check", "config", str(config)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"SUCCESS: [1-9]\d* rules found", result.stdout), result.stdout
