"""A Faust worker for tests/integration/test_consumer.py: its agent notes the offset of every record it gets and,
at the first, seeks the partition back to offset 0, as a rebalance or a stalled table recovery seeks back.

Its stream buffer holds one record, so Faust's fetch loop is still handing on that first fetch's records when the
seek lands. ``python -m tests.integration.seek_race_app tagger|faust`` runs it with the worker's consumer
(``TaggerApp``) or with Faust's own; the rest comes from ``SEEK_RACE_*`` variables.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import faust
from faust.types import TP

from stream_app.consumer import TaggerApp


def main() -> None:
    """Run the worker until it is stopped."""
    app_class = TaggerApp if sys.argv[1] == "tagger" else faust.App
    topic_name, offsets_path = os.environ["SEEK_RACE_TOPIC"], os.environ["SEEK_RACE_OFFSETS"]
    app = app_class(
        os.environ["SEEK_RACE_APP_ID"],
        broker=f"kafka://{os.environ['SEEK_RACE_BOOTSTRAP']}",
        datadir=os.environ["SEEK_RACE_DATA_DIR"],
        stream_buffer_maxsize=1,
        web_enabled=False,
    )
    topic = app.topic(topic_name, value_serializer="raw")
    sought = False

    @app.agent(topic)
    async def note_offsets(stream: Any) -> None:
        nonlocal sought
        with open(offsets_path, "a") as offsets:
            async for event in stream.events():
                offsets.write(f"{event.message.offset}\n")
                offsets.flush()
                if not sought:
                    sought = True
                    await app.consumer.seek(TP(topic_name, 0), 0)

    sys.argv = [sys.argv[0], "worker", "-l", "info"]
    app.main()


if __name__ == "__main__":
    main()
