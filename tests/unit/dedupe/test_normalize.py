"""Normalisation properties and the exact-tier key."""

from __future__ import annotations

import os
import random
import subprocess
import sys

from hypothesis import assume, given
from hypothesis import strategies as st

from stream_app.dedupe import bucket_ids, dedupe_key, normalize_title
from stream_app.dedupe.normalize import DECORATION_END_CHARS, TITLE_FOLDED_CHARS, title_words
from stream_app.dedupe.signatures import DESCRIPTION_FOLDED_CHARS, _description_keys
from tests.unit.dedupe.helpers import ORIGINAL, punctuation_runs, titles, words


@given(
    st.lists(
        st.tuples(
            st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=8), st.none() | st.integers(0, 99)
        ),
        min_size=1,
        max_size=6,
    ),
    st.randoms(use_true_random=False),
)
def test_the_key_ignores_the_order_of_words_and_of_numbers_apart(
    blocks: list[tuple[str, int | None]], rng: random.Random
) -> None:
    def title(parts: list[tuple[str, int | None]]) -> str:
        return " ".join(word if number is None else f"{word} {number}" for word, number in parts)

    shuffled = list(blocks)
    rng.shuffle(shuffled)
    assert dedupe_key(title(shuffled)) == dedupe_key(title(blocks))


@given(titles)
def test_normalisation_ignores_case(title: str) -> None:
    # Letters whose upper case folds to another letter (Turkish dotless i) have no case-free form to compare.
    assume(title.upper().casefold() == title.casefold())
    assert normalize_title(title.upper()) == normalize_title(title.lower()) == normalize_title(title)


@given(st.lists(words, min_size=1, max_size=8), st.data())
def test_normalisation_ignores_whitespace_and_punctuation_runs(parts: list[str], data: st.DataObject) -> None:
    runs = data.draw(st.lists(punctuation_runs, min_size=len(parts) + 1, max_size=len(parts) + 1))
    messy = runs[0] + "".join(part + run for part, run in zip(parts, runs[1:], strict=True))
    assert normalize_title(messy) == normalize_title(" ".join(parts))
    assert normalize_title("  " + "   ".join(parts) + "\t") == normalize_title(" ".join(parts))


@given(titles, st.sampled_from([" | Reddit", " - Medium", " - YouTube", " - Towards Data Science", " | Medium"]))
def test_normalisation_ignores_source_suffixes(title: str, decoration: str) -> None:
    assert normalize_title(title + decoration) == normalize_title(title)
    assert normalize_title(title + decoration.upper()) == normalize_title(title)


@given(titles, st.sampled_from(["[P] ", "[R] ", "[D] ", "[N] ", "[p]"]))
def test_normalisation_ignores_source_prefixes(title: str, decoration: str) -> None:
    assert normalize_title(decoration + title) == normalize_title(title)


def test_only_known_decorations_are_stripped() -> None:
    assert normalize_title("Baymax - ChatBot").split() == ["baymax", "chatbot"]
    assert normalize_title("Medium - Rare - Well done steaks").split() == ["done", "medium", "rare", "steaks", "well"]
    assert normalize_title("[Q] Title") == "q title"


@given(titles, st.sampled_from([" : r/MachineLearning", " | by Ann Lee | Medium", " - by Bo - Towards Data Science"]))
def test_normalisation_ignores_page_title_suffixes_with_an_author_or_a_subreddit(title: str, decoration: str) -> None:
    assert normalize_title(title + decoration) == normalize_title(title)


@given(titles, st.sampled_from(["[1706.03762] ", "[2401.01234v2] ", "Show HN: ", "Ask HN:", "[P] Show HN: "]))
def test_normalisation_ignores_arxiv_ids_and_hacker_news_prefixes(title: str, decoration: str) -> None:
    assert normalize_title(decoration + title) == normalize_title(title)


