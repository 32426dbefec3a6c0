"""The online half of guarded promotion: admit a candidate model, run it in shadow beside the live one, and
promote or refuse it. No Kafka here; the worker calls :meth:`ModelLifecycle.poll` from a timer.

A candidate is a folder in ``TAGGER_CANDIDATES_DIR`` holding ``model.onnx`` and ``model.json`` (written by
``python -m model_export --live ...``, which renames it into place whole). It is refused when it does not load
(corrupt, tampered, tags not approved), when its card does not say it passed the offline comparison, or passed it
against a model that no longer serves (stale). An admitted candidate shadows the live model: it classifies the
same events, nothing it says is emitted, and after ``TAGGER_SHADOW_EVENTS`` events :meth:`Shadow.verdict` decides.
A decided folder moves to ``promoted/`` or ``refused/`` (with ``decision.json``), so each is judged once; the
newest promoted folder is what a restarted worker serves.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from stream_app.classifier import Classifier, Prediction
from stream_app.drift import DriftSnapshot
from stream_app.errors import ModelError
from stream_app.review.labels import read_labels
from stream_app.settings import Settings

if TYPE_CHECKING:  # the pipeline imports this module for Shadow
    from stream_app.metrics import Metrics
    from stream_app.pipeline import Pipeline

log = logging.getLogger(__name__)

MIN_SHADOW_AGREEMENT: Final = 0.8
"""Least share of shadowed events on which the candidate picks the live model's tag: a retrain on corrections
changes some answers, a model that changes most of them is not the same product."""
REVIEW_SHARE_SLACK: Final = 0.05
"""How much more of the traffic the candidate may send to people than the live model does."""
PROMOTED, REFUSED = "promoted", "refused"


@dataclass(frozen=True)
class Refusal:
    """Why a candidate will not serve."""

    reason: str
    detail: str


class Shadow:
    """A candidate classifying live traffic beside the live model, counted but never emitted."""

    def __init__(self, candidate: Classifier, events: int) -> None:
        self.candidate = candidate
        self.events = events
        self.seen = self.agreed = self.candidate_below = self.live_below = 0

    def observe(self, texts: Sequence[str], live: Sequence[Prediction], live_threshold: float) -> None:
        """Classify ``texts`` with the candidate and compare with the live model's ``live`` predictions."""
        self.compare(self.candidate.predict(list(texts)), live, live_threshold)

    def compare(self, candidate: Sequence[Prediction], live: Sequence[Prediction], live_threshold: float) -> None:
        """Count the candidate's ``candidate`` predictions against the live model's ``live`` ones (same texts)."""
        for said, theirs in zip(candidate, live, strict=True):
            self.seen += 1
            self.agreed += said.tag == theirs.tag
            self.candidate_below += said.confidence < self.candidate.threshold
            self.live_below += theirs.confidence < live_threshold

    @property
    def done(self) -> bool:
        """Whether enough events were shadowed to decide."""
        return self.seen >= self.events

    def verdict(self) -> tuple[bool, dict[str, Any]]:
        """Promote or not, with the figures: the candidate must agree with the live model on at least
        :data:`MIN_SHADOW_AGREEMENT` of the events and send at most :data:`REVIEW_SHARE_SLACK` more to review."""
        seen = max(self.seen, 1)
        figures = {
            "events": self.seen,
            "agreement": self.agreed / seen,
            "candidate_review_share": self.candidate_below / seen,
            "live_review_share": self.live_below / seen,
        }
        passed = (
            figures["agreement"] >= MIN_SHADOW_AGREEMENT
            and figures["candidate_review_share"] <= figures["live_review_share"] + REVIEW_SHARE_SLACK
        )
        return passed, figures


def admit(folder: Path, live_version: str, review_threshold: float | None = None) -> Classifier | Refusal:
    """Load a candidate and check its card's offline comparison; a :class:`Refusal` says why not."""
    try:
        candidate = Classifier.load(folder, review_threshold)
    except ModelError as error:
        return Refusal(error.reason, str(error))
    promotion = candidate.card.get("promotion")
    if not isinstance(promotion, dict) or promotion.get("passed") is not True:
        reasons = promotion.get("reasons") if isinstance(promotion, dict) else "no offline comparison in its card"
        return Refusal("worse_offline", f"{candidate.version}: {reasons}")
    if promotion.get("live_version") != live_version:
        return Refusal("stale", f"compared with {promotion.get('live_version')}, but {live_version} serves")
    return candidate


