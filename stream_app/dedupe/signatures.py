"""What a title is compared by in the near tier: MinHash signatures, LSH bucket ids, word hashes and tags.

MinHash over the letter pairs of each word, split into LSH bands and hashed with the title's numbers and number
of words, gives the buckets in which to look for stored titles that look alike and could be one typo away
(:func:`bucket_ids`); a 16-bit tag of each title's words (:func:`title_tag`), kept beside its buckets, passes
over most of those that differ in more than one word without reading their entries. A description is signed
by a MinHash of its words (:func:`description_signature`), compared by :func:`signature_similarity`.

No hash depends on the process (no salted ``hash()``), so two processes, or one process before and after a
restart, agree on every bucket: word hashes and band salts are BLAKE2b with a fixed personalisation string; the
MinHash functions are multiply-add-shift functions of 32-bit keys (a letter pair's two code points, a
description word's CRC-32) whose constants are drawn from BLAKE2b, computed with numpy for all of a title's
pairs at once.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import zlib
from collections import Counter
from collections.abc import Sequence
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from stream_app.dedupe.normalize import blake2b_function, folded_text, number_runs, split_words

BANDS: Final = 4
ROWS: Final = 3
"""LSH layout: BANDS buckets per title, each keyed by ROWS MinHash values. One typo in a title of 20+
characters leaves 75-90% of its letter pairs in common, and titles that share 80% (90%) of them share a
bucket with probability 0.94 (0.99)."""
DESCRIPTION_CHARS: Final = 1000
"""Only the start of a description is signed: it tells a repost from another item and bounds the cost."""
DESCRIPTION_FOLDED_CHARS: Final = 2 * DESCRIPTION_CHARS
"""Most of that start's folded text that is signed: NFKC makes up to 18 characters of one (decision 0224)."""

DESCRIPTION_HASHES: Final = 12
"""MinHash values in a description's signature."""
WORD_HASH_BYTES: Final = 3
"""Bytes of a :func:`word_hash`."""

word_digest: Final = blake2b_function(WORD_HASH_BYTES - 1, b"tagger-word")
"""The BLAKE2b part of a :func:`word_hash`, of a word's UTF-8 bytes."""
_band_hash: Final = blake2b_function(8, b"tagger-band")
_BAND_MULTIPLIER: Final = int.from_bytes(_band_hash(b"\x00") + _band_hash(b"\x01"), "big") | 1  # odd, 128 bits


def _hash_family(person: bytes, count: int) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
    """``count`` multiply-add-shift hash functions of 32-bit keys, ``(a * x + b) mod 2**64 >> 32``, their
    multipliers (odd) and addends drawn from BLAKE2b: the same in every process."""
    blocks = range(count // 4 + 1)  # 16 bytes a function, 64 a block
    drawn = b"".join(hashlib.blake2b(bytes([n]), digest_size=64, person=person).digest() for n in blocks)
    values = np.frombuffer(drawn[: 16 * count], "<u8")
    return values[:count] | np.uint64(1), values[count : 2 * count].copy()


_TITLE_FAMILY: Final = _hash_family(b"tagger-title", BANDS * ROWS)
_DESCRIPTION_FAMILY: Final = _hash_family(b"tagger-text", DESCRIPTION_HASHES)
_BOTH_FAMILIES: Final = (
    np.concatenate((_TITLE_FAMILY[0], _DESCRIPTION_FAMILY[0])),
    np.concatenate((_TITLE_FAMILY[1], _DESCRIPTION_FAMILY[1])),
)


def _hashed(keys: npt.NDArray[np.uint32], family: tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]) -> Any:
    """Each hash function of ``family`` (a row) of each of ``keys`` (a column), 32-bit values in uint64."""
    multipliers, addends = family
    # Keys made uint64 first (numpy's mixed-type loop costs twice as much), one row per function: the minima are
    # then taken along contiguous rows.
    hashed = np.multiply.outer(multipliers, keys.astype(np.uint64))
    hashed += addends[:, None]
    hashed >>= np.uint64(32)
    return hashed