@given(
    titles,
    st.sampled_from([" - Towards Data Science", " | Hacker News", " - Papers with Code", " | by Ann Lee | Medium"]),
    st.lists(st.sampled_from([" ", "  ", "\t", "\n", " \u00a0"]), min_size=6, max_size=6),
)
def test_decorations_are_stripped_whatever_spaces_part_their_words(
    title: str, decoration: str, spaces: list[str]
) -> None:
    parts = decoration.split(" ")
    spaced = parts[0] + "".join(space + part for space, part in zip(spaces, parts[1:], strict=False))
    assert normalize_title(title + spaced) == normalize_title(title)


def test_stacked_decorations_longer_than_the_end_searched_at_a_time_all_go() -> None:
    stacked = " | Reddit" * 40 + " - by Ann Lee - Medium" * 10
    assert len(stacked) > 2 * DECORATION_END_CHARS
    assert normalize_title("Graph networks \t " + stacked + "  ") == normalize_title("Graph networks")
    assert normalize_title("[P]  " * 50 + "Show HN:   Graph networks") == normalize_title("Graph networks")


def test_decorations_need_their_whole_form() -> None:
    assert normalize_title("Data | by the numbers").split() == ["by", "data", "numbers", "the"]
    assert normalize_title("Why: the story") == "story the why"
    assert normalize_title("[1706] Title") == "1706 title"
    assert normalize_title("Show HN 2024: the year") == "2024 hn show the year"


def test_html_character_references_are_read_as_the_characters_they_stand_for() -> None:
    assert dedupe_key("Tips &amp; Tricks for Training LLMs") == dedupe_key("Tips & Tricks for Training LLMs")
    assert dedupe_key("Don&#39;t Use BatchNorm") == dedupe_key("Don't Use BatchNorm")
    assert dedupe_key("&quot;Attention&quot; explained") == dedupe_key('"Attention" explained')
    assert dedupe_key("Tips &amp;amp; Tricks") == dedupe_key("Tips & Tricks")  # escaped twice
    assert dedupe_key("Caf&eacute; &#x1F600; data") == dedupe_key("Café 😀 data")


def test_emoji_presentation_marks_are_not_words() -> None:
    assert normalize_title("\u26a1\ufe0f Attention Is All You Need") == normalize_title("Attention Is All You Need")
    assert normalize_title("1\ufe0f\u20e3 Attention") == normalize_title("1 Attention")
    assert normalize_title("\u26a1\ufe0f") == normalize_title("\U0001f525\ufe0f") == ""


def test_the_key_is_short_fixed_size_and_ignores_word_order() -> None:
    key = dedupe_key("Deep Learning for Vision")
    assert len(key) == 16 and int(key, 16) >= 0
    assert dedupe_key("vision: deep learning, for") == key
    assert dedupe_key("Deep Learning for Language") != key


def test_a_repeated_number_is_another_version_and_a_repeated_word_is_not() -> None:
    assert dedupe_key("Llama 3.3 70B: what changed") != dedupe_key("Llama 3 70B: what changed")
    assert dedupe_key("TensorFlow 2.2 release notes") != dedupe_key("TensorFlow 2 release notes")
    assert dedupe_key("PyTorch 2.2.2 is out") == dedupe_key("is out: PyTorch 2.2.2")
    assert dedupe_key("YOLO: YOLO object detection") == dedupe_key("YOLO object detection")
    # A word with a combining mark is not all letters to str.isalpha, and has no number either.
    assert dedupe_key("ข่าว: ข่าว กีฬา วันนี้") == dedupe_key("ข่าว กีฬา วันนี้")
    assert dedupe_key("नया: नया मॉडल जारी") == dedupe_key("नया मॉडल जारी")
    assert dedupe_key("मॉडल ३ मॉडल ३") != dedupe_key("मॉडल ३")  # Devanagari digits are numbers


