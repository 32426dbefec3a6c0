"""The fleet's model registry: an MLflow tracking server and model registry, spoken to over its REST API with the
standard library only, so a worker without ``mlflow`` installed (and without a registry at all) runs as before.

Promotion is a registry alias: every worker follows the version the ``champion`` alias names, and serves the
version ``canary`` names to a stated share of the events (chosen by a hash of the event id). A followed version
is downloaded into a cache folder and loaded by :meth:`Classifier.load`, which checks its sha256 against its card
and its tags against the approved ones, exactly as a model folder is checked. While the registry does not answer,
the worker keeps serving what it serves (at start-up: ``TAGGER_MODEL_DIR``) and takes the alias up when it
answers again.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import shutil
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from stream_app.classifier import Classifier
from stream_app.errors import ModelError, TaggerError
from stream_app.settings import Settings

if TYPE_CHECKING:
    from stream_app.metrics import Metrics
    from stream_app.pipeline import Pipeline

log = logging.getLogger(__name__)

CHAMPION: Final = "champion"
"""The alias of the version every worker serves."""
CANARY: Final = "canary"
"""The alias of the version served to ``TAGGER_CANARY_FRACTION`` of the events before it may become champion."""
EXPERIMENT: Final = "content-tagger"
"""The experiment training runs are logged to."""
MODEL_FILES: Final = ("model.onnx", "model.json")
"""What a registered version's artifact folder holds: the ONNX model and its card."""
MAX_ARTIFACT_BYTES: Final = 256 * 1024 * 1024
"""Largest artifact downloaded: a registry that sends more is refused rather than filling the disk."""
ARTIFACT_SCHEME: Final = "mlflow-artifacts:/"
"""The only kind of version source followed: artifacts the tracking server itself serves."""


class RegistryError(TaggerError):
    """The registry did not answer, or answered with an error (``status``: its HTTP status, if it answered)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ModelVersion:
    """One registered version of the model."""

    number: str
    """The registry's version number (1, 2, ...)."""
    source: str
    """Where its artifacts are: ``mlflow-artifacts:/<experiment>/<run>/artifacts/model``."""
    run_id: str
    tags: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_response(cls, body: Mapping[str, Any]) -> ModelVersion:
        """Read a ``model_version`` object of the REST API; raises :class:`RegistryError` when malformed."""
        try:
            tags = {str(t["key"]): str(t.get("value", "")) for t in body.get("tags", [])}
            return cls(str(body["version"]), str(body["source"]), str(body.get("run_id", "")), tags)
        except (KeyError, TypeError, AttributeError) as error:
            raise RegistryError(f"the registry sent a malformed model version: {error!r}") from error


