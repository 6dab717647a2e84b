"""What a community talks about: the terms of a post, and which of them rise.

``post_terms`` turns a post's text into its terms: lower-cased words and two-word
phrases of adjacent words, with stop words, numbers, links, e-mail addresses and
user mentions left out (a mention names a person; a term must not). A dropped
token or sentence punctuation ends a phrase, so no phrase spans a removed word.

``rising_terms`` ranks terms by how surprising their count in a recent window is
against the share of posts that held them in the baseline before it: the Poisson
log-likelihood ratio ``c ln(c/E) - (c - E)`` of the count ``c`` against the count
``E`` the baseline share predicts for the recent window's posts. The statistic
grows with evidence, not with a ratio alone, so three uses of a never-seen term in
a large community do not outrank forty uses in a small one by accident.

The privacy rule that decides which counts exist at all is ``monitor.author_pool``.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import chain, pairwise

MAX_WORD_CHARS = 32
"""Longer "words" are pasted identifiers or junk; they are dropped."""
MAX_TERM_CHARS = 2 * MAX_WORD_CHARS + 1
MAX_TERMS_PER_POST = 400
"""A post counts at most this many distinct terms (a pasted log cannot flood the table)."""

STOP_WORDS = frozenset(
    """
    a about above after again against ain all am an and any are aren aren't as at be
    because been before being below between both but by can can't cannot could couldn
    couldn't d did didn didn't do does doesn doesn't doing don don't down during each
    else ever few for from further get gets got had hadn hadn't has hasn hasn't have
    haven haven't having he he'd he'll he's her here here's hers herself him himself his
    how how's i i'd i'll i'm i've if im in into is isn isn't it it'd it'll it's its itself
    just let's ll m ma may me might mightn mightn't more most much must mustn mustn't my
    myself needn needn't no nor not now o of off on once one only or other ought our
    ours ourselves out over own re s same shan shan't she she'd she'll she's should
    should've shouldn shouldn't so some such t than that that'll that's the their theirs
    them themselves then there there's these they they'd they'll they're they've this
    those through to too under until up us ve very was wasn wasn't we we'd we'll we're
    we've were weren weren't what what's when when's where where's which while who who's
    whom why why's will with won won't would wouldn wouldn't y yes you you'd you'll you're
    you've your yours yourself yourselves
    also anyone anything really still even like lot lots thing things way well yeah
    ok okay oh hi hello thanks thank please sure maybe actually pretty quite though
    since every many something someone going gonna want wanna know think see say said
    make made take go goes went come back new use used using get getting
    """.split()
)
"""English stop words: NLTK's English list plus common forum filler ("thanks", "yeah")."""

_URL = r"(?:https?://|www\.)\S+"
_EMAIL = r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"
_MENTION = r"(?<![\w/])(?:@[\w.@-]+|/?u/[\w-]+)"
_DROPPED = re.compile(f"{_URL}|{_EMAIL}|{_MENTION}", re.IGNORECASE)
_BREAK = "\x00"
_TOKEN = re.compile(r"[\w'-]+|[^\w\s'-]")
"""A run of word characters, apostrophes and hyphens; or one other visible character, which
ends a phrase (punctuation, symbols, the break left where a link or mention was)."""


def post_terms(text: str) -> frozenset[str]:
    """The distinct terms (words and two-word phrases) of one post's text."""
    if not text:
        return frozenset()
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text).replace("\u2019", "'")
    text = text.lower()
    if "@" in text or "/" in text or "www." in text:  # most posts hold none: skip the scan
        text = _DROPPED.sub(f" {_BREAK} ", text)
    # Tokens never hold white space, so the post's words are those of its white-space
    # separated chunks in order, and a chunk's words are looked up (in C) once computed.
    words = list(chain.from_iterable(map(_CHUNK_WORDS.__getitem__, text.split())))
    if len(words) >= MAX_TERMS_PER_POST // 2:  # enough tokens to reach the cap
        return _capped_terms(words)
    # Fewer tokens cannot reach the cap (a word and a phrase at most per token): the post is
    # taken whole, without a branch per token.
    phrases = filter(None, map(_PHRASES.__getitem__, pairwise(words)))
    return frozenset(chain(filter(None, words), phrases))


