"""The contracts: parse and validate input events, and build every output record.

Validation here is plain Python on the hot path; ``schemas/*.json`` state the same contracts as JSON Schema
for the people and services on the other side of each topic, and the tests hold the two in agreement.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Final

from stream_app.errors import InvalidEvent

SCHEMA_VERSION: Final = 1
MAX_MESSAGE_BYTES: Final = 1 << 20
MAX_TITLE_CHARS: Final = 1_000
MAX_DESCRIPTION_CHARS: Final = 20_000
MAX_DEAD_LETTER_VALUE_BYTES: Final = 64 * 1024
MAX_INTEGER_ID: Final = 2**63 - 1
OPTIONAL_TEXT_FIELDS: Final = ("created_on", "source", "url")
SCHEMAS_DIR = Path(__file__).resolve().parent.parent / "schemas"


@dataclass(frozen=True)
class ContentEvent:
    """A validated input event; ``fields`` is the original object, unknown fields included."""

    id: str | int
    title: str
    description: str | None
    fields: dict[str, Any]

    @property
    def key(self) -> str:
        """The event id as the output records' Kafka key."""
        return str(self.id)


def _refuse_constant(name: str) -> Any:
    raise InvalidEvent("invalid_value", f"{name} is not a valid JSON number")


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        repeated = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise InvalidEvent("invalid_value", f"the key {repeated!r} appears more than once")
    return result


def parse_event(raw: bytes | None) -> ContentEvent:
    """Decode and validate one input message; raises :class:`InvalidEvent` with a reason and a detail."""
    if raw is None or not raw.strip():
        raise InvalidEvent("not_json", "the message is empty")
    if len(raw) > MAX_MESSAGE_BYTES:
        raise InvalidEvent("too_large", f"the message has {len(raw)} bytes, more than {MAX_MESSAGE_BYTES}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidEvent("not_utf8", f"the message is not UTF-8 (byte {error.start})") from None
    try:
        value = json.loads(text, parse_constant=_refuse_constant, object_pairs_hook=_refuse_duplicate_keys)
    except RecursionError:
        raise InvalidEvent("invalid_value", "the JSON is nested too deeply") from None
    except ValueError as error:
        raise InvalidEvent("not_json", f"the message is not JSON: {error}") from None
    if not isinstance(value, dict):
        raise InvalidEvent("not_object", f"the message is a JSON {type(value).__name__}, not an object")
    return _validate(value)


def _validate(value: dict[str, Any]) -> ContentEvent:
    """Check the fields of a decoded event object."""
    for name in ("id", "title"):
        if value.get(name) is None:
            raise InvalidEvent("missing_field", f"the field {name!r} is missing")
    event_id = value["id"]
    if isinstance(event_id, bool) or not isinstance(event_id, str | int):
        raise InvalidEvent("wrong_type", f"'id' must be a string or an integer, not {type(event_id).__name__}")
    if isinstance(event_id, str) and not event_id.strip():
        raise InvalidEvent("invalid_value", "'id' is an empty string")
    if isinstance(event_id, int) and abs(event_id) > MAX_INTEGER_ID:
        raise InvalidEvent("invalid_value", "'id' is an integer beyond 64 bits")
    title = value["title"]
    if not isinstance(title, str):
        raise InvalidEvent("wrong_type", f"'title' must be a string, not {type(title).__name__}")
    if not title.strip():
        raise InvalidEvent("invalid_value", "'title' is blank")
    if len(title) > MAX_TITLE_CHARS:
        raise InvalidEvent("too_large", f"'title' has {len(title)} characters, more than {MAX_TITLE_CHARS}")
    description = value.get("description")
    if description is not None and not isinstance(description, str):
        raise InvalidEvent("wrong_type", f"'description' must be a string or null, not {type(description).__name__}")
    if description is not None and len(description) > MAX_DESCRIPTION_CHARS:
        raise InvalidEvent(
            "too_large", f"'description' has {len(description)} characters, more than {MAX_DESCRIPTION_CHARS}"
        )
    for name in OPTIONAL_TEXT_FIELDS:
        field = value.get(name)
        if field is not None and not isinstance(field, str):
            raise InvalidEvent("wrong_type", f"{name!r} must be a string or null, not {type(field).__name__}")
    return ContentEvent(id=event_id, title=title, description=description, fields=value)


def tagged_record(
    event: ContentEvent,
    tag: str,
    confidence: float,
    scores: dict[str, float],
    model_version: str,
    dedupe_key: str,
    processed_at: str,
    tagged_by: str = "model",
) -> dict[str, Any]:
    """The record on the tagged topic: the original fields plus the tag and how it was decided."""
    return {
        **event.fields,
        "tag": tag,
        "confidence": round(confidence, 6),
        "scores": {name: round(score, 6) for name, score in scores.items()},
        "model_version": model_version,
        "tagged_by": tagged_by,
        "dedupe_key": dedupe_key,
        "processed_at": processed_at,
        "schema_version": SCHEMA_VERSION,
    }


def review_record(
    event: ContentEvent,
    tag: str,
    confidence: float,
    scores: dict[str, float],
    model_version: str,
    dedupe_key: str,
    processed_at: str,
) -> dict[str, Any]:
    """The record on the review topic: the original fields plus the model's suggestion."""
    return {
        **event.fields,
        "suggested_tag": tag,
        "confidence": round(confidence, 6),
        "scores": {name: round(score, 6) for name, score in scores.items()},
        "model_version": model_version,
        "reason": "low_confidence",
        "dedupe_key": dedupe_key,
        "processed_at": processed_at,
        "schema_version": SCHEMA_VERSION,
    }


def duplicate_record(
    event: ContentEvent, duplicate_of: str, dedupe_key: str, match: str, similarity: float, processed_at: str
) -> dict[str, Any]:
    """The record on the duplicates topic: which event this one copies, and how closely."""
    return {
        "id": event.id,
        "duplicate_of": duplicate_of,
        "dedupe_key": dedupe_key,
        "match": match,
        "similarity": round(similarity, 4),
        "title": event.title,
        "processed_at": processed_at,
        "schema_version": SCHEMA_VERSION,
    }


def dead_letter_record(
    raw: bytes | None, error: InvalidEvent, topic: str, partition: int, offset: int, received_at: str
) -> dict[str, Any]:
    """The record on the dead-letter topic: why, where from, and the original bytes (capped at 64 KiB)."""
    data = raw or b""
    kept = data[:MAX_DEAD_LETTER_VALUE_BYTES]
    try:
        encoding, text = "utf-8", kept.decode("utf-8")
    except UnicodeDecodeError:
        encoding, text = "base64", base64.b64encode(kept).decode("ascii")
    return {
        "error": error.reason,
        "detail": error.detail,
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "received_at": received_at,
        "value": {
            "encoding": encoding,
            "data": text,
            "truncated": len(data) > len(kept),
            "length": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        },
        "schema_version": SCHEMA_VERSION,
    }


@cache
def load_schema(name: str) -> dict[str, Any]:
    """The JSON Schema of a topic's records, e.g. ``load_schema("content-tagged")``."""
    return dict(json.loads((SCHEMAS_DIR / f"{name}.json").read_text(encoding="utf-8")))