def _letter_pair_keys(words: list[str]) -> npt.NDArray[np.uint32]:
    """A key for each of a title's :func:`letter_pairs` (repeats included): its two UTF-16 code units side by
    side (a letter outside the Basic Multilingual Plane counts as its two surrogates), scrambled."""
    return _pair_keys(_pair_text(words))


def _pair_text(words: list[str]) -> bytes:
    """A title's words as the UTF-16 text its letter pairs are read from."""
    return f" {' '.join(words)} ".encode("utf-16-le")  # " a b " has the pairs of " a " and " b ", and no other


def _pair_keys(text: bytes) -> npt.NDArray[np.uint32]:
    """The scrambled key of each two adjacent UTF-16 code units of ``text``."""
    # Every 4 bytes from every second byte: each unit with the next, read in place.
    pairs = np.ndarray((len(text) // 2 - 1,), "<u4", text, 0, (2,))
    # Pairs that share a letter have keys a few bits apart; multiply-shift hashes of such keys are not
    # independent enough for MinHash, so a bijection spreads them first.
    keys: npt.NDArray[np.uint32] = pairs * np.uint32(0x9E3779B1)
    keys ^= keys >> np.uint32(15)
    return keys


def _description_keys(description: str | None) -> list[int]:
    """A key for each word of (the start of) a description, repeats included (a MinHash ignores them): its
    CRC-32."""
    if not description:
        return []
    text = folded_text(description[:DESCRIPTION_CHARS])[:DESCRIPTION_FOLDED_CHARS]
    if text.isascii():  # in its bytes, runs of [a-z0-9] split apart in C: no word is encoded on its own
        return list(map(zlib.crc32, text.encode().translate(_ASCII_WORD_BYTES).split()))
    return [zlib.crc32(word.encode()) for word in split_words(text)]


_ASCII_WORD_BYTES: Final = bytes(c if c in b"abcdefghijklmnopqrstuvwxyz0123456789" else 0x20 for c in range(256))
"""Each byte as itself if it is a lower-case ASCII letter or digit, else as a space: in lower-case ASCII, the
:func:`~stream_app.dedupe.normalize.split_words` are what is left between spaces."""


def _nibbles(values: list[int]) -> bytes:
    """The low 4 bits of each value, two to a byte (an even number of values)."""
    return bytes.fromhex("".join([_HEX_DIGITS[value & 0x0F] for value in values]))


_HEX_DIGITS: Final = "0123456789abcdef"


def title_signature(words: list[str]) -> list[int]:
    """The MinHash values of a title's :func:`letter_pairs`: the least of each of 12 hash functions over them."""
    values: list[int] = np.minimum.reduce(_hashed(_letter_pair_keys(words), _TITLE_FAMILY), axis=1).tolist()
    return values


def description_signature(description: str | None) -> bytes:
    """A MinHash signature of a description's words: 12 values of 4 bits, two per byte; empty if it has none.
    4 bits suffice: an unrelated pair agrees on 1 in 16 values by chance, far from the 50% a match needs."""
    keys = _description_keys(description)
    if not keys:
        return b""
    return _nibbles(np.minimum.reduce(_hashed(np.array(keys, np.uint32), _DESCRIPTION_FAMILY), axis=1).tolist())


def _signatures(words: list[str], description: str | None) -> tuple[list[int], bytes]:
    """:func:`title_signature` and :func:`description_signature` at once: one pass of numpy over the keys of
    both (each hash function applied to both kinds of key, a waste numpy's per-call cost outweighs). For one
    title this beats :func:`batch_signatures`, which takes two passes to keep a batch's arrays small."""
    pairs, text_keys = _letter_pair_keys(words), _description_keys(description)
    if not text_keys:
        return np.minimum.reduce(_hashed(pairs, _TITLE_FAMILY), axis=1).tolist(), b""
    keys = np.concatenate((pairs, np.array(text_keys, np.uint32)))
    title, text = np.minimum.reduceat(_hashed(keys, _BOTH_FAMILIES), [0, len(pairs)], axis=1).T.tolist()
    return title[: BANDS * ROWS], _nibbles(text[BANDS * ROWS :])


_NO_PAIR: Final = np.uint64(1 << 32)
"""Above every 32-bit hash value: a row of it never wins a minimum."""


def batch_signatures(titles: Sequence[tuple[list[str], str | None]]) -> list[tuple[list[int], bytes]]:
    """:func:`_signatures` of many titles (their words, their description) at once, the same values: numpy's
    per-call cost, most of a single title's, is paid once for the batch. Every title needs at least one word."""
    values, texts = _batch_minima(titles)
    title_values: list[list[int]] = values.tolist()
    return list(zip(title_values, texts, strict=True))


def _batch_minima(titles: Sequence[tuple[list[str], str | None]]) -> tuple[npt.NDArray[np.uint64], list[bytes]]:
    """:func:`batch_signatures` as made: the titles' MinHash values in rows, and the descriptions' signatures."""
    if not titles:
        return np.zeros((0, BANDS * ROWS), np.uint64), []
    texts = [_pair_text(words) for words, _ in titles]
    ends = np.cumsum([len(text) // 2 for text in texts])
    hashed = _hashed(_pair_keys(b"".join(texts)), _TITLE_FAMILY)
    hashed[:, ends[:-1] - 1] = _NO_PAIR  # the pair made of one title's last space and the next one's first
    starts = np.concatenate(([0], ends[:-1]))
    title_values = np.minimum.reduceat(hashed, starts, axis=1).T
    text_keys = [_description_keys(description) for _, description in titles]
    described = [index for index, found in enumerate(text_keys) if found]
    signed = [b""] * len(titles)
    if described:
        counts = [len(text_keys[index]) for index in described]
        flat = np.fromiter(itertools.chain.from_iterable(text_keys[index] for index in described), np.uint32)
        firsts = np.cumsum([0, *counts[:-1]])
        minima = np.minimum.reduceat(_hashed(flat, _DESCRIPTION_FAMILY), firsts, axis=1).T.tolist()
        for index, values in zip(described, minima, strict=True):
            signed[index] = _nibbles(values)
    return title_values, signed


@functools.lru_cache(maxsize=16384)  # title words recur from title to title
def _title_word_hash(word: str) -> bytes:
    return word_hash(word)


def letter_pairs(words: set[str] | list[str]) -> set[str]:
    """A title's shingles: the letter pairs of each word padded with spaces, so word order does not count."""
    pairs: set[str] = set()
    for word in words:
        padded = f" {word} "
        pairs.update(padded[i : i + 2] for i in range(len(padded) - 1))
    return pairs


def jaccard(left: set[str], right: set[str]) -> float:
    """Jaccard similarity of two sets (1.0 for two empty sets)."""
    union = len(left | right)
    return len(left & right) / union if union else 1.0


def digit_runs(words: list[str]) -> str:
    """The numbers in a title's words (:func:`~stream_app.dedupe.normalize.number_runs`, repeats included), sorted: a
    typo never changes them, so two titles whose numbers differ are never near copies (YOLOv5 and YOLOv7, part 1 and
    part 2, PyTorch 2.1 and 1.2)."""
    if all(word.isalpha() for word in words):  # no letter is a digit: most titles skip the search
        return ""
    return " ".join(sorted(number_runs(words)))


def bucket_ids(words: list[str]) -> list[int]:
    """The LSH buckets of a title's words (in order, repeats included): for each band, the band number in the
    high bits above a 24-bit hash of that band's MinHash rows, the title's :func:`digit_runs` and its number of
    words.

    Only titles with the same numbers and as many words can be one typo apart, so only those share buckets: a
    series of titles one number apart (a weekly digest, numbered releases) or look-alikes of other lengths
    would otherwise fill the buckets with candidates that can never be confirmed, each costing a store read
    and a comparison, and push out titles that could."""
    return _band_ids(title_signature(words), words)


def _band_ids(values: list[int], words: list[str]) -> list[int]:
    # The MinHash values are uniform already: a band's rows, side by side in one 96-bit number with the title's
    # numbers and length mixed in, times an odd 128-bit constant, give a well-mixed bucket in the high bits
    # (multiply-shift hashing) for a fraction of a hash call per band. Written out for BANDS 4 and ROWS 3 (a
    # loop over them costs twice as much); a test holds it to the loop.
    salt, multiplier, v = _band_salt(digit_runs(words), len(words)), _BAND_MULTIPLIER, values
    return [
        ((v[0] << 64 | v[1] << 32 | v[2]) ^ salt) * multiplier >> 104 & 0xFFFFFF,
        1 << 24 | ((v[3] << 64 | v[4] << 32 | v[5]) ^ salt) * multiplier >> 104 & 0xFFFFFF,
        2 << 24 | ((v[6] << 64 | v[7] << 32 | v[8]) ^ salt) * multiplier >> 104 & 0xFFFFFF,
        3 << 24 | ((v[9] << 64 | v[10] << 32 | v[11]) ^ salt) * multiplier >> 104 & 0xFFFFFF,
    ]


@functools.lru_cache(maxsize=1024)  # most titles have no numbers and a few words
def _band_salt(digits: str, words: int) -> int:
    return int.from_bytes(_band_hash(f"{digits}|{words}".encode()), "big")


def title_tags(titles: list[bytes]) -> npt.NDArray[np.uint16]:
    """The :func:`title_tag` of each of many titles' packed word hashes, at once."""
    lasts = np.frombuffer(b"".join(titles), np.uint8)[WORD_HASH_BYTES - 1 :: WORD_HASH_BYTES]
    bits = np.left_shift(np.uint16(1), lasts & np.uint8(0x0F), dtype=np.uint16)
    words = np.array([len(hashes) // WORD_HASH_BYTES for hashes in titles], np.int64)
    starts = np.concatenate(([0], np.cumsum(words)[:-1])) if len(words) else words
    tags = np.zeros(len(titles), np.uint16)
    some = words > 0  # a title of more than 63 words keeps no hashes, and has no tag
    if some.any():
        tags[some] = np.bitwise_or.reduceat(bits, starts[some]) if len(bits) else 0
    return tags


def title_tag(word_hashes: bytes) -> int:
    """16 bits that tell most titles more than one word apart without reading them: one bit for each of the
    :func:`word_hash` values packed in ``word_hashes``, chosen by its last 4 bits. Two titles one replaced word
    apart differ in at most one bit each way."""
    tag = 0
    for last in word_hashes[WORD_HASH_BYTES - 1 :: WORD_HASH_BYTES]:
        tag |= 1 << (last & 0x0F)
    return tag


def word_code_sum(word: str) -> int:
    """The sum of a word's code points modulo 256, the first byte of its :func:`word_hash`."""
    return sum(map(ord, word)) % 256


def word_hash(word: str) -> bytes:
    """The 3 bytes a stored title keeps of each word: the sum of its code points modulo 256, which tells a
    typo search what letter changed, then a 2-byte BLAKE2b hash."""
    return bytes([word_code_sum(word)]) + word_digest(word.encode())


def signature_similarity(left: bytes, right: bytes) -> float | None:
    """Estimated word Jaccard of two described items, or None when either has no description."""
    if not left or not right:
        return None
    same = sum((a >> 4 == b >> 4) + (a & 0x0F == b & 0x0F) for a, b in zip(left, right, strict=True))
    return same / (2 * len(left))


class Incoming:
    """A title being checked, as the near tier compares it; what only a confirmation needs is made on demand."""

    def __init__(
        self, words: list[str], description: str | None, bucketed: tuple[list[int], bytes] | None = None
    ) -> None:
        self.words = words
        """Its words in order, repeats included: a typo in one of two "learning"s replaces one of them."""
        self.hashes = [_title_word_hash(word) for word in words]
        """The :func:`word_hash` of each word."""
        self.tag = 0
        """Its :func:`title_tag`."""
        for digest in self.hashes:
            self.tag |= 1 << (digest[-1] & 0x0F)
        self._description = description
        self._bucketed = bucketed
        """Its :func:`bucket_ids` and its description's signature, if made already (from
        :func:`batch_buckets`)."""

    @functools.cached_property
    def distinct(self) -> set[bytes]:
        """Its distinct word hashes."""
        return set(self.hashes)

    @functools.cached_property
    def counts(self) -> Counter[bytes]:
        """How often each word hash occurs."""
        return Counter(self.hashes)

    @functools.cached_property
    def signature(self) -> bytes:
        """The :func:`description_signature` of its description (made with the title's, see :meth:`buckets`)."""
        return description_signature(self._description)

    def buckets(self) -> list[int]:
        """Its :func:`bucket_ids`; its :attr:`signature` is made on the way."""
        if self._bucketed is not None:
            buckets, self.signature = self._bucketed
            return buckets
        title, self.signature = _signatures(self.words, self._description)
        return _band_ids(title, self.words)


def batch_buckets(
    titles: Sequence[tuple[list[str], str | None]], numbers: Sequence[str]
) -> list[tuple[list[int], bytes]]:
    """The :func:`bucket_ids` and :func:`description_signature` of each of many titles (their words, their
    description), signed at once (:func:`batch_signatures`); ``numbers`` holds each title's :func:`digit_runs`,
    which its caller has read already (:func:`~stream_app.dedupe.normalize.form_and_numbers`). Every title needs
    at least one word."""
    values, texts = _batch_minima(titles)
    salts = np.fromiter(
        (_band_salt(digits, len(words)) for (words, _), digits in zip(titles, numbers, strict=True)),
        np.uint64,
        len(titles),
    )
    buckets: list[list[int]] = _batch_band_ids(values, salts).tolist()
    return list(zip(buckets, texts, strict=True))


_LOW_HALF: Final = np.uint64(0xFFFFFFFF)
_HALF: Final = np.uint64(32)
_MULTIPLIER_QUARTERS: Final = [np.uint64(_BAND_MULTIPLIER >> 32 * n & 0xFFFFFFFF) for n in range(4)]
_BAND_NUMBERS: Final = np.arange(BANDS, dtype=np.uint64) << np.uint64(24)


def _batch_band_ids(values: npt.NDArray[np.uint64], salts: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """:func:`_band_ids` of many titles at once: ``values`` holds each title's MinHash values in a row, ``salts`` its
    :func:`_band_salt`; one row of band ids a title."""
    # The 96-bit band times the 128-bit multiplier, modulo 2**128, in 32-bit quarters held in uint64 (numpy has
    # no wider integer): only the top quarter is kept, so the partial products that land above it are left out
    # and those that land in it may wrap; the ones below pass their carries up.
    rows = values.reshape(len(values), BANDS, ROWS)
    high = rows[:, :, 0]
    middle = rows[:, :, 1] ^ (salts >> _HALF)[:, None]
    low = rows[:, :, 2] ^ (salts & _LOW_HALF)[:, None]
    m0, m1, m2, m3 = _MULTIPLIER_QUARTERS
    low_m0, low_m1, middle_m0 = low * m0, low * m1, middle * m0
    low_m2, middle_m1, high_m0 = low * m2, middle * m1, high * m0
    second = (low_m0 >> _HALF) + (low_m1 & _LOW_HALF) + (middle_m0 & _LOW_HALF)
    third = (second >> _HALF) + (low_m1 >> _HALF) + (middle_m0 >> _HALF)
    third += (low_m2 & _LOW_HALF) + (middle_m1 & _LOW_HALF) + (high_m0 & _LOW_HALF)
    top = (third >> _HALF) + (low_m2 >> _HALF) + (middle_m1 >> _HALF) + (high_m0 >> _HALF)
    top += low * m3 + middle * m2 + high * m1
    ids: npt.NDArray[np.uint64] = (top >> np.uint64(8)) & np.uint64(0xFFFFFF) | _BAND_NUMBERS
    return ids
