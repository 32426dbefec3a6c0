"""The review follower survives every record of the review, tagged and feedback topics: a malformed one is counted
by topic and reason and skipped, and the records around it are handled as if it were not there."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from stream_app.metrics import Metrics
from stream_app.review.board import ReviewBoard
from stream_app.review.follower import ReviewFollower, stored_decisions
from stream_app.review.labels import LabelStore, read_labels
from stream_app.review.records import feedback_signature
from stream_app.review.sign_outs import SignOuts
from stream_app.settings import Settings
from tests.unit.review.test_board import NOW, review_record, tagged_record

SETTINGS = Settings.from_env({})
EDGES = (0.0, 0.5, 1.0)


def message(topic: str, value: bytes | None, offset: int = 0) -> ConsumerRecord[Any, Any]:
    return ConsumerRecord(topic, 0, offset, 0, 0, None, value, None, 0, len(value or b""), [])


def encoded(record: Any) -> bytes:
    return json.dumps(record).encode()


SECRET = b"k" * 32
"""The review session secret of the :func:`follower`."""


def signed(decision: dict[str, Any], secret: bytes = SECRET) -> dict[str, Any]:
    """A feedback record as the page publishes it: signed with the session secret."""
    return {**decision, "signature": feedback_signature(secret, decision)}


def follower(tmp_path: Path) -> tuple[ReviewFollower, CollectorRegistry]:
    registry = CollectorRegistry()
    board = ReviewBoard(recent_limit=100)
    labels, signed_out = LabelStore(tmp_path / "labels.jsonl"), SignOuts(SECRET, caught_up=True)
    return ReviewFollower(SETTINGS, board, Metrics(registry, EDGES), labels, signed_out), registry


def skipped(registry: CollectorRegistry, topic: str, reason: str) -> float:
    value = registry.get_sample_value("content_tagger_skipped_records_total", {"topic": topic, "reason": reason})
    return value or 0.0


def test_bad_records_are_counted_and_skipped_and_good_ones_around_them_count(tmp_path: Path) -> None:
    follow, registry = follower(tmp_path)
    review, tagged, feedback = SETTINGS.review_topic, SETTINGS.tagged_topic, SETTINGS.feedback_topic
    decision = {"id": "a", "tag": "other", "verdict": "corrected", "reviewer": "ann", "decided_at": NOW}
    records = [
        message(review, None),
        message(review, b"{not json"),
        message(review, encoded({k: v for k, v in review_record("x").items() if k != "suggested_tag"})),
        message(review, encoded(review_record("a"))),
        message(tagged, encoded({k: v for k, v in tagged_record("t").items() if k != "tagged_by"})),
        message(tagged, encoded(tagged_record("t"))),
        message(feedback, encoded(signed({**decision, "verdict": "approved"}))),
        message(feedback, encoded([decision])),
        message(feedback, None),
        message(feedback, encoded(signed(decision))),
    ]
    for record in records:
        follow.on_record(record)
    follow.release()
    assert list(follow.board.waiting) == [] and set(follow.board.recent) == {"a", "t"}
    expected = {("review", "tombstone"): 1, ("review", "not_json"): 1, ("review", "missing_field"): 1,
                ("tagged", "missing_field"): 1, ("feedback", "invalid_value"): 1, ("feedback", "not_object"): 1,
                ("feedback", "tombstone"): 1}  # fmt: skip
    for (topic, reason), count in expected.items():
        assert skipped(registry, topic, reason) == count, (topic, reason)
    judged = registry.get_sample_value("content_tagger_feedback_decisions_total", {"verdict": "corrected"})
    assert judged == 1
    labels, _ = read_labels(tmp_path / "labels.jsonl")
    assert [(label["id"], label["tag"], label["reviewer"]) for label in labels] == [("a", "other", "ann")]


def test_a_flood_of_bad_records_is_logged_now_and_then_and_counted_whole(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The follower reads every topic from its start on every start: 2,500 junk records must not be 2,500 log
    lines each time, but the first of each kind is logged with its offset, and the counter has them all."""
    follow, registry = follower(tmp_path)
    with caplog.at_level(logging.WARNING, logger="stream_app.review.follower"):
        for offset in range(2500):
            follow.on_record(message(SETTINGS.review_topic, b"{not json", offset))
        follow.on_record(message(SETTINGS.tagged_topic, None, 7))
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 4
    assert lines[0].startswith(f"skipped a record of {SETTINGS.review_topic} partition 0 offset 0:")
    assert lines[1].endswith("(1000 of this kind so far)") and lines[2].endswith("(2000 of this kind so far)")
    assert f"{SETTINGS.tagged_topic} partition 0 offset 7" in lines[3]
    assert skipped(registry, "review", "not_json") == 2500


