"""Fixtures for tests against a real Kafka broker, and real workers started on fresh topics of it.

The broker is ``kafka_bootstrap``'s (``tests/conftest.py``): the one named by ``TAGGER_KAFKA_BOOTSTRAP_SERVERS`` if
set; otherwise ``scripts/kafka`` starts a local one when the first test needs it and stops it at the end of the run
(only if this run started it).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from stream_app.topology.retention import KEPT_FOR_EVER
from tests.integration.harness import OwnBroker, Topics, WorkerProcess, create_topic, free_port


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects, so `-m "not kafka"` leaves these out
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test in this folder talks to the broker."""
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.kafka)


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[OwnBroker]:
    """A broker of this test's own, which it may stop and start without disturbing other tests."""
    broker = OwnBroker(tmp_path / "kafka")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def new_topic(kafka_bootstrap: str) -> Callable[..., str]:
    """A factory: ``new_topic(prefix, partitions=1, config=None)`` creates a uniquely named topic (with the topic
    configuration ``config``) and returns its name."""

    def create(prefix: str, partitions: int = 1, config: Mapping[str, str] | None = None) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        asyncio.run(create_topic(kafka_bootstrap, name, partitions, config))
        return name

    return create


WorkerFactory = Callable[..., tuple[WorkerProcess, Topics]]


@pytest.fixture
def start_worker(
    kafka_bootstrap: str, new_topic: Callable[..., str], trained_model_dir: Path, tmp_path: Path
) -> Iterator[WorkerFactory]:
    """A factory: ``start_worker(partitions=1, topics=None, app_id=None, module="stream_app", **env)`` starts one
    worker process (``python -m <module> worker``).

    Passing the ``topics`` and ``app_id`` of an earlier worker starts another member of the same group (or a
    restart of it); every worker started here is stopped at the end of the test.
    """
    workers: list[WorkerProcess] = []

    def start(
        partitions: int = 1,
        topics: Topics | None = None,
        app_id: str | None = None,
        module: str = "stream_app",
        **env: str,
    ) -> tuple[WorkerProcess, Topics]:
        if topics is None:
            topics = Topics(
                input=new_topic("content", partitions),
                tagged=new_topic("tagged", partitions),
                # As the worker makes it: it refuses a review topic that deletes records.
                review=new_topic("review", partitions, KEPT_FOR_EVER),
                duplicate=new_topic("duplicates", partitions),
                deadletter=new_topic("deadletter", partitions),
            )
        app_id = app_id or f"tagger-test-{uuid.uuid4().hex[:8]}"
        index = len(workers)
        settings = {
            "TAGGER_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "TAGGER_APP_ID": app_id,
            "TAGGER_INPUT_TOPIC": topics.input,
            "TAGGER_TAGGED_TOPIC": topics.tagged,
            "TAGGER_REVIEW_TOPIC": topics.review,
            "TAGGER_DUPLICATES_TOPIC": topics.duplicate,
            "TAGGER_DEADLETTER_TOPIC": topics.deadletter,
            # The group's own, made by its first worker: not a shared default a broker may hold from an older worker.
            "TAGGER_FEEDBACK_TOPIC": f"{app_id}-feedback",
            "TAGGER_PARTITIONS": str(partitions),
            "TAGGER_MODEL_DIR": str(trained_model_dir),
            "TAGGER_WEB_PORT": str(free_port()),
            "TAGGER_DATA_DIR": str(tmp_path / f"worker-{index}"),
            **env,
        }
        worker = WorkerProcess(settings, tmp_path / f"worker-{index}.log", module)
        workers.append(worker)
        worker.start()
        worker.app_id = app_id  # type: ignore[attr-defined]
        return worker, topics

    yield start
    for worker in workers:
        worker.stop()
