"""Settings come from TAGGER_* variables, with documented defaults and clear errors."""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from pathlib import Path

import pytest

from stream_app.errors import ConfigError
from stream_app.review.labels import read_labels
from stream_app.settings import Secret, Settings


def test_defaults_match_the_documented_topics() -> None:
    settings = Settings.from_env({})
    assert settings.kafka_bootstrap_servers == "127.0.0.1:9092"
    assert (settings.input_topic, settings.tagged_topic, settings.review_topic) == (
        "content",
        "content-tagged",
        "content-review",
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
        ("TAGGER_BATCH_TIMEOUT_SECONDS", "-0.001"),
        ("TAGGER_BATCH_TIMEOUT_SECONDS", "5"),
        ("TAGGER_COMMIT_INTERVAL_SECONDS", "0"),
        ("TAGGER_DEDUPE_TTL_DAYS", "-1"),
        ("TAGGER_DEDUPE_TTL_DAYS", "nan"),
        ("TAGGER_WEB_PORT", "70000"),
        ("TAGGER_MAX_CLOCK_SKEW_SECONDS", "-1"),
        ("TAGGER_MAX_CLOCK_SKEW_SECONDS", "inf"),
        ("TAGGER_REVIEW_SESSION_HOURS", "0"),
        ("TAGGER_REVIEW_SECURE_COOKIES", "ture"),
        ("TAGGER_REVIEW_PROXY_ADDRESSES", "10.0.0.300"),
        ("TAGGER_REVIEW_ALLOWED_HOSTS", " , "),
        ("TAGGER_CANDIDATE_POLL_SECONDS", "0"),
        ("TAGGER_LOG_REPEAT_SECONDS", "-1"),
        ("TAGGER_LOG_REPEAT_SECONDS", "nan"),
        ("TAGGER_SESSION_TIMEOUT_SECONDS", "1e308"),
        ("TAGGER_PRODUCER_LINGER_SECONDS", "1e308"),
        ("TAGGER_APP_ID", "bad id/with spaces"),
        ("TAGGER_APP_ID", "a" * 201),
        ("TAGGER_INPUT_TOPIC", ""),
        ("TAGGER_TAGGED_TOPIC", "tagged topic"),
        ("TAGGER_REVIEW_TOPIC", ".."),
        ("TAGGER_FEEDBACK_TOPIC", "t" * 250),
        # An empty entry would add the client library's default broker; a bad port failed only when connecting.
        ("TAGGER_KAFKA_BOOTSTRAP_SERVERS", ""),
        ("TAGGER_KAFKA_BOOTSTRAP_SERVERS", "k1:9092,,k2:9092"),
        ("TAGGER_KAFKA_BOOTSTRAP_SERVERS", "k1:notaport"),
        ("TAGGER_KAFKA_BOOTSTRAP_SERVERS", "k1:99999"),
        ("TAGGER_KAFKA_BOOTSTRAP_SERVERS", "k1"),
        ("TAGGER_WEB_HOST", ""),
        ("TAGGER_WEB_HOST", "not a host"),
        ("TAGGER_WEB_HOST", "127.0.0.1,10.0.0.1"),
        ("TAGGER_STOP_TIMEOUT_SECONDS", "1e10"),  # past what a timer takes: the stop deadline would never fire
        ("TAGGER_MAX_CLOCK_SKEW_SECONDS", "1e308"),  # one event dated far ahead would expire the whole index
        ("TAGGER_COMMIT_INTERVAL_SECONDS", "1e9"),
        ("TAGGER_REVIEW_PROXY_ADDRESSES", "0.0.0.0/0"),  # every client could name a reviewer
        ("TAGGER_REVIEW_PROXY_HEADER", "X Forwarded User"),
        ("TAGGER_REVIEW_PROXY_HEADER", " X-Forwarded-User"),
        ("TAGGER_LABELS_PATH", ""),
        ("TAGGER_LABELS_PATH", "."),
        # Each passed the checks once, then stopped the start with a traceback (the web server's URL, the client
        # library, the registry client, the page's key, the file system).
        # Below the 200 events the drift alerts and the drift retrain wait for: drift would never be reported.
        ("TAGGER_DRIFT_WINDOW", "199"),
        ("TAGGER_WEB_HOST", "::"),
        ("TAGGER_WEB_HOST", "::1"),
        ("TAGGER_WEB_HOST", "[::1]"),
        ("TAGGER_WEB_HOST", "localhost:8080"),
        ("TAGGER_KAFKA_BOOTSTRAP_SERVERS", "::1:9092"),
        ("TAGGER_KAFKA_BOOTSTRAP_SERVERS", "kafka:1:9092"),
        ("TAGGER_KAFKA_BOOTSTRAP_SERVERS", "kafka:\u00b2"),
        ("TAGGER_REGISTRY_URL", "http://[::1"),
        ("TAGGER_REGISTRY_URL", "http://"),
        ("TAGGER_REGISTRY_URL", "http://mlflow:port"),
        ("TAGGER_REVIEW_SESSION_SECRET", "k" * 32 + "\udcff"),
        ("TAGGER_DATA_DIR", "/tmp/" + "a" * 300),
        ("TAGGER_LABELS_PATH", "/tmp/" + "a" * 300),
        ("TAGGER_REVIEWERS_FILE", "/tmp/" + "a" * 300),
        ("TAGGER_CANDIDATES_DIR", "/tmp/" + "c" * 300),
        ("TAGGER_MODEL_DIR", "/tmp/" + "m" * 300),
        ("TAGGER_WEB_HOST", "web.invalid"),  # a name that cannot resolve (RFC 6761)
        # Addresses of other machines (a TEST-NET one, a public one): the web server could never bind them.
        ("TAGGER_WEB_HOST", "192.0.2.1"),
        ("TAGGER_WEB_HOST", "8.8.8.8"),
        ("TAGGER_PARTITIONS", str(10**30)),
        ("TAGGER_PARTITIONS", "10001"),
        ("TAGGER_DRIFT_WINDOW", "1000001"),
        ("TAGGER_REVIEW_RECENT_LIMIT", "1000001"),
        ("TAGGER_REVIEW_BOARD_MAX_ITEMS", "0"),
        ("TAGGER_REVIEW_BOARD_MAX_ITEMS", "1000001"),
        ("TAGGER_COMMIT_INTERVAL_SECONDS", "0.09"),
        ("TAGGER_CANDIDATE_POLL_SECONDS", "1e-300"),
        # Read by Python as numbers other than the operator sees, or as none: other scripts' digits, underscores.
        ("TAGGER_PARTITIONS", "\u0661\u0662"),
        ("TAGGER_WEB_PORT", "\u0666\u0660\u0666\u0666"),
        ("TAGGER_DEDUPE_TTL_DAYS", "\uff13\uff10"),
        ("TAGGER_BATCH_SIZE", "1_000"),
        ("TAGGER_REVIEW_THRESHOLD", "0.9_5"),
        ("TAGGER_DEDUPE_TTL_DAYS", "infinity"),
        ("TAGGER_BATCH_TIMEOUT_SECONDS", "nan"),
        # Path("") is the working folder: the candidates poll moved every folder there into refused/.
        ("TAGGER_CANDIDATES_DIR", ""),
        ("TAGGER_DATA_DIR", " "),
        ("TAGGER_MODEL_DIR", ""),
        ("TAGGER_REVIEWERS_FILE", ""),
        ("TAGGER_INPUT_TOPIC", "__consumer_offsets"),
        ("TAGGER_DEADLETTER_TOPIC", "__transaction_state"),
        ("TAGGER_APP_ID", "__tagger"),
    ],
)
def test_bad_values_are_refused_with_the_variable_named(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})


