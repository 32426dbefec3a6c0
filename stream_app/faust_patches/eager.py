"""Faust's fetch loop hands each record on without four tasks per record when nothing makes it wait.

``Consumer._drain_messages`` (faust-streaming 0.15) passes every record to the conductor with
``await self.wait_first(callback(message), self.suspend_flow.wait())``, so that a rebalance (which sets
``suspend_flow``) can abandon a record whose hand-over waits: for the flow to resume, or for room in a full stream
buffer. ``mode``'s ``wait_first`` runs each argument, and the service's own stopped and crashed events, as a task
of its own, waits for the first to finish and cancels the others: four tasks made and three cancelled for every
record, even though the hand-over almost never waits. That is most of what a Faust hop costs beyond aiokafka
(robinhood/faust #563 measured Faust's consumption at a tenth of aiokafka's).

:class:`EagerHandOver` runs the callback's first step at once. When it finishes there (the usual case), its
result is the answer and nothing else is started. When it has to wait, what is left of it races the other
arguments as before, so a rebalance abandons it exactly as it would have.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Generator
from typing import Any

from mode.services import WaitResults
from mode.utils.locks import Event


class Resumed:
    """What is left of a coroutine that was stepped by hand and suspended on ``suspended_on``: awaiting this goes
    on with it where it stopped, as awaiting the coroutine would have."""

    def __init__(self, coroutine: Coroutine[Any, Any, Any], suspended_on: Any) -> None:
        self.coroutine = coroutine
        self.suspended_on = suspended_on

    def __await__(self) -> Generator[Any, Any, Any]:
        # What ``await`` does with a coroutine, from its second step on: each value it yields goes to the task
        # running this, and what the task sends or throws back (a result, a cancellation) goes on to it.
        coroutine, pending = self.coroutine, self.suspended_on
        while True:
            try:
                sent = yield pending
            except GeneratorExit:
                coroutine.close()
                raise
            except BaseException as error:  # noqa: BLE001 - thrown in by the task: handed on, never swallowed
                try:
                    pending = coroutine.throw(error)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    pending = coroutine.send(sent)
                except StopIteration as stop:
                    return stop.value


class EagerHandOver:
    """A ``mode`` service mixin: ``wait_first(callback, other)`` of two coroutines and no timeout (the fetch loop's
    call) runs ``callback``'s first step before it makes any task."""

    _stopped: Event
    _crashed: Event

    async def wait_first(self, *coros: Any, timeout: Any = None) -> WaitResults:
        """``mode``'s ``wait_first``, without its tasks when the first coroutine finishes without waiting."""
        if len(coros) != 2 or timeout is not None or not all(asyncio.iscoroutine(coro) for coro in coros):
            return await super().wait_first(*coros, timeout=timeout)  # type: ignore[misc, no-any-return]
        callback, other = coros
        try:
            suspended_on = callback.send(None)
        except StopIteration as done:
            other.close()
            if self._stopped.is_set() or self._crashed.is_set():
                return WaitResults([], [], True)
            return WaitResults([callback], [done.value], False)
        except BaseException:
            other.close()
            raise
        return await super().wait_first(Resumed(callback, suspended_on), other)  # type: ignore[misc, no-any-return]
