"""The review follower: every worker reads the review, tagged and feedback topics from their start into its review
board, counts the decisions made since it started (online precision) and keeps new decisions as labels. It reads
the reviewers' sign-outs topic from its start too (:mod:`~stream_app.review.sign_outs`).

Each record is handled on its own: a malformed one (a tombstone, not JSON, a missing or wrong field, an unknown
tag or verdict) is counted in ``content_tagger_skipped_records_total`` and skipped; the first of each kind, and
every 1000th, is logged with its offset (:class:`~stream_app.log_repeats.SkipTally`). The follower runs on every
worker and reads from the start on every start, so one record it could not survive would stop the whole fleet,
again on each restart.

The board holds at most ``TAGGER_REVIEW_BOARD_MAX_ITEMS`` items: when it is full, the follower pauses the review
partitions at the first record it did not hand over, reads the other topics on, and resumes when decisions have
freed room (:attr:`~stream_app.review.board.ReviewBoard.has_room`): however many items wait on the topic, a
worker holds at most that many, at every start too.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from stream_app.delivery.kafka import READ_COMMITTED, aiokafka_client
from stream_app.errors import InvalidRecord
from stream_app.faust_patches.metadata import topic_partitions
from stream_app.log_repeats import SkipTally
from stream_app.metrics import Metrics
from stream_app.review.board import ReviewBoard
from stream_app.review.labels import LabelStore, decision_keys
from stream_app.review.records import SIGNED_FEEDBACK_FIELDS, checked_signed_feedback_id, read_record
from stream_app.review.sign_outs import SignOuts
from stream_app.settings import Settings

log = logging.getLogger(__name__)

POLL_TIMEOUT_MS: Final = 500
FETCH_MIN_BYTES: Final = 64 * 1024
FETCH_MAX_WAIT_MS: Final = 100
"""The broker answers the follower's fetch once it holds this many bytes for it, or after this wait. Nothing on the
board needs to be fresher than that, while each fetch answered costs the event loop and the broker a round: a fetch
answered at the first byte would be answered after every batch the worker publishes, one record at a time at low
load (decision 0057)."""
PARTITIONS_CHECK_SECONDS: Final = 10.0
"""How often the follower looks for partitions added to its topics: a decision or a sign-out on one is read within
this, plus a poll, of the partition's creation."""