def test_numbers_are_read_as_written_with_spaces_around_them_allowed() -> None:
    written = {"TAGGER_PARTITIONS": " 12 ", "TAGGER_DEDUPE_TTL_DAYS": ".5", "TAGGER_REVIEW_THRESHOLD": "9.5e-1",
               "TAGGER_PRODUCER_LINGER_SECONDS": "0."}  # fmt: skip
    settings = Settings.from_env(written)
    assert (settings.partitions, settings.dedupe_ttl_days, settings.review_threshold) == (12, 0.5, 0.95)
    assert settings.producer_linger_seconds == 0.0


def test_a_long_bad_value_is_shown_cut_short() -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({"TAGGER_BATCH_SIZE": "9" * 5000 + "x"})
    assert str(raised.value).startswith("TAGGER_BATCH_SIZE='999") and len(str(raised.value)) < 300


def test_a_misspelt_setting_is_refused_in_one_line_naming_it_and_the_closest_setting() -> None:
    """Left at its default without a word, ``TAGGER_PROCESSING_GUARANTE=exactly_once`` ran at least once."""
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({"TAGGER_PROCESSING_GUARANTE": "exactly_once"})
    message = str(raised.value)
    assert (
        message.startswith("TAGGER_PROCESSING_GUARANTE (did you mean TAGGER_PROCESSING_GUARANTEE?) is not a setting")
        and "\n" not in message
    )


