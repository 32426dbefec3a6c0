"""The fleet's model registry on a real broker and a real MLflow server (started by scripts/mlflow): workers
start and serve from their model folder while the registry cannot be reached and follow its ``champion`` alias
when it can, and a worker restarted while it cannot again serves that champion; a new version runs in shadow on both
workers, becomes the canary on both workers' comparisons, is served to a share of the events, judged on both
workers' counts, and promoted, or rolled back with its reason on the registry version."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from model_export.registry import assign_alias
from stream_app.lifecycle.registry import (
    CANARY,
    CHAMPION,
    EXPERIMENT,
    MODEL_FILES,
    SHADOW,
    RegistryClient,
    fleet_experiment,
)
from stream_app.pipeline import canary_share
from tests.integration.harness import (
    Topics,
    WorkerProcess,
    account,
    export_model,
    free_port,
    produce,
    run,
    unused_port_outside_the_ephemeral_range,
)
from tests.integration.test_lifecycle import health, health_version, quux_items, write_labels
from tools.replay import event_value, mixed_stream, read_rows

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.mlflow]

ROOT = Path(__file__).resolve().parents[2]


class MlflowServer:
    """An MLflow server on a port and in a data folder of its own, started and stopped by ``scripts/mlflow``; its
    start runs in the background (it takes 10 s or more) until :meth:`wait` is called."""

    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "MLFLOW_PORT": str(self.port), "MLFLOW_DATA_DIR": str(data_dir)}
        self.starting: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the server in the background."""
        self.starting = subprocess.Popen([ROOT / "scripts" / "mlflow", "start"], env=self.env)

    def wait(self) -> None:
        """Wait until the server answers; fails when its start failed."""
        if self.starting is not None:
            assert self.starting.wait(timeout=180) == 0, "scripts/mlflow start failed"
            self.starting = None

    def stop(self) -> None:
        if self.starting is not None:
            self.starting.wait(timeout=180)
        subprocess.run([ROOT / "scripts" / "mlflow", "stop"], env=self.env, check=True)


class Link:
    """The network between the workers and the registry: a TCP port that forwards to the registry while up, and
    refuses connections while down (the registry itself keeps running, so an outage costs no restart of it)."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = unused_port_outside_the_ephemeral_range()  # no outgoing connection takes it while down
        self.url = f"http://127.0.0.1:{self.port}"
        self.listener: socket.socket | None = None
        self.open: set[socket.socket] = set()
        self.lock = threading.Lock()

    def up(self) -> None:
        """Accept and forward connections."""
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        """Refuse new connections and cut the open ones."""
        if self.listener is not None:
            self.listener.close()
            self.listener = None
        with self.lock:
            for sock in self.open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self.open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # closed by down()
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=10)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.open |= {client, upstream}
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                target.sendall(data)
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with self.lock:
                self.open.discard(sock)
            sock.close()


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """One MLflow server for this module's tests (each test follows a registered model of its own), started in the
    background at once and stopped after the last test."""
    server = MlflowServer(tmp_path_factory.mktemp("mlflow"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def seven(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model trained once for the module with seed 7: another version than ``trained_model_dir``'s."""
    out = tmp_path_factory.mktemp("seven")
    export_model("--fast", "--seed", "7", "--out", str(out))
    return out


def export(out: Path, registry: str, model: str, *args: str) -> dict[str, Any]:
    """Train with ``python -m model_export --fast``, logged to ``registry`` as a version of ``model``; returns the
    card."""
    export_model("--fast", "--out", str(out), "--registry", registry, "--model-name", model, *args)
    card: dict[str, Any] = json.loads((out / "model.json").read_text())
    return card


