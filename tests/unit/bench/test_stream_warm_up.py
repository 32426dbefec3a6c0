"""The stream benchmark's warm-up: it writes every kind of output past the first offset-index entry of its
partition, and leaves the timed events as they would be without it (none of them is judged a copy of a warm-up
event). A latency run longer than its stream is refused."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from bench.stream import BROKER_INDEX_INTERVAL_BYTES, WARM_UP_EVENTS, generate, warm_up_stream
from bench.stream import main as stream_main
from stream_app.dedupe import DedupeIndex, DedupeVerdict
from stream_app.delivery.publish import encode
from stream_app.errors import InvalidEvent
from stream_app.pipeline import Admitted, Output
from stream_app.schema import parse_event
from tests.unit.test_pipeline import make_pipeline

TTL = 30 * 86400.0


def judged(index: DedupeIndex, messages: list[tuple[bytes | None, bytes]]) -> dict[str, str | None]:
    """Each good message's id and the id of the event it copies (None if it is new), checked in order."""
    verdicts: dict[str, str | None] = {}
    for n, (_, value) in enumerate(messages):
        try:
            event = parse_event(value)
        except InvalidEvent:
            continue
        verdict = index.check_and_add(str(event.id), event.title, event.description, float(n))
        verdicts[str(event.id)] = verdict.duplicate_of
    return verdicts


def test_the_warm_up_has_malformed_messages_copies_and_new_titles() -> None:
    warm_up = warm_up_stream(WARM_UP_EVENTS, seed=5)
    verdicts = judged(DedupeIndex({}, TTL), warm_up)

    assert len(warm_up) == WARM_UP_EVENTS
    assert len(verdicts) < len(warm_up)  # some are dead-lettered
    assert any(original is not None for original in verdicts.values())
    assert any(original is None for original in verdicts.values())


def test_no_timed_event_is_judged_a_copy_of_a_warm_up_event() -> None:
    timed, warm_up = generate(3000, seed=5), warm_up_stream(WARM_UP_EVENTS, seed=5)
    index = DedupeIndex({}, TTL)
    judged(index, warm_up)
    after_warm_up = judged(index, timed)

    assert after_warm_up == judged(DedupeIndex({}, TTL), timed)
    keys = {key for key, _ in timed if key is not None}
    assert not keys & {key for key, _ in warm_up if key is not None}


def test_the_warm_up_writes_every_output_past_its_first_offset_index_entry(trained_model_dir: Path) -> None:
    """The broker writes a partition's first offset-index entry once it holds more than index.interval.bytes, and
    that write can stall for ~100 ms (decision 0037): the warm-up must get every output there, the dead-letter
    partition (written least) included. Record values alone are counted, less than the broker stores."""
    pipeline, _ = make_pipeline(trained_model_dir)
    index = DedupeIndex({}, TTL)
    outputs: list[Output] = []
    admitted: list[Admitted] = []
    for offset, (_, value) in enumerate(warm_up_stream(WARM_UP_EVENTS, seed=5)):
        item = pipeline.admit(value, topic="content", partition=0, offset=offset, event_time=1000.0 + offset)
        if isinstance(item, Admitted):
            admitted.append(item)
        else:
            outputs.append(item)

    def check(item: Admitted) -> DedupeVerdict:
        return index.check_and_add(str(item.event.id), item.event.title, item.event.description, item.event_time)

    outputs += pipeline.route_batch(admitted, check)
    written = Counter[str]()
    for output in outputs:
        written[output.kind] += len(encode(output.record))

    assert set(written) == {"tagged", "review", "duplicate", "deadletter"}
    assert min(written.values()) > BROKER_INDEX_INTERVAL_BYTES, written


def test_a_latency_run_longer_than_its_stream_is_refused_before_anything_starts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # 3,000 events at 1,000/s last 3 s, not the 15 asked for: refused before the broker is touched.
    with pytest.raises(SystemExit) as refused:
        stream_main(["--events", "3000", "--rates", "300,1000", "--rate-seconds", "15", "--contenders", "ours"])
    assert refused.value.code == 2
    assert "lasts less than --rate-seconds 15 at 1000 events/s" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # the naive peer's slice counts too
        stream_main(["--events", "30000", "--naive-events", "10000", "--rate-seconds", "20"])
