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
        # Cheaper still: a phrase matches only where each of its words occurs, so an ASCII
        # text holding, in lower case, no phrase's every word cannot match (for ASCII text
        # and phrases, ignoring case is ASCII case folding, which ``lower`` is). Non-ASCII
        # phrases fold in ways ``lower`` does not (U+017F matches "s"): no shortcut then.
        words = [p.lower().split() for phrases in groups.values() for p in phrases]
        ascii_only = all(p.isascii() for phrases in groups.values() for p in phrases)
        self._needles = words if ascii_only else None

    def groups_in(self, text: str) -> list[str]:
        if self._any is None:
            return []
        if self._needles is not None and text.isascii():
            lowered = text.lower()
            for needles in self._needles:
                for needle in needles:
                    if needle not in lowered:
                        break
                else:
                    break  # every word of this phrase is there: the scan decides
            else:
                return []
        if self._any.search(text) is None:
            return []
        return sorted(name for name, pattern in self._patterns.items() if pattern.search(text))


def _bounded(alternation: str) -> re.Pattern[str]:
    return re.compile(rf"(?<!\w)(?:{alternation})(?!\w)", re.IGNORECASE)


def _longest_first(phrases: Sequence[str]) -> list[str]:
    return sorted(phrases, key=len, reverse=True)


def _phrase_pattern(phrase: str) -> str:
    words = phrase.strip().split()
    return r"\s+".join(re.escape(word) for word in words)
