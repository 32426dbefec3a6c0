"""State rebuilt from the store: old titles still known, buckets as they were."""

from __future__ import annotations

from typing import Any

from stream_app.dedupe import BUCKET_LIMIT, index_buckets
from tests.unit.dedupe.helpers import DAY, DESCRIPTION, ORIGINAL, RecordingStore, index


def test_state_rebuilt_from_the_store_still_knows_old_titles() -> None:
    store: dict[str, Any] = {}
    index(store).check_and_add("1", ORIGINAL, DESCRIPTION, 0)
    restored = {key: bytes(bytearray(value)) for key, value in store.items()}  # a changelog replay's fresh copies
    assert restored == store
    rebuilt = index(restored)
    assert rebuilt.check_and_add("2", ORIGINAL + " - YouTube", None, 1).duplicate_of == "1"
    assert rebuilt.check_and_add("3", ORIGINAL.replace("prediction", "predicton"), DESCRIPTION, 2).duplicate_of == "1"
    assert rebuilt.check_and_add("1", ORIGINAL, DESCRIPTION, 3).match is None


def test_a_new_title_is_one_store_write_and_its_buckets_are_rebuilt_from_the_store() -> None:
    store = RecordingStore()
    dedupe = index(store, ttl=DAY)
    # Look-alike titles (distinct words, no typo) crowd the same buckets past their cap.
    words = ["audio", "image", "text", "video", "graph", "speech", "tabular", "sensor", "satellite", "medical"]
    words += ["radar", "sonar", "lidar", "music", "molecule", "protein", "weather", "traffic", "network", "code"]
    for n, word in enumerate(words):
        assert dedupe.check_and_add(str(n), f"Deep learning for {word} classification", None, n).match is None
    assert store.writes == len(words)
    assert max(len(refs) for refs in dedupe.buckets.as_dict().values()) == BUCKET_LIMIT
    assert index_buckets(dict(store.data)) == dedupe.buckets
