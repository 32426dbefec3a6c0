"""The review pages without a server: only a signed-in reviewer decides, with the session's form token, on an
allowed host; every refusal publishes nothing; sessions are signed, expire and end on sign-out; sign-in failures
are limited per client address and per name; a proxy's user header and X-Forwarded-For count only from the
proxy's addresses."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from aiokafka.errors import KafkaTimeoutError
from multidict import CIMultiDict

from stream_app.errors import ConfigError
from stream_app.review import page
from stream_app.review.accounts import add_reviewer, remove_reviewer
from stream_app.review.board import ReviewBoard
from stream_app.review.page import MAX_QUEUED_SIGN_INS, ReviewSite, WebRequest, WebResponse
from stream_app.review.records import checked_signed_feedback_id, feedback_signature
from stream_app.review.sessions import (
    COOKIE,
    KEPT_SECRET_FILE,
    KNOWN_ADDRESS_SECONDS,
    KNOWN_ADDRESSES_PER_NAME,
    MAX_FAILED_SIGN_INS_PER_NAME,
    KnownAddresses,
    Sessions,
    SignInLimiter,
    client_address,
    host_allowed,
    kept_session_secret,
    proxy_user,
    session_secret,
)
from stream_app.review.sign_outs import MAX_SIGNED_OUT, SignOuts
from stream_app.review.views import _web_request
from stream_app.settings import Settings
from tests.unit.review.test_board import NOW, review_record, tagged_record

PASSWORD = "correct horse battery"
WRONG = "wrong password!"


class Site:
    """A review site on a board with items "a" and "b", recording what it publishes, with a browser's cookie."""

    def __init__(self, tmp_path: Path, reviewers: bool = True, signed_out: SignOuts | None = None, **env: str) -> None:
        accounts = tmp_path / "reviewers"
        if reviewers:
            add_reviewer(accounts, "ann", PASSWORD)
        settings = Settings.from_env({"TAGGER_REVIEWERS_FILE": str(accounts), **env})
        self.board = ReviewBoard(recent_limit=10)
        self.board.on_review(review_record("a"))
        self.board.on_review(review_record("b"))
        self.published: list[tuple[dict[str, Any], dict[str, Any]]] = []

        async def publish(key: bytes, feedback: bytes, tagged: bytes) -> None:
            self.published.append((json.loads(feedback), json.loads(tagged)))
            assert key == str(self.published[-1][0]["id"]).encode()

        self.sign_outs: list[tuple[bytes, bytes]] = []
        self.sign_out_fails = False

        async def publish_sign_out(key: bytes, value: bytes) -> None:
            if self.sign_out_fails:
                raise KafkaTimeoutError()
            self.sign_outs.append((key, value))

        self.signed_out = signed_out if signed_out is not None else SignOuts(session_secret(settings), caught_up=True)
        self.site = ReviewSite(
            settings, self.board, publish, lambda: NOW, publish_sign_out=publish_sign_out, signed_out=self.signed_out
        )
        self.cookie: str | None = None

    def request(
        self, method: str, path: str, form: dict[str, str] | None = None, host: str = "127.0.0.1:6066", **kw: Any
    ) -> WebResponse:
        """One request; with the browser's cookie (kept from the answer) unless ``cookie`` is given."""
        browser = "cookie" not in kw
        kw.setdefault("peer", "127.0.0.1")
        kw.setdefault("cookie", self.cookie)
        response = asyncio.run(self.site.handle(WebRequest(method, path, host, form=form or {}, **kw)))
        cookie = response.headers.get("Set-Cookie")
        if browser and cookie is not None:
            self.cookie = cookie.split(";")[0].split("=", 1)[1]
        return response

    def token(self, path: str = "/review") -> str:
        page = self.request("GET", path).body
        return page.split('name="csrf" value="')[1].split('"')[0]

    def sign_in(
        self, name: str = "ann", password: str = PASSWORD, peer: str = "127.0.0.1", forwarded_for: str | None = None
    ) -> WebResponse:
        token = self.token("/review/sign-in")
        form = {"csrf": token, "name": name, "password": password}
        return self.request("POST", "/review/sign-in", form, peer=peer, forwarded_for=forwarded_for)


def test_a_signed_in_reviewer_decides_and_the_decision_names_them(tmp_path: Path) -> None:
    site = Site(tmp_path)
    assert "<form" not in site.request("GET", "/review").body
    signed_in = site.sign_in()
    assert signed_in.status == 303 and signed_in.headers["Location"] == "/review"
    cookie = signed_in.headers["Set-Cookie"]
    assert cookie.startswith(COOKIE + "=") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert 28_700 < int(cookie.split("Max-Age=")[1].split(";")[0]) <= 8 * 3600
    page = site.request("GET", "/review").body
    assert "Signed in as <strong>ann</strong>" in page
    response = site.request("POST", "/review", {"csrf": site.token(), "id": "a", "tag": "mlops", "reviewer": "eve"})
    assert response.status == 200 and "Saved: <bdi>a</bdi> is mlops (accepted)." in response.body
    ((feedback, tagged),) = site.published
    assert feedback["reviewer"] == "ann" and feedback["id"] == "a" and tagged["tagged_by"] == "human"
    assert "a" not in site.board.waiting
    # Signed with the session secret, which every worker's follower checks before it takes the decision.
    assert checked_signed_feedback_id(site.signed_out.secret, feedback) == "a"


