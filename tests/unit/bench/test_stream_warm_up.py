"""The stream benchmark's warm-up: it writes every kind of output once, and leaves the timed events as they
would be without it (none of them is judged a copy of a warm-up event)."""

from __future__ import annotations

from bench.stream import WARM_UP_EVENTS, generate, warm_up_stream
from stream_app.dedupe import DedupeIndex
from stream_app.errors import InvalidEvent
from stream_app.schema import parse_event

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
