"""The checks of a :class:`~stream_app.settings.Settings` object's values, made once at start-up: each bad value is
one :class:`ConfigError` line naming its variable."""

from __future__ import annotations

import difflib
import math
import re
import socket
import ssl
import urllib.parse
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Final

from stream_app.drift import DRIFT_MIN_EVENTS
from stream_app.errors import ConfigError
from stream_app.review.sign_outs import LONGEST_SESSION_SECONDS
from stream_app.title_index.index import LONGEST_CLOCK_SKEW_SECONDS

if TYPE_CHECKING:  # the settings module imports this one
    from stream_app.settings import Settings

PREFIX: Final = "TAGGER_"
"""What every setting's environment variable starts with."""

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
MAX_PARTITIONS: Final = 10_000
"""Most input partitions ``TAGGER_PARTITIONS`` may name."""
MAX_HELD_RECORDS: Final = 1_000_000
"""Largest drift window and review memory: each holds that many recent events or predictions (a review prediction
takes about 350 bytes)."""
MIN_TIMER_SECONDS: Final = 0.1
"""Shortest commit and candidate poll interval."""
MAX_APP_ID_CHARS: Final = 200
"""Longest app id: it prefixes the names of the internal topics, which Kafka limits to 249 characters."""
TOPIC_SETTINGS: Final = (
    "input_topic", "tagged_topic", "review_topic", "duplicates_topic", "deadletter_topic", "feedback_topic"
)  # fmt: skip
HOST: Final = re.compile(r"\[[0-9A-Fa-f:.]+\]|[0-9A-Za-z_.-]+")
"""A host name, an IPv4 address, or an IPv6 address in brackets (as in a ``host:port``)."""
WEB_HOST: Final = re.compile(r"[0-9A-Za-z_.-]+")
"""A host name or an IPv4 address to serve the web pages on (the web server's URL cannot hold an IPv6 one)."""
HEADER_NAME: Final = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
"""An HTTP header name (RFC 9110's token)."""


def _not_a_folder(path: Path) -> bool:
    """Whether ``path`` or the nearest of its parents that exists is something other than a folder: then no
    folder can be made there."""
    for existing in (path, *path.parents):
        if existing.exists():
            return not existing.is_dir()
    return False


def var(name: str) -> str:
    """The environment variable of the setting ``name``."""
    return PREFIX + name.upper()


def check_names(names: Iterable[str], settings: Collection[str]) -> None:
    """Raise :class:`ConfigError`, one line, when a variable of ``names`` starts with :data:`PREFIX` but is none of
    the variables of ``settings``: a misspelt setting would otherwise be left at its default without a word."""
    unknown = sorted(name for name in names if name.startswith(PREFIX) and name not in settings)
    if not unknown:
        return
    # Compared without the prefix, which every name shares and would make any two look alike.
    suffixes = {name.removeprefix(PREFIX): name for name in settings}
    listed = []
    for name in unknown:  # only the names: the value of a misspelt secret is not printed
        closest = difflib.get_close_matches(name.removeprefix(PREFIX), suffixes, n=1)
        listed.append(f"{name} (did you mean {suffixes[closest[0]]}?)" if closest else name)
    are = "is not a setting" if len(unknown) == 1 else "are not settings"
    raise ConfigError(f"{', '.join(listed)} {are} (README.md lists the settings)")


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
        raise ConfigError(f"{var(name)}={value!r} must be {bounds}")