def test_a_decision_already_stored_is_not_appended_again(tmp_path: Path) -> None:
    follow, _ = follower(tmp_path)
    follow.on_record(message(SETTINGS.review_topic, encoded(review_record("a"))))
    decision = {"id": "a", "tag": "other", "verdict": "corrected", "reviewer": "ann", "decided_at": NOW}
    follow.stored = {("a", NOW)}
    follow.on_record(message(SETTINGS.feedback_topic, encoded(signed(decision))))
    follow.release()
    assert not (tmp_path / "labels.jsonl").exists()


def test_decisions_made_before_the_worker_started_reach_the_board_and_labels_but_are_not_counted_again(
    tmp_path: Path,
) -> None:
    """Every start reads the feedback topic from its start; counting those decisions again would add the whole
    history to each counter's increase at every restart (firing the precision alert on old decisions), and count
    each decision once per worker started since."""
    follow, registry = follower(tmp_path)
    follow.counted_from = {TopicPartition(SETTINGS.feedback_topic, 0): 1}
    for id_ in ("old", "new"):
        follow.on_record(message(SETTINGS.review_topic, encoded(review_record(id_))))
    for offset, id_ in enumerate(("old", "new")):
        decision = {"id": id_, "tag": "other", "verdict": "corrected", "reviewer": "ann", "decided_at": NOW}
        follow.on_record(message(SETTINGS.feedback_topic, encoded(signed(decision)), offset))
    follow.release()
    assert list(follow.board.waiting) == []
    labels, _ = read_labels(tmp_path / "labels.jsonl")
    assert sorted(label["id"] for label in labels) == ["new", "old"]
    assert registry.get_sample_value("content_tagger_feedback_decisions_total", {"verdict": "corrected"}) == 1
    judged = [s for f in registry.collect() if f.name == "content_tagger_online_judged" for s in f.samples
              if s.name.endswith("_total")]  # fmt: skip
    assert sum(sample.value for sample in judged) == 1


