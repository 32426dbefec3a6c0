"""The one settings object of the worker, read from ``TAGGER_*`` environment variables at start-up."""

from __future__ import annotations

import dataclasses
import hmac
import ipaddress
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from stream_app.errors import ConfigError
from stream_app.setting_checks import check, check_names, var

LINGER_BY_GUARANTEE: Final = {"at_least_once": 0.0, "exactly_once": 0.005}
"""The batch linger when ``TAGGER_BATCH_TIMEOUT_SECONDS`` is empty. At least once, a batch costs one delivery, and
an event waiting for company only waits; exactly once, a batch costs a transaction, and fewer, fuller batches
keep the tail shorter (decision 0030)."""


class Secret:
    """A secret setting: printed (``repr``, ``str``, f-strings, logs) as asterisks; :meth:`reveal` gives it."""

    __slots__ = ("_value",)

    def __init__(self, value: str = "") -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself, for the one call that needs it."""
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __len__(self) -> int:
        return len(self._value)

    def __repr__(self) -> str:
        return "Secret('**********')" if self._value else "Secret('')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(Secret)


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
    review_board_max_items: int = 10_000
    """Most items waiting for review each worker holds in memory; at this many it stops reading the review topic,
    and reads on, oldest first, as decisions free room. The rest wait on the topic, none lost."""
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
    """Confidence below which an event goes to review, for every model served; empty means each model card's
    threshold, and a value below a card's threshold is not served (the card's is)."""
    web_port: int = 6066
    """Port of the worker's HTTP server (``/metrics``)."""
    web_host: str = "127.0.0.1"
    """Address the worker's HTTP server binds to."""
    dedupe_ttl_days: float = 30.0
    """How long, in event time, a seen title keeps later copies out."""
    batch_size: int = 256
    """Most events taken, checked, classified and published together: every batch pays a delivery or a
    transaction, an ONNX call and a dedupe pass, so under load bigger batches keep up at a higher rate (0019).
    Under light load batches are as small as the traffic."""
    batch_timeout_seconds: float | None = None
    """Longest wait (0 to 1 s) for a batch of events that queued up while the previous one was processed to fill
    before it is handed over short: fewer, bigger batches under load. An event that finds the agent idle does not
    wait (decision 0014). Empty: :data:`LINGER_BY_GUARANTEE` (decision 0030), read as :attr:`batch_linger_seconds`."""
    producer_linger_seconds: float = 0.0
    """How long Faust's producer holds a record sent on its own (a reviewer's decision) for more to send with it.
    A batch's outputs do not linger: they leave as one closed record batch per partition (decision 0016)."""
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
    log_repeat_seconds: float = 10.0
    """A library's log record that repeats (aiokafka logs every retry while the broker is away) is written once in
    this many seconds, the next one saying how many were left out; 0 writes every record (decision 0307)."""
    processing_guarantee: str = "at_least_once"
    """``at_least_once``, or ``exactly_once``: a batch's records commit with the offsets it consumes in one Kafka
    transaction per source partition (transactions.py), at the cost of a transaction per batch."""
    security_protocol: str = "PLAINTEXT"
    """Kafka security protocol: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL."""
    ssl_cafile: str = ""
    """CA certificate file that signs the brokers' certificates (SSL, SASL_SSL)."""
    sasl_mechanism: str = "PLAIN"
    """SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512."""
    sasl_username: str = ""
    """SASL user name."""
    sasl_password: Secret = field(default_factory=Secret)
    """SASL password; never printed."""
    review_auth: str = "accounts"
    """Who may decide on the review page: ``accounts`` (reviewers in ``TAGGER_REVIEWERS_FILE`` sign in with a
    password) or ``proxy`` (an authenticating proxy at ``TAGGER_REVIEW_PROXY_ADDRESSES`` names the reviewer in
    ``TAGGER_REVIEW_PROXY_HEADER``)."""
    reviewers_file: Path = Path(".run/reviewers")
    """Reviewer accounts, one ``name:argon2-hash`` line each, written by ``python -m stream_app.review.accounts add
    NAME``. Missing or empty: the review page is read-only."""
    review_session_secret: Secret = field(default_factory=Secret)
    """Key (at least 32 characters) that signs reviewers' session cookies, form tokens, sign-outs and decisions;
    never printed. Empty: a random key the worker makes at its first start and keeps in its data folder
    (``review-session-secret``), so its sessions and decisions hold on that worker only; set the same key on every
    worker of a group."""
    review_session_hours: float = 8.0
    """How long a sign-in lasts."""
    review_allowed_hosts: str = "localhost,127.0.0.1,[::1]"
    """Comma-separated host names (``name`` or ``name:port``) the review pages answer to; a request with another
    ``Host`` header is refused, which defeats DNS rebinding. ``/metrics``, ``/health`` and ``/ready`` answer
    any host."""
    review_secure_cookies: bool = False
    """Mark the session cookie ``Secure`` (sent over HTTPS only): set it when the page is served through TLS."""
    review_proxy_header: str = "X-Forwarded-User"
    """With ``TAGGER_REVIEW_AUTH=proxy``: the request header in which the proxy names the signed-in reviewer."""
    review_proxy_addresses: str = ""
    """Comma-separated addresses or networks (``10.0.0.5``, ``10.1.0.0/16``) of the trusted proxies. With
    ``TAGGER_REVIEW_AUTH=proxy``, the user header counts only on requests from them; in both modes, a request
    from them is counted for the sign-in limit as the client its ``X-Forwarded-For`` names. Both headers are
    ignored on requests from anywhere else."""
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
    retrain_grid: str = "full"
    """The hyperparameter search of a retrain the worker starts: ``full`` (the exporter's cross-validated grid) or
    ``fast`` (its one-point grid: the same pipeline in about a quarter of the time, for small machines)."""

    @property
    def batch_linger_seconds(self) -> float:
        """``batch_timeout_seconds``, or when it is empty the processing guarantee's default."""
        if self.batch_timeout_seconds is not None:
            return self.batch_timeout_seconds
        return LINGER_BY_GUARANTEE[self.processing_guarantee]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build the settings from ``environ`` (default ``os.environ``); raises :class:`ConfigError`, for a
        ``TAGGER_`` variable that is no setting too."""
        env = os.environ if environ is None else environ
        check_names(env, {var(spec.name) for spec in dataclasses.fields(cls)})
        values: dict[str, Any] = {}
        for spec in dataclasses.fields(cls):
            name = var(spec.name)
            raw = env.get(name)
            if raw is None:
                continue
            default: object = spec.default
            if default is dataclasses.MISSING and callable(spec.default_factory):
                default = spec.default_factory()
            values[spec.name] = _convert(name, raw, default)
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Raise :class:`ConfigError`, one line naming the variable, for values no worker can run with
        (:func:`stream_app.setting_checks.check`)."""
        check(self)

    @property
    def review_hosts(self) -> frozenset[str]:
        """The lower-cased entries of ``TAGGER_REVIEW_ALLOWED_HOSTS``."""
        return frozenset(h.strip().lower() for h in self.review_allowed_hosts.split(",") if h.strip())

    @property
    def review_proxy_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        """The networks of ``TAGGER_REVIEW_PROXY_ADDRESSES``; raises ValueError for a malformed one."""
        parts = (a.strip() for a in self.review_proxy_addresses.split(","))
        return tuple(ipaddress.ip_network(part, strict=False) for part in parts if part)

    @property
    def index_topic(self) -> str:
        """The title index's compacted topic: one per worker group."""
        return f"{self.app_id}-title-index"

    @property
    def sign_outs_topic(self) -> str:
        """The reviewers' sign-outs, read whole by every worker (stream_app/review/sign_outs.py)."""
        return f"{self.app_id}-sign-outs"

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


