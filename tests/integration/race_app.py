"""Faust workers for tests/integration/test_consumer.py. Each agent notes the offset of every record it gets and, at
the first, moves the consumer as Faust itself does in a rebalance:

* ``seek``: seeks the partition back to offset 0, as a rebalance or a stalled table recovery seeks back. The stream
  buffer holds one record, so Faust's fetch loop is still handing on that first fetch's records when the seek lands.
* ``rebalance``: asks the consumer group for a rebalance, as a member joining or leaving the group does. The worker
  has a table, as the tagger does, so Faust resumes the flow for table recovery before the rebalance's seek to the
  committed offsets, and resumes it again (emptying the agents' queues) after it. The consumer lingers 3 s between
  the two, as a busy event loop does, and the agent takes 20 ms a record, so fetched records wait in the queue.

``python -m tests.integration.race_app seek|rebalance tagger|faust`` runs a scenario with the worker's consumer
(``TaggerConsumer``) or with Faust's own; the rest comes from ``SEEK_RACE_*`` variables.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from faust.transport.drivers.aiokafka import Consumer as FaustKafkaConsumer
from faust.types import TP

from stream_app.faust_patches.consumer import TaggerApp, TaggerConsumer

SEEK_LINGER_SECONDS = 3.0
RECORD_SECONDS = 0.02


async def _rejoin(consumer: Any) -> None:
    consumer._coordinator.request_rejoin()


def main() -> None:
    """Run the worker until it is stopped."""
    scenario, consumer = sys.argv[1], sys.argv[2]
    base: type[FaustKafkaConsumer] = TaggerConsumer if consumer == "tagger" else FaustKafkaConsumer

    class RaceConsumer(base):  # type: ignore[valid-type,misc]  # a base chosen at run time
        async def perform_seek(self) -> None:
            await super().perform_seek()
            if scenario == "rebalance":
                await asyncio.sleep(SEEK_LINGER_SECONDS)

    class RaceApp(TaggerApp):
        consumer_class = RaceConsumer

    topic_name, offsets_path = os.environ["SEEK_RACE_TOPIC"], os.environ["SEEK_RACE_OFFSETS"]
    app = RaceApp(
        os.environ["SEEK_RACE_APP_ID"],
        broker=f"kafka://{os.environ['SEEK_RACE_BOOTSTRAP']}",
        datadir=os.environ["SEEK_RACE_DATA_DIR"],
        stream_buffer_maxsize=1 if scenario == "seek" else 4096,
        web_enabled=False,
    )
    topic = app.topic(topic_name, value_serializer="raw")
    if scenario == "rebalance":
        app.Table("race-table", default=int, partitions=1)  # unused: it makes Faust recover tables on a rebalance
    moved = False

    async def move() -> None:
        if scenario == "seek":
            await app.consumer.seek(TP(topic_name, 0), 0)
        else:
            thread = app.consumer._thread  # type: ignore[attr-defined]  # the aiokafka consumer's thread
            await thread.call_thread(_rejoin, thread._ensure_consumer())

    @app.agent(topic)
    async def note_offsets(stream: Any) -> None:
        nonlocal moved
        with open(offsets_path, "a") as offsets:
            async for event in stream.events():
                offsets.write(f"{event.message.offset}\n")
                offsets.flush()
                if not moved:
                    moved = True
                    await move()
                if scenario == "rebalance":
                    await asyncio.sleep(RECORD_SECONDS)

    sys.argv = [sys.argv[0], "worker", "-l", "info"]
    app.main()


if __name__ == "__main__":
    main()
