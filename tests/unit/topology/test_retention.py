"""Which broker configurations of the topics read back whole delete records too soon."""

from __future__ import annotations

import math

import pytest

from stream_app.topology.retention import KeptTopic, retention_problem

INDEX = KeptTopic("tagger-title-index", 30 * 86400.0 + 600.0, "TAGGER_DEDUPE_TTL_DAYS")


@pytest.mark.parametrize(
    ("configs", "refused"),
    [
        ({"cleanup.policy": "compact", "retention.ms": "604800000"}, False),  # the retention applies to nothing
        ({"cleanup.policy": "compact,delete", "retention.ms": "-1"}, False),
        ({"cleanup.policy": "", "retention.ms": "604800000"}, False),  # no cleanup policy: records are kept
        ({"cleanup.policy": "delete", "retention.ms": str(31 * 86400 * 1000)}, False),
        ({"cleanup.policy": "compact,delete", "retention.ms": str(30 * 86400 * 1000 + 600_000)}, False),
        ({"cleanup.policy": "delete", "retention.ms": "604800000"}, True),  # a broker's default for a new topic
        ({"cleanup.policy": " compact , delete ", "retention.ms": "604800000"}, True),
        ({"cleanup.policy": "compact,delete", "retention.ms": str(30 * 86400 * 1000)}, True),  # the skew short
        ({"cleanup.policy": None, "retention.ms": "1000"}, True),  # no policy given: Kafka's default deletes
        ({"cleanup.policy": "delete", "retention.ms": "soon"}, True),
    ],
)
def test_a_topic_that_deletes_records_before_they_are_needed_is_refused(
    configs: dict[str, str | None], refused: bool
) -> None:
    problem = retention_problem(INDEX, configs)
    assert (problem is not None) is refused, problem
    if refused and configs["retention.ms"] != "soon":
        assert problem is not None and "tagger-title-index" in problem and "retention.ms=2592600000" in problem


REVIEW = KeptTopic("content-review", math.inf, "an item waits for review until a decision on it")


@pytest.mark.parametrize(
    ("configs", "refused"),
    [
        ({"cleanup.policy": "delete", "retention.ms": "-1"}, False),  # as the worker makes it
        ({"cleanup.policy": "compact", "retention.ms": "604800000"}, False),
        ({"cleanup.policy": "", "retention.ms": "604800000"}, False),
        ({"cleanup.policy": "delete", "retention.ms": "604800000"}, True),  # made by an older worker, or by hand
        ({"cleanup.policy": "delete", "retention.ms": str(100 * 365 * 86400 * 1000)}, True),  # long, but it ends
        ({"cleanup.policy": "compact,delete", "retention.ms": "604800000"}, True),
        ({"cleanup.policy": None, "retention.ms": "604800000"}, True),
    ],
)
def test_a_topic_whose_records_are_needed_for_ever_is_refused_any_finite_deleting_retention(
    configs: dict[str, str | None], refused: bool
) -> None:
    problem = retention_problem(REVIEW, configs)
    assert (problem is not None) is refused, problem
    if refused:
        assert problem is not None and problem.startswith("content-review deletes records after"), problem
        assert "needed for ever" in problem and "set retention.ms=-1" in problem, problem
        assert "--entity-name content-review --add-config retention.ms=-1" in problem, problem