def test_auto_tagged_items_shown_since_the_start_are_counted_and_a_persons_tag_judges_no_model(
    tmp_path: Path,
) -> None:
    """Online precision of what the platform showed is one less the share of the shown items reported wrong: the
    items shown are counted from this worker's start, as the decisions are, and only the model's tags; a report
    counts only on an item counted as shown. A decision on an item whose model prediction was forgotten (only a
    person's tag is remembered), or on one shown before the start, is a label, not a judgement of the model."""
    follow, registry = follower(tmp_path)
    follow.counted_from = {TopicPartition(SETTINGS.tagged_topic, 0): 1}
    follow.on_record(message(SETTINGS.tagged_topic, encoded(tagged_record("before")), 0))
    follow.on_record(message(SETTINGS.tagged_topic, encoded(tagged_record("t")), 1))
    human = {**tagged_record("h", tag="mlops"), "tagged_by": "human"}
    follow.on_record(message(SETTINGS.tagged_topic, encoded(human), 2))
    assert registry.get_sample_value("content_tagger_online_shown_total", {"version": "v1"}) == 1
    for offset, (id_, verdict) in enumerate((("t", "reported"), ("h", "corrected"), ("before", "reported"))):
        decision = {"id": id_, "tag": "other", "verdict": verdict, "reviewer": "ann", "decided_at": NOW}
        follow.on_record(message(SETTINGS.feedback_topic, encoded(signed(decision)), offset))
    follow.release()
    judged = registry.get_sample_value(
        "content_tagger_online_judged_total", {"version": "v1", "route": "tagged", "tag": "computer-vision"}
    )
    correct = registry.get_sample_value(
        "content_tagger_online_correct_total", {"version": "v1", "route": "tagged", "tag": "computer-vision"}
    )
    assert (judged, correct) == (1.0, 0.0)  # the report on "t" only
    assert registry.get_sample_value("content_tagger_feedback_decisions_total", {"verdict": "reported"}) == 2
    assert registry.get_sample_value(
        "content_tagger_online_judged_total", {"version": "v1", "route": "tagged", "tag": "mlops"}
    ) in (None, 0.0)
    labels, _ = read_labels(tmp_path / "labels.jsonl")
    assert sorted(label["id"] for label in labels) == ["before", "h", "t"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=15), children, max_size=6),
    max_leaves=20,
)
fields = st.sampled_from(["id", "tag", "suggested_tag", "model_version", "tagged_by", "verdict", "decided_at",
                          "confidence", "dedupe_key", "title", "description", "reviewer"])  # fmt: skip
records = st.one_of(
    st.none(),
    st.binary(max_size=60),
    json_values.map(encoded),
    st.dictionaries(fields, json_values, max_size=12).map(encoded),
    st.builds(lambda base, extra: encoded({**base, **extra}),
              st.sampled_from([review_record("h"), tagged_record("h"),
                               {"id": "h", "tag": "mlops", "verdict": "accepted", "decided_at": NOW}]),
              st.dictionaries(fields, json_values, max_size=3)),
)  # fmt: skip


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["review", "tagged", "feedback"]), records), max_size=20))
def test_no_record_stops_the_follower(tmp_path_factory: Any, sequence: list[tuple[str, bytes | None]]) -> None:
    follow, registry = follower(tmp_path_factory.mktemp("labels"))
    topics = {"review": SETTINGS.review_topic, "tagged": SETTINGS.tagged_topic, "feedback": SETTINGS.feedback_topic}
    for offset, (role, value) in enumerate(sequence):
        follow.on_record(message(topics[role], value, offset))
    follow.release()
    assert skipped(registry, "review", "unexpected") == skipped(registry, "feedback", "unexpected") == 0
    assert skipped(registry, "tagged", "unexpected") == 0


def test_a_record_this_worker_published_comes_back_to_the_same_board_as_one_parsed(tmp_path: Path) -> None:
    mine, registry = follower(tmp_path / "mine")
    parsed, _ = follower(tmp_path / "parsed")
    records = [(SETTINGS.review_topic, review_record("a")), (SETTINGS.tagged_topic, tagged_record("t"))]
    for offset, (topic, record) in enumerate(records):
        raw = encoded(record)
        mine.board.published.put(raw, record)
        mine.on_record(message(topic, raw, offset))
        parsed.on_record(message(topic, raw, offset))
    assert mine.board.published.found == 2
    assert parsed.board.published.found == 0
    assert mine.board.waiting == parsed.board.waiting
    assert mine.board.recent == parsed.board.recent
    # A published record a malformed one was made from is not taken for it.
    bad = {k: v for k, v in tagged_record("u").items() if k != "tagged_by"}
    mine.board.published.put(encoded(tagged_record("u")), tagged_record("u"))
    mine.on_record(message(SETTINGS.tagged_topic, encoded(bad), 2))
    assert skipped(registry, "tagged", "missing_field") == 1
    assert "u" not in mine.board.recent


