"""The fleet's model: every worker follows the registry's ``champion``, ``canary`` and ``shadow`` aliases, serves
the canary to a share of the events, runs the shadow beside the champion, and publishes its counts per version; one
worker decides the shadow and the canary on the fleet's counts. A worker remembers the champion it took up and
serves it at start-up, so a restart while the registry is down does not fall back to an older folder model."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from stream_app.classifier import Classifier
from stream_app.errors import ModelError
from stream_app.lifecycle.candidates import start_model_from
from stream_app.lifecycle.champion import Pointer, cached_champion, load_as, read_pointer, remember
from stream_app.lifecycle.fleet_counts import (
    REFUSED_PREFIX,
    SHADOW_PREFIX,
    VersionCounts,
    canary_verdict,
    fleet_counts,
    metric_values,
    refused_by_a_worker,
    shadow_counts,
    worker_counts,
)
from stream_app.lifecycle.registry import (
    CANARY,
    CHAMPION,
    SHADOW,
    ModelVersion,
    RegistryCacheError,
    RegistryClient,
    RegistryError,
    fetch_version,
    fleet_experiment,
    is_cached,
    prune_cache,
    version_folder,
)
from stream_app.lifecycle.shadow import Shadow, ShadowCounts
from stream_app.settings import Settings

if TYPE_CHECKING:
    from stream_app.metrics import Metrics
    from stream_app.pipeline import Pipeline

log = logging.getLogger(__name__)


UNANSWERED: Final = (RegistryError, OSError, KeyError, TypeError, ValueError, AttributeError)
"""What a registry that is down, or answers with something unexpected (a malformed answer read where another shape
was expected), raises out of a call: the worker goes on serving what it serves."""


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
        self.followed: dict[str, str | None] = {CHAMPION: None, CANARY: None, SHADOW: None}
        """Per alias, the registry version number this worker took up (None: none yet, or the alias is unset)."""
        self.refused: set[str] = set()
        """Version sources whose download failed its checks: not downloaded again in this run (a restarted worker
        downloads each once more: its cached copy fails the same checks)."""
        self.refused_numbers: set[str] = set()
        """Registry version numbers this worker refused: published, so the decider refuses them for the fleet."""
        self.reachable: bool | None = None
        self.cache_failing: str | None = None
        """Why the last poll could not write a version to the cache, while it cannot (logged once)."""
        self.champion_dir: Path | None = None
        """The folder of the champion this worker serves (None: it serves its model folder)."""
        self.shadow: Shadow | None = None
        """The shadow version's comparison running beside the champion, if the registry names one."""
        self.shadows: dict[str, Shadow] = {}
        """Every shadow comparison of this worker's run, by model version: their counts are published."""
        self.canary_version = ""
        """The model version of the canary this worker last served."""
        self.worker_name = ""
        """The name of this worker's run in :func:`fleet_experiment` (empty: counts are not published)."""
        self.run_id: str | None = None
        self.decides = False
        """Whether this worker judges the shadow and the canary on the whole fleet's counts (one worker does)."""
        self.canary_min_events = 500
        self.canary_min_judged = 0
        self.shadow_events = 500
        """Events the fleet's shadow must have compared before it is judged (0: it becomes the canary at once)."""

    def started_with(self, pointer: Pointer) -> None:
        """This worker started serving the cached champion ``pointer`` names: it is followed already."""
        self.followed[CHAMPION], self.champion_dir = pointer.number, pointer.folder

    def _load(self, alias: str) -> tuple[ModelVersion | None, Classifier | None]:
        """The version ``alias`` names and, when it is new to this worker, its checked model (blocking)."""
        version = self.client.alias(self.model_name, alias)
        if version is None or version.number == self.followed[alias] or version.source in self.refused:
            return version, None
        try:
            model = self._checked(version)
        except ModelError as error:
            self.metrics.refused(error.reason)
            self._refuse(version, alias, str(error))
            return version, None
        if alias == CHAMPION:
            self.champion_dir = version_folder(self.cache_dir, version)
        return version, model

    def _checked(self, version: ModelVersion) -> Classifier:
        """``version``'s model, checked: its cached copy when that loads and is the model version the registry's tag
        names, else downloaded again (blocking); raises :class:`ModelError` when the download does not load."""
        if is_cached(self.cache_dir, version):
            try:
                return load_as(version_folder(self.cache_dir, version), version.tags.get("model_version"),
                               self.review_threshold)  # fmt: skip
            except ModelError as error:
                # A disk error or a change after the download says nothing of the registry's bytes: only a download
                # that fails its checks refuses the version (which a worker's run then refuses for the fleet).
                log.warning("the cached copy of registry version %s is not the registry's, downloading it again: %r",
                            version.number, str(error))  # fmt: skip
        folder = fetch_version(self.client, version, self.cache_dir, again=True)
        return Classifier.load(folder, self.review_threshold)

    def _refuse(self, version: ModelVersion, alias: str, why: str) -> None:
        """Never load ``version`` again in this run, and say so in this worker's run: the decider then refuses it
        for the whole fleet (the caller counts the refusal)."""
        self.refused.add(version.source)
        self.refused_numbers.add(version.number)
        log.error("refusing registry version %s (%s): %r", version.number, alias, why)

    async def poll(self, pipeline: Pipeline) -> None:
        """Swap in a new champion, and start, change or stop serving a canary and running a shadow, as the
        registry's aliases say."""
        try:
            champion, model = await asyncio.to_thread(self._load, CHAMPION)
            canary, canary_model = await asyncio.to_thread(self._load, CANARY)
            shadow, shadow_model = await asyncio.to_thread(self._load, SHADOW)
        except RegistryCacheError as error:
            # The registry answered: it is reachable, and the version is not refused. The next poll tries again.
            self.metrics.registry_reachable.set(1)
            if self.cache_failing is None:
                log.error("the registry cache cannot be written; serving model %s: %s", pipeline.classifier.version,
                          error)  # fmt: skip
            self.cache_failing = str(error)
            return
        except UNANSWERED as error:
            self._unreachable(pipeline, error)
            return
        if self.cache_failing is not None:
            log.warning("the registry cache is written again")
            self.cache_failing = None
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
            if self.champion_dir is not None:
                pointer = Pointer(self.model_name, champion.number, model.version, self.champion_dir)
                await asyncio.to_thread(remember, self.cache_dir, pointer)
        if canary is None:
            if self.followed[CANARY] is not None:
                pipeline.set_canary(None)
                log.warning("no canary any more (version %s)", self.followed[CANARY])
            self.followed[CANARY] = None
        elif canary_model is not None:
            pipeline.set_canary(canary_model, self.canary_fraction)
            self.canary_version = canary_model.version
            self.followed[CANARY] = canary.number
            log.warning("serving canary version %s, model %s, beside %s", canary.number, canary_model.version,
                        pipeline.classifier.version)  # fmt: skip
        failed = pipeline.failed_canaries.get(self.canary_version)
        if canary is not None and failed is not None and canary.number not in self.refused_numbers:
            self._refuse(canary, CANARY, failed)  # the pipeline stopped serving it, and counted it (Pipeline.route)
        self._follow_shadow(pipeline, shadow, shadow_model)
        keep = {version_folder(self.cache_dir, v) for v in (champion, canary, shadow) if v is not None}
        await asyncio.to_thread(self._prune, keep | ({self.champion_dir} if self.champion_dir else set()))
        try:
            if self.worker_name:
                await asyncio.to_thread(self._publish, worker_counts(self.metrics))
            if self.decides and shadow is not None:
                await asyncio.to_thread(self._decide_shadow, shadow, canary)
            if self.decides and canary is not None and champion is not None:
                await asyncio.to_thread(self._decide, champion, canary)
        except UNANSWERED as error:
            self._unreachable(pipeline, error)

    def _follow_shadow(self, pipeline: Pipeline, shadow: ModelVersion | None, model: Classifier | None) -> None:
        """Run the shadow version beside the live model (never done: the fleet decides) in place of the one it ran
        before, or stop running it when the alias is unset or names a version that does not load here."""
        number = shadow.number if shadow is not None else None
        if model is not None and shadow is not None:
            running = self.shadows.setdefault(model.version, Shadow(model, sys.maxsize))
            if self.shadow is not None and pipeline.shadow is self.shadow:
                pipeline.shadow = running  # the alias moved on from the version the pipeline shadows
            self.shadow = running
            self.followed[SHADOW] = number
            log.warning("running shadow version %s, model %s, beside %s", shadow.number, model.version,
                        pipeline.classifier.version)  # fmt: skip
        elif number != self.followed[SHADOW]:
            if self.followed[SHADOW] is not None:
                log.warning("no shadow any more (version %s)", self.followed[SHADOW])
                if pipeline.shadow is self.shadow:
                    pipeline.shadow = None
                self.shadow = None
            self.followed[SHADOW] = None
        if self.shadow is not None and pipeline.shadow is None:  # a folder candidate's shadow goes first
            pipeline.shadow = self.shadow
        failure = self.shadow.failure if self.shadow is not None else None
        if shadow is not None and failure is not None and shadow.number not in self.refused_numbers:
            self.metrics.refused("corrupt")
            self._refuse(shadow, SHADOW, failure)  # it stopped shadowing (Shadow.predict): never the canary

    def _prune(self, keep: set[Path]) -> None:
        """Remove the downloaded versions no alias names and this worker does not serve (logged); a folder that
        cannot be removed is logged and left for the next poll."""
        try:
            removed = prune_cache(self.cache_dir, keep)
        except OSError as error:
            log.warning("cannot prune the registry cache %s: %s", self.cache_dir, error)
            return
        if removed:
            log.info("removed from the registry cache: %s", ", ".join(removed))

    def _unreachable(self, pipeline: Pipeline, error: Exception) -> None:
        """Note that the registry failed a call (logged once until it answers again); nothing else changes."""
        if self.reachable is not False:
            served = pipeline.classifier.version
            log.warning("the model registry does not answer; serving model %s: %r", served, error)
        self.reachable = False
        self.metrics.registry_reachable.set(0)

    def _publish(self, counts: Mapping[str, VersionCounts]) -> None:
        """Log this worker's counts per version, and its shadows' counts, as metrics of its run in
        :func:`fleet_experiment`."""
        if self.run_id is None:
            experiment = self.client.experiment_id(fleet_experiment(self.model_name))
            self.run_id, _ = self.client.create_run(experiment, self.worker_name, {"worker": self.worker_name})
        shadows = {version: shadow.counts for version, shadow in self.shadows.items()}
        values = {**metric_values(counts), **metric_values(shadows, SHADOW_PREFIX),
                  **{f"{REFUSED_PREFIX}{number}": 1.0 for number in self.refused_numbers}}  # fmt: skip
        self.client.log_batch(self.run_id, metrics=values)

    def _decide_shadow(self, shadow: ModelVersion, canary: ModelVersion | None) -> None:
        """Once the fleet compared ``shadow_events`` events, make the shadow the canary when it passes the folder
        shadow's rule, or remove it and tag why; it waits while another canary is being judged."""
        version = shadow.tags.get("model_version")
        if not version or canary is not None:
            return
        runs = self.client.search_runs(self.client.experiment_id(fleet_experiment(self.model_name)))
        if self._refused_by_a_worker(runs, shadow, SHADOW, CANARY):
            return
        figures: dict[str, Any]
        if self.shadow_events == 0:
            passed, figures = True, {"events": 0, "reasons": []}
        else:
            counts = shadow_counts(runs)
            summed_counts = counts.get(version, ShadowCounts())
            if summed_counts.compared < self.shadow_events:
                return
            passed, figures = summed_counts.verdict()
        self._settle(shadow, SHADOW, CANARY, json.dumps(figures), [] if passed else figures["reasons"])

    def _decide(self, champion: ModelVersion, canary: ModelVersion) -> None:
        """Promote the canary (move ``champion`` to it) or roll it back (remove ``canary``, tag the reason)."""
        champion_version, canary_version = champion.tags.get("model_version"), canary.tags.get("model_version")
        if not champion_version or not canary_version:
            return
        if canary_version == champion_version:
            # Counts are kept per model version, so this canary's traffic is the champion's: judged on it, it would
            # be compared with itself and always pass. Its bytes are the champion's; only its card differs.
            reasons = [f"it is the champion's model version {champion_version}: its counts are the champion's"]
            self._settle(canary, CANARY, CHAMPION, json.dumps({"reasons": reasons}), reasons)
            return
        runs = self.client.search_runs(self.client.experiment_id(fleet_experiment(self.model_name)))
        if self._refused_by_a_worker(runs, canary, CANARY, CHAMPION):
            return
        counts = fleet_counts(runs)
        live, new = counts.get(champion_version, VersionCounts()), counts.get(canary_version, VersionCounts())
        verdict = canary_verdict(live, new, self.canary_min_events, self.canary_min_judged)
        if verdict is None:
            return
        _, reasons = verdict
        figures = json.dumps({"canary": new.figures(), "champion": live.figures(), "reasons": reasons})
        self._settle(canary, CANARY, CHAMPION, figures, reasons)

    def _refused_by_a_worker(self, runs: list[Any], version: ModelVersion, stage: str, next_stage: str) -> bool:
        """Refuse ``version`` at ``stage`` (and say so) when a worker's run says it could not load it: a version
        some workers cannot serve would leave them serving the old one, unseen, once it moved on."""
        if not refused_by_a_worker(runs, version.number):
            return False
        reasons = ["a worker refused to load it (its log says why)"]
        self._settle(version, stage, next_stage, json.dumps({"reasons": reasons}), reasons)
        return True

    def _settle(self, version: ModelVersion, stage: str, next_stage: str, figures: str, reasons: list[str]) -> None:
        """Record the verdict on ``version`` at alias ``stage``: its figures (tag ``<stage>``) and decision, then
        move it to alias ``next_stage`` when there are no ``reasons`` against it, or remove ``stage``."""
        self.client.set_version_tag(self.model_name, version.number, stage, figures)
        # The decision is tagged before the aliases move, so whoever sees an alias change finds its reason.
        if not reasons:
            decision = f"{next_stage}: the {stage} passed"
            self.client.set_version_tag(self.model_name, version.number, "decision", decision)
            self.client.set_alias(self.model_name, next_stage, version.number)
            self.client.delete_alias(self.model_name, stage)
            log.warning("%s version %s becomes the %s: %s", stage, version.number, next_stage, figures)
        else:
            decision = f"refused: worse_{stage}: " + "; ".join(reasons)
            self.client.set_version_tag(self.model_name, version.number, "decision", decision)
            self.client.delete_alias(self.model_name, stage)
            self.metrics.refused(f"worse_{stage}")
            log.warning("refused %s version %s: %s", stage, version.number, figures)


