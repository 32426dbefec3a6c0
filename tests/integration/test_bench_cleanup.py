"""The benchmarks leave no topics behind: a user who runs ``make bench`` again and again keeps a broker whose
metadata does not grow with every run (a contender fetches it all as it starts, and the broker slows down)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

import bench.stream


async def topic_names(bootstrap: str) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


@pytest.fixture
def run(
    kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[dict[str, str], list[str]]]:
    """A benchmark run's settings and topic names, on the test's broker; every topic with the run's token in its
    name (the other runs' a test makes included) is deleted afterwards, whatever the test did."""
    monkeypatch.setattr(bench.stream, "BOOTSTRAP", kafka_bootstrap)
    token = uuid.uuid4().hex[:6]
    env, names = bench.stream.topics_env(f"bench-cleanup-{token}")
    env["TAGGER_DATA_DIR"] = str(tmp_path / "data")
    yield env, names
    asyncio.run(bench.stream.delete_topics_where(lambda name: token in name))


def contender() -> subprocess.Popen[bytes]:
    """A stand-in contender: it runs until it is stopped, or until the test process that holds its stdin ends."""
    return subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)


def test_stopping_a_contender_deletes_its_runs_topics_and_no_other(
    kafka_bootstrap: str, run: tuple[dict[str, str], list[str]]
) -> None:
    env, names = run
    prefix = env["TAGGER_APP_ID"]
    made_by_the_worker = f"{prefix}-title-index"
    # Another run whose id starts with this one's: its topics are not this run's.
    others = [f"{prefix}0-content", f"bench-other-{prefix.rsplit('-', 1)[1]}-content"]
    asyncio.run(bench.stream.create_topics([*names, made_by_the_worker, *others]))
    process = contender()

    bench.stream.stop(process, env)

    assert process.returncode is not None
    deadline = time.monotonic() + 10  # the broker's metadata may lag the deletion by a moment
    left = asyncio.run(topic_names(kafka_bootstrap))
    while left & {*names, made_by_the_worker} and time.monotonic() < deadline:
        time.sleep(0.2)
        left = asyncio.run(topic_names(kafka_bootstrap))
    assert not left & {*names, made_by_the_worker}
    assert set(others) <= left


def test_a_contender_stopped_while_another_reads_the_topics_keeps_them(
    kafka_bootstrap: str, run: tuple[dict[str, str], list[str]]
) -> None:
    env, names = run
    asyncio.run(bench.stream.create_topics(names))
    process = contender()

    bench.stream.stop(process, env, topics=False)

    assert set(names) <= asyncio.run(topic_names(kafka_bootstrap))
