"""Repeating library log lines: written once per window, with a count of those left out."""

from __future__ import annotations

import logging
import threading

from stream_app.log_repeats import RepeatedRecords, summarise_repeats


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def record(
    name: str = "aiokafka.client", msg: str = "Unable connect to node with id %s: %s", *args: object
) -> logging.LogRecord:
    return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, args or (1, "refused"), None)


def test_a_repeating_line_is_written_once_per_window_and_the_next_says_how_many_were_left_out() -> None:
    clock = Clock()
    repeats = RepeatedRecords(10.0, clock=clock)
    assert repeats.filter(record())
    left_out = []
    for node in range(250):
        clock.now += 0.01
        left_out.append(repeats.filter(record("aiokafka.client", "Unable connect to node with id %s: %s", node, "x")))
    assert not any(left_out)
    clock.now = 110.0
    next_one = record()
    assert repeats.filter(next_one)
    assert next_one.getMessage() == (
        "Unable connect to node with id 1: refused (250 more like this in the 10 s before, not written)"
    )
    clock.now += 0.5
    assert not repeats.filter(record())


def test_kinds_are_counted_apart_and_the_workers_own_records_always_pass() -> None:
    repeats = RepeatedRecords(10.0, clock=Clock())
    assert repeats.filter(record("aiokafka.client", "Unable to update metadata from %s", 1))
    assert repeats.filter(record("aiokafka.consumer.fetcher", "Unable to update metadata from %s", 1))
    assert repeats.filter(record("aiokafka.client", "Unable connect to node with id %s: %s"))
    warning = record("aiokafka.client", "Unable connect to node with id %s: %s")
    warning.levelno = logging.WARNING
    assert repeats.filter(warning)
    for _ in range(3):
        assert repeats.filter(record("stream_app.delivery.transactions", "producer %s did not stop", "x"))


def test_every_handler_a_record_reaches_gets_the_same_verdict_and_one_count() -> None:
    clock = Clock()
    repeats = RepeatedRecords(10.0, clock=clock)
    first, repeat = record(), record()
    assert repeats.filter(first) and repeats.filter(first)
    assert not repeats.filter(repeat) and not repeats.filter(repeat)
    clock.now += 10
    later = record()
    assert repeats.filter(later) and repeats.filter(later)
    assert later.getMessage().endswith("(1 more like this in the 10 s before, not written)")


def test_a_library_logging_preformatted_lines_makes_the_filter_forget_its_oldest_kinds() -> None:
    repeats = RepeatedRecords(10.0, clock=Clock(), max_kinds=8)
    for n in range(1000):
        assert repeats.filter(record("faust", f"line {n}", ()))
    assert len(repeats._kinds) == 8
    assert not repeats.filter(record("faust", "line 999", ()))
    assert repeats.filter(record("faust", "line 0", ()))  # forgotten: written again


def test_threads_logging_at_once_count_every_record_once() -> None:
    repeats = RepeatedRecords(3600.0)
    passed: list[bool] = []
    lock = threading.Lock()

    def log_many() -> None:
        verdicts = [repeats.filter(record()) for _ in range(2000)]
        with lock:
            passed.extend(verdicts)

    threads = [threading.Thread(target=log_many) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert passed.count(True) == 1
    kind = next(iter(repeats._kinds.values()))
    assert kind.left_out == 7999


def test_a_window_of_zero_leaves_the_handlers_as_they_are() -> None:
    logger = logging.getLogger("test_log_repeats")
    handler = logging.StreamHandler()
    logger.addHandler(handler)
    try:
        assert summarise_repeats(logger, 0) is None
        assert handler.filters == []
        repeats = summarise_repeats(logger, 10)
        assert handler.filters == [repeats]
    finally:
        logger.removeHandler(handler)
