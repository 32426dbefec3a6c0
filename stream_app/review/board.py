"""Human review without Kafka: the board of items waiting for a person (fed records checked by :mod:`.records`),
the validation of a decision and the records a decision publishes (the HTML page: :mod:`.markup`).

The board is fed the review, tagged and feedback topics in order. An item waits from its review record until a
feedback record names its id. It holds at most ``max_waiting`` items: the follower stops reading the review topic
at that many and reads on as decisions free room, so a decision may come before the review record of its item
(:attr:`ReviewBoard.decided_unread`). Recent predictions (bounded by ``recent_limit``, oldest forgotten first) let
feedback be joined with what the model said, which gives online precision per predicted tag.
"""

from __future__ import annotations

import itertools
import json
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, NamedTuple, cast

from stream_app import APPROVED_TAGS
from stream_app.bounded import remember
from stream_app.errors import InvalidDecision
from stream_app.review.records import (
    MAX_REVIEWER_CHARS,
    checked_feedback_id,
    checked_review_id,
    checked_tagged_id,
)
from stream_app.schema import SCHEMA_VERSION

KEPT_FIELDS = ("id", "title", "description", "created_on", "source", "url", "dedupe_key", "suggested_tag")
"""What a recent prediction keeps of its record: enough to label it and to re-tag it, not the scores."""
KEPT_DESCRIPTION_CHARS = 1000
"""Longest description a recent prediction keeps: enough to label it."""
KEPT_RAW_BYTES = KEPT_DESCRIPTION_CHARS
"""Longest record JSON a recent prediction keeps as it came: no description in it can exceed the cut (a character
is at least a byte), and the fields packing would drop add a few hundred bytes at most."""
WAITING_FIELDS = (*KEPT_FIELDS, "model_version", "confidence")
"""What an item waiting for review keeps of its record: what the page shows and what a decision publishes."""


class Prediction(NamedTuple):
    """What the model said about one item, kept to judge feedback and to label it."""

    tag: str
    model_version: str
    tagged_by: str
    route: str
    """``tagged`` or ``review``: the topic the record came from."""
    counted: bool
    """Whether a judgement of it counts in online precision: a review item always; an auto-tagged item only when
    the caller counted it as shown, so that the reports counted and the items shown are the same items."""
    packed: bytes
    """Its record as compact JSON, a third of a dict's memory: as it came when it is short
    (:data:`KEPT_RAW_BYTES`), else its :data:`KEPT_FIELDS` with the description cut."""

    @property
    def record(self) -> dict[str, Any]:
        return cast(dict[str, Any], json.loads(self.packed))


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
"""Made once: ``json.dumps`` with options builds an encoder per call (every tagged record is packed)."""


def _pack(record: dict[str, Any], fields: tuple[str, ...]) -> bytes:
    kept = {name: record[name] for name in fields if name in record}
    return _ENCODER.encode(kept).encode()


@dataclass(frozen=True)
class Judgement:
    """One feedback record matched with the prediction it judges (None if that prediction is not known)."""

    verdict: str
    model_version: str | None
    """The version of the model whose prediction is judged."""
    route: str | None
    """``tagged`` or ``review``: where the model sent the judged prediction."""
    predicted_tag: str | None
    correct: bool
    label: dict[str, Any] | None
    """The labelled-store line, when the item's text is known."""


