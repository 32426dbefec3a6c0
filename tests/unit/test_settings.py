"""Settings come from TAGGER_* variables, with documented defaults and clear errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from stream_app.errors import ConfigError
from stream_app.settings import Settings


def test_defaults_match_the_documented_topics() -> None:
    settings = Settings.from_env({})
    assert settings.kafka_bootstrap_servers == "127.0.0.1:9092"
    assert (settings.input_topic, settings.tagged_topic, settings.review_topic) == (
        "content", "content-tagged", "content-review",
    )
    assert (settings.duplicates_topic, settings.deadletter_topic) == ("content-duplicates", "content-deadletter")
    assert settings.dedupe_ttl_days == 30
    assert settings.review_threshold is None


def test_every_field_is_read_from_its_prefixed_variable() -> None:
    env = {
        "TAGGER_KAFKA_BOOTSTRAP_SERVERS": "k1:9092,k2:9092",
        "TAGGER_REVIEW_THRESHOLD": "0.8",
        "TAGGER_WEB_PORT": "7000",
        "TAGGER_MODEL_DIR": "/models/v2",
        "TAGGER_DEDUPE_TTL_DAYS": "7.5",
    }
    settings = Settings.from_env(env)
    assert settings.review_threshold == 0.8
    assert settings.web_port == 7000
    assert settings.model_dir == Path("/models/v2")
    assert settings.dedupe_ttl_seconds == 7.5 * 86400
    assert settings.broker_url == "kafka://k1:9092;kafka://k2:9092"


def test_every_field_has_a_docstring_in_the_readme() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    missing = [f.name for f in dataclasses.fields(Settings) if f"TAGGER_{f.name.upper()}" not in readme]
    assert missing == []


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TAGGER_WEB_PORT", "eighty"),
        ("TAGGER_REVIEW_THRESHOLD", "1.5"),
        ("TAGGER_PROCESSING_GUARANTEE", "at_most_once"),
        ("TAGGER_SESSION_TIMEOUT_SECONDS", "2"),
        ("TAGGER_MAX_CLOCK_SKEW_SECONDS", "-1"),
        ("TAGGER_BATCH_SIZE", "0"),
        ("TAGGER_STOP_TIMEOUT_SECONDS", "0"),
        ("TAGGER_PRODUCER_LINGER_SECONDS", "-0.001"),
        ("TAGGER_COMMIT_INTERVAL_SECONDS", "0"),
        ("TAGGER_DEDUPE_TTL_DAYS", "-1"),
    ],
)
def test_bad_values_are_refused_with_the_variable_named(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})


def test_the_sasl_password_is_never_printed() -> None:
    settings = Settings.from_env({"TAGGER_SASL_PASSWORD": "hunter2"})
    assert settings.sasl_password == "hunter2"
    assert "hunter2" not in repr(settings)


@pytest.mark.parametrize(("value", "transacted"), [("at_least_once", False), ("exactly_once", True)])
def test_both_delivery_guarantees_are_served(value: str, transacted: bool) -> None:
    assert Settings.from_env({"TAGGER_PROCESSING_GUARANTEE": value}).exactly_once is transacted
