"""The fleet's model: every worker follows the registry's ``champion`` and ``canary`` aliases, serves the canary to a
share of the events, and publishes its counts per version; one worker decides the canary on the fleet's counts."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from stream_app.classifier import Classifier
from stream_app.errors import ModelError
from stream_app.lifecycle.registry import (
    CANARY,
    CHAMPION,
    ModelVersion,
    RegistryClient,
    RegistryError,
    fetch_version,
    fleet_experiment,
)
from stream_app.settings import Settings

if TYPE_CHECKING:
    from stream_app.metrics import Metrics
    from stream_app.pipeline import Pipeline

log = logging.getLogger(__name__)


REVIEW_SHARE_SLACK: Final = 0.05
"""How much more of its traffic a canary may send to people than the champion does."""
PRECISION_SLACK: Final = 0.02
"""How much lower a canary's online precision may be than the champion's."""


@dataclass
class VersionCounts:
    """What one model version did, summed over workers: events served per route, predictions people judged."""

    tagged: float = 0.0
    review: float = 0.0
    judged: float = 0.0
    correct: float = 0.0

    @property
    def served(self) -> float:
        return self.tagged + self.review

    @property
    def review_share(self) -> float:
        return self.review / self.served if self.served else 0.0

    @property
    def precision(self) -> float | None:
        return self.correct / self.judged if self.judged else None

    def figures(self) -> dict[str, Any]:
        """The counts and the two rates, for a version tag."""
        return {"served": self.served, "review_share": round(self.review_share, 4), "judged": self.judged,
                "precision": None if self.precision is None else round(self.precision, 4)}  # fmt: skip


def worker_counts(metrics: Metrics) -> dict[str, VersionCounts]:
    """This worker's counts per model version, read from its metrics."""
    counts: dict[str, VersionCounts] = {}
    for metric, field_of in ((metrics.model_served, "route"), (metrics.online_judged, None),
                             (metrics.online_correct, None)):  # fmt: skip
        for family in metric.collect():
            for sample in family.samples:
                if not sample.name.endswith("_total"):
                    continue
                entry = counts.setdefault(sample.labels["version"], VersionCounts())
                name = sample.labels["route"] if field_of else family.name.removeprefix("content_tagger_online_")
                setattr(entry, name, getattr(entry, name) + sample.value)
    return counts


def fleet_counts(runs: list[dict[str, Any]]) -> dict[str, VersionCounts]:
    """The counts per model version summed over the workers' runs (metrics named ``<field>.<version>``)."""
    counts: dict[str, VersionCounts] = {}
    for run in runs:
        for metric in run.get("data", {}).get("metrics", []):
            name, _, version = str(metric.get("key", "")).partition(".")
            if name in ("tagged", "review", "judged", "correct") and version:
                entry = counts.setdefault(version, VersionCounts())
                setattr(entry, name, getattr(entry, name) + float(metric.get("value", 0.0)))
    return counts


def canary_verdict(
    champion: VersionCounts, canary: VersionCounts, min_events: int, min_judged: int
) -> tuple[bool, list[str]] | None:
    """Promote the canary or not, with the reasons against; None while it has served too little to tell.

    It must send at most :data:`REVIEW_SHARE_SLACK` more of its events to review than the champion, and, once
    people judged ``min_judged`` of its predictions, be at most :data:`PRECISION_SLACK` less precise, each beyond
    the :func:`noise` of the canary's sample.
    """
    if canary.served < min_events or canary.judged < min_judged:
        return None
    reasons = []
    limit = champion.review_share + REVIEW_SHARE_SLACK + noise(champion.review_share, canary.served)
    if canary.review_share > limit:
        reasons.append(f"review share {canary.review_share:.3f} > {limit:.3f} (champion {champion.review_share:.3f})")
    if canary.precision is not None and champion.precision is not None:
        floor = champion.precision - PRECISION_SLACK - noise(champion.precision, canary.judged)
        if canary.precision < floor:
            reasons.append(f"online precision {canary.precision:.3f} < {floor:.3f} (champion {champion.precision:.3f})")
    return not reasons, reasons


