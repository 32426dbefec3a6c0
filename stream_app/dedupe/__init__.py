"""Near-duplicate detection: whether a title was seen, as it is or one typo away, within the TTL.

How a title is judged (:meth:`DedupeIndex.check_and_add`, in :mod:`~stream_app.dedupe.index`):

1. **Exact copy.** The title is normalised (HTML character references read, NFKC, case-folded, source
   decorations such as ``[P]``, ``Show HN:`` or ``| by Ann | Medium``, punctuation, invisible format characters
   and emoji presentation marks dropped, read up to :data:`~stream_app.dedupe.normalize.TITLE_FOLDED_CHARS`,
   its set of words sorted, a number (words with digits that follow one another, in their order: "2.1" is not
   "1.2") kept as often as it occurs) and hashed to its dedupe key
   (:mod:`~stream_app.dedupe.normalize`). A fresh entry under that key makes it an exact copy.
2. **Near copy, candidates.** Otherwise MinHash over the title's letter pairs, split into LSH bands with its
   numbers and number of words mixed in, gives its bucket ids (:mod:`~stream_app.dedupe.signatures`); the
   stored titles in those buckets (:mod:`~stream_app.dedupe.buckets`) are the candidates, and a 16-bit tag of
   each one's words passes over those that differ in more than one word without reading them.
3. **Near copy, one-typo confirmation.** A candidate is a near copy only if it has the same words but one, and
   that one word (of at most :data:`~stream_app.dedupe.typo.MAX_TYPO_WORD` letters) is a single edit from its
   counterpart and neither has a digit, is a Roman numeral nor is written in a script without spaces (Han, kana,
   Thai), at a title similarity of at least :data:`NEAR_TITLE_SIMILARITY`,
   and the title with the counterpart in its place has the candidate's buckets
   (:func:`~stream_app.dedupe.typo.confirm`, :func:`typo_source`).
4. **Description check.** When both have a description, their MinHash signatures must agree on at least
   :data:`DESCRIPTION_SIMILARITY` (also in :func:`~stream_app.dedupe.typo.confirm`).

A title seen for the first time is stored; a near copy is stored as a pointer to its original. A title found new
can be judged again (:meth:`DedupeIndex.recheck`) against the entries other writers stored before it, which its
check did not see (:class:`EarlierEntries`; the worker's second look, :mod:`stream_app.title_index.second_look`).
Modules:

* :mod:`~stream_app.dedupe.normalize`: words, normalised form, dedupe key, refs (the store's keys);
* :mod:`~stream_app.dedupe.signatures`: MinHash, bucket ids, description signatures, word hashes and tags;
* :mod:`~stream_app.dedupe.entries`: the binary layout of the store's values, written and read;
* :mod:`~stream_app.dedupe.typo`: the one-edit search and the confirmation of a candidate;
* :mod:`~stream_app.dedupe.buckets`: the in-memory LSH bucket index;
* :mod:`~stream_app.dedupe.expiry`: the queue of entries by event time, for sweeps;
* :mod:`~stream_app.dedupe.rebuild`: the buckets and the expiry queue read back from a store;
* :mod:`~stream_app.dedupe.earlier`: other writers' entries, by ref and by bucket, for a recheck;
* :mod:`~stream_app.dedupe.index`: :class:`DedupeIndex`, which ties them together (prepare a batch,
  check, recheck, apply, expire).
"""

from stream_app.dedupe.buckets import BucketIndex
from stream_app.dedupe.earlier import EarlierEntries
from stream_app.dedupe.entries import CopyEntry, Entry, TitleEntry, clamp_time, entry_fields
from stream_app.dedupe.expiry import EXPIRY_SLOT_SECONDS, ExpiryQueue
from stream_app.dedupe.index import MATCH_KINDS, DedupeIndex, DedupeVerdict, PreparedTitle
from stream_app.dedupe.normalize import (
    REF_CHARS,
    dedupe_key,
    digest_of_ref,
    normalize_title,
    ref_of_digest,
    title_words,
)
from stream_app.dedupe.rebuild import BUCKET_LIMIT, index_buckets
from stream_app.dedupe.signatures import (
    BANDS,
    DESCRIPTION_CHARS,
    ROWS,
    bucket_ids,
    description_signature,
    digit_runs,
    jaccard,
    letter_pairs,
    signature_similarity,
    title_signature,
    title_tag,
    word_hash,
)
from stream_app.dedupe.typo import DESCRIPTION_SIMILARITY, MIN_TYPO_WORD, NEAR_TITLE_SIMILARITY, typo_source

__all__ = [
    "BANDS",
    "BUCKET_LIMIT",
    "DESCRIPTION_CHARS",
    "DESCRIPTION_SIMILARITY",
    "EXPIRY_SLOT_SECONDS",
    "MATCH_KINDS",
    "MIN_TYPO_WORD",
    "NEAR_TITLE_SIMILARITY",
    "REF_CHARS",
    "ROWS",
    "BucketIndex",
    "CopyEntry",
    "DedupeIndex",
    "EarlierEntries",
    "DedupeVerdict",
    "Entry",
    "ExpiryQueue",
    "PreparedTitle",
    "TitleEntry",
    "bucket_ids",
    "clamp_time",
    "dedupe_key",
    "description_signature",
    "digest_of_ref",
    "digit_runs",
    "entry_fields",
    "index_buckets",
    "jaccard",
    "letter_pairs",
    "normalize_title",
    "ref_of_digest",
    "signature_similarity",
    "title_signature",
    "title_tag",
    "title_words",
    "typo_source",
    "word_hash",
]
