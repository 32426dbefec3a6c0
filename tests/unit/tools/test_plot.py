"""The plot command reads a real worker exposition and writes a PNG of it."""

from __future__ import annotations

import json
import random
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.image import imread
from prometheus_client import CollectorRegistry, generate_latest, start_http_server

from stream_app import APPROVED_TAGS
from stream_app.drift import DriftMonitor, Reference
from stream_app.metrics import Metrics
from tools.plot import main, parse_metrics, render

EDGES = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 1.0)
CARD: dict[str, Any] = {
    "version": "abc123",
    "threshold": 0.6,
    "reference": {
        "confidence_bin_edges": list(EDGES),
        "confidence_shares": [0.002, 0.03, 0.1, 0.12, 0.118, 0.15, 0.212, 0.146, 0.092, 0.03],
        "tag_shares": {
            "natural-language-processing": 0.43,
            "computer-vision": 0.38,
            "mlops": 0.07,
            "other": 0.12,
        },
        "below_threshold_share": 0.252,
    },
}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class FedWorker:
    """A worker's ``Metrics`` fed with seeded traffic, remembering what it was fed."""

    def __init__(self, events: int = 300, seed: int = 1) -> None:
        rng = random.Random(seed)
        reference = Reference.from_card(CARD)
        self.registry = CollectorRegistry()
        metrics = Metrics(self.registry, reference.confidence_bin_edges)
        metrics.set_model(CARD["version"], CARD["threshold"], reference.below_threshold_share)
        drift = DriftMonitor(reference, threshold=CARD["threshold"])
        self.confidences: list[float] = []
        self.tags: list[str] = []
        for _ in range(events):
            tag, confidence = rng.choice(APPROVED_TAGS), rng.random()
            metrics.consumed()
            metrics.classified(tag, confidence)
            drift.observe(tag, confidence)
            metrics.emitted("review" if confidence < CARD["threshold"] else "tagged")
            self.confidences.append(confidence)
            self.tags.append(tag)
        metrics.consumed(7)
        metrics.emitted("deadletter", 3)
        metrics.emitted("duplicate", 4)
        metrics.set_drift(drift.snapshot())
        self.snapshot = drift.snapshot()

    def text(self) -> str:
        return generate_latest(self.registry).decode()


def assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    pixels = imread(path)
    assert pixels.shape[0] > 100 and pixels.shape[1] > 100
    assert pixels.std() > 0.05  # something is drawn, not a blank canvas


def test_the_scrape_holds_the_counts_the_worker_was_fed() -> None:
    worker = FedWorker()
    scrape = parse_metrics(worker.text())
    below = sum(c < CARD["threshold"] for c in worker.confidences)
    assert scrape.consumed == len(worker.confidences) + 7
    assert scrape.outcomes == {
        "tagged": len(worker.confidences) - below,
        "review": below,
        "duplicate": 4,
        "deadletter": 3,
    }
    expected_bins, _ = np.histogram(worker.confidences, bins=np.asarray(EDGES))
    assert scrape.confidence_upper_bounds == (*EDGES[1:], float("inf"))
    assert list(scrape.confidence_counts) == [*expected_bins.tolist(), 0]
    assert scrape.tag_counts == {tag: worker.tags.count(tag) for tag in APPROVED_TAGS}
    assert (scrape.model_version, scrape.threshold) == ("abc123", 0.6)
    assert (scrape.confidence_psi, scrape.tag_psi) == (
        worker.snapshot.confidence_psi,
        worker.snapshot.tag_psi,
    )


def test_render_writes_a_png_with_and_without_a_reference(tmp_path: Path) -> None:
    scrape = parse_metrics(FedWorker().text())
    render(scrape, tmp_path / "with.png", Reference.from_card(CARD))
    render(scrape, tmp_path / "without.png", None)
    other_bins = Reference((0.0, 0.5, 1.0), (0.5, 0.5), dict.fromkeys(APPROVED_TAGS, 0.25), 0.5)
    render(scrape, tmp_path / "other-bins.png", other_bins)
    for name in ("with.png", "without.png", "other-bins.png"):
        assert_png(tmp_path / name)


def test_render_copes_with_a_worker_that_has_seen_nothing(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    Metrics(registry, EDGES)
    scrape = parse_metrics(generate_latest(registry).decode())
    render(scrape, tmp_path / "empty.png", Reference.from_card(CARD))
    assert_png(tmp_path / "empty.png")


@pytest.fixture
def served_worker() -> Iterator[str]:
    """The fed worker's metrics on a local HTTP port, as the worker serves them."""
    server, thread = start_http_server(0, addr="127.0.0.1", registry=FedWorker().registry)
    try:
        yield f"http://127.0.0.1:{server.server_port}/metrics"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_the_command_fetches_a_served_worker_and_writes_the_png(
    served_worker: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    card = tmp_path / "model.json"
    card.write_text(json.dumps(CARD))
    out = tmp_path / "plot.png"
    assert main(["--url", served_worker, "--out", str(out), "--card", str(card)]) == 0
    assert_png(out)
    assert "warning" not in capsys.readouterr().err


def test_the_command_warns_when_the_card_is_not_the_served_model(
    served_worker: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    card = tmp_path / "model.json"
    card.write_text(json.dumps(CARD | {"version": "other"}))
    assert main(["--url", served_worker, "--out", str(tmp_path / "plot.png"), "--card", str(card)]) == 0
    assert "serves model abc123, the card is other" in capsys.readouterr().err


def test_an_unreachable_worker_is_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/metrics"  # bound but not listening: refused
        assert main(["--url", url, "--out", str(tmp_path / "plot.png")]) == 1
    assert "plot:" in capsys.readouterr().err
    assert not (tmp_path / "plot.png").exists()


@pytest.mark.parametrize("text", ["", "# HELP up Up.\n# TYPE up gauge\nup 1\n", "<html>not metrics</html>\n"])
def test_text_that_is_not_a_workers_exposition_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_metrics(text)


def test_a_missing_card_is_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                "--url",
                "http://127.0.0.1:9/metrics",
                "--card",
                str(tmp_path / "nope.json"),
                "--out",
                str(tmp_path / "plot.png"),
            ]
        )
        == 1
    )
    assert "cannot read the model card" in capsys.readouterr().err
