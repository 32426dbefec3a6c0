"""Closing an aiokafka producer without delivering what it holds (aiokafka issue #1101).

aiokafka's ``stop`` waits for every record the producer holds to reach the broker, with no time limit, so it
hangs while the broker is away. Cancelled, it leaves the producer marked closed with its sender still retrying
(and logging) every ``retry_backoff_ms``, and its connections and metadata task open for the life of the
process. Nothing public ends them; :func:`close_at_once` does.
"""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaProducer

SENDER_CANCELS = 10
SENDER_CANCEL_WAIT_SECONDS = 0.1
CLOSE_SECONDS = SENDER_CANCELS * SENDER_CANCEL_WAIT_SECONDS + 1.0
"""About the longest :func:`close_at_once` takes."""


async def close_at_once(producer: AIOKafkaProducer) -> None:
    """Stop ``producer``'s sender and close its connections now; what it holds is never delivered by it (the
    records of a transaction it left open are aborted by the next producer of its transactional id)."""
    sender_task = producer._sender.sender_task
    # Cancelled, the sender first waits for its requests in flight, and one that looks for the transaction
    # coordinator retries until the broker answers; a cancel that lands while it waits cancels that request.
    for _ in range(SENDER_CANCELS):
        if sender_task is None or sender_task.done():
            break
        sender_task.cancel()
        await asyncio.wait({sender_task}, timeout=SENDER_CANCEL_WAIT_SECONDS)
    await producer.client.close()
