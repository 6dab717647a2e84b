"""forum_term_rising_score: the top terms.exported terms per community (at most 10), labels
cleaned of anything but letters, apostrophes, hyphens and spaces, and promtool-clean."""

from __future__ import annotations

import shutil
import subprocess

from prometheus_client import CollectorRegistry, generate_latest

from monitor.analysis.snapshot import CommunitySnapshot, Snapshots
from monitor.analysis.terms import RisingTerm
from monitor.exporter import CommunityCollector
from tests.analysis import fixture as fx
from tests.support import missing


def _snapshot(community: str, terms: list[str], exported: int) -> CommunitySnapshot:
    rising = [RisingTerm(term, 10 - i % 10, 0.0, 0.1, 40.0 - i) for i, term in enumerate(terms)]
    return CommunitySnapshot(
        community=community,
        source="reddit",
        computed_at=fx.NOW,
        windows={},
        coverage={},
        last_post_at=None,
        last_success_at=None,
        last_error=None,
        daily=[],
        rising_terms=rising,
        terms_exported=exported,
    )


def _text(*snapshots: CommunitySnapshot) -> str:
    holder = Snapshots(settings=fx.settings(), engine=None)  # type: ignore[arg-type]
    registry = CollectorRegistry()
    collector = CommunityCollector(holder)
    registry.register(collector)
    for snapshot in snapshots:
        holder.install(snapshot)
    text = collector.exposition().decode()
    assert text == generate_latest(registry).decode()
    return text


def _rising_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("forum_term_rising_score{")]


def test_only_the_top_terms_are_exported_and_never_more_than_ten() -> None:
    many = [f"term{chr(97 + i)}" for i in range(20)]
    lines = _rising_lines(_text(_snapshot("gig", many, 3), _snapshot("big", many, 10)))
    assert lines[:10] == [
        f'forum_term_rising_score{{community="big",term="term{chr(97 + i)}"}} {40.0 - i}'
        for i in range(10)
    ]
    assert lines[10:] == [
        'forum_term_rising_score{community="gig",term="terma"} 40.0',
        'forum_term_rising_score{community="gig",term="termb"} 39.0',
        'forum_term_rising_score{community="gig",term="termc"} 38.0',
    ]
    # configuration cannot raise the bound (terms.exported <= 10 is also validated)
    assert len(_rising_lines(_text(_snapshot("gig", many, 50)))) == 10


def test_labels_are_cleaned_and_the_text_is_promtool_clean() -> None:
    hostile = ['pay"cut', "x\n# HELP fake", "a\\b", "\u202eevil", "", "q" * 300, "pay cut"]
    text = _text(_snapshot("gig", hostile, 10))
    lines = _rising_lines(text)
    assert [line.split("term=")[1].split("}")[0] for line in lines] == [
        '"pay cut"',
        '"x HELP fake"',
        '"a b"',
        '"evil"',
        '"' + "q" * 65 + '"',
    ]  # the empty one is left out, and "pay cut" comes once
    assert "# HELP fake" not in text
    promtool = shutil.which("promtool")
    if promtool is None:
        missing("promtool is not installed (Debian: prometheus)")
    check = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
