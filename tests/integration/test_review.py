"""The review page of a real worker on a real broker: decisions reach the feedback and tagged topics, bad ones
publish nothing, reports on tagged items are judged against the model, and online precision moves."""

from __future__ import annotations

import gzip
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from stream_app import APPROVED_TAGS
from stream_app.review.accounts import add_reviewer
from stream_app.review.labels import read_labels
from stream_app.review.sessions import COOKIE
from stream_app.topology.retention import KEPT_FOR_EVER
from tests.integration.harness import Topics, WorkerProcess, grow_topic, produce, read_outputs, run
from tools.replay import event_value, read_rows

pytestmark = [pytest.mark.kafka]

ROOT = Path(__file__).resolve().parents[2]


PASSWORD = "a reviewer's password"


def reviewers_file(folder: Path, *names: str) -> Path:
    """An accounts file with ``names``, each with :data:`PASSWORD`."""
    path = folder / "reviewers"
    for name in names:
        add_reviewer(path, name, PASSWORD)
    return path


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a 303 comes back as it is, with its Set-Cookie


class Browser:
    """A minimal browser for the review pages: keeps the session cookie, sends forms, follows no redirect."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.cookie: str | None = None
        self.opener = urllib.request.build_opener(_NoRedirect())

    def request(
        self,
        method: str,
        path: str,
        form: dict[str, str] | None = None,
        *,
        host: str | None = None,
        origin: str | None = None,
        keep_cookie: bool = True,
    ) -> tuple[int, str]:
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, method=method)
        if self.cookie and keep_cookie:
            request.add_header("Cookie", f"{COOKIE}={self.cookie}")
        if host is not None:
            request.add_header("Host", host)
        if origin is not None:
            request.add_header("Origin", origin)
        try:
            with self.opener.open(request, timeout=30) as response:
                status, headers, body = response.status, response.headers, response.read().decode()
        except urllib.error.HTTPError as error:
            status, headers, body = error.code, error.headers, error.read().decode()
        cookie = headers.get("Set-Cookie")
        if cookie and keep_cookie:
            self.cookie = cookie.split(";")[0].split("=", 1)[1]
        return int(status), body

    def token(self, path: str = "/review") -> str:
        return self.request("GET", path)[1].split('name="csrf" value="')[1].split('"')[0]

    def sign_in(self, name: str, password: str = PASSWORD) -> int:
        return self.request("POST", "/review/sign-in", {"csrf": self.token("/review/sign-in"), "name": name,
                                                         "password": password})[0]  # fmt: skip

    def decide(self, form: dict[str, str], **kwargs: Any) -> tuple[int, str]:
        return self.request("POST", "/review", {"csrf": self.token(), **form}, **kwargs)


def waiting_ids(port: int) -> list[str]:
    """The ids the review page lists; none while the worker answers 503 (it is still reading the sign-outs)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/review", timeout=10) as response:  # noqa: S310
            page = response.read().decode()
    except urllib.error.HTTPError as error:
        if error.code != 503:
            raise
        return []
    return [part.split('"')[0] for part in page.split('data-id="')[1:]]


def read_topic(bootstrap: str, topic: str, expected: int, timeout: float = 30.0) -> list[dict[str, Any]]:
    async def read() -> list[dict[str, Any]]:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            await consumer._client.force_metadata_update()
            parts = [TopicPartition(topic, p) for p in consumer._client.cluster.partitions_for_topic(topic) or ()]
            consumer.assign(parts)
            await consumer.seek_to_beginning(*parts)
            found: list[dict[str, Any]] = []
            deadline = time.monotonic() + timeout
            while len(found) < expected and time.monotonic() < deadline:
                for records in (await consumer.getmany(timeout_ms=300)).values():
                    found += [json.loads(r.value) for r in records]
            return found
        finally:
            await consumer.stop()

    return list(run(read()))


