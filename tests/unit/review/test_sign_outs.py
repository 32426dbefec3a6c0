"""Sign-outs shared by the fleet: the topic's records read as hostile input, signed with the session secret, and
remembered until their session would have expired."""

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
from stream_app.review.sign_outs import LONGEST_SESSION_SECONDS, MAX_SIGNED_OUT, SignOuts
from stream_app.settings import Settings

NONCE = "0123456789abcdef0123456789abcdef"
SECRET = b"s" * 32


def test_a_sign_out_record_reads_back_as_the_session_it_ends() -> None:
    signed_out = SignOuts(SECRET, caught_up=True)
    assert signed_out.read(*signed_out.record(NONCE, 1_800_000_000.9)) == (NONCE, 1_800_000_000.0)


def valid_value() -> bytes:
    return SignOuts(SECRET, caught_up=True).record(NONCE, 1_800_000_000)[1]


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        (NONCE.encode(), None, "tombstone"),
        (None, valid_value(), "invalid_value"),
        (NONCE.upper().encode(), valid_value(), "invalid_value"),
        (NONCE[:-1].encode(), valid_value(), "invalid_value"),
        (NONCE.encode() + b"\n", valid_value(), "invalid_value"),
        (b"\xff" * 32, valid_value(), "invalid_value"),
        (NONCE.encode(), b"1800000000", "invalid_value"),  # no signature
        (NONCE.encode(), valid_value().replace(b"18", b"19", 1), "invalid_value"),  # another expiry
        (NONCE.encode(), SignOuts(b"t" * 32, caught_up=True).record(NONCE, 1_800_000_000)[1], "invalid_value"),
        (("f" * 32).encode(), valid_value(), "invalid_value"),  # another session
        (NONCE.encode(), b"-1." + b"0" * 64, "invalid_value"),
        (NONCE.encode(), b"nan." + b"0" * 64, "invalid_value"),
        (NONCE.encode(), b"9" * 13 + b"." + b"0" * 64, "invalid_value"),
        (NONCE.encode(), b"", "invalid_value"),
    ],
)
def test_a_malformed_or_unsigned_sign_out_is_refused_with_its_reason(
    key: bytes | None, value: bytes | None, reason: str
) -> None:
    with pytest.raises(InvalidRecord) as error:
        SignOuts(SECRET, caught_up=True).read(key, value)
    assert error.value.reason == reason


def test_a_sign_out_lasts_until_its_session_would_have_expired_and_no_longer() -> None:
    now = [1000.0]
    signed_out = SignOuts(SECRET, caught_up=True, clock=lambda: now[0])
    signed_out.add(NONCE, 500.0)  # its session has expired: nothing to remember
    assert NONCE not in signed_out and len(signed_out) == 0
    signed_out.add(NONCE, 2000.0)
    assert NONCE in signed_out
    now[0] = 2001.0
    signed_out.add("f" * 32, 3000.0)  # an addition drops what has expired
    assert NONCE not in signed_out and len(signed_out) == 1


def test_a_sign_out_dated_past_the_longest_session_is_kept_only_that_long() -> None:
    now = [1000.0]
    signed_out = SignOuts(SECRET, caught_up=True, clock=lambda: now[0])
    signed_out.add(NONCE, 1e12)
    now[0] += LONGEST_SESSION_SECONDS + 1
    signed_out.add("f" * 32, now[0] + 10)
    assert NONCE not in signed_out


def follower(tmp_path: Path, signed_out: SignOuts) -> tuple[ReviewFollower, CollectorRegistry, Settings]:
    settings, registry = Settings.from_env({}), CollectorRegistry()
    board, labels = ReviewBoard(10), LabelStore(tmp_path / "labels")
    return ReviewFollower(settings, board, Metrics(registry, (0.0, 1.0)), labels, signed_out), registry, settings


def test_the_follower_takes_sign_outs_from_their_topic_and_skips_malformed_ones(tmp_path: Path) -> None:
    signed_out = SignOuts(SECRET, caught_up=False)
    follow, registry, settings = follower(tmp_path, signed_out)
    sessions = Sessions(SECRET, 3600.0, secure=False, signed_out=signed_out)
    session = sessions.new("ann")
    cookie = sessions.cookie_header(session).split(";")[0].split("=", 1)[1]
    assert sessions.read(cookie) == session

    def record(key: bytes | None, value: bytes | None) -> ConsumerRecord[Any, Any]:
        return ConsumerRecord(settings.sign_outs_topic, 0, 0, 0, 0, key, value, None, 0, 0, [])

    follow.on_record(record(b"not a nonce", b"12"))
    follow.on_record(record(session.nonce.encode(), None))
    follow.on_record(record(*signed_out.record(session.nonce, session.expires)))
    assert sessions.read(cookie) is None
    labels = {"topic": "sign_outs", "reason": "invalid_value"}
    assert registry.get_sample_value("content_tagger_skipped_records_total", labels) == 1.0
    labels["reason"] = "tombstone"
    assert registry.get_sample_value("content_tagger_skipped_records_total", labels) == 1.0


def test_a_flood_of_sign_outs_without_the_secret_pushes_out_no_real_one(tmp_path: Path) -> None:
    """Anyone who may write to the topic could otherwise bring a signed-out cookie back: the memory is bounded,
    oldest forgotten first."""
    signed_out = SignOuts(SECRET, caught_up=True)
    follow, registry, settings = follower(tmp_path, signed_out)
    sessions = Sessions(SECRET, 3600.0, secure=False, signed_out=signed_out)
    session = sessions.new("ann")
    cookie = sessions.cookie_header(session).split(";")[0].split("=", 1)[1]
    follow.on_record(
        ConsumerRecord(
            settings.sign_outs_topic, 0, 0, 0, 0, *signed_out.record(session.nonce, session.expires), None, 0, 0, []
        )
    )
    forger = SignOuts(b"a guess at the secret, 32 chars.", caught_up=True)
    for n in range(MAX_SIGNED_OUT + 1):
        key, value = forger.record(f"{n:032x}", session.expires)
        follow.on_record(ConsumerRecord(settings.sign_outs_topic, 0, n + 1, 0, 0, key, value, None, 0, 0, []))
    assert sessions.read(cookie) is None and len(signed_out) == 1
    labels = {"topic": "sign_outs", "reason": "invalid_value"}
    assert registry.get_sample_value("content_tagger_skipped_records_total", labels) == MAX_SIGNED_OUT + 1


def test_live_sign_outs_are_all_kept_as_others_come_and_expired_ones_go() -> None:
    """Each sign-out refuses its session until that session's expiry, whatever is signed out after it: a sign-out
    forgotten early lets a revoked session in again."""
    now = [1000.0]
    signed_out = SignOuts(SECRET, caught_up=True, clock=lambda: now[0])
    nonces = [f"{n:032x}" for n in range(4)]
    signed_out.add(nonces[0], 1500.0)
    signed_out.add(nonces[1], 5000.0)
    now[0] = 1200.0
    signed_out.add(nonces[2], 6000.0)
    assert all(nonce in signed_out for nonce in nonces[:3])
    now[0] = 1600.0  # the first session has expired: only it goes
    signed_out.add(nonces[3], 7000.0)
    assert nonces[0] not in signed_out and all(nonce in signed_out for nonce in nonces[1:])
    now[0] = 4999.0
    signed_out.add("f" * 32, 8000.0)
    assert nonces[1] in signed_out  # a second before its session's expiry
