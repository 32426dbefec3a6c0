"""The Faust floor: the worker's one hop with nothing in it. One agent decodes each input message's JSON and
forwards it, keyed by its id, to the tagged topic. The app, worker and consumer classes, batches, acks, delivery
waits and producer settings are the worker's; there is no validation, dedupe, index, model or metric.

What it shows is how fast a Faust worker of this shape can run on the machine at all, before any of our work.
``faust -A bench.floor worker``; configured by the worker's TAGGER_* variables.
"""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterable, Sequence
from typing import Any, cast

import faust

from stream_app.app import transport_options
from stream_app.delivery.batched import Record, send_batched
from stream_app.faust_patches.consumer import TaggerApp, TaggerConsumer
from stream_app.faust_patches.producer import aiokafka_producer
from stream_app.settings import Settings
from stream_app.worker import TaggerWorker

settings = Settings.from_env()
app = TaggerApp(settings.app_id, **transport_options(settings))
# Faust's own worker class, at log level WARN, turns on DEBUG logging for its spinner: the worker's class does not.
app.conf.Worker = functools.partial(TaggerWorker, stop_timeout_seconds=settings.stop_timeout_seconds)  # type: ignore[assignment]
source = app.topic(settings.input_topic, value_serializer="raw", key_serializer="raw")
sink = app.topic(settings.tagged_topic, value_serializer="raw", key_serializer="raw")


async def deliver(topic: str, records: Sequence[tuple[bytes | None, bytes]]) -> None:
    """Send in record batches and wait for the broker, as the worker does before it acks a batch."""
    outgoing = [Record(topic, key, value) for key, value in records]
    for delivery in await send_batched(aiokafka_producer(app.producer), outgoing):
        await delivery


@app.agent(source)
async def forward(stream: Any) -> AsyncIterable[None]:
    inlet = cast(TaggerConsumer, app.consumer).open_inlet(source.topics)
    batches = inlet.batches(cast(faust.Stream[Any], stream), settings.batch_size, settings.batch_linger_seconds)
    async for events in batches:
        records = []
        for event in events:
            try:
                value = json.loads(event.value)
            except ValueError:
                value = None
            key = str(value.get("id", "")) if isinstance(value, dict) else ""
            records.append((key.encode(), event.value))
        await deliver(sink.get_topic_name(), records)
        yield None
