"""Near-duplicate detection over a key-value store (a Faust table in the worker, a dict in tests).

Tier 1, exact: titles that normalise to the same sorted token set share a 16-hex-digit key.

Tier 2, near: MinHash over the letter pairs of each word, split into LSH bands and hashed with the title's
numbers and number of words, finds stored titles that look alike and could be one typo away; a 16-bit tag of
each title's words (:func:`title_tag`), kept beside its buckets, passes over most of those that differ in more
than one word without reading their entries. A candidate is confirmed only if it is
one typo away: the same words but one, that one word a single edit (substitution, insertion, deletion,
transposition) from its counterpart, with the same digits (YOLOv5 is not YOLOv7), title similarity of at least
:data:`NEAR_TITLE_SIMILARITY`, and descriptions that agree when both exist. A different word (text/token,
image/video) is never one edit, so it vetoes the match.

The store holds two kinds of entries, each one ``bytes`` value (one small Python object per title, and no more
than a title needs on disk), replaced and never mutated (Faust writes the changelog only on assignment). Keys
are ``<ref>``, the dedupe key in 11 base64url characters:

* a first-seen title: a head byte (``0b1`` + described flag + number of words, up to 63), the event time in
  seconds (4 bytes), its 4 LSH buckets (3 bytes each), the description's MinHash (12 values of 4 bits, if
  it has one), the sorted :func:`word_hash` of each word (3 bytes each, repeats included), then the event id;
* a near copy found: ``0x01``, the event time (4 bytes), the similarity (2 bytes, in 1/10,000), the original's
  ref (8 bytes), then the original's event id. A replayed copy (after a crash) or a copy of the copy gets the
  same verdict even when the original has since left its capped LSH buckets.

:func:`entry_fields` reads both; it is the only format (the service was never released with another).

The LSH buckets themselves (bucket id -> refs and tags, newest last) live in memory only, in a :class:`BucketIndex`
rebuilt from the entries by :func:`index_buckets` when the index is made: one store write per new title
instead of one per bucket. Entries another worker wrote reach the index through :meth:`DedupeIndex.apply`.

No hash depends on the process (no salted ``hash()``), so two processes, or one process before and after a
restart, agree on every key and bucket: keys, word hashes and band salts are BLAKE2b with a fixed
personalisation string; the MinHash functions are multiply-add-shift functions of 32-bit keys (a letter pair's
two code points, a description word's CRC-32) whose constants are drawn from BLAKE2b, computed with numpy for
all of a title's pairs at once.
"""

from __future__ import annotations

import array
import base64
import binascii
import functools
import hashlib
import heapq
import math
import re
import string
import unicodedata
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any, Final, NamedTuple

import numpy as np
import numpy.typing as npt

from stream_app.dedupe.buckets import BucketIndex

MATCH_KINDS: Final = ("exact", "near")
BANDS: Final = 4
ROWS: Final = 3
"""LSH layout: BANDS buckets per title, each keyed by ROWS MinHash values. One typo in a title of 20+
characters leaves 75-90% of its letter pairs in common, and titles that share 80% (90%) of them share a
bucket with probability 0.94 (0.99)."""
BUCKET_LIMIT: Final = 8
"""Most refs kept in one bucket (the newest); bounds both an entry's size and the candidates per look-up."""
NEAR_TITLE_SIMILARITY: Final = 0.6
"""Least Jaccard similarity of the letter pairs of two titles one typo apart; shorter titles fall below it
because in a word of a few letters one changed letter is as likely another word as a typo."""
DESCRIPTION_SIMILARITY: Final = 0.5
"""Least estimated Jaccard similarity of the word sets of two descriptions that confirms a near match."""
MIN_TYPO_WORD: Final = 4
"""Shortest word in which one changed letter is taken for a typo (CNN and RNN are different things); the
mistyped form may be a letter shorter (with/wth)."""
EXPIRY_SLOT_SECONDS: Final = 64
"""Span of event time whose entries the expiry queue keeps together: a sweep filters at most one such slot."""
DESCRIPTION_CHARS: Final = 1000
"""Only the start of a description is signed: it tells a repost from another item and bounds the cost."""

