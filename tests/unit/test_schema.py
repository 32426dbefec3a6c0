"""Input validation and record building: every malformed kind gets its reason and a detail naming the field,
valid events pass through untouched, and every record built from an accepted event can be written out."""

from __future__ import annotations

import base64
import hashlib
import json
import unicodedata
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream_app.delivery.publish import encode
from stream_app.errors import DEADLETTER_REASONS, InvalidEvent
from stream_app.schema import (
    BLANK_CHARACTERS,
    MAX_DEAD_LETTER_VALUE_BYTES,
    MAX_DESCRIPTION_CHARS,
    MAX_ID_CHARS,
    MAX_INTEGER_ID,
    MAX_MESSAGE_BYTES,
    MAX_NESTING,
    MAX_TITLE_CHARS,
    MIN_INTEGER_ID,
    SERVICE_FIELDS,
    ContentEvent,
    dead_letter_record,
    duplicate_record,
    id_control_character,
    is_blank,
    parse_event,
    review_record,
    tagged_record,
)

NOW = "2026-11-22T10:00:00.000+00:00"
SCORES = {"computer-vision": 0.9, "natural-language-processing": 0.05, "mlops": 0.03, "other": 0.02}


def nested(depth: int) -> bytes:
    """An event whose ``extra`` field makes the whole object ``depth`` levels deep."""
    inner = depth - 1
    return b'{"id": 1, "title": "x", "extra": ' + b"[" * inner + b"]" * inner + b"}"


def padded(size: int) -> bytes:
    """A valid event of exactly ``size`` bytes."""
    head, tail = b'{"id": 1, "title": "x", "pad": "', b'"}'
    return head + b"p" * (size - len(head) - len(tail)) + tail


