"""Start-up: settings from the environment, the checked model, and the Faust app built from both."""

from __future__ import annotations

import asyncio
import fcntl
import functools
import gc
import logging
import os
import sys
import threading
import traceback
from pathlib import Path
from typing import Any

import faust

from stream_app.allocator import fix_mmap_threshold
from stream_app.app import create_app
from stream_app.errors import ConfigError, TaggerError
from stream_app.faust_patches.checks import check_library_hooks
from stream_app.faust_patches.header_keys import install as tolerate_header_keys
from stream_app.lifecycle.fleet import start_model
from stream_app.log_repeats import summarise_repeats
from stream_app.review.sessions import kept_session_secret
from stream_app.settings import Settings

log = logging.getLogger(__name__)

STOP_TIMEOUT_EXIT_STATUS = 3
"""The worker's exit status when stopping took longer than ``TAGGER_STOP_TIMEOUT_SECONDS``."""
REPORT_GRACE_SECONDS = 5.0
"""How long past the stop deadline the report of what the stop waited for may take before the process exits
without it."""


class TaggerWorker(faust.Worker):
    """Faust's worker without its terminal spinner, with a deadline on stopping, and with the libraries' repeating
    log lines summarised (:mod:`stream_app.log_repeats`).

    At a log level of WARN or above, Faust hangs a spinner on the root logger and lowers the root level to DEBUG
    so that every record turns it; aiokafka and Faust then build a log record for every message sent (about 10%
    of the worker's CPU), only for the handler to drop it.
    """

    def __init__(
        self,
        app: faust.App,
        *args: Any,
        stop_timeout_seconds: float = Settings.stop_timeout_seconds,
        log_repeat_seconds: float = Settings.log_repeat_seconds,
        **kwargs: Any,
    ) -> None:
        super().__init__(app, *args, **kwargs)
        self.stop_timeout_seconds = stop_timeout_seconds
        self.log_repeat_seconds = log_repeat_seconds
        self._stop_deadline: threading.Timer | None = None

    async def stop(self) -> None:
        """Stop, and exit the process with status 3 if that has not happened within the stop timeout.

        A stop can wait forever: one exactly-once worker, crashed by a broker outage, still waited 4 minutes
        after the broker was back for an agent that never finished. Exiting is as safe as a crash (a restarted
        worker resumes from the committed offsets), and a supervisor restarts a process that exited, not one
        that hangs. A thread keeps the deadline, because the event loop may be what is stuck.
        """
        if self._stop_deadline is None:
            self._stop_deadline = arm_stop_deadline(self.stop_timeout_seconds, self.loop)
        await super().stop()

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        self.spinner = None
        super().on_setup_root_logger(logger, level)
        summarise_repeats(logger, self.log_repeat_seconds)

    async def on_startup_finished(self) -> None:
        """Freeze what start-up made, then log "Ready".

        Start-up leaves some 80,000 long-lived objects (modules, the app and its services), and every full garbage
        collection walked them all while the events in flight waited: 25 to 73 ms a pause in a 20 s run at 400
        events/s, 5 to 48 ms with them frozen (never walked again).
        """
        gc.collect()
        gc.freeze()
        await super().on_startup_finished()

    def _repr_name(self) -> str:
        return "Worker"  # log as Faust's worker does: deployments wait for "[^Worker]: Ready"


def arm_stop_deadline(timeout: float, loop: asyncio.AbstractEventLoop) -> threading.Timer:
    """Start the threads that end the process ``timeout`` seconds from now: one reports what the stop waited for
    and exits (:func:`exit_stuck_stop`); the report takes the log handlers' locks, which a thread stuck writing a
    log line may hold, so another exits :data:`REPORT_GRACE_SECONDS` later without taking any."""
    report = threading.Timer(timeout, exit_stuck_stop, (timeout, loop))
    last_resort = threading.Timer(timeout + REPORT_GRACE_SECONDS, os._exit, (STOP_TIMEOUT_EXIT_STATUS,))
    for timer in (report, last_resort):
        timer.daemon = True
        timer.start()
    return report


def exit_stuck_stop(timeout: float, loop: asyncio.AbstractEventLoop) -> None:
    """Exit the process at once, logging what it waited for: its stop has taken longer than ``timeout`` seconds."""
    log.critical(
        "the worker has not stopped %.0f s after it began to (TAGGER_STOP_TIMEOUT_SECONDS): exiting with status %d; "
        "a restarted worker resumes from the committed offsets. What it was waiting for:\n%s",
        timeout,
        STOP_TIMEOUT_EXIT_STATUS,
        waiting_stacks(loop),
    )
    for handler in logging.getLogger().handlers:
        handler.flush()
    os._exit(STOP_TIMEOUT_EXIT_STATUS)


