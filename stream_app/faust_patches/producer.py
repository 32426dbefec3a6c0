"""The aiokafka producer under Faust's, so a batch's records go out as record batches (faust-streaming #108:
Faust sends one record at a time, with a future, a metadata wait and a partition look-up each)."""

from __future__ import annotations

from typing import cast

from aiokafka import AIOKafkaProducer
from faust.types import ProducerT


def aiokafka_producer(producer: ProducerT) -> AIOKafkaProducer:
    """The started aiokafka producer of Faust's ``producer``; raises Faust's ``NotReady`` before it starts."""
    return cast(AIOKafkaProducer, producer._ensure_producer())  # type: ignore[attr-defined]
