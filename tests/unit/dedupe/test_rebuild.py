"""State rebuilt from the store: old titles still known, buckets as they were."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.dedupe import BUCKET_LIMIT, entry_fields, index_buckets, rebuild
from stream_app.dedupe.entries import CopyEntry
from stream_app.dedupe.normalize import REF_BYTES, ref_of_digest
from stream_app.dedupe.rebuild import ref_order
from stream_app.title_index.store import RefStore
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


@pytest.mark.parametrize("chunk", [rebuild._CHUNK, 3])
def test_a_new_title_is_one_store_write_and_its_buckets_are_rebuilt_from_the_store(
    chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rebuild, "_CHUNK", chunk)  # the rebuild reads the entries' tags this many at a time
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


@settings(max_examples=200)
@given(st.lists(st.binary(min_size=REF_BYTES, max_size=REF_BYTES), min_size=1, max_size=50, unique=True))
def test_titles_of_one_second_are_rebuilt_in_the_order_of_their_refs_as_text(digests: list[bytes]) -> None:
    # Entry times are whole seconds, so titles stored within one second tie on time: the rebuild orders them by
    # ref, as text, whatever their digests' order as numbers.
    numbers = np.array([int.from_bytes(digest, "big") for digest in digests], np.uint64)
    by_key = np.argsort(ref_order(numbers), kind="stable").tolist()
    refs = [ref_of_digest(digest) for digest in digests]
    assert by_key == sorted(range(len(digests)), key=refs.__getitem__)
    assert len(set(ref_order(numbers).tolist())) == len(digests)


@pytest.mark.parametrize("store_kind", ["refs as text", "refs as numbers"])
def test_entries_of_no_known_shape_are_counted_and_deleted_at_the_next_expiry(store_kind: str) -> None:
    # The title index's store hands its entries out by ref number (NumberedStore); any other mapping by text.
    store: MutableMapping[str, Any] = {} if store_kind == "refs as text" else RefStore()
    index(store).check_and_add("1", ORIGINAL, DESCRIPTION, 0)
    kept = dict(store.items())
    junk = ref_of_digest(bytes(range(REF_BYTES)))
    store[junk] = b"\x00not an entry"
    if store_kind == "refs as text":
        store["not a ref"] = b"anything"
    rebuilt = index(store)
    assert rebuilt.entries == len(store)
    rebuilt.expire(1)
    assert dict(store.items()) == kept and rebuilt.entries == 1
    assert rebuilt.check_and_add("2", ORIGINAL, None, 2).duplicate_of == "1"


def test_a_store_that_holds_near_copies_before_titles_is_rebuilt_with_the_titles_buckets() -> None:
    """A store is read in its own order (the title index's by digest): a near copy may come first."""
    store: dict[str, Any] = {}
    dedupe = index(store)
    dedupe.check_and_add("1", ORIGINAL, DESCRIPTION, 0)
    assert dedupe.check_and_add("2", ORIGINAL.replace("prediction", "predicton"), DESCRIPTION, 1).match == "near"
    copies_first = dict(sorted(store.items(), key=lambda item: not isinstance(entry_fields(item[1]), CopyEntry)))
    assert isinstance(entry_fields(next(iter(copies_first.values()))), CopyEntry)
    assert index_buckets(copies_first) == dedupe.buckets
    rebuilt = index(copies_first)
    assert rebuilt.check_and_add("3", ORIGINAL.replace("property", "propety"), DESCRIPTION, 2).duplicate_of == "1"


def test_refs_that_differ_only_in_their_last_characters_are_ordered_as_text() -> None:
    # Random digests almost never share their first 50 bits: the rank of the last characters goes untested by them.
    digests = [bytes([7] * 6) + bytes([high, low]) for high in range(0, 256, 15) for low in range(0, 256, 13)]
    numbers = np.array([int.from_bytes(digest, "big") for digest in digests], np.uint64)
    refs = [ref_of_digest(digest) for digest in digests]
    assert np.argsort(ref_order(numbers), kind="stable").tolist() == sorted(range(len(digests)), key=refs.__getitem__)
    assert len(set(ref_order(numbers).tolist())) == len(digests)
