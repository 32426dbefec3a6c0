"""The fetch loop's hand-over (:class:`EagerHandOver`): a record handed on at once makes no task; one whose
hand-over waits races the rest as ``mode``'s ``wait_first`` did, and a rebalance still abandons it."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import mode
import pytest
from faust.transport.consumer import Consumer

from stream_app.faust_patches.eager import EagerHandOver

T = TypeVar("T")


class HandingOver(EagerHandOver, mode.Service):
    """A service with the hand-over, as the worker's consumer has it."""


def counting_tasks(scenario: Callable[[], Awaitable[T]]) -> tuple[T, int]:
    """Run ``scenario`` and count the tasks it made."""
    made: list[Coroutine[Any, Any, Any]] = []

    async def main() -> tuple[T, int]:
        loop = asyncio.get_running_loop()

        def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
            made.append(coro)
            return asyncio.Task(coro, loop=loop, **kwargs)

        loop.set_task_factory(factory)
        return await scenario(), len(made)

    return asyncio.run(main())


def test_a_record_handed_on_at_once_makes_no_task_and_the_other_wait_never_starts() -> None:
    steps: list[str] = []

    async def hand_over() -> str:
        steps.append("handed")
        return "delivered"

    async def scenario() -> tuple[Any, bool]:
        service, flow = HandingOver(), asyncio.Event()
        other = flow.wait()
        result = await service.wait_first(hand_over(), other)
        return result, inspect.getcoroutinestate(other) == inspect.CORO_CLOSED  # never "never awaited"

    (result, closed), tasks = counting_tasks(scenario)
    assert steps == ["handed"] and tasks == 0 and closed
    assert result.results == ["delivered"] and not result.stopped


def test_a_hand_over_that_waits_goes_on_where_it_stopped_and_its_result_wins() -> None:
    steps: list[str] = []

    async def hand_over(room: asyncio.Future[int]) -> int:
        steps.append("before")
        got = await room  # a full stream buffer
        steps.append(f"after {got}")
        await asyncio.sleep(0)  # a second wait, not a future
        return got * 2

    async def scenario() -> Any:
        service, flow = HandingOver(), asyncio.Event()
        room: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(0.01, room.set_result, 21)
        return await service.wait_first(hand_over(room), flow.wait())

    result, tasks = counting_tasks(scenario)
    assert steps == ["before", "after 21"] and result.results == [42]
    assert tasks > 0  # raced as before


@pytest.mark.parametrize("on_future", [True, False])
def test_a_rebalance_abandons_a_hand_over_that_waits(on_future: bool) -> None:
    """Cancelled while it waits on a future (the future is cancelled) or between two steps (thrown in)."""
    seen: list[str] = []

    async def hand_over(never: asyncio.Future[None]) -> None:
        try:
            if on_future:
                await never  # the flow is stopped: it would wait until the rebalance ends
            for _ in range(10_000):  # busy until the rebalance
                await asyncio.sleep(0)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    async def scenario() -> Any:
        service, suspend_flow = HandingOver(), asyncio.Event()
        never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(0.01, suspend_flow.set)
        result = await service.wait_first(hand_over(never), suspend_flow.wait())
        await asyncio.sleep(0)  # the cancellation reaches the hand-over
        return result

    result, _ = counting_tasks(scenario)
    assert seen == ["cancelled"]
    assert result.results == [True]  # the flow's wait won


@pytest.mark.parametrize("waits", [False, True])
def test_an_error_in_a_hand_over_reaches_the_fetch_loop(waits: bool) -> None:
    async def hand_over() -> None:
        if waits:
            await asyncio.sleep(0)
        raise ValueError("undecodable")

    async def scenario() -> bool:
        service, flow = HandingOver(), asyncio.Event()
        other = flow.wait()
        with pytest.raises(ValueError, match="undecodable"):
            await service.wait_first(hand_over(), other)
        await asyncio.sleep(0)  # mode cancels the other wait's task, if it made one
        return inspect.getcoroutinestate(other) == inspect.CORO_CLOSED

    closed, _ = counting_tasks(scenario)
    assert closed


def test_other_waits_are_mode_s_own() -> None:
    """One awaitable, a timeout or an event (``Service.wait`` and friends) take ``mode``'s way, unchanged."""

    async def scenario() -> Any:
        service, ready = HandingOver(), mode.utils.locks.Event()
        ready.set()

        async def value() -> int:
            return 7

        timed = await service.wait_first(value(), timeout=1.0)
        evented = await service.wait_first(ready, value())
        return timed.results, ready in evented.done

    (timed, event_won), tasks = counting_tasks(scenario)
    assert timed == [7] and event_won and tasks >= 3


def test_faust_s_fetch_loop_still_hands_each_record_over_through_wait_first() -> None:
    """The fix is dead code unless the installed Faust calls ``wait_first(callback(message), ...)``."""
    source = "".join(inspect.getsource(Consumer._drain_messages).split())
    assert "awaitself.wait_first(callback(message),self.suspend_flow.wait())" in source
