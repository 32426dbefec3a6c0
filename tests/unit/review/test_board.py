"""Human review without Kafka: which items wait, how a decision is validated and what it publishes, how
feedback is judged against the model, the page's escaping, and the labelled store's latest-wins reading."""

from __future__ import annotations

import gc
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream_app import APPROVED_TAGS
from stream_app.errors import InvalidDecision, InvalidRecord
from stream_app.review.board import PublishedRecords, ReviewBoard, decide
from stream_app.review.labels import LabelStore, read_labels
from stream_app.review.markup import ItemText, render_page
from stream_app.review.records import read_record
from stream_app.schema import MAX_DESCRIPTION_CHARS, MAX_TITLE_CHARS, has_lone_surrogate, load_schema

NOW = "2026-11-23T00:00:00.000+00:00"


def review_record(item_id: str, suggested: str = "mlops", title: str = "A title") -> dict[str, Any]:
    return {
        "id": item_id, "title": title, "description": "Some words.", "suggested_tag": suggested,
        "confidence": 0.41, "scores": dict.fromkeys(APPROVED_TAGS, 0.25), "model_version": "v1",
        "reason": "low_confidence", "dedupe_key": "0123456789abcdef", "processed_at": NOW, "schema_version": 1,
    }  # fmt: skip


def tagged_record(item_id: str, tag: str = "computer-vision") -> dict[str, Any]:
    return {
        "id": item_id, "title": "Tagged title", "tag": tag, "confidence": 0.93,
        "scores": dict.fromkeys(APPROVED_TAGS, 0.25), "model_version": "v1", "tagged_by": "model",
        "dedupe_key": "fedcba9876543210", "processed_at": NOW, "schema_version": 1,
    }  # fmt: skip


def test_an_item_waits_from_its_review_record_until_a_decision_names_it() -> None:
    board = ReviewBoard(recent_limit=10)
    board.on_review(review_record("a"))
    board.on_review(review_record("b"))
    assert list(board.waiting) == ["a", "b"]
    board.on_feedback({"id": "a", "tag": "mlops", "verdict": "accepted", "reviewer": "r", "decided_at": NOW})
    assert list(board.waiting) == ["b"]


def test_accepting_and_correcting_publish_feedback_and_a_human_tagged_record() -> None:
    board = ReviewBoard(recent_limit=10)
    board.on_review(review_record("a", suggested="mlops"))
    board.on_review(review_record("b", suggested="mlops"))
    accepted, tagged = decide(board, {"id": "a", "tag": "mlops", "reviewer": "mallory"}, NOW, "ann")
    corrected, _ = decide(board, {"id": "b", "tag": "other"}, NOW, "bob")
    assert accepted == {"id": "a", "tag": "mlops", "verdict": "accepted", "reviewer": "ann", "decided_at": NOW,
                        "model_version": "v1"}  # fmt: skip
    assert corrected["verdict"] == "corrected" and corrected["tag"] == "other" and corrected["reviewer"] == "bob"
    jsonschema.validate(tagged, load_schema("content-tagged"))
    assert tagged["tagged_by"] == "human" and tagged["tag"] == "mlops" and tagged["model_version"] == "v1"


def test_a_waiting_item_keeps_its_whole_text_and_what_a_decision_needs_but_not_its_scores() -> None:
    board = ReviewBoard(recent_limit=10)
    record = {**review_record("a", title="Ünïcode title"), "description": "Long words. " * 500, "url": "https://x.org"}
    board.on_review(record)
    kept = board.waiting_record("a")
    assert kept is not None and "scores" not in kept and "processed_at" not in kept
    assert {name: kept[name] for name in ("title", "description", "url", "confidence")} == {
        name: record[name] for name in ("title", "description", "url", "confidence")
    }
    _, tagged = decide(board, {"id": "a", "tag": "other"}, NOW, "ann")
    assert tagged["description"] == record["description"] and tagged["url"] == record["url"]
    assert tagged["dedupe_key"] == record["dedupe_key"]


@pytest.mark.parametrize(
    ("form", "reviewer", "reason"),
    [
        ({"id": "a", "tag": "robotics"}, "ann", "tag must be one of"),
        ({"id": "a", "tag": "<script>"}, "ann", "tag must be one of"),
        ({"id": "a", "tag": "mlops"}, "", "reviewer"),
        ({"id": "a", "tag": "mlops"}, "x" * 101, "reviewer"),
        ({"id": "zzz", "tag": "mlops"}, "ann", "no item"),
        ({"id": "a", "tag": "mlops", "action": "delete"}, "ann", "action"),
        ({"id": "t", "tag": "computer-vision", "action": "report"}, "ann", "already tagged"),
        ({"id": "nope", "tag": "mlops", "action": "report"}, "ann", "no tagged item"),
    ],
)
def test_a_bad_decision_is_refused_with_its_reason(form: dict[str, str], reviewer: str, reason: str) -> None:
    board = ReviewBoard(recent_limit=10)
    board.on_review(review_record("a"))
    board.on_tagged(tagged_record("t", tag="computer-vision"))
    with pytest.raises(InvalidDecision, match=reason):
        decide(board, form, NOW, reviewer)