class ReviewFollower:
    """Hands the records of the review, tagged and feedback topics to the board, one at a time, and the sign-outs
    to :class:`SignOuts`; feedback waits until the review and tagged topics have caught up (review partitions
    paused for a full board count as caught up), so a decision finds the prediction it judges."""

    def __init__(
        self,
        settings: Settings,
        board: ReviewBoard,
        metrics: Metrics,
        labels: LabelStore,
        signed_out: SignOuts,
    ) -> None:
        self.board = board
        self.metrics = metrics
        self.labels = labels
        self.signed_out = signed_out
        self.roles = {
            settings.review_topic: "review",
            settings.tagged_topic: "tagged",
            settings.feedback_topic: "feedback",
            settings.sign_outs_topic: "sign_outs",
        }
        self.stored: set[tuple[str, str]] = set()
        """(id, decided_at) of the decisions already in the labelled store: not appended again."""
        self.held: list[tuple[ConsumerRecord[Any, Any], dict[str, Any]]] = []
        """Decisions read, checked and waiting for the review and tagged topics to be read: their signed fields."""
        self.taken: set[bytes] = set()
        """The first 16 bytes of the signature of each decision read since start."""
        self.skipped = SkipTally()
        """Records skipped since start, by role and reason."""
        self.counted_from: dict[TopicPartition, int] = {}
        """Per feedback and tagged partition, the first offset of the decisions and auto-tagged items this worker
        counts in its metrics: those before came before it started. Every start reads them again for the board,
        but a counter that counted them again would add the whole history to ``increase()`` at each restart."""

    def on_record(self, message: ConsumerRecord[Any, Any]) -> None:
        """Take one record of any of the four topics; a feedback record is held until :meth:`release`."""
        role = self.roles[message.topic]
        try:
            if role == "sign_outs":
                self.signed_out.add(*self.signed_out.read(message.key, message.value))
                return
            # Most review and tagged records are this worker's own, published moments ago: no parse, no check.
            own = None if role == "feedback" else self.board.published.take(message.value)
            record = read_record(message.value) if own is None else own
            if role == "review":
                self.board.on_review(record, message.value, own=own is not None)
            elif role == "tagged":
                # A report counts only on an item counted as shown: a report on one shown before this worker
                # started would lower the precision of items it is not one of (ReviewBoard.on_feedback).
                counted = record.get("tagged_by") == "model" and self.since_start(message)
                self.board.on_tagged(record, message.value, own=own is not None, counted=counted)
                if counted:
                    self.metrics.shown(str(record["model_version"]))
            else:
                self.held.append((message, self._checked_decision(record)))
        except InvalidRecord as error:
            self.skip(message, role, error.reason, str(error))
        except Exception as error:  # noqa: BLE001 - see skip_unexpected
            self.skip_unexpected(message, role, error)

    def _checked_decision(self, record: dict[str, Any]) -> dict[str, Any]:
        """A feedback record's signed fields, once its signature is checked and it was not read before; raises
        :class:`InvalidRecord`. Checked as it is read, not when released: a forged record would otherwise be held,
        whole and parsed, until the review and tagged topics are read (at every start, the whole feedback topic).
        Sent again, even with other unsigned fields, a decision would count again as a decision and judge the model
        again."""
        checked_signed_feedback_id(self.signed_out.secret, record)
        signature = bytes.fromhex(record["signature"])[:16]
        if signature in self.taken:
            raise InvalidRecord("repeated", "a decision already read")
        self.taken.add(signature)
        return {name: record[name] for name in SIGNED_FEEDBACK_FIELDS if name in record}

    def release(self) -> None:
        """Judge the held feedback records, in order, and append new decisions to the labelled store. A decision
        whose label cannot be written is skipped like a malformed record (every worker would stop on it at every
        start otherwise); one that failed for want of disk is appended at a later start, which reads it again."""
        held, self.held = self.held, []
        for message, record in held:
            try:
                judgement = self.board.on_feedback(record)
                key = (str(record["id"]), str(record["decided_at"]))
                if judgement.label and key not in self.stored:
                    self.labels.append(judgement.label)
                    self.stored.add(key)
            except InvalidRecord as error:
                self.skip(message, "feedback", error.reason, str(error))
                continue
            except Exception as error:  # noqa: BLE001 - see skip_unexpected
                self.skip_unexpected(message, "feedback", error)
                continue
            if self.since_start(message):
                self.metrics.judged(
                    judgement.verdict, judgement.model_version, judgement.route, judgement.predicted_tag,
                    judgement.correct,
                )  # fmt: skip

    def since_start(self, message: ConsumerRecord[Any, Any]) -> bool:
        """Whether ``message`` came after this worker started (:attr:`counted_from`), and so counts in its metrics."""
        # A TopicPartition is a named tuple: a plain tuple finds it, without making one per record.
        return bool(message.offset >= self.counted_from.get((message.topic, message.partition), 0))

    def skip_unexpected(self, message: ConsumerRecord[Any, Any], role: str, error: Exception) -> None:
        """Skip a record whose handling raised an error the board's checks did not foresee. Crashing instead would
        not retry anything useful: every worker would stop on the same record at every start."""
        self.skip(message, role, "unexpected", type(error).__name__)  # its text may quote the record

    def skip(self, message: ConsumerRecord[Any, Any], role: str, reason: str, detail: str) -> None:
        self.metrics.skipped(role, reason)
        seen = self.skipped.add((role, reason))
        if seen is not None:
            log.warning(
                "skipped a record of %s partition %s offset %s: %s (%d of this kind so far)",
                message.topic,
                message.partition,
                message.offset,
                detail,
                seen,
            )


def stored_decisions(path: Path) -> set[tuple[str, str]]:
    """(id, decided_at) of every decision in the labelled store at ``path``, those a later decision on the item
    replaced too (else they would be appended again at every start); none (logged) when it cannot be read, so that
    the follower goes on: its appends will fail and be skipped as such too, and be made at a later start."""
    try:
        return decision_keys(path)
    except OSError as error:
        log.error("cannot read the labelled store %s: %s; new decisions are appended as they come", path, error)
        return set()


