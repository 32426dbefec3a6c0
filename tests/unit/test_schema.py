"""Input validation: every malformed kind gets its reason, valid events pass through untouched, and the
output records match their published JSON Schemas."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream_app.errors import DEADLETTER_REASONS, InvalidEvent
from stream_app.schema import (
    ContentEvent,
    dead_letter_record,
    duplicate_record,
    load_schema,
    parse_event,
    review_record,
    tagged_record,
)

MALFORMED: list[tuple[bytes | None, str]] = [
    (None, "not_json"),
    (b"", "not_json"),
    (b"   ", "not_json"),
    (b"{not json", "not_json"),
    (b"\xff\xfe{}", "not_utf8"),
    (b'"a string"', "not_object"),
    (b"[1, 2]", "not_object"),
    (b"42", "not_object"),
    (b'{"title": "no id"}', "missing_field"),
    (b'{"id": 1}', "missing_field"),
    (b'{"id": null, "title": "x"}', "missing_field"),
    (b'{"id": 1.5, "title": "x"}', "wrong_type"),
    (b'{"id": true, "title": "x"}', "wrong_type"),
    (b'{"id": [1], "title": "x"}', "wrong_type"),
    (b'{"id": 1, "title": 7}', "wrong_type"),
    (b'{"id": 1, "title": "x", "description": 3}', "wrong_type"),
    (b'{"id": 1, "title": "x", "url": {"a": 1}}', "wrong_type"),
    (b'{"id": "  ", "title": "x"}', "invalid_value"),
    (b'{"id": 1, "title": " \\t "}', "invalid_value"),
    (b'{"id": 99999999999999999999, "title": "x"}', "invalid_value"),
    (b'{"id": 1, "title": "x", "score": NaN}', "invalid_value"),
    (b'{"id": 1, "title": "x", "score": -Infinity}', "invalid_value"),
    (b'{"id": 1, "title": "x", "title": "y"}', "invalid_value"),
    (b"[" * 100_000 + b"]" * 100_000, "invalid_value"),
    (b'{"id": 1, "title": "' + b"t" * 1001 + b'"}', "too_large"),
    (b'{"id": 1, "title": "x", "description": "' + b"d" * 20_001 + b'"}', "too_large"),
    (b'{"id": 1, "title": "x", "pad": "' + b"p" * (1 << 20) + b'"}', "too_large"),
]


@pytest.mark.parametrize(("raw", "reason"), MALFORMED, ids=[f"{r}-{i}" for i, (_, r) in enumerate(MALFORMED)])
def test_each_malformed_kind_is_refused_with_its_reason(raw: bytes | None, reason: str) -> None:
    with pytest.raises(InvalidEvent) as error:
        parse_event(raw)
    assert error.value.reason == reason
    assert error.value.detail


def test_every_dead_letter_reason_is_reachable() -> None:
    reasons = set()
    for raw, _ in MALFORMED:
        try:
            parse_event(raw)
        except InvalidEvent as error:
            reasons.add(error.reason)
    assert reasons == set(DEADLETTER_REASONS)


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise_anything_but_invalid_event(raw: bytes) -> None:
    try:
        parse_event(raw)
    except InvalidEvent:
        pass


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-1000, 1000) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)
events = st.fixed_dictionaries(
    {
        "id": st.one_of(st.integers(-(2**63) + 1, 2**63 - 1), st.text(min_size=1).filter(str.strip)),
        "title": st.text(min_size=1, max_size=1000).filter(str.strip),
    },
    optional={
        "description": st.none() | st.text(max_size=200),
        "source": st.none() | st.text(max_size=20),
        "url": st.none() | st.text(max_size=40),
        "created_on": st.none() | st.text(max_size=20),
        "extra": json_values,
    },
)


@given(events)
def test_valid_events_round_trip_with_every_field_untouched(fields: dict[str, Any]) -> None:
    event = parse_event(json.dumps(fields).encode())
    assert event.fields == fields
    assert (event.id, event.title, event.description) == (fields["id"], fields["title"], fields.get("description"))
    assert event.key == str(fields["id"])
    jsonschema.Draft202012Validator(load_schema("content")).validate(fields)


EXAMPLES = [raw for raw, _ in MALFORMED if raw is not None and len(raw) < 30_000]


@pytest.mark.parametrize("raw", EXAMPLES)
def test_the_input_schema_refuses_what_the_parser_refuses(raw: bytes) -> None:
    try:
        value = json.loads(raw)
    except ValueError:
        return  # not JSON at all: nothing for a JSON Schema to judge
    if b"NaN" in raw or b"Infinity" in raw or raw.count(b'"title"') > 1:
        return  # refused by the JSON decoder rules, which JSON Schema cannot express
    assert not jsonschema.Draft202012Validator(load_schema("content")).is_valid(value)


EVENT = ContentEvent(id=7, title="YOLO", description=None, fields={"id": 7, "title": "YOLO", "extra": [1, 2]})
SCORES = {"computer-vision": 0.9, "natural-language-processing": 0.05, "mlops": 0.03, "other": 0.02}
NOW = "2026-11-22T10:00:00.000+00:00"


def validate(name: str, record: dict[str, Any]) -> None:
    validator = jsonschema.Draft202012Validator(load_schema(name), format_checker=jsonschema.FormatChecker())
    validator.validate(record)


def test_tagged_and_review_records_keep_the_original_fields_and_match_their_schemas() -> None:
    tagged = tagged_record(EVENT, "computer-vision", 0.9, SCORES, "abc123", "k" * 16, NOW)
    review = review_record(EVENT, "computer-vision", 0.4, SCORES, "abc123", "k" * 16, NOW)
    validate("content-tagged", tagged)
    validate("content-review", review)
    assert tagged["extra"] == review["extra"] == [1, 2]
    assert review["reason"] == "low_confidence" and review["suggested_tag"] == "computer-vision"
    with pytest.raises(jsonschema.ValidationError):
        validate("content-tagged", {**tagged, "tag": "robotics"})


def test_duplicate_records_match_their_schema() -> None:
    validate("content-duplicates", duplicate_record(EVENT, "3", "k" * 16, "near", 0.93, NOW))
    with pytest.raises(jsonschema.ValidationError):
        validate("content-duplicates", duplicate_record(EVENT, "3", "k" * 16, "fuzzy", 0.93, NOW))


def test_dead_letters_keep_the_original_bytes() -> None:
    error = InvalidEvent("not_json", "the message is not JSON")
    text = dead_letter_record(b"{oops", error, "content", 2, 41, NOW)
    validate("content-deadletter", text)
    assert text["value"] == {
        "encoding": "utf-8", "data": "{oops", "truncated": False, "length": 5,
        "sha256": hashlib.sha256(b"{oops").hexdigest(),
    }
    binary = dead_letter_record(b"\xff\x00\xfe", InvalidEvent("not_utf8", "not UTF-8"), "content", 0, 1, NOW)
    validate("content-deadletter", binary)
    assert base64.b64decode(binary["value"]["data"]) == b"\xff\x00\xfe"


def test_dead_letters_truncate_huge_values_but_record_their_length_and_hash() -> None:
    raw = b"x" * (200 * 1024)
    record = dead_letter_record(raw, InvalidEvent("too_large", "big"), "content", 0, 9, NOW)
    validate("content-deadletter", record)
    assert record["value"]["truncated"] is True
    assert len(record["value"]["data"]) == 64 * 1024
    assert record["value"]["length"] == len(raw)
    assert record["value"]["sha256"] == hashlib.sha256(raw).hexdigest()
