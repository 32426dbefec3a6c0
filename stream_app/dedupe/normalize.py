"""A title's words, its normalised form, and the keys made from it: the exact tier of dedupe.

Titles that normalise to the same sorted words (each once, a number as often as it occurs) share a
16-hex-digit dedupe key (:func:`dedupe_key`), the BLAKE2b hash, with a fixed personalisation string, of the
normalised form: no hash depends on the process, so every process agrees on every key. Its 8-byte digest, in 11
base64url characters, is the ref under which the store keeps the title's entry (:func:`ref_of_digest`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import html
import re
import unicodedata
from collections.abc import Callable
from typing import Final

REF_CHARS: Final = 11
"""Length of a ref, the key of a title's entry: its dedupe key in base64url."""
REF_BYTES: Final = 8
"""Length of a ref's digest."""

_SOURCES = (
    r"reddit|r/\w+|medium|youtube|towards data science|hacker news|github|arxiv|twitter|linkedin|kaggle|"
    r"substack|dev\.to|dev community|papers with code|stack overflow"
)
# A separator after a space: "Title - Medium" is decorated, "Awesome-GitHub" is a name. Page titles as scrapers
# find them add an author before the site ("Title | by Ann Lee | Medium"), and on Medium a publication after the
# author ("| by Ann Lee | Towards AI | Medium"), a colon before a subreddit ("Title : r/MachineLearning"), and on X
# a slash ("Title / X").
_DECORATION_SUFFIX = re.compile(
    rf"(?:\s+[|\-–—]\s*(?:by\s+[^|]{{1,60}}?\s+[|\-–—]\s*(?:[^|]{{1,60}}?\s+\|\s*(?=medium))?)?(?:{_SOURCES})"
    r"|\s+:\s*r/\w+|\s+/\s*x)+\s*$"
)
# Reddit's flairs, an arXiv page's id ("[1706.03762] Title"), Hacker News' "Show HN:", and the page titles of
# GitHub ("GitHub - owner/repo: ..."), Reddit ("r/MachineLearning on Reddit: Title") and Hugging Face's papers
# ("Paper page - Title").
_DECORATION_PREFIX = re.compile(
    r"^\s*(?:\[(?:p|r|d|n|project|research|discussion|news|\d{4}\.\d{4,5}(?:v\d+)?)\]\s*"
    r"|(?:show|ask|tell|launch)\s+hn\s*:\s*|github\s+[\-–—]\s+|paper\s+page\s+[\-–—]\s+|r/\w+\s+on\s+reddit\s*:\s*)+"
)
DECORATION_END_CHARS: Final = 160
"""How much of a title's end is searched for decorations at a time: more than the longest one ("| by " an author of
60 characters, then a site)."""
_DECORATION_MARKS = re.compile(r"[\[|\-–—:/]")
"""What every decoration has; most titles have none, and skip the decoration patterns."""
_DECORATION_HINTS = re.compile(
    _SOURCES.replace(" ", r"\s+") + r"|^\s*(?:\[|(?:show|ask|tell|launch|paper)\s)|/\s*x\s*$"
)
"""What every decoration has besides a mark: a site's name (its words apart by any spaces) or a prefix's start.
Titles with a dash or a colon but neither are common, and skip the patterns too."""
_SPACES = re.compile(r"\s+")
_HTML_TAGS = re.compile(r"</?(?:b|i|u|em|strong|code|span|sup|sub|mark|small|br)\s*/?>")
"""The inline HTML tags a scraper may leave in a title ("<b>Attention</b> is all you need"): not words of it."""
WORD = re.compile(r"[^\W_]+")
"""A word of ASCII text: a run of letters and digits (what is left between runs of punctuation, spaces and
underscores). :func:`split_words` splits any text."""
DIGITS = re.compile(r"\d+")
TITLE_FOLDED_CHARS: Final = 2000
"""Most of a title's :func:`folded_text` the dedupe reads: twice the input contract's longest title. NFKC makes up
to 18 characters of one (U+FDFA), so a title of such characters would otherwise cost every check of its batch 18
times the letter pairs, and their MinHash arrays the memory (decision 0224)."""