def test_every_unknown_tagger_variable_is_named_and_no_value_is_printed() -> None:
    env = {"TAGGER_SASL_PASWORD": "hunter2-hunter2", "TAGGER_QQQQ": "1", "TAGGER_WEB_PORT": "7000"}
    with pytest.raises(ConfigError) as raised:
        Settings.from_env(env)
    message = str(raised.value)
    assert message.startswith("TAGGER_QQQQ, TAGGER_SASL_PASWORD (did you mean TAGGER_SASL_PASSWORD?) are not settings")
    assert "hunter2" not in message


def test_variables_of_other_prefixes_are_not_settings_and_are_left_alone() -> None:
    """Only ``TAGGER_`` names the settings: the tests' own hooks use another prefix."""
    env = {"PATH": "/bin", "CONTENT_TAGGER_TEST_FAIL_IN": "model", "tagger_web_port": "x", "TAGGER": "x"}
    assert Settings.from_env(env) == Settings.from_env({})


def test_the_demo_compose_and_test_harnesses_set_only_real_settings() -> None:
    """Every ``TAGGER_`` name the scripts, the image, compose, the tools, the benchmarks and the integration tests
    set or read is a setting: any other would stop the workers they start."""
    root = Path(__file__).resolve().parents[2]
    files = [root / name for name in ("Makefile", "Dockerfile", "docker-compose.yml")]
    for folder in ("scripts", "tools", "bench", "tests/integration", "stream_app"):
        files += [path for path in (root / folder).rglob("*") if path.is_file() and path.suffix in ("", ".py")]
    settings = {f"TAGGER_{spec.name.upper()}" for spec in dataclasses.fields(Settings)}
    named = {
        (name, str(path.relative_to(root)))
        for path in files
        for name in re.findall(r"\bTAGGER_[A-Z0-9_]+", path.read_text(errors="replace"))
    }
    assert sorted(pair for pair in named if pair[0] not in settings) == []


def test_good_addresses_are_taken() -> None:
    settings = Settings.from_env(
        {"TAGGER_KAFKA_BOOTSTRAP_SERVERS": "k1:9092, k2.example:19092,[::1]:9092", "TAGGER_WEB_HOST": "localhost"}
    )
    assert settings.kafka_bootstrap_servers.count(",") == 2
    for host in ("127.0.0.1", "0.0.0.0"):  # noqa: S104 - every interface is one choice the worker offers
        assert Settings.from_env({"TAGGER_WEB_HOST": host}).web_host == host


