"""Log records that repeat: a library's written once per window with a count of the rest (decision 0307), and
the worker's skipped records logged by :class:`SkipTally`.

While the broker is away, aiokafka logs an error for every connection attempt, metadata refresh, fetch and
coordinator look-up, each retried every few milliseconds by every client of the worker. Written whole, that
buries what else the log says and fills the disk or log pipeline it goes to.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Final

from stream_app.bounded import remember

OWN_LOGGER = "stream_app"
"""The worker's own records always pass: each is written on purpose (sign-ins among them), and where one could
repeat without end, its code logs a :class:`SkipTally`'s share."""

SKIP_LOG_EVERY: Final = 1000
"""After the first of its kind, every this many skipped records is logged (:class:`SkipTally`)."""

MAX_KINDS = 256
"""Most kinds of record remembered at once; the longest unseen is forgotten first (a library that logs preformatted
text makes a new kind of every line)."""

_VERDICT = "tagger_repeat_verdict"
"""Where a record keeps the verdict, so that every handler the filter sits on decides the same."""


@dataclass
class _Kind:
    since: float
    """When the last record of the kind was let through."""
    left_out: int = 0


class RepeatedRecords(logging.Filter):
    """Lets a library's record through when it is the first of its kind (logger, level and message template) in
    ``window_seconds``, and counts the others; the next one let through says how many were left out since the
    last. Safe to share between handlers and threads (Faust's consumer logs from a thread of its own)."""

    def __init__(
        self, window_seconds: float, *, clock: Callable[[], float] = time.monotonic, max_kinds: int = MAX_KINDS
    ) -> None:
        super().__init__()
        self.window_seconds = window_seconds
        self._clock = clock
        self._max_kinds = max_kinds
        self._kinds: OrderedDict[tuple[str, int, str], _Kind] = OrderedDict()
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        verdict = record.__dict__.get(_VERDICT)
        if verdict is None:
            verdict = self._decide(record)
            record.__dict__[_VERDICT] = verdict
        return bool(verdict)

    def _decide(self, record: logging.LogRecord) -> bool:
        if record.name == OWN_LOGGER or record.name.startswith(OWN_LOGGER + "."):
            return True
        template = record.msg if isinstance(record.msg, str) else type(record.msg).__name__
        key = (record.name, record.levelno, template)
        with self._lock:
            now = self._clock()
            kind = self._kinds.get(key)
            if kind is not None and now - kind.since < self.window_seconds:
                kind.left_out += 1
                return False
            remember(self._kinds, key, _Kind(since=now), self._max_kinds)
        if kind is not None and kind.left_out and isinstance(record.msg, str):
            record.msg += f" ({kind.left_out} more like this in the {now - kind.since:.0f} s before, not written)"
        return True


def summarise_repeats(logger: logging.Logger, window_seconds: float) -> RepeatedRecords | None:
    """Put a :class:`RepeatedRecords` of ``window_seconds`` on every handler of ``logger`` (the root logger, whose
    handlers every library's records reach); none when the window is 0."""
    if window_seconds <= 0:
        return None
    repeats = RepeatedRecords(window_seconds)
    for handler in logger.handlers:
        handler.addFilter(repeats)
    return repeats


class SkipTally:
    """Counts of the records a follower skipped, by kind. A follower reads its topic from the start on every start,
    so a flood of bad records would be a log line per record each time: only the first of a kind and every
    :data:`SKIP_LOG_EVERY`-th are worth one (the skipped-records counter has them all)."""

    def __init__(self) -> None:
        self.counts: dict[Hashable, int] = {}

    def add(self, kind: Hashable) -> int | None:
        """Count one skipped record of ``kind``; the count so far when it is worth a log line, else None."""
        self.counts[kind] = seen = self.counts.get(kind, 0) + 1
        return seen if seen == 1 or seen % SKIP_LOG_EVERY == 0 else None
