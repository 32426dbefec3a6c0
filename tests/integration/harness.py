"""Run the worker as a real process against a real broker, and read back what it produced."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions
from prometheus_client.parser import text_string_to_metric_families

from tools.topics import create_topics

ROOT = Path(__file__).resolve().parents[2]
OUTPUT_KINDS = ("tagged", "review", "duplicate", "deadletter")


def export_model(*args: str) -> None:
    """Run ``python -m model_export`` with ``args`` from the project root; a failure names the exporter's error."""
    done = subprocess.run(
        [sys.executable, "-m", "model_export", *args], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"model_export {' '.join(args)} exited {done.returncode}: {done.stderr[-2000:]}"


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def unused_port_outside_the_ephemeral_range() -> int:
    """A free port below the kernel's ephemeral range: the worker's and the broker's outgoing connections take
    ports from that range, and one of them can take a port chosen there before a server binds it (or binds it
    again)."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for candidate in random.sample(range(20_000, min(low, 32_768)), 200):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return candidate
    return free_port()


async def create_topic(bootstrap: str, name: str, partitions: int, config: Mapping[str, str] | None = None) -> None:
    """Create the topic (with the topic configuration ``config``) and return once the broker serves every partition
    of it (a leader for each)."""
    await create_topics(bootstrap, [name], partitions, configs={name: config or {}})


class OwnBroker:
    """A broker on ports and in a data folder of its own, started and stopped by ``scripts/kafka``."""

    def __init__(self, data_dir: Path) -> None:
        self.env = {
            **os.environ,
            "KAFKA_PORT": str(free_port()),
            "KAFKA_CONTROLLER_PORT": str(free_port()),
            "KAFKA_DATA_DIR": str(data_dir),
        }
        self.bootstrap = f"127.0.0.1:{self.env['KAFKA_PORT']}"

    def start(self) -> None:
        subprocess.run([ROOT / "scripts" / "kafka", "start"], env=self.env, check=True)

    def stop(self) -> None:
        subprocess.run([ROOT / "scripts" / "kafka", "stop"], env=self.env, check=True)


@dataclass
class Topics:
    """The topics one worker under test reads and writes."""

    input: str
    tagged: str
    review: str
    duplicate: str
    deadletter: str

    def outputs(self) -> dict[str, str]:
        """Output kind to topic name."""
        return {kind: getattr(self, kind) for kind in OUTPUT_KINDS}


class WorkerProcess:
    """One worker, started with ``python -m <module> worker`` (``stream_app``, or a test's variant of it) and the
    settings in its environment."""

    def __init__(self, env: dict[str, str], log_path: Path, module: str = "stream_app") -> None:
        self.module = module
        self.env = {**os.environ, **env}
        self.log_path = log_path
        self.port = int(env["TAGGER_WEB_PORT"])
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> None:
        """Start the worker and wait until it has logged Ready and its /ready page says it processes events.

        Every answer of /health and /ready while waiting is kept in ``start_answers``, in order.
        """
        log = self.log_path.open("ab")
        level = os.environ.get("CONTENT_TAGGER_TEST_LOG_LEVEL", "info")
        self.process = subprocess.Popen(
            [sys.executable, "-m", self.module, "worker", "-l", level],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.start_answers: list[tuple[int | None, int | None, dict[str, Any]]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited with {self.process.returncode}:\n{self.exit_report()}")
            health, _ = self.page("/health")
            ready, body = self.page("/ready")
            self.start_answers.append((health, ready, body))
            if ready == 200 and "[^Worker]: Ready" in self.log_text():
                return
            time.sleep(0.05)
        self.kill()  # a worker that never got ready must not outlive the test
        raise TimeoutError(f"worker not ready in {timeout} s:\n{self.log_tail()}")

    def page(self, path: str) -> tuple[int | None, dict[str, Any]]:
        """The HTTP status and JSON body of one of the worker's pages; no status when it does not answer."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=1) as response:  # noqa: S310
                return int(response.status), json.loads(response.read())
        except urllib.error.HTTPError as error:
            return int(error.code), json.loads(error.read() or b"{}")
        except OSError:
            return None, {}

    def metrics_text(self) -> str:
        """The worker's /metrics exposition."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as response:  # noqa: S310
            return str(response.read().decode())

    def samples(self, name: str, **labels: str) -> list[tuple[dict[str, str], float]]:
        """The labels and value of each sample of /metrics named ``name`` (a counter's count is ``<name>_total``)
        whose labels include ``labels``."""
        return [
            (sample.labels, sample.value)
            for family in text_string_to_metric_families(self.metrics_text())
            for sample in family.samples
            if sample.name == name and labels.items() <= sample.labels.items()
        ]

    def value(self, name: str, **labels: str) -> float:
        """The value of the one sample :meth:`samples` finds; fails the test if there is none, or more."""
        found = self.samples(name, **labels)
        assert len(found) == 1, f"{len(found)} samples of {name} {labels or ''} in /metrics:\n{self.log_tail()}"
        return found[0][1]

    def total(self, name: str, **labels: str) -> float:
        """The sum of the samples :meth:`samples` finds: 0.0 if none (a labelled counter before its first count)."""
        return sum(value for _, value in self.samples(name, **labels))

    def by_label(self, name: str, label: str) -> dict[str, float]:
        """The sum of the samples named ``name`` by the value of their ``label``."""
        totals: dict[str, float] = {}
        for labels, value in self.samples(name):
            totals[labels.get(label, "")] = totals.get(labels.get(label, ""), 0.0) + value
        return totals

    def stop(self, timeout: float = 30.0) -> int | None:
        """Stop gracefully (SIGTERM), killing it if it does not end in time: its exit status, None if killed."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return None

    def kill(self) -> None:
        """Crash it: SIGKILL, no chance to commit or flush."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def log_text(self) -> str:
        """Everything the worker logged so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the worker's log."""
        return "\n".join(self.log_text().splitlines()[-lines:])

    def exit_report(self) -> str:
        """The worker's error lines, then the last lines of its log: the error that stopped it can be more than a
        tail above the end, past the lines its services log as they stop."""
        errors = [line for line in self.log_text().splitlines() if "[ERROR]" in line or "[CRITICAL]" in line]
        return "\n".join([*errors[-10:], "...", self.log_tail()])


@dataclass(frozen=True)
class Produced:
    """Where one input message landed in the input topic."""

    partition: int
    offset: int
    key: bytes | None


async def produce(
    bootstrap: str, topic: str, messages: Iterable[tuple[bytes | None, bytes | None, int | None]], **options: Any
) -> list[Produced]:
    """Send ``(key, value, partition)`` messages in order; returns where each one landed.

    ``options`` go to the producer (e.g. ``max_request_size`` for messages over 1 MiB).
    """
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, **options)
    await producer.start()
    try:
        futures = [await producer.send(topic, value, key=key, partition=part) for key, value, part in messages]
        results = [await future for future in futures]
    finally:
        await producer.stop()
    return [Produced(r.partition, r.offset, None) for r in results]


async def produce_paced(
    bootstrap: str, topic: str, messages: Sequence[tuple[bytes | None, bytes | None, int | None]], rate: float
) -> None:
    """Send ``messages`` in order at ``rate`` a second, as a stream flows in, and wait until all are stored."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        start = time.monotonic()
        futures = []
        for n, (key, value, part) in enumerate(messages):
            await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))
            futures.append(await producer.send(topic, value, key=key, partition=part))
        for future in futures:
            await future
    finally:
        await producer.stop()


async def _output_reader(bootstrap: str, topics: Topics) -> tuple[AIOKafkaConsumer, dict[str, str]]:
    """A started ``read_committed`` consumer at the start of every output topic, and topic name to kind."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level="read_committed")
    await consumer.start()
    names = topics.outputs()
    partitions = []
    for name in names.values():
        await consumer._client.force_metadata_update()
        partitions += [TopicPartition(name, p) for p in consumer._client.cluster.partitions_for_topic(name) or ()]
    consumer.assign(partitions)
    await consumer.seek_to_beginning(*partitions)
    return consumer, {name: kind for kind, name in names.items()}


async def read_outputs(
    bootstrap: str, topics: Topics, expected: int, timeout: float, settle: float = 3.0
) -> dict[str, list[dict[str, Any]]]:
    """Read all four output topics from the start until ``expected`` records arrived (then ``settle`` more
    seconds, so that extra records would show) or ``timeout`` passed."""
    consumer, kind_of = await _output_reader(bootstrap, topics)
    found: dict[str, list[dict[str, Any]]] = {kind: [] for kind in OUTPUT_KINDS}
    deadline = time.monotonic() + timeout
    settle_until: float | None = None
    try:
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=300)
            for tp, records in batches.items():
                for record in records:
                    found[kind_of[tp.topic]].append(json.loads(record.value))
            total = sum(len(v) for v in found.values())
            if total >= expected:
                settle_until = settle_until or time.monotonic() + settle
                if time.monotonic() >= settle_until:
                    break
    finally:
        await consumer.stop()
    return found


def run(coro: Any) -> Any:
    """Run a coroutine to completion from a synchronous test."""
    return asyncio.run(coro)


def ids_in(records: Sequence[dict[str, Any]]) -> list[str]:
    """The event ids of output records, as strings."""
    return [str(r["id"]) for r in records]


@dataclass
class Ledger:
    """What the four output topics say about a set of input messages: where each one landed, and how often."""

    landings: dict[str, list[str]]
    """Input identity (the event id, or ``"@<partition>/<offset>"`` for a dead letter) to the kinds it landed in."""
    records: dict[str, list[dict[str, Any]]]

    def missing(self, expected: Iterable[str]) -> list[str]:
        """The expected inputs that landed nowhere."""
        return [identity for identity in expected if identity not in self.landings]

    def repeats(self) -> int:
        """Output records beyond the first for each input."""
        return sum(len(kinds) - 1 for kinds in self.landings.values())

    def repeated(self) -> dict[str, list[str]]:
        """The inputs that landed more than once, with where (for an assertion's message)."""
        return {identity: kinds for identity, kinds in self.landings.items() if len(kinds) > 1}


def identity_of(kind: str, record: dict[str, Any]) -> str:
    """The input a record stands for: its event id, or the input position a dead letter names."""
    if kind == "deadletter":
        return f"@{record['partition']}/{record['offset']}"
    return str(record["id"])


async def account(
    bootstrap: str, topics: Topics, expected: Sequence[str], timeout: float, settle: float = 5.0
) -> Ledger:
    """Read the output topics (``read_committed``) until every ``expected`` input has landed somewhere, then
    ``settle`` seconds more so that late repeats show; or until ``timeout``."""
    consumer, kind_of = await _output_reader(bootstrap, topics)
    ledger = Ledger({}, {kind: [] for kind in OUTPUT_KINDS})
    waiting = set(expected)
    deadline = time.monotonic() + timeout
    settle_until: float | None = None
    try:
        while time.monotonic() < deadline and (settle_until is None or time.monotonic() < settle_until):
            for tp, batch in (await consumer.getmany(timeout_ms=300)).items():
                kind = kind_of[tp.topic]
                for message in batch:
                    record = json.loads(message.value)
                    identity = identity_of(kind, record)
                    ledger.records[kind].append(record)
                    ledger.landings.setdefault(identity, []).append(kind)
                    waiting.discard(identity)
            if not waiting and settle_until is None:
                settle_until = time.monotonic() + settle
    finally:
        await consumer.stop()
    return ledger


async def grow_topic(bootstrap: str, topic: str, partitions: int) -> None:
    """Give ``topic`` ``partitions`` partitions in all, as an operator would."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_partitions({topic: NewPartitions(total_count=partitions)})
    finally:
        await admin.close()
