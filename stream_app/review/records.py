"""The records the review board reads from the review, tagged and feedback topics: each parsed
(:func:`read_record`) and its fields checked (``checked_*_id``), so that a malformed one raises
:class:`~stream_app.errors.InvalidRecord` and changes nothing."""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from collections.abc import Mapping
from typing import Any, Final, cast

import msgspec

from stream_app import APPROVED_TAGS
from stream_app.errors import InvalidRecord
from stream_app.metric_labels import VERDICTS
from stream_app.review.labels import decision_time
from stream_app.schema import (
    MAX_DESCRIPTION_CHARS,
    MAX_ID_CHARS,
    MAX_INTEGER_ID,
    MAX_TITLE_CHARS,
    MIN_INTEGER_ID,
    OPTIONAL_TEXT_FIELDS,
    has_lone_surrogate,
    id_control_character,
    is_blank,
)

MAX_REVIEWER_CHARS = 100
MAX_VERSION_CHARS = 64
"""Longest model version a record may name: it becomes a metric label."""
TAGGED_BY = ("model", "human")


def read_record(raw: bytes | None) -> dict[str, Any]:
    """The JSON object of a review, tagged or feedback record; raises :class:`InvalidRecord`."""
    if raw is None:
        raise InvalidRecord("tombstone", "the record has no value")
    try:
        value = _DECODER.decode(raw)  # UTF-8 only, and it refuses unpaired surrogate escapes
    except (ValueError, RecursionError):  # msgspec.DecodeError is a ValueError
        value = _standard_parse(raw)
    if not isinstance(value, dict):
        raise InvalidRecord("not_object", f"a JSON {type(value).__name__}")
    return value


_DECODER: Final = msgspec.json.Decoder()
"""Reads most records in a quarter of ``json.loads``'s time, with the same result: every worker reads every record
the others publish."""


def _standard_parse(raw: bytes) -> Any:
    """What msgspec refuses, read by the standard library as every record was before: it takes NaN, numbers past a
    float's range, unpaired surrogate escapes and UTF-16 or UTF-32 text, and refuses the rest. An object holding an
    unpaired surrogate is refused here: no UTF-8 writer takes such text, so it would fail later, in the labelled
    store or in a decision's records."""
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError is a ValueError
        raise InvalidRecord("not_json", type(error).__name__) from None
    if isinstance(value, dict) and has_lone_surrogate(value):
        raise InvalidRecord("invalid_value", "the JSON holds an unpaired surrogate escape such as \\ud800")
    return value


def _checked_prediction_id(record: Mapping[str, Any], tag_field: str) -> str:
    """The item id of a record of a prediction, with its tag (in ``tag_field``), model version, dedupe key, title,
    description and the input's other text fields checked; raises :class:`InvalidRecord`. A decision publishes
    these fields to the tagged topic, where they are text or null, as in the input; the title and description
    are no longer than the input's, as the board keeps them and the page shows them. Its id holds no control
    character (:data:`~stream_app.schema.ID_CONTROL_CHARACTERS`), as the input's."""
    item_id = _item_id(record)
    if id_control_character(item_id) is not None:  # as the input's: the tagged topic's contract refuses them too
        raise InvalidRecord("invalid_value", "id holds a control character")
    _tag(record, tag_field)
    _version(record)
    if not _text(record, "dedupe_key"):
        raise InvalidRecord("invalid_value", "dedupe_key is empty")
    _title(record)
    for name in ("description", *OPTIONAL_TEXT_FIELDS):
        _optional_text(record, name)
    description = record.get("description")
    if description is not None and len(description) > MAX_DESCRIPTION_CHARS:
        raise InvalidRecord("invalid_value", f"description is longer than {MAX_DESCRIPTION_CHARS} characters")
    return item_id


def checked_review_id(record: Mapping[str, Any]) -> str:
    """The item id of a review record with what the page and a decision need; raises :class:`InvalidRecord`.
    Its id holds no control character: the page sends the id back in a form, which changes line breaks and NUL,
    so such an item could never be decided."""
    item_id = _checked_prediction_id(record, "suggested_tag")
    confidence = _field(record, "confidence", (int, float))
    if isinstance(confidence, bool) or not (math.isfinite(confidence) and 0.0 <= confidence <= 1.0):
        raise InvalidRecord("invalid_value", "confidence is not a number between 0 and 1")
    return item_id


def checked_tagged_id(record: Mapping[str, Any]) -> str:
    """The item id of a well-formed tagged record; raises :class:`InvalidRecord`."""
    item_id = _checked_prediction_id(record, "tag")
    if _field(record, "tagged_by", str) not in TAGGED_BY:
        raise InvalidRecord("invalid_value", f"tagged_by is not one of {', '.join(TAGGED_BY)}")
    return item_id


