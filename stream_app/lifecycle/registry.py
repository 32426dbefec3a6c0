"""The fleet's model registry: an MLflow tracking server and model registry, spoken to over its REST API with the
standard library only, so a worker without ``mlflow`` installed (and without a registry at all) runs as before.

Promotion is a registry alias: every worker follows the version the ``champion`` alias names, and serves the
version ``canary`` names to a stated share of the events (chosen by a hash of the event id). A followed version
is downloaded into a cache folder and loaded by :meth:`Classifier.load`, which checks its sha256 against its card
and its tags against the approved ones, exactly as a model folder is checked. While the registry does not answer,
the worker keeps serving what it serves (at start-up: the champion it last took up, named by :data:`POINTER`, else
``TAGGER_MODEL_DIR``) and takes the aliases up when it answers again. A version the ``shadow`` alias names runs
beside the champion on every worker before it may become the canary."""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import re
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from stream_app.errors import TaggerError

log = logging.getLogger(__name__)


CHAMPION: Final = "champion"
"""The alias of the version every worker serves."""
CANARY: Final = "canary"
"""The alias of the version served to ``TAGGER_CANARY_FRACTION`` of the events before it may become champion."""
SHADOW: Final = "shadow"
"""The alias of the version every worker runs beside the champion, emitting nothing, before it may be the canary."""
POINTER: Final = "champion.json"
"""The file in the cache folder naming the champion this worker last took up, which it serves at start-up."""
EXPERIMENT: Final = "content-tagger"
"""The experiment training runs are logged to."""
MODEL_FILES: Final = ("model.onnx", "model.json")
"""What a registered version's artifact folder holds: the ONNX model and its card."""
MAX_ARTIFACT_BYTES: Final = 256 * 1024 * 1024
"""Largest artifact downloaded: a registry that sends more is refused rather than filling the disk."""
MAX_JSON_BYTES: Final = 1024 * 1024
"""Largest JSON answer read, but for a search of runs: the largest other answer, a model version with its tags, is a
few kB. Parsed, JSON can take 25 times its size in memory, so this is no artifact's limit."""
MAX_SEARCH_BYTES: Final = 16 * 1024 * 1024
"""Largest answer of a search of runs (at most 1,000): a worker's run counting five model versions and two shadows is
about 7 kB as MLflow writes it, 6.6 MiB for 1,000 runs."""
ARTIFACT_SCHEME: Final = "mlflow-artifacts:/"
"""The only kind of version source followed: artifacts the tracking server itself serves."""
VERSION_NUMBER: Final = re.compile(r"[1-9][0-9]{0,8}")
"""What a registry version number is (it names a cache folder, so nothing else is accepted)."""
CACHED_FOLDER: Final = re.compile(r"\.?v[1-9][0-9]{0,8}-[0-9a-f]{16}(\.partial)?")
"""The names :func:`fetch_version` gives the folders it downloads into: the only entries :func:`prune_cache`
removes."""


class RegistryError(TaggerError):
    """The registry did not answer, or answered with an error (``status``: its HTTP status, if it answered)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RegistryCacheError(TaggerError):
    """A version the registry served could not be written to this worker's cache (a full or read-only disk): the
    registry answered, the fault is local."""


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
            number = str(body["version"])
            if not VERSION_NUMBER.fullmatch(number):
                raise ValueError(f"version number {number[:40]!r} is not a number")
            return cls(number, str(body["source"]), str(body.get("run_id", "")), tags)
        except (KeyError, TypeError, AttributeError, ValueError) as error:
            raise RegistryError(f"the registry sent a malformed model version: {error!r}") from error


class RegistryClient:
    """Calls of the MLflow REST API (``/api/2.0/mlflow``) that the exporter and the worker need."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        scheme = urllib.parse.urlsplit(url).scheme
        if scheme not in ("http", "https"):
            raise RegistryError(f"the registry URL must be http(s), got {url!r}")
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _request(
        self, method: str, path: str, body: bytes | None, content_type: str | None, limit: int = MAX_ARTIFACT_BYTES
    ) -> bytes:
        """The answer's body, at most ``limit`` bytes; :class:`RegistryError` when there is more, none, an error or
        less than it said."""
        request = urllib.request.Request(self.url + path, data=body, method=method)  # noqa: S310 - http(s) only
        if content_type is not None:
            request.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                data: bytes = response.read(limit + 1)
                # A read of a given size returns what came before the connection closed, without an error.
                missing: int | None = response.length
        except urllib.error.HTTPError as error:
            detail = error.read(2000).decode("utf-8", "replace")
            raise RegistryError(f"{method} {path}: HTTP {error.code} {detail}", status=error.code) from error
        except (OSError, ValueError) as error:  # refused, reset, timed out, DNS
            raise RegistryError(f"{method} {path}: {error}") from error
        except http.client.HTTPException as error:  # an answer that is not HTTP: bad status line, chunks, headers
            raise RegistryError(f"{method} {path}: not an HTTP answer: {error!r:.200}") from error
        if len(data) > limit:
            raise RegistryError(f"{method} {path}: more than {limit} bytes")
        if missing:  # a download cut short is the network's fault, not a damaged version to refuse
            raise RegistryError(f"{method} {path}: the answer was cut short, {missing} bytes missing")
        return data

    def call(
        self,
        method: str,
        endpoint: str,
        body: Mapping[str, Any] | None = None,
        *,
        limit: int = MAX_JSON_BYTES,
        **query: str,
    ) -> dict[str, Any]:
        """One JSON call of ``/api/2.0/mlflow/<endpoint>``, whose answer may be at most ``limit`` bytes (more is a
        :class:`RegistryError`, as a malformed answer is)."""
        path = f"/api/2.0/mlflow/{endpoint}"
        if query:
            path += "?" + urllib.parse.urlencode(query)
        data = None if body is None else json.dumps(body).encode()
        raw = self._request(method, path, data, "application/json" if data is not None else None, limit)
        try:
            answer = json.loads(raw or b"{}")
        except (ValueError, RecursionError) as error:  # RecursionError: nested too deeply to parse
            raise RegistryError(f"{method} {endpoint}: the registry's answer is not JSON: {error!r:.200}") from error
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
        runs = self.call("POST", "runs/search", body, limit=MAX_SEARCH_BYTES).get("runs", [])
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


