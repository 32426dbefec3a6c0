"""The agent's inlet (:class:`EventInlet`): every record put is handed to the agent once, in order, at most
``max_`` at a time, filled while the agent works and acked only once it is done; nothing flows during a
rebalance, and what waited when the flow resumes, or came from an earlier consumer generation, is dropped
unacked so that the consumer reads it again. No broker: the consumer is built but never started."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

import faust
import pytest
from faust.types import EventT
from faust.types.tuples import ConsumerMessage

from stream_app.faust_patches.consumer import TaggerApp, TaggerConsumer
from stream_app.faust_patches.inlet import EventInlet

TOPIC = "input"


class Harness:
    """An app whose flow is resumed, an inlet on it, the agent's stream, and the acks the consumer saw."""

    def __init__(self, app: TaggerApp, inlet: EventInlet, stream: faust.Stream[Any]) -> None:
        self.app = app
        self.inlet = inlet
        self.stream = stream
        self.acked: list[int] = []
        self.offset = 0
        consumer = cast(TaggerConsumer, app.consumer)
        ack = consumer.ack

        def recording_ack(message: Any) -> bool:
            self.acked.append(message.offset)
            return ack(message)

        consumer.ack = recording_ack  # type: ignore[method-assign]

    def message(self, generation: int | None = None) -> ConsumerMessage:
        offset, self.offset = self.offset, self.offset + 1
        generation = self.app.consumer_generation_id if generation is None else generation
        return ConsumerMessage(TOPIC, 0, offset, 0.0, 0, None, None, b"v%d" % offset, None, generation_id=generation)

    async def put(self, count: int) -> None:
        for _ in range(count):
            await self.inlet.put(self.message())


@asynccontextmanager
async def harness(capacity: int | None = None) -> AsyncIterator[Harness]:
    app = TaggerApp("inlet-test", broker="kafka://localhost:1")  # no broker is contacted
    app.flow_control.resume()
    app.topics.acking_topics.add(TOPIC)  # as the conductor registers a subscribed topic
    stream = cast(faust.Stream[Any], app.stream(app.channel()))
    async with stream:
        yield Harness(app, EventInlet(app, capacity), stream)


def offsets(batch: list[EventT[Any]]) -> list[int]:
    return [event.message.offset for event in batch]


async def next_batch(batches: AsyncGenerator[list[EventT[Any]], None]) -> list[int]:
    return offsets(await asyncio.wait_for(anext(batches), 5))


def test_records_put_while_the_agent_works_make_the_next_batch_in_order_and_at_most_max() -> None:
    async def scenario() -> list[list[int]]:
        async with harness() as h:
            batches = h.inlet.batches(h.stream, 3)
            await h.put(1)
            got = [await next_batch(batches)]
            await h.put(7)  # while the agent works on [0]
            while sum(map(len, got)) < 8:
                got.append(await next_batch(batches))
            await batches.aclose()
            return got

    got = asyncio.run(scenario())
    assert got[0] == [0], "a record that finds the agent idle is handed over alone"
    assert [offset for batch in got for offset in batch] == list(range(8)), "every record once, in order"
    assert got[1:] == [[1, 2, 3], [4, 5, 6], [7]]


def test_a_batch_is_acked_once_the_agent_asks_for_the_next_and_a_waiting_one_never_by_closing() -> None:
    async def scenario() -> tuple[list[int], list[int], list[int]]:
        async with harness() as h:
            batches = h.inlet.batches(h.stream, 2)
            await h.put(2)
            await next_batch(batches)
            acked_while_processed = h.acked[:]
            await h.put(1)
            await next_batch(batches)
            acked_after_next = h.acked[:]
            await h.put(1)  # waits in the inlet, never handed out
            await batches.aclose()  # as the agent's ``finally`` does when it stops or fails
            return acked_while_processed, acked_after_next, h.acked

    while_processed, after_next, after_close = asyncio.run(scenario())
    assert while_processed == [], "nothing is acked while the agent may still fail on it"
    assert after_next == [0, 1]
    assert after_close == [0, 1, 2], "the batch handed out is acked on close; the one still waiting is not"


def test_events_taken_by_the_agent_count_as_in_flight_until_acked() -> None:
    async def scenario() -> tuple[set[int], set[int]]:
        async with harness() as h:
            batches = h.inlet.batches(h.stream, 4)
            await h.put(2)
            await next_batch(batches)
            in_flight = {message.offset for message in h.app.consumer.unacked}
            await h.put(1)
            await next_batch(batches)
            after = {message.offset for message in h.app.consumer.unacked}
            await batches.aclose()
            return in_flight, after

    in_flight, after = asyncio.run(scenario())
    assert in_flight == {0, 1}, "a rebalance waits for the agent's batch before it commits"
    assert after == {2}


