"""Faust's consumer "thread" run as a service on the worker's event loop, with no thread of its own.

Faust runs aiokafka's consumer on a mode ``ServiceThread``: a thread with an event loop of its own, which the
worker's loop calls through a method queue. Every fetched record then crosses threads. The fetch response is read
on the consumer's thread, which must take the GIL from the event loop while the loop works through a batch, and
the records come back through a future set from that thread. On the event loop, a fetch is read as soon as the
loop is free, as a bare aiokafka consumer reads it (decisions 0059 and 0060 measure the difference).

:class:`InLoopServiceThread` keeps the ``ServiceThread`` interface Faust calls (``start``, ``stop``,
``call_thread``, ``cast_thread``) and runs the service's ``_serve`` as a task on the loop that starts it.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from mode.threads import ServiceThread


class InLoopServiceThread(ServiceThread):
    """A ``ServiceThread`` whose "thread loop" is the loop that creates it: ``start`` runs the service as a task on
    it, and ``call_thread`` is a plain call. Put it before the Faust class in the bases."""

    _serving: asyncio.Future[None] | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["thread_loop"] = kwargs.get("loop") or asyncio.get_event_loop()
        super().__init__(*args, **kwargs)

    async def start(self) -> None:
        """Start the service on this loop and return once it has started, or raise what stopped its start, as
        ``ServiceThread.start`` does for its thread."""
        if self._thread_started.is_set():
            raise RuntimeError(f"{self.label} was started already")
        self._thread_started.set()
        self._thread_running = self.parent_loop.create_future()
        running = self._thread_running
        self._serving = asyncio.ensure_future(self._serve())
        # A crash is reported by _serve itself (it crashes the app); its task's exception needs no other reader.
        self._serving.add_done_callback(lambda task: task.cancelled() or task.exception())
        try:
            await running
        finally:
            self._thread_running = None

    async def call_thread(self, fun: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fun(*args, **kwargs)``, awaited when it returns an awaitable (Faust passes both kinds)."""
        result = fun(*args, **kwargs)
        return await result if inspect.isawaitable(result) else result

    async def cast_thread(self, fun: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> None:
        """``fun(*args, **kwargs)`` as a task of this service, not waited for."""
        self.add_future(fun(*args, **kwargs))

    async def _gather_remaining_tasks(self) -> None:
        # ServiceThread cancels every task left on its thread's loop as the thread ends. Here that loop is the
        # worker's: its tasks are the agent's, the web server's and the followers', not this service's.
        return None
