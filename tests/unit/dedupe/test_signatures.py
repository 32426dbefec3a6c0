"""Signatures, bucket ids and word tags: what the near tier compares titles by."""

from __future__ import annotations

import random

import numpy as np
from hypothesis import assume, given
from hypothesis import strategies as st

from stream_app.dedupe import (
    BANDS,
    ROWS,
    DedupeIndex,
    bucket_ids,
    description_signature,
    digit_runs,
    title_signature,
    title_tag,
    title_words,
)
from stream_app.dedupe.normalize import canonical_form, form_and_numbers
from stream_app.dedupe.signatures import (
    _BAND_MULTIPLIER,
    _band_hash,
    _band_ids,
    _band_salt,
    _batch_band_ids,
    batch_buckets,
    batch_signatures,
    title_tags,
)
from stream_app.dedupe.signatures import _signatures as signatures
from tests.unit.dedupe.helpers import ORIGINAL, words


@given(st.lists(words, min_size=1, max_size=8))
def test_a_title_signature_is_that_of_the_set_of_its_words_letter_pairs(title: list[str]) -> None:
    signature = title_signature(title)
    assert signature == title_signature(sorted(set(title), reverse=True))
    # The least over the title's pairs is the least over each word's: no pair spans two words.
    assert signature == np.minimum.reduce([title_signature([word]) for word in title]).tolist()


def test_titles_of_another_number_of_words_never_share_a_bucket() -> None:
    """The same letter pairs, but no typo makes one title from the other: a candidate not worth reading."""
    title = title_words(ORIGINAL)
    assert title_signature(title) == title_signature([*title, title[0]])
    assert not set(bucket_ids(title)) & set(bucket_ids([*title, title[0]]))


@given(st.lists(st.integers(0, 2**32 - 1), min_size=BANDS * ROWS, max_size=BANDS * ROWS), st.lists(words, max_size=8))
def test_band_ids_are_each_band_s_rows_hashed_with_the_title_s_numbers_and_length(
    values: list[int], title: list[str]
) -> None:
    """``_band_ids`` is written out for its speed: it must give what the rule in its comment does, band by band."""
    salt = int.from_bytes(_band_hash(f"{digit_runs(title)}|{len(title)}".encode()), "big")
    expected = []
    for band in range(BANDS):
        rows = int.from_bytes(b"".join(value.to_bytes(4, "big") for value in values[band * ROWS : (band + 1) * ROWS]))
        expected.append(band << 24 | ((rows ^ salt) * _BAND_MULTIPLIER) % 2**128 >> 104)
    assert _band_ids(values, title) == expected


@given(
    st.lists(
        st.tuples(
            st.lists(st.integers(0, 2**32 - 1), min_size=BANDS * ROWS, max_size=BANDS * ROWS),
            st.lists(st.text(alphabet="ab12", min_size=1, max_size=4), max_size=6),
        ),
        max_size=12,
    )
)
def test_band_ids_of_a_batch_are_those_of_each_title(titles: list[tuple[list[int], list[str]]]) -> None:
    """The batch's band ids are the 128-bit products of ``_band_ids`` worked in 32-bit quarters: every carry between
    them counts, which values up to 2**32 - 1 and salts of all 64 bits reach."""
    values = np.array([title for title, _ in titles], np.uint64).reshape(len(titles), BANDS * ROWS)
    salts = np.array([_band_salt(digit_runs(words), len(words)) for _, words in titles], np.uint64)
    assert _batch_band_ids(values, salts).tolist() == [_band_ids(title, words) for title, words in titles]


def test_band_ids_of_a_batch_keep_every_carry() -> None:
    """Bands whose product with the multiplier has bits 32 to 103 all zero (a band is that product times the
    multiplier's inverse): a carry lost between any two quarters below bit 104 would borrow from the band id. Random
    values almost never show one."""
    inverse, quarter = pow(_BAND_MULTIPLIER, -1, 2**104), 2**32 - 1
    rng = random.Random(5)
    bands: list[int] = []
    while len(bands) < 32:
        band = rng.getrandbits(32) * inverse % 2**104
        if band < 2**96:  # three quarters, as a band's rows are
            bands.append(band)
    values = np.array([[band >> 64, band >> 32 & quarter, band & quarter] * BANDS for band in bands], np.uint64)
    expected = [[number << 24 | band * _BAND_MULTIPLIER % 2**128 >> 104 for number in range(BANDS)] for band in bands]
    assert _batch_band_ids(values, np.zeros(len(bands), np.uint64)).tolist() == expected


@given(st.lists(st.tuples(st.lists(words, min_size=1, max_size=8), st.none() | st.text(max_size=200)), max_size=12))
def test_a_batch_s_buckets_are_those_of_each_title_alone(batch: list[tuple[list[str], str | None]]) -> None:
    numbers = [form_and_numbers(title)[1] for title, _ in batch]
    assert batch_buckets(batch, numbers) == [
        (bucket_ids(title), description_signature(description)) for title, description in batch
    ]


