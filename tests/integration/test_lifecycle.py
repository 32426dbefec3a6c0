"""The model's life cycle on a real worker and broker: people's corrections train a better candidate, which is
shadowed, promoted and hot-swapped without a restart, losing or repeating nothing; a worse or tampered candidate
is refused and the live model keeps serving."""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from stream_app import APPROVED_TAGS
from tests.integration.harness import Produced, account, export_model, produce, run
from tools.replay import event_value, mixed_stream, read_rows

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
NLP_WORDS = ("transformer", "language model", "tokenizer", "text classification", "sentiment analysis",
             "machine translation", "named entity recognition", "question answering")  # fmt: skip


def quux_items(prefix: str, count: int, seed: int) -> list[dict[str, Any]]:
    """Items of a product the live model has never seen: NLP words in the title, but people file them as
    ``other`` (their description says what they are)."""
    rng = random.Random(seed)
    items = []
    for n in range(count):
        words = rng.choice(NLP_WORDS)
        items.append({
            "id": f"{prefix}-{n}", "title": f"Quuxify {words} kit {prefix} {n}",
            "description": f"Quuxify turns the {words} into dashboards for the data warehouse.",
        })  # fmt: skip
    return items


HOLDOUT_KEY = hashlib.blake2b(b"content-tagger tests: the held-out decisions", digest_size=32).digest()
"""The key that picks which decisions judge a candidate (model_export/promote.py), fixed beside every label
store a test writes: with a fresh random key each run, which decisions trained the candidate, and so whether
the gate's two test rows of slack let it through, was drawn anew each run."""


def write_labels(path: Path, items: list[dict[str, Any]], tag_of: Any) -> None:
    (path.parent / "holdout.key").write_bytes(HOLDOUT_KEY)
    with path.open("w") as file:
        for n, item in enumerate(items):
            decision = {"tag": tag_of(item), "verdict": "corrected", "reviewer": "test",
                        "decided_at": f"2026-11-23T00:00:{n % 60:02d}", "model_version": "x"}  # fmt: skip
            file.write(json.dumps({**item, **decision}) + "\n")


