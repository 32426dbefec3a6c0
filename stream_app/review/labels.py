"""The labelled store: people's decisions kept as training data, one JSON line per decision, appended.

A line is ``{id, title, description, tag, verdict, reviewer, decided_at, model_version}``. Readers keep, per id,
the line decided last (the later line on a tie), so a correction overrides an earlier decision without rewriting
the file; ``decided_at`` is compared as a time (:func:`decision_time`), never as text, which anyone writing to
the feedback topic could make sort after every time. Lines that do not parse are skipped and counted.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any, Final

from stream_app import APPROVED_TAGS

LABEL_FIELDS: Final = ("id", "title", "description", "tag", "verdict", "reviewer", "decided_at", "model_version")


class LabelStore:
    """Appends decisions to one JSON Lines file (created with its folder on first write)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, label: dict[str, Any]) -> None:
        """Append one decision, keeping only :data:`LABEL_FIELDS`; raises ``UnicodeEncodeError``, writing
        nothing, for text UTF-8 cannot carry (an unpaired surrogate)."""
        line = json.dumps({name: label.get(name) for name in LABEL_FIELDS}, ensure_ascii=False) + "\n"
        data = line.encode("utf-8")  # before the file is touched: half a line would spoil the next one too
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("ab") as file:
            file.write(data)


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


def read_labels(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The latest decision per id, in first-seen order, and the number of lines skipped as unreadable."""
    latest: dict[str, tuple[dt.datetime, dict[str, Any]]] = {}
    skipped = 0
    if not path.exists():
        return [], 0
    # Only "\n" ends a line: the store writes text as it is, and a title may hold U+2028 or U+0085, which
    # str.splitlines would take for line ends.
    for line in path.read_text(encoding="utf-8", errors="replace").split("\n"):
        if not line.strip():
            continue
        try:
            label = json.loads(line)
        except (ValueError, RecursionError):  # RecursionError: arrays or objects nested thousands deep
            label = None
        when = decision_time(label.get("decided_at")) if isinstance(label, dict) else None
        if when is None or not (
            isinstance(label.get("id"), str)
            and isinstance(label.get("title"), str)
            and label.get("tag") in APPROVED_TAGS
        ):
            skipped += 1
            continue
        earlier = latest.get(label["id"])
        if earlier is None or when >= earlier[0]:
            latest[label["id"]] = (when, label)
    return [label for _, label in latest.values()], skipped
