"""Retraining: started by the worker, one at a time, when new labels, drift or falling online precision call
for it; the trigger is recorded as the run's reason."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from stream_app.classifier import Classifier
from stream_app.drift import DRIFT_MIN_EVENTS, DriftSnapshot
from stream_app.lifecycle.fleet_counts import tagged_precision
from stream_app.review.labels import read_labels
from stream_app.settings import Settings

if TYPE_CHECKING:  # the pipeline imports this module for Shadow
    from stream_app.metrics import Metrics

log = logging.getLogger(__name__)


class Retrainer:
    """Starts ``python -m model_export`` on the labelled store, one run at a time, as a subprocess (never in the
    event loop), when one of its triggers fires; the trigger is logged and passed as the run's ``--reason``:

    - ``labels``: ``TAGGER_RETRAIN_AFTER_LABELS`` new decisions in the labelled store;
    - ``drift``: a drift PSI (confidence or tags) above ``TAGGER_RETRAIN_DRIFT_PSI`` over at least
      :data:`DRIFT_MIN_EVENTS` events for ``TAGGER_RETRAIN_DRIFT_SECONDS``;
    - ``precision``: online precision of the auto-tagged items (one less the share of those shown since start that
      people reported wrong) below the card's target precision, once ``TAGGER_RETRAIN_MIN_JUDGED`` were reported.

    Drift and precision fire once per serving model: a retrain on the same model and the same traffic would
    make the same candidate. Its candidate lands in the candidates folder, or, with a registry, is registered
    there (and becomes the canary if it passes the offline gate). The labelled store is read on a thread: it
    grows with every decision, and it is counted on every poll.
    """

    def __init__(self, settings: Settings, live_dir: Callable[[], Path] | None = None) -> None:
        self.settings = settings
        self.failing = False
        """Whether the last check or start failed on a file (logged once until one succeeds again)."""
        self.live_dir = live_dir if live_dir is not None else lambda: settings.model_dir
        """The folder of the model serving now: passed to the exporter as the model to beat."""
        self.labels_at_last_run: int | None = 0
        """Decisions in the labelled store when the last run started (None: not known yet, the store could not be
        read at start; the first count read is taken as it)."""
        if settings.retrain_after_labels:
            self.labels_at_last_run = self._count_labels()
        self.process: asyncio.subprocess.Process | None = None
        self.exit_logged = False
        """Whether the exit of the last :attr:`process` was logged."""
        self.reason = ""
        self.drifted_since: float | None = None
        self.fired: set[tuple[str, str]] = set()
        """(trigger, model version) pairs that started a run already."""

    def _count_labels(self, metrics: Metrics | None = None) -> int | None:
        """The number of decisions in the labelled store (blocking); None (logged, counted) when it cannot be read:
        the worker goes on without this trigger until it can."""
        try:
            labels = len(read_labels(self.settings.labels_path)[0])
        except (OSError, MemoryError) as error:  # MemoryError: a store grown past what the worker can hold
            self._skipped(f"cannot read the labelled store {self.settings.labels_path}", error, metrics)
            return None
        self._recovered()
        return labels

    def _skipped(self, what: str, error: BaseException, metrics: Metrics | None = None) -> None:
        """Log (once until a check succeeds again) and count a retrain check or start skipped for ``error``."""
        if metrics is not None:
            metrics.retrains_skipped.inc()
        if not self.failing:
            log.error("%s: %s; no retrain until it can", what, error if str(error) else type(error).__name__)
        self.failing = True

    def _recovered(self) -> None:
        """Note that a check or start succeeded after one failed (logged)."""
        if self.failing:
            log.warning("the retrain's files read again: retrains start when a trigger fires")
        self.failing = False

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
        shown, wrong = tagged_precision(metrics, live.version)
        if wrong < least or ("precision", live.version) in self.fired:
            return None
        # The follower counts a report only on an item it counted as shown; max only keeps a division by zero out.
        precision = 1.0 - wrong / max(shown, wrong)
        if precision >= target:
            return None
        return f"precision: online precision {precision:.3f} < target {target} ({wrong:.0f} of {shown:.0f} reported)"

    async def _labels_reason(self, metrics: Metrics | None) -> tuple[str, int] | None:
        """The labels trigger's reason and the count of decisions it read, when it fires."""
        after = self.settings.retrain_after_labels
        if after == 0:
            return None
        labels = await asyncio.to_thread(self._count_labels, metrics)
        if labels is None:
            return None
        if self.labels_at_last_run is None:
            self.labels_at_last_run = labels
        if labels - self.labels_at_last_run < after:
            return None
        return f"labels: {labels} decisions stored, {after} or more new", labels

    async def maybe_start(
        self, live: Classifier, drift: DriftSnapshot | None = None, metrics: Metrics | None = None
    ) -> None:
        """Start a retrain if none is running and a trigger fires."""
        if self.process is not None:
            if self.process.returncode is None:
                return
            if not self.exit_logged:  # the exporter's own output names the cause
                log_exit = log.info if self.process.returncode == 0 else log.error
                log_exit("the retrain (%s) ended with exit status %d", self.reason, self.process.returncode)
                self.exit_logged = True
        reason = self._drift_reason(live, drift, time.monotonic()) or self._precision_reason(live, metrics)
        counted = None if reason is not None else await self._labels_reason(metrics)
        if counted is not None:
            reason = counted[0]
        if reason is None:
            return
        try:
            await self._start(live, reason)
        except OSError as error:  # the exporter or a folder it needs could not be found or run
            self._skipped("cannot start a retrain", error, metrics)
            return
        self._recovered()
        trigger = reason.split(":", 1)[0]
        if trigger in ("drift", "precision"):
            self.fired.add((trigger, live.version))
        if counted is not None:
            self.labels_at_last_run = counted[1]

    async def _start(self, live: Classifier, reason: str) -> None:
        """Start the exporter for ``reason``; raises :class:`OSError` when it cannot be."""
        settings = self.settings
        live_dir = self.live_dir()
        name = f"retrain-{int(time.time())}"
        out = settings.data_dir / "retrain" / name if settings.registry_url else settings.candidates_dir / name
        command = [sys.executable, "-m", "model_export", "--live", str(live_dir), "--out", str(out), "--reason", reason]
        # No labelled store before the first decision: a drift retrain then trains on the dataset alone.
        if await asyncio.to_thread(settings.labels_path.is_file):
            command += ["--feedback", str(settings.labels_path)]
        if settings.retrain_grid == "fast":
            command.append("--fast")
        if settings.registry_url:
            command += ["--registry", settings.registry_url, "--model-name", settings.registry_model]
        self.process, self.exit_logged = await asyncio.create_subprocess_exec(*command), False
        self.reason = reason
        log.warning("retraining (model %s serves), %s: %s", live.version, reason, " ".join(command))