# (raw message, reason, text the detail must contain: the field or what is wrong)
MALFORMED: list[tuple[bytes | None, str, str]] = [
    (None, "not_json", "no value"),
    (b"", "not_json", "empty"),
    (b" \r\n\t ", "not_json", "empty"),
    ("\u00a0".encode(), "not_json", "not JSON"),  # not JSON white space: not an empty message either
    (b"{not json", "not_json", "not JSON"),
    (b'{"id": 1, "title": "x"', "not_json", "not JSON"),
    (b'\xef\xbb\xbf{"id": 1, "title": "x"}', "not_json", "BOM"),
    (b"\xff\xfe{}", "not_utf8", "offset 0)"),
    (b'{"id": 1, "title": "caf\xe9"}', "not_utf8", "offset 23)"),
    (b'"a string"', "not_object", "is a string, not an object"),
    (b"[1, 2]", "not_object", "is an array"),
    (b"42", "not_object", "is a number"),
    (b"null", "not_object", "is null"),
    (b'{"title": "no id"}', "missing_field", "'id' is missing"),
    (b'{"id": 1}', "missing_field", "'title' is missing"),
    (b'{"id": null, "title": "x"}', "missing_field", "'id' is null"),
    (b'{"id": 1, "title": null}', "missing_field", "'title' is null"),
    (b'{"id": 1.5, "title": "x"}', "wrong_type", "'id'"),
    (b'{"id": 1.0, "title": "x"}', "wrong_type", "'id'"),
    (b'{"id": true, "title": "x"}', "wrong_type", "boolean"),
    (b'{"id": [1], "title": "x"}', "wrong_type", "'id'"),
    (b'{"id": {"n": 1}, "title": "x"}', "wrong_type", "not an object"),
    (b'{"id": 1, "title": 7}', "wrong_type", "'title'"),
    (b'{"id": 1, "title": ["x"]}', "wrong_type", "'title'"),
    (b'{"id": 1, "title": "x", "description": 3}', "wrong_type", "'description'"),
    (b'{"id": 1, "title": "x", "description": false}', "wrong_type", "'description'"),
    (b'{"id": 1, "title": "x", "url": {"a": 1}}', "wrong_type", "'url'"),
    (b'{"id": 1, "title": "x", "source": 1}', "wrong_type", "'source'"),
    (b'{"id": 1, "title": "x", "created_on": 1700000000}', "wrong_type", "'created_on'"),
    (b'{"id": "", "title": "x"}', "invalid_value", "'id'"),
    (b'{"id": "  ", "title": "x"}', "invalid_value", "'id'"),
    (b'{"id": 1, "title": ""}', "invalid_value", "'title'"),
    (b'{"id": 1, "title": " \\t\\n "}', "invalid_value", "'title'"),
    (b'{"id": 1, "title": "\\ufeff \\u00a0"}', "invalid_value", "'title'"),  # JavaScript's \\s takes U+FEFF
    (b'{"id": "\\ufeff", "title": "x"}', "invalid_value", "'id'"),
    (b'{"id": 1, "title": "\\u001c\\u0085"}', "invalid_value", "'title'"),  # Python's isspace takes these
    (b'{"id": 9223372036854775808, "title": "x"}', "invalid_value", "'id'"),
    (b'{"id": -9223372036854775809, "title": "x"}', "invalid_value", "'id'"),
    (b'{"id": 99999999999999999999999, "title": "x"}', "invalid_value", "'id'"),
    (b'{"id": 1, "title": "x", "n": 1' + b"0" * 5000 + b"}", "invalid_value", "number"),
    (b'{"id": 1, "title": "x", "score": NaN}', "invalid_value", "NaN"),
    (b'{"id": 1, "title": "x", "score": Infinity}', "invalid_value", "Infinity"),
    (b'{"id": 1, "title": "x", "extra": {"s": [-Infinity]}}', "invalid_value", "-Infinity"),
    (b'{"id": 1, "title": "x", "score": 1e400}', "invalid_value", "1e400"),
    (b'{"id": 1, "title": "x", "score": -2.5E+999}', "invalid_value", "out of range"),
    (b'{"id": 1, "title": "x", "title": "y"}', "invalid_value", "'title'"),
    (b'{"id": 1, "title": "x", "extra": {"a": 1, "a": 2}}', "invalid_value", "'a'"),
    (b'{"id": 1, "title": "\\ud800"}', "invalid_value", "surrogate"),
    (b'{"id": 1, "title": "x", "extra": {"\\uDFFF": 1}}', "invalid_value", "surrogate"),
    (b'{"id": "\\udc00\\ud800", "title": "x"}', "invalid_value", "surrogate"),
    # The review page sends an id back in a form: HTML and form encoding change these, so it could not be decided.
    (b'{"id": "cr\\rid", "title": "x"}', "invalid_value", "U+000D"),
    (b'{"id": "lf\\nid", "title": "x"}', "invalid_value", "U+000A"),
    (b'{"id": "nul\\u0000id", "title": "x"}', "invalid_value", "U+0000"),
    (b'{"id": "tab\\tid", "title": "x"}', "invalid_value", "U+0009"),
    (b'{"id": "del\\u007fid", "title": "x"}', "invalid_value", "U+007F"),
    (b'{"id": "nel\\u0085id", "title": "x"}', "invalid_value", "U+0085"),
    (b'{"id": "bidi\\u202eid", "title": "x"}', "invalid_value", "U+202E"),
    (b'{"id": "isolate\\u2066id", "title": "x"}', "invalid_value", "U+2066"),
    (nested(MAX_NESTING + 1), "invalid_value", "nested"),
    (b"[" * 100_000 + b"]" * 100_000, "invalid_value", "nested"),
    (b'{"a": ' * 30_000 + b"1" + b"}" * 30_000, "invalid_value", "nested"),
    (b'{"id": "' + b"i" * (MAX_ID_CHARS + 1) + b'", "title": "x"}', "too_large", "'id'"),
    (b'{"id": 1, "title": "' + b"t" * (MAX_TITLE_CHARS + 1) + b'"}', "too_large", "'title'"),
    (
        b'{"id": 1, "title": "x", "description": "' + b"d" * (MAX_DESCRIPTION_CHARS + 1) + b'"}',
        "too_large",
        "'description'",
    ),
    (padded(MAX_MESSAGE_BYTES + 1), "too_large", "bytes"),
    (b"\xff" * (MAX_MESSAGE_BYTES + 1), "too_large", "bytes"),  # refused on size before it is decoded
]


MALFORMED_IDS = [f"{number}-{reason}" for number, (_, reason, _) in enumerate(MALFORMED)]


@pytest.mark.parametrize(("raw", "reason", "mentions"), MALFORMED, ids=MALFORMED_IDS)
def test_each_malformed_kind_is_refused_with_its_reason_and_a_detail_naming_it(
    raw: bytes | None, reason: str, mentions: str
) -> None:
    with pytest.raises(InvalidEvent) as error:
        parse_event(raw)
    assert error.value.reason == reason
    assert mentions in error.value.detail