def health(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:  # noqa: S310
        answer: dict[str, Any] = json.loads(response.read())
        return answer


def health_version(port: int) -> str:
    return str(health(port)["model_version"])


def train_candidate(labels: Path, live: Path, out: Path) -> dict[str, Any]:
    export_model("--fast", "--feedback", str(labels), "--live", str(live), "--out", str(out))
    card: dict[str, Any] = json.loads((out / "model.json").read_text())
    return card


def test_corrections_train_a_candidate_that_is_shadowed_promoted_and_hot_swapped(
    start_worker: Any, trained_model_dir: Path, tmp_path: Path
) -> None:
    candidates = tmp_path / "candidates"
    worker, topics = start_worker(
        TAGGER_CANDIDATES_DIR=str(candidates), TAGGER_SHADOW_EVENTS="150", TAGGER_CANDIDATE_POLL_SECONDS="0.5"
    )
    bootstrap = worker.env["TAGGER_KAFKA_BOOTSTRAP_SERVERS"]
    live_version = health_version(worker.port)
    labels = tmp_path / "labels.jsonl"
    write_labels(labels, quux_items("fb", 80, seed=1), lambda item: "other")
    card = train_candidate(labels, trained_model_dir, tmp_path / "c1")
    promotion = card["promotion"]
    assert promotion["passed"] and promotion["live_version"] == live_version, promotion
    # Better on the corrected slice it never trained on, and no worse on the fixed test split.
    assert promotion["candidate"]["feedback_accuracy"] > promotion["live"]["feedback_accuracy"], promotion
    candidates.mkdir(exist_ok=True)
    (tmp_path / "c1").rename(candidates / "c1")
    # The stream starts once the candidate shadows: events the worker handles before then are not compared, and
    # a stream handled whole before it would leave the shadow short of its events.
    deadline = time.monotonic() + 60
    while health(worker.port)["shadow_version"] != card["version"] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert health(worker.port)["shadow_version"] == card["version"], worker.log_tail()

    rows = read_rows(ROOT / "data" / "dataset.csv")
    before = [m for m in mixed_stream(rows, 1500, seed=5) if m.expected != "deadletter"]
    produced: list[Produced] = run(produce(bootstrap, topics.input, [(m.key, m.value, None) for m in before]))
    deadline = time.monotonic() + 120
    while health_version(worker.port) == live_version and time.monotonic() < deadline:
        time.sleep(0.5)
    new_version = health_version(worker.port)
    assert new_version == card["version"], worker.log_tail()
    assert (candidates / "promoted" / "c1" / "decision.json").exists()

    probes = quux_items("probe", 40, seed=9)
    after = [(str(p["id"]).encode(), event_value(p), None) for p in probes]
    produced += run(produce(bootstrap, topics.input, after))
    expected = [str(m.key.decode()) for m in before] + [str(p["id"]) for p in probes]
    ledger = run(account(bootstrap, topics, expected, timeout=180))
    assert not ledger.missing(expected)
    assert ledger.repeats() == 0, "the swap lost or repeated events"
    classified = ledger.records["tagged"] + ledger.records["review"]
    versions = Counter(r["model_version"] for r in classified)
    assert set(versions) == {live_version, new_version}, versions
    by_id = {str(r["id"]): r for r in classified}
    assert all(by_id[str(p["id"])]["model_version"] == new_version for p in probes)
    said = Counter(by_id[str(p["id"])].get("tag") or by_id[str(p["id"])]["suggested_tag"] for p in probes)
    assert said["other"] >= 0.8 * len(probes), f"the promoted model did not learn the corrections: {said}"
    assert worker.total("content_tagger_model_promotions_total") == 1


def test_worse_and_tampered_candidates_are_refused_and_the_live_model_keeps_serving(
    start_worker: Any, trained_model_dir: Path, tmp_path: Path
) -> None:
    candidates = tmp_path / "candidates"
    candidates.mkdir()
    worker, topics = start_worker(TAGGER_CANDIDATES_DIR=str(candidates), TAGGER_CANDIDATE_POLL_SECONDS="0.5")
    live_version = health_version(worker.port)
    # Bad feedback: every dataset row filed under the next tag over. Rows of the test split are ignored by the
    # trainer, the rest mislabel its training data.
    rows = read_rows(ROOT / "data" / "dataset.csv")
    tag_of = {str(r["id"]): str(r["tag"]) for r in rows}
    labels = tmp_path / "labels.jsonl"
    items = [{k: r[k] for k in ("id", "title", "description")} for r in rows]
    write_labels(labels, items, lambda item: APPROVED_TAGS[(APPROVED_TAGS.index(tag_of[item["id"]]) + 1) % 4])
    card = train_candidate(labels, trained_model_dir, tmp_path / "worse")
    assert not card["promotion"]["passed"], card["promotion"]
    (tmp_path / "worse").rename(candidates / "worse")

    tampered = candidates / ".tampered"
    shutil.copytree(trained_model_dir, tampered)
    tampered_card = json.loads((tampered / "model.json").read_text())
    tampered_card["promotion"] = {"passed": True, "live_version": live_version, "reasons": []}
    (tampered / "model.json").write_text(json.dumps(tampered_card))
    data = bytearray((tampered / "model.onnx").read_bytes())
    data[-100] ^= 0xFF
    (tampered / "model.onnx").write_bytes(bytes(data))
    tampered.rename(candidates / "tampered")

    deadline = time.monotonic() + 30
    while worker.total("content_tagger_model_refusals_total") < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert worker.value("content_tagger_model_refusals_total", reason="worse_offline") == 1.0
    assert worker.value("content_tagger_model_refusals_total", reason="tampered") == 1.0
    assert health_version(worker.port) == live_version
    assert sorted(p.name for p in (candidates / "refused").iterdir()) == ["tampered", "worse"]
    bootstrap = worker.env["TAGGER_KAFKA_BOOTSTRAP_SERVERS"]
    probe = [(b"after-refusal", event_value({"id": "after-refusal", "title": "Speech recognition with Whisper"}), None)]
    run(produce(bootstrap, topics.input, probe))
    ledger = run(account(bootstrap, topics, ["after-refusal"], timeout=60, settle=0.5))
    (record,) = ledger.records["tagged"] + ledger.records["review"]
    assert record["model_version"] == live_version


def test_a_labelled_store_that_cannot_be_read_leaves_the_worker_processing(start_worker: Any, tmp_path: Path) -> None:
    """With the labels trigger on, a store every read of which fails (EIO, here through a link to a file that
    fails every read, as a bad disk's would) skips the retrain at start-up and at every poll; the worker starts,
    stays up and processes events."""
    store = tmp_path / "labels" / "labels.jsonl"
    store.parent.mkdir()
    store.symlink_to("/proc/self/mem")
    worker, topics = start_worker(
        TAGGER_LABELS_PATH=str(store), TAGGER_RETRAIN_AFTER_LABELS="1", TAGGER_CANDIDATE_POLL_SECONDS="0.2"
    )
    deadline = time.monotonic() + 60
    while worker.total("content_tagger_retrains_skipped_total") < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert worker.total("content_tagger_retrains_skipped_total") >= 3  # three polls of the model timer survived
    bootstrap = worker.env["TAGGER_KAFKA_BOOTSTRAP_SERVERS"]
    probe = [(b"after-skips", event_value({"id": "after-skips", "title": "Speech recognition with Whisper"}), None)]
    run(produce(bootstrap, topics.input, probe))
    ledger = run(account(bootstrap, topics, ["after-skips"], timeout=60, settle=0.5))
    assert len(ledger.records["tagged"] + ledger.records["review"]) == 1
    assert f"cannot read the labelled store {store}: [Errno 5] Input/output error" in worker.log_text()
