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
            name: re.compile(
                "|".join(
                    rf"(?<![\w]){_phrase_pattern(p)}(?![\w])"
                    for p in sorted(phrases, key=len, reverse=True)
                ),
                re.IGNORECASE,
            )
            for name, phrases in groups.items()
            if phrases
        }

    def groups_in(self, text: str) -> list[str]:
        return sorted(name for name, pattern in self._patterns.items() if pattern.search(text))


def _phrase_pattern(phrase: str) -> str:
    words = phrase.strip().split()
    return r"\s+".join(re.escape(word) for word in words)
