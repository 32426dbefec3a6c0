"""The review pages over HTTP, without a web framework: which requests are refused and what a decision publishes
(sessions and who may sign in: :mod:`.sessions`). The Faust views (:mod:`.views`) only turn aiohttp
requests into :class:`WebRequest` and back.

Routes (all refused with 403 unless the ``Host`` header is in ``TAGGER_REVIEW_ALLOWED_HOSTS``)::

    GET  /review            the waiting items; their forms only for a signed-in reviewer
    POST /review            a decision (signed in, form token of the session)
    GET  /review/sign-in    the sign-in form (accounts), or where to sign in (proxy)
    POST /review/sign-in    name and password (accounts); a few failures per address, then 429 for a while
    POST /review/sign-out   ends the session, on every worker (published to the sign-outs topic first)

A session is a cookie signed with HMAC-SHA256 (``HttpOnly``, ``SameSite=Strict``, ``Path=/review``, an expiry in
it and in ``Max-Age``); every visitor gets one, anonymous until sign-in, so the sign-in form has a token too. The
form token is an HMAC of the session's nonce; a sign-in or sign-out starts a new session and revokes the old one.
Until the worker has read the fleet's sign-outs (:mod:`.sign_outs`) to the end at start, every route answers 503.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import html
import logging
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Final

from aiokafka.errors import KafkaError

from stream_app.delivery.publish import encode
from stream_app.errors import InvalidDecision
from stream_app.review.accounts import MAX_NAME_CHARS, ReviewerAccounts
from stream_app.review.board import ReviewBoard, decide
from stream_app.review.markup import ItemText, Notice, render_page
from stream_app.review.records import MAX_REVIEWER_CHARS, feedback_signature
from stream_app.review.sessions import (
    MAX_FAILED_SIGN_INS_PER_NAME,
    KnownAddresses,
    Session,
    Sessions,
    SignInLimiter,
    client_address,
    host_allowed,
    proxy_user,
)
from stream_app.review.sign_outs import SignOuts
from stream_app.settings import Settings

log = logging.getLogger(__name__)

MAX_QUEUED_SIGN_INS: Final = 8
"""Sign-ins whose password check may wait or run at once (a check takes about 0.1 s of a core); past it, 503."""
KNOWN_ADDRESS_QUEUE: Final = 8
"""Room in the queue only for sign-ins from an address the named reviewer signed in from lately."""
HEADERS: Final = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
"""Sent with every review page: nothing cached, no script or frame, forms post only to this origin."""
PUBLISH_SECONDS: Final = 10.0
"""Longest wait for the broker to take a decision or a sign-out before the page says it has not: the producer
itself would wait many minutes. What it still holds may be sent later."""
NOT_SIGNED_OUT: Final = "Not signed out: the other workers could not be told (Kafka did not answer). Try again."
HOW_TO_ADD = (
    "Read-only: no reviewer is configured. Add one with <code>python -m stream_app.review.accounts add NAME</code> "
    "(it writes <code>TAGGER_REVIEWERS_FILE</code>), then sign in."
)


@dataclass(frozen=True)
class WebRequest:
    """What the review pages read of an HTTP request."""

    method: str
    path: str
    host: str
    peer: str | None
    cookie: str | None
    """The value of the session cookie, if sent."""
    form: Mapping[str, str] = field(default_factory=dict)
    origin: str | None = None
    proxy_user: str | None = None
    """The value of ``TAGGER_REVIEW_PROXY_HEADER``, if sent."""
    forwarded_for: str | None = None
    """The value of ``X-Forwarded-For``, if sent (read only on a connection from a trusted proxy)."""


@dataclass
class WebResponse:
    """A page, or a redirect, with the headers to send."""

    status: int
    body: str
    headers: dict[str, str] = field(default_factory=lambda: dict(HEADERS))


class ReviewSite:
    """The review pages of one worker: ``publish(key, feedback, tagged)`` sends a decision's two records, as JSON,
    under the item's id; ``publish_sign_out(key, value)`` sends a sign-out (:func:`.sign_outs.sign_out_record`),
    and ``signed_out`` holds the fleet's."""

    def __init__(
        self,
        settings: Settings,
        board: ReviewBoard,
        publish: Callable[[bytes, bytes, bytes], Awaitable[None]],
        decided_at: Callable[[], str],
        count_sign_in: Callable[[str], None] = lambda outcome: None,
        *,
        publish_sign_out: Callable[[bytes, bytes], Awaitable[None]],
        signed_out: SignOuts,
    ) -> None:
        self.settings = settings
        self.board = board
        self.publish = publish
        self.decided_at = decided_at
        self.count_sign_in = count_sign_in
        """Called with each sign-in's outcome: ``signed_in``, ``wrong`` or ``limited``."""
        self.sessions = Sessions(
            signed_out.secret,
            settings.review_session_hours * 3600.0,
            settings.review_secure_cookies,
            signed_out=signed_out,
        )
        self.publish_sign_out = publish_sign_out
        self.accounts = ReviewerAccounts(settings.reviewers_file) if settings.review_auth == "accounts" else None
        self.proxy_networks = settings.review_proxy_networks
        self.hosts = settings.review_hosts
        self.limiter = SignInLimiter()
        self.name_limiter = SignInLimiter(max_failures=MAX_FAILED_SIGN_INS_PER_NAME)
        """Failures per reviewer name, from addresses that name has not signed in from (:attr:`known_addresses`):
        a guesser with many addresses gets no more tries at one name than this."""
        self.known_addresses = KnownAddresses()
        self._deciding: set[str] = set()
        """Items whose decision is being published: a second decision on one meanwhile is refused."""
        # One thread: a password hash takes a core and 64 MiB for a fraction of a second, so sign-ins queue.
        self._auth_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="review-auth")
        self.checking = 0
        """Sign-ins whose password check is queued or running."""

    def refused_unread(self, request: WebRequest, content_type: str) -> WebResponse | None:
        """The answer to a form post refused before its body is read, or None: another host name, another site's
        form, or a body that is not URL-encoded (the pages' forms send nothing else, and a multipart body of a
        thousand parts held the event loop a third of a second to parse)."""
        refused = self._refused_host_or_origin(request)
        if refused is None and content_type != "application/x-www-form-urlencoded":
            refused = WebResponse(415, plain_page("Refused", "The form must be sent URL-encoded, as the pages do."))
        return refused

    def _refused_host_or_origin(self, request: WebRequest) -> WebResponse | None:
        if not host_allowed(request.host, self.hosts):
            return WebResponse(403, plain_page("Refused", "This page does not answer to that host name."))
        if request.method == "POST" and request.origin is not None:
            if request.origin.split("://", 1)[-1].lower() != request.host.lower():
                return WebResponse(403, plain_page("Refused", "The form was sent from another site."))
        return None

    async def handle(self, request: WebRequest) -> WebResponse:
        """Answer one request to a review route."""
        refused = self._refused_host_or_origin(request)
        if refused is not None:
            return refused
        if not self.sessions.signed_out.caught_up:
            # A session signed out on another worker, or before a restart, would count until then.
            return WebResponse(
                503, plain_page("Starting", "This worker is reading the reviewers' sign-outs: try again.")
            )
        if self.accounts is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.accounts.refresh)
        session = self.sessions.read(request.cookie)
        fresh = session is None
        session = session or self.sessions.new()
        named = proxy_user(request.peer, request.proxy_user, self.proxy_networks) if self.accounts is None else None
        if named is not None and session.reviewer != named:
            session, fresh = self.sessions.new(named), True
        response = await self._route(request, session, self._reviewer(session, named))
        if fresh and "Set-Cookie" not in response.headers:
            response.headers["Set-Cookie"] = self.sessions.cookie_header(session)
        return response

    async def _end_everywhere(self, session: Session) -> bool:
        """End ``session`` here and, published to the sign-outs topic first, on every worker; False, nothing
        ended, when the broker did not take the sign-out in :data:`PUBLISH_SECONDS`. The reviewer, still signed
        in, can try again, rather than be signed out here and not on the others. A session nobody signed in to
        grants nothing, and a proxy's reviewers sign in and out at the proxy: neither is published."""
        if session.reviewer and self.accounts is not None:
            try:
                await asyncio.wait_for(
                    self.publish_sign_out(*self.sessions.signed_out.record(session.nonce, session.expires)),
                    PUBLISH_SECONDS,
                )
            except (KafkaError, TimeoutError) as error:
                log.warning("a sign-out of %s was not published: %r", session.reviewer, error)
                return False
        self.sessions.revoke(session)
        return True

    def _reviewer(self, session: Session, named: str | None) -> str | None:
        """Who may decide: the session's reviewer if still in the accounts; with a proxy, the reviewer it names on
        this very request (a session alone is not enough)."""
        if not session.reviewer:
            return None
        if self.accounts is not None:
            # Still in the accounts, with the password it signed in with: a new password, or an account removed
            # and added again, ends the sessions of the old one.
            stamp = self.accounts.stamp(session.reviewer)
            return session.reviewer if stamp is not None and hmac.compare_digest(stamp, session.account) else None
        return session.reviewer if session.reviewer == named else None

    async def _route(self, request: WebRequest, session: Session, reviewer: str | None) -> WebResponse:
        method = "GET" if request.method == "HEAD" else request.method  # the server sends a HEAD's headers only
        route = (method, request.path.rstrip("/"))
        if route == ("GET", "/review"):
            return self._review_page(session, reviewer)
        if route == ("GET", "/review/sign-in"):
            return self._sign_in_page(session)
        if request.method != "POST" or route[1] not in ("/review", "/review/sign-in", "/review/sign-out"):
            return WebResponse(404, plain_page("Not found", ""))
        if not self.sessions.token_ok(session, request.form.get("csrf", "")):
            return WebResponse(403, plain_page("Refused", "The form is out of date or not from this site: reload it."))
        if route[1] == "/review/sign-in":
            return await self._sign_in(request, session)
        if route[1] == "/review/sign-out":
            if not await self._end_everywhere(session):
                return self._review_page(session, reviewer, NOT_SIGNED_OUT, status=503)
            return self._redirect("/review", self.sessions.new())
        if reviewer is None:
            return self._review_page(session, None, "Refused: sign in first.", status=403)
        try:
            feedback, tagged = decide(self.board, request.form, self.decided_at(), reviewer)
            feedback["signature"] = feedback_signature(self.sessions.signed_out.secret, feedback)
            key, values = _encoded(feedback, tagged)
        except InvalidDecision as error:
            return self._review_page(session, reviewer, f"Not saved: {error}", status=400)
        item_id = feedback["id"]
        if item_id in self._deciding:  # two reviewers, or a double click: both would be published
            busy = ("Not saved: ", ItemText(item_id), " is being decided")
            return self._review_page(session, reviewer, busy, status=409)
        self._deciding.add(item_id)
        # The send goes on when the page stops waiting for it: until it ends, the item is being decided (409),
        # so a second try cannot publish it twice.
        sending = asyncio.ensure_future(self.publish(key, *values))
        sending.add_done_callback(functools.partial(self._sent, item_id))
        try:
            await asyncio.wait_for(asyncio.shield(sending), PUBLISH_SECONDS)
        except TimeoutError:
            waited = (
                "Not saved yet: Kafka has not answered. ",
                ItemText(item_id),
                " is saved if it does; reload in a minute.",
            )
            return self._review_page(session, reviewer, waited, status=503)
        except KafkaError as error:
            log.warning("a decision on %r was not published: %r", item_id, error)
            return self._review_page(session, reviewer, "Not saved: Kafka refused it. Try again.", status=503)
        saved = ("Saved: ", ItemText(item_id), f" is {feedback['tag']} ({feedback['verdict']}).")
        return self._review_page(session, reviewer, saved)

    def _sent(self, item_id: str, sending: asyncio.Future[None]) -> None:
        """A decision's send has ended: the item is no longer being decided, and, if it was published, no longer
        waits (at once; the feedback record confirms it soon)."""
        self._deciding.discard(item_id)
        if not sending.cancelled() and sending.exception() is None:
            self.board.waiting.pop(item_id, None)

    async def _sign_in(self, request: WebRequest, session: Session) -> WebResponse:
        if self.accounts is None:
            return self._sign_in_page(session, "This worker takes reviewers from its proxy.", status=403)
        address = client_address(request.peer, request.forwarded_for, self.proxy_networks)
        name, password = request.form.get("name", "").strip(), request.form.get("password", "")
        limited_name = name[:MAX_NAME_CHARS]  # a longer name is never valid: the limiter keeps bounded keys
        stranger = not self.known_addresses.known(limited_name, address)
        if self.limiter.blocked(address) or (stranger and self.name_limiter.blocked(limited_name)):
            self.count_sign_in("limited")
            return self._sign_in_page(session, "Too many failed sign-ins: try again later.", status=429)
        if self.checking >= (MAX_QUEUED_SIGN_INS if stranger else MAX_QUEUED_SIGN_INS + KNOWN_ADDRESS_QUEUE):
            # Many addresses within their limits could still queue hours of password checks: the queue is
            # bounded, with room kept for reviewers at their usual addresses.
            self.count_sign_in("limited")
            return self._sign_in_page(session, "Too many sign-ins at once: try again in a minute.", status=503)
        self.limiter.count(address, limited_name)
        if stranger:
            self.name_limiter.count(limited_name)  # a success takes back this one only: others may be a guesser's
        self.checking += 1
        try:
            account = await asyncio.get_running_loop().run_in_executor(
                self._auth_thread, self.accounts.sign_in, name, password
            )
        finally:
            self.checking -= 1
        if account is None:
            log.warning("review sign-in refused for %r from %s", name[:MAX_REVIEWER_CHARS], address)
            self.count_sign_in("wrong")
            return self._sign_in_page(session, "Wrong name or password.", status=401)
        self.limiter.succeeded(address, limited_name)
        if stranger:
            self.name_limiter.withdraw(limited_name)
        self.known_addresses.signed_in(limited_name, address)
        # A new nonce: a session known before sign-in is worth nothing after it, on any worker.
        if not await self._end_everywhere(session):
            return self._sign_in_page(session, NOT_SIGNED_OUT, status=503)
        log.info("reviewer %s signed in from %s", name, address)
        self.count_sign_in("signed_in")
        return self._redirect("/review", self.sessions.new(name, account))

    def _review_page(
        self, session: Session, reviewer: str | None, notice: Notice = "", status: int = 200
    ) -> WebResponse:
        if reviewer is not None:
            read_only = ""
        elif self.accounts is None:
            read_only = "Read-only: sign in through this site's sign-in proxy to decide."
        elif not self.accounts.names:
            read_only = HOW_TO_ADD
        else:
            read_only = 'Read-only: <a href="/review/sign-in">sign in</a> to decide.'
        page = render_page(
            self.board,
            notice,
            reviewer=reviewer,
            csrf=self.sessions.form_token(session),
            read_only=read_only,
            sign_out=self.accounts is not None,
        )
        return WebResponse(status, page)

    def _sign_in_page(self, session: Session, notice: str = "", status: int = 200) -> WebResponse:
        status_html = f'<p role="status">{html.escape(notice)}</p>' if notice else ""
        if self.accounts is None:
            body = "<p>This worker takes reviewers from its sign-in proxy.</p>"
        elif not self.accounts.names:
            body = f"<p>{HOW_TO_ADD}</p>"
        else:
            token = html.escape(self.sessions.form_token(session))
            body = (
                f'<form method="post" action="/review/sign-in"><input type="hidden" name="csrf" value="{token}">'
                '<label for="name">Name</label> <input id="name" name="name" autocomplete="username" required> '
                '<label for="password">Password</label> '
                '<input id="password" name="password" type="password" autocomplete="current-password" required> '
                '<button type="submit">Sign in</button></form>'
            )
        return WebResponse(status, plain_page("Sign in", status_html + body))

    def _redirect(self, location: str, session: Session) -> WebResponse:
        response = WebResponse(303, plain_page("See other", f'<a href="{location}">Continue</a>'))
        response.headers["Location"] = location
        response.headers["Set-Cookie"] = self.sessions.cookie_header(session)
        return response


def _encoded(feedback: dict[str, Any], tagged: dict[str, Any]) -> tuple[bytes, tuple[bytes, bytes]]:
    """A decision's Kafka key and its two records as JSON, all made before either is sent: a feedback record
    alone would count a decision the tagged topic never shows. Raises :class:`InvalidDecision`."""
    try:
        return str(feedback["id"]).encode(), (encode(feedback), encode(tagged))
    except ValueError as error:  # UnicodeEncodeError: an unpaired surrogate in the item's text
        raise InvalidDecision(f"the item's record cannot be sent as UTF-8 JSON ({type(error).__name__})") from None


def plain_page(title: str, body: str) -> str:
    """A page of the review site's look with ``title`` and ``body`` (HTML, the caller's own)."""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>content-tagger {html.escape(title.lower())}</title></head>"
        f"<body><main><h1>{html.escape(title)}</h1>{body}</main></body></html>"
    )
