"""Rising terms on simulated communities, run with the service's own tokenizer, k-author
rule and ranking (``monitor.analysis.terms``).

Each simulated community posts Poisson(``RATE``) posts a day, written by ``AUTHORS``
authors of unequal activity (Zipf weights), each post 5-25 words drawn from a Zipf
vocabulary of 20,000 made-up words, with a phrase break after 30 % of words (where a
stop word or punctuation would be), so its words and chance phrases recur the way a
forum's do. From ``ONSET`` on, each post holds each injected phrase independently
with that phrase's share (``PHRASES``: 3 %, 6 % and 10 % of posts, from nothing
before). Every day's uses go through ``post_terms`` and the k-author rule
(``pooled_counts``: days whose pool has closed are settled, later ones counted from
the days seen so far, as the store does), and the ranking of the last 7 days
(today included) against the 28 before (``TermHistory.rising``, the service's
defaults) is read at the end of each day from the onset day (day 0) on.

- rise: "within 3 days" = in the top 5 at the end of day 2 (three days of the new
  level in the data). Target: each phrase in >= 90 % of seeds, at the default k.
- control: the same phrases at the same shares on every day, before and after
  the "onset": no rise. Target: no injected phrase in any top 5.

A count of a term is kept only once ``k`` distinct authors used it around that day,
so the latency of a rare phrase is bounded by k, whatever the ranking: a phrase in
3 % of 40 posts/day is used 3.6 times in 3 days on average, and reaches 5 distinct
authors by then in under 30 % of cases (Poisson). The table shows the share of seeds
that found each phrase by each day at the default k = 5 and, for comparison, k = 2.
"""

from __future__ import annotations

import itertools
import os
import random
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from monitor.analysis.terms import TermHistory, post_terms
from monitor.author_pool import pooled_counts

DAY = 86400
START = 1704067200  # 2024-01-01, a Monday
BASELINE_DAYS = 35
ONSET = START + BASELINE_DAYS * DAY
EVALUATED_DAYS = 7
"""Evaluations at the end of days onset .. onset + 6."""
WITHIN_DAYS = 3
TOP = 5
TARGET_SHARE_FOUND = 0.90
PHRASES = {"pay cut": 0.03, "onboarding queue": 0.06, "rival platform": 0.10}
RATE = 40.0
AUTHORS = 300
VOCABULARY = 20000
SEEDS = range(1, 101)
KS = (5, 2)
POOL_DAYS = 7
RECENT_DAYS = 7
BREAK_SHARE = 0.3
"""Share of words followed by a phrase break (a stop word or punctuation in real text)."""


def _vocabulary() -> list[str]:
    chance = random.Random(0)
    consonants, vowels = "bcdfghjklmnprstvwz", "aeiou"
    words: set[str] = set()
    while len(words) < VOCABULARY:
        size = chance.randint(2, 4)
        words.add("".join(chance.choice(consonants) + chance.choice(vowels) for _ in range(size)))
    return sorted(words)


WORDS = _vocabulary()
WORD_WEIGHTS = list(itertools.accumulate(1.0 / (rank + 1) for rank in range(VOCABULARY)))
AUTHOR_WEIGHTS = list(itertools.accumulate(1.0 / (rank + 1) ** 0.7 for rank in range(AUTHORS)))
"""Cumulative Zipf weights (``random.choices(cum_weights=...)``)."""


def _post_text(chance: random.Random, phrases: Sequence[str]) -> str:
    words = chance.choices(WORDS, cum_weights=WORD_WEIGHTS, k=chance.randint(5, 25))
    for phrase in phrases:
        words.insert(chance.randrange(len(words) + 1), f". {phrase} .")
    return " ".join(w + (" ." if chance.random() < BREAK_SHARE else "") for w in words)


def _poisson(chance: random.Random, mean: float) -> int:
    # Knuth's method, fine for means this small
    limit, product, count = pow(2.718281828459045, -mean), chance.random(), 0
    while product > limit:
        product *= chance.random()
        count += 1
    return count


@dataclass(frozen=True)
class Community:
    days: dict[int, dict[str, tuple[int, set[str]]]]
    """Day -> term -> (posts, authors)."""
    posts: dict[int, int]


def simulate(seed: int, *, steady: bool, rate: float = RATE) -> Community:
    """A community's term uses: the phrases from ``ONSET`` on, or (``steady``) all along."""
    chance = random.Random(seed * 7919 + (1 if steady else 0))
    days: dict[int, dict[str, tuple[int, set[str]]]] = {}
    posts: dict[int, int] = {}
    for index in range(BASELINE_DAYS + EVALUATED_DAYS):
        day = START + index * DAY
        count = _poisson(chance, rate)
        posts[day] = count
        uses = days.setdefault(day, {})
        for _ in range(count):
            author = str(chance.choices(range(AUTHORS), cum_weights=AUTHOR_WEIGHTS)[0])
            on = steady or day >= ONSET
            held = [p for p, share in PHRASES.items() if on and chance.random() < share]
            for term in post_terms(_post_text(chance, held)):
                posts_authors = uses.setdefault(term, (0, set()))
                posts_authors[1].add(author)
                uses[term] = (posts_authors[0] + 1, posts_authors[1])
    return Community(days, posts)


