"""Whether a look-alike title is a near copy: one typo away, with descriptions that agree.

A candidate (a stored title that shares an LSH bucket) is confirmed only if it is one typo away: the same
words but one, that one word a single edit (substitution, insertion, deletion, transposition) from its
counterpart (:func:`typo_source`) and neither a word with a digit nor a Roman numeral (YOLOv5n is not YOLOv5x),
title similarity of at least :data:`NEAR_TITLE_SIMILARITY`, descriptions that agree when both exist
(:data:`DESCRIPTION_SIMILARITY`), and both exist for a typo in a short word (:data:`DESCRIBED_TYPO_WORD`), and, the
title rebuilt with the counterpart, the stored title's buckets. A different word (text/token, image/video) is never
one edit, so it vetoes the match. :func:`confirm` decides.
"""

from __future__ import annotations

import functools
import re
import string
from collections import Counter
from collections.abc import Iterator
from typing import Final

from stream_app.dedupe.entries import TitleEntry, unpack_buckets
from stream_app.dedupe.signatures import (
    WORD_HASH_BYTES,
    Incoming,
    bucket_ids,
    jaccard,
    letter_pairs,
    signature_similarity,
    word_code_sum,
    word_digest,
)

NEAR_TITLE_SIMILARITY: Final = 0.6
"""Least Jaccard similarity of the letter pairs of two titles one typo apart; shorter titles fall below it
because in a word of a few letters one changed letter is as likely another word as a typo."""
DESCRIPTION_SIMILARITY: Final = 0.5
"""Least estimated Jaccard similarity of the word sets of two descriptions that confirms a near match."""
MIN_TYPO_WORD: Final = 4
"""Shortest word in which one changed letter is taken for a typo (CNN and RNN are different things); the
mistyped form may be a letter shorter (with/wth)."""
MAX_TYPO_WORD: Final = 40
"""Longest word in which one changed letter is taken for a typo. Finding a typo's source tries every one-edit
variant of the word, a number of variants that grows with the square of its length: a crafted title of one word of
thousands of letters held a check for over a second per candidate, and among so many variants one whose 3-byte
hash matched another stored word was likely (decision 0224). Few words of any language run longer; a copy with a
typo in one that does is not caught."""
DESCRIBED_TYPO_WORD: Final = 5
"""Longest word in which one changed letter is taken for a typo only when both items have descriptions and they
agree: in a short word it is as likely another name (BERT and BART, CLIP and BLIP, LLaMA and LLaVA)."""
_TYPO_LETTERS: Final = string.ascii_lowercase + "ßàáâãäåæçèéêëìíîïðñòóôõöøùúûüýþÿ"
"""Letters a typo may have replaced or dropped, besides those of the word itself: Latin-1 lower case."""


def _letters_by_code_sum(letters: set[str]) -> dict[int, list[str]]:
    """The letters a typo may use, by code point modulo 256: those of :data:`_TYPO_LETTERS` and ``letters``."""
    by_sum: dict[int, list[str]] = {}
    for letter in sorted(_TYPO_LETTER_SET | letters):
        by_sum.setdefault(ord(letter) % 256, []).append(letter)
    return by_sum


_TYPO_LETTER_SET: Final = frozenset(_TYPO_LETTERS)
_TYPO_LETTERS_BY_CODE_SUM: Final = _letters_by_code_sum(set())


def _one_edit_sources(word: str, code_sum: int) -> Iterator[str]:
    """The words a single deleted, transposed, replaced or inserted letter away from ``word`` (letters only) whose
    code points sum to ``code_sum`` (modulo 256): the sum leaves a few dozen to try rather than hundreds."""
    if word.isascii():
        return _ascii_letter_edits(word, code_sum)
    return _any_word_edits(word, code_sum)


def _any_word_edits(word: str, code_sum: int) -> Iterator[str]:
    """:func:`_one_edit_sources` of any word of letters."""
    shift = (code_sum - word_code_sum(word)) % 256
    extra = set(word) - _TYPO_LETTER_SET
    letters = _letters_by_code_sum(extra) if extra else _TYPO_LETTERS_BY_CODE_SUM
    if shift == 0:
        for i in range(len(word) - 1):
            yield word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    for i, old in enumerate(word):
        if (ord(old) + shift) % 256 == 0:
            yield word[:i] + word[i + 1 :]
        for new in letters.get((ord(old) + shift) % 256, ()):
            if new != old:
                yield word[:i] + new + word[i + 1 :]
    for new in letters.get(shift, ()):
        for i in range(len(word) + 1):
            yield word[:i] + new + word[i:]


def _ascii_letter_edits(word: str, code_sum: int) -> Iterator[str]:
    """:func:`_one_edit_sources` of a word of ASCII letters only (most words): no letter outside
    :data:`_TYPO_LETTERS`, so no look-up of its own letters; the same words as :func:`_any_word_edits`, in the
    same order, at half its cost."""
    shift = (code_sum - sum(word.encode())) % 256
    letters = _TYPO_LETTERS_BY_CODE_SUM
    if shift == 0:
        for i in range(len(word) - 1):
            yield word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    for i, old in enumerate(word):
        wanted = (ord(old) + shift) % 256
        if wanted == 0:
            yield word[:i] + word[i + 1 :]
        elif wanted in letters:
            for new in letters[wanted]:
                if new != old:
                    yield word[:i] + new + word[i + 1 :]
    for new in letters.get(shift, ()):
        for i in range(len(word) + 1):
            yield word[:i] + new + word[i:]