def _capped_terms(words: Iterable[str | None]) -> frozenset[str]:
    """``post_terms`` of a long post: word by word, up to ``MAX_TERMS_PER_POST`` terms."""
    terms: set[str] = set()
    previous: str | None = None
    for word in words:
        if word is None:
            previous = None
            continue
        terms.add(word)
        if previous is not None:
            terms.add(f"{previous} {word}")
        if len(terms) >= MAX_TERMS_PER_POST - 1:  # a word and a phrase at most per step
            break
        previous = word
    return frozenset(terms)


def _word(token: str) -> str | None:
    """The token as a term's word, or None where it ends a phrase (a break, punctuation, a
    number, a stop word, a single letter, junk)."""
    token = token.strip("'-")
    if token.endswith("'s"):
        token = token[:-2]
    if len(token) < 2 or len(token) > MAX_WORD_CHARS or token in STOP_WORDS:
        return None
    if not token.replace("'", "").replace("-", "").isalpha():
        return None  # digits, underscores (snake_case names), marks
    return token


class _ChunkWords(dict[str, tuple[str | None, ...]]):
    """White-space separated chunk -> the words of its tokens (``_word``, None where a token
    ends a phrase). Most chunks are words seen before, so a post's lookups are mostly hits
    in C. Long chunks are not kept, and the cache is emptied when full: bounded memory."""

    def __missing__(self, chunk: str) -> tuple[str | None, ...]:
        words = tuple(map(_word, _TOKEN.findall(chunk)))
        if len(chunk) <= _CACHED_CHUNK_CHARS:
            if len(self) >= _CACHED_CHUNKS:
                self.clear()
            self[chunk] = words
        return words


class _Phrases(dict[tuple[str | None, str | None], str | None]):
    """Two adjacent words -> their phrase (None where either ends a phrase). Most pairs of a
    post were seen before: looked up in C, the phrase made once, its hash computed once.
    Emptied when full: bounded memory."""

    def __missing__(self, pair: tuple[str | None, str | None]) -> str | None:
        first, second = pair
        phrase = f"{first} {second}" if first and second else None
        if len(self) >= _CACHED_PHRASES:
            self.clear()
        self[pair] = phrase
        return phrase


_CACHED_PHRASES = 1 << 16
_PHRASES = _Phrases()
_CACHED_CHUNKS = 1 << 16
_CACHED_CHUNK_CHARS = 2 * MAX_WORD_CHARS
_CHUNK_WORDS = _ChunkWords()


_LABEL_SAFE = re.compile(r"[^\w' -]|[\d_]")


def term_label(term: str) -> str:
    """``term`` as a metric label or page text: letters, apostrophes, hyphens and single
    spaces only, at most ``MAX_TERM_CHARS`` long. Terms from ``post_terms`` already are;
    this holds the line for anything read back from the store."""
    cleaned = " ".join(_LABEL_SAFE.sub(" ", term).split())
    return cleaned[:MAX_TERM_CHARS].strip()


@dataclass(frozen=True, slots=True)
class RisingTerm:
    term: str
    count: int
    """Posts holding the term in the recent window."""
    baseline_rate: float
    """Share of the baseline's posts that held the term (0.0 when it was unseen or below k)."""
    expected: float
    """Posts expected to hold it in the recent window at the baseline rate (with the prior)."""
    score: float
    """Poisson log-likelihood ratio of ``count`` against ``expected``; larger rises more."""