def test_ids_with_spaces_around_them_are_each_decided_as_themselves() -> None:
    """Input ids may have spaces around them: "42" and " 42" are two items, and "7 " can be decided at all."""
    board = ReviewBoard(recent_limit=10)
    for item_id in ("42", " 42", "7 "):
        board.on_review(review_record(item_id))
    for item_id in (" 42", "7 ", "42"):
        feedback, tagged = decide(board, {"id": item_id, "tag": "other"}, NOW, "ann")
        assert feedback["id"] == tagged["id"] == item_id
    board.on_tagged(tagged_record("t"))
    feedback, _ = decide(board, {"id": " t ", "tag": "mlops", "action": "report"}, NOW, "ann")  # a typed id
    assert feedback["id"] == "t"


def test_a_report_of_the_tag_a_person_gave_already_is_refused() -> None:
    """Each report publishes a tagged record: the same report sent again would show the item again, unchanged."""
    board = ReviewBoard(recent_limit=10)
    board.on_tagged(tagged_record("t", tag="computer-vision"))
    feedback, tagged = decide(board, {"id": "t", "tag": "mlops", "action": "report"}, NOW, "ann")
    board.on_tagged(tagged)
    board.on_feedback(feedback)
    with pytest.raises(InvalidDecision, match="already tagged mlops"):
        decide(board, {"id": "t", "tag": "mlops", "action": "report"}, NOW, "ann")
    _, back = decide(
        board, {"id": "t", "tag": "computer-vision", "action": "report"}, NOW, "bob"
    )  # the model was right
    board.on_tagged(back)
    with pytest.raises(InvalidDecision, match="already tagged computer-vision"):
        decide(board, {"id": "t", "tag": "computer-vision", "action": "report"}, NOW, "bob")
    board.on_tagged(tagged_record("t", tag="other"))  # the model tags the item again: its tag is the model's now
    decide(board, {"id": "t", "tag": "mlops", "action": "report"}, NOW, "ann")


def test_the_page_cuts_long_descriptions_and_a_decision_publishes_them_whole() -> None:
    board = ReviewBoard(recent_limit=10)
    long = "<" * 20_000
    board.on_review({**review_record("a"), "description": long})
    page = render_page(board, reviewer="ann", csrf="t")
    assert "&lt;" * 1000 + "…" in page and "&lt;" * 1001 not in page
    assert len(page) < 10_000
    _, tagged = decide(board, {"id": "a", "tag": "other"}, NOW, "ann")
    assert tagged["description"] == long


def test_a_report_on_a_tagged_item_is_judged_against_the_model() -> None:
    board = ReviewBoard(recent_limit=10)
    board.on_tagged(tagged_record("t", tag="computer-vision"))
    feedback, tagged = decide(board, {"id": "t", "tag": "mlops", "action": "report"}, NOW, "u")
    assert feedback["verdict"] == "reported" and tagged["tag"] == "mlops"
    board.on_tagged(tagged)  # the human record does not replace the model's prediction
    judgement = board.on_feedback(feedback)
    assert (judgement.model_version, judgement.route, judgement.predicted_tag, judgement.correct) == (
        "v1",
        "tagged",
        "computer-vision",
        False,
    )
    assert judgement.label is not None and judgement.label["title"] == "Tagged title"
    assert judgement.label["tag"] == "mlops"


def test_a_prediction_is_judged_once_however_many_decisions_name_it() -> None:
    """A double submit, or a second reviewer reporting the same item, would count the model wrong twice and lower
    the precision a canary is compared with. Each decision is still a label (the last one wins in the store)."""
    board = ReviewBoard(recent_limit=10)
    board.on_tagged(tagged_record("t", tag="computer-vision"))
    judgements = []
    for reviewer, tag in (("ann", "other"), ("bob", "mlops")):
        feedback, _ = decide(board, {"id": "t", "tag": tag, "action": "report"}, NOW, reviewer)
        judgements.append(board.on_feedback(feedback))
    assert [(j.route, j.correct) for j in judgements] == [("tagged", False), (None, False)]
    assert all(j.label is not None for j in judgements)
    board.on_tagged(tagged_record("t", tag="mlops"))  # a new prediction for the item (the model again, later)
    feedback, _ = decide(board, {"id": "t", "tag": "other", "action": "report"}, NOW, "ann")
    assert board.on_feedback(feedback).route == "tagged"


