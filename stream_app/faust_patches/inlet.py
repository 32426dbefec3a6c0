"""The input topic's records handed from Faust's fetch loop to the agent's batches without Faust's per-record path.

Faust hands each fetched record to its conductor, which takes a lock, awaits the flow control and the producer's
buffer, decodes the record into an event and puts it on the agent's channel queue; the stream's reader then takes
it off that queue, runs the stream's sensors and processors on it and hands it to the agent. For a one-agent
worker that takes its input in batches that path is most of what a Faust hop costs (decision 0029). An
:class:`EventInlet` is where the consumer (:class:`~.consumer.TaggerConsumer`) puts the records of the topic it is
registered for instead: the record becomes an event at once and waits in a list for the agent's next batch
(:meth:`EventInlet.batches`). What the path did that matters is kept:

- nothing is put while Faust's flow control is suspended (a rebalance), and what waits when the flow resumes is
  dropped, as Faust empties its channel queues then: the consumer seeks back to the committed offsets and reads it
  again;
- a record of an earlier consumer generation, or taken while the flow is suspended, is left unacked and out of the
  batch, for the same reason (Faust's stream skips such records);
- a full inlet makes the fetch loop wait, where a rebalance can abandon the record (``suspend_flow``);
- an event taken by the agent counts as in flight (``Consumer.unacked``) until it is acked, so that a rebalance
  waits for the agent's batch before it commits.

The Faust names read here (``flow_control``, the ``Event`` setting, ``consumer_generation_id``,
``Message.generation_id``, ``Consumer.unacked``) are checked at start-up (:mod:`.checks`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from typing import Any, cast

import faust
from faust.types import AppT, EventT, Message
from mode.utils.aiter import aiter
from mode.utils.locks import Event


class EventInlet:
    """A batch buffer of one topic's events, filled by the consumer's fetch loop and emptied by one agent."""

    def __init__(self, app: AppT, capacity: int | None = None) -> None:
        """``capacity``: events held before the fetch loop waits; by default Faust's stream buffer size
        (``stream_buffer_maxsize``), which the channel queue it replaces held."""
        capacity = app.conf.stream_buffer_maxsize if capacity is None else capacity
        if capacity < 1:
            raise ValueError("an inlet holds at least one event")
        self.app = app
        self.capacity = capacity
        self._event_class = cast(Callable[..., EventT[Any]], app.conf.Event)
        """The class ``app.create_event`` makes, read once here: a Faust setting is slow to read, and every record
        needs it."""
        self._events: list[EventT[Any]] = []
        self._ready = Event()
        """Set while the inlet holds an event."""
        self._room = Event()
        """Set while the inlet takes more events."""
        self._room.set()
        self._batch_full: Event | None = None
        """While a batch lingers for more events: set once the inlet holds as many as the batch takes."""
        self._batch_max = 0
        # Emptied whenever the flow resumes, with Faust's own channel queues.
        app.flow_control.manage_queue(self)  # type: ignore[arg-type]

    async def put(self, message: Message) -> None:
        """Hold ``message`` as an event for the agent; wait while the flow is suspended or the inlet is full.

        Finishes on its first step when neither is the case, so the consumer's fetch loop hands the record on
        without a task (:mod:`.eager`).
        """
        flow_control = self.app.flow_control
        while not flow_control.is_active() or len(self._events) >= self.capacity:
            if not flow_control.is_active():
                await flow_control.acquire()
            else:
                await self._room.wait()
        # No incref: the inlet is the record's only reader, so its first ack is its last (refcount 0 stays 0).
        events = self._events
        events.append(self._event_class(self.app, message.key, message.value, message.headers, message))
        self._ready.set()
        if len(events) >= self.capacity:
            self._room.clear()
        if self._batch_full is not None and len(events) >= self._batch_max:
            self._batch_full.set()

    def clear(self) -> None:
        """Drop what waits for the agent, unacked: the consumer reads it again from the committed offsets."""
        self._events.clear()
        self._ready.clear()
        self._room.set()

    def take(self, max_: int) -> list[EventT[Any]]:
        """Up to ``max_`` events, oldest first, counted as in flight; stale ones (see the module) left out."""
        events = self._events
        taken = events[:max_]
        del events[:max_]  # in place: the rest is not copied
        if not events:
            self._ready.clear()
        self._room.set()
        app = self.app
        generation = app.consumer_generation_id
        if not app.flow_control.is_active():
            return []
        fresh = [event for event in taken if event.message.generation_id == generation]
        in_flight = app.consumer.unacked
        for event in fresh:
            in_flight.add(event.message)
        return fresh

    async def batches(
        self, stream: faust.Stream[Any], max_: int, linger: float = 0.0
    ) -> AsyncGenerator[list[EventT[Any]], None]:
        """Yield the events put here, at most ``max_`` at a time, each batch acked once the agent asks for the
        next (or closes the generator), until the agent's ``stream`` stops.

        The stream itself carries nothing: iterating its channel once subscribes the consumer to its topic.

        ``linger`` seconds is how long, from the agent's request, a batch of events that queued up while the agent
        worked waits for more before it is handed over with fewer than ``max_`` (decision 0014): under load,
        fewer and bigger batches; under light load, an event that finds the agent idle is handed over at once.
        """
        aiter(stream.channel)
        loop = asyncio.get_running_loop()
        while not stream.should_stop:
            asked, backlog = loop.time(), bool(self._events)
            if await stream.wait_for_stopped(self._ready):
                break
            linger_left = asked + linger - loop.time()
            if backlog and linger_left > 0 and len(self._events) < max_:
                full = self._batch_full = Event()
                self._batch_max = max_
                try:
                    await stream.wait_for_stopped(full, timeout=linger_left)
                finally:
                    self._batch_full = None
            batch = self.take(max_)
            if not batch:
                continue
            try:
                yield batch
            finally:
                for event in batch:
                    event.ack()