def wait_until(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.2) -> float:
    """Wait until ``condition()`` holds; returns when (monotonic seconds)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(interval)
    return time.monotonic()


def stream(count: int, seed: int, prefix: str) -> list[tuple[bytes, bytes, None]]:
    """Valid, distinct events (ids prefixed, so streams of one test never share an id)."""
    rows = read_rows(ROOT / "data" / "dataset.csv")
    messages = [m for m in mixed_stream(rows, count, seed=seed) if m.expected not in ("deadletter", "duplicate")]
    events = []
    for n, message in enumerate(messages):
        value = json.loads(message.value)
        value["id"] = f"{prefix}-{n}"
        value["title"] = f"{value['title']} ({prefix} {n})"
        events.append((value["id"].encode(), event_value(value), None))
    return events


def versions_of(bootstrap: str, topics: Topics, events: list[tuple[bytes, bytes, None]]) -> set[str]:
    """The model versions named by the tagged and review records of ``events`` (each accounted for once)."""
    return set(version_by_id(bootstrap, topics, events).values())


def version_by_id(bootstrap: str, topics: Topics, events: list[tuple[bytes, bytes, None]]) -> dict[str, str]:
    """Per event of ``events`` that was classified, the model version its tagged or review record names (each
    event accounted for once)."""
    ids = [key.decode() for key, _, _ in events]
    ledger = run(account(bootstrap, topics, ids, timeout=90, settle=0.5))
    assert not ledger.missing(ids), ledger.missing(ids)
    assert ledger.repeats() == 0, ledger.repeated()
    wanted = set(ids)
    classified = [r for r in ledger.records["tagged"] + ledger.records["review"] if str(r["id"]) in wanted]
    assert classified
    return {str(r["id"]): str(r["model_version"]) for r in classified}


def served(worker: WorkerProcess, version: str) -> float:
    return worker.total("content_tagger_model_served_total", version=version)


def test_workers_serve_their_folder_while_the_registry_is_down_follow_its_champion_and_serve_it_after_a_restart(
    mlflow_server: MlflowServer, seven: Path, start_worker: Any, trained_model_dir: Path, tmp_path: Path
) -> None:
    model = "follow"
    link = Link(mlflow_server.port)  # down until link.up()
    env = {"TAGGER_REGISTRY_URL": link.url, "TAGGER_CANDIDATE_POLL_SECONDS": "0.5",
           "TAGGER_REGISTRY_MODEL": model, "TAGGER_CANDIDATES_DIR": str(tmp_path / "candidates")}  # fmt: skip
    first, topics = start_worker(partitions=2, **env)
    second, _ = start_worker(partitions=2, topics=topics, app_id=first.app_id, **env)
    workers = (first, second)
    bootstrap = first.env["TAGGER_KAFKA_BOOTSTRAP_SERVERS"]
    folder_version = health_version(first.port)
    offline = stream(60, seed=3, prefix="offline")
    run(produce(bootstrap, topics.input, offline))
    assert versions_of(bootstrap, topics, offline) == {folder_version}
    assert first.value("content_tagger_registry_reachable") == 0.0

    mlflow_server.wait()
    client = RegistryClient(mlflow_server.url)
    register_by_hand(client, model, seven, CHAMPION)
    link.up()
    card = json.loads((seven / "model.json").read_text())
    assert card["version"] != folder_version
    for worker in workers:
        wait_until(lambda w=worker: health_version(w.port) == card["version"], 60, "serving the registry's champion")
    online = stream(60, seed=4, prefix="online")
    run(produce(bootstrap, topics.input, online))
    assert versions_of(bootstrap, topics, online) == {card["version"]}
    assert first.value("content_tagger_registry_reachable") == 1.0

    # The registry is down again and the fleet restarts: the worker serves the champion it took up, not its folder.
    link.down()
    for worker in workers:
        worker.stop()
    restarted, _ = start_worker(partitions=2, topics=topics, app_id=first.app_id, **env,
                                TAGGER_DATA_DIR=first.env["TAGGER_DATA_DIR"])  # fmt: skip
    assert health_version(restarted.port) == card["version"]
    again = stream(60, seed=9, prefix="restarted")
    run(produce(bootstrap, topics.input, again))
    assert versions_of(bootstrap, topics, again) == {card["version"]}
    assert restarted.value("content_tagger_registry_reachable") == 0.0
    assert "serving the cached registry champion" in restarted.log_text()


def register_by_hand(client: RegistryClient, model: str, folder: Path, alias: str) -> str:
    """Log ``folder``'s model as a run and register it as a version of ``model`` under ``alias``; returns the
    version number."""
    card = json.loads((folder / "model.json").read_text())
    run_id, artifacts = client.create_run(client.experiment_id(EXPERIMENT), "by-hand", {})
    for name in MODEL_FILES:
        client.upload(artifacts, f"model/{name}", (folder / name).read_bytes())
    version = client.register(model, f"{artifacts}/model", run_id, {"model_version": card["version"]})
    client.set_alias(model, alias, version.number)
    return version.number


def test_a_later_version_finding_no_champion_alias_is_not_made_champion_unjudged(
    mlflow_server: MlflowServer, trained_model_dir: Path, seven: Path
) -> None:
    model = "no-champion"
    mlflow_server.wait()
    client = RegistryClient(mlflow_server.url)
    register_by_hand(client, model, trained_model_dir, CHAMPION)
    client.delete_alias(model, CHAMPION)  # removed by hand, or by a script gone wrong
    card = json.loads((seven / "model.json").read_text())
    run_id, artifacts = client.create_run(client.experiment_id(EXPERIMENT), "later", {})
    version = client.register(model, f"{artifacts}/model", run_id, {"model_version": card["version"]})
    assign_alias(client, model, version, card)  # as the exporter does, with no offline verdict on the card
    assert client.alias(model, CHAMPION) is None
    assert client.version(model, version.number).tags["decision"].startswith("refused: no champion alias")


def test_a_new_version_shadows_then_serves_as_canary_judged_on_both_workers_traffic_then_promoted_or_rolled_back(
    mlflow_server: MlflowServer, seven: Path, start_worker: Any, trained_model_dir: Path, tmp_path: Path
) -> None:
    model = "canary"
    mlflow_server.wait()
    client = RegistryClient(mlflow_server.url)
    register_by_hand(client, model, seven, CHAMPION)
    champion_card = json.loads((seven / "model.json").read_text())
    base = {"TAGGER_REGISTRY_URL": mlflow_server.url, "TAGGER_CANDIDATE_POLL_SECONDS": "0.5",
            "TAGGER_REGISTRY_MODEL": model,
            "TAGGER_CANARY_FRACTION": "0.5", "TAGGER_CANARY_MIN_EVENTS": "100", "TAGGER_SHADOW_EVENTS": "60",
            "TAGGER_CANDIDATES_DIR": str(tmp_path / "candidates")}  # fmt: skip
    first, topics = start_worker(partitions=2, **base, TAGGER_CANARY_DECIDER="true")
    second, _ = start_worker(partitions=2, topics=topics, app_id=first.app_id, **base)
    workers = (first, second)
    bootstrap = first.env["TAGGER_KAFKA_BOOTSTRAP_SERVERS"]
    for worker in workers:
        wait_until(lambda w=worker: health_version(w.port) == champion_card["version"], 60, "serving the champion")

    labels = tmp_path / "labels.jsonl"
    write_labels(labels, quux_items("fb", 80, seed=1), lambda item: "other")
    # The champion's seed, so both are scored on the same test split.
    better = export(tmp_path / "better", mlflow_server.url, model, "--seed", "7", "--feedback", str(labels),
                    "--live", str(seven), "--reason", "test")  # fmt: skip
    registered = time.monotonic()
    shadow = client.alias(model, SHADOW)
    assert shadow is not None and shadow.tags["model_version"] == better["version"], better["promotion"]
    assert client.alias(model, CANARY) is None and shadow.tags["decision"] == "shadow"
    for worker in workers:  # both run the shadow before the events it is compared on arrive
        wait_until(lambda w=worker: health(w.port)["shadow_version"] == better["version"], 30, "running the shadow")
    shadowed = stream(150, seed=9, prefix="shadow")
    run(produce(bootstrap, topics.input, shadowed))
    # The shadow emits nothing: only an event the canary's share takes (once the shadow became the canary while
    # these flowed) may be served by the new version.
    for event_id, version in version_by_id(bootstrap, topics, shadowed).items():
        champion_served = version == champion_card["version"]
        assert champion_served or (version == better["version"] and canary_share(event_id) < 0.5), (event_id, version)
    to_canary = (
        wait_until(lambda: client.alias(model, CANARY) is not None, 60, "the shadow becomes the canary") - registered
    )
    canary = client.alias(model, CANARY)
    assert canary is not None and canary.number == shadow.number and client.alias(model, SHADOW) is None
    assert canary.tags["decision"] == "canary: the shadow passed"
    compared = json.loads(canary.tags["shadow"])
    assert compared["events"] >= 60 and compared["reasons"] == [], compared
    runs = client.search_runs(client.experiment_id(fleet_experiment(model)))
    per_worker = [
        m["value"] for r in runs for m in r["data"]["metrics"] if m["key"] == f"shadow_compared.{better['version']}"
    ]
    assert len(per_worker) == 2 and all(n > 0 for n in per_worker), per_worker  # both workers compared events
    print(
        f"\nfigure: events compared fleet-wide {compared['events']:.0f} (per worker {per_worker}), agreement "
        f"{compared['agreement']:.3f}; registration to canary {to_canary:.1f} s"
    )
    for worker in workers:  # both serve the canary before the events it is judged on arrive
        wait_until(lambda w=worker: health(w.port)["canary_version"] == better["version"], 30, "serving the canary")
        wait_until(lambda w=worker: health(w.port)["shadow_version"] is None, 30, "no longer running the shadow")
    assert canary.tags["gate.passed"] == "true" and canary.tags["trigger"] == "test"
    (logged,) = client.search_runs(client.experiment_id(EXPERIMENT), "tags.trigger = 'test'")
    logged_tags = {t["key"]: t["value"] for t in logged["data"]["tags"]}
    assert (
        logged_tags["model_version"] == better["version"]
        and logged_tags["data_sha256"] == better["sha256"]["training_data"]
    )
    assert {m["key"] for m in logged["data"]["metrics"]} >= {"test.precision", "test.f1", "threshold"}
    events = stream(600, seed=5, prefix="canary")
    run(produce(bootstrap, topics.input, events))
    promoted = wait_until(
        lambda: (client.alias(model, CHAMPION) or canary).number == canary.number, 120, "canary promoted", 0.05
    )
    last = max(  # both served the canary, then both serve it as champion
        wait_until(lambda w=w: health_version(w.port) == better["version"], 30, "serving the promoted canary", 0.05)
        for w in workers
    )
    print(f"\nfigure: promotion to the last of 2 workers serving it: {last - promoted:.2f} s (polls every 0.5 s)")
    assert all(served(worker, better["version"]) > 0 for worker in workers)
    figures = json.loads(client.version(model, canary.number).tags["canary"])
    assert figures["canary"]["served"] >= 100 and figures["reasons"] == []
    print(f"\nfigure: events served by the canary before its promotion: {figures['canary']['served']:.0f}")

    # A canary that passed offline but sends every event to people: its card's threshold is past any confidence.
    worse = tmp_path / "worse"
    shutil.copytree(trained_model_dir, worse)
    card = json.loads((worse / "model.json").read_text())
    card["threshold"] = 0.99999
    (worse / "model.json").write_text(json.dumps(card))
    number = register_by_hand(client, model, worse, CANARY)
    for worker in workers:
        wait_until(lambda w=worker: health(w.port)["canary_version"] == card["version"], 30, "serving the canary")
    run(produce(bootstrap, topics.input, stream(600, seed=6, prefix="rollback")))
    wait_until(lambda: client.alias(model, CANARY) is None, 120, "canary rolled back")
    decision = client.version(model, number).tags["decision"]
    assert decision.startswith("refused: worse_canary: review share"), decision
    assert client.alias(model, CHAMPION).number == canary.number  # type: ignore[union-attr]
    print("figure: rollbacks: 1")
    time.sleep(1.5)  # three polls: both workers have dropped the canary
    after = stream(60, seed=8, prefix="after")
    run(produce(bootstrap, topics.input, after))
    assert versions_of(bootstrap, topics, after) == {better["version"]}


def test_a_drifted_stream_starts_exactly_one_retrain_recorded_with_its_trigger(
    mlflow_server: MlflowServer, start_worker: Any, trained_model_dir: Path, tmp_path: Path
) -> None:
    model = "drift"
    mlflow_server.wait()
    client = RegistryClient(mlflow_server.url)
    register_by_hand(client, model, trained_model_dir, CHAMPION)  # the model the worker serves from its folder
    labels = tmp_path / "labels.jsonl"
    write_labels(labels, quux_items("fb", 40, seed=2), lambda item: "other")
    worker, topics = start_worker(
        TAGGER_REGISTRY_URL=mlflow_server.url, TAGGER_REGISTRY_MODEL=model, TAGGER_CANDIDATE_POLL_SECONDS="0.5",
        TAGGER_DRIFT_WINDOW="200",
        TAGGER_RETRAIN_DRIFT_SECONDS="2", TAGGER_LABELS_PATH=str(labels), TAGGER_RETRAIN_GRID="fast",
        TAGGER_CANDIDATES_DIR=str(tmp_path / "candidates"),
    )  # fmt: skip
    bootstrap = worker.env["TAGGER_KAFKA_BOOTSTRAP_SERVERS"]
    rows = [r for r in read_rows(ROOT / "data" / "dataset.csv") if r["tag"] == "computer-vision"]
    run(produce(bootstrap, topics.input, [(f"cv-{r['id']}".encode(), event_value({**r, "id": f"cv-{r['id']}"}), None)
                                          for r in rows]))  # fmt: skip
    experiment = client.experiment_id(EXPERIMENT)

    def drift_runs() -> list[dict[str, Any]]:
        return client.search_runs(experiment, "tags.trigger LIKE 'drift:%'")

    wait_until(lambda: any(r["info"]["status"] == "FINISHED" for r in drift_runs()), 240, "a finished drift retrain")
    time.sleep(3)  # six more polls, the drift still there: no second run
    (retrain,) = drift_runs()
    tags = {t["key"]: t["value"] for t in retrain["data"]["tags"]}
    assert tags["trigger"].startswith("drift: confidence PSI") and "> 0.2 for" in tags["trigger"], tags
    assert "drift:" in worker.log_text() and worker.log_text().count("retraining (model") == 1
    assert " --fast " in worker.log_text()  # TAGGER_RETRAIN_GRID=fast