def top_terms(
    community: Community, *, k: int, today: int, closed: dict[tuple[int, int], dict[str, int]]
) -> list[str]:
    """The top ``TOP`` rising terms at the end of ``today``, as the service ranks them: days
    whose author pool has closed as settled, the later ones from the days seen so far.
    ``closed`` caches the settled days' counts by (k, day)."""
    seen = {day: uses for day, uses in community.days.items() if day <= today}
    kept: dict[int, dict[str, int]] = {}
    for day in seen:
        key = (k, day)
        counts = closed.get(key)
        if counts is None:
            pooled = pooled_counts(seen, day=day, k=k, pool_days=POOL_DAYS)
            counts = {term: posts for term, (posts, _) in pooled.items()}
            if day + (POOL_DAYS - 1) * DAY < today:
                closed[key] = counts
        kept[day] = counts
    history = TermHistory(
        today=today,
        first_day=START,
        baseline_days=28,
        term_posts=kept,
        posts={d: n for d, n in community.posts.items() if d <= today},
    )
    return [t.term for t in history.rising(days=RECENT_DAYS, limit=TOP)]


@dataclass(frozen=True)
class SeedResult:
    found_by: dict[int, dict[str, int | None]]
    """k -> phrase -> first evaluation day (0 = onset day) with the phrase in the top 5."""
    control_hits: dict[int, int]
    """k -> evaluations of the steady control whose top 5 held an injected phrase."""


def run_seed(seed: int, rate: float = RATE, ks: Sequence[int] = KS) -> SeedResult:
    rising = simulate(seed, steady=False, rate=rate)
    steady = simulate(seed, steady=True, rate=rate)
    found_by: dict[int, dict[str, int | None]] = {}
    control_hits: dict[int, int] = {}
    rising_closed: dict[tuple[int, int], dict[str, int]] = {}
    steady_closed: dict[tuple[int, int], dict[str, int]] = {}
    for k in ks:
        first: dict[str, int | None] = dict.fromkeys(PHRASES)
        hits = 0
        for offset in range(EVALUATED_DAYS):
            today = ONSET + offset * DAY
            top = top_terms(rising, k=k, today=today, closed=rising_closed)
            for phrase in PHRASES:
                if first[phrase] is None and phrase in top:
                    first[phrase] = offset
            control = top_terms(steady, k=k, today=today, closed=steady_closed)
            hits += any(p in PHRASES for p in control)
        found_by[k] = first
        control_hits[k] = hits
    return SeedResult(found_by, control_hits)


def run(seeds: Sequence[int], rate: float = RATE) -> list[SeedResult]:
    workers = min(2, os.cpu_count() or 1)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(run_seed, seeds, [rate] * len(seeds)))


def share_found(results: Sequence[SeedResult], *, k: int, phrase: str, by_day: int) -> float:
    found = [r.found_by[k][phrase] for r in results]
    return sum(1 for f in found if f is not None and f <= by_day) / len(results)


def main() -> bool:
    print(
        f"rising terms: {len(SEEDS)} seeds at {RATE:g} posts/day, {AUTHORS} authors, "
        f"phrases {PHRASES} from day 0; top {TOP} of the last 7 days against the 28 before; "
        f"author pool {POOL_DAYS} days"
    )
    results = run(list(SEEDS))
    ok = True
    header = (
        "| k | phrase (share) | "
        + " | ".join(f"by day {d}" for d in range(EVALUATED_DAYS))
        + " | target |"
    )
    print(header)
    print("|---" * (EVALUATED_DAYS + 3) + "|")
    for k in KS:
        for phrase, share in PHRASES.items():
            shares = [
                share_found(results, k=k, phrase=phrase, by_day=d) for d in range(EVALUATED_DAYS)
            ]
            within = shares[WITHIN_DAYS - 1]
            verdict = "info"
            if k == KS[0]:
                passed = within >= TARGET_SHARE_FOUND
                ok = ok and passed
                verdict = "PASS" if passed else "FAIL"
            cells = " | ".join(f"{s:.0%}" for s in shares)
            print(f"| {k} | {phrase} ({share:.0%}) | {cells} | {verdict} |")
    for k in KS:
        hits = sum(r.control_hits[k] for r in results)
        evaluations = len(results) * EVALUATED_DAYS
        passed = hits == 0
        ok = ok and passed
        print(
            f"| {k} | control: injected phrase in top {TOP} | {hits} of {evaluations} "
            f"evaluations | {'PASS' if passed else 'FAIL'} |"
        )
    return ok
