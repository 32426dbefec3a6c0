"""Worker start-up: the Faust worker class the app runs with."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from stream_app.settings import Settings
from stream_app.worker import build_app


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """The root logger as it was. The tests' workers also keep ``sys.stdout`` and ``sys.stderr``
    (``redirect_stdouts=False``): mode's redirection is undone only when its generator is collected, at any later
    time, and then sets ``sys.__stderr__``, which took a later test's captured stderr away from it."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("restored_logging")
def test_a_quiet_log_level_builds_no_debug_records(trained_model_dir: Path, tmp_path: Path) -> None:
    """At ``-l warn`` Faust's own worker lowers the root logger to DEBUG for its spinner, so every message sent
    builds a log record (about 10% of the worker's CPU); ours keeps the level asked for."""
    app = build_app(Settings(model_dir=trained_model_dir, data_dir=tmp_path))
    worker = app.conf.Worker(app, loglevel="warn", logfile=str(tmp_path / "worker.log"), redirect_stdouts=False)
    worker._setup_logging()
    assert not logging.getLogger("aiokafka.producer").isEnabledFor(logging.DEBUG)
    assert logging.getLogger("stream_app").isEnabledFor(logging.WARNING)
    assert worker.shortlabel == "Worker"  # its "[^Worker]: Ready" line is what start-up scripts wait for


@pytest.mark.usefixtures("restored_logging")
def test_the_workers_log_writes_a_librarys_repeating_line_once_per_window(
    trained_model_dir: Path, tmp_path: Path
) -> None:
    """While the broker is away aiokafka logs every retry (over 200 lines a second in a worker); the log file
    gets the first of each kind, and the next one after the window says how many were left out."""
    logfile = tmp_path / "worker.log"
    app = build_app(Settings(model_dir=trained_model_dir, data_dir=tmp_path, log_repeat_seconds=3600))
    worker = app.conf.Worker(app, loglevel="info", logfile=str(logfile), redirect_stdouts=False)
    worker._setup_logging()
    client = logging.getLogger("aiokafka.client")
    for _ in range(500):
        client.error("Unable connect to node with id %s: %s", 1, "Connect call failed")
    logging.getLogger("stream_app.delivery.transactions").warning("own line")
    logging.getLogger("stream_app.delivery.transactions").warning("own line")
    for handler in logging.getLogger().handlers:
        handler.flush()
    text = logfile.read_text()
    assert text.count("Unable connect to node") == 1
    assert text.count("own line") == 2


@pytest.mark.parametrize("seconds", [6.0, 120.0, 1800.0])
def test_every_session_timeout_the_checks_take_is_one_the_consumer_takes(
    trained_model_dir: Path, tmp_path: Path, seconds: float
) -> None:
    """Faust refuses, when the consumer starts, a session timeout above the request timeout (90 s by default):
    a value the settings allow must not stop every worker of the fleet at start-up."""
    app = build_app(Settings(model_dir=trained_model_dir, data_dir=tmp_path, session_timeout_seconds=seconds))
    assert app.conf.broker_session_timeout == seconds
    assert app.conf.broker_request_timeout >= app.conf.broker_session_timeout


def test_a_data_directory_that_does_not_exist_yet_is_created(trained_model_dir: Path, tmp_path: Path) -> None:
    """A deployment may point ``TAGGER_DATA_DIR`` at a path none of whose parents exist; Faust would fail to
    start on it (it makes only the last level)."""
    data_dir = tmp_path / "var" / "lib" / "content-tagger"
    build_app(Settings(model_dir=trained_model_dir, data_dir=data_dir))
    assert data_dir.is_dir()


