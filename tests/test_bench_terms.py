"""A smaller run of ``python -m bench terms`` (12 seeds instead of 100, k = 5 only): the
injected phrases rise into the top 5, the common one within 3 days, and a steady
control's top 5 never holds one. The full table and its targets are in bench/README.md."""

from __future__ import annotations

from bench import terms

SEEDS = range(201, 213)


def test_injected_phrases_rise_into_the_top_and_the_control_stays_quiet() -> None:
    results = [terms.run_seed(seed, ks=(5,)) for seed in SEEDS]

    def found(phrase: str, by_day: int) -> float:
        return terms.share_found(results, k=5, phrase=phrase, by_day=by_day)

    # 10 % of posts: within 3 days (the end of day 2), as in the full run (100 %)
    assert found("rival platform", 2) >= 0.9
    # 6 %: within 4 days (91 % in the full run); 3 %: within a week (87 %)
    assert found("onboarding queue", 3) >= 0.8
    assert found("pay cut", 6) >= 0.75
    # and no phrase is "found" before it exists: the control holds them all along
    assert sum(r.control_hits[5] for r in results) == 0
