"""The labelled store: people's decisions kept as training data, one JSON line per decision, appended.

A line is ``{id, title, description, tag, verdict, reviewer, decided_at, model_version}``. Readers keep, per id,
the line decided last (the later line on a tie), so a correction overrides an earlier decision without rewriting
the file; ``decided_at`` is compared as a time (:func:`decision_time`), never as text, which anyone writing to
the feedback topic could make sort after every time. Lines that do not parse are skipped and counted.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
from pathlib import Path
from typing import Any, Final

from stream_app import APPROVED_TAGS
from stream_app.files import open_regular, regular_fd
from stream_app.schema import has_lone_surrogate

log = logging.getLogger(__name__)

LABEL_FIELDS: Final = ("id", "title", "description", "tag", "verdict", "reviewer", "decided_at", "model_version")


class LabelStore:
    """Appends decisions to one JSON Lines file (created with its folder on first write)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, label: dict[str, Any]) -> None:
        """Append one decision, keeping only :data:`LABEL_FIELDS`, as a line of its own; raises
        ``UnicodeEncodeError``, writing nothing, for text UTF-8 cannot carry (an unpaired surrogate), and
        :class:`OSError` (logged with its errno and the path), leaving the file as it was, when the store cannot be
        written or is not a regular file."""
        line = json.dumps({name: label.get(name) for name in LABEL_FIELDS}, ensure_ascii=False) + "\n"
        data = line.encode("utf-8")  # before the file is touched: half a line would spoil the next one too
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            append_line(self.path, data)
        except OSError as error:
            log.error("cannot append a decision to the labelled store %s: %s", self.path, error)
            raise


def append_line(path: Path, data: bytes) -> None:
    """Append ``data`` to the regular file at ``path`` (made if missing), after a newline if the file ends without
    one; on a failed write, cut the file back to its size before. Raises :class:`OSError`.

    A FIFO in its place would hold the event loop until a reader came: it is refused (:func:`regular_fd`). A line
    torn by a full disk or a killed process would swallow the next line whole; the newline leaves the fragment a
    line of its own, which readers skip and count."""
    fd = regular_fd(path, os.O_RDWR | os.O_APPEND | os.O_CREAT)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            data = b"\n" + data
        try:
            written = 0
            while written < len(data):
                written += os.write(fd, data[written:])
        except OSError:
            with contextlib.suppress(OSError):  # the error to raise is the write's; a newline ends what stays
                os.ftruncate(fd, size)
            raise
    finally:
        os.close(fd)


MAX_DECISION_AHEAD: Final = dt.timedelta(minutes=5)
"""How far past this process's clock a decision may be dated: the clocks of the workers that wrote it may be
ahead by this much; a decision dated later would override every real one made before that time."""


def decision_time(value: Any) -> dt.datetime | None:
    """When a decision was made, from its ``decided_at``: an ISO-8601 time in UTC, as the worker writes it
    (``2026-11-23T00:00:00.000+00:00``; ``Z``, and no offset at all, read as UTC too), and no more than
    :data:`MAX_DECISION_AHEAD` past the clock; None for anything else."""
    if not isinstance(value, str):
        return None
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    elif when.utcoffset() != dt.timedelta(0):
        return None
    return when if when <= dt.datetime.now(dt.UTC) + MAX_DECISION_AHEAD else None


UNDATED: Final = dt.datetime.min.replace(tzinfo=dt.UTC)
"""The decision time of a line without ``decided_at``: before any dated one, so then the later line wins."""


def decision_line(line: bytes) -> tuple[dict[str, Any], dt.datetime | None]:
    """The decision on one line of the store, its ``id`` as text, and when it was made (None for a line without
    ``decided_at``); raises ``ValueError`` saying what makes the line unusable: not a JSON object, a blank id or
    title, an unapproved tag, text UTF-8 cannot carry, or a ``decided_at`` that :func:`decision_time` refuses."""
    try:
        label = json.loads(line.decode("utf-8"))
    except (ValueError, RecursionError) as error:  # RecursionError: arrays or objects nested thousands deep
        raise ValueError(f"not JSON ({type(error).__name__})") from None
    if not isinstance(label, dict):
        raise ValueError("not a {id, title, description, tag} object")
    item_id, title, description, tag = (label.get(name) for name in ("id", "title", "description", "tag"))
    if isinstance(item_id, int) and not isinstance(item_id, bool):
        item_id = str(item_id)
    if not isinstance(item_id, str) or not item_id.strip():
        raise ValueError("no id, or a blank one")
    if not isinstance(title, str) or not title.strip():
        raise ValueError("no title, or a blank one")
    if description is not None and not isinstance(description, str):
        raise ValueError("description is not text")
    if (tag.strip() if isinstance(tag, str) else tag) not in APPROVED_TAGS:
        raise ValueError(f"tag {tag!r} is not approved")
    if has_lone_surrogate(label):
        raise ValueError("the text holds an unpaired surrogate, which UTF-8 cannot carry")
    decided_at = label.get("decided_at")
    when = None if decided_at is None else decision_time(decided_at)
    if decided_at is not None and when is None:
        raise ValueError(f"decided_at {str(decided_at)[:40]!r} is not an ISO-8601 time in UTC")
    return {**label, "id": item_id}, when


def latest_decisions(data: bytes, dated: bool) -> tuple[list[dict[str, Any]], list[str]]:
    """Per id, the decision made last (the later line on a tie; an undated line loses to a dated one), in the
    order those decisions were made; and why each unusable line was skipped (``line N: ...``). ``dated``: a line
    without ``decided_at`` is unusable too."""
    latest: dict[str, tuple[dt.datetime, dict[str, Any]]] = {}
    skipped: list[str] = []
    # Only "\n" ends a line: the store writes text as it is, and a title may hold U+2028 or U+0085, which
    # str.splitlines would take for line ends.
    for number, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            label, when = decision_line(line)
            if when is None and dated:
                raise ValueError("no decided_at")
        except ValueError as error:
            skipped.append(f"line {number}: {error}")
            continue
        earlier = latest.get(label["id"])
        if earlier is None or (when or UNDATED) >= earlier[0]:
            latest.pop(label["id"], None)  # re-inserted, so the order is that of the latest decisions
            latest[label["id"]] = (when or UNDATED, label)
    return [label for _, label in latest.values()], skipped


def read_labels(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The latest decision per id (:func:`latest_decisions`), and the number of lines skipped as unusable."""
    if not path.exists():
        return [], 0
    with open_regular(path) as file:
        labels, skipped = latest_decisions(file.read(), dated=True)
    return labels, len(skipped)


def decision_keys(path: Path) -> set[tuple[str, str]]:
    """``(id, decided_at)`` of every dated decision in the store at ``path``, those a later one replaced included
    (none if it does not exist); raises :class:`OSError` if it cannot be read or is not a regular file."""
    if not path.exists():
        return set()
    with open_regular(path) as file:
        data = file.read()
    keys: set[tuple[str, str]] = set()
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        try:
            label, when = decision_line(line)
        except ValueError:
            continue
        if when is not None:
            keys.add((label["id"], label["decided_at"]))
    return keys