def test_blank_is_white_space_to_python_and_to_the_schemas_javascript_pattern() -> None:
    """A title or id the parser takes must match the output schemas' ``"pattern": "\\S"`` as a JSON Schema
    validator reads it, with ECMA-262's ``\\s`` (WhiteSpace and LineTerminator: tab, VT, FF, U+FEFF, every space
    separator, LF, CR, U+2028, U+2029), and as Python's ``re`` does (``str.isspace``)."""
    ecma = {"\t", "\x0b", "\x0c", "\ufeff", "\n", "\r", "\u2028", "\u2029"}
    ecma |= {chr(c) for c in range(0x110000) if unicodedata.category(chr(c)) == "Zs"}
    python = {chr(c) for c in range(0x110000) if chr(c).isspace()}
    assert set(BLANK_CHARACTERS) == ecma | python


def test_the_characters_no_id_may_hold_are_the_control_characters_and_the_bidi_controls() -> None:
    bidi = set(BIDI_CONTROLS)
    controls = {chr(c) for c in range(0x110000) if unicodedata.category(chr(c)) == "Cc"}
    refused = {chr(c) for c in range(0x110000) if id_control_character(f"a{chr(c)}b") is not None}
    assert refused == controls | bidi
    assert id_control_character("x\u202ey\rz") == "\u202e"  # the first is named


def test_every_dead_letter_reason_is_reachable() -> None:
    assert {reason for _, reason, _ in MALFORMED} == set(DEADLETTER_REASONS)


ACCEPTED_AT_THE_LIMITS: list[bytes] = [
    b'{"id": 1, "title": "' + b"t" * MAX_TITLE_CHARS + b'"}',
    b'{"id": 1, "title": "' + "é".encode() * MAX_TITLE_CHARS + b'"}',  # characters count, not bytes
    b'{"id": 1, "title": "x", "description": "' + b"d" * MAX_DESCRIPTION_CHARS + b'"}',
    b'{"id": ' + str(MAX_INTEGER_ID).encode() + b', "title": "x"}',
    b'{"id": ' + str(MIN_INTEGER_ID).encode() + b', "title": "x"}',
    b'{"id": 0, "title": "x", "description": null, "created_on": null, "source": null, "url": null}',
    b'{"id": " a ", "title": " x "}',
    b'{"id": "\xd7\xa9\xd7\x9c\xd7\x95\xd7\x9d \\u200f\\ufeff\\uffff", "title": "a\\tb\\r\\n\\u202ec\\u0000"}',
    nested(MAX_NESTING),
    # More containers than the nesting limit in all, none deep: the bracket count sends it to the depth scan.
    b'{"id": 1, "title": "x", "tags": [' + b", ".join([b'["a"]'] * (MAX_NESTING + 10)) + b"]}",
    # At the limit, with a container beside the deepest: the scan must not count siblings as depth.
    nested(MAX_NESTING)[:-1] + b', "more": [[], {}]}',
    padded(MAX_MESSAGE_BYTES),
    b'\n {"id": 1, "title": "x", "score": 1e308, "tiny": 1e-400, "n": 12345678901234567890123} \n',
    b'{"id": 1, "title": "x", "url": "C:\\\\udata"}',  # an escaped backslash, not a surrogate escape
]


@pytest.mark.parametrize("raw", ACCEPTED_AT_THE_LIMITS, ids=range(len(ACCEPTED_AT_THE_LIMITS)))
def test_events_at_the_limits_are_accepted_with_their_fields_untouched(raw: bytes) -> None:
    assert parse_event(raw).fields == json.loads(raw)


def test_escaped_surrogate_pairs_decode_to_the_character_they_spell() -> None:
    event = parse_event(b'{"id": "\\ud83d\\ude00", "title": "yolo \\uD83D\\uDE80"}')
    assert (event.id, event.title, event.key) == ("\N{GRINNING FACE}", "yolo \N{ROCKET}", "\N{GRINNING FACE}")


def write_out(record: dict[str, Any]) -> bytes:
    """Serialise a record as the worker does."""
    return encode(record)


def every_record(event: ContentEvent) -> list[dict[str, Any]]:
    """One record of each kind built from ``event``."""
    return [
        tagged_record(event, "computer-vision", 0.9, SCORES, "0123456789ab", "k" * 16, NOW),
        review_record(event, "mlops", 0.4, SCORES, "0123456789ab", "k" * 16, NOW),
        duplicate_record(event, "3", "k" * 16, "near", 0.93, NOW),
    ]


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise_anything_but_invalid_event(raw: bytes) -> None:
    try:
        parse_event(raw)
    except InvalidEvent:
        pass