@pytest.mark.parametrize("description", ["Short words.", "long " * 400])
def test_a_prediction_is_judged_by_the_topic_it_came_from_whatever_fields_it_carries(description: str) -> None:
    """Online precision of auto-tagged items (``route="tagged"``) drives retraining: a tagged record that carries a
    ``suggested_tag`` field (a writer other than this version of the worker) still counts as tagged."""
    record = {**tagged_record("t", tag="computer-vision"), "suggested_tag": "mlops", "description": description}
    board = ReviewBoard(recent_limit=10)
    board.on_tagged(record, json.dumps(record).encode())
    feedback, _ = decide(board, {"id": "t", "tag": "other", "action": "report"}, NOW, "u")
    judgement = board.on_feedback(feedback)
    assert (judgement.route, judgement.predicted_tag, judgement.correct) == ("tagged", "computer-vision", False)


@pytest.mark.parametrize("description", ["Short words.", "long " * 400])
@pytest.mark.parametrize("route", ["tagged", "review"])
def test_a_prediction_read_with_its_json_is_reported_and_labelled_as_one_read_without(
    route: str, description: str
) -> None:
    """The follower hands the board each record's JSON too, which the board may keep instead of packing it: a
    report, its human record and the label must not change, and a long description is still cut in the label."""
    record = tagged_record("t") if route == "tagged" else review_record("t", suggested="computer-vision")
    record = {**record, "description": description, "url": "https://example.org/t", "source": "a blog"}
    results = []
    for raw in (None, json.dumps(record, separators=(",", ":")).encode()):
        board = ReviewBoard(recent_limit=10)
        getattr(board, f"on_{route}")(record, raw)
        board.waiting.clear()  # a review item counts as decided here, so that a report can name it
        feedback, tagged = decide(board, {"id": "t", "tag": "mlops", "action": "report"}, NOW, "u")
        judgement = board.on_feedback(feedback)
        results.append((tagged, judgement))
    assert results[0] == results[1]
    tagged, judgement = results[1]
    assert set(tagged) == {"id", "title", "description", "source", "url", "tag", "confidence", "scores",
                           "model_version", "tagged_by", "dedupe_key", "processed_at", "schema_version"}  # fmt: skip
    assert judgement.route == route and judgement.label is not None
    assert judgement.label["description"] == description[:1000]


def test_feedback_on_a_forgotten_prediction_counts_but_is_not_judged() -> None:
    board = ReviewBoard(recent_limit=2)
    for item_id in ("a", "b", "c"):
        board.on_tagged(tagged_record(item_id))
    assert list(board.recent) == ["b", "c"]
    judgement = board.on_feedback({"id": "a", "tag": "mlops", "verdict": "reported", "reviewer": "u",
                                   "decided_at": NOW})  # fmt: skip
    assert judgement.predicted_tag is None and judgement.label is None


def test_what_the_board_holds_per_item_is_not_walked_by_full_garbage_collections() -> None:
    """Every worker holds up to ``recent_limit`` predictions and every waiting item: if each were an object the
    garbage collector tracks, each full collection (a pause of the event loop) would walk them all."""
    board = ReviewBoard(recent_limit=1000)
    for n in range(500):
        board.on_tagged(tagged_record(f"t{n}"))
        record = review_record(f"r{n}")
        board.on_review(record, json.dumps(record).encode())
    gc.collect()
    held = [*board.recent.values(), *board.waiting.values()]
    assert len(held) == 1500  # 1,000 predictions (tagged and review) and 500 waiting items
    assert not [entry for entry in held if gc.is_tracked(entry)]
    prediction = board.prediction("t7")
    assert prediction is not None and prediction.tag == "computer-vision" and prediction.record["id"] == "t7"
    assert board.prediction("r7") is not None and board.prediction("missing") is None


def test_the_page_cuts_long_titles_whatever_reaches_the_board() -> None:
    board = ReviewBoard(recent_limit=10)
    board.on_review({**review_record("a"), "title": '"' * 450_000}, own=True)  # the checks are skipped
    page = render_page(board)
    assert "&quot;" * MAX_TITLE_CHARS + "…" in page and "&quot;" * (MAX_TITLE_CHARS + 1) not in page
    assert len(page) < 10_000