def test_decisions_on_the_review_page_reach_feedback_tagged_metrics_and_labels(
    start_worker: Any, new_topic: Any, tmp_path: Path
) -> None:
    feedback_topic = new_topic("feedback", config=KEPT_FOR_EVER)
    labels_path = tmp_path / "labels.jsonl"
    worker, topics = start_worker(
        TAGGER_REVIEW_THRESHOLD="0.9", TAGGER_FEEDBACK_TOPIC=feedback_topic, TAGGER_LABELS_PATH=str(labels_path),
        TAGGER_REVIEWERS_FILE=str(reviewers_file(tmp_path, "ann", "bob")),
    )  # fmt: skip
    bootstrap = worker.env["TAGGER_KAFKA_BOOTSTRAP_SERVERS"]
    # A report judges the model only on an item the worker counted as shown: one tagged after its review follower
    # took its start offsets, which is before the review pages open.
    deadline = time.monotonic() + 30
    while Browser(worker.port).request("GET", "/review/sign-in")[0] == 503 and time.monotonic() < deadline:
        time.sleep(0.5)
    rows = read_rows(ROOT / "data" / "dataset.csv")[:80]
    run(produce(bootstrap, topics.input, [(str(r["id"]).encode(), event_value(r), None) for r in rows]))
    outputs = run(read_outputs(bootstrap, topics, len(rows), 120, settle=1.0))
    assert outputs["review"] and outputs["tagged"], "the threshold should split the rows between the two"
    suggested = {str(r["id"]): r["suggested_tag"] for r in outputs["review"]}
    model_tagged = outputs["tagged"][0]

    deadline = time.monotonic() + 30
    while len(waiting_ids(worker.port)) < min(len(suggested), 50) and time.monotonic() < deadline:
        time.sleep(0.5)
    first, second, *_ = waiting_ids(worker.port)
    other = next(t for t in APPROVED_TAGS if t != suggested[second])
    wrong = next(t for t in APPROVED_TAGS if t != model_tagged["tag"])

    ann, bob = Browser(worker.port), Browser(worker.port)
    assert ann.sign_in("ann") == 303 and bob.sign_in("bob") == 303
    assert ann.decide({"id": first, "tag": "robotics"})[0] == 400
    assert ann.decide({"id": first, "tag": suggested[first]}, origin="http://evil.example")[0] == 403
    assert ann.decide({"id": first, "tag": suggested[first], "reviewer": "mallory"})[0] == 200
    assert bob.decide({"id": second, "tag": other})[0] == 200
    report = {"id": str(model_tagged["id"]), "tag": wrong, "action": "report"}
    assert ann.decide(report)[0] == 200
    assert first not in waiting_ids(worker.port) and second not in waiting_ids(worker.port)

    feedback = read_topic(bootstrap, feedback_topic, 3)
    assert [(f["id"], f["verdict"], f["reviewer"]) for f in feedback] == [
        (first, "accepted", "ann"),
        (second, "corrected", "bob"),
        (str(model_tagged["id"]), "reported", "ann"),
    ]  # nothing from the refused forms; the signed-in reviewer, never a typed name
    human = [r for r in read_topic(bootstrap, topics.tagged, len(outputs["tagged"]) + 3) if r["tagged_by"] == "human"]
    assert {(r["id"], r["tag"]) for r in human} == {
        (first, suggested[first]),
        (second, other),
        (str(model_tagged["id"]), wrong),
    }

    def judged() -> tuple[float, float]:
        return worker.total("content_tagger_online_judged_total"), worker.total("content_tagger_online_correct_total")

    deadline = time.monotonic() + 20
    while judged()[0] < 3 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert judged() == (3.0, 1.0)  # accepted is right; corrected and reported are wrong
    labels, skipped = read_labels(labels_path)
    assert skipped == 0
    assert {label["id"]: label["tag"] for label in labels} == {
        first: suggested[first],
        second: other,
        str(model_tagged["id"]): wrong,
    }
    assert all(label["title"] for label in labels)


def test_exactly_once_the_page_lists_no_item_of_an_aborted_transaction(start_worker: Any, tmp_path: Path) -> None:
    """A batch whose transaction aborted is published again; its first records must not wait for a reviewer."""
    worker, topics = start_worker(
        TAGGER_PROCESSING_GUARANTEE="exactly_once", TAGGER_REVIEWERS_FILE=str(reviewers_file(tmp_path, "ann"))
    )
    bootstrap = worker.env["TAGGER_KAFKA_BOOTSTRAP_SERVERS"]

    def item(item_id: str) -> bytes:
        return json.dumps({
            "id": item_id, "title": f"Title of {item_id}", "description": "Words.", "suggested_tag": "mlops",
            "confidence": 0.41, "scores": dict.fromkeys(APPROVED_TAGS, 0.25), "model_version": "v1",
            "reason": "low_confidence", "dedupe_key": "0123456789abcdef", "processed_at": "2026-12-04T00:00:00Z",
            "schema_version": 1,
        }).encode()  # fmt: skip

    async def publish() -> None:
        for item_id, commit in (("aborted-item", False), ("committed-item", True)):
            producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"test-{item_id}")
            await producer.start()
            try:
                await producer.begin_transaction()
                await (await producer.send(topics.review, item(item_id), key=item_id.encode()))
                await (producer.commit_transaction() if commit else producer.abort_transaction())
            finally:
                await producer.stop()

    run(publish())
    deadline = time.monotonic() + 30
    while "committed-item" not in waiting_ids(worker.port) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert waiting_ids(worker.port) == ["committed-item"]


