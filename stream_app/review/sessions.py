"""Who is signed in to the review pages: sessions in HMAC-signed cookies with a form token each, the limits on
failed sign-ins per client address (read through a trusted proxy's ``X-Forwarded-For``) and per reviewer name,
the ``Host`` allow-list, and the user header of a trusted authenticating proxy."""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import hmac
import ipaddress
import os
import re
import secrets
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from stream_app.bounded import remember
from stream_app.errors import ConfigError
from stream_app.files import open_regular
from stream_app.review.records import MAX_REVIEWER_CHARS
from stream_app.review.sign_outs import SignOuts
from stream_app.settings import Secret

if TYPE_CHECKING:
    from stream_app.settings import Settings

COOKIE: Final = "tagger_review_session"
MAX_FAILED_SIGN_INS: Final = 5
"""Failed sign-ins from one address within :data:`FAILED_SIGN_IN_WINDOW_SECONDS` before it gets 429s."""
FAILED_SIGN_IN_WINDOW_SECONDS: Final = 900.0
MAX_FAILED_SIGN_INS_PER_NAME: Final = 20
"""Failed sign-ins naming one reviewer, from any addresses, within :data:`FAILED_SIGN_IN_WINDOW_SECONDS` before
that name gets 429s from the addresses it has not signed in from (:class:`KnownAddresses`)."""
KNOWN_ADDRESS_SECONDS: Final = 30 * 86400.0
"""How long an address a reviewer signed in from stays exempt from the limit on their name."""
KNOWN_ADDRESSES_PER_NAME: Final = 16
MAX_TRACKED: Final = 100_000
"""Most failing addresses or names remembered; past it the oldest are forgotten."""


@dataclass(frozen=True)
class Session:
    """One visitor's session: ``reviewer`` is empty until sign-in."""

    reviewer: str
    nonce: str
    expires: float
    account: str = ""
    """The reviewer's account stamp at sign-in (:func:`~stream_app.review.accounts.account_stamp`), empty when
    a proxy names the reviewer: the session ends when the account's password changes or the account goes."""


def session_secret(settings: Settings) -> bytes:
    """The key that signs sessions, sign-outs and decisions: ``TAGGER_REVIEW_SESSION_SECRET`` (see
    :func:`kept_session_secret` for a worker started without one), else a random one for this process."""
    return settings.review_session_secret.reveal().encode() or secrets.token_bytes(32)


KEPT_SECRET_FILE: Final = "review-session-secret"  # noqa: S105 - a file name, not a secret
"""Where, in ``TAGGER_DATA_DIR``, a worker without ``TAGGER_REVIEW_SESSION_SECRET`` keeps the key it made."""
_KEPT_SECRET: Final = re.compile(r"[0-9a-f]{64}")


