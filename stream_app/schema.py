"""The contracts: parse and validate input events, and build every output record.

Validation here is plain Python on the hot path; ``schemas/*.json`` state the same contracts as JSON Schema
for the people and services on the other side of each topic, and the tests hold the two in agreement.

Choices the contract makes, each with its dead-letter reason:

- a message over 256 KiB is refused before it is decoded (``too_large``), as are a title over 1,000 and a
  description over 20,000 characters. The cap keeps every record the worker writes for a valid event under
  Kafka's default 1 MiB record limit, even where JSON's ASCII escapes make non-ASCII text up to three times
  longer (a 4-byte character becomes 12 bytes);
- ``id`` or ``title`` absent or ``null`` is ``missing_field``; a blank (empty or whitespace-only) ``id`` or
  ``title`` is present but unusable, so it is ``invalid_value``;
- ``id`` is a string or a JSON integer; ``true``/``false`` and ``1.0`` are ``wrong_type`` (JSON Schema cannot
  tell ``1.0`` from ``1``, so here the parser is stricter than ``content.json``); integers outside the signed
  64-bit range are ``invalid_value``;
- a string ``id`` holding a control character (:data:`ID_CONTROL_CHARACTERS`) is ``invalid_value``: the review
  page sends an id back in a form, and HTML and form encoding change line breaks and NUL, so such an item could
  never be decided; bidi controls would show the id, and the text after it, in another order;
- rules about the JSON text itself, which JSON Schema cannot state, are ``invalid_value``: ``NaN`` and
  ``Infinity`` (and numbers like ``1e400`` that overflow to them), a key repeated in one object, nesting
  deeper than 64 levels, an unpaired UTF-16 surrogate escape such as ``"\\ud800"``, and integers too long
  for Python to convert. Each would otherwise pass here and crash the worker later when it writes the record.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from functools import cache
from pathlib import Path
from typing import Any, Final, NamedTuple

from stream_app.errors import InvalidEvent

SCHEMA_VERSION: Final = 1
MAX_MESSAGE_BYTES: Final = 256 * 1024
MAX_TITLE_CHARS: Final = 1_000
MAX_DESCRIPTION_CHARS: Final = 20_000
MAX_ID_CHARS: Final = 200
"""Longest string id: an id is a key, carried by every output record and by the title index's entries."""
ID_CONTROL_CHARACTERS: Final = r"\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069"
"""The characters no string id may hold, as ranges of a regular expression's character class: Unicode's control
characters (category Cc) and the bidi embeddings, overrides and isolates. ``content.json`` says the same."""
_ID_CONTROL: Final = re.compile(f"[{ID_CONTROL_CHARACTERS}]")
MAX_NESTING: Final = 64
"""Deepest nesting of objects and arrays an event may have; the event object itself is level 1."""
MIN_INTEGER_ID: Final = -(2**63)
MAX_INTEGER_ID: Final = 2**63 - 1
OPTIONAL_TEXT_FIELDS: Final = ("created_on", "source", "url")
BLANK_CHARACTERS: Final = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
)
"""What a blank id or title is made of: every character Python's ``str.isspace`` takes for white space, and
U+FEFF, which JavaScript's ``\\s`` (the output schemas' ``"pattern": "\\S"``) does too. A text with any other
character matches that pattern under both Python's and JavaScript's rules."""
SERVICE_FIELDS: Final = frozenset(
    ("tag", "suggested_tag", "reason", "confidence", "scores", "model_version", "tagged_by", "dedupe_key")
    + ("processed_at", "schema_version")
)
"""The fields the service writes on tagged and review records. An input field of one of these names is not passed
through to either: a tagged record must not carry a ``suggested_tag`` or ``reason`` that makes it read as a review
record, nor a review record a ``tag`` or ``tagged_by`` that makes it read as tagged."""
MAX_DEAD_LETTER_VALUE_BYTES: Final = 64 * 1024
OUTPUT_SCHEMA_NAMES: Final = ("content-tagged", "content-review", "content-duplicates", "content-deadletter")
SCHEMA_NAMES: Final = ("content", *OUTPUT_SCHEMA_NAMES)
SCHEMAS_DIR: Final = Path(__file__).resolve().parent.parent / "schemas"
_TOO_DEEP: Final = f"the JSON is nested more than {MAX_NESTING} levels deep"


# A named tuple, not a frozen dataclass: several are made for every event, at half the cost.
class ContentEvent(NamedTuple):
    """A validated input event; ``fields`` is the original object, unknown fields included."""

    id: str | int
    title: str
    description: str | None
    fields: dict[str, Any]

    @property
    def key(self) -> str:
        """The event id as the output records' Kafka key."""
        return str(self.id)


