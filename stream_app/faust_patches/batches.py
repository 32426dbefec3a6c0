"""Batches of a Faust stream's events, filled while the previous one is processed, without a wait when the
agent is idle.

Faust's ``Stream.take_events`` stops filling its buffer while the agent processes a batch, and after each batch
waits its whole ``within`` timeout before the next, even when events are waiting or the agent is idle. Under
light load an event then waits for the timeout; under full load the buffer fills only during the timeout.
:func:`ready_batches` keeps the stream's passive reader filling the next batch while the agent works on the
current one. An event that finds the agent idle is handed over at once; events that queued up while the agent
worked wait up to a linger for a full batch, as ``take_events``' timeout would (decision 0014).

The passive reader is started through ``Stream._enable_passive``, as ``take_events`` starts it (checked at
start-up, :mod:`.checks`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any, cast

import faust
from faust.types import ChannelT, EventT
from mode.utils.aiter import aiter
from mode.utils.locks import Event


async def ready_batches(
    stream: faust.Stream[Any], max_: int, linger: float = 0.0
) -> AsyncGenerator[list[EventT[Any]], None]:
    """Yield the events ``stream`` received, at most ``max_`` at a time, each batch acked once the agent asks for
    the next (or closes the generator).

    ``linger`` seconds is how long, from the agent's request, a batch of events that queued up while the agent
    worked waits for more before it is handed over with fewer than ``max_``: under load, fewer and bigger
    batches (a deployment that pays per batch, a transaction each in exactly-once mode, keeps up at a higher
    rate), while under light load nothing waits.
    """
    loop = asyncio.get_running_loop()
    buffer: list[EventT[Any]] = []
    ready = Event()
    """Set while ``buffer`` holds an event."""
    full = Event()
    """Set while ``buffer`` holds ``max_`` events."""
    room = Event()
    """Set while ``buffer`` takes more events: the reader waits on it rather than grow a batch past ``max_``."""
    room.set()

    async def add_to_buffer(value: Any) -> Any:
        try:
            event = stream.current_event
            if event is None:
                raise RuntimeError("a batch's reader found no current event")
            while len(buffer) >= max_:
                if await stream.wait_for_stopped(room):
                    return value
            buffer.append(event)
            ready.set()
            if len(buffer) >= max_:
                full.set()
                room.clear()
        except Exception as exc:  # as take_events: the stream crashes the agent rather than lose the event
            await stream.crash(exc)
        return value

    # The batches are acked here, after the agent is done with them, not by the stream as each event passes.
    stream.enable_acks = False
    stream.add_processor(add_to_buffer)
    stream._enable_passive(cast(ChannelT[Any], aiter(stream.channel)))
    while not stream.should_stop:
        # Events that queued up while the agent worked linger; an event that wakes an idle agent does not.
        asked, backlog = loop.time(), bool(buffer)
        if await stream.wait_for_stopped(ready):
            break
        linger_left = asked + linger - loop.time()
        if backlog and linger_left > 0 and not full.is_set():
            await stream.wait_for_stopped(full, timeout=linger_left)
        batch = buffer[:]
        buffer.clear()
        ready.clear()
        full.clear()
        room.set()
        try:
            yield batch
        finally:
            for event in batch:
                await stream.ack(event)
