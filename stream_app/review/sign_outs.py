"""Sessions signed out anywhere in the fleet: a sign-out on one worker ends the session on every worker, and after
every restart, until the session would have expired anyway.

A sign-out is published to the compacted topic ``<app id>-sign-outs`` (key: the session's nonce, 32 hex digits;
value: the session's expiry, whole seconds since the epoch in ASCII digits, a ``.`` and the HMAC-SHA256 of both
under the session secret, in hex) before the reviewer is answered. Every worker's review follower reads the topic
from its start into its :class:`SignOuts`; until it has read to the end it knew at start
(:attr:`SignOuts.caught_up`), the review pages refuse to act on any session. A record that does not carry the
secret's signature is skipped: whoever may write to the topic but does not hold the secret cannot push real
sign-outs out of the bounded memory with made-up ones.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import re
import time
from collections.abc import Callable
from typing import Final

from stream_app.bounded import remember
from stream_app.errors import InvalidRecord

MAX_SIGNED_OUT: Final = 100_000
"""Most signed-out sessions remembered; past it the oldest are forgotten."""
LONGEST_SESSION_SECONDS: Final = 720 * 3600.0
"""The longest session ``TAGGER_REVIEW_SESSION_HOURS`` allows: the topic keeps a sign-out this long, and a record
that claims a later expiry is remembered only this long from now."""
_RECORD: Final = re.compile(rb"([0-9a-f]{32})\x00([0-9]{1,12})\.([0-9a-f]{64})")


class SignOuts:
    """The nonces of sessions signed out, each until its session's expiry; ``secret`` signs the sessions and the
    sign-out records."""

    def __init__(self, secret: bytes, *, caught_up: bool, clock: Callable[[], float] = time.time) -> None:
        self.secret = secret
        self.caught_up = caught_up
        """Whether every sign-out published before this worker started is known: sessions count only then."""
        self.clock = clock
        self._expiries: collections.OrderedDict[str, float] = collections.OrderedDict()

    def add(self, nonce: str, expires: float) -> None:
        """Refuse the session of ``nonce`` until ``expires`` (at most :data:`LONGEST_SESSION_SECONDS` from now)."""
        now = self.clock()
        if expires <= now:
            return  # the session has ended anyway
        # Sessions last as long as each other, so entries come roughly in order of expiry: drop expired ones from
        # the front (one that expires behind a later one waits at most a session's lifetime).
        while self._expiries and next(iter(self._expiries.values())) <= now:
            self._expiries.popitem(last=False)
        remember(self._expiries, nonce, min(expires, now + LONGEST_SESSION_SECONDS), MAX_SIGNED_OUT)

    def record(self, nonce: str, expires: float) -> tuple[bytes, bytes]:
        """The key and value of the sign-outs topic's record for a session."""
        when = str(int(expires))
        return nonce.encode(), f"{when}.{self._mac(nonce, when)}".encode()

    def read(self, key: bytes | None, value: bytes | None) -> tuple[str, float]:
        """The nonce and expiry of a sign-outs record; raises :class:`InvalidRecord` for anything else, a record
        signed under another secret included (the topic is hostile input like every other)."""
        if value is None:
            raise InvalidRecord("tombstone", "a sign-out without a value")
        found = _RECORD.fullmatch((key or b"") + b"\x00" + value)
        if found is None:
            raise InvalidRecord("invalid_value", "a sign-out is not a session nonce and a signed expiry")
        nonce, when, mac = (part.decode() for part in found.groups())
        if not hmac.compare_digest(mac, self._mac(nonce, when)):
            raise InvalidRecord("invalid_value", "a sign-out not signed with this worker's session secret")
        return nonce, float(when)

    def _mac(self, nonce: str, when: str) -> str:
        return hmac.new(self.secret, f"sign-out|{nonce}|{when}".encode(), hashlib.sha256).hexdigest()

    def __contains__(self, nonce: object) -> bool:
        return nonce in self._expiries

    def __len__(self) -> int:
        return len(self._expiries)