def kept_session_secret(settings: Settings) -> Settings:
    """``settings`` with a ``TAGGER_REVIEW_SESSION_SECRET``: when it is unset, a random key made at the first start
    and kept in the data folder (:data:`KEPT_SECRET_FILE`, readable by its owner only), so that the decisions, sign-
    outs and sessions this worker signed still verify after a restart. Raises :class:`ConfigError` when the file
    cannot be made or read, holds anything but such a key, or is not private to the worker's user."""
    if settings.review_session_secret:
        return settings
    path = settings.data_dir / KEPT_SECRET_FILE

    def kept() -> str:
        with open_regular(path) as handle:
            _check_private(path, os.fstat(handle.fileno()))
            return handle.read(65).decode("ascii", "replace").strip()

    try:
        try:
            key = kept()
        except FileNotFoundError:
            made = path.with_name(f".{KEPT_SECRET_FILE}.{secrets.token_hex(8)}")
            descriptor = os.open(made, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as handle:
                handle.write(secrets.token_hex(32))
            try:
                os.link(made, path)  # whole, and only if no other process made one meanwhile
            except FileExistsError:
                pass
            finally:
                made.unlink()
            key = kept()
    except OSError as error:
        raise ConfigError(f"the review session key {path} cannot be kept: {error.strerror or error}") from error
    if _KEPT_SECRET.fullmatch(key) is None:
        raise ConfigError(f"{path} does not hold a review session key (64 hex digits): remove it to make a new one")
    return dataclasses.replace(settings, review_session_secret=Secret(key))


def _check_private(path: Path, status: os.stat_result) -> None:
    """Raise :class:`ConfigError` unless the kept key file is the worker's user's own and no one else may read or
    write it: anyone who can read the key can forge sessions and signed decisions (as ssh refuses such a key)."""
    if status.st_uid != os.geteuid():
        raise ConfigError(
            f"{path} belongs to another user (uid {status.st_uid}): remove it, and the worker's user makes a new one"
        )
    if status.st_mode & 0o077:
        raise ConfigError(
            f"{path} may be read or written by other users (mode {stat.S_IMODE(status.st_mode):04o}): "
            f"run chmod 600 {path}"
        )


class Sessions:
    """Issues, reads and revokes signed session cookies, and the form tokens bound to them."""

    def __init__(
        self,
        secret: bytes,
        lifetime_seconds: float,
        secure: bool,
        clock: Callable[[], float] = time.time,
        signed_out: SignOuts | None = None,
    ) -> None:
        self._secret = secret
        self.lifetime_seconds = lifetime_seconds
        self.secure = secure
        self.clock = clock
        self.signed_out = signed_out if signed_out is not None else SignOuts(secret, caught_up=True, clock=clock)
        """Sessions ended here, and, read from the sign-outs topic, on every worker of the fleet."""

    def new(self, reviewer: str = "", account: str = "") -> Session:
        return Session(reviewer, secrets.token_hex(16), float(int(self.clock() + self.lifetime_seconds)), account)

    def read(self, cookie: str | None) -> Session | None:
        """The session of a cookie value, or None when it is malformed, forged, expired or revoked."""
        # A cookie the worker signed is ASCII; aiohttp hands a byte that is not UTF-8 over as a lone surrogate,
        # which no encoder takes.
        if not cookie or len(cookie) > 1024 or not cookie.isascii():
            return None
        parts = cookie.split(".")
        if len(parts) != 5:
            return None
        name_hex, nonce, expires, account, mac = parts
        if not _same(mac, self._mac("session", name_hex, nonce, expires, account)):
            return None
        try:
            reviewer, deadline = bytes.fromhex(name_hex).decode(), float(expires)
        except ValueError:
            return None
        if deadline <= self.clock() or nonce in self.signed_out:
            return None
        return Session(reviewer, nonce, deadline, account)

    def cookie_header(self, session: Session) -> str:
        """The ``Set-Cookie`` value that gives the browser ``session``."""
        name_hex, expires, account = session.reviewer.encode().hex(), str(int(session.expires)), session.account
        mac = self._mac("session", name_hex, session.nonce, expires, account)
        value = ".".join((name_hex, session.nonce, expires, account, mac))
        max_age = max(0, int(session.expires - self.clock()))
        secure = "; Secure" if self.secure else ""
        return f"{COOKIE}={value}; Path=/review; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"

    def form_token(self, session: Session) -> str:
        """The token every form of this session carries."""
        return self._mac("form", session.nonce)

    def token_ok(self, session: Session, token: str) -> bool:
        return _same(token, self.form_token(session))

    def revoke(self, session: Session) -> None:
        """Refuse ``session`` on this worker from now on, until it would have expired anyway (a sign-out also
        publishes it, for the others: :mod:`~stream_app.review.sign_outs`). A session nobody signed in to is not
        kept: it grants nothing, and anyone could sign out such sessions until a reviewer's revocation was pushed
        out of the list."""
        if session.reviewer:
            self.signed_out.add(session.nonce, session.expires)

    def _mac(self, purpose: str, *parts: str) -> str:
        return hmac.new(self._secret, "|".join((purpose, *parts)).encode(), hashlib.sha256).hexdigest()


def _same(given: str, expected: str) -> bool:
    """Whether ``given`` is ``expected``, in time that does not tell how much of it matched; any text, so a cookie
    or a form field with non-ASCII text is refused, not an error (``compare_digest`` takes ASCII ``str`` only)."""
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode())


