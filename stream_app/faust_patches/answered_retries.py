"""Quick first retries of what the broker refused, with a retriable error, inside a transaction.

Kafka 4 brokers verify a transaction's first write to a partition, and the group coordinator its offset commit
(KIP-890 part 1). While the markers of the producer's last transaction are still being written, the check fails:
a produce request is answered ``NOT_ENOUGH_REPLICAS`` (aiokafka issue #1172) and a ``TxnOffsetCommit``
``COORDINATOR_NOT_AVAILABLE``, both retriable, and a retry a few milliseconds later passes. aiokafka waits its
``retry_backoff_ms`` before every retry, whatever the cause; a shorter one for all of them would also shorten its
retries while the broker is unreachable (decision 0040: at 2 ms a transactional producer tried to connect about
820 times a second through an outage, against about 190 at 10 ms).

:func:`quick_answered_retries` changes one producer: a produce request or offset commit the broker *answered*
with a retriable error is sent again after :data:`ANSWERED_RETRY_SECONDS` for its first :data:`QUICK_RETRIES`
retries, then after the producer's own backoff. A request that got no answer (no connection, a timeout) waits the
producer's backoff.

It replaces the producer's ``Sender._send_produce_req`` and ``Sender._do_txn_offset_commit`` with aiokafka 0.14's
own lines and this module's handlers; :mod:`.checks` verifies the names at start-up.
"""

from __future__ import annotations

from typing import Any, Final

from aiokafka import AIOKafkaProducer
from aiokafka.client import CoordinationType
from aiokafka.errors import GroupAuthorizationFailedError
from aiokafka.producer.sender import SendProduceReqHandler, TxnOffsetCommitHandler

ANSWERED_RETRY_SECONDS: Final = 0.002
"""The wait before a quick retry: the broker's markers usually land within it."""
QUICK_RETRIES: Final = 3
"""Sends after which a refused request waits the producer's own backoff: a broker that keeps refusing (too few
in-sync replicas, a coordinator moving) is not asked more often than every ``retry_backoff_ms``."""


def answered_retry_backoff(default: float, sends: int) -> float:
    """The wait before sending again what the broker refused after ``sends`` sends."""
    return ANSWERED_RETRY_SECONDS if 0 < sends <= QUICK_RETRIES else default


class AnsweredProduceHandler(SendProduceReqHandler):  # type: ignore[misc]
    """aiokafka's produce request handler, waiting :func:`answered_retry_backoff` before sending again the batches
    the broker answered with a retriable error (``do`` waits ``_default_backoff`` after ``handle_response``)."""

    _default_backoff: float
    _to_reenqueue: list[Any]

    def handle_response(self, response: Any) -> None:
        super().handle_response(response)
        if self._to_reenqueue:
            sends = max(batch.retry_count for batch in self._to_reenqueue)
            self._default_backoff = answered_retry_backoff(self._default_backoff, sends)


class Refusals:
    """How many times in a row the broker refused a producer's offset commit."""

    def __init__(self) -> None:
        self.count = 0


class AnsweredOffsetCommitHandler(TxnOffsetCommitHandler):  # type: ignore[misc]
    """aiokafka's ``TxnOffsetCommit`` handler, waiting :func:`answered_retry_backoff` before a retry."""

    def __init__(self, sender: Any, offsets: Any, group_id: str, refusals: Refusals) -> None:
        super().__init__(sender, offsets, group_id)
        self.refusals = refusals

    def handle_response(self, resp: Any) -> float | None:
        backoff: float | None = super().handle_response(resp)
        if backoff is None:
            self.refusals.count = 0
            return None
        self.refusals.count += 1
        return answered_retry_backoff(backoff, self.refusals.count)


def quick_answered_retries(producer: AIOKafkaProducer) -> None:
    """Give ``producer``'s sender the quick retries of the module's docstring (before or after it starts)."""
    sender = producer._sender
    refusals = Refusals()

    # The two below are aiokafka 0.14's Sender methods of the same names, with this module's handlers.
    async def send_produce_req(node_id: int, batches: Any) -> None:
        handler = AnsweredProduceHandler(sender, batches)
        await handler.do(node_id)
        sender._in_flight.remove(node_id)
        for tp in batches:
            sender._muted_partitions.remove(tp)

    async def do_txn_offset_commit(offsets: Any, group_id: str) -> None:
        if not offsets:
            return
        try:
            node_id = await sender._find_coordinator(CoordinationType.GROUP, group_id)
        except GroupAuthorizationFailedError as error:
            sender._txn_manager.error_transaction(error)
            return
        await AnsweredOffsetCommitHandler(sender, offsets, group_id, refusals).do(node_id)

    sender._send_produce_req = send_produce_req
    sender._do_txn_offset_commit = do_txn_offset_commit
