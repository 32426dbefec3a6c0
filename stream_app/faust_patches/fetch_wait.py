"""How long the broker may hold the worker consumer's fetch requests (Faust hard-codes 1.5 s; no setting).

aiokafka sends a node no fetch while one to it is in flight, and fetches a partition only once the records it
holds for it are taken. When the agent takes a partition's records more slowly than aiokafka's prefetch backoff
(0.1 s), aiokafka fetches the node's other partitions alone; if none of them has records, the broker holds that
fetch for the request's maximum wait, and the busy partition, emptied meanwhile, is not fetched until it returns.
Faust's worker consumer asks for a 1.5 s wait (``fetch_max_wait_ms=1500`` in
``AIOKafkaConsumerThread._create_worker_consumer``), so a worker with a backlog on one partition and an idle
partition beside it stalled for up to 1.5 s every few thousand events (decision 0039). The bound here keeps such a
stall shorter than the events the worker holds in its inlet take to process, at the cost of an idle worker
fetching up to ten times a second instead of once every 1.5 s.
"""

from __future__ import annotations

from typing import Final

from aiokafka import AIOKafkaConsumer

FETCH_MAX_WAIT_MS: Final = 100
"""The longest the broker holds a fetch of partitions with no new records; a fetch returns at once when any of
its partitions has some."""


def bound_fetch_wait(consumer: AIOKafkaConsumer) -> None:
    """Make the started ``consumer``'s fetch requests ask the broker to wait at most :data:`FETCH_MAX_WAIT_MS`."""
    consumer._fetcher._fetch_max_wait_ms = min(consumer._fetcher._fetch_max_wait_ms, FETCH_MAX_WAIT_MS)