def pending_candidates(candidates_dir: Path) -> list[Path]:
    """Candidate folders not yet decided, oldest first (folders being written start with a dot)."""
    if not candidates_dir.is_dir():
        return []
    folders = [
        p for p in candidates_dir.iterdir()
        if p.is_dir() and not p.name.startswith(".") and p.name not in (PROMOTED, REFUSED)
    ]  # fmt: skip
    return sorted(folders, key=lambda p: (p.stat().st_mtime, p.name))


def current_model_dir(model_dir: Path, candidates_dir: Path) -> Path:
    """The folder to serve at start-up: the most recently promoted candidate, else ``model_dir``."""
    promoted = candidates_dir / PROMOTED
    decided = []
    for folder in promoted.iterdir() if promoted.is_dir() else ():
        try:
            decided.append((json.loads((folder / "decision.json").read_text())["decided_at"], folder))
        except (OSError, ValueError, KeyError):
            continue
    return max(decided)[1] if decided else model_dir


def file_decision(folder: Path, candidates_dir: Path, outcome: str, detail: dict[str, Any]) -> Path:
    """Move a decided candidate to ``promoted/`` or ``refused/`` with its ``decision.json``; returns where."""
    target = candidates_dir / outcome / folder.name
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        shutil.rmtree(target)
    folder.rename(target)
    (target / "decision.json").write_text(json.dumps({"outcome": outcome, "decided_at": time.time(), **detail}))
    return target