def start_model(settings: Settings) -> tuple[Classifier, Path]:
    """The model a worker serves at start-up and its folder: with a registry, the champion it last took up (see
    :func:`cached_champion`), else (logged) the newest promoted candidate that loads and holds what was promoted,
    or ``TAGGER_MODEL_DIR`` (:func:`start_model_from`); raises
    :class:`ModelError` when that does not load."""
    if settings.registry_url:
        cached = cached_champion(registry_cache(settings), settings.registry_model, settings.review_threshold)
        if cached is not None:
            pointer, model = cached
            log.warning("serving the cached registry champion, version %s, model %s", pointer.number, model.version)
            return model, pointer.folder
        log.warning("no cached registry champion: serving the model folder until the registry answers")
    return start_model_from(settings.model_dir, settings.candidates_dir, settings.review_threshold)


def registry_cache(settings: Settings) -> Path:
    """Where a worker keeps the versions it downloaded and its champion pointer."""
    return settings.data_dir / "registry"


def fleet_model(settings: Settings, metrics: Metrics, serving: str = "") -> FleetModel | None:
    """The registry follower the settings ask for, or None without ``TAGGER_REGISTRY_URL``."""
    if not settings.registry_url:
        return None
    client = RegistryClient(settings.registry_url)
    cache = registry_cache(settings)
    fleet = FleetModel(
        client, settings.registry_model, cache, metrics, settings.review_threshold, settings.canary_fraction
    )
    fleet.worker_name = f"{settings.app_id}@{socket.gethostname()}:{settings.web_port}"
    fleet.decides = settings.canary_decider
    fleet.canary_min_events, fleet.canary_min_judged = settings.canary_min_events, settings.canary_min_judged
    fleet.shadow_events = settings.shadow_events
    pointer = read_pointer(cache, settings.registry_model)
    if pointer is not None and pointer.model_version == serving:  # started with the cached champion
        fleet.started_with(pointer)
    return fleet