def fetch_version(client: RegistryClient, version: ModelVersion, cache_dir: Path, *, again: bool = False) -> Path:
    """The folder holding ``version``'s model and card, downloaded into ``cache_dir`` unless it is there already
    (``again``: downloaded even so, replacing the cached copy).

    A folder appears whole (written beside it, then renamed), so a crash mid-download leaves nothing that looks
    complete; the files are not trusted because they are cached: :meth:`Classifier.load` checks them every time.
    """
    folder = version_folder(cache_dir, version)
    if not again and is_cached(cache_dir, version):
        return folder
    staging = cache_dir / f".{folder.name}.partial"
    try:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    except OSError as error:
        raise RegistryCacheError(f"{staging} cannot be made: {error}") from error
    for name in MODEL_FILES:
        data = client.download(version.source, name)  # a network error stays the registry's
        try:
            (staging / name).write_bytes(data)
        except OSError as error:
            shutil.rmtree(staging, ignore_errors=True)  # a full disk: give back what was written
            raise RegistryCacheError(f"{staging / name} cannot be written: {error}") from error
    try:
        shutil.rmtree(folder, ignore_errors=True)
        staging.rename(folder)
    except OSError as error:
        raise RegistryCacheError(f"{folder} cannot be made: {error}") from error
    return folder


def is_cached(cache_dir: Path, version: ModelVersion) -> bool:
    """Whether :func:`fetch_version` downloaded ``version`` into ``cache_dir`` already (its files, unchecked)."""
    folder = version_folder(cache_dir, version)
    return all((folder / name).is_file() for name in MODEL_FILES)


def version_folder(cache_dir: Path, version: ModelVersion) -> Path:
    """The folder of ``cache_dir`` that holds ``version`` once :func:`fetch_version` downloaded it (named by its
    number and a hash of its number and source, so a version registered again from other files gets another)."""
    key = hashlib.sha256(f"{version.number}\0{version.source}".encode()).hexdigest()[:16]
    return cache_dir / f"v{version.number}-{key}"


def prune_cache(cache_dir: Path, keep: Collection[Path]) -> list[str]:
    """Remove the downloaded versions of ``cache_dir`` that are not in ``keep``, and partial downloads; returns
    the names removed. Only names :func:`fetch_version` makes are touched: the pointer and anything else stay."""
    kept = {folder.name for folder in keep}
    removed: list[str] = []
    try:
        entries = list(cache_dir.iterdir())
    except FileNotFoundError:
        return removed
    for entry in entries:
        if entry.name in kept or not CACHED_FOLDER.fullmatch(entry.name):
            continue
        if entry.is_symlink() or not entry.is_dir():
            entry.unlink()
        else:
            shutil.rmtree(entry)
        removed.append(entry.name)
    return sorted(removed)


def fleet_experiment(model_name: str) -> str:
    """The experiment holding one run per worker following ``model_name``, whose metrics are that worker's counts
    per model version (one per registered model, so fleets sharing a registry never sum each other's counts)."""
    return f"{model_name}-fleet"
