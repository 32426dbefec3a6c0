"""Kafka client options for the configured security protocol, shared by the Faust app and the plain aiokafka
clients (the review follower, the transactional producers)."""

from __future__ import annotations

import ssl
from typing import Any, Final

import faust

from stream_app.settings import Settings


def aiokafka_security(settings: Settings) -> dict[str, Any]:
    """aiokafka client arguments for the configured security protocol (the same as the Faust app's)."""
    protocol = settings.security_protocol
    options: dict[str, Any] = {"security_protocol": protocol}
    if protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = ssl_context(settings)
    if protocol.startswith("SASL"):
        options.update(
            sasl_mechanism=settings.sasl_mechanism,
            sasl_plain_username=settings.sasl_username,
            sasl_plain_password=settings.sasl_password.reveal(),
        )
    return options


READ_COMMITTED: Final = {"isolation_level": "read_committed"}
"""What every consumer of the worker reads, in either processing guarantee: records a transaction aborted were
withdrawn by their writer (an upstream's, or a worker's that crashed mid-batch), and are never shown."""


def aiokafka_client(settings: Settings) -> dict[str, Any]:
    """aiokafka client arguments to reach the configured brokers: their addresses and :func:`aiokafka_security`."""
    return {"bootstrap_servers": settings.kafka_bootstrap_servers, **aiokafka_security(settings)}


def ssl_context(settings: Settings) -> ssl.SSLContext:
    """A client TLS context trusting ``TAGGER_SSL_CAFILE`` (the system's CAs when empty)."""
    return ssl.create_default_context(cafile=settings.ssl_cafile or None)


def faust_credentials(settings: Settings) -> Any:
    """Faust broker credentials for the configured security protocol, or None for PLAINTEXT."""
    protocol = settings.security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = ssl_context(settings) if protocol in ("SSL", "SASL_SSL") else None
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    return faust.SASLCredentials(
        username=settings.sasl_username,
        password=settings.sasl_password.reveal(),
        mechanism=settings.sasl_mechanism,
        ssl_context=context,
    )