def test_item_text_and_notices_are_isolated_so_bidi_controls_cannot_reorder_the_page() -> None:
    """U+202E shows the text after it right to left: in a notice, an item's id would turn "is mlops" around."""
    board = ReviewBoard(recent_limit=10)
    board.on_review({**review_record("a"), "title": "zeta \u202egnissecorp", "description": "\u202eeton"})
    notice = ("Saved: ", ItemText("\u05e9\u202eid"), " is mlops (accepted).")
    page = render_page(board, notice=notice, reviewer="ann", csrf="t")
    assert '<p role="status">Saved: <bdi>\u05e9\u202eid</bdi> is mlops (accepted).</p>' in page
    assert '<h2 id="title-0"><bdi>zeta \u202egnissecorp</bdi></h2>' in page
    assert "<p><bdi>\u202eeton</bdi></p>" in page
    escaped = render_page(board, notice=("<b>", ItemText("<i>"), "</b>"))
    assert '<p role="status">&lt;b&gt;<bdi>&lt;i&gt;</bdi>&lt;/b&gt;</p>' in escaped


def test_the_page_escapes_titles_and_offers_only_approved_tags() -> None:
    board = ReviewBoard(recent_limit=10)
    board.on_review(review_record("x", title='<script>alert("x")</script>'))
    page = render_page(board, notice="<b>hi</b>", reviewer="<i>ann</i>", csrf="token")
    assert "<script>alert" not in page and "&lt;script&gt;alert" in page
    assert "<b>hi</b>" not in page and "<i>ann</i>" not in page
    offered = {part.split('"')[0] for part in page.split('<option value="')[1:]}
    assert offered == set(APPROVED_TAGS)
    assert 'for="tag-0"' in page and 'id="tag-0"' in page  # every control has a label


def test_every_form_carries_the_token_and_no_form_asks_for_a_name() -> None:
    board = ReviewBoard(recent_limit=10)
    board.on_review(review_record("x"))
    page = render_page(board, reviewer="ann", csrf="tok3n")
    forms = page.split("<form")[1:]
    assert len(forms) == 3  # sign out, decide, report
    assert all('name="csrf" value="tok3n"' in form for form in forms)
    assert 'name="reviewer"' not in page


def test_without_a_reviewer_the_page_has_no_form() -> None:
    board = ReviewBoard(recent_limit=10)
    board.on_review(review_record("x"))
    page = render_page(board, read_only="Read-only: sign in.")
    assert "<form" not in page and 'data-id="x"' in page and "Read-only: sign in." in page


def test_the_labelled_store_keeps_the_latest_decision_per_id(tmp_path: Path) -> None:
    path = tmp_path / "labels" / "labels.jsonl"
    store = LabelStore(path)
    base = {"title": "T", "description": None, "verdict": "corrected", "reviewer": "r", "model_version": "v1"}
    store.append({**base, "id": "a", "tag": "mlops", "decided_at": "2026-11-23T00:00:01"})
    store.append({**base, "id": "b", "tag": "other", "decided_at": "2026-11-23T00:00:01"})
    store.append({**base, "id": "a", "tag": "computer-vision", "decided_at": "2026-11-23T00:00:02"})
    store.append({**base, "id": "a", "tag": "other", "decided_at": "2026-11-23T00:00:00"})  # older: loses
    with path.open("a") as file:
        file.write("not json\n" + json.dumps({"id": "c", "title": "T", "tag": "robotics", "decided_at": "x"}) + "\n")
    labels, skipped = read_labels(path)
    assert {label["id"]: label["tag"] for label in labels} == {"a": "computer-vision", "b": "other"}
    assert skipped == 2


def test_the_latest_decision_is_the_one_made_last_not_the_largest_text(tmp_path: Path) -> None:
    """``decided_at`` is compared as a time: a forged one that sorts after every time as text ("~") is refused,
    and of two forms of a UTC time the later time wins, whichever is the larger string."""
    path = tmp_path / "labels.jsonl"
    store = LabelStore(path)
    base = {"id": "a", "title": "T", "verdict": "corrected", "reviewer": "r", "model_version": "v1"}
    store.append({**base, "tag": "mlops", "decided_at": "2026-11-23T00:00:00.500+00:00"})  # as the worker writes
    store.append({**base, "tag": "other", "decided_at": "2026-11-23T00:00:00Z"})  # larger text, earlier time
    store.append({**base, "tag": "computer-vision", "decided_at": "~"})
    store.append({**base, "tag": "computer-vision", "decided_at": "2026-11-23T09:00:00+09:00"})  # not UTC
    store.append({**base, "tag": "computer-vision", "decided_at": "9999-12-31T00:00:00+00:00"})  # the far future
    labels, skipped = read_labels(path)
    assert [(label["id"], label["tag"]) for label in labels] == [("a", "mlops")]
    assert skipped == 3