class PublishedRecords:
    """The review and tagged records this worker published lately, by their JSON: the review follower reads them
    back from their topics, and one found here needs no parse. Holds at most ``limit`` records and
    ``limit_bytes`` of JSON, oldest forgotten first; a record forgotten before it comes back is parsed."""

    def __init__(self, limit: int = 4096, limit_bytes: int = 4 << 20) -> None:
        self.limit = limit
        self.limit_bytes = limit_bytes
        self._records: dict[bytes, dict[str, Any]] = {}
        self._bytes = 0
        self.found = 0
        """Records :meth:`take` found here, since start."""

    def put(self, raw: bytes, record: dict[str, Any]) -> None:
        """Note that ``raw`` is the JSON of ``record``, which nobody changes from now on."""
        records = self._records
        if raw in records:
            return
        records[raw] = record
        self._bytes += len(raw)
        while len(records) > self.limit or self._bytes > self.limit_bytes:
            oldest = next(iter(records))
            del records[oldest]
            self._bytes -= len(oldest)

    def take(self, raw: bytes | None) -> dict[str, Any] | None:
        """The record published here whose JSON is ``raw``, forgotten now; None if there is none."""
        if raw is None or (record := self._records.pop(raw, None)) is None:
            return None
        self._bytes -= len(raw)
        self.found += 1
        return record


RESUME_SHARE: Final = 0.9
"""Share of ``max_waiting`` the board must be down to before the follower reads the review topic again: reading
on at the first free place would pause and resume it at every decision."""


