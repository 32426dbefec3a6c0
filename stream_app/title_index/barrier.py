"""The wait before a batch is checked: the index catches up with the topic, so that a stall does not leave it behind;
what it still misses, the batch's second look judges.

Without it a worker whose loop stalled (a GC or VM pause, a starved host) would check the batch it resumes with
against an index missing the other workers' changes of the stall, store claims for the copies among them, and leave
its second look (:mod:`~stream_app.title_index.second_look`) to find every one among the stall's records. So the
index partition's end is read from the broker after the batch was taken, with the follower's isolation (read
committed: the last stable offset), and the follower is waited for up to it; unless the follower's last fetch
response, under :data:`FETCH_FRESH_SECONDS` old, found it at the end, as it does while the loop runs (it hears from
the broker at least every fetch wait, 0.5 s). The changes that response may have missed (those of the last moment,
or, when a response answered during a stall is read first after it, the rest of the stall's), the second look
judges the batch's titles against, as it does those stored while it waits.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Final

from aiokafka.errors import KafkaError

from stream_app.title_index.follower import IndexFollower

log = logging.getLogger(__name__)

BARRIER_TIMEOUT_SECONDS: Final = 3.0
"""Longest wait for the end offset and for the follower to reach it: past it the batch is checked as the index
stands (the broker is away, or the follower far behind), rather than stall the agent."""
FETCH_FRESH_SECONDS: Final = 1.0
"""How recent the follower's last fetch response must be for a batch to be checked without asking the broker for
the index end: twice aiokafka's fetch wait, the longest a running follower goes without one."""
TIMEOUT_LOG_SECONDS: Final = 10.0
"""At most one log line about barriers given up in this window; the counter has them all."""


class IndexBarrier:
    """Waits, before a batch taken at ``taken_at`` (``clock`` seconds) is checked, until the follower has applied
    the index partition up to its end as read after that time, unless its last fetch response, recent enough, found
    it there (:meth:`IndexFollower.caught_up_as_last_fetched`). One end-offset request serves every batch taken
    before it was issued."""

    def __init__(
        self,
        follower: IndexFollower,
        on_timeout: Callable[[], None],
        timeout_seconds: float = BARRIER_TIMEOUT_SECONDS,
        fresh_seconds: float = FETCH_FRESH_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.follower = follower
        self.on_timeout = on_timeout
        self.timeout_seconds = timeout_seconds
        self.clock = clock
        self.fresh_seconds = fresh_seconds
        self._request: tuple[float, asyncio.Task[int]] | None = None
        """The latest end-offset request and when it was issued."""
        self._logged_at = float("-inf")
        self._unlogged = 0

    async def wait(self, taken_at: float) -> bool:
        """Return once the follower has applied every index change committed before ``taken_at``, or before its last
        fetch response if that is recent and found it at the end: True, or False when that could not be made sure of
        within the timeout (counted and logged)."""
        if await self.follower.caught_up_as_last_fetched(self.fresh_seconds):
            return True
        try:
            await asyncio.wait_for(self._reach(taken_at), self.timeout_seconds)
        except (TimeoutError, KafkaError) as error:
            self._gave_up(error)
            return False
        return True

    async def _reach(self, taken_at: float) -> None:
        end = await asyncio.shield(self._end_offset(taken_at))
        await self.follower.caught_up(end)

    def _end_offset(self, taken_at: float) -> asyncio.Task[int]:
        if self._request is not None and self._request[0] >= taken_at:
            return self._request[1]
        issued = self.clock()
        task = asyncio.ensure_future(asyncio.wait_for(self.follower.end_offset(), self.timeout_seconds))
        # A request every waiter gave up on is not awaited again: its error must not be reported as never retrieved.
        task.add_done_callback(lambda done: done.cancelled() or done.exception())
        self._request = (issued, task)
        return task

    def _gave_up(self, error: BaseException) -> None:
        self.on_timeout()
        self._unlogged += 1
        now = self.clock()
        if now - self._logged_at >= TIMEOUT_LOG_SECONDS:
            log.warning(
                "title index: batch checked before the index was known to be caught up (%s; %d since the last line)",
                type(error).__name__,
                self._unlogged,
            )
            self._logged_at, self._unlogged = now, 0