class RegistryClient:
    """Calls of the MLflow REST API (``/api/2.0/mlflow``) that the exporter and the worker need."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        scheme = urllib.parse.urlsplit(url).scheme
        if scheme not in ("http", "https"):
            raise RegistryError(f"the registry URL must be http(s), got {url!r}")
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _request(self, method: str, path: str, body: bytes | None, content_type: str | None) -> bytes:
        request = urllib.request.Request(self.url + path, data=body, method=method)  # noqa: S310 - http(s) only
        if content_type is not None:
            request.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                data: bytes = response.read(MAX_ARTIFACT_BYTES + 1)
        except urllib.error.HTTPError as error:
            detail = error.read(2000).decode("utf-8", "replace")
            raise RegistryError(f"{method} {path}: HTTP {error.code} {detail}", status=error.code) from error
        except (OSError, ValueError) as error:  # refused, reset, timed out, DNS
            raise RegistryError(f"{method} {path}: {error}") from error
        if len(data) > MAX_ARTIFACT_BYTES:
            raise RegistryError(f"{method} {path}: more than {MAX_ARTIFACT_BYTES} bytes")
        return data

    def call(self, method: str, endpoint: str, body: Mapping[str, Any] | None = None, **query: str) -> dict[str, Any]:
        """One JSON call of ``/api/2.0/mlflow/<endpoint>``."""
        path = f"/api/2.0/mlflow/{endpoint}"
        if query:
            path += "?" + urllib.parse.urlencode(query)
        data = None if body is None else json.dumps(body).encode()
        raw = self._request(method, path, data, "application/json" if data is not None else None)
        try:
            answer = json.loads(raw or b"{}")
        except ValueError as error:
            raise RegistryError(f"{method} {endpoint}: the registry's answer is not JSON") from error
        if not isinstance(answer, dict):
            raise RegistryError(f"{method} {endpoint}: the registry's answer is not a JSON object")
        return answer

    # --- tracking ------------------------------------------------------------------------------------------

    def experiment_id(self, name: str) -> str:
        """The id of the experiment ``name``, created when missing."""
        try:
            return str(self.call("GET", "experiments/get-by-name", experiment_name=name)["experiment"]["experiment_id"])
        except RegistryError as error:
            if error.status != 404:
                raise
        try:
            return str(self.call("POST", "experiments/create", {"name": name})["experiment_id"])
        except RegistryError as error:  # another process created it meanwhile
            if error.status not in (400, 409):
                raise
            return str(self.call("GET", "experiments/get-by-name", experiment_name=name)["experiment"]["experiment_id"])

    def create_run(self, experiment_id: str, name: str, tags: Mapping[str, str]) -> tuple[str, str]:
        """Start a run; returns its id and its artifact URI."""
        body = {"experiment_id": experiment_id, "run_name": name, "start_time": int(time.time() * 1000),
                "tags": [{"key": k, "value": v} for k, v in tags.items()]}  # fmt: skip
        info = self.call("POST", "runs/create", body)["run"]["info"]
        return str(info["run_id"]), str(info["artifact_uri"])

    def log_batch(
        self,
        run_id: str,
        params: Mapping[str, str] = {},  # noqa: B006 - never mutated
        metrics: Mapping[str, float] = {},  # noqa: B006
        tags: Mapping[str, str] = {},  # noqa: B006
    ) -> None:
        """Log parameters, metrics (at this time, step 0) and tags on a run, in chunks the API accepts."""
        now = int(time.time() * 1000)
        items = (
            [("params", {"key": k, "value": v[:6000]}) for k, v in params.items()]
            + [("metrics", {"key": k, "value": v, "timestamp": now, "step": 0}) for k, v in metrics.items()]
            + [("tags", {"key": k, "value": v[:8000]}) for k, v in tags.items()]
        )
        for start in range(0, len(items), 100):  # the API takes at most 100 params and 1000 items a call
            body: dict[str, Any] = {"run_id": run_id, "params": [], "metrics": [], "tags": []}
            for kind, item in items[start : start + 100]:
                body[kind].append(item)
            self.call("POST", "runs/log-batch", body)

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        """Mark a run finished (or ``FAILED``)."""
        self.call("POST", "runs/update", {"run_id": run_id, "status": status, "end_time": int(time.time() * 1000)})

    def search_runs(self, experiment_id: str, filter_string: str = "") -> list[dict[str, Any]]:
        """Runs of an experiment matching an MLflow filter (first 1000)."""
        body = {"experiment_ids": [experiment_id], "filter": filter_string, "max_results": 1000}
        runs = self.call("POST", "runs/search", body).get("runs", [])
        return runs if isinstance(runs, list) else []

    def _artifact_path(self, uri: str, relative: str) -> str:
        if not uri.startswith(ARTIFACT_SCHEME):
            raise RegistryError(f"not an artifact the registry serves: {uri!r}")
        parts = [*uri[len(ARTIFACT_SCHEME) :].strip("/").split("/"), *relative.split("/")]
        if any(part in ("", ".", "..") for part in parts):
            raise RegistryError(f"refusing the artifact path {uri!r} + {relative!r}")
        return "/api/2.0/mlflow-artifacts/artifacts/" + "/".join(urllib.parse.quote(p) for p in parts)

    def upload(self, artifact_uri: str, relative: str, data: bytes) -> None:
        """Store ``data`` as the artifact ``relative`` of a run (``artifact_uri`` is the run's)."""
        self._request("PUT", self._artifact_path(artifact_uri, relative), data, "application/octet-stream")

    def download(self, source: str, relative: str) -> bytes:
        """The bytes of the artifact ``relative`` under ``source``."""
        return self._request("GET", self._artifact_path(source, relative), None, None)

    # --- model registry ------------------------------------------------------------------------------------

    def register(self, name: str, source: str, run_id: str, tags: Mapping[str, str]) -> ModelVersion:
        """Register a new version of model ``name`` (created when missing) from a run's artifacts."""
        try:
            self.call("POST", "registered-models/create", {"name": name})
        except RegistryError as error:
            if error.status not in (400, 409):  # it exists already
                raise
        body = {"name": name, "source": source, "run_id": run_id,
                "tags": [{"key": k, "value": v} for k, v in tags.items()]}  # fmt: skip
        return ModelVersion.from_response(self.call("POST", "model-versions/create", body)["model_version"])

    def version(self, name: str, number: str) -> ModelVersion:
        """One registered version, with its tags."""
        answer = self.call("GET", "model-versions/get", name=name, version=number)
        return ModelVersion.from_response(answer["model_version"])

    def alias(self, name: str, alias: str) -> ModelVersion | None:
        """The version ``alias`` names, or None when the alias (or the model) is not set."""
        try:
            answer = self.call("GET", "registered-models/alias", name=name, alias=alias)
        except RegistryError as error:
            if error.status in (400, 404):  # MLflow answers 400 for an alias it does not know
                return None
            raise
        return ModelVersion.from_response(answer["model_version"])

    def set_alias(self, name: str, alias: str, number: str) -> None:
        """Point ``alias`` at version ``number``."""
        self.call("POST", "registered-models/alias", {"name": name, "alias": alias, "version": number})

    def delete_alias(self, name: str, alias: str) -> None:
        """Remove ``alias`` (nothing happens when it is not set)."""
        self.call("DELETE", "registered-models/alias", {"name": name, "alias": alias})

    def set_version_tag(self, name: str, number: str, key: str, value: str) -> None:
        """Set a tag on a registered version."""
        self.call("POST", "model-versions/set-tag", {"name": name, "version": number, "key": key, "value": value})


def fetch_version(client: RegistryClient, version: ModelVersion, cache_dir: Path) -> Path:
    """The folder holding ``version``'s model and card, downloaded into ``cache_dir`` unless it is there already.

    A folder appears whole (written beside it, then renamed), so a crash mid-download leaves nothing that looks
    complete; the files are not trusted because they are cached: :meth:`Classifier.load` checks them every time.
    """
    key = hashlib.sha256(f"{version.number}\0{version.source}".encode()).hexdigest()[:16]
    folder = cache_dir / f"v{version.number}-{key}"
    if all((folder / name).is_file() for name in MODEL_FILES):
        return folder
    staging = cache_dir / f".{folder.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name in MODEL_FILES:
        (staging / name).write_bytes(client.download(version.source, name))
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)
    return folder


def fleet_experiment(model_name: str) -> str:
    """The experiment holding one run per worker following ``model_name``, whose metrics are that worker's counts
    per model version (one per registered model, so fleets sharing a registry never sum each other's counts)."""
    return f"{model_name}-fleet"


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
        if passed:
            self.client.set_alias(self.model_name, CHAMPION, canary.number)
            self.client.delete_alias(self.model_name, CANARY)
            self.client.set_version_tag(self.model_name, canary.number, "decision", "champion: the canary passed")
            log.warning("promoted canary version %s to champion: %s", canary.number, figures)
        else:
            self.client.delete_alias(self.model_name, CANARY)
            reason = "refused: worse_canary: " + "; ".join(reasons)
            self.client.set_version_tag(self.model_name, canary.number, "decision", reason)
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