class _CachedTranslation(dict[int, str | None]):
    """A :meth:`str.translate` table whose entry for a code point is ``rule`` of its character (the character to
    write for it, or None to delete it), worked out when the code point is first met and remembered, up to
    :data:`_REMEMBERED` code points (a title can hold any of the million)."""

    def __init__(self, rule: Callable[[str], str | None]) -> None:
        super().__init__()
        self.rule = rule

    def __missing__(self, code: int) -> str | None:
        written = self.rule(chr(code))
        if len(self) < _REMEMBERED:
            self[code] = written
        return written


_REMEMBERED: Final = 65_536
_FORMAT_CHARACTERS: Final = _CachedTranslation(lambda c: None if unicodedata.category(c) == "Cf" else c)
"""Deletes the characters of Unicode category Cf (format: soft hyphens, zero-width spaces)."""
_PRESENTATION_MARKS: Final = frozenset([*map(chr, range(0xFE00, 0xFE10)), *map(chr, range(0xE0100, 0xE01F0)), "\u20e3"])
"""Variation selectors and the keycap mark: marks that choose how an emoji or a digit is drawn ("⚡️" is "⚡" drawn
as an emoji), not letters of a word."""


_STYLE_MARKS: Final = frozenset("\u0332\u0333\u0335\u0336\u0337\u0338")
"""The combining low lines and strokes a "fancy text" tool draws under or through letters (underlined, struck
through): no language writes its words with them."""
_SMALL_CAPITALS: Final = dict(zip("ᴀʙᴄᴅᴇꜰɢʜɪᴊᴋʟᴍɴᴏᴘʀꜱᴛᴜᴠᴡʏᴢ", "abcdefghijklmnoprstuvwyz", strict=True))
"""The small capitals such a tool writes for Latin letters, which NFKC keeps, as those letters."""


def _word_character(c: str) -> str | None:
    if c in _PRESENTATION_MARKS or c in _STYLE_MARKS:
        return None
    if c in _SMALL_CAPITALS:
        return _SMALL_CAPITALS[c]
    return c if unicodedata.category(c)[0] in "LNM" and c != "_" else " "


_WORD_BREAKS: Final = _CachedTranslation(_word_character)
"""Keeps letters, digits and marks (Unicode categories L, N and M) but the :data:`_PRESENTATION_MARKS` and
:data:`_STYLE_MARKS`, which it deletes, writes :data:`_SMALL_CAPITALS` as their letters, and turns everything else
into a space."""


def nfkc_casefold(text: str) -> str:
    """``text`` in NFKC, case-folded; the Turkish capital "İ", which case folding makes "i" and a combining dot, as
    "i" ("İstanbul" is "istanbul")."""
    if text.isascii():  # NFKC leaves ASCII as it is, and case-folds it to lower case
        return text.lower()
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold()).replace("i\u0307", "i")


def folded_text(text: str) -> str:
    """``text`` as dedupe reads it: HTML character references read, invisible format characters deleted (a soft
    hyphen, a zero-width space), NFKC, case-folded."""
    text = unescape_html(text)
    if text.isascii():
        return text.lower()
    # Scraped HTML keeps &shy; and zero-width spaces inside words: "Real\xadtime" is "Realtime". They go before
    # NFKC, which composes a letter with the mark after it only when nothing stands between them ("e\xad\u0301"
    # would stay two characters, and "é" another word); NFKC makes none of them.
    return nfkc_casefold(text.translate(_FORMAT_CHARACTERS))


def title_words(title: str) -> list[str]:
    """A title's words in order, repeats included: its :func:`folded_text` (the first :data:`TITLE_FOLDED_CHARS`
    characters) without known source decorations, split at punctuation and spaces."""
    text = folded_text(title)[:TITLE_FOLDED_CHARS]
    if "<" in text:
        text = _HTML_TAGS.sub(" ", text)
    if _DECORATION_MARKS.search(text) is None or _DECORATION_HINTS.search(text) is None:
        return split_words(text)
    # A run of spaces makes the patterns try it every way (a title of 1,000 characters took 0.3 s): one space is
    # all they need. The end pattern is tried from every position, so it reads only the end of the text, where a
    # decoration is; each turn of the loop reads the new end.
    text = _SPACES.sub(" ", text)
    previous = None
    while previous != text:  # decorations can be stacked: "[P] Title - Medium | Reddit"
        previous = text
        cut = max(0, len(text) - DECORATION_END_CHARS)
        text = _DECORATION_PREFIX.sub("", text[:cut] + _DECORATION_SUFFIX.sub("", text[cut:]))
    return split_words(text)