def test_a_labelled_store_that_is_not_a_regular_file_is_refused(tmp_path: Path) -> None:
    """A FIFO would block the start-up read of the labels for ever, /dev/zero would fill the memory."""
    fifo = tmp_path / "labels.fifo"
    os.mkfifo(fifo)
    for path in (fifo, Path("/dev/zero")):
        with pytest.raises(ConfigError, match="TAGGER_LABELS_PATH.*not a regular file"):
            Settings.from_env({"TAGGER_LABELS_PATH": str(path)})
    with pytest.raises(OSError, match="not a regular file"):
        read_labels(fifo)


def test_paths_taken_by_something_else_are_refused_in_one_line(tmp_path: Path) -> None:
    """A data folder that is a file, a labelled store or reviewers file that is a folder: found at start-up, not
    as a traceback from a task or a 500 on every review page."""
    a_file, a_folder = tmp_path / "file", tmp_path / "folder"
    a_file.write_text("x")
    a_folder.mkdir()
    for name, value in (("TAGGER_DATA_DIR", a_file), ("TAGGER_DATA_DIR", a_file / "sub"),
                        ("TAGGER_LABELS_PATH", a_folder), ("TAGGER_REVIEWERS_FILE", a_folder),
                        ("TAGGER_CANDIDATES_DIR", a_file), ("TAGGER_MODEL_DIR", a_file)):  # fmt: skip
        with pytest.raises(ConfigError, match=name):
            Settings.from_env({name: str(value)})
    Settings.from_env({"TAGGER_DATA_DIR": str(a_folder / "new"), "TAGGER_REVIEWERS_FILE": str(a_file)})