@dataclass(frozen=True, slots=True)
class RankingRules:
    min_count: int = 3
    """A term needs this many posts in the recent window to be ranked at all."""
    common_share: float = 0.02
    """Terms in at least this share of the baseline's posts are already common: not rising."""
    prior_posts: float = 0.5
    """Pseudo-count added to a term's baseline posts, so an unseen term's rate is not 0."""
    phrase_share: float = 0.8
    """A rising word is left out when a rising phrase with it has this share of its count."""


def rising_terms(
    *,
    recent: Mapping[str, int],
    baseline: Mapping[str, int],
    recent_posts: int,
    baseline_posts: int,
    rules: RankingRules = RankingRules(),
    limit: int = 20,
) -> list[RisingTerm]:
    """Terms that rise in ``recent`` (posts per term) against ``baseline``, best first.

    ``recent_posts`` and ``baseline_posts`` are all posts of each period, with or without
    the term: the baseline share times the recent volume gives the expected count. With no
    baseline posts nothing can be said to rise, and the list is empty.
    """
    if baseline_posts <= 0 or recent_posts <= 0:
        return []
    found: list[RisingTerm] = []
    for term, count in recent.items():
        if count < rules.min_count:
            continue
        before = baseline.get(term, 0)
        rate = before / baseline_posts
        if rate >= rules.common_share:
            continue
        expected = recent_posts * (before + rules.prior_posts) / baseline_posts
        if count <= expected:
            continue
        score = count * math.log(count / expected) - (count - expected)
        found.append(RisingTerm(term, count, rate, expected, score))
    found.sort(key=lambda t: (-t.score, t.term))
    return _without_words_of_phrases(found, rules.phrase_share)[:limit]


def _without_words_of_phrases(found: list[RisingTerm], share: float) -> list[RisingTerm]:
    """Drop a rising word when a rising phrase holding it accounts for at least ``share`` of
    its count: "pay cut" rising says it, and "pay" and "cut" would only crowd the list."""
    phrases = [t for t in found if " " in t.term]
    said: set[str] = set()
    for word in (t for t in found if " " not in t.term):
        if any(word.term in p.term.split(" ") and p.count >= share * word.count for p in phrases):
            said.add(word.term)
    return [t for t in found if t.term not in said]


def window_totals(daily: Iterable[Mapping[str, int]]) -> dict[str, int]:
    """Posts per term summed over days."""
    total: dict[str, int] = {}
    for counts in daily:
        for term, posts in counts.items():
            total[term] = total.get(term, 0) + posts
    return total


MAX_RECENT_DAYS = 14
"""The longest recent window a ranking may ask for (``/terms?days=``)."""


@dataclass(frozen=True)
class TermHistory:
    """A community's daily term counts and post totals, enough to rank any recent window of
    up to ``MAX_RECENT_DAYS`` days against the ``baseline_days`` before it."""

    today: int
    """UTC midnight of the current (partial) day, the last day of every recent window."""
    first_day: int
    """The oldest day with counts (older ones are past retention): baselines start here."""
    baseline_days: int
    term_posts: Mapping[int, Mapping[str, int]]
    """Day -> term -> posts (k-author rule applied)."""
    posts: Mapping[int, int]
    """Day -> all posts of the day."""

    def rising(
        self, *, days: int = 7, limit: int = 20, rules: RankingRules = RankingRules()
    ) -> list[RisingTerm]:
        """The rising terms of the last ``days`` days (today included) against the
        ``baseline_days`` before them (from ``first_day`` at the earliest)."""
        day = 86400
        recent_start = self.today - (days - 1) * day
        baseline_start = max(recent_start - self.baseline_days * day, self.first_day)
        recent_days = range(recent_start, self.today + day, day)
        baseline_range = range(baseline_start, recent_start, day)
        return rising_terms(
            recent=window_totals(self.term_posts.get(d, {}) for d in recent_days),
            baseline=window_totals(self.term_posts.get(d, {}) for d in baseline_range),
            recent_posts=sum(self.posts.get(d, 0) for d in recent_days),
            baseline_posts=sum(self.posts.get(d, 0) for d in baseline_range),
            rules=rules,
            limit=limit,
        )