def checked_feedback_id(record: Mapping[str, Any]) -> str:
    """The item id of a well-formed feedback record (a person's decision); raises :class:`InvalidRecord`."""
    item_id = _item_id(record)
    _tag(record, "tag")
    if _field(record, "verdict", str) not in VERDICTS:
        raise InvalidRecord("invalid_value", f"verdict is not one of {', '.join(VERDICTS)}")
    if len(_text(record, "decided_at")) > MAX_VERSION_CHARS:
        raise InvalidRecord("invalid_value", "decided_at is too long")
    if decision_time(record["decided_at"]) is None:  # readers keep the decision made last, by this time
        raise InvalidRecord("invalid_value", "decided_at is not an ISO-8601 time in UTC")
    if not 0 < len(_text(record, "reviewer").strip()) <= MAX_REVIEWER_CHARS:  # decisions are people's
        raise InvalidRecord("invalid_value", f"reviewer is not 1 to {MAX_REVIEWER_CHARS} characters")
    return item_id


SIGNED_FEEDBACK_FIELDS: Final = ("id", "tag", "verdict", "reviewer", "decided_at", "model_version")
"""What a feedback record's ``signature`` covers: everything a label and a judgement are made of."""


def feedback_signature(secret: bytes, record: Mapping[str, Any]) -> str:
    """The HMAC-SHA256, under the review session secret, of a feedback record's :data:`SIGNED_FEEDBACK_FIELDS`, in
    hex: the worker that signed the reviewer in puts it in the record it publishes."""
    fields = json.dumps([record.get(name) for name in SIGNED_FEEDBACK_FIELDS], separators=(",", ":"))
    return hmac.new(secret, b"feedback|" + fields.encode(), hashlib.sha256).hexdigest()


def checked_signed_feedback_id(secret: bytes, record: Mapping[str, Any]) -> str:
    """:func:`checked_feedback_id`, and the record's ``signature`` checked under ``secret``; raises
    :class:`InvalidRecord`. Whoever may write to the feedback topic but does not hold the secret cannot add labels
    or judge a model in a reviewer's name."""
    item_id = checked_feedback_id(record)
    signature = record.get("signature")
    # compare_digest takes ASCII text only.
    if (
        not isinstance(signature, str)
        or not signature.isascii()
        or not hmac.compare_digest(signature, feedback_signature(secret, record))
    ):
        raise InvalidRecord("invalid_value", "a decision not signed with this worker's session secret")
    return item_id


def _field(record: Mapping[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    if name not in record:
        raise InvalidRecord("missing_field", name)
    value = record[name]
    if not isinstance(value, kind):
        raise InvalidRecord("wrong_type", f"{name} is a {type(value).__name__}")
    return value


def _text(record: Mapping[str, Any], name: str) -> str:
    return cast(str, _field(record, name, str))


def _optional_text(record: Mapping[str, Any], name: str) -> None:
    if record.get(name) is not None and not isinstance(record[name], str):
        raise InvalidRecord("wrong_type", f"{name} is a {type(record[name]).__name__}")


def _item_id(record: Mapping[str, Any]) -> str:
    value = _field(record, "id", (str, int))
    if isinstance(value, bool):
        raise InvalidRecord("wrong_type", "id is a bool")
    if isinstance(value, int) and not MIN_INTEGER_ID <= value <= MAX_INTEGER_ID:
        raise InvalidRecord("invalid_value", "id is an integer outside the signed 64-bit range")
    item_id = str(value)
    if not 0 < len(item_id) <= MAX_ID_CHARS or is_blank(item_id):
        raise InvalidRecord("invalid_value", f"id is blank or not 1 to {MAX_ID_CHARS} characters")
    return item_id


def _title(record: Mapping[str, Any]) -> None:
    """A title is what a label trains on: required, not blank and not longer than an input's, as the output
    contracts say."""
    if record.get("title") is None:
        raise InvalidRecord("missing_field", "title")
    title = _text(record, "title")
    if is_blank(title):
        raise InvalidRecord("invalid_value", "title is blank")
    if len(title) > MAX_TITLE_CHARS:
        raise InvalidRecord("invalid_value", f"title is longer than {MAX_TITLE_CHARS} characters")


def _tag(record: Mapping[str, Any], name: str) -> str:
    tag = _text(record, name)
    if tag not in APPROVED_TAGS:
        raise InvalidRecord("invalid_value", f"{name} is not an approved tag")
    return tag


def _version(record: Mapping[str, Any]) -> str:
    version = _text(record, "model_version")
    if not 0 < len(version) <= MAX_VERSION_CHARS:
        raise InvalidRecord("invalid_value", f"model_version is not 1 to {MAX_VERSION_CHARS} characters")
    return version