class ReviewBoard:
    """Items waiting for review, at most ``max_waiting`` of them (None: no bound), and recent predictions by id."""

    def __init__(self, recent_limit: int, max_waiting: int | None = None) -> None:
        self.recent_limit = recent_limit
        self.max_waiting = max_waiting
        self.not_loaded = False
        """Whether the follower left review records unread because the board was full: more items may wait than
        :attr:`waiting` holds."""
        self.reviews_unread = True
        """Whether review records may lie unread before the topic's end while decisions are read: from the start
        (every start reads the topics from their beginning) and from each pause until the review partitions are
        read to their end. Decisions read meanwhile are remembered in :attr:`decided_unread`."""
        self.decided_unread: OrderedDict[str, None] = OrderedDict()
        """Ids decided (a feedback record or a person's tagged record) while :attr:`reviews_unread`, whose item
        was not waiting and whose review record this board does not remember reading: that record may come later
        and must not wait then. An id leaves when its review record is read; all leave once the review topic is
        read to its end. At most ``recent_limit``, the oldest forgotten first: a person's tagged record is not
        signed, so anyone who may write to the tagged topic could add ids without end (a forgotten one's item
        waits for review again)."""
        self.published = PublishedRecords()
        """What this worker published to the review and tagged topics, until the follower reads it back."""
        self.waiting: dict[str, bytes] = {}
        """Items waiting for review by id, oldest first: their :data:`WAITING_FIELDS` as compact JSON (a third of
        the memory of a dict, and nothing bounds how many wait)."""
        self.judged: OrderedDict[str, None] = OrderedDict()
        """Items whose recent prediction a decision has judged already (as many as :attr:`recent`, oldest
        forgotten first): a second decision on one (a double submit, a second reviewer's report) is a label, but
        counts no second judgement of the model."""
        self.human_tags: OrderedDict[str, str] = OrderedDict()
        """The tag a person last gave each recent item (as many as :attr:`recent`): a report of the tag it has
        already would publish it again, changing nothing."""
        self.recent: OrderedDict[str, tuple[str, str, str, str, bool, bytes]] = OrderedDict()
        """Recent predictions by id, oldest first: each :class:`Prediction`'s fields in order, in a plain tuple of
        strings, a bool and bytes, which the garbage collector stops tracking (a tuple subclass stays tracked), so
        full collections do not walk tens of thousands of them. :meth:`prediction` reads one back."""

    @property
    def full(self) -> bool:
        """Whether the board holds :attr:`max_waiting` items: the follower reads no more review records."""
        return self.max_waiting is not None and len(self.waiting) >= self.max_waiting

    @property
    def has_room(self) -> bool:
        """Whether the board is down to :data:`RESUME_SHARE` of :attr:`max_waiting`: the follower may read the
        review topic again."""
        return self.max_waiting is None or len(self.waiting) <= int(self.max_waiting * RESUME_SHARE)

    def all_reviews_read(self) -> None:
        """The review topic is read to its end: no decision can come before its item's review record any more."""
        self.reviews_unread = False
        self.decided_unread.clear()

    def prediction(self, item_id: str) -> Prediction | None:
        """The recent prediction for ``item_id``, None if none is remembered."""
        kept = self.recent.get(item_id)
        return None if kept is None else Prediction(*kept)

    def waiting_record(self, item_id: str) -> dict[str, Any] | None:
        """The record of an item waiting for review, None if it is not waiting."""
        raw = self.waiting.get(item_id)
        return None if raw is None else cast(dict[str, Any], json.loads(raw))

    def waiting_records(self, limit: int) -> list[tuple[str, dict[str, Any]]]:
        """The oldest ``limit`` items waiting for review, with their records."""
        return [(item_id, json.loads(raw)) for item_id, raw in itertools.islice(self.waiting.items(), limit)]

    def on_review(self, record: dict[str, Any], raw: bytes | None = None, *, own: bool = False) -> None:
        """An item the model was not sure of: it waits for a person; raises :class:`InvalidRecord` (nothing
        changed) for a record without what the page and a decision need. ``raw``: the record's JSON, if at hand.
        ``own``: the record is one this worker built (:attr:`published`), which needs no check."""
        item_id = str(record["id"]) if own else checked_review_id(record)
        if item_id in self.decided_unread:
            del self.decided_unread[item_id]  # decided before this record was read: it waits no more
        else:
            self.waiting[item_id] = _pack(record, WAITING_FIELDS)
        suggested, version = record["suggested_tag"], record["model_version"]
        self._remember(item_id, suggested, version, "model", "review", True, record, raw)

    def on_tagged(
        self, record: dict[str, Any], raw: bytes | None = None, *, own: bool = False, counted: bool = True
    ) -> None:
        """An item on the tagged topic: a person may later report its tag; raises :class:`InvalidRecord`
        (nothing changed) for a malformed record. ``raw``: the record's JSON, if at hand. ``own``: the record is
        one this worker built (:attr:`published`), which needs no check. ``counted``: the model's item was counted
        as shown (:attr:`Prediction.counted`)."""
        item_id = str(record["id"]) if own else checked_tagged_id(record)
        waited = self.waiting.pop(item_id, None) is not None
        if record.get("tagged_by") == "human":
            self._decided(item_id, waited)
            remember(self.human_tags, item_id, str(record["tag"]), self.recent_limit)
            if item_id in self.recent:
                return  # keep the model's prediction: feedback judges the model, not the reviewer
        else:
            self.human_tags.pop(item_id, None)
        tagged_by = record["tagged_by"]
        self._remember(item_id, record["tag"], record["model_version"], tagged_by, "tagged", counted, record, raw)

    def on_feedback(self, record: dict[str, Any]) -> Judgement:
        """A decision: the item stops waiting, and the model's prediction is judged against it; raises
        :class:`InvalidRecord` (nothing changed) for a malformed record."""
        item_id = checked_feedback_id(record)
        self._decided(item_id, self.waiting.pop(item_id, None) is not None)
        prediction = self.prediction(item_id)
        if prediction is None:
            return Judgement(record["verdict"], None, None, None, False, None)
        source = prediction.record
        label = {
            **{name: record.get(name) for name in ("id", "tag", "verdict", "reviewer", "decided_at")},
            "title": source.get("title"),
            "description": source.get("description"),
            "model_version": prediction.model_version,
        }
        if prediction.tagged_by != "model" or item_id in self.judged or not prediction.counted:
            # A person's tag, kept when the model's prediction was forgotten (counted, a correction would be found
            # "right"), a prediction judged once already, or an item not counted as shown (a report on it would
            # lower the precision of items it is not one of): the decision is a label, but judges no model.
            return Judgement(record["verdict"], None, None, None, False, label)
        remember(self.judged, item_id, None, self.recent_limit)
        correct = prediction.tag == record["tag"]
        return Judgement(record["verdict"], prediction.model_version, prediction.route, prediction.tag, correct, label)

    def _decided(self, item_id: str, waited: bool) -> None:
        """A decision names ``item_id``: remember it in :attr:`decided_unread` if its review record may be unread."""
        if waited or not self.reviews_unread:
            return
        kept = self.recent.get(item_id)
        if kept is not None and kept[3] == "review":
            return  # its review record was read (the decision came from this page, or after it)
        remember(self.decided_unread, item_id, None, self.recent_limit)

    def _remember(
        self,
        item_id: str,
        tag: str,
        model_version: str,
        tagged_by: str,
        route: str,
        counted: bool,
        record: dict[str, Any],
        raw: bytes | None,
    ) -> None:
        if raw is not None and len(raw) <= KEPT_RAW_BYTES:
            packed = raw  # its description fits: what packing would drop (scores, times) costs less than packing
        else:
            if isinstance(record.get("description"), str):
                record = {**record, "description": record["description"][:KEPT_DESCRIPTION_CHARS]}
            packed = _pack(record, KEPT_FIELDS)
        remember(self.recent, item_id, (tag, model_version, tagged_by, route, counted, packed), self.recent_limit)
        self.judged.pop(item_id, None)  # a new prediction for the item: not judged yet