ODD_TOKENS = ["NaN", "-Infinity", "1e400", "-2E999", "1.0", "9223372036854775808", '"\\ud800"', '"\\uDC00x"']
json_tokens = (
    st.sampled_from(["null", "true", "false", "0", '"x"', '" "', '"\\ud83d\\ude00"', *ODD_TOKENS])
    | st.integers().map(str)
    | st.floats(allow_nan=False, allow_infinity=False).map(repr)
    | st.text(max_size=10).map(json.dumps)
)
field_names = st.sampled_from(["id", "title", "description", "created_on", "source", "url", "extra"])


def json_object(pairs: list[tuple[str, str]]) -> str:
    """The text of a JSON object from (key, value text) pairs, in order, repeated keys kept."""
    return "{" + ",".join(f"{json.dumps(key)}:{value}" for key, value in pairs) + "}"


json_texts = st.recursive(
    json_tokens,
    lambda inner: (
        st.lists(inner, max_size=3).map(lambda items: "[" + ",".join(items) + "]")
        | st.lists(st.tuples(st.text(max_size=3) | field_names, inner), max_size=3).map(json_object)
    ),
    max_leaves=8,
)
"""JSON text, sometimes odd: literals and numbers no JSON encoder writes, lone surrogates, repeated keys."""


short_texts = st.text(min_size=1, max_size=5).map(json.dumps)
odd_events = st.builds(
    lambda event_id, title, others: json_object([("id", event_id), ("title", title), *others]),
    st.integers().map(str) | short_texts | json_tokens,
    short_texts | json_tokens,
    st.lists(st.tuples(field_names | st.text(max_size=3), json_texts), max_size=4),
)
"""Event-shaped JSON text: mostly usable ids and titles beside fields holding odd values."""


@given(odd_events)
def test_any_event_the_parser_accepts_can_be_written_out_as_every_record(text: str) -> None:
    try:
        event = parse_event(text.encode())
    except InvalidEvent:
        return
    for record in every_record(event):
        assert json.loads(write_out(record))["id"] == event.id


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-1000, 1000)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)
BIDI_CONTROLS = "".join(map(chr, (*range(0x202A, 0x202F), *range(0x2066, 0x206A))))
"""The bidi embeddings, overrides and isolates, which no id may hold."""
id_characters = st.characters(exclude_categories=["Cc", "Cs"], exclude_characters=BIDI_CONTROLS)
"""What a string id may hold: not a control character (Cc), nor a surrogate, which JSON cannot carry."""


valid_events = st.fixed_dictionaries(
    {
        "id": st.one_of(
            st.integers(MIN_INTEGER_ID, MAX_INTEGER_ID),
            st.text(id_characters, min_size=1, max_size=MAX_ID_CHARS).filter(lambda text: not is_blank(text)),
        ),
        "title": st.text(min_size=1, max_size=MAX_TITLE_CHARS).filter(lambda text: not is_blank(text)),
    },
    optional={
        "description": st.none() | st.text(max_size=200),
        "source": st.none() | st.text(max_size=20),
        "url": st.none() | st.text(max_size=40),
        "created_on": st.none() | st.text(max_size=20),
        "extra": json_values,
        "tag": st.text(max_size=10),
    },
)
"""Events the contract accepts, unknown fields included; shared with the contract tests."""


@given(valid_events, st.booleans())
def test_valid_events_round_trip_with_every_field_untouched(fields: dict[str, Any], ascii_only: bool) -> None:
    event = parse_event(json.dumps(fields, ensure_ascii=ascii_only).encode())
    assert event.fields == fields
    assert (event.id, event.title, event.key) == (fields["id"], fields["title"], str(fields["id"]))
    assert event.description == fields.get("description")


EVENT = parse_event(b'{"id": 7, "title": "YOLO", "extra": [1, 2], "tag": "robotics", "schema_version": 9}')