BOOLEANS: Final = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False,
                   "off": False, "": False}  # fmt: skip


INTEGER: Final = re.compile(r"-?[0-9]+")
DECIMAL: Final = re.compile(r"-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
"""Numbers as settings write them. Python's ``int`` and ``float`` also read other digits ("١٢", "３０"),
underscores ("1_000"), ``nan`` and ``inf``: a value that reads as another than the operator sees."""


def _convert(name: str, raw: str, default: object) -> object:
    """Turn one environment string into the type of the field's default; raises :class:`ConfigError`."""
    try:
        if default is None:  # review_threshold and batch_timeout_seconds: optional floats
            return _decimal(raw) if raw.strip() else None
        if isinstance(default, bool):
            return BOOLEANS[raw.strip().lower()]
        if isinstance(default, int):
            if not INTEGER.fullmatch(raw.strip()):
                raise ValueError("not an integer")
            return int(raw)
        if isinstance(default, float):
            return _decimal(raw)
        if isinstance(default, Path):
            if not raw.strip():  # Path("") is the working folder, where the worker would write and move things
                raise ValueError("empty")
            return Path(raw)
        if isinstance(default, Secret):
            return Secret(raw)
    except (ValueError, KeyError):
        # The value itself is left out for a secret; the others say what was read.
        shown = "" if isinstance(default, Secret) else f"={raw!r:.200}"
        raise ConfigError(f"{name}{shown} is not a valid {_kind(default)}") from None
    return raw


def _kind(default: object) -> str:
    """What a setting with ``default`` holds, as its error names it."""
    if default is None:
        return "number"
    if isinstance(default, Path):
        return "path"
    return {bool: "boolean", int: "integer", float: "number"}.get(type(default), type(default).__name__.lower())


def _decimal(raw: str) -> float:
    """A finite number written as :data:`DECIMAL`; raises ValueError."""
    if not DECIMAL.fullmatch(raw.strip()):
        raise ValueError("not a number")
    value = float(raw)
    if not math.isfinite(value):  # 1e999: inf would pass every range check
        raise ValueError("not finite")
    return value