def test_a_decision_holding_an_unpaired_surrogate_is_skipped_and_never_reaches_the_labelled_store(
    tmp_path: Path,
) -> None:
    """A JSON ``"\\ud800"`` escape decodes to text no UTF-8 writer takes: appended to the labelled store, it
    stopped the follower, so every worker, at every start."""
    follow, registry = follower(tmp_path)
    review, tagged, feedback = SETTINGS.review_topic, SETTINGS.tagged_topic, SETTINGS.feedback_topic
    decision = {"id": "a", "tag": "other", "verdict": "corrected", "reviewer": "ann", "decided_at": NOW}
    follow.on_record(message(review, encoded(review_record("a"))))
    follow.on_record(message(tagged, encoded({**tagged_record("s"), "title": "\ud800"}), 1))  # short: kept raw
    other_way = {**tagged_record("u"), "title": "\udfff"}
    follow.board.on_tagged(other_way, encoded(other_way))  # one that reached the board another way
    hostile = [{**decision, "reviewer": "\ud800"}, {**decision, "decided_at": NOW + "\ud800"}]
    for offset, record in enumerate([*hostile, {**decision, "id": "s"}, {**decision, "id": "u"}, decision]):
        follow.on_record(message(feedback, encoded(signed(record)), offset))
    follow.release()
    assert skipped(registry, "tagged", "invalid_value") == 1
    assert skipped(registry, "feedback", "invalid_value") == len(hostile)
    assert skipped(registry, "feedback", "unexpected") == 1  # "u": its label could not be written
    text = (tmp_path / "labels.jsonl").read_bytes().decode("utf-8")
    labels, unreadable = read_labels(tmp_path / "labels.jsonl")
    assert [(label["id"], label["tag"]) for label in labels] == [("a", "other")] and unreadable == 0
    assert "\\ud" not in text