def parse_event(raw: bytes | None) -> ContentEvent:
    """Decode and validate one input message; raises :class:`InvalidEvent` with a reason and a detail."""
    if raw is None:
        raise InvalidEvent("not_json", "the message has no value (a null record)")
    if len(raw) > MAX_MESSAGE_BYTES:
        raise InvalidEvent("too_large", f"the message has {len(raw)} bytes, more than {MAX_MESSAGE_BYTES}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidEvent("not_utf8", f"the message is not UTF-8 (byte offset {error.start})") from None
    try:
        if text.startswith("\ufeff"):  # as json.loads refuses it
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        value = _DECODER.decode(text)
    except RecursionError:
        raise InvalidEvent("invalid_value", _TOO_DEEP) from None
    except json.JSONDecodeError as error:
        detail = f"the message is not JSON: {error}" if text.strip(_JSON_WHITESPACE) else "the message is empty"
        raise InvalidEvent("not_json", detail) from None
    except ValueError as error:  # not a syntax error: an integer past Python's digit limit
        raise InvalidEvent("invalid_value", f"the message holds an unreadable number: {error}") from None
    if not isinstance(value, dict):
        raise InvalidEvent("not_object", f"the message is {_json_type(value)}, not an object")
    # Both scans below run only when the raw text makes their failure possible, so a plain event pays nothing.
    if text.count("[") + text.count("{") > MAX_NESTING and _nesting_exceeds(value, MAX_NESTING):
        raise InvalidEvent("invalid_value", _TOO_DEEP)
    if ("\\ud" in text or "\\uD" in text) and has_lone_surrogate(value):
        raise InvalidEvent("invalid_value", "the JSON holds an unpaired surrogate escape such as \\ud800")
    return _validate(value)


_JSON_WHITESPACE: Final = " \t\n\r"


def is_blank(text: str) -> bool:
    """Whether ``text`` holds nothing but :data:`BLANK_CHARACTERS`."""
    return not text.strip(BLANK_CHARACTERS)


def id_control_character(text: str) -> str | None:
    """The first of :data:`ID_CONTROL_CHARACTERS` in an id's ``text``, None if it holds none."""
    found = _ID_CONTROL.search(text)
    return None if found is None else found.group()


def _refuse_constant(name: str) -> Any:
    """``json.loads`` hook for the non-standard NaN, Infinity and -Infinity literals."""
    raise InvalidEvent("invalid_value", f"{name} is not a valid JSON number")


def _finite_float(text: str) -> float:
    """``json.loads`` hook for decimals: refuse one that overflows to infinity, which JSON cannot carry."""
    number = float(text)
    if math.isinf(number):
        raise InvalidEvent("invalid_value", f"the number {text[:30]} is out of range")
    return number


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json.loads`` hook for objects: refuse a key that appears twice instead of keeping the last."""
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise InvalidEvent("invalid_value", f"the key {key!r} appears more than once in one object")
            seen.add(key)
    return result


def _nesting_exceeds(value: Any, limit: int) -> bool:
    """Whether ``value`` nests objects and arrays deeper than ``limit``; a loop, so depth cannot crash it."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        for child in item.values() if isinstance(item, dict) else item:
            if isinstance(child, dict | list):
                stack.append((child, depth + 1))
    return False


def has_lone_surrogate(value: Any) -> bool:
    """Whether a decoded value holds a surrogate code point, which no UTF-8 encoder accepts."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


_DECODER: Final = json.JSONDecoder(
    parse_constant=_refuse_constant, parse_float=_finite_float, object_pairs_hook=_refuse_duplicate_keys
)
"""The input's parser, made once: ``json.loads`` with hooks builds one per call, a fifth of a parse's cost."""


def _json_type(value: Any) -> str:
    """The JSON name of a decoded value's type with its article, for details: "an array", "null"."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return "a number"


def _validate(value: dict[str, Any]) -> ContentEvent:
    """Check the fields of a decoded event object."""
    for name in ("id", "title"):
        if value.get(name) is None:
            state = "null" if name in value else "missing"
            raise InvalidEvent("missing_field", f"the required field {name!r} is {state}")
    event_id = value["id"]
    if isinstance(event_id, bool) or not isinstance(event_id, str | int):
        raise InvalidEvent("wrong_type", f"'id' must be a string or an integer, not {_json_type(event_id)}")
    if isinstance(event_id, str) and is_blank(event_id):
        raise InvalidEvent("invalid_value", "'id' is a blank string")
    if isinstance(event_id, str) and len(event_id) > MAX_ID_CHARS:
        raise InvalidEvent("too_large", f"'id' has {len(event_id)} characters, more than {MAX_ID_CHARS}")
    if isinstance(event_id, str) and (control := id_control_character(event_id)) is not None:
        raise InvalidEvent("invalid_value", f"'id' holds the control character U+{ord(control):04X}")
    if isinstance(event_id, int) and not MIN_INTEGER_ID <= event_id <= MAX_INTEGER_ID:
        raise InvalidEvent("invalid_value", "'id' is an integer outside the signed 64-bit range")
    title = value["title"]
    if not isinstance(title, str):
        raise InvalidEvent("wrong_type", f"'title' must be a string, not {_json_type(title)}")
    if is_blank(title):
        raise InvalidEvent("invalid_value", "'title' is blank")
    if len(title) > MAX_TITLE_CHARS:
        raise InvalidEvent("too_large", f"'title' has {len(title)} characters, more than {MAX_TITLE_CHARS}")
    description = value.get("description")
    if description is not None and not isinstance(description, str):
        kind = _json_type(description)
        raise InvalidEvent("wrong_type", f"'description' must be a string or null, not {kind}")
    if description is not None and len(description) > MAX_DESCRIPTION_CHARS:
        raise InvalidEvent(
            "too_large", f"'description' has {len(description)} characters, more than {MAX_DESCRIPTION_CHARS}"
        )
    for name in OPTIONAL_TEXT_FIELDS:
        field = value.get(name)
        if field is not None and not isinstance(field, str):
            raise InvalidEvent("wrong_type", f"{name!r} must be a string or null, not {_json_type(field)}")
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
    """The record on the tagged topic: the original fields plus the tag and how it was decided.

    Input fields named like one the service writes on a tagged or review record (:data:`SERVICE_FIELDS`) are
    left out. ``scores`` go in as given: plain, finite floats rounded as published
    (:attr:`stream_app.classifier.Prediction.scores`).
    """
    return {
        **_passed_through(event),
        "tag": tag,
        "confidence": _finite(confidence, 6),
        "scores": scores,
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
    """The record on the review topic: the original fields (less the :data:`SERVICE_FIELDS`) plus the model's
    suggestion and why it waits."""
    return {
        **_passed_through(event),
        "suggested_tag": tag,
        "confidence": _finite(confidence, 6),
        "scores": scores,
        "model_version": model_version,
        "reason": "low_confidence",
        "dedupe_key": dedupe_key,
        "processed_at": processed_at,
        "schema_version": SCHEMA_VERSION,
    }


def _passed_through(event: ContentEvent) -> dict[str, Any]:
    """The event's fields that go into its tagged or review record: all but the :data:`SERVICE_FIELDS`."""
    fields = event.fields
    if SERVICE_FIELDS.isdisjoint(fields):  # nearly every event: no copy
        return fields
    return {name: value for name, value in fields.items() if name not in SERVICE_FIELDS}


def _finite(value: float, digits: int) -> float:
    """``value`` as a plain float rounded to ``digits`` decimals; raises ValueError if it is not a finite number,
    which the output encoder would write as null (:func:`stream_app.delivery.publish.encode`). Such a number
    comes from a faulty model, not from the event, so the worker stops on it rather than dead-letter it."""
    number = round(float(value), digits)
    if not math.isfinite(number):
        raise ValueError(f"{number} is not a finite number")
    return number


def duplicate_record(
    event: ContentEvent, duplicate_of: str, dedupe_key: str, match: str, similarity: float, processed_at: str
) -> dict[str, Any]:
    """The record on the duplicates topic: which event this one copies, and how closely."""
    return {
        "id": event.id,
        "duplicate_of": duplicate_of,
        "dedupe_key": dedupe_key,
        "match": match,
        "similarity": _finite(similarity, 4),
        "title": event.title,
        "processed_at": processed_at,
        "schema_version": SCHEMA_VERSION,
    }


def dead_letter_record(
    raw: bytes | None, error: InvalidEvent, topic: str, partition: int, offset: int, received_at: str
) -> dict[str, Any]:
    """The record on the dead-letter topic: why, where from, and the original bytes.

    ``value.data`` holds the first 64 KiB as text when they are UTF-8, else as base64; ``length`` and
    ``sha256`` always describe the whole original, so a truncated copy can still be matched to its source.
    """
    data = raw or b""
    kept = data[:MAX_DEAD_LETTER_VALUE_BYTES]
    try:
        encoding, text = "utf-8", kept.decode("utf-8")
    except UnicodeDecodeError as failure:
        if failure.reason == "unexpected end of data" and len(kept) < len(data):
            # The cut split a multi-byte character: keep the text before it rather than fall back to base64.
            kept = kept[: failure.start]
            encoding, text = "utf-8", kept.decode("utf-8")
        else:
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
            "truncated": len(kept) < len(data),
            "length": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        },
        "schema_version": SCHEMA_VERSION,
    }


def load_schema(name: str) -> dict[str, Any]:
    """The JSON Schema named ``name``: ``content`` (the input) or one of :data:`OUTPUT_SCHEMA_NAMES`.

    Each call returns a fresh copy, so a caller may change it freely.
    """
    if name not in SCHEMA_NAMES:
        raise ValueError(f"unknown schema {name!r}; the schemas are {', '.join(SCHEMA_NAMES)}")
    return dict(json.loads(_schema_text(name)))


@cache
def _schema_text(name: str) -> str:
    """The text of ``schemas/<name>.json``, read once on first use."""
    return (SCHEMAS_DIR / f"{name}.json").read_text(encoding="utf-8")
