"""What a second look judges a title against: the entries other writers stored at about the same time as its own."""

from __future__ import annotations

from collections.abc import Iterable

from stream_app.dedupe.entries import Entry, TitleEntry, entry_fields, unpack_buckets


class EarlierEntries:
    """Entries other writers stored, each with its place among them (the index topic's order), by ref and by LSH
    bucket: what :meth:`~stream_app.dedupe.index.DedupeIndex.recheck` judges titles against. Values of no known
    shape are left out."""

    def __init__(self, stored: Iterable[tuple[int, str, bytes]]) -> None:
        self.by_ref: dict[str, list[tuple[int, bytes, Entry]]] = {}
        self.by_bucket: dict[int, list[tuple[int, str, TitleEntry]]] = {}
        for position, ref, value in stored:
            entry = entry_fields(value)
            if entry is None:
                continue
            self.by_ref.setdefault(ref, []).append((position, value, entry))
            if isinstance(entry, TitleEntry):
                for bucket in unpack_buckets(entry.buckets):
                    self.by_bucket.setdefault(bucket, []).append((position, ref, entry))
