"""Publishing a batch: its title index changes first, then its outputs, delivered before the batch is acked or,
exactly-once, committed with the input offsets they consumed in one transaction per source partition."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import msgspec
from faust.types import TP, EventT, ProducerT

from stream_app.delivery.batched import Record, send_batched
from stream_app.delivery.transactions import PartitionTransactions
from stream_app.faust_patches.producer import aiokafka_producer

_ENCODER = msgspec.json.Encoder()


def encode(record: dict[str, Any]) -> bytes:
    """Serialize an output record as compact UTF-8 JSON, the bytes ``json.dumps(record, ensure_ascii=False,
    separators=(",", ":"))`` gives, but for the spelling of some floats (``1e16`` for ``1e+16``).

    msgspec writes NaN and infinities as ``null`` where the standard library refuses them: the record builders
    of :mod:`stream_app.schema` refuse them instead, and an input event can hold none (its parse refuses them).
    A lone surrogate raises UnicodeEncodeError, as ``str.encode`` does."""
    return _ENCODER.encode(record)


def by_partition(events: Sequence[EventT[Any]]) -> dict[TP, list[EventT[Any]]]:
    """A batch's events grouped by the partition they were read from, in order."""
    groups: dict[TP, list[EventT[Any]]] = {}
    for event in events:
        groups.setdefault(event.message.tp, []).append(event)
    return groups


class Publisher:
    """Sends what a batch made through the app's producer, or through ``transactions`` when given."""

    def __init__(self, producer: ProducerT, transactions: PartitionTransactions | None) -> None:
        self.producer = producer
        self.transactions = transactions

    def uncommitted(self, events: Sequence[EventT[Any]]) -> list[EventT[Any]]:
        """The events not committed already (all of them at-least-once): the consumer can hand a record out
        twice, which Faust's at-least-once commits absorb but a transaction would emit twice."""
        if self.transactions is None:
            return list(events)
        owner = self.transactions
        return [event for event in events if event.message.offset >= owner.committed(event.message.tp)]

    async def send_ahead(self, records: Sequence[Record]) -> list[asyncio.Future[Any]]:
        """Send ``records`` now through the worker's plain producer, in both guarantees, and return their
        deliveries, which :meth:`publish` waits for before it sends or commits anything else.

        The title index's changes go ahead so that an output is never stored without the index change its event
        made: after a failure between the two, a replay would judge the event's copies as if it had never been
        seen, and show the same title twice. Exactly-once they stay outside the transactions: every worker's
        second look waits for its own changes to come back through the index topic, which a transaction held
        open before them would hold up; and a change whose event is not committed is read as that event's own
        when the event comes again."""
        return await send_batched(aiokafka_producer(self.producer), records)

    async def deliver(self, records: Sequence[Record]) -> None:
        """Send ``records`` and wait until the broker has them all: the batch they came from is acked after
        this, so its offsets are committed only once its records are stored."""
        # aiokafka's record batches, not Topic.send or Producer.send: their per-record futures, metadata waits and
        # partition look-ups cost more than the records' encoding.
        for delivery in await send_batched(aiokafka_producer(self.producer), records):
            await delivery

    async def publish(
        self,
        events: Sequence[EventT[Any]],
        made: Sequence[list[Record]],
        ahead: Sequence[asyncio.Future[Any]] = (),
    ) -> None:
        """Send the records ``made`` from ``events`` (a list each, in order) once the deliveries ``ahead``
        (:meth:`send_ahead`) are done: delivered before the batch is acked, or committed in one transaction per
        source partition with that partition's next offset."""
        for delivery in ahead:
            await delivery
        if self.transactions is None:
            await self.deliver([record for records in made for record in records])
            return
        made_by = {id(event): records for event, records in zip(events, made, strict=True)}
        for source, part in by_partition(events).items():
            sent = [record for event in part for record in made_by[id(event)]]
            await self.transactions.commit(source, part[-1].message.offset + 1, sent)
