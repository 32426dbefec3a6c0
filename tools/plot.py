"""A PNG snapshot of a worker's metrics: records out by topic, confidence and tags against the model card.

    python -m tools.plot --url http://127.0.0.1:6066/metrics --out plot.png \
        [--card artifacts/model/model.json]

The worker's ``/metrics`` text is fetched once; counts are totals since the worker started.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from prometheus_client.parser import text_string_to_metric_families

from stream_app import APPROVED_TAGS
from stream_app.drift import Reference
from stream_app.errors import ModelError
from stream_app.metric_labels import OUTCOMES

DEFAULT_CARD = Path("artifacts/model/model.json")
LIVE_COLOUR, REFERENCE_COLOUR = "#d95f02", "#7570b3"


@dataclass(frozen=True)
class Scrape:
    """The figures of one ``/metrics`` exposition that the plot shows."""

    consumed: float = 0.0
    outcomes: dict[str, float] = field(default_factory=dict)
    """Records emitted per output topic."""
    confidence_upper_bounds: tuple[float, ...] = ()
    """Upper edge of each confidence bin (the histogram's ``le`` values, ``inf`` last)."""
    confidence_counts: tuple[float, ...] = ()
    """Classified events per confidence bin, all tags together (not cumulative)."""
    tag_counts: dict[str, float] = field(default_factory=dict)
    """Classified events per predicted tag."""
    model_version: str | None = None
    threshold: float | None = None
    confidence_psi: float | None = None
    tag_psi: float | None = None


def parse_metrics(text: str) -> Scrape:
    """Read the plotted figures out of a Prometheus text exposition of the worker's metrics.

    Raises ``ValueError`` if the text is not an exposition or not a content-tagger worker's.
    """
    consumed: float | None = None
    outcomes = dict.fromkeys(OUTCOMES, 0.0)
    cumulative: dict[float, float] = {}
    tag_counts = dict.fromkeys(APPROVED_TAGS, 0.0)
    gauges: dict[str, float] = {}
    version = None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, sample.value
            if name == "content_tagger_events_consumed_total":
                consumed = (consumed or 0.0) + value
            elif name == "content_tagger_events_out_total":
                outcomes[labels["outcome"]] = outcomes.get(labels["outcome"], 0.0) + value
            elif name == "content_tagger_confidence_bucket":
                bound = float(labels["le"])
                cumulative[bound] = cumulative.get(bound, 0.0) + value
            elif name == "content_tagger_confidence_count":
                tag_counts[labels["tag"]] = tag_counts.get(labels["tag"], 0.0) + value
            elif name == "content_tagger_model_info" and value == 1:
                version = labels.get("version")
            elif family.type == "gauge" and not labels:
                gauges[name] = value
    if consumed is None or not cumulative:
        raise ValueError("no content_tagger metrics here: is the URL a content-tagger worker's /metrics?")
    bounds = tuple(sorted(cumulative))
    running = [cumulative[b] for b in bounds]
    counts = tuple(c - p for c, p in zip(running, [0.0, *running[:-1]], strict=True))
    return Scrape(
        consumed=consumed,
        outcomes=outcomes,
        confidence_upper_bounds=bounds,
        confidence_counts=counts,
        tag_counts=tag_counts,
        model_version=version,
        threshold=gauges.get("content_tagger_review_threshold"),
        confidence_psi=gauges.get("content_tagger_drift_confidence_psi"),
        tag_psi=gauges.get("content_tagger_drift_tag_psi"),
    )


def fetch_metrics(url: str, timeout: float = 10.0) -> str:
    """The text exposition served at ``url`` (http or https only)."""
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"not an http(s) URL: {url}")
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - scheme checked above
        return bytes(response.read()).decode("utf-8")