def test_an_item_on_a_partition_added_to_the_review_topic_waits_on_the_page(start_worker: Any, tmp_path: Path) -> None:
    """The follower assigned the partitions it found at start, once: items, decisions and sign-outs on a partition
    added later never reached a running worker's page."""
    worker, topics = start_worker(TAGGER_REVIEWERS_FILE=str(reviewers_file(tmp_path, "ann")))
    bootstrap = worker.env["TAGGER_KAFKA_BOOTSTRAP_SERVERS"]
    item = {
        "id": "on-a-new-partition", "title": "Title of an item on a new partition", "description": "Words.",
        "suggested_tag": "mlops", "confidence": 0.41, "scores": dict.fromkeys(APPROVED_TAGS, 0.25),
        "model_version": "v1", "reason": "low_confidence", "dedupe_key": "0123456789abcdef",
        "processed_at": "2026-12-04T00:00:00Z", "schema_version": 1,
    }  # fmt: skip
    first = {**item, "id": "on-the-first-partition"}

    def waits(item_id: str) -> bool:
        deadline = time.monotonic() + 40
        while item_id not in waiting_ids(worker.port) and time.monotonic() < deadline:
            time.sleep(0.5)
        return item_id in waiting_ids(worker.port)

    run(produce(bootstrap, topics.review, [(first["id"].encode(), json.dumps(first).encode(), 0)]))
    assert waits(first["id"]), worker.log_tail()  # the follower reads the topic's partitions now
    run(grow_topic(bootstrap, topics.review, 2))
    run(produce(bootstrap, topics.review, [(item["id"].encode(), json.dumps(item).encode(), 1)]))
    assert waits(item["id"]), worker.log_tail()


def test_a_compressed_or_multipart_form_is_not_read(start_worker: Any, tmp_path: Path) -> None:
    """aiohttp inflated a gzip request body on the event loop before any handler ran: 1 MB inflating to 1 GB,
    sent to any route without a session, held every event for seconds. Left as sent, a gzip form is no form: the
    sign-in it holds is refused, and the same form sent plain signs in."""
    worker, _ = start_worker(TAGGER_REVIEWERS_FILE=str(reviewers_file(tmp_path, "ann")))
    browser = Browser(worker.port)
    deadline = time.monotonic() + 30
    while browser.request("GET", "/review/sign-in")[0] == 503 and time.monotonic() < deadline:
        time.sleep(0.5)  # the pages open once the sign-outs are read
    form = {"csrf": browser.token("/review/sign-in"), "name": "ann", "password": PASSWORD}
    request = urllib.request.Request(
        f"http://127.0.0.1:{worker.port}/review/sign-in",
        data=gzip.compress(urllib.parse.urlencode(form).encode()),
        headers={"Content-Encoding": "gzip", "Content-Type": "application/x-www-form-urlencoded",
                 "Cookie": f"{COOKIE}={browser.cookie}"},
        method="POST",
    )  # fmt: skip
    try:
        with browser.opener.open(request, timeout=30) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    assert status != 303, status  # 303 is a sign-in
    # A multipart form is refused unread: parsing a thousand parts held the event loop a third of a second.
    boundary = "tagger-test-boundary"
    parts = "".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
                    for name, value in form.items()) + f"--{boundary}--\r\n"  # fmt: skip
    multipart = urllib.request.Request(
        f"http://127.0.0.1:{worker.port}/review/sign-in",
        data=parts.encode(),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}", "Cookie": f"{COOKIE}={browser.cookie}"},
        method="POST",
    )
    try:
        with browser.opener.open(multipart, timeout=30) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    assert status == 415, status
    assert browser.request("POST", "/review/sign-in", form)[0] == 303
    assert worker.page("/ready")[0] == 200