def noise(share: float, n: float) -> float:
    """Two standard errors of a share measured on ``n`` items: a canary is refused for a difference sampling
    alone would rarely (about 2% of the time) make, not for one its few hundred events make by chance."""
    return 2.0 * math.sqrt(max(share * (1.0 - share), 0.01) / n) if n else 1.0


UNANSWERED: Final = (RegistryError, OSError, KeyError, TypeError, ValueError)
"""What a registry that is down, or answers with something unexpected, raises out of a call: the worker goes on
serving what it serves."""


class FleetModel:
    """Makes this worker serve what the registry's aliases say, checked as a model folder is.

    :meth:`poll` is called from the worker's model timer; the registry calls, downloads and model loads run on a
    thread, and the swap itself happens on the event loop, between batches.
    """

    def __init__(
        self,
        client: RegistryClient,
        model_name: str,
        cache_dir: Path,
        metrics: Metrics,
        review_threshold: float | None = None,
        canary_fraction: float = 0.1,
    ) -> None:
        self.client = client
        self.canary_fraction = canary_fraction
        self.model_name = model_name
        self.cache_dir = cache_dir
        self.metrics = metrics
        self.review_threshold = review_threshold
        self.followed: dict[str, str | None] = {CHAMPION: None, CANARY: None}
        """Per alias, the registry version number this worker took up (None: none yet, or the alias is unset)."""
        self.refused: set[str] = set()
        """Version sources refused once, not downloaded again."""
        self.reachable: bool | None = None
        self.champion_dir: Path | None = None
        """The folder of the champion this worker serves (None: it serves its model folder)."""
        self.worker_name = ""
        """The name of this worker's run in :func:`fleet_experiment` (empty: counts are not published)."""
        self.run_id: str | None = None
        self.decides = False
        """Whether this worker judges the canary on the whole fleet's counts (one worker of the fleet does)."""
        self.canary_min_events = 500
        self.canary_min_judged = 0

    def _load(self, alias: str) -> tuple[ModelVersion | None, Classifier | None]:
        """The version ``alias`` names and, when it is new to this worker, its checked model (blocking)."""
        version = self.client.alias(self.model_name, alias)
        if version is None or version.number == self.followed[alias] or version.source in self.refused:
            return version, None
        try:
            folder = fetch_version(self.client, version, self.cache_dir)
            model = Classifier.load(folder, self.review_threshold)
            if alias == CHAMPION:
                self.champion_dir = folder
            return version, model
        except ModelError as error:
            self.refused.add(version.source)
            self.metrics.refused(error.reason)
            log.error("refusing registry version %s (%s): %s", version.number, alias, error)
            return version, None

    async def poll(self, pipeline: Pipeline) -> None:
        """Swap in a new champion, and start, change or stop serving a canary, as the registry's aliases say."""
        try:
            champion, model = await asyncio.to_thread(self._load, CHAMPION)
            canary, canary_model = await asyncio.to_thread(self._load, CANARY)
        except UNANSWERED as error:
            self._unreachable(pipeline, error)
            return
        if self.reachable is False:
            log.warning("the model registry answers again")
        self.reachable = True
        self.metrics.registry_reachable.set(1)
        if champion is not None and model is not None:
            previous = pipeline.classifier.version
            pipeline.swap(model)  # even the same bytes: the version's card may set another threshold
            if model.version != previous:
                self.metrics.promoted()
                log.warning(
                    "serving registry version %s, model %s (replacing %s)", champion.number, model.version, previous
                )
            self.followed[CHAMPION] = champion.number
        if canary is None:
            if self.followed[CANARY] is not None:
                pipeline.set_canary(None)
                log.warning("no canary any more (version %s)", self.followed[CANARY])
            self.followed[CANARY] = None
        elif canary_model is not None:
            pipeline.set_canary(canary_model, self.canary_fraction)
            self.followed[CANARY] = canary.number
            log.warning("serving canary version %s, model %s, beside %s", canary.number, canary_model.version,
                        pipeline.classifier.version)  # fmt: skip
        try:
            if self.worker_name:
                await asyncio.to_thread(self._publish, worker_counts(self.metrics))
            if self.decides and canary is not None and champion is not None:
                await asyncio.to_thread(self._decide, champion, canary)
        except UNANSWERED as error:
            self._unreachable(pipeline, error)

    def _unreachable(self, pipeline: Pipeline, error: Exception) -> None:
        """Note that the registry failed a call (logged once until it answers again); nothing else changes."""
        if self.reachable is not False:
            served = pipeline.classifier.version
            log.warning("the model registry does not answer; serving model %s: %r", served, error)
        self.reachable = False
        self.metrics.registry_reachable.set(0)

    def _publish(self, counts: Mapping[str, VersionCounts]) -> None:
        """Log this worker's counts per version as metrics of its run in :func:`fleet_experiment`."""
        if self.run_id is None:
            experiment = self.client.experiment_id(fleet_experiment(self.model_name))
            self.run_id, _ = self.client.create_run(experiment, self.worker_name, {"worker": self.worker_name})
        values = {f"{name}.{version}": getattr(entry, name) for version, entry in counts.items()
                  for name in ("tagged", "review", "judged", "correct")}  # fmt: skip
        self.client.log_batch(self.run_id, metrics=values)

    def _decide(self, champion: ModelVersion, canary: ModelVersion) -> None:
        """Promote the canary (move ``champion`` to it) or roll it back (remove ``canary``, tag the reason)."""
        champion_version, canary_version = champion.tags.get("model_version"), canary.tags.get("model_version")
        if not champion_version or not canary_version:
            return
        runs = self.client.search_runs(self.client.experiment_id(fleet_experiment(self.model_name)))
        counts = fleet_counts(runs)
        live, new = counts.get(champion_version, VersionCounts()), counts.get(canary_version, VersionCounts())
        verdict = canary_verdict(live, new, self.canary_min_events, self.canary_min_judged)
        if verdict is None:
            return
        passed, reasons = verdict
        figures = json.dumps({"canary": new.figures(), "champion": live.figures(), "reasons": reasons})
        self.client.set_version_tag(self.model_name, canary.number, "canary", figures)
        # The decision is tagged before the aliases move, so whoever sees an alias change finds its reason.
        if passed:
            self.client.set_version_tag(self.model_name, canary.number, "decision", "champion: the canary passed")
            self.client.set_alias(self.model_name, CHAMPION, canary.number)
            self.client.delete_alias(self.model_name, CANARY)
            log.warning("promoted canary version %s to champion: %s", canary.number, figures)
        else:
            reason = "refused: worse_canary: " + "; ".join(reasons)
            self.client.set_version_tag(self.model_name, canary.number, "decision", reason)
            self.client.delete_alias(self.model_name, CANARY)
            self.metrics.refused("worse_canary")
            log.warning("rolled back canary version %s: %s", canary.number, figures)


def fleet_model(settings: Settings, metrics: Metrics) -> FleetModel | None:
    """The registry follower the settings ask for, or None without ``TAGGER_REGISTRY_URL``."""
    if not settings.registry_url:
        return None
    client = RegistryClient(settings.registry_url)
    cache = settings.data_dir / "registry"
    fleet = FleetModel(
        client, settings.registry_model, cache, metrics, settings.review_threshold, settings.canary_fraction
    )
    fleet.worker_name = f"{settings.app_id}@{socket.gethostname()}:{settings.web_port}"
    fleet.decides = settings.canary_decider
    fleet.canary_min_events, fleet.canary_min_judged = settings.canary_min_events, settings.canary_min_judged
    return fleet
