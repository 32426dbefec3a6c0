"""Sign-outs shared by the fleet: the topic's records read as hostile input, and remembered until their session
would have expired."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiokafka import ConsumerRecord
from prometheus_client import CollectorRegistry

from stream_app.errors import InvalidRecord
from stream_app.metrics import Metrics
from stream_app.review.board import ReviewBoard
from stream_app.review.follower import ReviewFollower
from stream_app.review.labels import LabelStore
from stream_app.review.sessions import Sessions
from stream_app.review.sign_outs import LONGEST_SESSION_SECONDS, SignOuts, read_sign_out, sign_out_record
from stream_app.settings import Settings

NONCE = "0123456789abcdef0123456789abcdef"


def test_a_sign_out_record_reads_back_as_the_session_it_ends() -> None:
    assert read_sign_out(*sign_out_record(NONCE, 1_800_000_000.9)) == (NONCE, 1_800_000_000.0)


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        (NONCE.encode(), None, "tombstone"),
        (None, b"1800000000", "invalid_value"),
        (NONCE.upper().encode(), b"1800000000", "invalid_value"),
        (NONCE[:-1].encode(), b"1800000000", "invalid_value"),
        (NONCE.encode() + b"\n", b"1800000000", "invalid_value"),
        (b"\xff" * 32, b"1800000000", "invalid_value"),
        (NONCE.encode(), b"-1", "invalid_value"),
        (NONCE.encode(), b"1e300", "invalid_value"),
        (NONCE.encode(), b"nan", "invalid_value"),
        (NONCE.encode(), b"9" * 13, "invalid_value"),
        (NONCE.encode(), b"", "invalid_value"),
    ],
)
def test_a_malformed_sign_out_is_refused_with_its_reason(key: bytes | None, value: bytes | None, reason: str) -> None:
    with pytest.raises(InvalidRecord) as error:
        read_sign_out(key, value)
    assert error.value.reason == reason


def test_a_sign_out_lasts_until_its_session_would_have_expired_and_no_longer() -> None:
    now = [1000.0]
    signed_out = SignOuts(clock=lambda: now[0])
    signed_out.add(NONCE, 500.0)  # its session has expired: nothing to remember
    assert NONCE not in signed_out and len(signed_out) == 0
    signed_out.add(NONCE, 2000.0)
    assert NONCE in signed_out
    now[0] = 2001.0
    signed_out.add("f" * 32, 3000.0)  # an addition drops what has expired
    assert NONCE not in signed_out and len(signed_out) == 1


def test_a_sign_out_dated_past_the_longest_session_is_kept_only_that_long() -> None:
    """A hostile record cannot pin a nonce in memory for ever: no session lasts longer than the setting allows."""
    now = [1000.0]
    signed_out = SignOuts(clock=lambda: now[0])
    signed_out.add(NONCE, 1e12)
    now[0] += LONGEST_SESSION_SECONDS + 1
    signed_out.add("f" * 32, now[0] + 10)
    assert NONCE not in signed_out


def test_the_follower_takes_sign_outs_from_their_topic_and_skips_malformed_ones(tmp_path: Path) -> None:
    settings = Settings.from_env({})
    registry = CollectorRegistry()
    signed_out = SignOuts(caught_up=False)
    follow = ReviewFollower(
        settings, ReviewBoard(10), Metrics(registry, (0.0, 1.0)), LabelStore(tmp_path / "labels"), signed_out
    )
    sessions = Sessions(b"k" * 32, 3600.0, secure=False, signed_out=signed_out)
    session = sessions.new("ann")
    cookie = sessions.cookie_header(session).split(";")[0].split("=", 1)[1]
    assert sessions.read(cookie) == session

    def record(key: bytes | None, value: bytes | None) -> ConsumerRecord[Any, Any]:
        return ConsumerRecord(settings.sign_outs_topic, 0, 0, 0, 0, key, value, None, 0, 0, [])

    follow.on_record(record(b"not a nonce", b"12"))
    follow.on_record(record(session.nonce.encode(), None))
    follow.on_record(record(*sign_out_record(session.nonce, session.expires)))
    assert sessions.read(cookie) is None
    labels = {"topic": "sign_outs", "reason": "invalid_value"}
    assert registry.get_sample_value("content_tagger_skipped_records_total", labels) == 1.0
    labels["reason"] = "tombstone"
    assert registry.get_sample_value("content_tagger_skipped_records_total", labels) == 1.0
