"""The partitions of topics a consumer is only assigned, read from fresh cluster metadata.

aiokafka's public ``partitions_for_topic`` reads the metadata it keeps for subscribed topics, and a consumer that
is assigned partitions (the title index and review followers) subscribes to none, so it answers None. The
client's own metadata update and cluster are private; :mod:`stream_app.faust_patches.checks` verifies them at
start-up.
"""

from __future__ import annotations

from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer


async def topic_partitions(consumer: AIOKafkaConsumer, topics: Iterable[str]) -> dict[str, list[int]]:
    """Each of ``topics`` that exists, with its partition numbers in order, after a metadata update."""
    await consumer._client.force_metadata_update()
    cluster = consumer._client.cluster
    found = {topic: cluster.partitions_for_topic(topic) for topic in topics}
    return {topic: sorted(partitions) for topic, partitions in found.items() if partitions}