def render(
    scrape: Scrape, out: Path, reference: Reference | None = None, source: str = "", drift_note: str = ""
) -> None:
    """Write a PNG of ``scrape`` to ``out``: records by topic, confidence and tag shares vs ``reference``;
    ``drift_note`` says under the confidence panel what its drift means for this run."""
    figure = Figure(figsize=(16, 5.2), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    outcome_axes, confidence_axes, tag_axes = figure.subplots(1, 3, width_ratios=(0.8, 1.4, 1.0))
    _plot_outcomes(outcome_axes, scrape)
    _plot_confidence(confidence_axes, scrape, reference)
    if drift_note:
        confidence_axes.set_xlabel(drift_note, fontsize=9, color="#555555")
    _plot_tags(tag_axes, scrape, reference)
    title = ["content-tagger", f"model {scrape.model_version or '?'}"]
    if scrape.confidence_psi is not None and scrape.tag_psi is not None:
        title.append(f"drift PSI: confidence {scrape.confidence_psi:.3f}, tag {scrape.tag_psi:.3f}")
    if source:
        title.append(source)
    figure.suptitle("  ·  ".join(title), fontsize=12)
    figure.savefig(out, format="png")


def _plot_outcomes(axes: Axes, scrape: Scrape) -> None:
    names = list(scrape.outcomes)
    values = [scrape.outcomes[n] for n in names]
    bars = axes.bar(names, values, color=["#1b9e77", "#e6ab02", "#8c8c8c", "#e7298a"][: len(names)])
    axes.bar_label(bars, labels=[f"{v:,.0f}" for v in values], padding=2)
    axes.set_title(f"Records out by topic ({scrape.consumed:,.0f} consumed)")
    axes.set_ylabel("records")
    axes.margins(y=0.15)


def _plot_confidence(axes: Axes, scrape: Scrape, reference: Reference | None) -> None:
    bounds, counts = list(scrape.confidence_upper_bounds), list(scrape.confidence_counts)
    if bounds and bounds[-1] == math.inf and counts[-1] == 0:
        bounds, counts = bounds[:-1], counts[:-1]  # nothing above confidence 1: the +Inf bucket is empty
    lowers = [0.0, *bounds[:-1]]
    matches = reference is not None and list(reference.confidence_bin_edges[1:]) == bounds
    _paired_bars(
        axes,
        [f"{low:g}–{high:g}" for low, high in zip(lowers, bounds, strict=True)],
        counts,
        reference.confidence_shares if reference is not None and matches else None,
    )
    if scrape.threshold is not None and bounds:
        axes.axvline(
            _bin_position(scrape.threshold, lowers, bounds),
            color="black",
            linestyle="--",
            label=f"review threshold {scrape.threshold:.2f}",
        )
        axes.legend(loc="upper left", fontsize=9)
    note = " (card bins differ: no reference)" if reference is not None and not matches else ""
    axes.set_title("Confidence of classified events" + note)


def _plot_tags(axes: Axes, scrape: Scrape, reference: Reference | None) -> None:
    tags = list(scrape.tag_counts)
    _paired_bars(
        axes,
        tags,
        [scrape.tag_counts[t] for t in tags],
        [reference.tag_shares.get(t, 0.0) for t in tags] if reference is not None else None,
        legend_at="upper right",
    )
    axes.set_title("Predicted tag of classified events")


def _paired_bars(
    axes: Axes,
    labels: Sequence[str],
    counts: Sequence[float],
    reference_shares: Sequence[float] | None,
    legend_at: Literal["upper left", "upper right"] = "upper left",
) -> None:
    """Live shares (from ``counts``) per label, each beside its reference share when there is one."""
    total = sum(counts)
    live = [c / total if total else 0.0 for c in counts]
    positions = range(len(labels))
    width = 0.8 if reference_shares is None else 0.4
    offset = 0.0 if reference_shares is None else width / 2
    label = f"live ({total:,.0f} events)"
    axes.bar([p - offset for p in positions], live, width, color=LIVE_COLOUR, label=label)
    if reference_shares is not None:
        axes.bar(
            [p + offset for p in positions],
            reference_shares,
            width,
            color=REFERENCE_COLOUR,
            label="model card reference",
        )
    axes.set_xticks(list(positions), list(labels), rotation=30, ha="right")
    axes.set_ylabel("share of events")
    axes.margins(y=0.25)
    axes.legend(loc=legend_at, fontsize=9)


def _bin_position(value: float, lowers: Sequence[float], uppers: Sequence[float]) -> float:
    """Where ``value`` falls on an axis with one unit per bin, bin ``i`` centred on ``i``."""
    for index, (low, high) in enumerate(zip(lowers, uppers, strict=True)):
        if value <= high:
            return index - 0.5 + (value - low) / (high - low)
    return len(uppers) - 0.5


def load_card(card_path: Path) -> dict[str, Any]:
    """The model card at ``card_path``; raises :class:`ModelError` if it cannot be read."""
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ModelError(f"cannot read the model card {card_path}: {error}") from error
    if not isinstance(card, dict):
        raise ModelError(f"{card_path} is not a model card")
    return card


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: fetch the metrics once, render the PNG; 1 with a message on stderr if that fails."""
    parser = argparse.ArgumentParser(
        prog="python -m tools.plot", description="Render a PNG of a worker's metrics and its model card."
    )
    parser.add_argument("--url", default="http://127.0.0.1:6066/metrics", help="the worker's /metrics URL")
    parser.add_argument("--out", type=Path, default=Path("plot.png"), help="PNG file to write")
    parser.add_argument(
        "--card",
        type=Path,
        default=None,
        help=f"model card whose reference to compare with (default {DEFAULT_CARD} if present)",
    )
    parser.add_argument("--drift-note", default="", help="a line under the confidence panel: what its drift means")
    args = parser.parse_args(argv)
    card_path: Path | None = args.card or (DEFAULT_CARD if DEFAULT_CARD.is_file() else None)
    try:
        card = load_card(card_path) if card_path else None
        reference = Reference.from_card(card) if card else None
        scrape = parse_metrics(fetch_metrics(args.url))
        render(scrape, args.out, reference, source=args.url, drift_note=args.drift_note)
    except (OSError, ValueError, ModelError) as error:
        print(f"plot: {error}", file=sys.stderr)
        return 1
    if card and scrape.model_version and card.get("version") != scrape.model_version:
        served, carded = scrape.model_version, card.get("version")
        print(f"plot: warning: the worker serves model {served}, the card is {carded}", file=sys.stderr)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
