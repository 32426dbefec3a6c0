"""The worker of ``python -m stream_app``, failing once inside one step of its batch work, for
tests/integration/test_failed_batch.py.

``python -m tests.integration.failing_app worker`` takes the worker's command line and ``TAGGER_*`` settings, and
three variables that are not settings (so not ``TAGGER_`` ones, which the worker refuses):
``CONTENT_TAGGER_TEST_FAIL_IN`` (``publish``: the producer's batch send; ``model``: the model's call),
``CONTENT_TAGGER_TEST_FAIL_WITH`` (``raise``: an error; ``cancel``: a cancellation) and
``CONTENT_TAGGER_TEST_FAIL_AT_CALL`` (which call fails, from 1).
"""

from __future__ import annotations

import asyncio
import itertools
import os
from typing import Any

from aiokafka import AIOKafkaProducer

from stream_app.classifier import Classifier, Prediction
from stream_app.worker import build_app


def main() -> None:
    """Run the worker with one failure injected."""
    where = os.environ["CONTENT_TAGGER_TEST_FAIL_IN"]
    at_call = int(os.environ["CONTENT_TAGGER_TEST_FAIL_AT_CALL"])
    cancel = os.environ["CONTENT_TAGGER_TEST_FAIL_WITH"] == "cancel"
    calls = itertools.count(1)

    def maybe_fail() -> None:
        if next(calls) == at_call:
            raise asyncio.CancelledError() if cancel else RuntimeError(f"injected failure in {where}")

    if where == "model":
        predict = Classifier.predict

        def failing_predict(self: Classifier, texts: list[str]) -> list[Prediction]:
            maybe_fail()
            return predict(self, texts)

        Classifier.predict = failing_predict  # type: ignore[method-assign]
    if where == "publish":
        send_batch = AIOKafkaProducer.send_batch

        async def failing_send_batch(self: AIOKafkaProducer, *args: Any, **kwargs: Any) -> Any:
            maybe_fail()
            return await send_batch(self, *args, **kwargs)

        AIOKafkaProducer.send_batch = failing_send_batch  # type: ignore[method-assign]
    build_app().main()


if __name__ == "__main__":
    main()
