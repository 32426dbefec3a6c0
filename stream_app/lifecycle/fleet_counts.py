"""The fleet's counts per model version and the verdicts on them: what each worker publishes to its run in the
registry (served per route, judged, correct; and its shadows' comparisons), how the decider sums the runs, and
the rules that pass or refuse a canary or a shadow on those sums. Plain functions, no registry calls."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from stream_app.lifecycle.shadow import ShadowCounts

if TYPE_CHECKING:
    from stream_app.metrics import Metrics


REVIEW_SHARE_SLACK: Final = 0.05
"""How much more of its traffic a canary may send to people than the champion does."""
PRECISION_SLACK: Final = 0.02
"""How much lower a canary's online precision may be than the champion's."""


@dataclass
class VersionCounts:
    """What one model version did, summed over workers: events served per route, predictions people judged (both
    routes), and of its auto-tagged items, how many the platform showed (read off the tagged topic) and how many
    of those people reported wrong."""

    tagged: float = 0.0
    review: float = 0.0
    judged: float = 0.0
    correct: float = 0.0
    shown: float = 0.0
    reported: float = 0.0

    @property
    def served(self) -> float:
        return self.tagged + self.review

    @property
    def review_share(self) -> float:
        return self.review / self.served if self.served else 0.0

    @property
    def precision(self) -> float | None:
        """Online precision of what the platform showed: one less the share of shown items reported wrong (the
        README's, and ``ContentTaggerOnlinePrecisionLow``'s). Review decisions do not count: every review item is
        judged, a shown one only when someone reports it, so a mix of the two would let accepted suggestions hide
        wrong tags on the platform."""
        return 1.0 - self.reported / self.shown if self.shown else None

    def figures(self) -> dict[str, Any]:
        """The counts and the two rates, for a version tag."""
        return {"served": self.served, "review_share": round(self.review_share, 4), "judged": self.judged,
                "shown": self.shown, "reported": self.reported,
                "precision": None if self.precision is None else round(self.precision, 4)}  # fmt: skip


def tagged_precision(metrics: Metrics, version: str) -> tuple[float, float]:
    """Of model ``version``'s auto-tagged items (what the platform showed) since this worker started: how many were
    shown, and how many people judged wrong. A reviewer can only report a shown tag as wrong (an item the page
    does not list for review is never accepted there), so the share of shown items reported wrong is the estimate
    of their precision, not the share of judged ones found right."""
    shown = sum(
        sample.value
        for family in metrics.online_shown.collect()
        for sample in family.samples
        if sample.name.endswith("_total") and sample.labels["version"] == version
    )
    totals = {"judged": 0.0, "correct": 0.0}
    for name, counter in (("judged", metrics.online_judged), ("correct", metrics.online_correct)):
        for family in counter.collect():
            for sample in family.samples:
                labels = sample.labels
                if sample.name.endswith("_total") and labels["version"] == version and labels["route"] == "tagged":
                    totals[name] += sample.value
    return shown, totals["judged"] - totals["correct"]


def worker_counts(metrics: Metrics) -> dict[str, VersionCounts]:
    """This worker's counts per model version, read from its metrics."""
    counts: dict[str, VersionCounts] = {}
    for metric in (metrics.model_served, metrics.online_judged, metrics.online_correct, metrics.online_shown):
        for family in metric.collect():
            for sample in family.samples:
                if not sample.name.endswith("_total"):
                    continue
                entry = counts.setdefault(sample.labels["version"], VersionCounts())
                if metric is metrics.model_served:
                    name = sample.labels["route"]
                else:
                    name = family.name.removeprefix("content_tagger_online_")
                    if name != "shown" and sample.labels["route"] == "tagged":
                        # A shown item is only ever judged wrong: judged less correct is what was reported.
                        entry.reported += sample.value if name == "judged" else -sample.value
                setattr(entry, name, getattr(entry, name) + sample.value)
    return counts


def fleet_counts(runs: list[Any]) -> dict[str, VersionCounts]:
    """The counts per model version over the workers' runs (metrics named ``<field>.<version>``): events served
    summed over every run; predictions judged, and found correct, and items shown and reported wrong, as the worker
    that counted most judged of that version counted them (its runs, one per start, summed), items shown at most
    the tagged events served.

    Every worker reads every decision, so each counts the whole fleet's (since it started): a sum over workers
    would count each decision once per worker."""
    counts = {version: VersionCounts(**sums) for version, sums in summed(runs, "", VersionCounts).items()}
    by_worker: dict[tuple[str, object], list[Any]] = {}
    for number, run in enumerate(runs):
        name = run_worker(run)
        by_worker.setdefault(("worker", name) if name is not None else ("run", number), []).append(run)
    views = [summed(own, "", VersionCounts) for own in by_worker.values()]
    for version, entry in counts.items():
        # Shown items are read off the tagged topic by every worker too: taken from the same worker, they and the
        # reports on them cover the same time.
        most = max((view.get(version, {}) for view in views), key=lambda sums: sums.get("judged", 0.0))
        for name in ("judged", "correct", "shown", "reported"):
            setattr(entry, name, most.get(name, 0.0))
        # Tagged records are not signed: anyone who can write to the topic can add items "shown" by a version, and
        # raise its precision. The pipelines' own count of what they tagged for it bounds what it showed.
        entry.shown = min(entry.shown, entry.tagged)
    return counts