def test_tagged_and_review_records_keep_the_original_fields_and_add_the_verdict() -> None:
    before = dict(EVENT.fields)
    tagged = tagged_record(EVENT, "computer-vision", 0.9, SCORES, "0123456789ab", "k" * 16, NOW)
    review = review_record(EVENT, "computer-vision", 0.4, SCORES, "0123456789ab", "k" * 16, NOW)
    assert EVENT.fields == before  # building a record never changes the event
    for record in (tagged, review):
        assert record["id"] == 7 and record["title"] == "YOLO" and record["extra"] == [1, 2]
        assert record["scores"] == SCORES and record["model_version"] == "0123456789ab"
        assert record["dedupe_key"] == "k" * 16 and record["processed_at"] == NOW
        assert record["schema_version"] == 1  # the service's fields win over input fields of the same name
    assert (tagged["tag"], tagged["confidence"], tagged["tagged_by"]) == ("computer-vision", 0.9, "model")
    human = tagged_record(EVENT, "mlops", 1.0, SCORES, "v", "k", NOW, tagged_by="human")
    assert human["tagged_by"] == "human"
    assert (review["suggested_tag"], review["reason"]) == ("computer-vision", "low_confidence")
    assert review["confidence"] == 0.4 and "tagged_by" not in review
    assert "tag" not in review  # the input's "tag" is not passed through: a review record must not read as tagged


def test_input_fields_named_like_the_other_records_service_fields_are_not_passed_through() -> None:
    """A tagged record carrying an input ``suggested_tag`` or ``reason`` would read as a review record (the review
    board and downstream readers tell the two apart by them), and a review record carrying ``tag`` or ``tagged_by``
    as a tagged one."""
    event = parse_event(
        json.dumps(
            {"id": 8, "title": "YOLO", "suggested_tag": "mlops", "reason": "x", "tag": "other", "tagged_by": "human"}
        ).encode()
    )
    tagged = tagged_record(event, "computer-vision", 0.9, SCORES, "0123456789ab", "k" * 16, NOW)
    review = review_record(event, "computer-vision", 0.4, SCORES, "0123456789ab", "k" * 16, NOW)
    assert "suggested_tag" not in tagged and "reason" not in tagged
    assert (tagged["tag"], tagged["tagged_by"]) == ("computer-vision", "model")
    assert "tag" not in review and "tagged_by" not in review
    assert (review["suggested_tag"], review["reason"]) == ("computer-vision", "low_confidence")
    assert event.fields["suggested_tag"] == "mlops"  # the event itself is unchanged
    plain = parse_event(b'{"id": 9, "title": "YOLO"}')
    written = {
        *tagged_record(plain, "mlops", 0.9, SCORES, "v", "k", NOW),
        *review_record(plain, "mlops", 0.4, SCORES, "v", "k", NOW),
    }
    assert written - {"id", "title"} == SERVICE_FIELDS  # the constant names exactly what the two records write


def test_a_confidence_or_similarity_given_as_a_numpy_scalar_is_written_as_a_plain_number() -> None:
    confidence: Any = np.float32(0.9)
    tagged = tagged_record(EVENT, "computer-vision", confidence, SCORES, "v", "k", NOW)
    duplicate = duplicate_record(EVENT, "3", "k", "near", np.float64(0.912345), NOW)
    assert json.loads(write_out(tagged))["confidence"] == 0.9
    assert json.loads(write_out(duplicate))["similarity"] == 0.9123


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_a_confidence_or_similarity_that_is_not_a_finite_number_is_refused_not_written_as_null(bad: float) -> None:
    with pytest.raises(ValueError, match="not a finite number"):
        tagged_record(EVENT, "computer-vision", bad, SCORES, "v", "k", NOW)
    with pytest.raises(ValueError, match="not a finite number"):
        review_record(EVENT, "mlops", bad, SCORES, "v", "k", NOW)
    with pytest.raises(ValueError, match="not a finite number"):
        duplicate_record(EVENT, "3", "k", "near", bad, NOW)


output_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()  # past 64 bits too: an input id or extra field may hold one
    | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=12,
)


@given(st.dictionaries(st.text(max_size=8), output_values, max_size=6))
def test_records_are_written_as_compact_utf8_json_byte_for_byte_as_the_standard_library(
    record: dict[str, Any],
) -> None:
    assert encode(record) == json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()


@given(st.dictionaries(st.text(max_size=8), json_values, max_size=6))
def test_records_with_numbers_of_every_kind_read_back_as_they_were(record: dict[str, Any]) -> None:
    assert json.loads(encode(record)) == record


def test_a_lone_surrogate_cannot_be_written() -> None:
    with pytest.raises(UnicodeEncodeError):
        encode({"title": "\ud800"})