def test_a_title_with_a_unicode_line_separator_stays_one_label(tmp_path: Path) -> None:
    """The store writes text as it is (``ensure_ascii=False``): U+2028 or U+0085 in a title is not a line end."""
    path = tmp_path / "labels.jsonl"
    LabelStore(path).append({"id": "a", "title": "A\u2028B\x85C", "tag": "mlops", "decided_at": NOW})
    labels, skipped = read_labels(path)
    assert [label["title"] for label in labels] == ["A\u2028B\x85C"] and skipped == 0


def test_a_label_line_nested_too_deep_is_skipped_like_any_unreadable_line(tmp_path: Path) -> None:
    path = tmp_path / "labels.jsonl"
    store = LabelStore(path)
    with path.open("a") as file:
        file.write("[" * 100_000 + "\n")
    store.append({"id": "a", "title": "T", "tag": "mlops", "verdict": "accepted", "reviewer": "r", "decided_at": NOW})
    labels, skipped = read_labels(path)
    assert [label["id"] for label in labels] == ["a"] and skipped == 1


def feedback_record(item_id: str, verdict: str = "accepted") -> dict[str, Any]:
    return {"id": item_id, "tag": "mlops", "verdict": verdict, "reviewer": "r", "decided_at": NOW}


def without(record: dict[str, Any], name: str) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != name}


@pytest.mark.parametrize(
    ("method", "record", "reason"),
    [
        *[("on_review", without(review_record("n"), f), "missing_field")
          for f in ("id", "suggested_tag", "model_version", "confidence", "dedupe_key")],
        *[("on_tagged", without(tagged_record("n"), f), "missing_field")
          for f in ("id", "tag", "model_version", "tagged_by", "dedupe_key")],
        *[("on_feedback", without(feedback_record("n"), f), "missing_field") for f in ("id", "tag", "verdict",
                                                                                      "decided_at")],
        ("on_review", {**review_record("n"), "suggested_tag": "robotics"}, "invalid_value"),
        ("on_review", {**review_record("n"), "confidence": "high"}, "wrong_type"),
        ("on_review", {**review_record("n"), "confidence": 7.5}, "invalid_value"),
        ("on_review", {**review_record("n"), "confidence": True}, "invalid_value"),
        ("on_review", {**review_record("n"), "id": None}, "wrong_type"),
        ("on_review", {**review_record("n"), "id": ""}, "invalid_value"),
        ("on_review", {**review_record("n"), "title": ["x"]}, "wrong_type"),
        ("on_review", {**review_record("n"), "model_version": "v" * 65}, "invalid_value"),
        ("on_tagged", {**tagged_record("n"), "tagged_by": "robot"}, "invalid_value"),
        ("on_tagged", {**tagged_record("n"), "model_version": 3}, "wrong_type"),
        ("on_feedback", feedback_record("n", verdict="approved"), "invalid_value"),
        ("on_feedback", {**feedback_record("n"), "decided_at": 1}, "wrong_type"),
        ("on_feedback", {**feedback_record("n"), "tag": "<b>"}, "invalid_value"),
        # A decision is made at a time and by a reviewer: a forged time must not win over every later decision.
        ("on_feedback", without(feedback_record("n"), "reviewer"), "missing_field"),
        ("on_feedback", {**feedback_record("n"), "reviewer": " "}, "invalid_value"),
        ("on_feedback", {**feedback_record("n"), "reviewer": None}, "wrong_type"),
        ("on_feedback", {**feedback_record("n"), "decided_at": "~"}, "invalid_value"),
        ("on_feedback", {**feedback_record("n"), "decided_at": "2026-11-23T09:00:00+09:00"}, "invalid_value"),
        # The training data needs an id and a title: a blank one would stop every retrain.
        ("on_feedback", {**feedback_record("n"), "id": " "}, "invalid_value"),
        ("on_review", {**review_record("n"), "id": " \t"}, "invalid_value"),
        ("on_review", without(review_record("n"), "title"), "missing_field"),
        ("on_review", {**review_record("n"), "title": None}, "missing_field"),
        ("on_review", {**review_record("n"), "title": " "}, "invalid_value"),
        ("on_tagged", {**tagged_record("n"), "title": ""}, "invalid_value"),
        # No longer than an input's: the board keeps them, and the page, which anyone may ask for, shows them.
        ("on_review", {**review_record("n"), "title": "t" * (MAX_TITLE_CHARS + 1)}, "invalid_value"),
        ("on_tagged", {**tagged_record("n"), "title": "t" * (MAX_TITLE_CHARS + 1)}, "invalid_value"),
        ("on_review", {**review_record("n"), "description": "d" * (MAX_DESCRIPTION_CHARS + 1)}, "invalid_value"),
        ("on_tagged", {**tagged_record("n"), "description": "d" * (MAX_DESCRIPTION_CHARS + 1)}, "invalid_value"),
        # An id a form cannot send back as it is: the item could never be decided, and would hold a place on the page.
        *[("on_review", {**review_record("n"), "id": f"a{control}b"}, "invalid_value")
          for control in ("\r", "\n", "\r\n", "\x00", "\t", "\x85", "\u202e", "\u2066")],
        # A decision publishes these fields to the tagged topic, as text or null.
        *[(method, {**make("n"), name: value}, "wrong_type")
          for method, make in (("on_review", review_record), ("on_tagged", tagged_record))
          for name in ("created_on", "source", "url") for value in (float("nan"), 1.5, ["x"])],
    ],
)  # fmt: skip
def test_the_board_refuses_a_malformed_record_with_its_reason_and_changes_nothing(
    method: str, record: dict[str, Any], reason: str
) -> None:
    board = ReviewBoard(recent_limit=10)
    board.on_review(review_record("n"))
    board.on_tagged(tagged_record("t"))
    before = (dict(board.waiting), dict(board.recent))
    with pytest.raises(InvalidRecord) as raised:
        getattr(board, method)(record)
    assert raised.value.reason == reason
    assert (dict(board.waiting), dict(board.recent)) == before


