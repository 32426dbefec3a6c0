"""The ceiling contender: a hand-written aiokafka loop that decodes, classifies in batches with the same
ONNX model and produces. No validation beyond JSON, no dedupe, no metrics, no Faust.

Configured by the same TAGGER_* variables as the worker (input, tagged topic, bootstrap servers, model dir).
"""

from __future__ import annotations

import asyncio
import json

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from stream_app.classifier import Classifier, event_text
from stream_app.settings import Settings


async def run(settings: Settings) -> None:
    classifier = Classifier.load(settings.model_dir)
    consumer = AIOKafkaConsumer(
        settings.input_topic,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=settings.app_id,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_poll_records=settings.batch_size,
    )
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all", linger_ms=1)
    await consumer.start()
    await producer.start()
    print("ceiling ready", flush=True)
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=5, max_records=settings.batch_size)
            records = [r for rs in batches.values() for r in rs]
            if not records:
                continue
            events = []
            for record in records:
                try:
                    event = json.loads(record.value)
                except ValueError:
                    event = None
                events.append(event if isinstance(event, dict) else {"id": None, "title": "", "description": ""})
            predictions = classifier.predict(
                [event_text(str(e.get("title", "")), e.get("description")) for e in events]
            )
            futures = [
                await producer.send(
                    settings.tagged_topic,
                    json.dumps({**e, "tag": p.tag, "confidence": p.confidence}).encode(),
                    key=r.key,
                )
                for e, p, r in zip(events, predictions, records, strict=True)
            ]
            await asyncio.gather(*futures)
            await consumer.commit()
    finally:
        await consumer.stop()
        await producer.stop()


if __name__ == "__main__":
    asyncio.run(run(Settings.from_env()))
