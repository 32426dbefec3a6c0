"""The agent's batches (:func:`ready_batches`) on a Faust stream of an in-memory channel: every event once, in
order, at most ``max_`` at a time, filled while the agent works, and acked only once the agent is done."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, cast

import faust
import pytest
from faust.types import EventT

from stream_app.faust_patches.batches import ready_batches

Send = Callable[[int], Awaitable[None]]


@asynccontextmanager
async def channel_stream() -> AsyncIterator[tuple[faust.Stream[Any], Send]]:
    """A started stream over a fresh channel, and a function that sends an int into it."""
    app = faust.App("batches-test", broker="kafka://localhost:1")  # no broker is contacted: channels are in memory
    app.flow_control.resume()
    channel = app.channel()
    stream = cast(faust.Stream[Any], app.stream(channel))

    async def send(value: int) -> None:
        await channel.send(value=value)

    async with stream:
        yield stream, send


def values(batch: list[EventT[Any]]) -> list[int]:
    return [cast(int, event.value) for event in batch]


async def first_batch(
    stream: faust.Stream[Any], batches: AsyncGenerator[list[EventT[Any]], None], send: Send, *sent: int
) -> list[int]:
    """The agent's first batch, asked for before ``sent`` are sent: once the stream's reader subscribes to the
    channel (what is sent before that is not seen)."""
    first = asyncio.ensure_future(anext(batches))
    await asyncio.wait_for(stream._passive_started.wait(), 5)
    for value in sent:
        await send(value)
    return values(await asyncio.wait_for(first, 5))


def test_events_sent_while_the_agent_works_make_the_next_batch_in_order_and_at_most_max() -> None:
    async def scenario() -> list[list[int]]:
        async with channel_stream() as (stream, send):
            batches = ready_batches(stream, 3)
            got = [await first_batch(stream, batches, send, 0)]
            # The agent is busy with [0]: everything sent meanwhile waits in the next batches.
            for value in range(1, 8):
                await send(value)
            while sum(map(len, got)) < 8:
                got.append(values(await asyncio.wait_for(anext(batches), 5)))
            await batches.aclose()
            return got

    got = asyncio.run(scenario())
    assert got[0] == [0], "an event that finds the agent idle is handed over alone, without a timeout"
    assert [value for batch in got for value in batch] == list(range(8)), "every event once, in order"
    assert all(len(batch) <= 3 for batch in got)
    assert got[1] == [1, 2, 3], "what arrived while the agent worked is handed over at once, up to max_"


def test_a_batch_is_acked_only_when_the_agent_asks_for_the_next_and_a_buffered_one_never_by_closing() -> None:
    async def scenario() -> tuple[list[int], list[int], list[int]]:
        async with channel_stream() as (stream, send):
            acked: list[int] = []
            ack = stream.ack

            async def recording_ack(event: EventT[Any]) -> bool:
                acked.append(cast(int, event.value))
                return await ack(event)

            stream.ack = recording_ack  # type: ignore[method-assign]
            batches = ready_batches(stream, 2)
            await first_batch(stream, batches, send, 0, 1)
            acked_while_processed = acked[:]
            await send(2)
            await asyncio.wait_for(anext(batches), 5)
            acked_after_next = acked[:]
            await send(3)
            await asyncio.sleep(0.05)  # the reader takes 3 into the batch the agent has not asked for
            await batches.aclose()  # as the agent's ``finally`` does when it stops or fails
            return acked_while_processed, acked_after_next, acked

    while_processed, after_next, after_close = asyncio.run(scenario())
    assert while_processed == [], "nothing is acked while the agent may still fail on it"
    assert after_next == [0, 1], "a batch is acked once the agent asks for the next"
    # The batch handed out is acked on close (a failed one is held first by TaggerConsumer.hold_acks); one only
    # buffered is not, so a restarted worker reads it again.
    assert after_close == [0, 1, 2]


def test_an_event_that_finds_the_agent_idle_is_handed_over_at_once_whatever_the_linger() -> None:
    async def scenario() -> list[int]:
        async with channel_stream() as (stream, send):
            batches = ready_batches(stream, 3, linger=30.0)
            alone = await first_batch(stream, batches, send, 0)  # far less than the 30 s linger
            await batches.aclose()
            return alone

    assert asyncio.run(scenario()) == [0]


def test_events_that_queued_while_the_agent_worked_linger_for_a_full_batch() -> None:
    async def scenario() -> tuple[bool, list[int]]:
        async with channel_stream() as (stream, send):
            batches = ready_batches(stream, 3, linger=30.0)
            await first_batch(stream, batches, send, 0)
            await send(1)  # while the agent works on [0]
            second = asyncio.ensure_future(anext(batches))
            await asyncio.sleep(0.05)
            waited = not second.done()
            await send(2)
            await send(3)
            full = values(await asyncio.wait_for(second, 5))  # at once when full, not after the 30 s linger
            await batches.aclose()
            return waited, full

    waited, full = asyncio.run(scenario())
    assert waited, "a short batch of queued events waits within its linger"
    assert full == [1, 2, 3]


def test_a_lingering_batch_is_handed_over_short_when_the_linger_ends() -> None:
    async def scenario() -> list[int]:
        async with channel_stream() as (stream, send):
            batches = ready_batches(stream, 3, linger=0.2)
            await first_batch(stream, batches, send, 0)
            await send(1)  # while the agent works on [0]
            short = values(await asyncio.wait_for(anext(batches), 5))
            await batches.aclose()
            return short

    assert asyncio.run(scenario()) == [1]


def test_the_reader_stops_at_max_until_the_agent_takes_the_batch() -> None:
    async def scenario() -> list[list[int]]:
        async with channel_stream() as (stream, send):
            batches = ready_batches(stream, 2)
            got = [await first_batch(stream, batches, send, 0)]
            for value in range(1, 6):
                await send(value)
            await asyncio.sleep(0.05)  # the agent is slow: the reader fills one batch and waits
            got.append(values(await asyncio.wait_for(anext(batches), 5)))
            got.append(values(await asyncio.wait_for(anext(batches), 5)))
            await batches.aclose()
            return got

    assert asyncio.run(scenario()) == [[0], [1, 2], [3, 4]]


@pytest.mark.parametrize("max_", [1, 64])
def test_every_event_is_handed_over_exactly_once_at_any_max(max_: int) -> None:
    async def scenario() -> list[int]:
        async with channel_stream() as (stream, send):
            batches = ready_batches(stream, max_)
            seen = await first_batch(stream, batches, send, *range(200))
            while len(seen) < 200:
                seen.extend(values(await asyncio.wait_for(anext(batches), 5)))
                await asyncio.sleep(0)  # the agent's own awaits let the reader run
            await batches.aclose()
            return seen

    assert asyncio.run(scenario()) == list(range(200))
