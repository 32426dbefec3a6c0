"""Near-duplicate detection: normalisation properties, verdicts, TTL, and state that survives a rebuild."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, MutableMapping
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from stream_app.dedupe import DedupeIndex, dedupe_key, is_typo_of, normalize_title

DAY = 86400.0
titles = st.text(
    alphabet=st.characters(categories=("L", "N", "Zs", "P")), min_size=1, max_size=60
).filter(lambda t: normalize_title(t) != "")


@given(titles)
def test_normalisation_is_idempotent(title: str) -> None:
    assert normalize_title(normalize_title(title)) == normalize_title(title)


@given(titles)
def test_normalisation_ignores_case_and_whitespace(title: str) -> None:
    # Letters whose upper case folds to another letter (Turkish dotless i) have no case-free form to compare.
    assume(title.upper().casefold() == title.casefold())
    assert normalize_title(title.upper()) == normalize_title(title.lower()) == normalize_title(title.casefold())
    assert normalize_title("  " + "   ".join(title.split()) + "\t") == normalize_title(title)


@given(titles, st.sampled_from([" | Reddit", " - Medium", " - YouTube", " | Towards Data Science"]))
def test_normalisation_ignores_source_decorations(title: str, decoration: str) -> None:
    assert normalize_title(title + decoration) == normalize_title(title)
    assert normalize_title("[P] " + title) == normalize_title(title)


def test_only_known_decorations_are_stripped() -> None:
    assert "chatbot" in normalize_title("Baymax - ChatBot").split()
    assert normalize_title("Baymax - ChatBot") != normalize_title("Baymax")


def test_the_key_is_short_fixed_size_and_order_insensitive() -> None:
    key = dedupe_key("Deep Learning for Vision")
    assert len(key) == 16 and int(key, 16) >= 0
    assert dedupe_key("vision: deep learning for") == key
    assert dedupe_key("Deep Learning for Language") != key


@pytest.mark.parametrize(
    ("word", "other", "typo"),
    [
        ("classification", "classificaton", True), ("detection", "detcetion", True), ("with", "wth", True),
        ("yolov5", "yolov7", False), ("bert2", "bert3", False), ("text", "token", False), ("cnn", "rnn", False),
        ("image", "video", False), ("gans", "gans", False),
    ],
)
def test_a_typo_is_one_edit_in_a_real_word_with_the_same_digits(word: str, other: str, typo: bool) -> None:
    assert is_typo_of(word, other) is typo


def index(store: MutableMapping[str, Any] | None = None, ttl: float = 30 * DAY) -> DedupeIndex:
    return DedupeIndex({} if store is None else store, ttl)


def test_exact_near_and_distinct_titles() -> None:
    dedupe = index()
    assert dedupe.check_and_add("1", "BERT for text classification", "Fine-tune BERT on reviews.", 0).match is None
    exact = dedupe.check_and_add("2", "[P] bert for TEXT classification | Reddit", None, 10)
    assert (exact.match, exact.duplicate_of, exact.similarity) == ("exact", "1", 1.0)
    near = dedupe.check_and_add("3", "BERT for text clasification", "Fine-tune BERT on reviews!", 20)
    assert (near.match, near.duplicate_of) == ("near", "1") and 0 < near.similarity < 1
    assert dedupe.check_and_add("4", "BERT for token classification", None, 30).match is None
    assert dedupe.check_and_add("5", "YOLOv5 object detection", None, 40).match is None
    assert dedupe.check_and_add("6", "YOLOv7 object detection", None, 50).match is None


def test_a_typo_with_an_unrelated_description_is_not_a_duplicate() -> None:
    dedupe = index()
    dedupe.check_and_add("1", "Awesome Graph Classification", "A collection of graph embedding papers.", 0)
    verdict = dedupe.check_and_add("2", "Awesome Graph Clasification", "Robot arm control in simulation.", 1)
    assert verdict.match is None


def test_a_replay_of_the_same_event_is_not_a_duplicate_of_itself() -> None:
    dedupe = index()
    assert dedupe.check_and_add("42", "Same event twice", None, 0).match is None
    assert dedupe.check_and_add("42", "Same event twice", None, 5).match is None
    assert dedupe.check_and_add("43", "Same event twice", None, 6).duplicate_of == "42"


def test_entries_expire_by_event_time() -> None:
    dedupe = index(ttl=DAY)
    dedupe.check_and_add("1", "Graph neural networks explained", None, 0)
    assert dedupe.check_and_add("2", "Graph neural networks explained", None, DAY - 1).match == "exact"
    later = dedupe.check_and_add("3", "Graph neural networks explaned", None, DAY + 1)
    assert later.match is None  # the original is older than the TTL, so this copy is new again
    assert dedupe.check_and_add("4", "Graph neural networks explaned", None, DAY + 2).duplicate_of == "3"


def test_expire_deletes_old_titles_and_their_postings() -> None:
    store: dict[str, Any] = {}
    dedupe = index(store, ttl=DAY)
    dedupe.check_and_add("1", "Old title from last month", None, 0)
    dedupe.check_and_add("2", "Fresh title from today", None, 10 * DAY)
    assert dedupe.expire(10 * DAY) == 1
    assert all(value[0] == "2" for key, value in store.items() if key.startswith("t:"))
    assert all(p[2] == 10 * DAY for key, value in store.items() if key.startswith("n:") for p in value)
    assert dedupe.check_and_add("3", "Old title from last month", None, 10 * DAY).match is None


def test_state_rebuilt_from_the_store_still_knows_old_titles() -> None:
    store: dict[str, Any] = {}
    index(store).check_and_add("1", "Transformers from scratch in PyTorch", "A tutorial.", 0)
    restored = json.loads(json.dumps(store))  # what a changelog replay hands back
    rebuilt = index(restored)
    assert rebuilt.check_and_add("2", "Transformers from scratch in PyTorch", None, 1).duplicate_of == "1"
    assert rebuilt.check_and_add("3", "Transformers from scrach in PyTorch", "A tutorial.", 2).duplicate_of == "1"


class RecordingStore(MutableMapping[str, Any]):
    """A dict that keeps a deep copy of every value assigned, to catch in-place mutation."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.assigned: dict[str, Any] = {}

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.data[key] = value
        self.assigned[key] = copy.deepcopy(value)

    def __delitem__(self, key: str) -> None:
        del self.data[key]
        del self.assigned[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)


def test_stored_values_are_never_mutated_in_place() -> None:
    store = RecordingStore()
    dedupe = index(store, ttl=DAY)
    for n, title in enumerate(["Deep learning for audio", "Deep learning for images", "Deep learning for text",
                               "Deep learning for audio", "Deep lerning for images"]):
        dedupe.check_and_add(str(n), title, None, n * 1000.0)
    dedupe.expire(DAY + 2500)
    assert store.data == store.assigned
    assert json.loads(json.dumps(store.data)) == store.data
