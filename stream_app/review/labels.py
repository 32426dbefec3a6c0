"""The labelled store: people's decisions kept as training data, one JSON line per decision, appended.

A line is ``{id, title, description, tag, verdict, reviewer, decided_at, model_version}``. Readers keep, per id,
the line with the latest ``decided_at`` (the later line on a tie), so a correction overrides an earlier
decision without rewriting the file; lines that do not parse are skipped and counted.
"""

from __future__ import annotations

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
        """Append one decision, keeping only :data:`LABEL_FIELDS`."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({name: label.get(name) for name in LABEL_FIELDS}, ensure_ascii=False)
        with self.path.open("a", encoding="utf-8") as file:
            file.write(line + "\n")


def read_labels(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The latest decision per id, in first-seen order, and the number of lines skipped as unreadable."""
    latest: dict[str, dict[str, Any]] = {}
    skipped = 0
    if not path.exists():
        return [], 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            label = json.loads(line)
            valid = (
                isinstance(label, dict)
                and isinstance(label.get("id"), str)
                and isinstance(label.get("title"), str)
                and label.get("tag") in APPROVED_TAGS
                and isinstance(label.get("decided_at"), str)
            )
        except ValueError:
            valid = False
        if not valid:
            skipped += 1
            continue
        earlier = latest.get(label["id"])
        if earlier is None or label["decided_at"] >= earlier["decided_at"]:
            latest[label["id"]] = label
    return list(latest.values()), skipped