def check(settings: Settings) -> None:
    """Raise :class:`ConfigError`, one line naming the variable, for values of ``settings`` no worker can run
    with."""
    for name, allowed in CHOICES.items():
        value = getattr(settings, name)
        if value not in allowed:
            raise ConfigError(f"{var(name)}={value!r} is not one of {', '.join(allowed)}")
    _check_range(settings, "review_threshold", 0.0, 1.0, optional=True)
    _check_range(settings, "web_port", 1, 65_535)
    _check_range(settings, "batch_size", 1, None)  # a batch holds what the consumer's buffer holds, whatever this says
    # Past this a value is a typo: topic creation would fail on it, and no Kafka cluster serves so many per topic.
    _check_range(settings, "partitions", 1, MAX_PARTITIONS)
    # Each size holds that many recent records in memory: past a million, a typo would grow without end in practice.
    _check_range(settings, "review_recent_limit", 1, MAX_HELD_RECORDS)
    # Each waiting item holds its whole description (up to about 22 KB): a million is already tens of gigabytes.
    _check_range(settings, "review_board_max_items", 1, MAX_HELD_RECORDS)
    # A smaller window never holds the events a drift alert or the drift retrain waits for.
    _check_range(settings, "drift_window", DRIFT_MIN_EVENTS, MAX_HELD_RECORDS)
    # Two heartbeats of 3 s must fit in a session; a broker refuses sessions over its
    # group.max.session.timeout.ms (30 minutes by default), and the worker could never join.
    _check_range(settings, "session_timeout_seconds", 6.0, 1800.0)
    # A reviewer's decision waits in the producer this long: a second is far past any use of it.
    _check_range(settings, "producer_linger_seconds", 0, 1.0)
    # A clock skew past a day lets one event dated far ahead expire the whole title index.
    for name, high in (
        ("shadow_events", None),
        ("retrain_after_labels", None),
        ("max_clock_skew_seconds", LONGEST_CLOCK_SKEW_SECONDS),
        ("log_repeat_seconds", 86_400.0),
    ):
        _check_range(settings, name, 0, high)
    # Events wait in a lingering batch uncommitted and unanswered: a second is far past any use of it.
    _check_range(settings, "batch_timeout_seconds", 0, 1.0, optional=True)
    # Positive and at most an hour: past that a value means nothing, and a stop deadline past what a timer takes
    # would never fire.
    _check_range(settings, "stop_timeout_seconds", None, 3600.0)
    # At least a tenth of a second: a timer firing more often only burns a core (a commit or a poll each time).
    for name in ("commit_interval_seconds", "candidate_poll_seconds"):
        _check_range(settings, name, MIN_TIMER_SECONDS, 3600.0)
    _check_addresses(settings)
    _check_paths(settings)
    positive = (
        "dedupe_ttl_days",
        "stop_timeout_seconds",
        "commit_interval_seconds",
        "candidate_poll_seconds",
    )
    for name in ("canary_min_judged", "retrain_min_judged", "retrain_drift_seconds"):
        _check_range(settings, name, 0, None)
    _check_range(settings, "canary_min_events", 1, None)
    _check_range(settings, "canary_fraction", 0.0, 1.0)
    if settings.retrain_drift_psi <= 0 or not math.isfinite(settings.retrain_drift_psi):
        raise ConfigError(f"TAGGER_RETRAIN_DRIFT_PSI={settings.retrain_drift_psi!r} must be positive")
    if settings.registry_url:
        try:
            address = urllib.parse.urlsplit(settings.registry_url)
            address.port  # noqa: B018 - raises ValueError for a port that is not a number
        except ValueError:
            address = None
        if address is None or address.scheme not in ("http", "https") or not address.hostname:
            raise ConfigError(f"TAGGER_REGISTRY_URL={settings.registry_url!r} is not an http(s) URL")
    for name in positive:
        if getattr(settings, name) <= 0:
            raise ConfigError(f"{var(name)}={getattr(settings, name)!r} must be positive")
    _check_range(settings, "review_session_hours", 0.01, LONGEST_SESSION_SECONDS / 3600.0)
    if settings.review_session_secret and len(settings.review_session_secret) < MIN_SECRET_CHARS:
        raise ConfigError(f"TAGGER_REVIEW_SESSION_SECRET must be at least {MIN_SECRET_CHARS} characters")
    try:
        settings.review_session_secret.reveal().encode()
    except UnicodeEncodeError:
        # Bytes that are not UTF-8 reach Python as lone surrogates, which no key can be made of: one line here,
        # not a traceback when the page is set up. The key is never quoted.
        raise ConfigError("TAGGER_REVIEW_SESSION_SECRET is not UTF-8 text (64 hex digits make a good one)") from None
    if not settings.review_hosts:
        raise ConfigError("TAGGER_REVIEW_ALLOWED_HOSTS must name at least one host")
    try:
        networks = settings.review_proxy_networks
    except ValueError as exc:
        raise ConfigError(f"TAGGER_REVIEW_PROXY_ADDRESSES={settings.review_proxy_addresses!r}: {exc}") from None
    if any(network.prefixlen == 0 for network in networks):  # every address: anyone could name a reviewer
        raise ConfigError(f"TAGGER_REVIEW_PROXY_ADDRESSES={settings.review_proxy_addresses!r} trusts every address")
    if not HEADER_NAME.fullmatch(settings.review_proxy_header):
        raise ConfigError(f"TAGGER_REVIEW_PROXY_HEADER={settings.review_proxy_header!r} is not an HTTP header name")
    if settings.review_auth == "proxy" and not networks:
        raise ConfigError(
            "TAGGER_REVIEW_AUTH='proxy' needs TAGGER_REVIEW_PROXY_ADDRESSES and TAGGER_REVIEW_PROXY_HEADER"
        )
    _check_topics(settings)
    if settings.ssl_cafile and settings.security_protocol in ("SSL", "SASL_SSL"):
        if not Path(settings.ssl_cafile).is_file():  # a FIFO would block the start, waiting for a writer
            raise ConfigError(f"TAGGER_SSL_CAFILE={settings.ssl_cafile!r:.200} is not a regular file")
        try:  # read here, at start-up, so that a bad file is one line naming it rather than a traceback later
            ssl.create_default_context(cafile=settings.ssl_cafile)
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise ConfigError(
                f"TAGGER_SSL_CAFILE={settings.ssl_cafile!r} cannot be read as CA certificates: {exc}"
            ) from None