def test_a_labelled_store_that_cannot_be_read_leaves_the_follower_running(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Every worker reads the store at every start: an error out of it would stop each of them."""
    unreadable = tmp_path / "labels.jsonl"
    unreadable.symlink_to("/proc/self/mem")  # every read of it fails (EIO), as a bad disk's would
    assert stored_decisions(unreadable) == set()
    assert "cannot read the labelled store" in caplog.text
    LabelStore(tmp_path / "good.jsonl").append({"id": "a", "title": "t", "tag": "other", "decided_at": NOW})
    assert stored_decisions(tmp_path / "good.jsonl") == {("a", NOW)}


ALTERED_SIGNED_FIELDS = (("id", "b"), ("tag", "computer-vision"), ("verdict", "accepted"), ("reviewer", "bob"),
                         ("decided_at", "2026-11-22T09:00:00.000+00:00"), ("model_version", "v9"))  # fmt: skip


def test_a_decision_not_signed_with_the_session_secret_is_skipped_and_neither_labels_nor_judges(
    tmp_path: Path,
) -> None:
    """Whoever may write to the feedback topic but does not hold the secret cannot add training labels or judge a
    model in a reviewer's name."""
    follow, registry = follower(tmp_path)
    follow.on_record(message(SETTINGS.review_topic, encoded(review_record("a"))))
    decision = {"id": "a", "tag": "other", "verdict": "corrected", "reviewer": "alice", "decided_at": NOW}
    forged = [
        decision,
        signed(decision, b"another secret"),
        {**signed(decision), "tag": "mlops"},  # a signed decision with another tag
        # Each signed field changed: the signature covers them all.
        *({**signed(decision), name: value} for name, value in ALTERED_SIGNED_FIELDS),
        {**decision, "signature": "\u00e9" * 64},
        {**decision, "signature": 7},
    ]
    for offset, record in enumerate(forged):
        follow.on_record(message(SETTINGS.feedback_topic, encoded(record), offset))
    follow.release()
    assert skipped(registry, "feedback", "invalid_value") == len(forged)
    assert registry.get_sample_value("content_tagger_feedback_decisions_total", {"verdict": "corrected"}) == 0
    assert read_labels(tmp_path / "labels.jsonl") == ([], 0) and "a" in follow.board.waiting
    follow.on_record(message(SETTINGS.feedback_topic, encoded(signed(decision)), len(forged)))
    follow.release()
    assert [label["reviewer"] for label in read_labels(tmp_path / "labels.jsonl")[0]] == ["alice"]


def test_a_decision_a_later_one_replaced_is_not_appended_again_at_each_start(tmp_path: Path) -> None:
    """Readers keep the latest decision per item, but the store keeps them all: the follower must know every one
    it holds, or each start appends the replaced ones again (training rows growing by one per start)."""
    earlier, later = "2026-11-23T00:00:00.000+00:00", "2026-11-23T01:00:00.000+00:00"
    decisions = [{"id": "a", "tag": tag, "verdict": "corrected", "reviewer": "ann", "decided_at": when}
                 for tag, when in (("other", earlier), ("mlops", later))]  # fmt: skip
    store = tmp_path / "labels.jsonl"
    for _ in range(3):  # three starts, each reading the topics from their start
        follow, _ = follower(tmp_path)
        follow.stored = stored_decisions(store)
        follow.on_record(message(SETTINGS.review_topic, encoded(review_record("a"))))
        for offset, decision in enumerate(decisions):
            follow.on_record(message(SETTINGS.feedback_topic, encoded(signed(decision)), offset))
        follow.release()
    assert len(store.read_bytes().splitlines()) == 2


def test_a_decision_sent_again_counts_once_even_with_other_unsigned_fields(tmp_path: Path) -> None:
    """A replay of a signed decision (whoever may write to the feedback topic can copy one) is skipped as
    repeated: counted again, one decision would judge the model twice, after a forged model record for its item."""
    follow, registry = follower(tmp_path)
    follow.on_record(message(SETTINGS.tagged_topic, encoded(tagged_record("a", "computer-vision"))))
    decision = signed({"id": "a", "tag": "mlops", "verdict": "reported", "reviewer": "ann", "decided_at": NOW})
    follow.on_record(message(SETTINGS.feedback_topic, encoded(decision), 0))
    follow.release()
    follow.on_record(message(SETTINGS.feedback_topic, encoded({**decision, "note": "x"}), 1))
    follow.on_record(message(SETTINGS.tagged_topic, encoded(tagged_record("a", "computer-vision")), 1))
    follow.on_record(message(SETTINGS.feedback_topic, encoded(decision), 2))
    follow.release()
    assert registry.get_sample_value("content_tagger_feedback_decisions_total", {"verdict": "reported"}) == 1
    judged = [s for f in registry.collect() if f.name == "content_tagger_online_judged" for s in f.samples
              if s.name.endswith("_total")]  # fmt: skip
    assert sum(sample.value for sample in judged) == 1
    assert skipped(registry, "feedback", "repeated") == 2
    assert len(read_labels(tmp_path / "labels.jsonl")[0]) == 1


def test_forged_feedback_is_skipped_as_it_is_read_and_a_held_decision_keeps_its_signed_fields_only(
    tmp_path: Path,
) -> None:
    """Feedback waits for the review and tagged topics (at every start, the whole feedback topic): a forged record
    held whole until then, a megabyte each, would fill the memory."""
    follow, registry = follower(tmp_path)
    padding = "x" * 1_000_000
    for offset in range(3):
        follow.on_record(message(SETTINGS.feedback_topic, encoded({"padding": padding}), offset))
    decision = {"id": "a", "tag": "mlops", "verdict": "accepted", "reviewer": "ann", "decided_at": NOW}
    follow.on_record(message(SETTINGS.feedback_topic, encoded({**signed(decision), "padding": padding}), 3))
    assert skipped(registry, "feedback", "missing_field") == 3
    assert [record for _, record in follow.held] == [decision]
