"""Exactly-once delivery: a batch's records and the input offsets it consumes commit in one Kafka transaction.

Faust's own ``processing_guarantee="exactly_once"`` names a transaction after the partition a record is *sent
to*; an input offset and the records made from it then land in different transactions whenever they go to
different partitions (every output topic, and the title index's topic), and a crash between their commits repeats
or loses work. Here instead:

* every input partition has its own transactional producer, ``<group>-tag-<topic>-<p>``; a batch's outputs and
  the next offset of that partition commit together, or not at all. The title index changes its events made are
  stored before, outside the transaction (:meth:`~stream_app.delivery.publish.Publisher.send_ahead`): a change
  whose event is not committed is read as that event's own when it comes again;
* the worker's consumer reads ``read_committed`` and leaves the input offsets to the transactions (a plain commit
  landing after a transactional one would move the offset back and repeat work);
* a new owner of a partition starts its producer before it reads the committed offsets: that fences the previous
  owner and completes its last transaction (aborted if open, finished if it was committing), so the offsets read
  next include it, and readers are not held up until the transaction times out. (Kafka's ``require_stable``
  offset fetch does this for clients that send it; aiokafka does not.)

A failed transaction is not retried here: it raises, the agent's supervisor stops the worker, and the restarted
worker resumes from the last committed offsets with an index read from the topic's committed changes. Nor is it
aborted: aiokafka's abort waits, with no timeout, until the broker has every record of the transaction, so a stop
cancelling a commit while the broker is away would hang (aiokafka issue #1101). Its producer is dropped instead,
and stopped with a time limit, then closed without delivering what it holds; the partition's next producer
fences it and aborts the open transaction.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from faust.types import TP

from stream_app.delivery.batched import Record, send_batched
from stream_app.faust_patches.answered_retries import quick_answered_retries
from stream_app.faust_patches.closing import CLOSE_SECONDS, close_at_once

log = logging.getLogger(__name__)

RETRY_BACKOFF_MS = 10
"""The transactional producers' wait before a retry. Kafka 4 brokers answer a transaction's first write to a
partition with a retriable NOT_ENOUGH_REPLICAS now and then (aiokafka issue #1172); aiokafka's default 100 ms
would be most of the latency. The first retries of what the broker answered are quicker still
(:func:`~stream_app.faust_patches.answered_retries.quick_answered_retries`)."""

PRODUCER_STOP_SECONDS = 10.0
"""Longest wait for a transactional producer to deliver what it holds and stop (never, while the broker is away);
it is then closed at once."""


class PartitionTransactions:
    """The transactional producers of one stage, one per source partition it owns."""

    def __init__(self, stage: str, group_id: str, client_options: Mapping[str, Any]) -> None:
        self.stage = stage
        self.group_id = group_id
        self.client_options = dict(client_options)
        self._producers: dict[TopicPartition, AIOKafkaProducer] = {}
        self._committed: dict[TopicPartition, int] = {}
        self._starting = asyncio.Lock()  # one producer per id: a second would fence the first
        self._claiming = asyncio.Lock()
        self._stopping: set[asyncio.Task[None]] = set()
        """Stops of dropped producers, still delivering what they hold."""

    def transactional_id(self, source: TopicPartition) -> str:
        """The transactional id of ``source``'s producer: the same in every worker, so a new owner fences the old."""
        return f"{self.group_id}-{self.stage}-{source.topic}-{source.partition}"

    async def claim(self, sources: Iterable[TopicPartition]) -> None:
        """Own exactly ``sources``: start their producers (fencing earlier owners), stop the others."""
        wanted = {TopicPartition(tp.topic, tp.partition) for tp in sources}
        # Faust can seek (and so claim) from its fetch loop and from a rebalance at once.
        async with self._claiming:
            self._committed = {tp: offset for tp, offset in self._committed.items() if tp in wanted}
            for source in [tp for tp in self._producers if tp not in wanted]:
                self._drop(source)  # fenced already, or soon, by the partition's new owner
            for source in wanted:
                await self._producer(source)

    async def release(self, sources: Iterable[TopicPartition]) -> None:
        """Forget the producers of ``sources``, revoked in a rebalance. Whoever owns one next starts a new
        producer, which fences the last one and completes its transaction before the committed offsets are read;
        this worker too, if it gets a partition back after it was expelled from the group unawares (a producer
        kept since would have been fenced by the owner in between)."""
        async with self._claiming:
            for tp in sources:
                source = TopicPartition(tp.topic, tp.partition)
                self._committed.pop(source, None)
                self._drop(source)

    def committed(self, source: TP) -> int:
        """The next offset of ``source`` after this process's last commit (-1 if none since it was claimed): a
        record below it was committed already, so a consumer handing it out again must not process it twice.
        Faust's ``TP`` and aiokafka's ``TopicPartition`` are equal tuples, so either names a partition here."""
        return self._committed.get(source, -1)

    async def commit(self, source: TP, next_offset: int, records: Sequence[Record]) -> None:
        """Send ``records`` and consume ``source`` up to ``next_offset``, atomically; raises if that fails."""
        source = TopicPartition(source.topic, source.partition)  # aiokafka checks the type
        producer = await self._producer(source)
        try:
            await producer.begin_transaction()
            sends = await send_batched(producer, records)
            await producer.send_offsets_to_transaction({source: next_offset}, self.group_id)
            await asyncio.gather(*sends)
            await producer.commit_transaction()
        except BaseException:  # cancelled too: the open transaction is left to the next producer to abort
            if self._producers.get(source) is producer:  # not dropped already by a claim
                self._drop(source)
            raise
        self._committed[source] = next_offset

    async def stop(self) -> None:
        """Stop every producer, each within :data:`PRODUCER_STOP_SECONDS` (an open transaction is aborted by the
        next owner's producer)."""
        for source in list(self._producers):
            self._drop(source)
        if self._stopping:  # bounded again: wait_for waits for a timed-out stop to unwind from its cancel
            await asyncio.wait(self._stopping, timeout=PRODUCER_STOP_SECONDS + CLOSE_SECONDS)

    def _drop(self, source: TopicPartition) -> None:
        """Forget ``source``'s producer and stop it in the background, within :data:`PRODUCER_STOP_SECONDS`."""
        producer = self._producers.pop(source, None)
        if producer is None:
            return
        task = asyncio.ensure_future(self._stop_producer(producer, self.transactional_id(source)))
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    @staticmethod
    async def _stop_producer(producer: AIOKafkaProducer, name: str) -> None:
        try:
            try:
                await asyncio.wait_for(_deliver_and_stop(producer), PRODUCER_STOP_SECONDS)
            except TimeoutError:
                log.warning("transactional producer %s could not deliver what it held; closing it", name)
                await close_at_once(producer)
        except Exception as error:  # noqa: BLE001 - a producer being dropped may fail in any way; nothing waits on it
            log.warning("transactional producer %s did not stop cleanly: %r", name, error)

    async def _producer(self, source: TopicPartition) -> AIOKafkaProducer:
        producer = self._producers.get(source)
        if producer is not None:
            return producer
        async with self._starting:
            producer = self._producers.get(source)
            if producer is not None:
                return producer
            producer = AIOKafkaProducer(
                transactional_id=self.transactional_id(source),
                enable_idempotence=True,
                acks="all",
                max_batch_size=262_144,
                retry_backoff_ms=RETRY_BACKOFF_MS,
                **self.client_options,
            )
            quick_answered_retries(producer)
            await producer.start()  # init_transactions: fences the previous owner, aborts its open transaction
            self._producers[source] = producer
            return producer


async def _deliver_and_stop(producer: AIOKafkaProducer) -> None:
    # Delivered first, in a wait that a time limit cancels cleanly: aiokafka's stop, cancelled in its own wait,
    # leaves a task behind that waits for the deliveries forever.
    await producer.flush()
    await producer.stop()
