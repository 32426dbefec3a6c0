"""Quick retries of what the broker refused inside a transaction, on aiokafka's own producer and responses."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.producer.message_accumulator import MessageBatch
from aiokafka.producer.transaction_manager import TransactionState
from aiokafka.protocol.produce import ProduceResponse_v0
from aiokafka.protocol.transaction import TxnOffsetCommitResponse_v0
from aiokafka.structs import OffsetAndMetadata

from stream_app.faust_patches.answered_retries import (
    ANSWERED_RETRY_SECONDS,
    QUICK_RETRIES,
    AnsweredOffsetCommitHandler,
    AnsweredProduceHandler,
    Refusals,
    answered_retry_backoff,
    quick_answered_retries,
)

COORDINATOR_NOT_AVAILABLE, NOT_ENOUGH_REPLICAS, NONE = 15, 19, 0
SOURCE, OUTPUT = TopicPartition("content", 0), TopicPartition("content-tagged", 0)


def test_the_first_retries_of_a_refused_request_are_quick_and_later_ones_wait_the_producer_s_backoff() -> None:
    waits = [answered_retry_backoff(0.01, sends) for sends in range(1, QUICK_RETRIES + 3)]
    assert waits == [ANSWERED_RETRY_SECONDS] * QUICK_RETRIES + [0.01, 0.01]


def offset_commit_waits(codes: list[int]) -> list[float | None]:
    """The wait after each answer, given ``codes`` in turn, of a transactional producer's offset commit."""

    async def scenario() -> list[float | None]:
        producer = AIOKafkaProducer(transactional_id="tagger-test", retry_backoff_ms=10)
        quick_answered_retries(producer)
        sender = producer._sender
        txn = sender._txn_manager
        txn.set_pid_and_epoch(1, 0)
        txn._transition_to(TransactionState.IN_TRANSACTION)
        refusals, waits = Refusals(), []
        offsets = {SOURCE: OffsetAndMetadata(7, "")}
        for code in codes:
            if txn.offsets_to_commit() is None:  # what send_offsets_to_transaction leaves for the sender
                txn.add_offsets_to_txn(dict(offsets), "tagger")
                txn.consumer_group_added("tagger")
            handler = AnsweredOffsetCommitHandler(sender, dict(offsets), "tagger", refusals)
            errors = [(SOURCE.topic, [(SOURCE.partition, code)])]
            waits.append(handler.handle_response(TxnOffsetCommitResponse_v0(throttle_time_ms=0, errors=errors)))
        await producer.stop()
        return waits

    return asyncio.run(scenario())


def test_an_offset_commit_the_coordinator_refused_is_retried_quickly_then_at_the_producer_s_backoff() -> None:
    refused = [COORDINATOR_NOT_AVAILABLE] * (QUICK_RETRIES + 1)
    assert offset_commit_waits(refused) == [ANSWERED_RETRY_SECONDS] * QUICK_RETRIES + [0.01]


def test_a_committed_offset_starts_the_count_of_refusals_again() -> None:
    codes = [COORDINATOR_NOT_AVAILABLE] * QUICK_RETRIES + [NONE, COORDINATOR_NOT_AVAILABLE]
    assert offset_commit_waits(codes) == [ANSWERED_RETRY_SECONDS] * QUICK_RETRIES + [None, ANSWERED_RETRY_SECONDS]


def produce_waits(code: int, sends: int) -> tuple[float, int]:
    """The wait a transactional producer takes after the broker answers a batch sent ``sends`` times with ``code``,
    and how many batches it sends again."""

    async def scenario() -> tuple[float, int]:
        producer = AIOKafkaProducer(transactional_id="tagger-test", retry_backoff_ms=10)
        quick_answered_retries(producer)
        builder = producer.create_batch()
        builder.append(timestamp=None, key=b"k", value=b"v")
        batch = MessageBatch(OUTPUT, builder, ttl=30, linger_time=0)
        for _ in range(sends):
            batch.drain_ready()  # what the sender does before each send
            batch.reset_drain()
        handler = AnsweredProduceHandler(producer._sender, {OUTPUT: batch})
        handler.handle_response(ProduceResponse_v0(topics=[(OUTPUT.topic, [(OUTPUT.partition, code, -1)])]))
        await producer.stop()
        return handler._default_backoff, len(handler._to_reenqueue)

    return asyncio.run(scenario())


def test_a_batch_the_broker_refused_is_sent_again_quickly_for_its_first_retries() -> None:
    assert [produce_waits(NOT_ENOUGH_REPLICAS, sends) for sends in range(1, QUICK_RETRIES + 2)] == [
        *[(ANSWERED_RETRY_SECONDS, 1)] * QUICK_RETRIES,
        (0.01, 1),
    ]


def test_a_delivered_batch_leaves_the_producer_s_backoff_as_it_is() -> None:
    assert produce_waits(NONE, 1) == (0.01, 0)
