"""The one settings object of the worker, read from ``TAGGER_*`` environment variables at start-up."""

from __future__ import annotations

import dataclasses
import hmac
import ipaddress
import math
import os
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from stream_app.errors import ConfigError

PREFIX = "TAGGER_"

CHOICES: Final[dict[str, tuple[str, ...]]] = {
    "processing_guarantee": ("at_least_once", "exactly_once"),
    "retrain_grid": ("full", "fast"),
    "security_protocol": ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"),
    "sasl_mechanism": ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"),
    "review_auth": ("accounts", "proxy"),
}
"""The allowed values of each enumerated setting."""
MIN_SECRET_CHARS: Final = 32
TOPIC_NAME: Final = re.compile(r"[A-Za-z0-9._-]{1,249}")
"""What Kafka accepts as a topic name (besides "." and "..")."""
MAX_APP_ID_CHARS: Final = 200
"""Longest app id: it prefixes the names of the internal topics, which Kafka limits to 249 characters."""
TOPIC_SETTINGS: Final = (
    "input_topic", "tagged_topic", "review_topic", "duplicates_topic", "deadletter_topic", "feedback_topic"
)  # fmt: skip
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
    """Key (at least 32 characters) that signs reviewers' session cookies and form tokens; never printed. Empty:
    a random key per process, so sessions end when the worker restarts and hold only on the worker that issued
    them; set the same key on every worker behind one address."""
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
    """With ``TAGGER_REVIEW_AUTH=proxy``: comma-separated addresses or networks (``10.0.0.5``, ``10.1.0.0/16``)
    of the proxy; the header is ignored on requests from anywhere else."""
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
        """Build the settings from ``environ`` (default ``os.environ``); raises :class:`ConfigError`."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for spec in dataclasses.fields(cls):
            name = PREFIX + spec.name.upper()
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
        """Raise :class:`ConfigError`, one line naming the variable, for values no worker can run with."""
        for name, allowed in CHOICES.items():
            value = getattr(self, name)
            if value not in allowed:
                raise ConfigError(f"{_var(name)}={value!r} is not one of {', '.join(allowed)}")
        _check_range(self, "review_threshold", 0.0, 1.0, optional=True)
        _check_range(self, "web_port", 1, 65_535)
        for name in ("partitions", "batch_size", "drift_window", "review_recent_limit"):
            _check_range(self, name, 1, None)
        # Two heartbeats of 3 s must fit in a session; a broker refuses sessions over its
        # group.max.session.timeout.ms (30 minutes by default), and the worker could never join.
        _check_range(self, "session_timeout_seconds", 6.0, 1800.0)
        # A reviewer's decision waits in the producer this long: a second is far past any use of it.
        _check_range(self, "producer_linger_seconds", 0, 1.0)
        for name in (
            "shadow_events",
            "retrain_after_labels",
            "max_clock_skew_seconds",
            "log_repeat_seconds",
        ):
            _check_range(self, name, 0, None)
        # Events wait in a lingering batch uncommitted and unanswered: a second is far past any use of it.
        _check_range(self, "batch_timeout_seconds", 0, 1.0, optional=True)
        # Upper bounds past which a value means nothing and breaks something: a stop deadline past what a timer
        # takes, a clock skew that lets one event dated far ahead expire the whole title index.
        _check_range(self, "stop_timeout_seconds", None, 3600.0)
        _check_range(self, "max_clock_skew_seconds", None, 86_400.0)
        for name in ("commit_interval_seconds", "candidate_poll_seconds"):
            _check_range(self, name, None, 3600.0)
        _check_range(self, "log_repeat_seconds", None, 86_400.0)
        self._validate_addresses()
        self._validate_paths()
        positive = (
            "dedupe_ttl_days",
            "stop_timeout_seconds",
            "commit_interval_seconds",
            "candidate_poll_seconds",
        )
        for name in ("canary_min_judged", "retrain_min_judged", "retrain_drift_seconds"):
            _check_range(self, name, 0, None)
        _check_range(self, "canary_min_events", 1, None)
        _check_range(self, "canary_fraction", 0.0, 1.0)
        if self.retrain_drift_psi <= 0 or not math.isfinite(self.retrain_drift_psi):
            raise ConfigError(f"TAGGER_RETRAIN_DRIFT_PSI={self.retrain_drift_psi!r} must be positive")
        if self.registry_url and not self.registry_url.startswith(("http://", "https://")):
            raise ConfigError(f"TAGGER_REGISTRY_URL={self.registry_url!r} is not an http(s) URL")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"{_var(name)}={getattr(self, name)!r} must be positive")
        _check_range(self, "review_session_hours", 0.01, 720.0)
        if self.review_session_secret and len(self.review_session_secret) < MIN_SECRET_CHARS:
            raise ConfigError(f"TAGGER_REVIEW_SESSION_SECRET must be at least {MIN_SECRET_CHARS} characters")
        if not self.review_hosts:
            raise ConfigError("TAGGER_REVIEW_ALLOWED_HOSTS must name at least one host")
        try:
            networks = self.review_proxy_networks
        except ValueError as exc:
            raise ConfigError(f"TAGGER_REVIEW_PROXY_ADDRESSES={self.review_proxy_addresses!r}: {exc}") from None
        if any(network.prefixlen == 0 for network in networks):  # every address: anyone could name a reviewer
            raise ConfigError(f"TAGGER_REVIEW_PROXY_ADDRESSES={self.review_proxy_addresses!r} trusts every address")
        if not HEADER_NAME.fullmatch(self.review_proxy_header):
            raise ConfigError(f"TAGGER_REVIEW_PROXY_HEADER={self.review_proxy_header!r} is not an HTTP header name")
        if self.review_auth == "proxy" and not networks:
            raise ConfigError(
                "TAGGER_REVIEW_AUTH='proxy' needs TAGGER_REVIEW_PROXY_ADDRESSES and TAGGER_REVIEW_PROXY_HEADER"
            )
        self._validate_topics()
        if self.ssl_cafile and self.security_protocol in ("SSL", "SASL_SSL"):
            try:  # read here, at start-up, so that a bad file is one line naming it rather than a traceback later
                ssl.create_default_context(cafile=self.ssl_cafile)
            except (OSError, ssl.SSLError, ValueError) as exc:
                raise ConfigError(
                    f"TAGGER_SSL_CAFILE={self.ssl_cafile!r} cannot be read as CA certificates: {exc}"
                ) from None

    def _validate_addresses(self) -> None:
        """Raise :class:`ConfigError` unless every bootstrap server is ``host:port`` and the web host is one host:
        an empty entry would add the client library's own default broker."""
        for server in self.kafka_bootstrap_servers.split(","):
            host, _, port = server.strip().rpartition(":")
            if not (HOST.fullmatch(host) and port.isdigit() and 1 <= int(port) <= 65_535):
                raise ConfigError(
                    f"TAGGER_KAFKA_BOOTSTRAP_SERVERS={self.kafka_bootstrap_servers!r}: {server.strip()!r} is not "
                    "host:port"
                )
        if not HOST.fullmatch(self.web_host):
            raise ConfigError(f"TAGGER_WEB_HOST={self.web_host!r} is not one host name or address")

    def _validate_paths(self) -> None:
        """Raise :class:`ConfigError` when a path the worker writes or reads is taken by something else: the
        data folder by a file, the labelled store by a folder, the reviewers file by anything but a file."""
        if _not_a_folder(self.data_dir):
            raise ConfigError(f"TAGGER_DATA_DIR={str(self.data_dir)!r} is not a folder, nor can be made one")
        if self.labels_path.is_dir() or not self.labels_path.name or _not_a_folder(self.labels_path.parent):
            raise ConfigError(f"TAGGER_LABELS_PATH={str(self.labels_path)!r} is not a file, nor can be made one")
        if self.reviewers_file.exists() and not self.reviewers_file.is_file():
            raise ConfigError(f"TAGGER_REVIEWERS_FILE={str(self.reviewers_file)!r} is not a file")

    def _validate_topics(self) -> None:
        """Raise :class:`ConfigError` unless every topic name is one Kafka accepts and no two topics are one."""
        if not (TOPIC_NAME.fullmatch(self.app_id) and len(self.app_id) <= MAX_APP_ID_CHARS):
            raise ConfigError(
                f"TAGGER_APP_ID={self.app_id!r} must be 1 to {MAX_APP_ID_CHARS} of the letters, digits, '.', '_' "
                "and '-' a Kafka topic name may hold"
            )
        seen: dict[str, str] = {self.index_topic: "the title index's topic"}
        for name in TOPIC_SETTINGS:
            topic = getattr(self, name)
            if not TOPIC_NAME.fullmatch(topic) or topic in (".", ".."):
                raise ConfigError(f"{_var(name)}={topic!r} is not a valid Kafka topic name")
            if topic in seen:
                # One topic in two roles loops or mixes records: dead letters read back as input, say.
                raise ConfigError(f"{_var(name)}={topic!r} is already {seen[topic]}")
            seen[topic] = _var(name)

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