@pytest.mark.parametrize(
    ("raw", "reason"),
    [(None, "tombstone"), (b"not json", "not_json"), (b"\xff\xfe\x00", "not_json"), (b"[1, 2]", "not_object"),
     (b"null", "not_object"), (b"[" * 100_000, "not_json")],
)  # fmt: skip
def test_a_record_that_is_not_a_json_object_is_refused_with_its_reason(raw: bytes | None, reason: str) -> None:
    with pytest.raises(InvalidRecord) as raised:
        read_record(raw)
    assert raised.value.reason == reason


def standard_read(raw: bytes) -> tuple[str, Any]:
    """What :func:`read_record` made of ``raw`` when it read every record with the standard library's parse."""
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        return "refused", "not_json"
    if not isinstance(value, dict):
        return "refused", "not_object"
    if has_lone_surrogate(value):
        return "refused", "invalid_value"
    return "read", value


def outcome(raw: bytes) -> tuple[str, Any]:
    try:
        return "read", read_record(raw)
    except InvalidRecord as error:
        return "refused", error.reason


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=12,
)
json_like = st.text(alphabet='{}[]":,.-+0123456789eEnulltrueNaInfiy \\u0dD8a\n', max_size=40)


@given(
    st.one_of(
        json_values.map(lambda value: json.dumps({"x": value}).encode()),
        json_values.map(lambda value: json.dumps({"x": value}, ensure_ascii=False).encode("utf-16")),
        json_like.map(str.encode),
        json_like.map(lambda text: ('{"x": ' + text + "}").encode()),
        st.binary(max_size=40),
    )
)
def test_a_record_reads_as_the_standard_library_reads_it(raw: bytes) -> None:
    """msgspec reads most records; what it refuses, the standard library reads: the same value or the same
    reason either way (NaN, 1e400, surrogate escapes, UTF-16, duplicate keys, deep nesting, big integers)."""
    assert outcome(raw) == standard_read(raw)


@pytest.mark.parametrize(
    "raw",
    [b'{"x": NaN}', b'{"x": 1e400}', b'{"x": -Infinity}', b'{"x": 1, "x": 2}', b'{"x": ' + b"1" * 4301 + b"}",
     b'{"x": ' + b"1" * 4300 + b"}", b'{"x": 123456789012345678901234567890}', '{"x": "é"}'.encode("utf-16"),
     '{"x": "\\ud800"}'.encode("utf-16"),
     b'\xef\xbb\xbf{"x": 1}', b'{"x": "\\ud800"}', b'{"x": "a\nb"}', b'{"x": 1} x', b"[" * 100_000],
)  # fmt: skip
def test_records_msgspec_refuses_read_as_the_standard_library_reads_them(raw: bytes) -> None:
    assert outcome(raw) == standard_read(raw)