@pytest.mark.parametrize(
    ("name", "typo", "allowed"),
    [
        ("TAGGER_SECURITY_PROTOCOL", "SASL-SSL", "PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL"),
        ("TAGGER_SASL_MECHANISM", "SCRAM-SHA256", "PLAIN, SCRAM-SHA-256, SCRAM-SHA-512"),
        ("TAGGER_PROCESSING_GUARANTEE", "exactly-once", "at_least_once, exactly_once"),
        ("TAGGER_REVIEW_AUTH", "account", "accounts, proxy"),
    ],
)
def test_a_typo_in_an_enumerated_setting_is_refused_in_one_line_naming_it(name: str, typo: str, allowed: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({name: typo})
    assert str(raised.value) == f"{name}={typo!r} is not one of {allowed}"


def test_the_sasl_password_and_the_session_secret_are_never_printed() -> None:
    secret = "s" * 40
    settings = Settings.from_env({"TAGGER_SASL_PASSWORD": "hunter2", "TAGGER_REVIEW_SESSION_SECRET": secret})
    assert settings.sasl_password.reveal() == "hunter2" and settings.review_session_secret.reveal() == secret
    logged = logging.LogRecord("t", logging.INFO, "", 0, "%s %s", (settings.sasl_password, settings), None).getMessage()
    shown_ways = (repr(settings), str(settings), f"{settings.review_session_secret}", logged)
    for shown in shown_ways:
        assert "hunter2" not in shown and secret not in shown
    assert Secret("a") == Secret("a") != Secret("b")


def test_a_short_session_secret_is_refused_without_printing_it() -> None:
    with pytest.raises(ConfigError, match="TAGGER_REVIEW_SESSION_SECRET") as raised:
        Settings.from_env({"TAGGER_REVIEW_SESSION_SECRET": "short-secret"})
    assert "short-secret" not in str(raised.value)


def test_proxy_sign_in_needs_the_proxy_addresses() -> None:
    with pytest.raises(ConfigError, match="TAGGER_REVIEW_PROXY_ADDRESSES"):
        Settings.from_env({"TAGGER_REVIEW_AUTH": "proxy"})
    settings = Settings.from_env({"TAGGER_REVIEW_AUTH": "proxy", "TAGGER_REVIEW_PROXY_ADDRESSES": "10.0.0.5, fd00::/8"})
    assert [str(n) for n in settings.review_proxy_networks] == ["10.0.0.5/32", "fd00::/8"]


def test_a_batch_lingers_by_default_only_when_it_costs_a_transaction_and_as_long_as_set_otherwise() -> None:
    exactly_once = {"TAGGER_PROCESSING_GUARANTEE": "exactly_once"}
    assert Settings.from_env({}).batch_linger_seconds == 0.0
    assert Settings.from_env({"TAGGER_BATCH_TIMEOUT_SECONDS": ""}).batch_linger_seconds == 0.0
    assert Settings.from_env(exactly_once).batch_linger_seconds == 0.005
    assert Settings.from_env({**exactly_once, "TAGGER_BATCH_TIMEOUT_SECONDS": "0"}).batch_linger_seconds == 0.0
    assert Settings.from_env({"TAGGER_BATCH_TIMEOUT_SECONDS": "0.02"}).batch_linger_seconds == 0.02


def test_the_clock_skew_defaults_to_five_minutes_and_may_be_zero() -> None:
    assert Settings.from_env({}).max_clock_skew_seconds == 300.0
    assert Settings.from_env({"TAGGER_MAX_CLOCK_SKEW_SECONDS": "0"}).max_clock_skew_seconds == 0.0


@pytest.mark.parametrize(("value", "transacted"), [("at_least_once", False), ("exactly_once", True)])
def test_both_delivery_guarantees_are_served(value: str, transacted: bool) -> None:
    assert Settings.from_env({"TAGGER_PROCESSING_GUARANTEE": value}).exactly_once is transacted


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"TAGGER_DEADLETTER_TOPIC": "content"}, "TAGGER_DEADLETTER_TOPIC='content' is already TAGGER_INPUT_TOPIC"),
        ({"TAGGER_REVIEW_TOPIC": "content-tagged"}, "TAGGER_REVIEW_TOPIC='content-tagged' is already TAGGER_TAGGED"),
        ({"TAGGER_APP_ID": "x", "TAGGER_FEEDBACK_TOPIC": "x-title-index"}, "is already the title index's topic"),
        ({"TAGGER_APP_ID": "x", "TAGGER_TAGGED_TOPIC": "x-sign-outs"}, "is already the reviewers' sign-outs topic"),
        # Kafka refuses a topic whose name differs from another's only by "." against "_".
        (
            {"TAGGER_TAGGED_TOPIC": "out.a", "TAGGER_REVIEW_TOPIC": "out_a"},
            "TAGGER_REVIEW_TOPIC='out_a' is already TAGGER_TAGGED",
        ),
        ({"TAGGER_APP_ID": "x.y", "TAGGER_FEEDBACK_TOPIC": "x_y-title-index"}, "is already the title index's topic"),
    ],
)
def test_one_topic_in_two_roles_is_refused(env: dict[str, str], named: str) -> None:
    # Dead letters read back as input would be dead-lettered again, for ever.
    with pytest.raises(ConfigError, match=re.escape(named)):
        Settings.from_env(env)


def test_a_ca_file_that_cannot_be_read_is_refused_at_start_up(tmp_path: Path) -> None:
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("not a certificate\n")
    fifo = tmp_path / "ca.fifo"  # opened for reading, it would hold the start until something wrote to it
    os.mkfifo(fifo)
    for cafile in (tmp_path / "missing.pem", not_pem, fifo):
        with pytest.raises(ConfigError, match="TAGGER_SSL_CAFILE="):
            Settings.from_env({"TAGGER_SECURITY_PROTOCOL": "SSL", "TAGGER_SSL_CAFILE": str(cafile)})
    # Unused without TLS: the setting may be left in an environment that has turned TLS off.
    assert Settings.from_env({"TAGGER_SSL_CAFILE": str(tmp_path / "missing.pem")}).ssl_cafile