def test_no_session_a_wrong_token_another_host_or_another_origin_publish_nothing(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.sign_in()
    token = site.token()
    decision = {"csrf": token, "id": "a", "tag": "mlops"}
    assert site.request("POST", "/review", decision, cookie=None).status == 403
    assert site.request("POST", "/review", {**decision, "csrf": "0" * 64}).status == 403
    assert site.request("POST", "/review", {"id": "a", "tag": "mlops"}).status == 403
    assert site.request("POST", "/review", decision, host="evil.example:6066").status == 403
    assert site.request("POST", "/review", decision, host="evil.example").status == 403
    assert site.request("GET", "/review", host="rebound.example:6066").status == 403
    assert site.request("POST", "/review", decision, origin="http://evil.example").status == 403
    assert site.cookie is not None
    name_hex, nonce, expires, account, mac = site.cookie.split(".")
    longer = ".".join((name_hex, nonce, str(int(expires) + 86400), account, mac))
    assert site.request("POST", "/review", decision, cookie=longer).status == 403
    other_account = ".".join((name_hex, nonce, expires, "0" * len(account), mac))
    assert site.request("POST", "/review", decision, cookie=other_account).status == 403
    assert site.published == []
    assert site.request("POST", "/review", decision).status == 200  # the same form from the session goes through


def test_a_wrong_password_or_an_unknown_name_signs_nobody_in(tmp_path: Path) -> None:
    site = Site(tmp_path)
    for name, password in (("ann", WRONG), ("bob", PASSWORD), ("ann", "")):
        response = site.sign_in(name, password)
        assert response.status == 401 and "Wrong name or password." in response.body
    assert "Signed in" not in site.request("GET", "/review").body
    token = site.token("/review/sign-in")  # a valid token of the anonymous session
    assert site.request("POST", "/review", {"csrf": token, "id": "a", "tag": "mlops"}).status == 403
    assert site.published == []


def test_repeated_failures_from_one_address_are_refused_for_a_while(tmp_path: Path) -> None:
    site = Site(tmp_path)
    for _ in range(5):
        assert site.sign_in("ann", WRONG, peer="10.0.0.9").status == 401
    assert site.sign_in(peer="10.0.0.9").status == 429  # even the right password
    assert site.sign_in(peer="10.0.0.8").status == 303  # another address is not held back


def test_a_reviewer_s_own_sign_ins_do_not_clear_an_address_s_guesses_at_other_names(tmp_path: Path) -> None:
    """A success forgives the typos made at its own name, not guesses at everyone else's: an address holding one
    account (or sharing a NAT with a reviewer) would otherwise guess without limit, signing in between rounds."""
    site = Site(tmp_path)
    statuses = []
    for round_ in range(2):
        statuses += [site.sign_in(f"guess{round_}{n}", WRONG, peer="10.0.0.9").status for n in range(2)]
        statuses.append(site.sign_in(peer="10.0.0.9").status)
    statuses.append(site.sign_in("guess9", WRONG, peer="10.0.0.9").status)
    assert statuses == [401, 401, 303, 401, 401, 303, 401]
    assert site.sign_in("guess10", WRONG, peer="10.0.0.9").status == 429  # 5 guesses at other names
    assert site.sign_in(peer="10.0.0.9").status == 429


def test_a_reviewer_s_own_typos_are_forgiven_when_they_sign_in(tmp_path: Path) -> None:
    site = Site(tmp_path)
    for _ in range(4):
        assert site.sign_in("ann", WRONG, peer="10.0.0.9").status == 401
    assert site.sign_in(peer="10.0.0.9").status == 303
    for _ in range(4):  # four more typos within the window: the first four no longer count
        assert site.sign_in("ann", WRONG, peer="10.0.0.9").status == 401
    assert site.sign_in(peer="10.0.0.9").status == 303


def test_behind_a_trusted_proxy_failures_count_per_client_and_a_forged_entry_changes_nothing(tmp_path: Path) -> None:
    """Every client of a reverse proxy connects from its address: read through the proxy's X-Forwarded-For, one
    client's failures do not lock the others out, and what a client writes into the header itself is not read."""
    site = Site(tmp_path, TAGGER_REVIEW_PROXY_ADDRESSES="10.0.0.5")
    for attempt in range(5):
        forged = f"192.0.2.{attempt}, " if attempt % 2 else ""  # the client's own header, the proxy's entry after it
        assert site.sign_in("ann", WRONG, peer="10.0.0.5", forwarded_for=f"{forged}203.0.113.7").status == 401
    assert site.sign_in(peer="10.0.0.5", forwarded_for="203.0.113.7").status == 429
    assert site.sign_in(peer="10.0.0.5", forwarded_for="203.0.113.7, 203.0.113.8").status == 303
    assert site.sign_in(peer="10.0.0.5", forwarded_for="203.0.113.9").status == 303


def test_a_forwarded_for_header_counts_only_from_a_trusted_proxy(tmp_path: Path) -> None:
    untrusted = Site(tmp_path / "none")  # TAGGER_REVIEW_PROXY_ADDRESSES unset: the header is the client's
    other = Site(tmp_path / "other", TAGGER_REVIEW_PROXY_ADDRESSES="10.0.0.5")  # a peer that is not the proxy
    for site, peer in ((untrusted, "10.0.0.5"), (other, "10.0.0.6")):
        for attempt in range(5):
            assert site.sign_in("ann", WRONG, peer=peer, forwarded_for=f"203.0.113.{attempt}").status == 401
        assert site.sign_in(peer=peer, forwarded_for="203.0.113.99").status == 429


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "counted_as"),
    [
        ("10.0.0.9", None, "10.0.0.9"),
        ("10.0.0.9", "203.0.113.7", "10.0.0.9"),  # not a trusted proxy
        ("10.0.0.5", None, "10.0.0.5"),
        ("10.0.0.5", "203.0.113.7", "203.0.113.7"),
        ("10.0.0.5", "198.51.100.1, 203.0.113.7", "203.0.113.7"),
        ("10.0.0.5", "198.51.100.1, 203.0.113.7, 10.0.0.4", "203.0.113.7"),  # through two trusted proxies
        ("10.0.0.5", "10.0.0.4", "10.0.0.4"),  # only trusted hops
        ("10.0.0.5", "203.0.113.7:5123", "203.0.113.7"),
        ("10.0.0.5", "[2001:db8:1:2::7]:5123", "2001:db8:1:2::/64"),
        ("10.0.0.5", "203.0.113.7, unknown", "10.0.0.5"),  # an entry no proxy writes: the proxy's address
        ("10.0.0.5", "", "10.0.0.5"),
        ("2001:db8:1:2:aa:bb:cc:dd", None, "2001:db8:1:2::/64"),  # one host may hold the whole /64
        ("::ffff:10.0.0.9", None, "10.0.0.9"),
        ("::ffff:10.0.0.5", "203.0.113.7", "203.0.113.7"),  # the proxy through a dual-stack socket
        ("not an address", None, "not an address"),
        (None, None, "unknown"),
    ],
)
def test_the_address_a_sign_in_counts_for(peer: str | None, forwarded_for: str | None, counted_as: str) -> None:
    networks = Settings.from_env({"TAGGER_REVIEW_PROXY_ADDRESSES": "10.0.0.4/31"}).review_proxy_networks
    assert client_address(peer, forwarded_for, networks) == counted_as


