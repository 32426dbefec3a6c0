"""The naive contender: a plain Faust agent that calls the scikit-learn pipeline's ``predict_proba`` once
per message. ``faust -A bench.naive worker``; configured by the worker's TAGGER_* variables.
"""

from __future__ import annotations

import csv
import json
from collections.abc import AsyncIterable
from pathlib import Path
from typing import Any

import faust
import numpy as np

from model_export.train import build_pipeline
from stream_app.classifier import event_text
from stream_app.settings import Settings

settings = Settings.from_env()
rows = list(csv.DictReader((Path(__file__).resolve().parents[1] / "data/dataset.csv").open(encoding="utf-8")))
pipeline = build_pipeline().fit(
    np.asarray([event_text(r["title"], r["description"]) for r in rows], dtype=object), [r["tag"] for r in rows]
)
app = faust.App(
    settings.app_id,
    broker=settings.broker_url,
    web_port=settings.web_port,
    autodiscover=False,
    consumer_auto_offset_reset="earliest",
    store="memory://",
    datadir=str(settings.data_dir),
)
source = app.topic(settings.input_topic, value_serializer="raw", key_serializer="raw")
sink = app.topic(settings.tagged_topic, value_serializer="raw", key_serializer="raw")


@app.agent(source)
async def tag_each(stream: Any) -> AsyncIterable[None]:
    async for event in stream.events():
        try:
            value = json.loads(event.value)
        except ValueError:
            value = None
        if not isinstance(value, dict):
            value = {"title": "", "description": ""}
        probabilities = pipeline.predict_proba(
            np.asarray([event_text(str(value.get("title", "")), value.get("description"))], dtype=object)
        )[0]
        best = int(probabilities.argmax())
        record = {**value, "tag": str(pipeline.classes_[best]), "confidence": float(probabilities[best])}
        await sink.send(key=event.key, value=json.dumps(record).encode())
        yield None