@dataclass(frozen=True)
class ReviewWorker:
    """A worker whose review page has an item waiting, with one reviewer account."""

    worker: WorkerProcess
    topics: Topics
    feedback_topic: str
    outputs: dict[str, list[dict[str, Any]]]
    first: str
    """The id of the oldest item waiting."""

    @property
    def bootstrap(self) -> str:
        return self.worker.env["TAGGER_KAFKA_BOOTSTRAP_SERVERS"]

    @property
    def suggested(self) -> dict[str, str]:
        return {str(r["id"]): r["suggested_tag"] for r in self.outputs["review"]}


MALFORMED_FORMS: list[tuple[bytes, str, int]] = [
    (b"csrf=\xff\xfe&id=a", "application/x-www-form-urlencoded", 400),
    (b"csrf=a&id=a", "application/x-www-form-urlencoded; charset=x-unknown", 400),
    # Multipart bodies are refused unread (415): the pages never send one, and parsing one costs the event loop.
    (b"no boundary here", "multipart/form-data; boundary=b", 415),
    (
        b'--b\r\nContent-Disposition: form-data; name="id"\r\nContent-Type: text/plain; charset=x-unknown\r\n'
        b"\r\na\r\n--b--\r\n",
        "multipart/form-data; boundary=b",
        415,
    ),
    (
        b'--b\r\nContent-Disposition: form-data; name="csrf"\r\nContent-Transfer-Encoding: x-bogus\r\n'
        b"\r\nabc\r\n--b--\r\n",
        "multipart/form-data; boundary=b",
        415,
    ),
]
"""Request bodies that are no form the pages read, their content types, and the status each is refused with."""


def review_worker(start_worker: Any, new_topic: Any, folder: Path, reviewer: str) -> ReviewWorker:
    """Start a worker with ``reviewer``'s account, send it 10 events that all go to review, and wait until its page
    lists one."""
    feedback_topic = new_topic("feedback", config=KEPT_FOR_EVER)
    worker, topics = start_worker(
        TAGGER_REVIEW_THRESHOLD="0.99", TAGGER_FEEDBACK_TOPIC=feedback_topic,
        TAGGER_REVIEWERS_FILE=str(reviewers_file(folder, reviewer)),
    )  # fmt: skip
    bootstrap = worker.env["TAGGER_KAFKA_BOOTSTRAP_SERVERS"]
    rows = read_rows(ROOT / "data" / "dataset.csv")[:10]
    run(produce(bootstrap, topics.input, [(str(r["id"]).encode(), event_value(r), None) for r in rows]))
    outputs = run(read_outputs(bootstrap, topics, len(rows), 120, settle=1.0))
    deadline = time.monotonic() + 30
    while not waiting_ids(worker.port) and time.monotonic() < deadline:
        time.sleep(0.5)
    return ReviewWorker(worker, topics, feedback_topic, outputs, waiting_ids(worker.port)[0])


