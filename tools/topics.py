"""Topic creation for the project's scripts and tests: one call that returns only once the broker serves every
partition of every topic asked for."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code


async def create_topics(
    bootstrap: str,
    names: Sequence[str],
    partitions: int = 1,
    wait_seconds: float = 30.0,
    configs: Mapping[str, Mapping[str, str]] | None = None,
) -> None:
    """Create the topics ``names`` not there yet, with ``partitions`` each and the topic configuration ``configs``
    gives a name (the broker's defaults for the others), and return once every partition of each has a leader. A
    creation the broker refuses raises its error; one that exists already is left as it is.

    The broker answers a creation before its metadata lists the topic (the gap grows on a loaded host), so a
    client that goes straight on may find the topic missing."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        response = await admin.create_topics(
            [
                NewTopic(
                    n, num_partitions=partitions, replication_factor=1, topic_configs=dict((configs or {}).get(n, {}))
                )
                for n in names
            ]
        )
        # aiokafka returns per-topic errors instead of raising them.
        for topic, error_code, *message in response.topic_errors:
            if error_code and error_code != TopicAlreadyExistsError.errno:
                raise for_code(error_code)(f"creating topic {topic!r}: {' '.join(map(str, message))}")
        deadline = asyncio.get_running_loop().time() + wait_seconds
        while not await _served(admin, names, partitions):
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"topics {list(names)} have no leader for every partition after {wait_seconds} s")
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


async def _served(admin: AIOKafkaAdminClient, names: Sequence[str], partitions: int) -> bool:
    """Whether each of ``names`` has at least ``partitions`` partitions, each with a leader."""
    for described in await admin.describe_topics(list(names)):
        states = described["partitions"]
        if described["error_code"] or len(states) < partitions:
            return False
        if any(p["error_code"] or p["leader"] < 0 for p in states):
            return False
    return True
