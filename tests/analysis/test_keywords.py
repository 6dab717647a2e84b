"""Keyword groups: the matcher's shortcuts give what one case-insensitive scan per phrase
gives."""

from __future__ import annotations

import random
import re

import pytest

from monitor.analysis.text import KeywordMatcher

GROUPS = {
    "pay": ["pay rate", "$/hr", "pay cut"],
    "onboarding": ["unpaid onboarding"],
    "cafe": ["café"],
    "sale": ["ſale"],  # a long s: under IGNORECASE it matches "s" and "S" too
}

ASCII_ONLY = {"pay", "onboarding"}


def reference(groups: dict[str, list[str]], text: str) -> list[str]:
    """Each phrase on its own: its words separated by white space, not glued to a letter or
    digit on either side, case ignored."""

    def found(phrase: str) -> bool:
        words = r"\s+".join(re.escape(word) for word in phrase.split())
        return re.search(rf"(?<!\w)(?:{words})(?!\w)", text, re.IGNORECASE) is not None

    return sorted(name for name, phrases in groups.items() if any(map(found, phrases)))


@pytest.mark.parametrize(
    ("text", "groups"),
    [
        ("the PAY RATE dropped", ["pay"]),
        ("pay\n\t rate", ["pay"]),
        ("rate of pay", []),  # both words, not the phrase
        ("separately paid, pay rated", []),  # glued to letters
        ("now 12 $/HR", ["pay"]),
        ("now 12$/hr", []),  # glued to a digit
        ("Unpaid Onboarding again", ["onboarding"]),
        ("CAFÉ open", ["cafe"]),
        ("big SALE today", ["sale"]),  # ASCII text, a non-ASCII phrase
        ("big ſale", ["sale"]),
        ("Ünïcode pay rate", ["pay"]),
        ("", []),
    ],
)
def test_groups_in(text: str, groups: list[str]) -> None:
    assert KeywordMatcher(GROUPS).groups_in(text) == groups == reference(GROUPS, text)
    # the same without the non-ASCII phrases, where ASCII texts take the shortcut
    ascii_groups = {name: phrases for name, phrases in GROUPS.items() if name in ASCII_ONLY}
    expected = [name for name in groups if name in ASCII_ONLY]
    assert KeywordMatcher(ascii_groups).groups_in(text) == expected


def test_ascii_phrases_agree_with_the_reference_on_random_texts() -> None:
    ascii_groups = {"pay": ["pay rate", "$/hr"], "onboarding": ["unpaid onboarding"]}
    matcher = KeywordMatcher(ascii_groups)
    chance = random.Random(3)
    words = ["pay", "PAY", "rate", "Rate", "rated", "$/hr", "$/HR", "unpaid", "onboarding"]
    words += ["x", "\n", "-", "ſ", "K", "café", "12", "pay-rate", "(pay", "rate)"]
    matched = 0
    for _ in range(3000):
        text = " ".join(chance.choice(words) for _ in range(chance.randint(0, 6)))
        expected = reference(ascii_groups, text)
        assert matcher.groups_in(text) == expected, text
        matched += bool(expected)
    assert 300 < matched < 2700  # both outcomes well exercised


def test_no_groups_match_nothing() -> None:
    assert KeywordMatcher({}).groups_in("pay rate") == []
