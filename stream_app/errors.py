"""The one exception tree of content-tagger, and the one place that decides dead-letter or crash.

Every error the service raises on purpose derives from :class:`TaggerError`. An :class:`InvalidEvent` is a
property of one input message: the worker dead-letters it and goes on. Anything else is a property of the
deployment (configuration, model, broker) and stops the worker, because carrying on would emit wrong output.
"""

from __future__ import annotations

from typing import Final

DEADLETTER_REASONS: Final[tuple[str, ...]] = (
    "not_utf8",
    "not_json",
    "not_object",
    "missing_field",
    "wrong_type",
    "too_large",
    "invalid_value",
)
"""Every ``error`` value a dead-letter record can carry; also the bounded ``reason`` label of the metrics."""


class TaggerError(Exception):
    """Root of every error content-tagger raises on purpose."""


class ConfigError(TaggerError):
    """A setting is missing or malformed; raised at start-up."""


MODEL_REFUSAL_REASONS: Final[tuple[str, ...]] = (
    "corrupt",
    "tampered",
    "not_approved",
    "worse_offline",
    "stale",
    "worse_shadow",
    "worse_canary",
)
"""Why a model is refused: unreadable or its card malformed, bytes not those its card names, tags or operators
outside the approved sets, worse than the live model on held-out data, compared with a model that no longer
serves, worse in the shadow run, or worse than the champion on the traffic it served as a canary; also the bounded
``reason`` label of the refusal counter."""


class ModelError(TaggerError):
    """A model or its card is missing, tampered with, or not allowed to serve; ``reason`` says which."""

    def __init__(self, message: str, reason: str = "corrupt") -> None:
        if reason not in MODEL_REFUSAL_REASONS:
            raise ValueError(f"unknown refusal reason {reason!r}")
        super().__init__(message)
        self.reason = reason


class InvalidEvent(TaggerError):
    """One input message is malformed; it is dead-lettered with ``reason`` and ``detail``."""

    def __init__(self, reason: str, detail: str) -> None:
        if reason not in DEADLETTER_REASONS:
            raise ValueError(f"unknown dead-letter reason {reason!r}")
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


SKIP_REASONS: Final[tuple[str, ...]] = (
    "tombstone",
    "not_json",
    "not_object",
    "missing_field",
    "wrong_type",
    "invalid_value",
    "repeated",
    "unexpected",
)
"""Why a record of a topic other than the input topic was skipped (``repeated``: a decision read before, sent
again; ``unexpected``: its handling raised an error no check foresaw); the bounded ``reason`` label of the skip
counter."""


class InvalidRecord(TaggerError):
    """A record the worker reads besides input events (review, tagged, feedback) is malformed: it is counted by
    ``reason``, logged and skipped, never a crash."""

    def __init__(self, reason: str, detail: str) -> None:
        if reason not in SKIP_REASONS:
            raise ValueError(f"unknown skip reason {reason!r}")
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class RebalanceStalled(TaggerError):
    """A rebalance has not ended in far longer than one can take: the worker stops, and its supervisor restarts it."""


class InvalidDecision(TaggerError):
    """A reviewer's form is refused (unknown item, tag not approved, missing field): a 400, nothing published."""


def should_dead_letter(error: BaseException) -> bool:
    """Decide what a failure while handling one message means: True to dead-letter it, False to crash.

    Only errors that belong to the message itself are dead-lettered; a crash on anything else lets the
    consumer restart from the last committed offset, so the message is retried rather than lost.
    """
    return isinstance(error, InvalidEvent)