def _check_addresses(settings: Settings) -> None:
    """Raise :class:`ConfigError` unless every bootstrap server is ``host:port`` (an empty entry would add the
    client library's own default broker) and the web host is one host whose addresses this machine can bind."""
    for server in settings.kafka_bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        if not (HOST.fullmatch(host) and port.isascii() and port.isdigit() and 1 <= int(port) <= 65_535):
            raise ConfigError(
                f"TAGGER_KAFKA_BOOTSTRAP_SERVERS={settings.kafka_bootstrap_servers!r}: {server.strip()!r} is not "
                "host:port"
            )
    if not WEB_HOST.fullmatch(settings.web_host):
        raise ConfigError(f"TAGGER_WEB_HOST={settings.web_host!r} is not one host name or IPv4 address")
    # A name that does not resolve, or an address that is not this machine's, would stop the worker with a
    # traceback once its web server starts, and again at every restart. The server binds every address the name
    # resolves to; each is tried here with port 0 (any free port, so the check takes none).
    try:
        addresses = socket.getaddrinfo(settings.web_host, 0, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError) as exc:
        raise ConfigError(f"TAGGER_WEB_HOST={settings.web_host!r} does not resolve to an address: {exc}") from None
    for family, kind, protocol, _, address in addresses:
        try:
            with socket.socket(family, kind, protocol) as probe:
                if family == socket.AF_INET6:  # as the server binds it: apart from the IPv4 addresses
                    probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                probe.bind(address)
        except OSError as exc:
            raise ConfigError(
                f"TAGGER_WEB_HOST={settings.web_host!r}: cannot bind {address[0]}: {exc.strerror or exc} (name an "
                "address of this machine, or 0.0.0.0 for every interface)"
            ) from None


def _check_paths(settings: Settings) -> None:
    """Raise :class:`ConfigError` when a path the worker writes or reads is taken by something else: the
    data folder by a file, the labelled store by a folder, the reviewers file by anything but a file; or when the
    system refuses to look at one (a name too long, say)."""
    for name in ("data_dir", "labels_path", "reviewers_file", "model_dir", "candidates_dir"):
        try:
            Path(getattr(settings, name)).exists()
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise ConfigError(f"{var(name)}={str(getattr(settings, name))!r:.200}: {reason}") from None
    if _not_a_folder(settings.data_dir):
        raise ConfigError(f"TAGGER_DATA_DIR={str(settings.data_dir)!r} is not a folder, nor can be made one")
    labels = settings.labels_path
    # A FIFO or a device would block the reader, or never end (/dev/zero): only a regular file is read.
    if (labels.exists() and not labels.is_file()) or not labels.name or _not_a_folder(labels.parent):
        raise ConfigError(f"TAGGER_LABELS_PATH={str(labels)!r} is not a regular file, nor can be made one")
    if settings.reviewers_file.exists() and not settings.reviewers_file.is_file():
        raise ConfigError(f"TAGGER_REVIEWERS_FILE={str(settings.reviewers_file)!r} is not a file")
    for name in ("model_dir", "candidates_dir"):
        folder = getattr(settings, name)
        if folder.exists() and not folder.is_dir():
            raise ConfigError(f"{var(name)}={str(folder)!r:.200} is not a folder")


def _check_topics(settings: Settings) -> None:
    """Raise :class:`ConfigError` unless every topic name is one Kafka accepts and no two topics are one."""
    if not (TOPIC_NAME.fullmatch(settings.app_id) and len(settings.app_id) <= MAX_APP_ID_CHARS):
        raise ConfigError(
            f"TAGGER_APP_ID={settings.app_id!r} must be 1 to {MAX_APP_ID_CHARS} of the letters, digits, '.', '_' "
            "and '-' a Kafka topic name may hold"
        )
    if settings.app_id.startswith("__"):  # it starts the names of the group's own topics
        raise ConfigError(f"TAGGER_APP_ID={settings.app_id!r}: names starting with '__' are Kafka's internal topics")
    # Kafka takes "." and "_" in topic names for one another when it looks for collisions: a.b and a_b cannot
    # both exist.
    seen: dict[str, str] = {
        _collision_key(settings.index_topic): "the title index's topic",
        _collision_key(settings.sign_outs_topic): "the reviewers' sign-outs topic",
    }
    for name in TOPIC_SETTINGS:
        topic = getattr(settings, name)
        if not TOPIC_NAME.fullmatch(topic) or topic in (".", ".."):
            raise ConfigError(f"{var(name)}={topic!r} is not a valid Kafka topic name")
        if topic.startswith("__"):  # __consumer_offsets, __transaction_state: the broker's, which it refuses to us
            raise ConfigError(f"{var(name)}={topic!r}: names starting with '__' are Kafka's internal topics")
        key = _collision_key(topic)
        if key in seen:
            # One topic in two roles loops or mixes records: dead letters read back as input, say.
            raise ConfigError(f"{var(name)}={topic!r} is already {seen[key]}")
        seen[key] = var(name)


def _collision_key(topic: str) -> str:
    return topic.replace(".", "_")