class SignInLimiter:
    """Counts failed sign-ins per key (a client address, or a reviewer name); too many within the window refuse
    further tries. An attempt counts as failed from before its password is checked (:meth:`attempt`) until it
    succeeds, so attempts sent at once, all waiting for the check, are limited too. Each failure keeps the name it
    tried, so that a success forgives the reviewer's own typos and no one else's (:meth:`succeeded`)."""

    def __init__(
        self,
        max_failures: int = MAX_FAILED_SIGN_INS,
        window_seconds: float = FAILED_SIGN_IN_WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window_seconds = window_seconds
        self.clock = clock
        self._failures: collections.OrderedDict[str, list[tuple[float, str]]] = collections.OrderedDict()

    def blocked(self, key: str) -> bool:
        return len(self._recent(key)) >= self.max_failures

    def attempt(self, key: str, name: str = "") -> bool:
        """Count a sign-in for ``key`` as failed, before its password is checked; False, counting nothing, when
        the key is :meth:`blocked`."""
        if self.blocked(key):
            return False
        self.count(key, name)
        return True

    def count(self, key: str, name: str = "") -> None:
        """Count a sign-in for ``key``, trying ``name``, as failed, before its password is checked, whether or not
        it is :meth:`blocked` (the caller has asked)."""
        remember(self._failures, key, [*self._recent(key), (self.clock(), name)], MAX_TRACKED)

    def succeeded(self, key: str, name: str = "") -> None:
        """Forget the failures of ``key`` that tried ``name``: this attempt, and the reviewer's typos before it.
        Failures that tried other names stay: one address signing in now and then to an account of its own would
        otherwise clear its guesses at everyone else's."""
        kept = [failure for failure in self._recent(key) if failure[1] != name]
        if kept:
            self._failures[key] = kept
        else:
            self._failures.pop(key, None)

    def withdraw(self, key: str) -> None:
        """Take back one attempt counted for ``key``, which succeeded, and no other: those may be someone else's."""
        failures = self._failures.get(key)
        if failures:
            failures.pop()

    def _recent(self, key: str) -> list[tuple[float, str]]:
        since = self.clock() - self.window_seconds
        return [failure for failure in self._failures.get(key, ()) if failure[0] > since]


class KnownAddresses:
    """The client addresses each reviewer signed in from within :data:`KNOWN_ADDRESS_SECONDS`, at most
    :data:`KNOWN_ADDRESSES_PER_NAME` each (the latest): guesses at a name from many addresses lock that name for
    strangers only, not for the reviewer at their usual address. Only names that signed in are kept."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._seen: collections.OrderedDict[str, collections.OrderedDict[str, float]] = collections.OrderedDict()

    def known(self, name: str, address: str) -> bool:
        addresses = self._seen.get(name)
        seen = addresses.get(address) if addresses is not None else None
        return seen is not None and seen > self.clock() - KNOWN_ADDRESS_SECONDS

    def signed_in(self, name: str, address: str) -> None:
        addresses = self._seen.get(name, collections.OrderedDict())
        remember(addresses, address, self.clock(), KNOWN_ADDRESSES_PER_NAME)
        remember(self._seen, name, addresses, MAX_TRACKED)


def host_allowed(host: str, allowed: frozenset[str]) -> bool:
    """Whether a ``Host`` header names one of ``allowed`` (entries ``name`` match any port, ``name:port`` one)."""
    host = host.strip().lower()
    if host in allowed:
        return True
    if host.startswith("["):
        end = host.find("]") + 1  # 0 when there is no "]": no name
        name, port = host[:end], host[end:]
    else:
        before, colon, after = host.rpartition(":")
        name, port = (before, colon + after) if colon else (host, "")
    # What follows the name is a port or nothing: "[::1]evil" or "localhost:x" names no allowed host.
    return bool(name) and name in allowed and (port == "" or (port.startswith(":") and _is_port(port[1:])))


def _is_port(text: str) -> bool:
    """Whether ``text`` is a TCP port as a ``Host`` header writes it: ASCII digits (``str.isdigit`` also takes
    "٣" and "¹"), from 1 to 65535."""
    return 0 < len(text) <= 5 and text.isascii() and text.isdigit() and 0 < int(text) <= 65535


Networks = tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]

IPV6_CLIENT_PREFIX: Final = 64
"""An IPv6 client is counted by its /64: one host commonly holds a whole /64, and could change address per try."""


def client_address(peer: str | None, forwarded_for: str | None, networks: Networks) -> str:
    """The address whose failed sign-ins count together: the connection's, or, on a connection from one of
    ``networks`` (the trusted proxies), the last address in ``X-Forwarded-For`` that is not one of them. Entries
    further left are the client's own to write, so they are never read. An IPv6 address counts as its
    :data:`IPV6_CLIENT_PREFIX` network; "unknown" when there is no address at all."""
    address = _ip(peer)
    if address is None:
        return peer or "unknown"
    if forwarded_for and _trusted(address, networks):
        for entry in reversed(forwarded_for.split(",")):
            hop = _ip(entry.strip())
            if hop is None:
                break  # not written by a trusted proxy: count the request as the proxy's
            address = hop
            if not _trusted(hop, networks):
                break
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, IPV6_CLIENT_PREFIX), strict=False))
    return str(address)


def _ip(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address in ``text``: a bare address, or one with a port as some proxies write it (``1.2.3.4:5``,
    ``[::1]:5``); an IPv4-mapped IPv6 address (a dual-stack socket's) as its IPv4 address; None if there is
    none."""
    if not text:
        return None
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return mapped or address


def _trusted(address: ipaddress.IPv4Address | ipaddress.IPv6Address, networks: Networks) -> bool:
    return any(address in network for network in networks)


def proxy_user(peer: str | None, header: str | None, networks: Networks) -> str | None:
    """The reviewer a trusted proxy names, or None when the request is not from one of ``networks`` or names
    nobody usable."""
    address = _ip(peer)
    if address is None or header is None or not _trusted(address, networks):
        return None
    name = header.strip()
    if not 0 < len(name) <= MAX_REVIEWER_CHARS or not name.isprintable():
        return None
    return name