_DESCRIPTION_HASHES: Final = 12
_WORD_HASH_BYTES: Final = 3
_BUCKET_HASH_BYTES: Final = 3
_TIME_BYTES: Final = 4
"""Event times are kept in whole seconds, rounded up (an entry may outlive its TTL by under a second), until the
year 2106; times outside that range are clamped into it."""
_LAST_SECOND: Final = 2 ** (8 * _TIME_BYTES) - 1
_REF_BYTES: Final = 8
REF_CHARS: Final = 11
"""Length of a ref, the key of a title's entry: its dedupe key in base64url."""
_TITLE_MARK: Final = 0x80
_DESCRIBED: Final = 0x40
_WORDS: Final = 0x3F
"""Head-byte bits of a title entry."""
_COPY_MARK: Final = 0x01
_TYPO_LETTERS: Final = string.ascii_lowercase + "ßàáâãäåæçèéêëìíîïðñòóôõöøùúûüýþÿ"
"""Letters a typo may have replaced or dropped, besides those of the word itself: Latin-1 lower case."""
_SOURCES = (
    r"reddit|r/\w+|medium|youtube|towards data science|hacker news|github|arxiv|twitter|linkedin|kaggle|"
    r"substack|dev\.to|papers with code"
)
# A separator after a space: "Title - Medium" is decorated, "Awesome-GitHub" is a name.
_DECORATION_SUFFIX = re.compile(rf"(?:\s+[|\-–—]\s*(?:{_SOURCES}))+\s*$")
_DECORATION_PREFIX = re.compile(r"^\s*(?:\[(?:p|r|d|n|project|research|discussion|news)\]\s*)+")
_DECORATION_MARKS = re.compile(r"[\[|\-–—]")
"""What every decoration has; most titles have none, and skip the decoration patterns."""
_WORD = re.compile(r"[^\W_]+")
"""A word: a run of letters and digits (what is left between runs of punctuation, spaces and underscores)."""
_ASCII_WORD = re.compile(rb"[a-z0-9]+")
"""The same in lower-case ASCII bytes."""
_DIGITS = re.compile(r"\d+")
_ANY_DIGIT = re.compile(r"\d")


# A named tuple: one is made for every event, at a fraction of a frozen dataclass's cost.
class DedupeVerdict(NamedTuple):
    """What the index made of one title."""

    dedupe_key: str
    duplicate_of: str | None
    """Id of the first-seen event this one copies, None if it is unique."""
    match: str | None
    """``"exact"``, ``"near"``, or None if unique."""
    similarity: float
    """1.0 for exact, the title similarity for near, 0.0 if unique."""


def _nfkc_casefold(text: str) -> str:
    if text.isascii():  # NFKC leaves ASCII as it is, and case-folds it to lower case
        return text.lower()
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())


def title_words(title: str) -> list[str]:
    """A title's words in order, repeats included: NFKC, case-folded, without known source decorations,
    split at punctuation and spaces."""
    text = _nfkc_casefold(title)
    previous = None if _DECORATION_MARKS.search(text) else text
    while previous != text:  # decorations can be stacked: "[P] Title - Medium | Reddit"
        previous = text
        text = _DECORATION_PREFIX.sub("", _DECORATION_SUFFIX.sub("", text))
    return _WORD.findall(text)


def normalize_title(title: str) -> str:
    """A title's canonical form: NFKC, case-folded, known source decorations and punctuation removed, the set
    of its words sorted and joined by single spaces."""
    return " ".join(sorted(set(title_words(title))))


def _blake2b(digest_size: int, person: bytes) -> Callable[[bytes], bytes]:
    """The BLAKE2b digest function of one size and personalisation: copying a hasher made once costs a
    quarter of making one per call."""
    made = hashlib.blake2b(digest_size=digest_size, person=person)

    def digest(data: bytes) -> bytes:
        hasher = made.copy()
        hasher.update(data)
        return hasher.digest()

    return digest


_key_hash: Final = _blake2b(8, b"tagger-key")
_word_hash: Final = _blake2b(_WORD_HASH_BYTES - 1, b"tagger-word")
_band_hash: Final = _blake2b(8, b"tagger-band")
_BAND_MULTIPLIER: Final = int.from_bytes(_band_hash(b"\x00") + _band_hash(b"\x01"), "big") | 1  # odd, 128 bits


def _key_digest(normalized: str) -> bytes:
    return _key_hash(normalized.encode())