@pytest.mark.parametrize("text", ['{"id": "\\ud800"}', '{"title": "a\\uDFFFb"}', '{"x": ["\\ud83d"]}'])
def test_a_record_holding_an_unpaired_surrogate_is_refused(text: str) -> None:
    """No UTF-8 writer takes such text: kept, it would fail the labelled store or a decision's records."""
    with pytest.raises(InvalidRecord) as raised:
        read_record(text.encode())
    assert raised.value.reason == "invalid_value"
    assert read_record(b'{"title": "\\ud83d\\ude00"}') == {"title": "\U0001f600"}  # a pair is a character


def test_a_published_record_is_found_by_its_json_once_and_nothing_else_is() -> None:
    published = PublishedRecords()
    record = tagged_record("a")
    raw = json.dumps(record).encode()
    published.put(raw, record)
    assert published.take(raw) is record
    assert published.take(raw) is None  # read back twice (a re-read after a seek): the follower parses it then
    assert published.found == 1
    assert published.take(json.dumps(tagged_record("b")).encode()) is None
    assert published.take(b"{not json") is None and published.take(None) is None
    assert published.found == 1


@pytest.mark.parametrize(("limit", "limit_bytes"), [(2, 1 << 20), (100, 700)])
def test_published_records_are_bounded_by_count_and_by_bytes_oldest_forgotten_first(
    limit: int, limit_bytes: int
) -> None:
    published = PublishedRecords(limit=limit, limit_bytes=limit_bytes)
    records = [tagged_record(str(n)) for n in range(3)]
    raws = [json.dumps(record).encode() for record in records]
    assert all(234 < len(raw) <= 350 for raw in raws)  # two fit in 700 bytes, three do not
    for raw, record in zip(raws, records, strict=True):
        published.put(raw, record)
    assert [published.take(raw) is record for raw, record in zip(raws, records, strict=True)] == [False, True, True]
    assert [published.take(raw) for raw in raws] == [None, None, None]


def test_an_item_waiting_for_review_leaves_the_page_when_a_tagged_record_names_it() -> None:
    """A tagged record for a waiting item (a person's decision whose feedback record has not come yet, or a
    replay tagged by a newer model) means nobody needs to decide it any more."""
    board = ReviewBoard(recent_limit=10)
    board.on_review(review_record("a"))
    board.on_review(review_record("b"))
    board.on_tagged(tagged_record("a"))
    assert list(board.waiting) == ["b"]
    with pytest.raises(InvalidDecision, match="no item 'a' is waiting"):
        decide(board, {"id": "a", "tag": "mlops"}, NOW, "ann")


def test_a_report_on_an_item_still_waiting_for_review_is_refused() -> None:
    """A report says a shown tag is wrong; an item waiting for review was never shown with a tag."""
    board = ReviewBoard(recent_limit=10)
    board.on_review(review_record("a", suggested="mlops"))
    with pytest.raises(InvalidDecision, match="no tagged item 'a'"):
        decide(board, {"id": "a", "tag": "other", "action": "report"}, NOW, "ann")
    assert list(board.waiting) == ["a"]


def decision(item_id: str) -> dict[str, Any]:
    return {"id": item_id, "tag": "mlops", "verdict": "accepted", "reviewer": "ann", "decided_at": NOW}


def human_tagged(item_id: str) -> dict[str, Any]:
    return {**tagged_record(item_id, "mlops"), "tagged_by": "human"}


@pytest.mark.parametrize("decide_first", [pytest.param(decision, id="feedback"), pytest.param(human_tagged, id="tag")])
def test_an_item_decided_before_its_review_record_is_read_never_waits(decide_first: Any) -> None:
    """A full board leaves review records unread while decisions are read: a decision on an item further down the
    review topic comes first, and the item must not wait when its record is read at last."""
    board = ReviewBoard(recent_limit=10, max_waiting=2)
    board.on_review(review_record("a"))
    if decide_first is decision:
        board.on_feedback(decision("b"))
    else:
        board.on_tagged(decide_first("b"))
    board.on_review(review_record("b"))
    board.on_review(review_record("c"))
    assert list(board.waiting) == ["a", "c"]
    assert not board.decided_unread  # forgotten once its record is read


def test_an_item_that_comes_again_after_its_decided_record_was_read_waits() -> None:
    board = ReviewBoard(recent_limit=10)
    board.on_feedback(decision("a"))
    board.on_review(review_record("a"))
    assert list(board.waiting) == []
    board.on_review(review_record("a", title="The same id, sent to review again"))
    assert list(board.waiting) == ["a"]


