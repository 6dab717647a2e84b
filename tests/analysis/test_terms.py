"""Terms of a post, the k-author pool rule and the rising-terms ranking, on fixtures whose
expected values were worked out by hand (the arithmetic is in the comments)."""

from __future__ import annotations

import math
import random
import re
import unicodedata

import pytest

from monitor.analysis import terms as term_module
from monitor.analysis.terms import (
    MAX_TERM_CHARS,
    MAX_TERMS_PER_POST,
    STOP_WORDS,
    RankingRules,
    TermHistory,
    _word,
    post_terms,
    rising_terms,
    term_label,
)
from monitor.author_pool import pooled_counts
from monitor.store.models import TERM_CHARS

DAY = 86400
D = 1717200000  # 2024-06-01T00:00:00Z


def test_words_and_adjacent_pairs_without_stop_words() -> None:
    assert post_terms("The PAY CUT hit us hard") == {
        "pay",
        "cut",
        "hit",
        "hard",
        "pay cut",
        "cut hit",
        # "us" is a stop word, so "hit" and "hard" are not adjacent
    }


def test_mentions_links_addresses_and_numbers_are_dropped_and_break_phrases() -> None:
    text = (
        "ask @bob_smith or u/jane_doe, see https://x.example/a?b=1 "
        "mail me@x.example about 15 dollars 2fa codes"
    )
    assert post_terms(text) == {"ask", "mail", "dollars", "codes"}


def test_punctuation_ends_a_phrase_and_possessives_fold() -> None:
    assert post_terms("Onboarding queue. Company\u2019s pay") == {
        "onboarding",
        "queue",
        "onboarding queue",
        "company",
        "pay",
        "company pay",
    }


@pytest.mark.parametrize("text", ["", "the and of", "12 34 5.6", "@a @b", "a b c"])
def test_texts_with_no_terms(text: str) -> None:
    assert post_terms(text) == frozenset()


def test_hostile_text_gives_bounded_plain_terms() -> None:
    text = "x" * 5000 + " \u202eevil\u202c \x00nul " + " ".join(f"w{i}x" for i in range(3000))
    terms = post_terms(text + " " + " ".join(f"word{chr(97 + i % 26)}" for i in range(2000)))
    assert all(len(t) <= MAX_TERM_CHARS for t in terms)
    assert len(terms) <= 400
    assert "evil" in terms and "nul" in terms
    assert all(term_label(t) == t for t in terms)


def _one_word_at_a_time(text: str) -> frozenset[str]:
    """The rule spelled out for texts of lower-case words, stop words, numbers and stand-alone
    punctuation separated by spaces: each word a term, each pair of adjacent words a phrase,
    stopping once MAX_TERMS_PER_POST - 1 terms are reached."""
    terms: set[str] = set()
    previous = None
    for token in text.split():
        word = token if token.isalpha() and token not in STOP_WORDS else None
        if word is None:
            previous = None
            continue
        terms.add(word)
        if previous is not None:
            terms.add(f"{previous} {word}")
        if len(terms) >= MAX_TERMS_PER_POST - 1:
            break
        previous = word
    return frozenset(terms)


@pytest.mark.parametrize("seed", range(4))
def test_short_and_long_posts_follow_the_word_by_word_rule(seed: int) -> None:
    """Short posts are taken whole, long ones word by word up to the cap: both give what
    the rule gives, including posts just under, at and over the length where the cap can
    bite (MAX_TERMS_PER_POST / 2 tokens)."""
    chance = random.Random(seed)
    vocabulary = [f"q{chr(97 + i)}{chr(97 + j)}" for i in range(26) for j in range(26)]
    vocabulary += ["the", "and", "of", "42", "7", ".", ",", "!", "?", "(", ")"]
    half = MAX_TERMS_PER_POST // 2
    lengths = [0, 1, 2, 5, 30, half - 2, half - 1, half, half + 1, 2 * half, 900]
    for length in lengths:
        text = " ".join(chance.choice(vocabulary) for _ in range(length))
        assert post_terms(text) == _one_word_at_a_time(text), length
    distinct = " ".join(vocabulary[:300])  # 300 words, 299 phrases: the cap stops it
    capped = post_terms(distinct)
    assert capped == _one_word_at_a_time(distinct)
    assert len(capped) == MAX_TERMS_PER_POST - 1  # 200 words and 199 phrases
    assert "qha qhb" in capped and vocabulary[199] in capped and vocabulary[200] not in capped


