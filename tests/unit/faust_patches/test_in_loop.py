"""Faust's consumer thread run on the worker's event loop (on a broker: every test of tests/integration)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from stream_app.faust_patches.consumer import RewindingConsumerThread
from stream_app.faust_patches.in_loop import InLoopServiceThread


class Recorder(InLoopServiceThread):
    """A service thread that records where its start ran, or fails it."""

    def __init__(self, fail_start: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fail_start = fail_start
        self.started_on: tuple[int, asyncio.AbstractEventLoop] | None = None

    async def on_start(self) -> None:
        if self.fail_start:
            raise ConnectionError("broker unreachable")
        self.started_on = (threading.get_ident(), asyncio.get_running_loop())


def test_the_service_starts_and_takes_calls_on_the_loop_and_thread_that_start_it() -> None:
    async def scenario() -> None:
        service = Recorder()
        await service.start()
        try:
            assert service.started_on == (threading.get_ident(), asyncio.get_running_loop())
            assert service.thread_loop is asyncio.get_running_loop()

            async def where() -> int:
                return threading.get_ident()

            assert await service.call_thread(where) == threading.get_ident()
            assert await service.call_thread(lambda value: value * 2, 21) == 42, "a plain function's result too"
        finally:
            await service.stop()

    asyncio.run(scenario())


def test_stopping_the_service_leaves_the_loops_other_tasks_running() -> None:
    async def scenario() -> None:
        other = asyncio.ensure_future(asyncio.sleep(60))  # stands for the agent, the web server, the followers
        service = Recorder()
        await service.start()
        await service.stop()
        await asyncio.sleep(0.05)
        assert not other.cancelled() and not other.done(), "a thread's sweep of its own loop must not run here"
        other.cancel()

    asyncio.run(scenario())


def test_a_failed_start_is_raised_to_the_caller() -> None:
    async def scenario() -> None:
        service = Recorder(fail_start=True)
        with pytest.raises(ConnectionError, match="broker unreachable"):
            await asyncio.wait_for(service.start(), timeout=5)

    asyncio.run(scenario())


def test_the_worker_consumer_thread_runs_in_the_loop() -> None:
    assert RewindingConsumerThread.start is InLoopServiceThread.start
    assert RewindingConsumerThread.call_thread is InLoopServiceThread.call_thread