def dedupe_key(title: str) -> str:
    """The exact-tier key of a title: 16 hex digits of the BLAKE2b hash of its normalised form."""
    return _key_digest(normalize_title(title)).hex()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _hash_family(person: bytes, count: int) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
    """``count`` multiply-add-shift hash functions of 32-bit keys, ``(a * x + b) mod 2**64 >> 32``, their
    multipliers (odd) and addends drawn from BLAKE2b: the same in every process."""
    blocks = range(count // 4 + 1)  # 16 bytes a function, 64 a block
    drawn = b"".join(hashlib.blake2b(bytes([n]), digest_size=64, person=person).digest() for n in blocks)
    values = np.frombuffer(drawn[: 16 * count], "<u8")
    return values[:count] | np.uint64(1), values[count : 2 * count].copy()


_TITLE_FAMILY: Final = _hash_family(b"tagger-title", BANDS * ROWS)
_DESCRIPTION_FAMILY: Final = _hash_family(b"tagger-text", _DESCRIPTION_HASHES)
_BOTH_FAMILIES: Final = (
    np.concatenate((_TITLE_FAMILY[0], _DESCRIPTION_FAMILY[0])),
    np.concatenate((_TITLE_FAMILY[1], _DESCRIPTION_FAMILY[1])),
)


def _hashed(keys: npt.NDArray[np.uint32], family: tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]) -> Any:
    """Each hash function of ``family`` (a column) of each of ``keys`` (a row), 32-bit values in uint64."""
    multipliers, addends = family
    hashed = np.multiply.outer(keys, multipliers)
    hashed += addends
    hashed >>= np.uint64(32)
    return hashed


def _letter_pair_keys(words: list[str]) -> npt.NDArray[np.uint32]:
    """A key for each of a title's :func:`letter_pairs` (repeats included): its two UTF-16 code units side by
    side (a letter outside the Basic Multilingual Plane counts as its two surrogates), scrambled."""
    text = f" {' '.join(words)} ".encode("utf-16-le")  # " a b " has the pairs of " a " and " b ", and no other
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
    text = _nfkc_casefold(description[:DESCRIPTION_CHARS])
    if text.isascii():  # found in its bytes, no word is encoded on its own
        return list(map(zlib.crc32, _ASCII_WORD.findall(text.encode())))
    return [zlib.crc32(word.encode()) for word in _WORD.findall(text)]


def _nibbles(values: list[int]) -> bytes:
    """The low 4 bits of each value, two to a byte (an even number of values)."""
    return bytes.fromhex("".join([_HEX_DIGITS[value & 0x0F] for value in values]))


_HEX_DIGITS: Final = "0123456789abcdef"


def title_signature(words: list[str]) -> list[int]:
    """The MinHash values of a title's :func:`letter_pairs`: the least of each of 12 hash functions over them."""
    values: list[int] = np.minimum.reduce(_hashed(_letter_pair_keys(words), _TITLE_FAMILY)).tolist()
    return values


def description_signature(description: str | None) -> bytes:
    """A MinHash signature of a description's words: 12 values of 4 bits, two per byte; empty if it has none.
    4 bits suffice: an unrelated pair agrees on 1 in 16 values by chance, far from the 50% a match needs."""
    keys = _description_keys(description)
    if not keys:
        return b""
    return _nibbles(np.minimum.reduce(_hashed(np.array(keys, np.uint32), _DESCRIPTION_FAMILY)).tolist())


def _signatures(words: list[str], description: str | None) -> tuple[list[int], bytes]:
    """:func:`title_signature` and :func:`description_signature` at once: one pass of numpy over the keys of
    both (each hash function applied to both kinds of key, a waste numpy's per-call cost outweighs)."""
    pairs, text_keys = _letter_pair_keys(words), _description_keys(description)
    if not text_keys:
        return np.minimum.reduce(_hashed(pairs, _TITLE_FAMILY)).tolist(), b""
    keys = np.concatenate((pairs, np.array(text_keys, np.uint32)))
    title, text = np.minimum.reduceat(_hashed(keys, _BOTH_FAMILIES), [0, len(pairs)], axis=0).tolist()
    return title[: BANDS * ROWS], _nibbles(text[BANDS * ROWS :])


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
    """The numbers in a title's words (repeats included), sorted: a typo never changes them, so two titles
    whose numbers differ are never near copies (YOLOv5 and YOLOv7, part 1 and part 2, issue 12 and issue 13)."""
    text = " ".join(words)
    return " ".join(sorted(_DIGITS.findall(text))) if _ANY_DIGIT.search(text) else ""


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
    # (multiply-shift hashing) for a fraction of a hash call per band.
    salt = _band_salt(digit_runs(words), len(words))
    ids = []
    for band in range(BANDS):
        rows = 0
        for value in values[band * ROWS : (band + 1) * ROWS]:
            rows = rows << 32 | value
        ids.append(band << 24 | (rows ^ salt) * _BAND_MULTIPLIER >> 104 & 0xFFFFFF)
    return ids


@functools.lru_cache(maxsize=1024)  # most titles have no numbers and a few words
def _band_salt(digits: str, words: int) -> int:
    return int.from_bytes(_band_hash(f"{digits}|{words}".encode()), "big")