def test_the_same_digits_in_another_order_are_another_version_and_numbers_apart_may_move() -> None:
    assert dedupe_key("PyTorch 2.1 released") != dedupe_key("PyTorch 1.2 released")
    assert dedupe_key("YOLOv5 v1.2 notes") != dedupe_key("YOLOv5 v2.1 notes")
    assert dedupe_key("Llama 3 70B: what changed") != dedupe_key("Llama 70B 3: what changed")
    assert dedupe_key("GPT-4 vs Llama 2") == dedupe_key("Llama 2 vs GPT-4")
    assert dedupe_key("PyTorch 2.1 released") == dedupe_key("Released: PyTorch 2.1")
    assert dedupe_key("PyTorch 2.1 released") == dedupe_key("PyTorch 2 1 released")


def test_marks_belong_to_their_words_so_words_that_differ_by_a_mark_stay_apart() -> None:
    assert dedupe_key("ข่าว ปัญญาประดิษฐ์ ล่าสุด") != dedupe_key("ข้าว ปัญญาประดิษฐ์ ล่าสุด")  # news, rice
    assert dedupe_key("दिन भर में मशीन लर्निंग") != dedupe_key("दान भर में मशीन लर्निंग")  # day, donation
    assert normalize_title("ข่าว: ล่าสุด!") == "ข่าว ล่าสุด"
    assert normalize_title("Café_au-lait, naïve") == normalize_title("cafe\u0301 au lait nai\u0308ve")  # NFKC


@given(titles, st.data())
def test_invisible_format_characters_inside_words_are_ignored(title: str, data: st.DataObject) -> None:
    """Scraped HTML keeps soft hyphens and zero-width characters inside words, where no reader sees them."""
    at = data.draw(st.integers(0, len(title)))
    hidden = data.draw(st.sampled_from(["\xad", "\u200b", "\u200c", "\u2060", "\ufeff"]))
    assert normalize_title(title[:at] + hidden + title[at:]) == normalize_title(title)


INVISIBLE = st.sampled_from(["\xad", "\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u061c"])
LETTERS_AND_MARKS = st.lists(
    st.sampled_from(["e\u0301", "a\u0308", "o\u0323\u0302", "c\u0327", "n\u0303", "A\u030a", "\u1112\u1161\u11ab",
                     "\u1100\u1173", "\u0915\u093f", "e", " "]),
    min_size=1, max_size=6,
).map("".join)  # fmt: skip
"""Letters with the marks NFKC composes with them (and reorders among themselves), Hangul jamo that NFKC joins."""


@given(LETTERS_AND_MARKS, st.lists(st.tuples(st.integers(0, 18), INVISIBLE), min_size=1, max_size=3))
def test_invisible_characters_between_a_letter_and_its_marks_are_ignored(
    title: str, hidden: list[tuple[int, str]]
) -> None:
    """NFKC composes a letter with the marks after it only when nothing stands between them: an invisible character
    there must not leave "e" and an accent two characters, another word than "é"."""
    shown = title
    for at, character in sorted(hidden, reverse=True):
        at = min(at, len(title))
        shown = shown[:at] + character + shown[at:]
    assert normalize_title(shown) == normalize_title(title)


def test_a_soft_hyphen_before_an_accent_or_a_zero_width_space_between_jamo_changes_no_key() -> None:
    assert dedupe_key("Cafe\xad\u0301 au lait") == dedupe_key("Café au lait") == dedupe_key("Cafe&shy;&#x301; au lait")
    assert dedupe_key("\u1112\u200b\u1161\u11ab \uad6d\uc5b4 \ubaa8\ub378") == dedupe_key("한 국어 모델")