def test_a_proxy_on_a_dual_stack_socket_is_trusted_under_its_ipv4_address() -> None:
    networks = Settings.from_env({"TAGGER_REVIEW_PROXY_ADDRESSES": "10.0.0.5"}).review_proxy_networks
    assert proxy_user("::ffff:10.0.0.5", "ann", networks) == "ann"
    assert proxy_user("::ffff:10.0.0.6", "ann", networks) is None


def test_an_aiohttp_request_gives_every_forwarded_for_header_in_order(tmp_path: Path) -> None:
    """A proxy may add a header of its own rather than append to the client's: both are read, in order."""
    site = Site(tmp_path, TAGGER_REVIEW_PROXY_ADDRESSES="10.0.0.5").site
    headers = CIMultiDict([("X-Forwarded-For", "192.0.2.1"), ("X-Forwarded-For", "203.0.113.7"), ("Host", "h")])
    request = _web_request(make_mocked_request("POST", "/review/sign-in", headers=headers), site, {})
    assert request.forwarded_for == "192.0.2.1,203.0.113.7"
    assert client_address("10.0.0.5", request.forwarded_for, site.proxy_networks) == "203.0.113.7"
    plain = _web_request(make_mocked_request("GET", "/review", headers=CIMultiDict(Host="h")), site, {})
    assert plain.forwarded_for is None


def test_a_user_header_sent_twice_names_nobody(tmp_path: Path) -> None:
    """A proxy that adds its user header after the client's leaves the client's first: it must not be believed."""
    site = Site(tmp_path, reviewers=False, TAGGER_REVIEW_AUTH="proxy", TAGGER_REVIEW_PROXY_ADDRESSES="10.0.0.5").site
    forged = CIMultiDict([("X-Forwarded-User", "ann"), ("X-Forwarded-User", "eve"), ("Host", "h")])
    assert _web_request(make_mocked_request("POST", "/review", headers=forged), site, {}).proxy_user is None
    once = CIMultiDict([("X-Forwarded-User", "eve"), ("Host", "h")])
    assert _web_request(make_mocked_request("POST", "/review", headers=once), site, {}).proxy_user == "eve"


def test_concurrent_sign_ins_from_one_address_get_no_more_password_checks_than_the_limit(tmp_path: Path) -> None:
    """A password check takes a while on its thread: each attempt counts from its start, or a burst sent at once
    would all be checked before the first failure counted."""
    site = Site(tmp_path)
    token = site.token("/review/sign-in")
    form = {"csrf": token, "name": "ann", "password": WRONG}

    async def burst() -> list[WebResponse]:
        request = WebRequest("POST", "/review/sign-in", "127.0.0.1:6066", "10.0.0.9", site.cookie, form)
        return await asyncio.gather(*(site.site.handle(request) for _ in range(8)))

    assert sorted(response.status for response in asyncio.run(burst())) == [401] * 5 + [429] * 3
    assert site.sign_in(peer="10.0.0.9").status == 429  # even the right password
    assert site.sign_in(peer="10.0.0.8").status == 303