def _title_tags(titles: list[bytes]) -> npt.NDArray[np.uint16]:
    """The :func:`title_tag` of each of many titles' packed word hashes, at once."""
    lasts = np.frombuffer(b"".join(titles), np.uint8)[_WORD_HASH_BYTES - 1 :: _WORD_HASH_BYTES]
    bits = np.left_shift(np.uint16(1), lasts & np.uint8(0x0F), dtype=np.uint16)
    words = np.array([len(hashes) // _WORD_HASH_BYTES for hashes in titles], np.int64)
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
    for last in word_hashes[_WORD_HASH_BYTES - 1 :: _WORD_HASH_BYTES]:
        tag |= 1 << (last & 0x0F)
    return tag


class TitleEntry(NamedTuple):
    """A first-seen title, as stored."""

    event_id: str
    event_time: float
    hashes: bytes
    """The sorted :func:`word_hash` of each word; empty for a title of more than 63 words."""
    signature: bytes
    """Its :func:`description_signature`, as stored."""
    buckets: bytes
    """Its :func:`bucket_ids`, 3 bytes each without the band number."""


class CopyEntry(NamedTuple):
    """A near copy found, as stored."""

    original_id: str
    event_time: float
    original_ref: str
    similarity: float


Entry = TitleEntry | CopyEntry


def clamp_time(event_time: float) -> float:
    """An event time within what an entry can store (0 to 2**32 - 1 seconds; NaN counts as 0)."""
    if 0.0 < event_time <= _LAST_SECOND:
        return float(event_time)
    event_time = float(event_time)
    if not event_time > 0:  # NaN too
        return 0.0
    return min(event_time, float(_LAST_SECOND))


def _whole_seconds(event_time: float) -> int:
    """An event time as stored: whole seconds, rounded up (an entry outlives its TTL by under a second), clamped
    into the 4 bytes an entry has for it."""
    return math.ceil(clamp_time(event_time))


def _seconds(event_time: float) -> bytes:
    return _whole_seconds(event_time).to_bytes(_TIME_BYTES, "big")


def _title_bytes(event_id: str, event_time: float, hashes: bytes, signature: bytes, buckets: list[int]) -> bytes:
    """A title entry's value, its buckets given as :func:`bucket_ids`."""
    head = _TITLE_MARK | (_DESCRIBED if signature else 0) | len(hashes) // _WORD_HASH_BYTES
    packed = 0
    for bucket in buckets:
        packed = packed << 8 * _BUCKET_HASH_BYTES | bucket & 0xFFFFFF
    return b"".join(
        [
            bytes([head]),
            _seconds(event_time),
            packed.to_bytes(BANDS * _BUCKET_HASH_BYTES, "big"),
            signature,
            hashes,
            event_id.encode(),
        ]
    )


def _copy_value(entry: CopyEntry) -> bytes:
    similarity = round(entry.similarity * 10_000).to_bytes(2, "big")
    return b"".join(
        [
            bytes([_COPY_MARK]),
            _seconds(entry.event_time),
            similarity,
            _unb64(entry.original_ref),
            entry.original_id.encode(),
        ]
    )


def entry_fields(value: Any) -> Entry | None:
    """A stored value read: a :class:`TitleEntry`, a :class:`CopyEntry`, or None for anything else (never
    raises: values may come from a topic anyone can write to)."""
    if not isinstance(value, bytes) or not value:
        return None
    try:
        if value[0] & _TITLE_MARK:
            return _read_title(value)
        if value[0] == _COPY_MARK:
            time_end = 1 + _TIME_BYTES
            if len(value) <= time_end + 2 + _REF_BYTES:
                return None
            return CopyEntry(
                value[time_end + 2 + _REF_BYTES :].decode(),
                float(int.from_bytes(value[1:time_end], "big")),
                ref_of_digest(value[time_end + 2 : time_end + 2 + _REF_BYTES]),
                int.from_bytes(value[time_end : time_end + 2], "big") / 10_000,
            )
    except ValueError:  # an event id that is not UTF-8
        return None
    return None


def _read_title(value: bytes) -> TitleEntry:
    head = value[0]
    time_end = 1 + _TIME_BYTES
    hashes_at = time_end + BANDS * _BUCKET_HASH_BYTES
    signature_at = hashes_at
    if head & _DESCRIBED:
        hashes_at += _DESCRIPTION_HASHES // 2
    id_at = hashes_at + (head & _WORDS) * _WORD_HASH_BYTES
    if len(value) <= id_at:
        raise ValueError("a title entry cut short")
    return TitleEntry(
        value[id_at:].decode(),
        float(int.from_bytes(value[1:time_end], "big")),
        value[hashes_at:id_at],
        value[signature_at:hashes_at],
        value[time_end : time_end + BANDS * _BUCKET_HASH_BYTES],
    )


def ref_of_digest(digest: bytes) -> str:
    """The ref (store key) of an 8-byte dedupe key digest."""
    return binascii.b2a_base64(digest, newline=False)[:REF_CHARS].translate(_URL_SAFE).decode()


_URL_SAFE: Final = bytes.maketrans(b"+/", b"-_")


def digest_of_ref(ref: str) -> bytes | None:
    """The 8-byte digest a ref stands for; None if ``ref`` is not one (:func:`ref_of_digest` would not give it)."""
    if len(ref) != REF_CHARS:
        return None
    try:
        digest = base64.urlsafe_b64decode(ref + "=")
    except ValueError:
        return None
    return digest if ref_of_digest(digest) == ref else None


def _ref_number(ref: str) -> int:
    return int.from_bytes(_unb64(ref), "big")


def _ref_of(number: int) -> str:
    return ref_of_digest(number.to_bytes(_REF_BYTES, "big"))


def index_buckets(store: MutableMapping[str, Any]) -> BucketIndex:
    """The LSH buckets of the first-seen titles in ``store``, filled in event-time order as they were live."""
    return _scan(store)[0]


def _scan(store: MutableMapping[str, Any]) -> tuple[BucketIndex, ExpiryQueue, list[str]]:
    """What a :class:`DedupeIndex` keeps beside ``store``, read from it: the LSH buckets, the expiry queue, and
    the keys of entries of no known shape (nothing this module wrote), to delete."""
    entries, unreadable = [], []
    for ref, value in store.items():
        entry = entry_fields(value) if digest_of_ref(ref) is not None else None
        if entry is None:
            unreadable.append(ref)
        else:
            fields = (entry.buckets, entry.hashes) if isinstance(entry, TitleEntry) else (b"", b"")
            entries.append((entry.event_time, ref, *fields))
    entries.sort()
    queue = ExpiryQueue()
    for event_time, ref, *_ in entries:
        queue.push(event_time, _ref_number(ref))
    titles = [(ref, buckets, hashes) for _, ref, buckets, hashes in entries if buckets]
    packed = np.frombuffer(b"".join(buckets for _, buckets, _ in titles), np.uint8).reshape(-1, BANDS, 3)
    hashes = packed.astype(np.uint32) @ np.array([1 << 16, 1 << 8, 1], np.uint32)
    ids = (hashes | (np.arange(BANDS, dtype=np.uint32) << 24)).reshape(-1)
    refs = np.repeat(np.array([_ref_number(ref) for ref, _, _ in titles], np.uint64), BANDS)
    tags = np.repeat(_title_tags([hashes for _, _, hashes in titles]), BANDS)
    return BucketIndex.from_entries(BUCKET_LIMIT, ids.astype(np.uint32), refs, tags), queue, unreadable


def _unpack_buckets(packed: bytes) -> list[int]:
    """The bucket ids of a title entry's packed buckets (3 bytes each, the band number given by the position)."""
    return [
        band << 24 | int.from_bytes(packed[band * _BUCKET_HASH_BYTES : (band + 1) * _BUCKET_HASH_BYTES], "big")
        for band in range(BANDS)
    ]


class ExpiryQueue:
    """The refs of the entries written, by event time (whole seconds, rounded up, as stored): a sweep takes the
    expired ones instead of reading the whole store. 12 bytes each, in one pair of arrays per
    :data:`EXPIRY_SLOT_SECONDS` of event time.

    Entries are found by their time, not the order they were written in: one dated far ahead holds up none of
    those behind it. Every look-up checks the time stored with the entry anyway.
    """

    def __init__(self) -> None:
        self._slots: dict[int, tuple[array.array[int], array.array[int]]] = {}
        self._order: list[int] = []
        """The keys of ``_slots``, a heap."""
        self._count = 0

    def push(self, event_time: float, ref: int) -> None:
        """Add an entry written for ``event_time`` under ``ref``."""
        seconds = _whole_seconds(event_time)
        slot = self._slots.get(seconds // EXPIRY_SLOT_SECONDS)
        if slot is None:
            slot = self._slots[seconds // EXPIRY_SLOT_SECONDS] = (array.array("I"), array.array("Q"))
            heapq.heappush(self._order, seconds // EXPIRY_SLOT_SECONDS)
        slot[0].append(seconds)
        slot[1].append(ref)
        self._count += 1

    def pop_before(self, cutoff: float) -> list[int]:
        """Take out the refs written for event times before ``cutoff``."""
        refs: list[int] = []
        while self._order and self._order[0] * EXPIRY_SLOT_SECONDS < cutoff:
            key = self._order[0]
            times, slot_refs = self._slots[key]
            if (key + 1) * EXPIRY_SLOT_SECONDS <= cutoff:  # every time in the slot is before the cutoff
                refs.extend(slot_refs)
                heapq.heappop(self._order)
                del self._slots[key]
                self._count -= len(times)
                continue
            seconds = np.frombuffer(times, np.uint32)
            expired = seconds < cutoff
            if expired.any():
                kept = ~expired
                refs.extend(np.frombuffer(slot_refs, np.uint64)[expired].tolist())
                self._slots[key] = (
                    array.array("I", seconds[kept].tobytes()),
                    array.array("Q", np.frombuffer(slot_refs, np.uint64)[kept].tobytes()),
                )
                self._count -= int(expired.sum())
            break
        return refs

    def __len__(self) -> int:
        return self._count


def _code_sum(word: str) -> int:
    return sum(map(ord, word)) % 256


def word_hash(word: str) -> bytes:
    """The 3 bytes a stored title keeps of each word: the sum of its code points modulo 256, which tells a
    typo search what letter changed, then a 2-byte BLAKE2b hash."""
    return bytes([_code_sum(word)]) + _word_hash(word.encode())


def signature_similarity(left: bytes, right: bytes) -> float | None:
    """Estimated word Jaccard of two described items, or None when either has no description."""
    if not left or not right:
        return None
    same = sum((a >> 4 == b >> 4) + (a & 0x0F == b & 0x0F) for a, b in zip(left, right, strict=True))
    return same / (2 * len(left))


def _letters_by_code_sum(letters: set[str]) -> dict[int, list[str]]:
    """The letters a typo may use, by code point modulo 256: those of :data:`_TYPO_LETTERS` and ``letters``."""
    by_sum: dict[int, list[str]] = {}
    for letter in sorted(_TYPO_LETTER_SET | letters):
        by_sum.setdefault(ord(letter) % 256, []).append(letter)
    return by_sum


_TYPO_LETTER_SET: Final = frozenset(_TYPO_LETTERS)
_TYPO_LETTERS_BY_CODE_SUM: Final = _letters_by_code_sum(set())


def _one_edit_sources(word: str, code_sum: int) -> Iterator[str]:
    """The words a single deleted, transposed, replaced or inserted letter away from ``word`` that have its
    digits and whose code points sum to ``code_sum`` (modulo 256): the sum leaves a few dozen to try rather
    than hundreds.

    Digits are never deleted, inserted or replaced, nor a letter inserted between two of them: a changed number
    is another version, not a typo. Skipping those edits up front makes a number that differs cheap to reject.
    """
    shift = (code_sum - _code_sum(word)) % 256
    digits = _DIGITS.findall(word)
    extra = {c for c in word if c.isalpha()} - _TYPO_LETTER_SET
    letters = _letters_by_code_sum(extra) if extra else _TYPO_LETTERS_BY_CODE_SUM
    if shift == 0:
        for i in range(len(word) - 1):
            swapped = word[:i] + word[i + 1] + word[i] + word[i + 2 :]
            if not (word[i].isdigit() or word[i + 1].isdigit()) or _DIGITS.findall(swapped) == digits:
                yield swapped
    for i, old in enumerate(word):
        if old.isdigit():
            continue
        if (ord(old) + shift) % 256 == 0:
            yield word[:i] + word[i + 1 :]
        for new in letters.get((ord(old) + shift) % 256, ()):
            if new != old:
                yield word[:i] + new + word[i + 1 :]
    for new in letters.get(shift, ()):
        for i in range(len(word) + 1):
            if 0 < i < len(word) and word[i - 1].isdigit() and word[i].isdigit():
                continue
            yield word[:i] + new + word[i:]


def typo_source(word: str, stored_hash: bytes) -> str | None:
    """The word one edit from ``word`` whose :func:`word_hash` is ``stored_hash``, if ``word`` is a typo of
    it: a word of 4+ letters with the same digits."""
    if len(word) < MIN_TYPO_WORD - 1:
        return None
    code_sum, digest = stored_hash[0], stored_hash[1:]
    for source in _one_edit_sources(word, code_sum):  # each has the stored code sum: compare the rest
        if _word_hash(source.encode()) == digest:
            long_enough = max(len(source), len(word)) >= MIN_TYPO_WORD
            return source if long_enough and _DIGITS.findall(source) == _DIGITS.findall(word) else None
    return None


@functools.lru_cache(maxsize=8192)
def _stored_hash_counts(hashes: bytes) -> Counter[bytes]:
    """The word hashes of a stored title, counted. Cached: the titles in busy buckets are compared again and
    again."""
    return Counter(hashes[i : i + _WORD_HASH_BYTES] for i in range(0, len(hashes), _WORD_HASH_BYTES))


class _Incoming:
    """A title being checked, as the near tier compares it; what only a confirmation needs is made on demand."""

    def __init__(self, words: list[str], description: str | None) -> None:
        self.words = words
        """Its words in order, repeats included: a typo in one of two "learning"s replaces one of them."""
        self.hashes = [_title_word_hash(word) for word in words]
        """The :func:`word_hash` of each word."""
        self.tag = 0
        """Its :func:`title_tag`."""
        for digest in self.hashes:
            self.tag |= 1 << (digest[-1] & 0x0F)
        self._description = description

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
        title, self.signature = _signatures(self.words, self._description)
        return _band_ids(title, self.words)


class DedupeIndex:
    """Titles seen within the TTL, kept in ``store`` (see the module docstring for its layout).

    Its LSH buckets are indexed from ``store`` when it is made and kept up to date by its own writes and by
    those of other workers given to :meth:`apply`: keep one index per store, and write to the store only
    through it.
    """

    def __init__(self, store: MutableMapping[str, Any], ttl_seconds: float) -> None:
        self.store = store
        self.ttl_seconds = ttl_seconds
        self.buckets, self.expiry, self._unreadable = _scan(store)
        self.entries = len(self.expiry) + len(self._unreadable)
        """Entries in ``store``, counted as they are written and deleted: a RocksDB store would count them by
        reading every key."""
        self._unindexed: set[int] = set()
        """Refs deleted from the store but still in the buckets: taken out in bulk (look-ups skip them)."""

    def check_and_add(self, event_id: str, title: str, description: str | None, event_time: float) -> DedupeVerdict:
        """Judge a title against those seen within the TTL before ``event_time``; remember it if it is new.

        A replay of the stored event itself (same id) is not a duplicate; a duplicate never replaces its
        original. A title with no words at all is never a duplicate and is not remembered. Times beyond what an
        entry stores (before 1970, after 2106, NaN) are clamped into it.
        """
        event_time = clamp_time(event_time)
        words = title_words(title)
        normalized = " ".join(sorted(set(words)))
        digest = _key_digest(normalized)
        key, ref = digest.hex(), ref_of_digest(digest)
        if not normalized:
            return DedupeVerdict(key, None, None, 0.0)
        stored = self.store.get(ref)
        first = entry_fields(stored)
        if first is not None and self._fresh(first, event_time):
            if isinstance(first, CopyEntry):
                if self._live_copy(first, event_time):
                    return DedupeVerdict(key, first.original_id, "near", first.similarity)
            elif first.event_id == event_id:
                return DedupeVerdict(key, None, None, 0.0)
            else:
                return DedupeVerdict(key, first.event_id, "exact", 1.0)
        incoming = _Incoming(words, description)
        buckets = incoming.buckets()
        number = int.from_bytes(digest, "big")
        near = self._near(event_id, number, buckets, incoming, event_time)
        if stored is None:
            self.entries += 1
        if near is not None:
            self.store[ref] = _copy_value(near)
            self.expiry.push(event_time, number)
            return DedupeVerdict(key, near.original_id, "near", near.similarity)
        stored_hashes = b"".join(sorted(incoming.hashes)) if len(words) <= _WORDS else b""
        self.store[ref] = _title_bytes(event_id, event_time, stored_hashes, incoming.signature, buckets)
        self.expiry.push(event_time, number)
        self._unindexed.discard(number)
        # A ref whose earlier title expired may still be in some buckets: a repeat there is harmless.
        self.buckets.add(buckets, number, incoming.tag if stored_hashes else 0)
        return DedupeVerdict(key, None, None, 0.0)

    def apply(self, ref: str, value: bytes | None) -> None:
        """Take in a change another index made to its store (replicated through a topic): write ``value`` under
        ``ref``, or delete ``ref`` if ``value`` is None (a tombstone), and update the buckets, the expiry queue and
        :attr:`entries` as :meth:`check_and_add` and :meth:`expire` do for their own writes.

        A ref or value of no known shape is ignored (the topic is open to any writer); a value already stored
        changes nothing.
        """
        if not isinstance(ref, str) or digest_of_ref(ref) is None:
            return
        number = _ref_number(ref)
        if value is None:
            if self.store.get(ref) is not None:
                del self.store[ref]
                self.entries -= 1
                self._unindexed.add(number)
            return
        entry = entry_fields(value)
        if entry is None:
            return
        stored = self.store.get(ref)
        if stored == value:
            return
        if stored is None:
            self.entries += 1
        self.store[ref] = value
        self.expiry.push(entry.event_time, number)
        if isinstance(entry, TitleEntry):
            self._unindexed.discard(number)
            self.buckets.add(_unpack_buckets(entry.buckets), number, title_tag(entry.hashes))

    def expire(self, now: float) -> int:
        """Delete the entries whose event time is more than the TTL before ``now``, and keys of no known shape
        (nothing this module wrote); returns the number of titles deleted. A near copy stops counting when its
        original expires and is deleted when its own time does. Costs what it deletes, not what the store holds."""
        now = clamp_time(now)
        for key in self._unreadable:
            if key in self.store and (digest_of_ref(key) is None or entry_fields(self.store[key]) is None):
                del self.store[key]
                self.entries -= 1
        self._unreadable = []
        removed = 0
        for number in self.expiry.pop_before(now - self.ttl_seconds):
            key = _ref_of(number)
            entry = entry_fields(self.store.get(key))
            if isinstance(entry, TitleEntry) and not self._fresh(entry, now):
                removed += 1
            elif not isinstance(entry, CopyEntry) or self._live_copy(entry, now):
                continue  # gone already, or written again since
            del self.store[key]
            self.entries -= 1
            self._unindexed.add(number)
        if self._unindexed and 8 * len(self._unindexed) >= len(self.expiry):
            self.buckets.remove(self._unindexed)
            self._unindexed = set()
        return removed

    def _fresh(self, entry: Entry, event_time: float) -> bool:
        return bool(entry.event_time + self.ttl_seconds >= event_time)

    def _live_copy(self, copy: CopyEntry, event_time: float) -> bool:
        """Whether a near copy's entry still stands: it and its original are fresh, and the original's ref still
        holds that original (a title seen again after its TTL is stored anew, under another event)."""
        original = entry_fields(self.store.get(copy.original_ref))
        if not isinstance(original, TitleEntry) or original.event_id != copy.original_id:
            return False
        return self._fresh(copy, event_time) and self._fresh(original, event_time)

    def _near(
        self, event_id: str, number: int, buckets: list[int], incoming: _Incoming, event_time: float
    ) -> CopyEntry | None:
        """The entry of a near copy of the first-seen title in ``buckets`` confirmed as one typo away."""
        confirmed: list[tuple[float, float, str, str]] = []
        words, tag = len(incoming.hashes), incoming.tag
        for candidate_number, candidate_tag in self.buckets.candidates(buckets).items():
            if (
                candidate_number == number
                or (candidate_tag & ~tag).bit_count() > 1
                or (tag & ~candidate_tag).bit_count() > 1
            ):
                continue  # more than one word differs: no need to read the entry
            candidate = _ref_of(candidate_number)
            value = self.store.get(candidate)
            if isinstance(value, bytes) and value and value[0] & _TITLE_MARK and value[0] & _WORDS != words:
                continue  # a typo keeps the number of words: the head byte tells without reading the entry
            entry = entry_fields(value)
            if not isinstance(entry, TitleEntry):
                continue  # gone, or the ref was reused by a near copy (its title expired and came back as one)
            if entry.event_id == event_id or not self._fresh(entry, event_time):
                continue
            similarity = self._confirm(incoming, entry)
            if similarity is not None:
                confirmed.append((entry.event_time, -similarity, entry.event_id, candidate))
        if not confirmed:
            return None
        _, negative_similarity, original, original_ref = min(confirmed)
        return CopyEntry(original, event_time, original_ref, round(-negative_similarity, 4))

    @staticmethod
    def _confirm(incoming: _Incoming, entry: TitleEntry) -> float | None:
        """The title similarity if ``incoming`` is one typo from the stored entry and the descriptions agree."""
        if len(entry.hashes) != _WORD_HASH_BYTES * len(incoming.hashes):
            return None  # a typo keeps the number of words
        stored = _stored_hash_counts(entry.hashes)
        if len(stored) == len(incoming.hashes) == len(incoming.distinct):  # no repeated word: sets will do
            added = incoming.distinct - stored.keys()
            if len(added) != 1:
                return None  # a typo replaces one word: here more differ
            dropped = stored.keys() - incoming.distinct
        else:
            added_counts = incoming.counts - stored
            if added_counts.total() != 1:
                return None
            added, dropped = set(added_counts), set(stored - incoming.counts)
        new_word = incoming.words[incoming.hashes.index(next(iter(added)))]
        old_word = typo_source(new_word, next(iter(dropped)))
        if old_word is None:
            return None
        old_words = Counter(incoming.words) - Counter([new_word]) + Counter([old_word])
        similarity = jaccard(letter_pairs(list(old_words)), letter_pairs(incoming.words))
        if similarity < NEAR_TITLE_SIMILARITY:
            return None
        described = signature_similarity(incoming.signature, entry.signature)
        if described is not None and described < DESCRIPTION_SIMILARITY:
            return None
        return similarity
