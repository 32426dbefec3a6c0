"""The one-edit search: which words are typos of which."""

from __future__ import annotations

import random

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from stream_app.dedupe import typo_source, word_hash
from stream_app.dedupe.typo import MAX_TYPO_WORD, ROMAN_NUMERAL, _any_word_edits, _ascii_letter_edits
from tests.unit.dedupe.helpers import index


@pytest.mark.parametrize(
    ("copy", "original", "typo"),
    [
        ("classificaton", "classification", True),
        ("detcetion", "detection", True),
        ("wth", "with", True),
        ("transformerss", "transformers", True),
        ("bret", "bert", True),
        ("civl", "civil", True),
        ("yolov7", "yolov5", False),
        ("bert3", "bert2", False),
        ("h100", "a100", False),  # a word with a digit names a model or version: A100 and H100 GPUs
        ("yolov5x", "yolov5n", False),
        ("resnext50", "resnet50", False),
        ("viii", "vii", False),  # part VII and part VIII
        ("vii", "viii", False),
        ("token", "text", False),
        ("video", "image", False),
        ("rnn", "cnn", False),
        ("segmentation", "classification", False),
        ("深度学习不是万能的", "深度学习是万能的", False),  # "is not" and "is" a panacea: Han is written without spaces
        ("动手学深度学习第十一章", "动手学深度学习第十章", False),  # chapter 11 and chapter 10
        ("ディープラーニングス", "ディープラーニング", False),  # kana
        ("กรอบนอก", "กรอบนอกก", False),  # Thai
        ("naïvte", "naïvet", True),  # not every letter outside ASCII is of such a script
    ],
)
def test_a_typo_is_one_edit_in_a_word_of_four_letters_without_digits_nor_a_numeral(
    copy: str, original: str, typo: bool
) -> None:
    assert typo_source(copy, word_hash(original)) == (original if typo else None)


@given(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyzéß", min_size=4, max_size=16),
    st.sampled_from(["substitution", "deletion", "insertion", "transposition"]),
    st.data(),
)
def test_every_single_letter_edit_of_a_word_is_traced_back_to_it(word: str, edit: str, data: st.DataObject) -> None:
    at = data.draw(st.sampled_from(range(len(word)) if edit != "insertion" else range(len(word) + 1)))
    new = data.draw(st.sampled_from(sorted(set("abcdefghijklmnopqrstuvwxyz") | set(word))))
    if edit == "substitution":
        copy = word[:at] + new + word[at + 1 :]
    elif edit == "deletion":
        copy = word[:at] + word[at + 1 :]
    elif edit == "insertion":
        copy = word[:at] + new + word[at:]
    else:
        assume(at + 1 < len(word))
        copy = word[:at] + word[at + 1] + word[at] + word[at + 2 :]
    assume(copy != word and not (ROMAN_NUMERAL.fullmatch(copy) and ROMAN_NUMERAL.fullmatch(word)))
    # A leading "a" added or dropped negates the word (symmetric, asymmetric): refused on purpose.
    assume(not (copy == "a" + word and word[:1] != "a") and not (word == "a" + copy and copy[:1] != "a"))
    source = typo_source(copy, word_hash(word))
    # The stored hash keeps 3 bytes of a word: another word one edit from the copy may share it (cvzd6 and dcvz6),
    # and is then as good an answer as far as the stored entry can tell.
    assert source == word or (source is not None and word_hash(source) == word_hash(word))


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz", max_size=14), st.integers(-255, 255))
def test_a_word_of_ascii_letters_takes_a_shorter_way_to_the_same_edits(word: str, shift: int) -> None:
    """Most words are ASCII letters only, and skip the look-up of letters outside Latin-1: the edits tried,
    and their order (the first whose hash matches wins), must be those of the general way. The code sums
    tried are the word's own shifted, small shifts (a swap, a letter for a close one) first."""
    code_sum = (sum(map(ord, word)) + shift) % 256
    assert list(_ascii_letter_edits(word, code_sum)) == list(_any_word_edits(word, code_sum))


def test_a_typo_is_found_in_a_word_of_up_to_the_longest_typo_word_and_not_in_a_longer_one() -> None:
    word = ("hyperparameteroptimisation" * 2)[:MAX_TYPO_WORD]
    typo = word[:10] + "x" + word[11:]
    assert typo_source(typo, word_hash(word)) == word
    longer = word + "s"
    assert typo_source(longer[:10] + "x" + longer[11:], word_hash(longer)) is None


def test_crafted_one_word_titles_sharing_every_bucket_are_each_new() -> None:
    """One word of 999 letters, its syllables shuffled around one hub letter: every title has the same letter pairs,
    so the same buckets, and every check tried the one-edit variants of each candidate, hundreds of thousands of
    them. Among so many, one whose 3-byte hash matched a stored word's was likely: 16 of 40 such titles, none one
    edit from another, were taken for copies."""
    rng = random.Random(7)
    syllables = [chr(0xAC00 + 11 * i) for i in range(499)]
    checked = index()
    dropped = []
    for n in range(40):
        rng.shuffle(syllables)
        title = "\uac01" + "".join(syllable + "\uac01" for syllable in syllables)
        verdict = checked.check_and_add(f"e{n}", title, None, 1_800_000_000.0 + n)
        if verdict.duplicate_of is not None:
            dropped.append(n)
    assert dropped == []