def typo_source(word: str, stored_hash: bytes) -> str | None:
    """The word one edit from ``word`` whose :func:`word_hash` is ``stored_hash``, if ``word`` is a typo of
    it: a word of 4+ letters and no digit, the two not both Roman numerals. A word with a digit names a model or a
    version (A100 and H100, YOLOv5n and YOLOv5x, ResNet50 and ResNeXt50), and so does a numeral (part VII and
    part VIII): one letter changed there is another thing, not a typo. Neither is a word of a script written
    without spaces (:data:`UNSPACED_SCRIPT`), nor a leading "a" added or dropped, which negates a word
    (synchronous and asynchronous, typical and atypical, symmetric and asymmetric)."""
    if not MIN_TYPO_WORD - 1 <= len(word) <= MAX_TYPO_WORD or not word.isalpha():
        return None
    if _unspaced(word):
        return None
    code_sum, digest = stored_hash[0], stored_hash[1:]
    for source in _one_edit_sources(word, code_sum):  # each has the stored code sum: compare the rest
        if word_digest(source.encode()) == digest:
            long_enough = max(len(source), len(word)) >= MIN_TYPO_WORD
            numerals = ROMAN_NUMERAL.fullmatch(source) is not None and ROMAN_NUMERAL.fullmatch(word) is not None
            # Not when the word begins with another "a" ("aaron"/"aron"): which "a" went is then any.
            negated = (source == "a" + word and word[:1] != "a") or (word == "a" + source and source[:1] != "a")
            return source if long_enough and not numerals and not negated and not _unspaced(source) else None
    return None


UNSPACED_SCRIPT: Final = re.compile(
    "[\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
    "\uf900-\ufaff\U00020000-\U0003134f]"
)
"""A letter of a script written without spaces between words (Thai, Lao, Myanmar, Khmer, Japanese kana, Han).
What :func:`~stream_app.dedupe.normalize.split_words` calls a word there is a phrase or a whole title, and one
character more or less is another statement or another chapter (深度学习是万能的, 深度学习不是万能的: "is" and "is
not" a panacea), not a typo."""


def _unspaced(word: str) -> bool:
    return not word.isascii() and UNSPACED_SCRIPT.search(word) is not None


ROMAN_NUMERAL: Final = re.compile(r"m{0,3}(?:cm|cd|d?c{0,3})(?:xc|xl|l?x{0,3})(?:ix|iv|v?i{0,3})")
"""A Roman numeral in lower case, 1 to 3999 (and the empty string, which no word is)."""


@functools.lru_cache(maxsize=8192)
def _stored_hashes(hashes: bytes) -> frozenset[bytes]:
    """The distinct word hashes of a stored title. Cached: the titles in busy buckets are compared again and
    again."""
    return frozenset([hashes[i : i + WORD_HASH_BYTES] for i in range(0, len(hashes), WORD_HASH_BYTES)])


def confirm(incoming: Incoming, entry: TitleEntry) -> float | None:
    """The title similarity if ``incoming`` is one typo from the stored entry and the descriptions agree."""
    if len(entry.hashes) != WORD_HASH_BYTES * len(incoming.hashes):
        return None  # a typo keeps the number of words
    stored = _stored_hashes(entry.hashes)
    if len(stored) == len(incoming.hashes) == len(incoming.distinct):  # no repeated word: sets will do
        added = incoming.distinct - stored
        if len(added) != 1:
            return None  # a typo replaces one word: here more differ
        dropped = stored - incoming.distinct
    else:
        counted = Counter(entry.hashes[i : i + WORD_HASH_BYTES] for i in range(0, len(entry.hashes), WORD_HASH_BYTES))
        added_counts = incoming.counts - counted
        if added_counts.total() != 1:
            return None
        added, dropped = set(added_counts), frozenset(counted - incoming.counts)
    new_word = incoming.words[incoming.hashes.index(next(iter(added)))]
    old_word = typo_source(new_word, next(iter(dropped)))
    if old_word is None:
        return None
    old_words = list(incoming.words)
    old_words[old_words.index(new_word)] = old_word
    similarity = jaccard(letter_pairs(old_words), letter_pairs(incoming.words))
    if similarity < NEAR_TITLE_SIMILARITY:
        return None
    described = signature_similarity(incoming.signature, entry.signature)
    if described is not None and described < DESCRIPTION_SIMILARITY:
        return None
    if described is None and max(len(old_word), len(new_word)) <= DESCRIBED_TYPO_WORD:
        return None
    # A stored word is kept as 3 bytes, so another word one edit away can share them (transform and learnõng):
    # the title rebuilt with the source word must also have the stored title's buckets, 96 more bits of it.
    if bucket_ids(old_words) != unpack_buckets(entry.buckets):
        return None
    return similarity