def waiting_stacks(loop: asyncio.AbstractEventLoop) -> str:
    """The stacks of the event loop's unfinished tasks, then of every thread: read from another thread while the
    loop may still run, so best effort (a task set that keeps changing is left out)."""
    tasks: list[asyncio.Task[Any]] = []
    for _ in range(3):
        try:
            tasks = list(asyncio.all_tasks(loop))
            break
        except RuntimeError:  # the set changed while it was copied
            continue
    parts = [f"{task!r}:\n" + "".join(f"  {line}\n" for line in awaiting(task.get_coro())) for task in tasks]
    for thread_id, frame in sys._current_frames().items():
        parts.append(f"Thread {thread_id}:\n" + "".join(traceback.format_stack(frame)))
    return "\n".join(parts)


def awaiting(coroutine: Any) -> list[str]:
    """Where a coroutine waits: its frame, then that of the coroutine it awaits, and so on down the chain (a
    task's own stack shows only its outermost frame)."""
    lines = []
    while coroutine is not None:
        for kind in ("cr", "ag", "gi"):  # coroutine, async generator, generator-based coroutine
            frame = getattr(coroutine, f"{kind}_frame", None)
            if frame is not None:
                lines.append(f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}")
        awaited = [getattr(coroutine, name, None) for name in ("cr_await", "ag_await", "gi_yieldfrom")]
        coroutine = next((a for a in awaited if a is not None), None)
    return lines


def build_app(settings: Settings | None = None) -> faust.App:
    """Build the worker's app; a configuration or model error exits with status 2 and one clear line."""
    try:
        check_library_hooks()
        tolerate_header_keys()
        settings = settings if settings is not None else Settings.from_env()
        make_data_dir(settings.data_dir)
        lock_data_dir(settings.data_dir)
        classifier, model_dir = start_model(settings)
        settings = kept_session_secret(settings)
    except TaggerError as error:
        print(f"content-tagger: cannot start: {error}", file=sys.stderr)
        raise SystemExit(2) from error
    log.info("serving model %s from %s, review threshold %.3f", classifier.version, model_dir, classifier.threshold)
    app = create_app(settings, classifier, model_dir=model_dir)
    # Faust builds the worker from this setting itself: a partial hands it the stop timeout and log window.
    app.conf.Worker = functools.partial(  # type: ignore[assignment]  # Faust types the setting as a type variable
        TaggerWorker,
        stop_timeout_seconds=settings.stop_timeout_seconds,
        log_repeat_seconds=settings.log_repeat_seconds,
    )
    return app


def make_data_dir(path: Path) -> None:
    """Make the data folder (Faust makes only its last level); raises :class:`ConfigError` when it cannot be made,
    on a read-only volume, say."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"TAGGER_DATA_DIR={str(path)!r} cannot be made: {error.strerror or error}") from error


DATA_DIR_LOCK = ".lock"
"""The file in ``TAGGER_DATA_DIR`` a worker holds locked while it runs; it names the holder's process id."""
_held_locks: dict[Path, int] = {}
"""The data folders this process holds locked, and the open file that holds each (closed only at exit)."""


def lock_data_dir(path: Path) -> None:
    """Lock ``path`` for this process until it exits; raises :class:`ConfigError` when another process holds it.

    Two workers sharing one data folder would race in it: each downloads registry versions into the same cache
    and removes the folders the other is writing or loading."""
    folder = path.resolve()
    if folder in _held_locks:
        return
    fd = -1
    try:
        fd = os.open(folder / DATA_DIR_LOCK, os.O_RDWR | os.O_CREAT | os.O_NONBLOCK, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except BlockingIOError:  # from flock: another process holds the lock
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise ConfigError(
            f"TAGGER_DATA_DIR={str(path)!r} is in use by another worker (process {holder}): give each worker its own"
        ) from None
    except OSError as error:
        if fd >= 0:
            os.close(fd)
        raise ConfigError(f"TAGGER_DATA_DIR={str(path)!r} cannot be locked: {error.strerror or error}") from error
    _held_locks[folder] = fd


def main() -> None:
    """Run the worker: ``python -m stream_app`` (default ``worker -l info``) takes Faust's command line."""
    fix_mmap_threshold()
    app = build_app()
    if len(sys.argv) == 1:
        sys.argv += ["worker", "-l", "info"]
    app.main()