def test_keys_do_not_depend_on_the_process() -> None:
    """No salted Python hash(): another interpreter with another hash seed computes the same keys."""
    code = (
        "from stream_app.dedupe import bucket_ids, dedupe_key, normalize_title as n;"
        f"t = {ORIGINAL!r}; print(dedupe_key(t), *bucket_ids(n(t).split()))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    output = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert output.stdout.split() == [dedupe_key(ORIGINAL), *map(str, bucket_ids(normalize_title(ORIGINAL).split()))]


def test_a_title_whose_folded_text_grows_past_the_limit_is_read_only_up_to_it() -> None:
    """NFKC makes 18 characters of U+FDFA: a title of 1,000 of them, within the input contract, was 18,000 characters
    of letter pairs for every check of its batch (a batch of 256 took 5 s and 615 MiB). A title within the limit
    keeps all of its words."""
    hostile = title_words("\ufdfa" * 1000)
    assert len(" ".join(hostile)) <= TITLE_FOLDED_CHARS
    ordinary = " ".join(["transformers"] * 80)  # 1,039 characters, within the contract's 1,000 after a cut
    assert title_words(ordinary[:1000]) == ordinary[:1000].split()
    assert title_words("ﬁne-tuning ½ " * 70) == ["fine", "tuning", "1", "2"] * 70


def test_a_description_whose_folded_start_grows_past_the_limit_is_signed_only_up_to_it() -> None:
    assert len(_description_keys("\ufdfa" * 1000)) <= (DESCRIPTION_FOLDED_CHARS + 1) // 2
    assert len(_description_keys("word " * 200)) == 200


@given(
    titles,
    st.sampled_from(
        [
            " | by Ann Lee | Towards AI | Medium",
            " - DEV Community",
            " / X",
            " - Stack Overflow",
            " | by Ann Lee | Level Up Coding | Medium",
        ]
    ),
)
def test_normalisation_ignores_the_page_title_suffixes_of_medium_publications_dev_x_and_stack_overflow(
    title: str, decoration: str
) -> None:
    assert normalize_title(title + decoration) == normalize_title(title)


@given(titles, st.sampled_from(["GitHub - ", "Paper page - ", "r/MachineLearning on Reddit: ", "Paper Page – "]))
def test_normalisation_ignores_the_page_title_prefixes_of_github_hugging_face_papers_and_reddit(
    title: str, decoration: str
) -> None:
    # "GitHub - Medium" reads either way: the title "Medium" on GitHub, or "GitHub" on Medium (a suffix wins).
    assume(normalize_title("word - " + title) == normalize_title("word " + title))
    assert normalize_title(decoration + title) == normalize_title(title)


def test_page_title_forms_need_their_whole_form() -> None:
    assert normalize_title("GitHub Copilot - a review").split() == ["a", "copilot", "github", "review"]
    assert normalize_title("Paper page layout with transformers").split() == [
        "layout", "page", "paper", "transformers", "with",
    ]  # fmt: skip
    assert normalize_title("Input / output").split() == ["input", "output"]
    assert normalize_title("Ranking | by relevance | Solr").split() == ["by", "ranking", "relevance", "solr"]


def test_inline_html_tags_styled_letters_and_a_turkish_capital_i_read_as_the_plain_title() -> None:
    plain = "Attention is all you need explained"
    for styled in [
        "<b>Attention</b> is all you <em>need</em> explained",
        "ᴀᴛᴛᴇɴᴛɪᴏɴ is all you need explained",
        "A\u0332t\u0332t\u0332e\u0332n\u0332t\u0332i\u0332o\u0332n\u0332 is all you need e\u0336x\u0336plained",
    ]:
        assert dedupe_key(styled) == dedupe_key(plain), styled
    assert dedupe_key("İstanbul traffic prediction") == dedupe_key("Istanbul traffic prediction")
    assert normalize_title("Is a<b true in numpy").split() == ["a", "b", "in", "is", "numpy", "true"]
    assert normalize_title("Çağrı") != normalize_title("Cagri")  # real letters with marks stay as they are
    # Descriptions are read the same way.
    assert _description_keys("ᴀᴛᴛᴇɴᴛɪᴏɴ in İstanbul, e\u0336x\u0336plained") == _description_keys(
        "attention in istanbul, explained"
    )