def test_password_checks_queue_to_a_bound_with_room_kept_for_a_reviewer_at_a_known_address(tmp_path: Path) -> None:
    """Strangers each within their address's and name's limits (many addresses, a new name each time) could still
    queue hours of password checks; past the bound they get 503, and the reviewer at an address they signed in
    from before still gets in."""
    site = Site(tmp_path)
    assert site.sign_in(peer="10.0.0.1").status == 303  # ann's known address from now on
    token, cookie = site.token("/review/sign-in"), site.cookie
    strangers = MAX_QUEUED_SIGN_INS + 3
    HOST = "127.0.0.1:6066"

    def attempt(peer: str, name: str, password: str) -> asyncio.Task[WebResponse]:
        form = {"csrf": token, "name": name, "password": password}
        return asyncio.ensure_future(site.site.handle(WebRequest("POST", "/review/sign-in", HOST, peer, cookie, form)))

    async def until(condition: Callable[[], bool]) -> None:
        deadline = asyncio.get_running_loop().time() + 30
        while not condition():
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.01)

    async def flood() -> tuple[list[int], int]:
        release = threading.Event()
        # The checks' one thread held until every request has been answered or queued: what a slow host does.
        blocked = site.site._auth_thread.submit(release.wait)
        try:
            guesses = [attempt(f"2001:db8:0:{n:x}::1", f"x{n}", WRONG) for n in range(strangers)]
            await until(lambda: sum(task.done() for task in guesses) == strangers - MAX_QUEUED_SIGN_INS)
            ann = attempt("10.0.0.1", "ann", PASSWORD)
            await until(lambda: site.site.checking == MAX_QUEUED_SIGN_INS + 1)
        finally:
            release.set()
        blocked.result()
        return sorted([(await task).status for task in guesses]), (await ann).status

    statuses, ann = asyncio.run(flood())
    assert statuses == [401] * MAX_QUEUED_SIGN_INS + [503] * (strangers - MAX_QUEUED_SIGN_INS)
    assert ann == 303


def test_a_new_password_or_an_account_removed_and_added_again_ends_the_old_sessions(tmp_path: Path) -> None:
    """An operator who changes a leaked password, or removes the account and adds it back, cuts off whoever holds
    a session of the old one; so does setting the same password again (a new salt), the way to end every session
    of one reviewer."""
    accounts = tmp_path / "reviewers"
    site = Site(tmp_path)
    new_password = "a brand new password"  # noqa: S105
    for change, password in (("new", new_password), ("removed and added", new_password), ("same again", PASSWORD)):
        add_reviewer(accounts, "ann", PASSWORD)
        assert site.sign_in().status == 303
        old, decision = site.cookie, {"csrf": site.token(), "id": "a", "tag": "mlops"}
        assert "Signed in as" in site.request("GET", "/review", cookie=old).body  # nothing changed yet
        if change == "removed and added":
            assert remove_reviewer(accounts, "ann")
            assert site.request("POST", "/review", decision, cookie=old).status == 403
        add_reviewer(accounts, "ann", password)
        assert site.request("POST", "/review", decision, cookie=old).status == 403, change
        assert site.published == []
        assert site.sign_in(password=password).status == 303
        assert site.request("POST", "/review", {**decision, "csrf": site.token()}).status == 200
        site.published.clear()
        site.board.on_review(review_record("a"))


def test_a_password_no_form_could_have_sent_as_utf8_is_a_wrong_one(tmp_path: Path) -> None:
    """A form in another charset (``unicode_escape``) can carry a lone surrogate, which no password holds."""
    site = Site(tmp_path)
    for password in ("\ud800", PASSWORD[:4] + "\udfff"):
        assert site.sign_in(password=password).status == 401
    assert site.sign_in().status == 303


def test_two_decisions_on_one_item_at_once_publish_one(tmp_path: Path) -> None:
    """Two reviewers (or a double click) deciding one item while the first decision is still being sent: the
    second is refused, and the item is decided once, as the accepted one said. Which of the two comes first is
    not fixed: each request re-reads the accounts file on a thread before it is routed."""
    site = Site(tmp_path)
    site.sign_in()
    sent = site.site.publish
    token = site.token()

    async def both() -> list[WebResponse]:
        # The first decision's send is held until the other request has its answer: "at once", however slowly
        # the host runs the two.
        answered = asyncio.Event()

        async def held_publish(key: bytes, feedback: bytes, tagged: bytes) -> None:
            await asyncio.wait_for(answered.wait(), 10)
            await sent(key, feedback, tagged)

        site.site.publish = held_publish

        def decision(tag: str) -> WebRequest:
            form = {"csrf": token, "id": "a", "tag": tag}
            return WebRequest("POST", "/review", "127.0.0.1:6066", "127.0.0.1", site.cookie, form)

        requests = [asyncio.create_task(site.site.handle(decision(tag))) for tag in ("mlops", "other")]
        await asyncio.wait(requests, return_when=asyncio.FIRST_COMPLETED)
        answered.set()
        return [await request for request in requests]

    responses = asyncio.run(both())
    assert sorted(response.status for response in responses) == [200, 409]
    accepted = next(tag for tag, response in zip(("mlops", "other"), responses, strict=True) if response.status == 200)
    assert [feedback["tag"] for feedback, _ in site.published] == [accepted]
    assert site.request("POST", "/review", {"csrf": token, "id": "a", "tag": "other"}).status == 400  # decided