def test_a_decision_on_an_item_whose_review_record_was_read_is_not_remembered() -> None:
    """The common case: a reviewer decides an item on the page (which stops listing it at once), then the
    follower reads the decision; the same id sent to review again later must wait."""
    board = ReviewBoard(recent_limit=10)
    board.on_review(review_record("a"))
    board.waiting.pop("a")  # as the page does once the decision is published
    board.on_feedback(decision("a"))
    board.on_tagged(human_tagged("a"))
    assert not board.decided_unread
    board.on_review(review_record("a"))
    assert list(board.waiting) == ["a"]


def test_once_the_review_topic_is_read_to_its_end_no_decision_is_remembered() -> None:
    board = ReviewBoard(recent_limit=10)
    board.on_feedback(decision("a"))
    board.all_reviews_read()
    assert not board.decided_unread
    board.on_feedback(decision("b"))
    board.on_tagged(human_tagged("c"))
    assert not board.decided_unread
    board.on_review(review_record("a"))
    board.on_review(review_record("b"))
    assert list(board.waiting) == ["a", "b"]


def test_the_board_is_full_at_its_limit_and_has_room_again_a_little_below_it() -> None:
    board = ReviewBoard(recent_limit=100, max_waiting=20)
    for n in range(20):
        board.on_review(review_record(str(n)))
    assert board.full and not board.has_room
    board.on_feedback(decision("0"))
    assert not board.full and not board.has_room  # one free place would pause and resume at every decision
    board.on_feedback(decision("1"))
    assert board.has_room
    unbounded = ReviewBoard(recent_limit=100)
    for n in range(100):
        unbounded.on_review(review_record(str(n)))
    assert not unbounded.full and unbounded.has_room


def test_the_page_says_when_more_items_wait_than_the_board_loaded() -> None:
    board = ReviewBoard(recent_limit=10, max_waiting=2)
    board.on_review(review_record("a"))
    board.on_review(review_record("b"))
    assert "2 item(s) waiting." in render_page(board)
    board.not_loaded = True
    page = render_page(board)
    assert "2 item(s) loaded, and more waiting on the review topic, not loaded" in page
    assert "at most 2 at a time" in page


def test_decisions_remembered_before_their_review_records_are_bounded() -> None:
    """A person's tagged record is not signed: whoever may write to the tagged topic could add ids without end
    while review records are unread (at every start). The oldest are forgotten past ``recent_limit``."""
    board = ReviewBoard(recent_limit=100)
    for n in range(1000):
        board.on_tagged(human_tagged(f"forged-{n}"))
    assert len(board.decided_unread) == 100 and "forged-999" in board.decided_unread


@pytest.mark.parametrize(
    "changed",
    [{"dedupe_key": ""}, {"id": 2**63}, {"id": -(2**63) - 1}, {"id": "a\nb"}, {"id": "a\u202eb"}],
    ids=["empty-dedupe-key", "id-past-int64", "id-below-int64", "id-newline", "id-bidi-control"],
)
def test_records_a_decision_would_publish_against_the_tagged_contract_are_refused(changed: dict[str, Any]) -> None:
    """A decision publishes the item's fields to the tagged topic: a review or tagged record whose fields the
    topic's contract refuses (content-tagged.json) is skipped, not kept to be published."""
    for record, on in ((review_record("a"), "on_review"), (tagged_record("a"), "on_tagged")):
        board = ReviewBoard(recent_limit=10)
        with pytest.raises(InvalidRecord, match="invalid_value"):
            getattr(board, on)({**record, **changed})
        assert not board.waiting and not board.recent


@pytest.mark.parametrize(
    "changed",
    [{"description": ["x"]}, {"description": {"a": 1}}, {"id": True}, {"id": "i" * 201}, {"id": ""},
     {"model_version": ""}, {"title": "t" * 1001}],
    ids=["description-list", "description-object", "id-true", "id-too-long", "id-empty", "version-empty",
         "title-too-long"],
)  # fmt: skip
def test_records_with_fields_the_input_would_refuse_are_refused(changed: dict[str, Any]) -> None:
    for record, on in ((review_record("a"), "on_review"), (tagged_record("a"), "on_tagged")):
        board = ReviewBoard(recent_limit=10)
        with pytest.raises(InvalidRecord):
            getattr(board, on)({**record, **changed})
        assert not board.waiting and not board.recent


@pytest.mark.parametrize("confidence", [1.0000001, 1.5, -0.1, float("nan")])
def test_a_review_record_s_confidence_is_a_probability(confidence: float) -> None:
    board = ReviewBoard(recent_limit=10)
    with pytest.raises(InvalidRecord, match="confidence"):
        board.on_review({**review_record("a"), "confidence": confidence})
    board.on_review({**review_record("a"), "confidence": 1.0})
    assert list(board.waiting) == ["a"]