def unescape_html(text: str) -> str:
    """``text`` with its HTML character references read (``&amp;`` is ``&``, ``&#39;`` is ``'``), twice: scrapers
    copy titles out of HTML, some of them escaped twice (``&amp;amp;``)."""
    if "&" not in text:
        return text
    return html.unescape(html.unescape(text))


def split_words(text: str) -> list[str]:
    """The words of ``text``: runs of letters, digits and the marks that combine with them, between everything
    else. A mark is part of its word: Thai tone marks and Devanagari vowel signs tell words apart (ข่าว, news, is
    not ข้าว, rice)."""
    if text.isascii():
        return WORD.findall(text)
    return text.translate(_WORD_BREAKS).split()


def normalize_title(title: str) -> str:
    """A title's canonical form: NFKC, case-folded, known source decorations and punctuation removed, its
    :func:`canonical_form`."""
    return canonical_form(title_words(title))


def canonical_form(words: list[str]) -> str:
    """Words as the exact tier compares them, sorted and joined by single spaces: each word once, except that a number
    (:func:`number_runs`) is kept as often as it occurs. A repeated word adds nothing ("YOLO: YOLO object detection"),
    but a repeated number is another version ("Llama 3.3" is not "Llama 3"), and so are the same digits in another
    order ("PyTorch 2.1" is not "PyTorch 1.2"); numbers apart may move ("GPT-4 vs Llama 2" is "Llama 2 vs GPT-4")."""
    return form_and_numbers(words)[0]


def form_and_numbers(words: list[str]) -> tuple[str, str]:
    """A title's :func:`canonical_form` and its numbers (:func:`number_runs`, sorted, joined by single spaces; empty if
    it has none), read in one pass: a check needs both, the form for its key and the numbers for its buckets."""
    if all(word.isalpha() for word in words):
        return " ".join(sorted(set(words))), ""
    # Not all letters: a digit, or a combining mark (Thai, Devanagari), which is no number.
    runs, others = _numbers_and_others(words)
    runs.sort()
    return " ".join(sorted([*set(others), *runs])), " ".join(runs)


def number_runs(words: list[str]) -> list[str]:
    """A title's numbers in order: each run of adjacent words with a digit, joined by ``.`` ("2.1", "v1.2", "3.70b"),
    so that the order of a number's parts counts and the order of numbers apart does not. No word holds a ``.``: a
    joined number is never a word."""
    return _numbers_and_others(words)[0]


def _numbers_and_others(words: list[str]) -> tuple[list[str], list[str]]:
    """:func:`number_runs` and the other words (letters, or letters with combining marks: no number), in one pass."""
    runs: list[str] = []
    others: list[str] = []
    run: list[str] = []
    for word in words:
        if not word.isalpha() and DIGITS.search(word):
            run.append(word)
            continue
        others.append(word)
        if run:
            runs.append(".".join(run))
            run = []
    if run:
        runs.append(".".join(run))
    return runs, others


def blake2b_function(digest_size: int, person: bytes) -> Callable[[bytes], bytes]:
    """The BLAKE2b digest function of one size and personalisation: copying a hasher made once costs a
    quarter of making one per call."""
    made = hashlib.blake2b(digest_size=digest_size, person=person)

    def digest(data: bytes) -> bytes:
        hasher = made.copy()
        hasher.update(data)
        return hasher.digest()

    return digest


_key_hash: Final = blake2b_function(REF_BYTES, b"tagger-key")


def key_digest(normalized: str) -> bytes:
    """The 8-byte digest of a normalised title: its dedupe key, in bytes."""
    return _key_hash(normalized.encode())


def dedupe_key(title: str) -> str:
    """The exact-tier key of a title: 16 hex digits of the BLAKE2b hash of its normalised form."""
    return key_digest(normalize_title(title)).hex()


def unb64(text: str) -> bytes:
    """The bytes of base64url ``text`` given without its padding (a ref)."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


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


def ref_number(ref: str) -> int:
    """A ref as the number the in-memory indexes keep: its digest, big-endian."""
    return int.from_bytes(unb64(ref), "big")


def ref_of(number: int) -> str:
    """The ref of a :func:`ref_number`."""
    return ref_of_digest(number.to_bytes(REF_BYTES, "big"))