def test_requests_without_a_session_with_a_wrong_token_password_or_host_publish_nothing(
    start_worker: Any, new_topic: Any, tmp_path: Path
) -> None:
    started = review_worker(start_worker, new_topic, tmp_path, "ann")
    worker, topics, outputs, first, bootstrap = (
        started.worker,
        started.topics,
        started.outputs,
        started.first,
        started.bootstrap,
    )
    decision = {"id": first, "tag": started.suggested[first]}

    stranger = Browser(worker.port)
    assert stranger.request("POST", "/review", decision)[0] == 403  # no session, no token
    assert stranger.request("POST", "/review", {"csrf": stranger.token("/review/sign-in"), **decision})[0] == 403
    assert stranger.sign_in("ann", "not the password") == 401
    assert stranger.sign_in("nobody") == 401
    ann = Browser(worker.port)
    assert ann.sign_in("ann") == 303
    assert ann.request("POST", "/review", {"csrf": "0" * 64, **decision})[0] == 403
    assert ann.decide(decision, keep_cookie=False)[0] == 403  # the token without its session
    assert ann.decide(decision, host=f"rebound.example:{worker.port}")[0] == 403
    assert ann.request("GET", "/review", host=f"rebound.example:{worker.port}")[0] == 403
    assert first in waiting_ids(worker.port)
    sign_ins = worker.by_label("content_tagger_review_sign_ins_total", "outcome")
    assert sign_ins == {"signed_in": 1.0, "wrong": 2.0, "limited": 0.0}

    # Faust's own views are off; the monitoring pages answer any host.
    for path in ("/table/", f"/table/{worker.env['TAGGER_APP_ID']}-content-by-title/", "/router/", "/graph/",
                 "/performance/", "/assignment/"):  # fmt: skip
        assert Browser(worker.port).request("GET", path)[0] == 404, path
    for path in ("/metrics", "/health", "/ready"):
        assert Browser(worker.port).request("GET", path, host="prometheus.internal:9090")[0] == 200, path

    # A body that is not a form is refused as such, not answered with a server error.
    for body, content_type, refused in MALFORMED_FORMS:
        headers = {"Content-Type": content_type, "Cookie": f"{COOKIE}={ann.cookie}"}
        raw = urllib.request.Request(f"http://127.0.0.1:{worker.port}/review", body, headers, method="POST")
        try:
            with urllib.request.urlopen(raw, timeout=10) as response:  # noqa: S310
                status = response.status
        except urllib.error.HTTPError as error:
            status = error.code
        assert status == refused, content_type

    # A decision that goes through shows the topics were read: it is the only record on them.
    assert ann.decide(decision)[0] == 200
    feedback = read_topic(bootstrap, started.feedback_topic, 2, timeout=5)
    assert [(f["id"], f["reviewer"]) for f in feedback] == [(first, "ann")]
    tagged = read_topic(bootstrap, topics.tagged, len(outputs["tagged"]) + 2, timeout=5)
    assert [r["id"] for r in tagged if r["tagged_by"] == "human"] == [first]


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_a_sign_out_ends_the_session_on_every_worker_and_after_a_restart(
    start_worker: Any, new_topic: Any, tmp_path: Path, guarantee: str
) -> None:
    """Workers behind one address share the accounts file and the session secret (docs/review.md), so a cookie
    works on each: a sign-out on one must end it on all, and on a worker started after it."""
    shared = {
        "TAGGER_PROCESSING_GUARANTEE": guarantee,
        "TAGGER_REVIEW_THRESHOLD": "0.99",
        "TAGGER_FEEDBACK_TOPIC": new_topic("feedback", config=KEPT_FOR_EVER),
        "TAGGER_REVIEWERS_FILE": str(reviewers_file(tmp_path, "ann")),
        "TAGGER_REVIEW_SESSION_SECRET": "a session secret shared by the fleet, 40+",
    }
    first, topics = start_worker(**shared)
    second, _ = start_worker(topics=topics, app_id=first.app_id, **shared)
    bootstrap = first.env["TAGGER_KAFKA_BOOTSTRAP_SERVERS"]
    rows = read_rows(ROOT / "data" / "dataset.csv")[:10]
    run(produce(bootstrap, topics.input, [(str(r["id"]).encode(), event_value(r), None) for r in rows]))
    run(read_outputs(bootstrap, topics, len(rows), 120, settle=1.0))
    deadline = time.monotonic() + 30
    while len(waiting_ids(second.port)) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    before, after, *_ = waiting_ids(second.port)

    ann = Browser(first.port)
    assert ann.sign_in("ann") == 303
    copied, token = ann.cookie, ann.token()

    def as_copy(worker: WorkerProcess, method: str, form: dict[str, str] | None = None) -> tuple[int, str]:
        """A request with the copied cookie, as whoever took it would send it (never a cookie the worker gives)."""
        copy = Browser(worker.port)
        copy.cookie = copied
        return copy.request(method, "/review", form)

    assert as_copy(second, "POST", {"csrf": token, "id": before, "tag": "other"})[0] == 200  # the copy works
    assert ann.request("POST", "/review/sign-out", {"csrf": token})[0] == 303
    deadline = time.monotonic() + 15
    while "Signed in as" in as_copy(second, "GET")[1] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "Signed in as" not in as_copy(second, "GET")[1]
    assert as_copy(second, "POST", {"csrf": token, "id": after, "tag": "other"})[0] == 403

    assert first.stop() == 0
    restarted, _ = start_worker(topics=topics, app_id=first.app_id, **shared)
    deadline = time.monotonic() + 30
    while as_copy(restarted, "GET")[0] == 503 and time.monotonic() < deadline:
        time.sleep(0.5)
    status, page = as_copy(restarted, "GET")
    assert status == 200 and "Signed in as" not in page
    assert as_copy(restarted, "POST", {"csrf": token, "id": after, "tag": "other"})[0] == 403
    feedback = read_topic(bootstrap, shared["TAGGER_FEEDBACK_TOPIC"], 2, timeout=5)
    assert [f["id"] for f in feedback] == [before]