def test_duplicate_records_name_the_event_and_what_it_copies() -> None:
    record = duplicate_record(EVENT, "3", "k" * 16, "exact", 1.0, NOW)
    assert record == {
        "id": 7, "duplicate_of": "3", "dedupe_key": "k" * 16, "match": "exact", "similarity": 1.0,
        "title": "YOLO", "processed_at": NOW, "schema_version": 1,
    }  # fmt: skip


def value_of(raw: bytes | None) -> dict[str, Any]:
    """The ``value`` of the dead letter for ``raw``, after checking the rest of the record."""
    record = dead_letter_record(raw, InvalidEvent("not_json", "not JSON"), "content", 2, 41, NOW)
    assert (record["error"], record["detail"], record["received_at"]) == ("not_json", "not JSON", NOW)
    assert (record["topic"], record["partition"], record["offset"]) == ("content", 2, 41)
    value: dict[str, Any] = record["value"]
    return value


def test_dead_letters_keep_utf8_messages_as_text() -> None:
    assert value_of("{oops é".encode()) == {
        "encoding": "utf-8", "data": "{oops é", "truncated": False, "length": 8,
        "sha256": hashlib.sha256("{oops é".encode()).hexdigest(),
    }  # fmt: skip


def test_dead_letters_keep_other_bytes_as_base64() -> None:
    value = value_of(b"\xff\x00\xfe")
    assert value["encoding"] == "base64" and base64.b64decode(value["data"]) == b"\xff\x00\xfe"
    assert (value["truncated"], value["length"]) == (False, 3)


def test_dead_letters_of_a_null_value_are_empty() -> None:
    empty = {"encoding": "utf-8", "data": "", "truncated": False, "length": 0}
    assert value_of(None) == empty | {"sha256": hashlib.sha256(b"").hexdigest()}


@pytest.mark.parametrize("raw", [b"x" * (200 * 1024), b"\xff" * (MAX_DEAD_LETTER_VALUE_BYTES + 1)])
def test_dead_letters_truncate_huge_values_but_record_their_length_and_hash(raw: bytes) -> None:
    value = value_of(raw)
    kept = value["data"].encode() if value["encoding"] == "utf-8" else base64.b64decode(value["data"])
    assert kept == raw[:MAX_DEAD_LETTER_VALUE_BYTES]
    assert value["truncated"] is True
    assert (value["length"], value["sha256"]) == (len(raw), hashlib.sha256(raw).hexdigest())


def test_a_cut_through_a_multibyte_character_keeps_the_text_before_it() -> None:
    raw = ("x" * (MAX_DEAD_LETTER_VALUE_BYTES - 1) + "é" * 10).encode()
    value = value_of(raw)
    assert value["encoding"] == "utf-8"
    assert value["data"] == "x" * (MAX_DEAD_LETTER_VALUE_BYTES - 1)
    assert value["truncated"] is True and value["length"] == len(raw)


KAFKA_DEFAULT_RECORD_LIMIT = 1024 * 1024
"""Kafka's default ``message.max.bytes`` (broker) and ``max.request.size`` (producer)."""


@pytest.mark.parametrize("character", ["a", "\u4e2d", "\U0001f916", "\n"])
def test_an_event_at_the_size_cap_still_fits_every_record_the_worker_writes_for_it(character: str) -> None:

    from stream_app.delivery.publish import encode

    head = '{"id": 1, "title": "x", "pad": "'
    filler = json.dumps(character)[1:-1]
    count = (MAX_MESSAGE_BYTES - len(head) - 2) // len(filler.encode())
    raw = (head + filler * count + '"}').encode()
    assert MAX_MESSAGE_BYTES - 12 < len(raw) <= MAX_MESSAGE_BYTES
    event = parse_event(raw)
    assert len(encode(tagged_record(event, "mlops", 0.9, {"mlops": 0.9}, "v" * 40, "k" * 64, "now"))) < (
        KAFKA_DEFAULT_RECORD_LIMIT - 4096
    )


def test_a_whole_message_ending_mid_character_is_kept_whole_as_base64() -> None:
    """Only a cut made by the 64 KiB limit may drop the bytes of a split character; a message that itself ends
    in one keeps every byte, so it is not text."""
    raw = b'{"title": "caf\xc3'  # the first byte of "é" (0xC3 0xA9), and no more
    assert value_of(raw) == {
        "encoding": "base64", "data": base64.b64encode(raw).decode(), "truncated": False, "length": 15,
        "sha256": hashlib.sha256(raw).hexdigest(),
    }  # fmt: skip