def run_items(run: Any, kind: str) -> list[dict[str, Any]]:
    """A run's ``metrics`` or ``tags`` as the REST API returns them (``{"key": ..., "value": ...}`` objects), the
    items of another shape left out: the runs are whatever the registry sent."""
    data = run.get("data") if isinstance(run, dict) else None
    items = data.get(kind) if isinstance(data, dict) else None
    return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []


def run_worker(run: Any) -> str | None:
    """The worker a run of the fleet experiment is of (its ``worker`` tag), or None when it names none."""
    for tag in run_items(run, "tags"):
        if tag.get("key") == "worker" and isinstance(tag.get("value"), str):
            return str(tag["value"])
    return None


SHADOW_PREFIX: Final = "shadow_"
"""What the metrics of shadow counts are named with, before their field: ``shadow_compared.<version>``."""


def shadow_counts(runs: list[Any]) -> dict[str, ShadowCounts]:
    """The shadow counts per model version summed over the workers' runs."""
    return {version: ShadowCounts(**sums) for version, sums in summed(runs, SHADOW_PREFIX, ShadowCounts).items()}


def summed(runs: list[Any], prefix: str, counts: type[Any]) -> dict[str, dict[str, float]]:
    """Per model version, the sum over ``runs`` of each metric ``<prefix><field>.<version>`` for the fields of the
    dataclass ``counts``; other metrics are skipped, and so are runs and metrics of another shape than the REST
    API's and values that are not counts (:func:`count_value`): the runs are whatever the registry sent."""
    fields = {spec.name for spec in dataclasses.fields(counts)}
    sums: dict[str, dict[str, float]] = {}
    for run in runs:
        for metric in run_items(run, "metrics"):
            key = metric.get("key")
            if not isinstance(key, str):
                continue
            name, _, version = key.partition(".")
            field_name = name.removeprefix(prefix) if name.startswith(prefix) else ""
            value = count_value(metric.get("value"))
            if field_name in fields and version and value is not None:
                entry = sums.setdefault(version, {})
                entry[field_name] = entry.get(field_name, 0.0) + value
    return sums


REFUSED_PREFIX: Final = "refused."
"""What a worker's run metric is named for a registry version it refused to load: ``refused.<version number>``."""


def refused_by_a_worker(runs: list[Any], number: str) -> bool:
    """Whether any worker's run says it refused to load the registry version ``number`` (a metric
    ``refused.<number>`` of at least 1)."""
    key = f"{REFUSED_PREFIX}{number}"
    return any(
        metric.get("key") == key and (count_value(metric.get("value")) or 0.0) >= 1
        for run in runs
        for metric in run_items(run, "metrics")
    )


MAX_COUNT: Final = float(2**53)
"""Largest value a run's metric may hold to count: no worker serves that many events, and a thousand runs of it
still sum to a finite number."""


def count_value(value: Any) -> float | None:
    """A run metric's value as a count, or None when it is not one: not a number (or a number's text, as the REST
    API may write one), NaN, infinite, negative or past :data:`MAX_COUNT`. One NaN would make its sum NaN, and every
    comparison with NaN false, so a verdict would find no reason against a canary or shadow."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None
    return number if 0.0 <= number <= MAX_COUNT else None


def metric_values(counts: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The run metrics of per-version counts (dataclasses), read back by :func:`summed`."""
    return {f"{prefix}{name}.{version}": float(getattr(entry, name)) for version, entry in counts.items()
            for name in (spec.name for spec in dataclasses.fields(entry))}  # fmt: skip


def canary_verdict(
    champion: VersionCounts, canary: VersionCounts, min_events: int, min_judged: int
) -> tuple[bool, list[str]] | None:
    """Promote the canary or not, with the reasons against; None while it has served too little to tell.

    It must send at most :data:`REVIEW_SHARE_SLACK` more of its events to review than the champion, and, once
    people judged ``min_judged`` of its predictions, show items at most :data:`PRECISION_SLACK` less precise
    (:attr:`VersionCounts.precision`), each beyond the :func:`noise` of the canary's sample.
    """
    if canary.served < min_events or canary.judged < min_judged:
        return None
    # Summed counts are finite and not negative (count_value), but a part may exceed its whole.
    reasons = [
        f"the {who} has more {part} than {whole} ({getattr(counts, part):g} > {getattr(counts, whole):g})"
        for who, counts in (("canary", canary), ("champion", champion))
        for part, whole in (("correct", "judged"), ("reported", "shown"))
        if getattr(counts, part) > getattr(counts, whole)
    ]
    limit = champion.review_share + REVIEW_SHARE_SLACK + noise(champion.review_share, canary.served)
    if canary.review_share > limit:
        reasons.append(f"review share {canary.review_share:.3f} > {limit:.3f} (champion {champion.review_share:.3f})")
    if canary.precision is not None and champion.precision is not None:
        floor = champion.precision - PRECISION_SLACK - noise(champion.precision, canary.shown)
        if canary.precision < floor:
            reasons.append(f"online precision {canary.precision:.3f} < {floor:.3f} (champion {champion.precision:.3f})")
    return not reasons, reasons


def noise(share: float, n: float) -> float:
    """Two standard errors of a share measured on ``n`` items: a canary is refused for a difference sampling
    alone would rarely (about 2% of the time) make, not for one its few hundred events make by chance."""
    return 2.0 * math.sqrt(max(share * (1.0 - share), 0.01) / n) if n else 1.0
