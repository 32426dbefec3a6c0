"""The one settings object of the worker, read from ``TAGGER_*`` environment variables at start-up."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stream_app.errors import ConfigError

PREFIX = "TAGGER_"


@dataclass(frozen=True)
class Settings:
    """Everything the worker can be told; each field is read from ``TAGGER_<FIELD NAME IN CAPITALS>``."""

    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    """Comma-separated ``host:port`` list of the Kafka cluster."""
    app_id: str = "content-tagger"
    """Faust app id: the consumer group and the prefix of internal topics and changelogs."""
    input_topic: str = "content"
    """Topic the scrapers publish content events to."""
    tagged_topic: str = "content-tagged"
    """Topic of confidently tagged events, read by platform services."""
    review_topic: str = "content-review"
    """Topic of events whose confidence is below the review threshold."""
    duplicates_topic: str = "content-duplicates"
    """Topic recording every dropped near-duplicate."""
    deadletter_topic: str = "content-deadletter"
    """Topic of malformed input messages with the reason they were refused."""
    feedback_topic: str = "content-feedback"
    """Topic of reviewers' decisions and users' corrections."""
    labels_path: Path = Path(".run/labels/labels.jsonl")
    """The labelled store: people's decisions appended as JSON lines, read by ``python -m model_export``."""
    review_recent_limit: int = 20_000
    """Recent predictions kept in memory to judge feedback against (oldest forgotten first)."""
    partitions: int = 1
    """Partitions of the internal topics and tables; must equal the input topic's partition count."""
    model_dir: Path = Path("artifacts/model")
    """Folder holding ``model.onnx`` and its card ``model.json``."""
    candidates_dir: Path = Path("artifacts/candidates")
    """Folder the worker watches for candidate models (``python -m model_export --live ... --out <here>/<name>``);
    decided ones move to ``promoted/`` or ``refused/`` in it, and the newest promoted one serves after a restart."""
    shadow_events: int = 500
    """Live events a candidate classifies beside the live model before it may be promoted (0: no shadow run)."""
    candidate_poll_seconds: float = 5.0
    """How often the candidates folder is looked at."""
    retrain_after_labels: int = 0
    """Start ``python -m model_export`` on the labelled store after this many new decisions (0: never)."""
    review_threshold: float | None = None
    """Confidence below which an event goes to review; empty means the model card's threshold."""
    web_port: int = 6066
    """Port of the worker's HTTP server (``/metrics``)."""
    web_host: str = "127.0.0.1"
    """Address the worker's HTTP server binds to."""
    dedupe_ttl_days: float = 30.0
    """How long, in event time, a seen title keeps later copies out."""
    batch_size: int = 64
    """Most events classified in one ONNX call."""
    batch_timeout_seconds: float = 0.005
    """Longest wait for a batch to fill before classifying what has arrived. Shorter cuts latency at moderate
    rates but makes smaller batches: exactly-once, a transaction per batch, then falls behind (BENCHMARKS.md)."""
    producer_linger_seconds: float = 0.0
    """How long the producer holds records to send more of them per request. 0 keeps latency lowest; 0.002 took
    17% less CPU per event at full speed in paired runs and adds up to 2 ms per hop (BENCHMARKS.md)."""
    commit_interval_seconds: float = 1.0
    """How often processed input offsets are committed (at-least-once). After a crash, the events processed since
    the last commit are processed again, so a shorter interval repeats fewer (Faust's default is 2.8 s)."""
    drift_window: int = 1000
    """Number of recent classified events the drift gauges are computed over."""
    data_dir: Path = Path(".run/worker")
    """Folder of the worker's local state (Faust's own files)."""
    max_clock_skew_seconds: float = 300.0
    """How far ahead of the worker's clock an event time is believed; later times are clamped to it."""
    session_timeout_seconds: float = 10.0
    """How long the group waits for a silent worker before giving its partitions to the others: bounds the
    stall after a crash (Faust's default is 60 s)."""
    stop_timeout_seconds: float = 30.0
    """Longest a stop (on SIGTERM, or after a crash) may take before the worker exits anyway, with status 3: a
    stop that waits on a lost connection or a stuck task would otherwise keep a dead worker's process alive."""
    processing_guarantee: str = "at_least_once"
    """``at_least_once``, or ``exactly_once``: each stage's records commit with the offsets they consume in one
    Kafka transaction per source partition (transactions.py), at the cost of a transaction per batch."""
    security_protocol: str = "PLAINTEXT"
    """Kafka security protocol: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL."""
    ssl_cafile: str = ""
    """CA certificate file that signs the brokers' certificates (SSL, SASL_SSL)."""
    sasl_mechanism: str = "PLAIN"
    """SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512."""
    sasl_username: str = ""
    """SASL user name."""
    sasl_password: str = field(default="", repr=False)
    """SASL password; never printed."""
    registry_url: str = ""
    """Base URL of the MLflow model registry the fleet follows (``http://host:5000``); empty: no registry, the
    worker serves ``TAGGER_MODEL_DIR`` and the candidates folder only."""
    registry_model: str = "content-tagger"
    """Name of the registered model whose ``champion`` and ``canary`` aliases the worker follows."""
    canary_fraction: float = 0.1
    """Share of the events (by a hash of the event id) served by the registry's ``canary`` version."""
    canary_decider: bool = False
    """Whether this worker promotes or rolls back the canary, on the whole fleet's counts in the registry (set it
    on one worker of the fleet; every worker publishes its counts)."""
    canary_min_events: int = 500
    """Events the canary must have served, fleet-wide, before it is judged."""
    canary_min_judged: int = 0
    """Canary predictions people must have judged, fleet-wide, before it is judged (0: judge it on the review
    share alone, and on online precision when any of its predictions were judged)."""
    retrain_drift_seconds: float = 0.0
    """Retrain when a drift PSI has stayed above ``TAGGER_RETRAIN_DRIFT_PSI`` this long (0: never)."""
    retrain_drift_psi: float = 0.2
    """Drift PSI (confidence or tags, over at least 200 events) past which the drift trigger counts."""
    retrain_min_judged: int = 0
    """Retrain when online precision of auto-tagged items is below the card's target precision over at least
    this many judged ones (0: never)."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build the settings from ``environ`` (default ``os.environ``); raises :class:`ConfigError`."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for spec in dataclasses.fields(cls):
            name = PREFIX + spec.name.upper()
            raw = env.get(name)
            if raw is None:
                continue
            values[spec.name] = _convert(name, raw, spec.default)
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Raise :class:`ConfigError` for values no worker can run with."""
        if self.review_threshold is not None and not 0.0 <= self.review_threshold <= 1.0:
            raise ConfigError("TAGGER_REVIEW_THRESHOLD must be between 0 and 1")
        if self.processing_guarantee not in ("at_least_once", "exactly_once"):
            raise ConfigError("TAGGER_PROCESSING_GUARANTEE must be at_least_once or exactly_once")
        for name in ("partitions", "batch_size", "drift_window", "review_recent_limit"):
            if getattr(self, name) < 1:
                raise ConfigError(f"TAGGER_{name.upper()} must be at least 1")
        if self.session_timeout_seconds < 6:
            raise ConfigError("TAGGER_SESSION_TIMEOUT_SECONDS must be at least 6 (two heartbeats of 3 s)")
        if self.shadow_events < 0 or self.retrain_after_labels < 0 or self.candidate_poll_seconds <= 0:
            raise ConfigError(
                "TAGGER_SHADOW_EVENTS and TAGGER_RETRAIN_AFTER_LABELS must be >= 0, "
                "TAGGER_CANDIDATE_POLL_SECONDS positive"
            )
        for name in ("producer_linger_seconds", "max_clock_skew_seconds"):
            if getattr(self, name) < 0:
                raise ConfigError(f"TAGGER_{name.upper()} must be >= 0")
        registry_url_ok = not self.registry_url or self.registry_url.startswith(("http://", "https://"))
        if not registry_url_ok or not 0.0 <= self.canary_fraction <= 1.0:
            raise ConfigError("TAGGER_REGISTRY_URL must be an http(s) URL, TAGGER_CANARY_FRACTION between 0 and 1")
        if self.retrain_drift_seconds < 0 or self.retrain_drift_psi <= 0 or self.retrain_min_judged < 0:
            raise ConfigError(
                "TAGGER_RETRAIN_DRIFT_SECONDS and TAGGER_RETRAIN_MIN_JUDGED must be >= 0, "
                "TAGGER_RETRAIN_DRIFT_PSI positive"
            )
        if self.canary_min_events < 1 or self.canary_min_judged < 0:
            raise ConfigError("TAGGER_CANARY_MIN_EVENTS must be at least 1, TAGGER_CANARY_MIN_JUDGED at least 0")
        positive = ("dedupe_ttl_days", "batch_timeout_seconds", "stop_timeout_seconds", "commit_interval_seconds")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"TAGGER_{name.upper()} must be positive")

    @property
    def broker_url(self) -> str:
        """The bootstrap servers as a Faust broker URL list."""
        return ";".join(f"kafka://{host.strip()}" for host in self.kafka_bootstrap_servers.split(","))

    @property
    def exactly_once(self) -> bool:
        """Whether outputs and input offsets commit in Kafka transactions."""
        return self.processing_guarantee == "exactly_once"

    @property
    def dedupe_ttl_seconds(self) -> float:
        """The dedupe TTL in seconds."""
        return self.dedupe_ttl_days * 86400.0


def _convert(name: str, raw: str, default: object) -> object:
    """Turn one environment string into the type of the field's default."""
    try:
        if default is None:  # only review_threshold: an optional float
            return float(raw) if raw.strip() else None
        if isinstance(default, bool):
            return raw.strip().lower() in ("1", "true", "yes", "on")
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
        if isinstance(default, Path):
            return Path(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}={raw!r} is not a valid {type(default).__name__}") from exc
    return raw
