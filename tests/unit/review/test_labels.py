"""The labelled store's appends: each decision a line of its own, whatever the last write left, and never a wait
on something that is not a regular file."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from stream_app.review.labels import LabelStore, read_labels
from tests.unit.review.test_board import NOW


def decision(item_id: str, description: str = "") -> dict[str, str]:
    return {"id": item_id, "title": f"title {item_id}", "description": description, "tag": "other",
            "verdict": "corrected", "reviewer": "ann", "decided_at": NOW}  # fmt: skip


def test_a_decision_after_a_torn_line_is_kept_and_the_fragment_skipped(tmp_path: Path) -> None:
    """A full disk or a killed process can leave half a line at the end of the store; the next decision must not
    be glued onto it, where no reader would find it."""
    path = tmp_path / "labels.jsonl"
    store = LabelStore(path)
    store.append(decision("a"))
    with path.open("ab") as file:
        file.write(b'{"id": "torn", "title": "half a li')
    store.append(decision("b"))
    labels, skipped = read_labels(path)
    assert [label["id"] for label in labels] == ["a", "b"] and skipped == 1


# Run in a child: the file size limit makes the write past it fail (EFBIG), as a full disk makes it fail (ENOSPC),
# after the part that fits was written.
APPEND_PAST_A_SIZE_LIMIT = """
import resource, signal, sys
from pathlib import Path
from stream_app.review.labels import LabelStore
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
path = Path(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (path.stat().st_size + 100, resource.RLIM_INFINITY))
try:
    LabelStore(path).append({"id": "big", "title": "t", "tag": "other", "description": "d" * 10_000})
except OSError as error:
    print("raised", error.errno)
"""


def test_a_failed_append_leaves_the_store_as_it_was_and_is_logged_with_its_errno_and_path(tmp_path: Path) -> None:
    path = tmp_path / "labels.jsonl"
    LabelStore(path).append(decision("a"))
    before = path.read_bytes()
    child = subprocess.run(
        [sys.executable, "-c", APPEND_PAST_A_SIZE_LIMIT, str(path)], capture_output=True, text=True, timeout=60,
        check=True, cwd=Path(__file__).resolve().parents[3],
    )  # fmt: skip
    assert child.stdout.split() == ["raised", "27"], child.stderr  # EFBIG
    assert f"cannot append a decision to the labelled store {path}: [Errno 27]" in child.stderr
    assert path.read_bytes() == before
    LabelStore(path).append(decision("b"))
    labels, skipped = read_labels(path)
    assert [label["id"] for label in labels] == ["a", "b"] and skipped == 0


def test_a_fifo_in_the_stores_place_is_refused_without_waiting_for_a_reader(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The store is appended to on the event loop: an open that waited for a reader would stop the whole worker."""
    path = tmp_path / "labels.jsonl"
    os.mkfifo(path)
    raised: list[BaseException] = []

    def append() -> None:
        try:
            LabelStore(path).append(decision("a"))
        except OSError as error:
            raised.append(error)

    writer = threading.Thread(target=append, daemon=True)
    writer.start()
    writer.join(timeout=30)  # a daemon thread: if it blocks, the test fails rather than hangs
    assert len(raised) == 1, "the append waited on the FIFO"
    assert f"cannot append a decision to the labelled store {path}: {path} is not a regular file" in caplog.text


def test_a_decision_is_stored_whole_and_read_back_as_written(tmp_path: Path) -> None:
    """Every field a retrain reads goes into the store; an integer id comes back as its text, a tag with spaces
    around it counts, and so does a decision made a moment ago (the clocks' 5 minutes are a margin ahead)."""
    import datetime as dt

    from stream_app.review.labels import LABEL_FIELDS

    store = LabelStore(tmp_path / "labels.jsonl")
    just_now = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
    decision = {"id": 42, "title": "A title", "description": "Some words.", "tag": " mlops ", "verdict": "corrected",
                "reviewer": "ann", "decided_at": just_now, "model_version": "v1"}  # fmt: skip
    store.append(decision)
    (label,), skipped = read_labels(tmp_path / "labels.jsonl")
    assert skipped == 0 and set(LABEL_FIELDS) == set(decision)
    assert label == {**decision, "id": "42"}


@pytest.mark.parametrize(
    "line",
    [b"[1]", b'"a decision"', b'{"id": "a", "title": "t", "tag": "mlops", "decided_at": 5}',
     b'{"id": "a", "title": "t", "tag": "mlops", "decided_at": "2026-11-23T00:00:00Z", "description": ["x"]}',
     b'{"id": "a", "title": "t", "tag": "mlops"}'],
    ids=["an array", "a string", "a numeric time", "a description not text", "undated"],
)  # fmt: skip
def test_an_unusable_line_is_skipped_and_counted_not_read(tmp_path: Path, line: bytes) -> None:
    """Lines of a store written by hand or by an older worker: a retrain counts them out, and reading goes on."""
    path = tmp_path / "labels.jsonl"
    path.write_bytes(line + b"\n")
    assert read_labels(path) == ([], 1)