@given(st.lists(st.text(alphabet="ab1٣½่", min_size=1, max_size=4), max_size=6))
def test_a_title_s_form_and_numbers_read_at_once_are_those_read_apart(title: list[str]) -> None:
    assert form_and_numbers(title) == (canonical_form(title), digit_runs(title))


def test_the_numbers_of_a_title_keep_their_parts_in_order_and_are_sorted_apart() -> None:
    assert digit_runs(["pytorch", "2", "1", "notes"]) == "2.1" != digit_runs(["pytorch", "1", "2", "notes"])
    assert digit_runs(["gpt", "4", "vs", "llama", "2"]) == "2 4" == digit_runs(["llama", "2", "vs", "gpt", "4"])
    assert digit_runs(["yolov5", "on", "a100", "and", "٣"]) == "a100 yolov5 ٣"
    assert digit_runs(["ข่าว", "กีฬา"]) == digit_runs(["object", "detection"]) == ""  # marks are no numbers


@given(st.lists(st.text(alphabet="ab1٣½", min_size=1, max_size=4), max_size=6), st.randoms(use_true_random=False))
def test_titles_with_the_same_exact_key_have_the_same_numbers(title: list[str], rng: random.Random) -> None:
    """The near tier's buckets and the exact tier's key read a title's numbers alike: reordered words that keep the
    key keep the numbers, and those that change the numbers change the key."""
    shuffled = list(title)
    rng.shuffle(shuffled)
    assert (canonical_form(title) == canonical_form(shuffled)) == (digit_runs(title) == digit_runs(shuffled))


@given(st.lists(words, min_size=1, max_size=8), st.none() | st.text(max_size=200))
def test_both_signatures_made_at_once_are_those_made_apart(title: list[str], description: str | None) -> None:
    assert signatures(title, description) == (title_signature(title), description_signature(description))


@given(st.lists(st.tuples(st.lists(words, min_size=1, max_size=8), st.none() | st.text(max_size=200)), max_size=12))
def test_a_batch_signed_at_once_is_signed_as_each_title_alone(batch: list[tuple[list[str], str | None]]) -> None:
    """No letter pair spans two titles of a batch, and a title without description words has no signature, even
    between two that have one."""
    assert batch_signatures(batch) == [signatures(title, description) for title, description in batch]


def test_a_batch_of_titles_outside_the_basic_plane_is_signed_as_each_alone() -> None:
    batch = [(["\U0001f600ab", "cd"], None), (["x"], "some words \U0001f600 here"), (["\U0001d49c"], "")]
    assert batch_signatures(batch) == [signatures(title, description) for title, description in batch]


@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=200))
def test_an_ascii_description_is_signed_as_any_other(description: str) -> None:
    """ASCII descriptions take a shorter way to their words; a dash that is not ASCII sends one the long way."""
    assert description_signature(description) == description_signature(description + " \u2014")


@given(
    st.text(alphabet="abcdefgh \u00e9\u3042", min_size=1, max_size=200),
    st.lists(st.tuples(st.integers(0, 200), st.sampled_from(["\xad", "\u200b", "&shy;"])), min_size=1),
)
def test_invisible_characters_in_a_description_change_no_signature(
    description: str, hidden: list[tuple[int, str]]
) -> None:
    """Scraped descriptions keep soft hyphens and zero-width spaces inside words, as titles do: a repost that reads
    the same has the same signature."""
    assume("&" not in description)  # "&" before an inserted "shy;" would make another reference
    shown = description
    for at, character in sorted(hidden, reverse=True):  # each at its place in the description, none in another
        at = min(at, len(description))
        shown = shown[:at] + character + shown[at:]
    assert description_signature(shown) == description_signature(description)


def test_a_repost_whose_description_has_soft_hyphens_is_a_near_copy() -> None:
    description = "We train message passing networks on molecular graphs and compare them with fingerprints"
    hyphenated = " ".join(word[:3] + "&shy;" + word[3:] for word in description.split())
    index = DedupeIndex({}, 30 * 86400)
    index.check_and_add("1", "Graph neural networks for molecular property prediction", description, 1.8e9)
    verdict = index.check_and_add("2", "Graph neural netwroks for molecular property prediction", hyphenated, 1.8e9)
    assert verdict.duplicate_of == "1" and verdict.match == "near"


@given(st.lists(st.lists(st.binary(min_size=3, max_size=3), max_size=9).map(b"".join), max_size=20))
def test_the_tags_of_many_titles_at_once_are_those_of_each(titles: list[bytes]) -> None:
    assert title_tags(titles).tolist() == [title_tag(hashes) for hashes in titles]