def test_a_data_directory_that_cannot_be_made_stops_the_start_in_one_line(
    trained_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A read-only volume, or a folder no one may create (/proc's here): status 2 and one line, as for any bad
    setting, rather than a traceback."""
    with pytest.raises(SystemExit) as raised:
        build_app(Settings(model_dir=trained_model_dir, data_dir=Path("/proc/content-tagger/state")))
    assert raised.value.code == 2
    assert "TAGGER_DATA_DIR='/proc/content-tagger/state' cannot be made" in capsys.readouterr().err


def test_a_second_worker_on_one_data_directory_stops_the_start_in_one_line(
    trained_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two workers sharing a data folder race in its registry cache: the second is refused until the first exits."""
    settings = Settings(model_dir=trained_model_dir, data_dir=tmp_path)
    holder = [sys.executable, "-c", HOLD_THE_DATA_DIRECTORY, str(trained_model_dir), str(tmp_path)]
    root = Path(__file__).resolve().parents[2]
    first = subprocess.Popen(holder, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=root)
    assert first.stdout is not None and first.stdin is not None
    try:
        assert first.stdout.readline() == b"built\n"
        with pytest.raises(SystemExit) as raised:
            build_app(settings)
        assert raised.value.code == 2
        error = capsys.readouterr().err
        expected = f"content-tagger: cannot start: TAGGER_DATA_DIR={str(tmp_path)!r} is in use by another worker "
        assert error == f"{expected}(process {first.pid}): give each worker its own\n"
    finally:
        first.stdin.close()  # the holder exits
        first.wait(timeout=60)
    build_app(settings)


HOLD_THE_DATA_DIRECTORY = """
import sys
from pathlib import Path
from stream_app.settings import Settings
from stream_app.worker import build_app
build_app(Settings(model_dir=Path(sys.argv[1]), data_dir=Path(sys.argv[2])))
print("built", flush=True)
sys.stdin.read()
"""


def test_a_web_host_of_another_machine_stops_the_start_in_one_line(
    trained_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An address the web server cannot bind (a TEST-NET one here) is status 2 and one line naming the setting,
    as for any bad setting, rather than a traceback once the web server starts, at every restart."""
    for name, value in (("WEB_HOST", "192.0.2.1"), ("MODEL_DIR", str(trained_model_dir)), ("DATA_DIR", str(tmp_path))):
        monkeypatch.setenv(f"TAGGER_{name}", value)
    with pytest.raises(SystemExit) as raised:
        build_app()
    assert raised.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("content-tagger: cannot start: TAGGER_WEB_HOST='192.0.2.1'") and error.count("\n") == 1


def test_a_stuck_stop_exits_with_status_3_even_while_a_log_handler_is_held() -> None:
    """The deadline's report takes the log handlers' locks; a thread stuck in a log write holds one, and the
    process must still exit, with the stop timeout's status, a moment later."""
    script = (
        "import asyncio, logging, threading\n"
        "from stream_app import worker\n"
        "worker.REPORT_GRACE_SECONDS = 0.5\n"
        "logging.basicConfig()\n"
        "logging.getLogger().handlers[0].acquire()  # a log write that never ends\n"
        "worker.arm_stop_deadline(0.2, asyncio.new_event_loop())\n"
        "threading.Event().wait()  # a stop that never ends\n"
    )
    # A process that never exits fails the test by the timeout; how soon it exits is not asserted (no timing).
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=30, check=False)
    assert done.returncode == 3, done.stderr


@pytest.mark.parametrize("interval", [0.5, 2.8])
def test_offsets_are_committed_as_often_as_the_setting_says(
    trained_model_dir: Path, tmp_path: Path, interval: float
) -> None:
    app = build_app(Settings(model_dir=trained_model_dir, data_dir=tmp_path, commit_interval_seconds=interval))
    assert app.consumer.commit_interval == interval


@pytest.mark.parametrize("linger", [0.0, 0.002])
def test_the_producer_linger_is_the_setting(trained_model_dir: Path, tmp_path: Path, linger: float) -> None:
    app = build_app(Settings(model_dir=trained_model_dir, data_dir=tmp_path, producer_linger_seconds=linger))
    assert app.conf.producer_linger == linger
    assert app.producer._settings_default()["linger_ms"] == int(linger * 1000)
