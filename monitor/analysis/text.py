"""Text for scoring: markup stripped, then VADER sentiment and keyword-group matching."""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from functools import lru_cache

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

POSITIVE_THRESHOLD = 0.05
NEGATIVE_THRESHOLD = -0.05
"""Compound-score cut-offs recommended by the VADER authors (Hutto & Gilbert, 2014)."""

_TAG = re.compile(r"<[^>]+>")
_BLOCK_TAG = re.compile(r"</?(?:p|br|div|li|blockquote|h[1-6]|pre|tr)\b[^>]*>", re.IGNORECASE)
_SKIPPED_BLOCK = re.compile(r"<(script|style|aside)\b[^>]*>.*?</\1>", re.IGNORECASE | re.DOTALL)
_SPACE = re.compile(r"\s+")


def strip_markup(text: str) -> str:
    """Plain text from HTML (Discourse ``cooked``, Mastodon ``content``, HN ``text``)."""
    text = _SKIPPED_BLOCK.sub(" ", text)
    text = _BLOCK_TAG.sub("\n", text)
    text = _TAG.sub("", text)
    return _SPACE.sub(" ", html.unescape(text)).strip()


@lru_cache(maxsize=1)
def _analyzer() -> SentimentIntensityAnalyzer:
    return SentimentIntensityAnalyzer()


def sentiment(text: str) -> float:
    """VADER compound score in [-1, 1]; 0.0 for empty text."""
    if not text:
        return 0.0
    return float(_analyzer().polarity_scores(text)["compound"])


class KeywordMatcher:
    """Case-insensitive whole-word/phrase matching of keyword groups.

    A phrase matches where it is not glued to a letter or digit on either side,
    so "rate" matches "the rate dropped" but not "separately", and phrases with
    symbols such as "$/hr" work (a plain ``\\b`` would not match before ``$``).
    """

    def __init__(self, groups: Mapping[str, Sequence[str]]) -> None:
        self._patterns = {
            name: _bounded("|".join(_phrase_pattern(p) for p in _longest_first(phrases)))
            for name, phrases in groups.items()
            if phrases
        }
        # Most posts match no group: one scan with every phrase settles those. Groups may
        # share words ("pay" and "pay cut"), so a hit is then checked group by group.
        every = [_phrase_pattern(p) for phrases in groups.values() for p in phrases]
        self._any = _bounded("|".join(_longest_first(every))) if every else None

    def groups_in(self, text: str) -> list[str]:
        if self._any is None or self._any.search(text) is None:
            return []
        return sorted(name for name, pattern in self._patterns.items() if pattern.search(text))


def _bounded(alternation: str) -> re.Pattern[str]:
    return re.compile(rf"(?<!\w)(?:{alternation})(?!\w)", re.IGNORECASE)


def _longest_first(phrases: Sequence[str]) -> list[str]:
    return sorted(phrases, key=len, reverse=True)


def _phrase_pattern(phrase: str) -> str:
    words = phrase.strip().split()
    return r"\s+".join(re.escape(word) for word in words)