def test_a_bounded_board_lists_the_oldest_items_loads_the_next_as_they_are_decided_and_loses_none(
    start_worker: Any, new_topic: Any, tmp_path: Path
) -> None:
    """A worker holds at most ``TAGGER_REVIEW_BOARD_MAX_ITEMS`` items and leaves the rest on the review topic: the
    page lists the oldest, says more wait, and shows the next as these are decided; after a restart it lists the
    oldest undecided ones (no decided item comes back, though its decision is read before its review record), and
    every item is reached in the end."""
    feedback_topic = new_topic("feedback", config=KEPT_FOR_EVER)
    shared = {
        "TAGGER_REVIEW_THRESHOLD": "0.99",
        "TAGGER_REVIEW_BOARD_MAX_ITEMS": "5",
        "TAGGER_FEEDBACK_TOPIC": feedback_topic,
        "TAGGER_REVIEWERS_FILE": str(reviewers_file(tmp_path, "ann")),
        # The restarted worker must accept the first one's signed decisions.
        "TAGGER_REVIEW_SESSION_SECRET": "a session secret shared by the fleet, 40+",
    }
    worker, topics = start_worker(**shared)
    bootstrap = worker.env["TAGGER_KAFKA_BOOTSTRAP_SERVERS"]
    rows = read_rows(ROOT / "data" / "dataset.csv")[:24]
    run(produce(bootstrap, topics.input, [(str(r["id"]).encode(), event_value(r), None) for r in rows]))
    outputs = run(read_outputs(bootstrap, topics, len(rows), 120, settle=1.0))
    order = [str(r["id"]) for r in outputs["review"]]  # the review topic's order: one partition
    assert len(order) >= 18, "the threshold should send most rows to review"

    def listed(port: int, expected: list[str]) -> list[str]:
        deadline = time.monotonic() + 30
        while waiting_ids(port) != expected and time.monotonic() < deadline:
            time.sleep(0.3)
        return waiting_ids(port)

    def decide_in_order(port: int, count: int | None = None) -> list[str]:
        """Decide the oldest listed item, ``count`` times or until none is listed; each time, the page lists the
        oldest five undecided items of :data:`order` once the decision is read."""
        browser = Browser(port)
        assert browser.sign_in("ann") == 303
        decided: list[str] = []
        while (count is None or len(decided) < count) and (ids := waiting_ids(port)):
            assert browser.decide({"id": ids[0], "tag": "other"})[0] == 200
            decided.append(ids[0])
            undecided = [i for i in order if i not in done + decided]
            assert listed(port, undecided[:5]) == undecided[:5], worker.log_tail()
        return decided

    def board_full(process: Any, expected: float) -> float:
        deadline = time.monotonic() + 10
        while process.total("content_tagger_review_board_full") != expected and time.monotonic() < deadline:
            time.sleep(0.3)
        return float(process.total("content_tagger_review_board_full"))

    done: list[str] = []
    assert listed(worker.port, order[:5]) == order[:5], worker.log_tail()
    with urllib.request.urlopen(f"http://127.0.0.1:{worker.port}/review", timeout=10) as response:  # noqa: S310
        assert "more waiting on the review topic, not loaded" in response.read().decode()
    assert board_full(worker, 1.0) == 1.0
    # More than two boards' worth: however the restart's reads interleave, some decisions are read before the
    # review records of their items.
    done += decide_in_order(worker.port, 12)
    assert done == order[:12]

    assert worker.stop() == 0
    restarted, _ = start_worker(topics=topics, app_id=worker.app_id, **shared)
    assert listed(restarted.port, order[12:17]) == order[12:17], restarted.log_tail()
    worker = restarted
    done += decide_in_order(restarted.port)
    assert done == order  # every item reached, oldest first, none twice
    feedback = read_topic(bootstrap, feedback_topic, len(order), timeout=10)
    assert sorted(f["id"] for f in feedback) == sorted(order)
    assert board_full(restarted, 0.0) == 0.0
