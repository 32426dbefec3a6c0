"""The wait before a batch is checked: up to the index end read after the batch was taken, bounded, shared."""

from __future__ import annotations

import asyncio

from stream_app.title_index.barrier import IndexBarrier
from stream_app.title_index.follower import IndexFollower
from stream_app.title_index.index import TitleIndex


class BrokerStandIn(IndexFollower):
    """A follower whose index partition ends at :attr:`end` (None: the broker never answers) and which has applied
    up to :attr:`applied`; it counts the end-offset requests."""

    def __init__(self) -> None:
        super().__init__(TitleIndex(86400.0, 300.0), "index", {}, on_skip=lambda reason: None)
        self.end: int | None = 0
        self.applied = 0
        self.requests = 0
        self.answer = asyncio.Event()
        self.answer.set()
        self.last_fetch_age: float | None = None
        """Seconds since a fetch response that found the follower at the end; None: none did."""

    async def end_offset(self) -> int:
        self.requests += 1
        await self.answer.wait()
        if self.end is None:
            await asyncio.Event().wait()
        assert self.end is not None
        return self.end

    async def applied_offset(self) -> int:
        return self.applied

    async def caught_up_as_last_fetched(self, within_seconds: float) -> bool:
        return self.last_fetch_age is not None and self.last_fetch_age <= within_seconds


def test_a_batch_is_checked_once_the_follower_applied_the_end_read_after_it_was_taken() -> None:
    follower = BrokerStandIn()
    follower.end, follower.applied = 7, 3
    timeouts: list[None] = []
    barrier = IndexBarrier(follower, on_timeout=lambda: timeouts.append(None), timeout_seconds=60.0)

    async def main() -> tuple[bool, bool]:
        waiting = asyncio.create_task(barrier.wait(barrier.clock()))
        for follower.applied in (4, 5, 6):
            await asyncio.sleep(0.02)
            assert not waiting.done()
        follower.applied = 7
        return await waiting, waiting.done()

    assert asyncio.run(main()) == (True, True)
    assert not timeouts


def test_batches_taken_before_a_request_share_it_and_a_later_one_asks_again() -> None:
    follower = BrokerStandIn()
    follower.answer.clear()
    barrier = IndexBarrier(follower, on_timeout=lambda: None, timeout_seconds=60.0)

    async def main() -> list[bool]:
        taken = barrier.clock()
        first = asyncio.create_task(barrier.wait(taken))
        await asyncio.sleep(0)
        second = asyncio.create_task(barrier.wait(taken))  # taken before the request was issued: shares it
        await asyncio.sleep(0.01)
        follower.answer.set()
        done = [await first, await second]
        assert follower.requests == 1
        done.append(await barrier.wait(barrier.clock() + 1.0))  # taken after it: the end is read again
        return done

    assert asyncio.run(main()) == [True, True, True]
    assert follower.requests == 2


def test_a_broker_that_does_not_answer_delays_the_batch_by_the_timeout_and_is_counted() -> None:
    follower = BrokerStandIn()
    follower.end = None
    timeouts: list[None] = []
    barrier = IndexBarrier(follower, on_timeout=lambda: timeouts.append(None), timeout_seconds=0.05)
    assert asyncio.run(barrier.wait(barrier.clock())) is False
    assert len(timeouts) == 1


def test_a_follower_that_does_not_reach_the_end_delays_the_batch_by_the_timeout_and_is_counted() -> None:
    follower = BrokerStandIn()
    follower.end, follower.applied = 10, 4
    timeouts: list[None] = []
    barrier = IndexBarrier(follower, on_timeout=lambda: timeouts.append(None), timeout_seconds=0.05)
    assert asyncio.run(barrier.wait(barrier.clock())) is False
    assert len(timeouts) == 1


def test_a_follower_a_recent_fetch_found_at_the_end_lets_the_batch_be_checked_without_asking_the_broker() -> None:
    follower = BrokerStandIn()
    follower.end = None  # the broker would not answer: the barrier must not ask
    follower.last_fetch_age = 0.2
    timeouts: list[None] = []
    barrier = IndexBarrier(follower, on_timeout=lambda: timeouts.append(None), timeout_seconds=0.05)
    assert asyncio.run(barrier.wait(barrier.clock())) is True
    assert (follower.requests, timeouts) == (0, [])


def test_a_follower_whose_last_fetch_is_older_than_the_freshness_asks_the_broker_and_waits() -> None:
    follower = BrokerStandIn()
    follower.end, follower.applied = 7, 3
    follower.last_fetch_age = 1.5  # its loop stalled since
    barrier = IndexBarrier(follower, on_timeout=lambda: None, timeout_seconds=60.0, fresh_seconds=1.0)

    async def main() -> bool:
        waiting = asyncio.create_task(barrier.wait(barrier.clock()))
        await asyncio.sleep(0.02)
        assert not waiting.done()
        follower.applied = 7
        return await waiting

    assert asyncio.run(main()) is True
    assert follower.requests == 1