class ModelLifecycle:
    """Candidates one at a time: admit or refuse, shadow, then promote (swap the pipeline's model) or refuse.

    Listing, loading, hashing and filing candidates run on a thread (:func:`asyncio.to_thread`): a model of a few
    MB takes tens of milliseconds to hash and load, which the event loop would spend away from Kafka.
    """

    def __init__(
        self,
        pipeline: Pipeline,
        metrics: Metrics,
        candidates_dir: Path,
        shadow_events: int,
        review_threshold: float | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.metrics = metrics
        self.candidates_dir = candidates_dir
        self.shadow_events = shadow_events
        self.review_threshold = review_threshold
        self.trial: tuple[Path, Shadow] | None = None

    async def poll(self) -> None:
        """Decide a finished shadow run, or take up the next pending candidate."""
        if self.trial is not None:
            folder, shadow = self.trial
            if not shadow.done:
                return
            self.trial, self.pipeline.shadow = None, None
            passed, figures = shadow.verdict()
            if passed:
                await self._promote(folder, shadow.candidate, {"shadow": figures})
            else:
                await self._refuse(folder, Refusal("worse_shadow", json.dumps(figures)))
            return
        for folder in await asyncio.to_thread(pending_candidates, self.candidates_dir):
            result = await asyncio.to_thread(admit, folder, self.pipeline.classifier.version, self.review_threshold)
            if isinstance(result, Refusal):
                await self._refuse(folder, result)
                continue
            if self.shadow_events == 0:
                await self._promote(folder, result, {"shadow": None})
                return
            log.info("shadowing candidate model %s for %d events", result.version, self.shadow_events)
            self.trial = (folder, Shadow(result, self.shadow_events))
            self.pipeline.shadow = self.trial[1]
            return

    async def _promote(self, folder: Path, candidate: Classifier, detail: dict[str, Any]) -> None:
        previous = self.pipeline.classifier.version
        self.pipeline.swap(candidate)
        detail = {"version": candidate.version, "replaced": previous, **detail}
        await asyncio.to_thread(file_decision, folder, self.candidates_dir, PROMOTED, detail)
        self.metrics.promoted()
        log.warning("promoted model %s (replacing %s)", candidate.version, previous)

    async def _refuse(self, folder: Path, refusal: Refusal) -> None:
        detail = {"reason": refusal.reason, "detail": refusal.detail}
        await asyncio.to_thread(file_decision, folder, self.candidates_dir, REFUSED, detail)
        self.metrics.refused(refusal.reason)
        log.warning("refused candidate model in %s: %s (%s)", folder.name, refusal.reason, refusal.detail)


DRIFT_MIN_EVENTS: Final = 200
"""Fewest events in the drift window for it to count as drifted: below it, sampling noise alone passes 0.2 (the
same floor as the drift alerts in monitoring/alerts.yml)."""


def tagged_precision(metrics: Metrics, version: str) -> tuple[float, float]:
    """Judged and correct auto-tagged predictions of model ``version`` (what the platform showed)."""
    totals = {"judged": 0.0, "correct": 0.0}
    for name, counter in (("judged", metrics.online_judged), ("correct", metrics.online_correct)):
        for family in counter.collect():
            for sample in family.samples:
                labels = sample.labels
                if sample.name.endswith("_total") and labels["version"] == version and labels["route"] == "tagged":
                    totals[name] += sample.value
    return totals["judged"], totals["correct"]


class Retrainer:
    """Starts ``python -m model_export`` on the labelled store, one run at a time, as a subprocess (never in the
    event loop), when one of its triggers fires; the trigger is logged and passed as the run's ``--reason``:

    - ``labels``: ``TAGGER_RETRAIN_AFTER_LABELS`` new decisions in the labelled store;
    - ``drift``: a drift PSI (confidence or tags) above ``TAGGER_RETRAIN_DRIFT_PSI`` over at least
      :data:`DRIFT_MIN_EVENTS` events for ``TAGGER_RETRAIN_DRIFT_SECONDS``;
    - ``precision``: online precision of the auto-tagged items below the card's target precision over at least
      ``TAGGER_RETRAIN_MIN_JUDGED`` judged ones.

    Drift and precision fire once per serving model: a retrain on the same model and the same traffic would
    make the same candidate. Its candidate lands in the candidates folder, or, with a registry, is registered
    there (and becomes the canary if it passes the offline gate). The labelled store is read on a thread: it
    grows with every decision, and it is counted on every poll.
    """

    def __init__(self, settings: Settings, live_dir: Callable[[], Path | None] = lambda: None) -> None:
        self.settings = settings
        self.live_dir = live_dir
        """The folder of the model serving now, when it is not one :func:`current_model_dir` finds."""
        self.labels_at_last_run = len(read_labels(settings.labels_path)[0]) if settings.retrain_after_labels else 0
        self.process: asyncio.subprocess.Process | None = None
        self.reason = ""
        self.drifted_since: float | None = None
        self.fired: set[tuple[str, str]] = set()
        """(trigger, model version) pairs that started a run already."""

    def _drift_reason(self, live: Classifier, drift: DriftSnapshot | None, now: float) -> str | None:
        seconds, limit = self.settings.retrain_drift_seconds, self.settings.retrain_drift_psi
        if seconds <= 0 or drift is None:
            return None
        worst = max(drift.confidence_psi, drift.tag_psi)
        if drift.events < DRIFT_MIN_EVENTS or worst <= limit:
            self.drifted_since = None
            return None
        self.drifted_since = self.drifted_since if self.drifted_since is not None else now
        if now - self.drifted_since < seconds or ("drift", live.version) in self.fired:
            return None
        return (f"drift: confidence PSI {drift.confidence_psi:.2f}, tag PSI {drift.tag_psi:.2f} > {limit} for "
                f"{now - self.drifted_since:.0f} s over {drift.events} events")  # fmt: skip

    def _precision_reason(self, live: Classifier, metrics: Metrics | None) -> str | None:
        least = self.settings.retrain_min_judged
        target = live.card.get("target_precision")
        if least == 0 or metrics is None or not isinstance(target, int | float):
            return None
        judged, correct = tagged_precision(metrics, live.version)
        if judged < least or correct / judged >= target or ("precision", live.version) in self.fired:
            return None
        return f"precision: online precision {correct / judged:.3f} < target {target} over {judged:.0f} judged"

    async def _labels_reason(self) -> str | None:
        after = self.settings.retrain_after_labels
        if after == 0:
            return None
        labels = len((await asyncio.to_thread(read_labels, self.settings.labels_path))[0])
        if labels - self.labels_at_last_run < after:
            return None
        self.labels_at_last_run = labels
        return f"labels: {labels} decisions stored, {after} or more new"

    async def maybe_start(
        self, live: Classifier, drift: DriftSnapshot | None = None, metrics: Metrics | None = None
    ) -> None:
        """Start a retrain if none is running and a trigger fires."""
        if self.process is not None and self.process.returncode is None:
            return
        reason = self._drift_reason(live, drift, time.monotonic()) or self._precision_reason(live, metrics)
        reason = reason or await self._labels_reason()
        if reason is None:
            return
        trigger = reason.split(":", 1)[0]
        if trigger in ("drift", "precision"):
            self.fired.add((trigger, live.version))
        settings = self.settings
        live_dir = self.live_dir() or await asyncio.to_thread(
            current_model_dir, settings.model_dir, settings.candidates_dir
        )
        name = f"retrain-{int(time.time())}"
        out = settings.data_dir / "retrain" / name if settings.registry_url else settings.candidates_dir / name
        command = [
            sys.executable, "-m", "model_export", "--feedback", str(settings.labels_path),
            "--live", str(live_dir), "--out", str(out), "--reason", reason,
        ]  # fmt: skip
        if settings.registry_url:
            command += ["--registry", settings.registry_url, "--model-name", settings.registry_model]
        log.warning("retraining (model %s serves), %s: %s", live.version, reason, " ".join(command))
        self.reason = reason
        self.process = await asyncio.create_subprocess_exec(*command)