def test_a_cookie_or_form_token_with_non_ascii_text_is_refused_not_an_error(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.sign_in()
    assert site.request("POST", "/review", {"csrf": "é", "id": "a", "tag": "mlops"}).status == 403
    # aiohttp hands a header byte that is not UTF-8 over as a lone surrogate ("\udce9" for 0xE9).
    for cookie in ("a.b.c.é", "a.b.c.\udce9", "\udce9.a.b.c.d", "é.a.b.c.d", f"{site.cookie}\udce9"):
        page = site.request("GET", "/review", cookie=cookie)
        assert page.status == 200 and "Signed in" not in page.body  # a new anonymous session
        assert site.request("POST", "/review", {"csrf": site.token(), "id": "a"}, cookie=cookie).status == 403
    assert site.published == []


def test_a_real_request_with_a_cookie_byte_that_is_not_utf8_gets_an_anonymous_page(tmp_path: Path) -> None:
    """Through aiohttp's own HTTP parser, as the worker's web server reads it, over a socket pair (no port)."""
    site = Site(tmp_path)

    async def review(request: web.Request) -> web.Response:
        answer = await site.site.handle(_web_request(request, site.site, {}))
        return web.Response(status=answer.status, text=answer.body, content_type="text/html", headers=answer.headers)

    async def exchange() -> bytes:
        application = web.Application()
        application.router.add_get("/review", review)
        runner = web.AppRunner(application)
        await runner.setup()
        assert runner.server is not None
        ours, theirs = socket.socketpair()
        try:
            await asyncio.get_running_loop().connect_accepted_socket(runner.server, theirs)
            reader, writer = await asyncio.open_connection(sock=ours)
            cookie = COOKIE.encode() + b"=\xe9.a.b.c.d"
            writer.write(
                b"GET /review HTTP/1.1\r\nHost: localhost\r\nCookie: " + cookie + b"\r\nConnection: close\r\n\r\n"
            )
            answer = await reader.read()
            writer.close()
            return answer
        finally:
            await runner.cleanup()

    head, _, body = asyncio.run(exchange()).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert f"Set-Cookie: {COOKIE}=".encode() in head  # a new anonymous session
    assert b"Read-only" in body and b"Signed in" not in body


def test_a_form_post_of_another_host_site_or_encoding_is_refused_before_its_body_is_read(tmp_path: Path) -> None:
    """A multipart body of a thousand parts held the event loop a third of a second to parse, from anyone: the Host,
    the Origin and the content type are checked first."""
    site = Site(tmp_path).site
    form_type = "application/x-www-form-urlencoded"

    def refused(content_type: str, host: str = "127.0.0.1:6066", origin: str | None = None) -> int | None:
        request = WebRequest("POST", "/review/sign-in", host, "127.0.0.1", None, {}, origin=origin)
        answer = site.refused_unread(request, content_type)
        return None if answer is None else answer.status

    assert refused(form_type) is None
    assert refused("multipart/form-data") == 415
    assert refused("text/plain") == 415
    assert refused(form_type, host="evil.example") == 403
    assert refused("multipart/form-data", host="evil.example") == 403
    assert refused(form_type, origin="https://evil.example") == 403


def test_a_decision_whose_record_cannot_be_sent_is_refused_and_publishes_nothing(tmp_path: Path) -> None:
    """Of a decision's two records, none is sent unless both encode: a feedback record alone would count a
    decision the tagged topic never shows."""
    site = Site(tmp_path)
    record = {**tagged_record("s"), "title": "\ud800"}
    site.board.on_tagged(record, json.dumps(record).encode())  # short: kept as it came
    site.sign_in()
    response = site.request("POST", "/review", {"csrf": site.token(), "action": "report", "id": "s", "tag": "mlops"})
    assert response.status == 400 and "Not saved: " in response.body
    assert site.published == []


def test_sign_out_ends_the_session_even_for_a_copy_of_its_cookie(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.sign_in()
    copied, token = site.cookie, site.token()
    assert site.request("POST", "/review/sign-out", {"csrf": token}).status == 303
    assert site.request("POST", "/review", {"csrf": token, "id": "a", "tag": "mlops"}, cookie=copied).status == 403
    assert site.published == []


def test_signing_out_sessions_nobody_signed_in_to_never_brings_a_revoked_one_back() -> None:
    """Anyone may sign out the session a visit gives them; were each kept as revoked, enough of them would push a
    reviewer's sign-out out of the bounded list, and a copy of that reviewer's cookie would work again."""
    sessions = Sessions(b"k" * 32, 3600.0, secure=False, clock=lambda: 1000.0)
    signed_out = sessions.new("ann")
    value = sessions.cookie_header(signed_out).split(";")[0].split("=", 1)[1]
    sessions.revoke(signed_out)
    for _ in range(MAX_SIGNED_OUT + 1):
        sessions.revoke(sessions.new())
    assert sessions.read(value) is None


def test_a_sign_out_ends_the_session_on_every_worker_that_reads_it(tmp_path: Path) -> None:
    """Workers behind one address share the session secret: a cookie signed out on one must not work on another,
    nor on the same worker after a restart (a new process, whose sign-outs come from the topic alone)."""
    secret = {"TAGGER_REVIEW_SESSION_SECRET": "s" * 32}
    first = Site(tmp_path, **secret)
    first.sign_in()
    copied, decision = first.cookie, {"csrf": first.token(), "id": "a", "tag": "mlops"}
    assert first.request("POST", "/review/sign-out", {"csrf": decision["csrf"]}).status == 303
    ((key, value),) = first.sign_outs
    unaware = Site(tmp_path, reviewers=False, **secret)  # has not read the sign-out: the copy works there
    assert unaware.request("POST", "/review", decision, cookie=copied).status == 200
    fleet_secret = secret["TAGGER_REVIEW_SESSION_SECRET"].encode()
    other = Site(tmp_path, reviewers=False, signed_out=SignOuts(fleet_secret, caught_up=False), **secret)
    assert other.request("GET", "/review", cookie=copied).status == 503  # sign-outs not read yet: no session counts
    other.signed_out.add(*other.signed_out.read(key, value))  # what its follower reads from the topic
    other.signed_out.caught_up = True
    assert "Signed in as" not in other.request("GET", "/review", cookie=copied).body
    assert other.request("POST", "/review", decision, cookie=copied).status == 403
    assert other.published == [] and first.published == []


def test_a_sign_out_that_cannot_be_published_leaves_the_session_to_sign_out_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = Site(tmp_path)
    site.sign_in()
    site.sign_out_fails = True
    refused = site.request("POST", "/review/sign-out", {"csrf": site.token()})
    assert refused.status == 503 and "Not signed out" in refused.body
    assert refused.headers["Cache-Control"] == "no-store"
    assert "Signed in as <strong>ann</strong>" in site.request("GET", "/review").body
    site.sign_out_fails = False

    async def never_answers(key: bytes, value: bytes) -> None:
        await asyncio.sleep(60)

    monkeypatch.setattr(page, "PUBLISH_SECONDS", 0.05)
    publish, site.site.publish_sign_out = site.site.publish_sign_out, never_answers
    assert site.request("POST", "/review/sign-out", {"csrf": site.token()}).status == 503
    assert "Signed in as <strong>ann</strong>" in site.request("GET", "/review").body
    site.site.publish_sign_out = publish
    site.sign_out_fails = False
    assert site.request("POST", "/review/sign-out", {"csrf": site.token()}).status == 303
    assert len(site.sign_outs) == 1
    assert "Signed in as" not in site.request("GET", "/review").body


def test_a_decision_kafka_does_not_take_in_time_is_answered_and_cannot_be_sent_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The producer would hold the request for many minutes with the broker away; the page answers sooner, and
    the send goes on: until it ends the item is being decided, and once it is published the item waits no more."""
    site = Site(tmp_path)
    site.sign_in()
    monkeypatch.setattr(page, "PUBLISH_SECONDS", 0.05)
    sent: list[bytes] = []

    async def slow(key: bytes, feedback: bytes, tagged: bytes) -> None:
        await asyncio.sleep(0.3)
        sent.append(key)

    site.site.publish = slow
    decision = WebRequest(
        "POST", "/review", "127.0.0.1:6066", "127.0.0.1", site.cookie, {"csrf": site.token(), "id": "a", "tag": "mlops"}
    )

    async def decide_three_times() -> list[WebResponse]:
        first = await site.site.handle(decision)
        again = await site.site.handle(decision)
        await asyncio.sleep(0.5)
        return [first, again, await site.site.handle(decision)]

    first, again, later = asyncio.run(decide_three_times())
    assert first.status == 503 and "Not saved yet" in first.body
    assert again.status == 409
    assert sent == [b"a"] and "a" not in site.board.waiting
    assert later.status == 400 and "is waiting for review" in later.body

    async def refused(key: bytes, feedback: bytes, tagged: bytes) -> None:
        raise KafkaTimeoutError()

    site.site.publish = refused
    answer = site.request("POST", "/review", {"csrf": site.token(), "id": "b", "tag": "mlops"})
    assert answer.status == 503 and "Not saved: Kafka refused it" in answer.body
    assert "b" in site.board.waiting


def test_signing_in_again_ends_the_earlier_session_on_every_worker(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.sign_in()
    earlier = site.cookie
    assert site.sign_in().status == 303
    ((key, value),) = site.sign_outs
    assert site.signed_out.read(key, value)[0] == earlier.split(".")[1]  # the earlier session's nonce
    assert "Signed in as" not in site.request("GET", "/review", cookie=earlier).body


def test_behind_a_sign_in_proxy_there_is_no_sign_out_to_publish(tmp_path: Path) -> None:
    """The proxy names the reviewer on every request: a sign-out here would end nothing, and would let anyone the
    proxy admits fill the sign-outs topic."""
    site = Site(tmp_path, reviewers=False, TAGGER_REVIEW_AUTH="proxy", TAGGER_REVIEW_PROXY_ADDRESSES="10.0.0.5")
    page_body = site.request("GET", "/review", peer="10.0.0.5", proxy_user="ann").body
    assert "Signed in as <strong>ann</strong>" in page_body and "/review/sign-out" not in page_body
    token = page_body.split('name="csrf" value="')[1].split('"')[0]
    assert site.request("POST", "/review/sign-out", {"csrf": token}, peer="10.0.0.5", proxy_user="ann").status == 303
    assert site.sign_outs == []


def test_only_a_signed_in_session_s_sign_out_is_published(tmp_path: Path) -> None:
    site = Site(tmp_path)
    assert site.request("POST", "/review/sign-out", {"csrf": site.token("/review/sign-in")}).status == 303
    assert site.sign_outs == []


def test_a_head_request_is_answered_as_its_get(tmp_path: Path) -> None:
    site = Site(tmp_path)
    for path in ("/review", "/review/sign-in"):
        assert site.request("HEAD", path).status == site.request("GET", path).status == 200


def test_a_removed_reviewer_can_no_longer_decide(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.sign_in()
    token = site.token()
    (tmp_path / "reviewers").write_text("")
    assert site.request("POST", "/review", {"csrf": token, "id": "a", "tag": "mlops"}).status == 403
    assert site.published == []


def test_with_no_reviewer_the_page_is_read_only_and_says_how_to_add_one(tmp_path: Path) -> None:
    site = Site(tmp_path, reviewers=False)
    page = site.request("GET", "/review").body
    assert "<form" not in page and "python -m stream_app.review.accounts add NAME" in page and 'data-id="a"' in page
    assert "python -m stream_app.review.accounts add NAME" in site.request("GET", "/review/sign-in").body


def test_a_proxys_user_header_counts_only_from_the_proxy(tmp_path: Path) -> None:
    site = Site(tmp_path, reviewers=False, TAGGER_REVIEW_AUTH="proxy", TAGGER_REVIEW_PROXY_ADDRESSES="10.0.0.5")
    direct = site.request("GET", "/review", peer="10.0.0.6", proxy_user="ann").body
    assert "<form" not in direct
    page = site.request("GET", "/review", peer="10.0.0.5", proxy_user="ann").body
    assert "Signed in as <strong>ann</strong>" in page
    token = page.split('name="csrf" value="')[1].split('"')[0]
    decision = {"csrf": token, "id": "a", "tag": "mlops"}
    assert site.request("POST", "/review", decision, peer="10.0.0.6", proxy_user="ann").status == 403
    assert site.request("POST", "/review", decision, peer="10.0.0.5").status == 403  # the proxy must name them
    other = site.request("POST", "/review", decision, peer="10.0.0.5", proxy_user="bob", cookie=site.cookie)
    assert other.status == 403
    assert site.published == []
    assert site.request("POST", "/review", decision, peer="10.0.0.5", proxy_user="ann").status == 200
    assert [f["reviewer"] for f, _ in site.published] == ["ann"]
    assert site.request("POST", "/review/sign-in", {"csrf": token}, peer="10.0.0.5", proxy_user="ann").status == 403


def test_sessions_are_signed_expire_and_bind_their_form_token() -> None:
    now = [1000.0]
    sessions = Sessions(b"k" * 32, 60.0, secure=True, clock=lambda: now[0])
    session = sessions.new("ann")
    header = sessions.cookie_header(session)
    assert header.endswith("; Secure")
    value = header.split(";")[0].split("=", 1)[1]
    assert sessions.read(value) == session
    assert sessions.read(value.replace(session.reviewer.encode().hex(), b"bob".hex())) is None
    assert Sessions(b"x" * 32, 60.0, secure=False, clock=lambda: now[0]).read(value) is None
    other = sessions.new("ann")
    assert sessions.token_ok(session, sessions.form_token(session))
    assert not sessions.token_ok(session, sessions.form_token(other))
    now[0] += 61
    assert sessions.read(value) is None


def test_guesses_at_one_name_from_many_addresses_lock_it_for_strangers_only(tmp_path: Path) -> None:
    """A guesser with an address per try gets no more tries at a name than the name's limit; the reviewer still
    signs in from an address they signed in from before, and other names are not affected."""
    site = Site(tmp_path)
    add_reviewer(tmp_path / "reviewers", "bob", PASSWORD)
    assert site.sign_in(peer="10.0.0.1").status == 303  # ann's usual address
    for n in range(MAX_FAILED_SIGN_INS_PER_NAME):
        assert site.sign_in("ann", WRONG, peer=f"203.0.113.{n}").status == 401
    assert site.sign_in(peer="198.51.100.1").status == 429  # a new address, even with the right password
    assert site.sign_in(peer="10.0.0.1").status == 303
    assert site.sign_in("bob", peer="198.51.100.2").status == 303


def test_each_sign_in_is_counted_by_its_outcome(tmp_path: Path) -> None:
    site = Site(tmp_path)
    outcomes: list[str] = []
    site.site.count_sign_in = outcomes.append
    statuses = [site.sign_in("ann", WRONG, peer="10.0.0.9").status for _ in range(6)]
    statuses.append(site.sign_in(peer="10.0.0.8").status)
    assert statuses == [401] * 5 + [429, 303]
    assert outcomes == ["wrong"] * 5 + ["limited", "signed_in"]


def test_a_name_that_does_not_exist_is_limited_alike(tmp_path: Path) -> None:
    """The limit on a name tells nothing of whether it exists: an unknown name gets 429 after as many failures."""
    site = Site(tmp_path)
    answers = [
        site.sign_in("nobody", WRONG, peer=f"203.0.113.{n}").status for n in range(MAX_FAILED_SIGN_INS_PER_NAME + 1)
    ]
    assert answers == [401] * MAX_FAILED_SIGN_INS_PER_NAME + [429]


def test_the_failures_of_a_known_address_do_not_count_against_its_name(tmp_path: Path) -> None:
    site = Site(tmp_path)
    assert site.sign_in(peer="10.0.0.1").status == 303
    for _ in range(4):  # under the address's own limit
        assert site.sign_in("ann", WRONG, peer="10.0.0.1").status == 401
    for n in range(MAX_FAILED_SIGN_INS_PER_NAME - 1):
        assert site.sign_in("ann", WRONG, peer=f"203.0.113.{n}").status == 401
    assert site.sign_in(peer="198.51.100.1").status == 303


def test_known_addresses_expire_and_are_bounded_per_name() -> None:
    now = [0.0]
    known = KnownAddresses(clock=lambda: now[0])
    known.signed_in("ann", "10.0.0.1")
    assert known.known("ann", "10.0.0.1")
    assert not known.known("ann", "10.0.0.2") and not known.known("bob", "10.0.0.1")
    now[0] = KNOWN_ADDRESS_SECONDS + 1
    assert not known.known("ann", "10.0.0.1")
    for n in range(KNOWN_ADDRESSES_PER_NAME + 1):
        known.signed_in("ann", f"10.0.1.{n}")
    assert not known.known("ann", "10.0.1.0")  # the oldest made room
    assert all(known.known("ann", f"10.0.1.{n}") for n in range(1, KNOWN_ADDRESSES_PER_NAME + 1))


def test_the_limiter_forgets_failures_past_its_window() -> None:
    now = [0.0]
    limiter = SignInLimiter(max_failures=2, window_seconds=10, clock=lambda: now[0])
    assert limiter.attempt("a") and limiter.attempt("a")
    assert not limiter.attempt("a") and limiter.blocked("a") and not limiter.blocked("b")
    now[0] = 11
    assert not limiter.blocked("a")
    assert limiter.attempt("a", "ann")
    limiter.succeeded("a", "ann")
    assert limiter.attempt("a") and limiter.attempt("a")
    limiter.withdraw("a")  # one attempt succeeded: the other still counts
    assert limiter.attempt("a") and not limiter.attempt("a")
    now[0] = 22
    assert limiter.attempt("a", "bob") and limiter.attempt("a", "ann")
    limiter.succeeded("a", "ann")  # ann's failure goes, bob's stays
    assert limiter.attempt("a", "ann") and not limiter.attempt("a", "ann")


@pytest.mark.parametrize(
    ("host", "allowed"),
    [("127.0.0.1:6066", True), ("LOCALHOST", True), ("[::1]:6066", True), ("review.example:443", True),
     ("review.example:444", False), ("evil.example", False), ("127.0.0.1.evil.example", False), ("", False),
     (":6066", False), ("[::1]evil", False), ("localhost:x", False), ("localhost:", False), ("[::1]:", False),
     ("[::1", False), ("localhost:\u0663", False), ("localhost:\u00b9", False), ("[::1]:\u0661\u0662", False),
     ("localhost:99999", False), ("localhost:0", False), ("localhost:+80", False), ("localhost:65535", True)],
)  # fmt: skip
def test_the_host_allow_list(host: str, allowed: bool) -> None:
    hosts = frozenset({"localhost", "127.0.0.1", "[::1]", "review.example:443"})
    assert host_allowed(host, hosts) is allowed


def test_a_worker_without_a_session_secret_keeps_the_key_it_made_across_restarts(tmp_path: Path) -> None:
    """Its decisions are signed with the key: one made anew at each start would leave every decision made before
    a restart unverified, and the items decided back on the review page."""
    settings = Settings.from_env({"TAGGER_DATA_DIR": str(tmp_path)})
    first = kept_session_secret(settings)
    key = first.review_session_secret.reveal()
    assert len(key) == 64 and int(key, 16) >= 0
    assert kept_session_secret(settings).review_session_secret.reveal() == key  # the next start
    kept = tmp_path / KEPT_SECRET_FILE
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600 and sorted(p.name for p in tmp_path.iterdir()) == [kept.name]
    record = {"id": "a", "tag": "other", "verdict": "corrected", "reviewer": "ann", "decided_at": NOW}
    signature = feedback_signature(session_secret(first), record)
    assert checked_signed_feedback_id(session_secret(kept_session_secret(settings)), {**record, "signature": signature})
    given = Settings.from_env({"TAGGER_DATA_DIR": str(tmp_path / "other"), "TAGGER_REVIEW_SESSION_SECRET": "s" * 32})
    assert kept_session_secret(given) is given and not (tmp_path / "other").exists()


@pytest.mark.parametrize("content", ["short", "z" * 64, "fifo"])
def test_a_kept_session_key_that_is_not_one_stops_the_start_with_a_clear_error(tmp_path: Path, content: str) -> None:
    kept = tmp_path / KEPT_SECRET_FILE
    if content == "fifo":
        os.mkfifo(kept, 0o600)
    else:
        kept.write_text(content)
        kept.chmod(0o600)
    with pytest.raises(ConfigError, match=f"{KEPT_SECRET_FILE} does not hold|{KEPT_SECRET_FILE} is not a regular"):
        kept_session_secret(Settings.from_env({"TAGGER_DATA_DIR": str(tmp_path)}))


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o606, 0o610, 0o601], ids=oct)
def test_a_kept_session_key_other_users_may_read_stops_the_start(tmp_path: Path, mode: int) -> None:
    """Whoever reads the key can sign in as any reviewer and sign decisions in their names: a key file with any
    permission for the group or others is refused in one line saying how to make it private, as ssh does."""
    kept = tmp_path / KEPT_SECRET_FILE
    kept.write_text("ab" * 32)
    kept.chmod(mode)
    settings = Settings.from_env({"TAGGER_DATA_DIR": str(tmp_path)})
    with pytest.raises(ConfigError, match=re.escape(f"(mode {mode:04o}): run chmod 600 {kept}")):
        kept_session_secret(settings)
    kept.chmod(0o600)
    assert kept_session_secret(settings).review_session_secret.reveal() == "ab" * 32


def test_a_kept_session_key_of_another_user_stops_the_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another user who owns the file can read it, or put a key of their own there."""
    kept = tmp_path / KEPT_SECRET_FILE
    kept.write_text("ab" * 32)
    kept.chmod(0o600)
    owner = kept.stat().st_uid
    # The worker runs as another user than the file's owner (giving the file away would need root).
    monkeypatch.setattr(os, "geteuid", lambda: owner + 1)
    with pytest.raises(ConfigError, match=re.escape(f"{kept} belongs to another user (uid {owner})")):
        kept_session_secret(Settings.from_env({"TAGGER_DATA_DIR": str(tmp_path)}))


@pytest.mark.parametrize("header", ["", "   ", "a" * 101, "ann\nbob", "ann\x00", "ann\u202e"])
def test_a_trusted_proxy_s_user_header_names_nobody_when_it_is_no_usable_name(header: str) -> None:
    """The name becomes the decision's ``reviewer`` (a signed field and a label's): blank, past 100 characters, or
    with a control character, it signs nobody in."""
    networks = Settings.from_env({"TAGGER_REVIEW_PROXY_ADDRESSES": "10.0.0.5"}).review_proxy_networks
    assert proxy_user("10.0.0.5", header, networks) is None
    assert proxy_user("10.0.0.5", " ann ", networks) == "ann" and proxy_user("10.0.0.6", "ann", networks) is None
