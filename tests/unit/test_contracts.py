"""The JSON Schemas in ``schemas/`` state the code's contracts: the input schema agrees with ``parse_event``,
every record a builder makes validates against its topic's schema, and enums and limits match the code."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream_app import APPROVED_TAGS
from stream_app.errors import DEADLETTER_REASONS, InvalidEvent
from stream_app.pipeline import utc_iso
from stream_app.review.records import checked_review_id, checked_tagged_id
from stream_app.schema import (
    ID_CONTROL_CHARACTERS,
    MAX_DEAD_LETTER_VALUE_BYTES,
    MAX_DESCRIPTION_CHARS,
    MAX_ID_CHARS,
    MAX_INTEGER_ID,
    MAX_MESSAGE_BYTES,
    MAX_NESTING,
    MAX_TITLE_CHARS,
    MIN_INTEGER_ID,
    OUTPUT_SCHEMA_NAMES,
    SCHEMA_NAMES,
    SCHEMA_VERSION,
    SCHEMAS_DIR,
    dead_letter_record,
    duplicate_record,
    load_schema,
    parse_event,
    review_record,
    tagged_record,
)
from tests.unit.test_schema import valid_events

RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)")
FORMATS = jsonschema.FormatChecker()


def is_utc_date_time(value: object) -> bool:
    """An RFC 3339 date-time in UTC (jsonschema's own check needs a package the project does not install)."""
    if not isinstance(value, str):
        return True
    return bool(RFC3339.fullmatch(value)) and dt.datetime.fromisoformat(value).utcoffset() == dt.timedelta(0)


FORMATS.checks("date-time", raises=ValueError)(is_utc_date_time)


def validator(name: str) -> jsonschema.Draft202012Validator:
    """A validator for the named schema that also checks date-times."""
    return jsonschema.Draft202012Validator(load_schema(name), format_checker=FORMATS)


def parser_accepts(value: Any) -> bool:
    """Whether ``parse_event`` accepts ``value`` written as JSON."""
    try:
        parse_event(json.dumps(value).encode())
    except InvalidEvent:
        return False
    return True


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_every_schema_is_a_valid_draft_2020_12_schema(name: str) -> None:
    schema = load_schema(name)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


def test_the_schemas_folder_holds_exactly_the_named_schemas() -> None:
    assert sorted(path.stem for path in Path(SCHEMAS_DIR).glob("*.json")) == sorted(SCHEMA_NAMES)


def test_enums_and_limits_are_the_codes_own() -> None:
    content, tagged = load_schema("content"), load_schema("content-tagged")
    review = load_schema("content-review")
    assert tagged["properties"]["tag"]["enum"] == list(APPROVED_TAGS)
    assert review["properties"]["suggested_tag"]["enum"] == list(APPROVED_TAGS)
    for scores in (tagged["properties"]["scores"], review["properties"]["scores"]):
        assert scores["required"] == scores["propertyNames"]["enum"] == list(APPROVED_TAGS)
    assert load_schema("content-deadletter")["properties"]["error"]["enum"] == list(DEADLETTER_REASONS)
    for name in OUTPUT_SCHEMA_NAMES:
        assert load_schema(name)["properties"]["schema_version"] == {"const": SCHEMA_VERSION}
    fields = content["properties"]
    assert fields["title"]["maxLength"] == MAX_TITLE_CHARS
    assert fields["description"]["maxLength"] == MAX_DESCRIPTION_CHARS
    integer_id = next(branch for branch in fields["id"]["oneOf"] if branch["type"] == "integer")
    string_id = next(branch for branch in fields["id"]["oneOf"] if branch["type"] == "string")
    assert string_id["maxLength"] == MAX_ID_CHARS
    assert string_id["not"] == {"pattern": f"[{ID_CONTROL_CHARACTERS}]"}
    assert (integer_id["minimum"], integer_id["maximum"]) == (MIN_INTEGER_ID, MAX_INTEGER_ID)
    for output in (tagged, review):  # records that carry the event promise what the input schema does
        assert {name: output["properties"][name] for name in fields} == fields


LONG_TITLE, TOO_LONG_TITLE = "t" * MAX_TITLE_CHARS, "t" * (MAX_TITLE_CHARS + 1)
# (JSON value, accepted): the parser and content.json must both give this verdict.
AGREED: list[tuple[Any, bool]] = [
    ({"id": 1, "title": "YOLO"}, True),
    ({"id": "a-1", "title": "x", "description": None, "created_on": None, "source": None, "url": None}, True),
    ({"id": 1, "title": "x", "description": "d", "created_on": "2020-02", "source": "s", "url": "u"}, True),
    ({"id": 1, "title": "x", "extra": {"nested": [1, 2.5, None]}, "tag": "anything", "score": 0.5}, True),
    ({"id": -5, "title": " x "}, True),
    ({"id": MAX_INTEGER_ID, "title": "x"}, True),
    ({"id": MIN_INTEGER_ID, "title": "x"}, True),
    ({"id": 1, "title": LONG_TITLE, "description": "d" * MAX_DESCRIPTION_CHARS}, True),
    ({"id": 1, "title": "\u200b"}, True),  # a zero-width space is not whitespace
    ({"id": "\u05e9 \u200f\ufeffx", "title": "a\tb\r\n\u202ec\u0000"}, True),  # controls in a title are text
    ({"id": MAX_INTEGER_ID + 1, "title": "x"}, False),
    ({"id": MIN_INTEGER_ID - 1, "title": "x"}, False),
    ({"id": 1, "title": TOO_LONG_TITLE}, False),
    ({"id": 1, "title": "x", "description": "d" * (MAX_DESCRIPTION_CHARS + 1)}, False),
    ({"id": 1, "title": ""}, False),
    ({"id": 1, "title": " \t\n"}, False),
    ({"id": 1, "title": "\u00a0\u3000"}, False),  # no-break and ideographic spaces are whitespace
    ({"id": "", "title": "x"}, False),
    ({"id": " ", "title": "x"}, False),
    *[({"id": f"a{control}b", "title": "x"}, False) for control in "\r\n\x00\t\x7f\x85\u202a\u202e\u2066\u2069"],
    ({"id": True, "title": "x"}, False),
    ({"id": 1.5, "title": "x"}, False),
    ({"id": [1], "title": "x"}, False),
    ({"id": {}, "title": "x"}, False),
    ({"id": None, "title": "x"}, False),
    ({"title": "x"}, False),
    ({"id": 1}, False),
    ({"id": 1, "title": None}, False),
    ({"id": 1, "title": 1}, False),
    ({"id": 1, "title": ["x"]}, False),
    ({"id": 1, "title": "x", "description": 1}, False),
    ({"id": 1, "title": "x", "created_on": {}}, False),
    ({"id": 1, "title": "x", "source": False}, False),
    ({"id": 1, "title": "x", "url": ["u"]}, False),
    ([{"id": 1, "title": "x"}], False),
    ("x", False),
    (1, False),
    (None, False),
]


def stated(pattern: str, text: str) -> int:
    """The number ``pattern`` (one group of digits) finds in ``text``."""
    found = re.search(pattern, text)
    assert found is not None, (pattern, text)
    return int(found[1])


def test_the_limits_the_contracts_state_in_words_are_the_codes() -> None:
    """What JSON Schema cannot state, the schemas and the README say in words; producers size their messages by
    them, so the code's limits must be those words."""
    content = load_schema("content")["$comment"]
    readme = (SCHEMAS_DIR.parent / "README.md").read_text()
    message_kib = stated(r"messages over (\d+) KiB", content)
    assert message_kib * 1024 == MAX_MESSAGE_BYTES
    assert f"larger than {message_kib} KiB: dead letter `too_large`" in readme
    assert stated(r"nesting deeper than (\d+) levels", content) == MAX_NESTING
    kept_kib = stated(
        r"its first (\d+) KiB are kept", load_schema("content-deadletter")["properties"]["value"]["description"]
    )
    assert kept_kib * 1024 == MAX_DEAD_LETTER_VALUE_BYTES
    assert f"truncated past {kept_kib} KiB" in readme


@pytest.mark.parametrize(("value", "accepted"), AGREED, ids=range(len(AGREED)))
def test_the_input_schema_and_the_parser_agree(value: Any, accepted: bool) -> None:
    assert parser_accepts(value) is accepted
    assert validator("content").is_valid(value) is accepted


# JSON texts the parser refuses for rules of the text itself, which JSON Schema cannot state (content.json
# says so in its $comment): json.loads, which the schema side has to use, reads them without complaint.
DECODER_RULES = [
    b'{"id": 1, "title": "x", "score": NaN}',
    b'{"id": 1, "title": "x", "score": 1e400}',
    b'{"id": 1, "title": "x", "title": "y"}',
    b'{"id": 1, "title": "\\ud800"}',
    b'{"id": 1, "title": "x", "extra": ' + b"[" * 70 + b"]" * 70 + b"}",
]


@pytest.mark.parametrize("raw", DECODER_RULES, ids=range(len(DECODER_RULES)))
def test_rules_of_the_json_text_are_the_parsers_alone(raw: bytes) -> None:
    with pytest.raises(InvalidEvent) as error:
        parse_event(raw)
    assert error.value.reason == "invalid_value"
    assert validator("content").is_valid(json.loads(raw))


def test_an_integer_valued_decimal_id_is_the_parsers_alone_to_refuse() -> None:
    """JSON Schema counts 1.0 as an integer; the parser refuses it, as ``1`` and ``1.0`` would share a key."""
    assert not parser_accepts({"id": 1.0, "title": "x"})
    assert validator("content").is_valid({"id": 1.0, "title": "x"})


MISSING = "<missing>"
EDGE_VALUES: list[Any] = [
    *(MIN_INTEGER_ID - 1, MIN_INTEGER_ID, MAX_INTEGER_ID, MAX_INTEGER_ID + 1, 2**70, 0, -1),
    *(1.5, -0.25, 1e300, True, False, None, [], [1], {}, {"a": None}, MISSING),
    *("", " ", "\t\n", "\u3000", "x", " x ", "a\rb", "a\x00b", "a\u202eb", "a\u2069b"),
    *("i" * MAX_ID_CHARS, "i" * (MAX_ID_CHARS + 1)),
    *("t" * (MAX_TITLE_CHARS - 1), "t" * MAX_TITLE_CHARS, "t" * (MAX_TITLE_CHARS + 1)),
    *("d" * MAX_DESCRIPTION_CHARS, "d" * (MAX_DESCRIPTION_CHARS + 1)),
]
"""Values at and across every limit, of every JSON type; ``MISSING`` removes the field."""
FIELD_NAMES = ["id", "title", "description", "created_on", "source", "url", "extra"]


def changed(fields: dict[str, Any], changes: list[tuple[str, Any]]) -> dict[str, Any]:
    """``fields`` with each (name, value) change applied."""
    result = dict(fields)
    for name, value in changes:
        result[name] = value
        if value == MISSING:
            del result[name]
    return result


def test_the_input_schema_and_the_parser_agree_on_every_field_at_every_edge() -> None:
    base = {"id": 1, "title": "x", "description": "d", "created_on": "c", "source": "s", "url": "u"}
    verdicts = {
        f"{name} = EDGE_VALUES[{index}]": (parser_accepts(event), validator("content").is_valid(event))
        for name in FIELD_NAMES
        for index, value in enumerate(EDGE_VALUES)
        for event in [changed(base, [(name, value)])]
    }
    assert {key: verdict for key, verdict in verdicts.items() if verdict[0] != verdict[1]} == {}
    assert {verdict for verdict, _ in verdicts.values()} == {True, False}


edge_change = st.tuples(st.sampled_from(FIELD_NAMES), st.sampled_from(EDGE_VALUES))
edge_changes = st.lists(edge_change, min_size=1, max_size=3)
edge_events = st.builds(changed, valid_events, edge_changes)
"""Valid events with a few fields changed to an edge value: about half stay valid."""


@given(edge_events)
def test_the_input_schema_and_the_parser_agree_on_any_event_shaped_value(value: dict[str, Any]) -> None:
    assert parser_accepts(value) == validator("content").is_valid(value)


probabilities = st.floats(0.0, 1.0)
score_sets = st.fixed_dictionaries({tag: probabilities for tag in APPROVED_TAGS})
times = st.floats(0.0, 4e9).map(utc_iso)
versions = st.text("0123456789abcdef", min_size=12, max_size=12)
keys = st.text(min_size=1, max_size=24)


@given(valid_events, st.sampled_from(APPROVED_TAGS), probabilities, score_sets, versions, keys, times)
def test_tagged_and_review_records_match_their_schemas_and_pass_the_review_boards_checks(
    fields: dict[str, Any],
    tag: str,
    confidence: float,
    scores: dict[str, float],
    version: str,
    key: str,
    at: str,
) -> None:
    event = parse_event(json.dumps(fields).encode())
    validator("content-tagged").validate(tagged_record(event, tag, confidence, scores, version, key, at))
    human = tagged_record(event, tag, confidence, scores, version, key, at, tagged_by="human")
    validator("content-tagged").validate(human)
    validator("content-review").validate(review_record(event, tag, confidence, scores, version, key, at))
    # The board takes this worker's own records without checking them again (ReviewBoard.on_tagged's ``own``).
    assert checked_tagged_id(tagged_record(event, tag, confidence, scores, version, key, at)) == str(event.id)
    assert checked_review_id(review_record(event, tag, confidence, scores, version, key, at)) == str(event.id)


@given(valid_events, keys, keys, st.sampled_from(["exact", "near"]), probabilities, times)
def test_duplicate_records_match_their_schema(
    fields: dict[str, Any], duplicate_of: str, key: str, match: str, similarity: float, at: str
) -> None:
    event = parse_event(json.dumps(fields).encode())
    record = duplicate_record(event, duplicate_of, key, match, similarity, at)
    validator("content-duplicates").validate(record)


@given(
    st.none() | st.binary(max_size=200) | st.text(max_size=200).map(str.encode),
    st.sampled_from(DEADLETTER_REASONS),
    st.integers(0, 2**31 - 1),
    st.integers(0, 2**63 - 1),
    times,
)
def test_dead_letter_records_match_their_schema(
    raw: bytes | None, reason: str, partition: int, offset: int, at: str
) -> None:
    record = dead_letter_record(raw, InvalidEvent(reason, "a detail"), "content", partition, offset, at)
    validator("content-deadletter").validate(record)


def test_the_workers_timestamps_are_utc_date_times() -> None:
    assert is_utc_date_time(utc_iso(dt.datetime(2026, 11, 22, 10, 0, tzinfo=dt.UTC).timestamp()))
    assert not is_utc_date_time("2026-11-22 10:00:00")  # the checker is not a no-op
    assert not is_utc_date_time("2026-11-22T10:00:00+02:00")


EVENT = parse_event(b'{"id": 7, "title": "YOLO"}')
SCORES = dict.fromkeys(APPROVED_TAGS, 0.25)
NOW = "2026-11-22T10:00:00.000+00:00"
GOOD: dict[str, dict[str, Any]] = {
    "content-tagged": tagged_record(EVENT, "mlops", 0.9, SCORES, "0123456789ab", "key", NOW),
    "content-review": review_record(EVENT, "mlops", 0.4, SCORES, "0123456789ab", "key", NOW),
    "content-duplicates": duplicate_record(EVENT, "3", "key", "near", 0.9, NOW),
    "content-deadletter": dead_letter_record(b"{", InvalidEvent("not_json", "bad"), "content", 0, 1, NOW),
}
# (schema, changes to a good record) that break the contract; None removes the field.
OFF_CONTRACT: list[tuple[str, dict[str, Any]]] = [
    ("content-tagged", {"tag": "robotics"}),
    ("content-tagged", {"tag": None}),
    ("content-tagged", {"tagged_by": "robot"}),
    ("content-tagged", {"confidence": 1.5}),
    ("content-tagged", {"scores": {"mlops": 1.0}}),
    ("content-tagged", {"scores": SCORES | {"robotics": 0.0}}),
    ("content-tagged", {"schema_version": 2}),
    ("content-tagged", {"processed_at": "2026-11-22T12:00:00+02:00"}),
    ("content-tagged", {"title": ""}),
    ("content-review", {"suggested_tag": "robotics"}),
    ("content-review", {"reason": "unsure"}),
    ("content-review", {"model_version": ""}),
    ("content-duplicates", {"match": "fuzzy"}),
    ("content-duplicates", {"similarity": -0.1}),
    ("content-duplicates", {"duplicate_of": None}),
    ("content-duplicates", {"surplus": 1}),
    ("content-deadletter", {"error": "oops"}),
    ("content-deadletter", {"offset": -1}),
    ("content-deadletter", {"received_at": "yesterday"}),
    ("content-deadletter", {"value": GOOD["content-deadletter"]["value"] | {"encoding": "latin-1"}}),
    ("content-deadletter", {"value": GOOD["content-deadletter"]["value"] | {"sha256": "abc"}}),
]


@pytest.mark.parametrize("name", OUTPUT_SCHEMA_NAMES)
def test_the_good_records_used_below_match_their_schemas(name: str) -> None:
    validator(name).validate(GOOD[name])


OFF_CONTRACT_IDS = [f"{name}-{next(iter(changes))}" for name, changes in OFF_CONTRACT]


@pytest.mark.parametrize(("name", "changes"), OFF_CONTRACT, ids=OFF_CONTRACT_IDS)
def test_records_off_the_contract_are_refused(name: str, changes: dict[str, Any]) -> None:
    record = {key: value for key, value in (GOOD[name] | changes).items() if value is not None}
    assert not validator(name).is_valid(record)


def test_load_schema_names_the_schemas_it_has_and_hands_out_copies() -> None:
    with pytest.raises(ValueError, match="content-tagged"):
        load_schema("content-taged")
    load_schema("content")["properties"].clear()
    assert "title" in load_schema("content")["properties"]