def test_a_record_that_finds_the_agent_idle_is_handed_over_at_once_whatever_the_linger() -> None:
    async def scenario() -> list[int]:
        async with harness() as h:
            batches = h.inlet.batches(h.stream, 3, linger=30.0)
            first = asyncio.ensure_future(next_batch(batches))
            await asyncio.sleep(0.01)
            await h.put(1)
            alone = await first  # far less than the 30 s linger
            await batches.aclose()
            return alone

    assert asyncio.run(scenario()) == [0]


def test_records_that_queued_while_the_agent_worked_linger_for_a_full_batch_or_the_linger() -> None:
    async def scenario() -> tuple[bool, list[int], list[int]]:
        async with harness() as h:
            batches = h.inlet.batches(h.stream, 3, linger=0.3)
            await h.put(1)
            await next_batch(batches)
            await h.put(1)  # while the agent works on [0]
            second = asyncio.ensure_future(next_batch(batches))
            await asyncio.sleep(0.05)
            waited = not second.done()
            await h.put(2)
            full = await second  # at once when full, not after the linger
            await h.put(1)
            short = await next_batch(batches)  # handed over short when the linger ends
            await batches.aclose()
            return waited, full, short

    waited, full, short = asyncio.run(scenario())
    assert waited, "a short batch of queued records waits within its linger"
    assert full == [1, 2, 3]
    assert short == [4]


def test_a_full_inlet_makes_the_fetch_loop_wait_until_the_agent_takes_a_batch() -> None:
    async def scenario() -> tuple[bool, list[int], list[int]]:
        async with harness(capacity=2) as h:
            batches = h.inlet.batches(h.stream, 2)
            await h.put(2)
            third = asyncio.ensure_future(h.put(1))
            await asyncio.sleep(0.05)
            waited = not third.done()
            first = await next_batch(batches)
            await asyncio.wait_for(third, 5)
            second = await next_batch(batches)
            await batches.aclose()
            return waited, first, second

    waited, first, second = asyncio.run(scenario())
    assert waited, "the inlet holds no more than its capacity"
    assert (first, second) == ([0, 1], [2])


def test_nothing_is_put_while_the_flow_is_suspended_and_what_waited_is_dropped_unacked_when_it_resumes() -> None:
    async def scenario() -> tuple[bool, list[int], list[int]]:
        async with harness() as h:
            batches = h.inlet.batches(h.stream, 8)
            await h.put(2)  # fetched before the rebalance, not yet taken by the agent
            h.app.flow_control.suspend()
            during = asyncio.ensure_future(h.put(1))
            await asyncio.sleep(0.05)
            blocked = not during.done()
            h.app.flow_control.resume()  # Faust empties its queues here; the consumer seeks back
            await asyncio.wait_for(during, 5)
            got = await next_batch(batches)
            await batches.aclose()
            return blocked, got, h.acked

    blocked, got, acked = asyncio.run(scenario())
    assert blocked, "a record waits while the flow is suspended"
    assert got == [2], "what waited when the flow resumed is dropped, to be read again from the committed offset"
    assert acked == [2], "a dropped record is never acked, so its offset is not committed"


def test_records_of_an_earlier_consumer_generation_are_left_out_unacked() -> None:
    async def scenario() -> tuple[list[int], list[int]]:
        async with harness() as h:
            batches = h.inlet.batches(h.stream, 8)
            await h.inlet.put(h.message(generation=h.app.consumer_generation_id + 7))
            await h.put(1)
            got = await next_batch(batches)
            await batches.aclose()
            return got, h.acked

    got, acked = asyncio.run(scenario())
    assert got == [1]
    assert acked == [1]


@pytest.mark.parametrize("max_", [1, 64])
def test_every_record_is_handed_over_exactly_once_at_any_max(max_: int) -> None:
    async def scenario() -> list[int]:
        async with harness(capacity=50) as h:
            batches = h.inlet.batches(h.stream, max_)
            producer = asyncio.ensure_future(h.put(200))
            seen: list[int] = []
            while len(seen) < 200:
                seen.extend(await next_batch(batches))
            await producer
            await batches.aclose()
            return seen

    assert asyncio.run(scenario()) == list(range(200))


def test_the_consumer_hands_an_inlet_topics_records_to_the_inlet_and_the_rest_to_faust() -> None:
    async def scenario() -> tuple[list[int], list[str]]:
        async with harness() as h:
            consumer = cast(TaggerConsumer, h.app.consumer)
            conducted: list[str] = []

            async def conductor(message: Any) -> None:
                conducted.append(message.topic)

            consumer._conductor_callback = conductor
            inlet = consumer.open_inlet([TOPIC])
            await consumer.callback(h.message())
            other = h.message()
            other.topic = "other"
            await consumer.callback(other)
            batches = inlet.batches(h.stream, 8)
            got = await next_batch(batches)
            await batches.aclose()
            return got, conducted

    got, conducted = asyncio.run(scenario())
    assert got == [0]
    assert conducted == ["other"]


def test_an_inlet_holds_at_least_one_event() -> None:
    app = faust.App("inlet-test-capacity", broker="kafka://localhost:1")
    with pytest.raises(ValueError, match="at least one"):
        EventInlet(app, capacity=0)