def test_small_caches_that_empty_often_give_the_same_terms(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The chunk and phrase caches are emptied when full: with room for a handful of
    entries (emptied at nearly every post), terms are still those of the rule."""
    monkeypatch.setattr(term_module, "_CACHED_CHUNKS", 5)
    monkeypatch.setattr(term_module, "_CACHED_PHRASES", 5)
    monkeypatch.setattr(term_module, "_CHUNK_WORDS", term_module._ChunkWords())
    monkeypatch.setattr(term_module, "_PHRASES", term_module._Phrases())
    chance = random.Random(11)
    vocabulary = ["pay", "rate", "the", "queue", "42", ".", ",", "!", "docs", "help", "of"]
    for _ in range(300):
        text = " ".join(chance.choice(vocabulary) for _ in range(chance.randint(0, 12)))
        assert post_terms(text) == _one_word_at_a_time(text), text
        assert len(term_module._PHRASES) <= 5 and len(term_module._CHUNK_WORDS) <= 5


def test_white_space_and_punctuation_split_tokens_as_one_pass_over_the_text() -> None:
    """Words are looked up per white-space separated chunk; that gives the tokens one regex
    pass over the whole text gives, for every kind of white space and punctuation inside
    or around words."""
    pieces = [
        "pay",
        "cut",
        "queue.",
        "(rival",
        "platform)",
        "don't",
        "co-op",
        "it's",
        "x",
        "--",
        "'quoted'",
        "a.b.c",
        "end!?",
        "42nd",
        "snake_case",
        "\u00e9t\u00e9",
        "the",
    ]
    spaces = [" ", "  ", "\t", "\n", "\x1c", "\x1f", "\x85", "\u2003", "\u3000", "\xa0"]
    chance = random.Random(3)
    for _ in range(200):
        parts = [
            chance.choice(pieces) + chance.choice(spaces) for _ in range(chance.randint(1, 30))
        ]
        text = "".join(parts)
        normal = unicodedata.normalize("NFKC", text).lower()
        words = [_word(t) for t in re.findall(r"[\w'-]+|[^\w\s'-]", normal)]
        expected = {w for w in words if w} | {
            f"{a} {b}" for a, b in zip(words, words[1:], strict=False) if a and b
        }
        assert post_terms(text) == expected, text


def test_term_label_keeps_letters_apostrophes_hyphens_and_single_spaces() -> None:
    assert term_label("pay\ncut\u202e_9 {x}") == "pay cut x"
    assert len(term_label("q" * 500)) == MAX_TERM_CHARS
    assert MAX_TERM_CHARS == TERM_CHARS


def test_ranking_on_a_hand_computed_fixture() -> None:
    found = rising_terms(
        recent={"pay cut": 10, "app": 30, "rare": 2, "onboarding": 6, "falling": 3},
        baseline={"app": 200, "onboarding": 1, "falling": 7},
        recent_posts=100,
        baseline_posts=400,
    )
    # pay cut: E = 100 * (0 + 0.5) / 400 = 0.125; 10 ln(10/0.125) - (10 - 0.125) = 33.9453
    # onboarding: E = 100 * 1.5 / 400 = 0.375; 6 ln(16) - 5.625 = 11.0105
    # falling: E = 100 * 7.5 / 400 = 1.875; 3 ln(1.6) - 1.125 = 0.2850
    # app: 200 / 400 = 50 % of the baseline: already common; rare: 2 < min_count 3
    assert [t.term for t in found] == ["pay cut", "onboarding", "falling"]
    assert [round(t.score, 4) for t in found] == [33.9453, 11.0105, 0.285]
    assert [t.count for t in found] == [10, 6, 3]
    assert [t.baseline_rate for t in found] == [0.0, 0.0025, 0.0175]
    assert found[0].expected == 0.125
    assert math.isclose(found[0].score, 10 * math.log(80) - 9.875)


def test_a_term_at_or_below_its_expected_count_does_not_rise() -> None:
    # E = 300 * 7.5 / 400 = 5.625 >= 4
    found = rising_terms(
        recent={"flat": 4}, baseline={"flat": 7}, recent_posts=300, baseline_posts=400
    )
    assert found == []


def test_volume_counts_more_than_a_ratio() -> None:
    """Same share of posts, ten times the evidence: the bigger community's term scores higher."""
    small = rising_terms(recent={"t": 3}, baseline={}, recent_posts=30, baseline_posts=120)
    large = rising_terms(recent={"t": 30}, baseline={}, recent_posts=300, baseline_posts=1200)
    assert small[0].score < large[0].score


def test_no_baseline_no_ranking_and_limit_holds() -> None:
    assert rising_terms(recent={"t": 9}, baseline={}, recent_posts=9, baseline_posts=0) == []
    many = {f"t{chr(97 + i)}": 5 + i for i in range(20)}
    found = rising_terms(recent=many, baseline={}, recent_posts=100, baseline_posts=100, limit=5)
    assert [t.term for t in found] == ["tt", "ts", "tr", "tq", "tp"]


def test_pool_keeps_a_term_only_when_k_distinct_authors_used_it() -> None:
    days = {
        D - 3 * DAY: {"pair": (1, {"c"})},  # outside the pool of D with pool_days 3 (D-2..D+2)
        D - 2 * DAY: {"pay cut": (1, {"a"})},
        D - 1 * DAY: {"pay cut": (1, {"b"}), "solo": (2, {"a"})},
        D: {"pay cut": (3, {"c", "a"}), "solo": (1, {"a"}), "pair": (2, {"a", "b"})},
        D + 2 * DAY: {"solo": (2, {"a", "d"})},
    }
    # pay cut: authors {a, b, c} over D-2..D+2 = 3 >= k; its day D count is 3 posts by 2
    # solo: {a, d}; pair: {a, b} (c's use is a day too far)
    assert pooled_counts(days, day=D, k=3, pool_days=3) == {"pay cut": (3, 2)}
    # pool_days 4 (D-3..D+3) reaches c's "pair"
    assert pooled_counts(days, day=D, k=3, pool_days=4) == {"pay cut": (3, 2), "pair": (2, 2)}
    # pool_days 1: the day alone
    assert pooled_counts(days, day=D, k=2, pool_days=1) == {"pay cut": (3, 2), "pair": (2, 2)}
    # the pool looks forward too: d's use two days later makes "solo" two authors
    assert pooled_counts(days, day=D, k=2, pool_days=3) == {
        "pay cut": (3, 2),
        "pair": (2, 2),
        "solo": (1, 1),
    }
    assert "solo" not in pooled_counts(days, day=D, k=2, pool_days=2)


def test_history_ranks_the_recent_window_against_the_days_before() -> None:
    today = D
    posts = {today - i * DAY: 10 for i in range(40)}
    term_posts = {today - i * DAY: {"pay cut": 2} for i in range(3)}  # the last 3 days
    term_posts[today - 20 * DAY] = {"old": 4}
    history = TermHistory(
        today=today,
        first_day=today - 34 * DAY,
        baseline_days=28,
        term_posts=term_posts,
        posts=posts,
    )
    found = history.rising(days=7)
    # recent: 7 days x 10 = 70 posts, "pay cut" 6; baseline: 28 x 10 = 280, "old" 4 (1.43 %)
    # E = 70 * 0.5 / 280 = 0.125; 6 ln(48) - 5.875 = 17.3522
    assert [(t.term, t.count, round(t.score, 4)) for t in found] == [("pay cut", 6, 17.3522)]
    # a 2-day window: 20 posts, 4 uses; baseline days -29..-2 hold 2 posts on day -2
    # rate 2 / 280; E = 20 * 2.5 / 280 = 0.17857; 4 ln(22.4) - 3.82143 = 8.6148
    two = history.rising(days=2)
    assert [(t.term, t.count, round(t.score, 4)) for t in two] == [("pay cut", 4, 8.6148)]
    # retention cut: only 10 baseline days are left, so the baseline has 100 posts
    short = TermHistory(
        today=today,
        first_day=today - 16 * DAY,
        baseline_days=28,
        term_posts=term_posts,
        posts=posts,
    )
    # E = 70 * 0.5 / 100 = 0.35; 6 ln(6 / 0.35) - 5.65 = 11.3995
    assert round(short.rising(days=7)[0].score, 4) == 11.3995


def test_ranking_rules_apply() -> None:
    rules = RankingRules(min_count=7, common_share=0.5)
    found = rising_terms(
        recent={"a": 6, "b": 7}, baseline={}, recent_posts=10, baseline_posts=10, rules=rules
    )
    assert [t.term for t in found] == ["b"]


def test_a_rising_phrase_stands_for_its_words() -> None:
    found = rising_terms(
        recent={"pay cut": 8, "pay": 9, "cut": 20, "queue": 5},
        baseline={},
        recent_posts=100,
        baseline_posts=100,
    )
    # "pay": the phrase has 8 of its 9 uses (>= 80 %): said by "pay cut"; "cut": 8 of 20, kept
    assert [t.term for t in found] == ["cut", "pay cut", "queue"]