async def follow_decisions(
    settings: Settings, board: ReviewBoard, metrics: Metrics, labels: LabelStore, signed_out: SignOuts
) -> None:
    """Read the review, tagged and feedback topics from their start, forever, into ``board``, and the sign-outs
    topic into ``signed_out``, which is :attr:`~SignOuts.caught_up` once read to the end it had at start."""
    follower = ReviewFollower(settings, board, metrics, labels, signed_out)
    follower.stored = await asyncio.get_running_loop().run_in_executor(None, stored_decisions, settings.labels_path)
    names = tuple(follower.roles)
    # A record of an aborted transaction (a batch published again after a failure) must not wait for a reviewer:
    # the board reads what the platform sees, as the index follower does.
    consumer = AIOKafkaConsumer(
        enable_auto_commit=False,
        # A topic deleted and made again starts over at offset 0: read it from there, not from its end.
        auto_offset_reset="earliest",
        fetch_min_bytes=FETCH_MIN_BYTES,
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        **READ_COMMITTED,
        **aiokafka_client(settings),
    )
    await consumer.start()
    try:
        while True:
            found = await topic_partitions(consumer, names)
            if set(found) == set(names):
                break
            await asyncio.sleep(1.0)  # the topics may not exist yet
        partitions = [TopicPartition(name, partition) for name, numbers in found.items() for partition in numbers]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        # Feedback waits for the review and tagged topics; the review pages wait for the sign-outs.
        catch_up = {tp: end for tp, end in ends.items() if tp.topic in (settings.review_topic, settings.tagged_topic)}
        # Until the review partitions are read to these, a decision may come before its item's review record.
        review_ends = {tp: end for tp, end in ends.items() if tp.topic == settings.review_topic}
        paused: set[TopicPartition] = set()
        sign_outs = {tp: end for tp, end in ends.items() if tp.topic == settings.sign_outs_topic}
        counted = (settings.feedback_topic, settings.tagged_topic)
        follower.counted_from = {tp: end for tp, end in ends.items() if tp.topic in counted}
        loop = asyncio.get_running_loop()
        checked_at = loop.time()
        while True:
            if loop.time() - checked_at >= PARTITIONS_CHECK_SECONDS:
                partitions = await _with_added_partitions(consumer, names, partitions)
                if paused:
                    consumer.pause(*paused)  # a new assignment reads every partition again
                checked_at = loop.time()
            for tp, records in (await consumer.getmany(timeout_ms=POLL_TIMEOUT_MS)).items():
                for message in records:
                    if tp.topic == settings.review_topic and board.full:
                        # The record and those after it stay on the topic: read from here once there is room.
                        consumer.seek(tp, message.offset)
                        consumer.pause(tp)
                        if not paused:
                            log.info(
                                "the review board holds %d items: later review items wait unread", len(board.waiting)
                            )
                        paused.add(tp)
                        board.not_loaded = board.reviews_unread = True
                        break
                    follower.on_record(message)
            if paused and board.has_room:
                consumer.resume(*paused)
                paused = set()
                board.not_loaded = False
                review_ends = await consumer.end_offsets([tp for tp in partitions if tp.topic == settings.review_topic])
            if sign_outs and all([await consumer.position(tp) >= end for tp, end in sign_outs.items()]):
                sign_outs = {}
            if not sign_outs and not signed_out.caught_up:
                signed_out.caught_up = True
                log.info("read the reviewers' sign-outs: %d sessions signed out; review pages open", len(signed_out))
            # A paused review partition is as read as it will be until decisions, which wait here, free room.
            if catch_up and all([tp in paused or await consumer.position(tp) >= end for tp, end in catch_up.items()]):
                catch_up = {}
            if not catch_up:
                follower.release()
            if (
                board.reviews_unread
                and not paused
                and all([await consumer.position(tp) >= end for tp, end in review_ends.items()])
            ):
                board.all_reviews_read()
            metrics.set_review_backlog(len(board.waiting))
            metrics.set_review_board_full(board.not_loaded)
    finally:
        await consumer.stop()


async def _with_added_partitions(
    consumer: AIOKafkaConsumer, names: tuple[str, ...], partitions: list[TopicPartition]
) -> list[TopicPartition]:
    """``partitions`` and those added to the topics ``names`` since, assigned to ``consumer``: the new ones read from
    their start, the others from where they were."""
    found = await topic_partitions(consumer, names)
    added = [
        TopicPartition(name, number) for name, numbers in found.items() for number in numbers
        if TopicPartition(name, number) not in partitions
    ]  # fmt: skip
    if not added:
        return partitions
    positions = {tp: await consumer.position(tp) for tp in partitions}
    consumer.assign([*partitions, *added])  # a new assignment forgets every position: each is sought again
    for tp, offset in positions.items():
        consumer.seek(tp, offset)
    await consumer.seek_to_beginning(*added)
    log.info("reading %d partitions added to %s", len(added), ", ".join(sorted({tp.topic for tp in added})))
    return [*partitions, *added]