HOST: Final = re.compile(r"\[[0-9A-Fa-f:.]+\]|[0-9A-Za-z_.:-]+")
"""A host name, an IPv4 address, or an IPv6 address (in brackets in a ``host:port``)."""
HEADER_NAME: Final = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
"""An HTTP header name (RFC 9110's token)."""


def _not_a_folder(path: Path) -> bool:
    """Whether ``path`` or the nearest of its parents that exists is something other than a folder: then no
    folder can be made there."""
    for existing in (path, *path.parents):
        if existing.exists():
            return not existing.is_dir()
    return False


def _var(name: str) -> str:
    return PREFIX + name.upper()


def _check_range(
    settings: Settings, name: str, low: float | None, high: float | None, *, optional: bool = False
) -> None:
    """Raise :class:`ConfigError` unless the setting lies in ``[low, high]`` (None: unbounded on that side)."""
    value = getattr(settings, name)
    if value is None and optional:
        return
    if (low is not None and value < low) or (high is not None and value > high):
        if low is not None and high is not None:
            bounds = f"between {low} and {high}"
        else:
            bounds = f">= {low}" if low is not None else f"<= {high}"
        raise ConfigError(f"{_var(name)}={value!r} must be {bounds}")


BOOLEANS: Final = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False,
                   "off": False, "": False}  # fmt: skip


def _convert(name: str, raw: str, default: object) -> object:
    """Turn one environment string into the type of the field's default; raises :class:`ConfigError`."""
    try:
        if default is None:  # review_threshold and batch_timeout_seconds: optional floats
            return _finite(float(raw)) if raw.strip() else None
        if isinstance(default, bool):
            return BOOLEANS[raw.strip().lower()]
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return _finite(float(raw))
        if isinstance(default, Path):
            return Path(raw)
        if isinstance(default, Secret):
            return Secret(raw)
    except (ValueError, KeyError):
        # The value itself is left out for a secret; the others say what was read.
        shown = "" if isinstance(default, Secret) else f"={raw!r}"
        raise ConfigError(f"{name}{shown} is not a valid {type(default).__name__.lower()}") from None
    return raw


def _finite(value: float) -> float:
    """``value`` if it is a finite number: ``nan`` would pass every range check."""
    if not math.isfinite(value):
        raise ValueError("not finite")
    return value