def decide(
    board: ReviewBoard, form: Mapping[str, str], decided_at: str, reviewer: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Validate a signed-in ``reviewer``'s form and return ``(feedback record, tagged record)``; raises
    :class:`InvalidDecision`.

    The form has ``id``, ``tag`` and ``action``: ``review`` decides an item waiting for review (``accepted`` when
    the tag is the suggestion, else ``corrected``); ``report`` says a tagged item's tag is wrong and names the
    right one. The reviewer is who signed in, never a name typed in the form.
    """
    typed_id = form.get("id", "")
    tag = form.get("tag", "").strip()
    action = form.get("action", "review")
    if tag not in APPROVED_TAGS:
        raise InvalidDecision(f"tag must be one of {', '.join(APPROVED_TAGS)}")
    if not reviewer or len(reviewer) > MAX_REVIEWER_CHARS:
        raise InvalidDecision(f"reviewer must be 1 to {MAX_REVIEWER_CHARS} characters")
    if action == "review":
        # The page's own value, matched exactly: ids may have spaces around them, and "42" and " 42" are two items.
        item_id = typed_id
        record = board.waiting_record(item_id)
        if record is None:
            raise InvalidDecision(f"no item {item_id!r} is waiting for review")
        verdict = "accepted" if tag == record["suggested_tag"] else "corrected"
        model_version = str(record["model_version"])
    elif action == "report":
        # Typed by the reviewer: the id as typed, else without the spaces around it.
        item_id, prediction = typed_id, board.prediction(typed_id)
        if prediction is None:
            item_id = typed_id.strip()
            prediction = board.prediction(item_id)
        if prediction is None or item_id in board.waiting:
            raise InvalidDecision(f"no tagged item {item_id!r} is known to this worker")
        if tag == board.human_tags.get(item_id, prediction.tag):
            raise InvalidDecision(f"item {item_id!r} is already tagged {tag}")
        record, verdict, model_version = prediction.record, "reported", prediction.model_version
    else:
        raise InvalidDecision("action must be review or report")
    feedback = {
        "id": item_id,
        "tag": tag,
        "verdict": verdict,
        "reviewer": reviewer,
        "decided_at": decided_at,
        "model_version": model_version,
    }
    fields = {k: v for k, v in record.items() if k in ("id", "title", "description", "created_on", "source", "url")}
    tagged = {
        **fields,
        "tag": tag,
        "confidence": 1.0,
        "scores": {name: float(name == tag) for name in APPROVED_TAGS},
        "model_version": model_version,
        "tagged_by": "human",
        "dedupe_key": record["dedupe_key"],
        "processed_at": decided_at,
        "schema_version": SCHEMA_VERSION,
    }
    return feedback, tagged
