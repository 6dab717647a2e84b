"""``forum-monitor report``: the evidence it gathers, the page it writes, the command line.

The store is tests/report_store.py: a known decline from 2024-05-12 (40 to 16 posts a day)
and a known outage 2024-04-12..14, written through the real ingest path.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from monitor.analysis.snapshot import DayActivity
from monitor.cli import main
from monitor.config import settings_from_mapping
from monitor.report.document import ReportContext, markers_for, render_report
from monitor.report.evidence import Evidence, Gap, endpoints, gaps, gather, scope
from monitor.report.power import MEASURED, rows_around
from tests import report_store as rs
from tests.support import REPO_ROOT

DAY = rs.DAY
SINCE = rs.TODAY - 92 * DAY  # 2024-03-01
UNTIL = rs.TODAY  # the period ends with 2024-05-31


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Engine, Path]]:
    folder = tmp_path_factory.mktemp("report")
    engine, _ = rs.build(folder / "gig.db")
    config = folder / "config.toml"
    config.write_text(
        f'pseudonym_key = "{rs.fx.KEY.decode()}"\n'
        f'database_url = "sqlite:///{folder / "gig.db"}"\n'
        '[[communities]]\nid = "gig"\nsource = "reddit"\nsubreddit = "gigwork"\n'
        'interval = "1h"\n'
        '[[communities]]\nid = "quiet"\nsource = "hackernews"\nquery = "<script>x</script>"\n'
    )
    yield engine, config
    engine.dispose()


def evidence_of(engine: Engine, *, since: int = SINCE, until: int = UNTIL) -> Evidence:
    settings = rs.settings(Path("unused.db"))
    with Session(engine) as session:
        return gather(
            session,
            community=settings.communities[0],
            since=since,
            until=until,
            now=rs.NOW,
            store="sqlite:///gig.db",
            command="forum-monitor report ...",
        )


def test_the_outage_is_a_gap_and_the_decline_is_found_on_its_day(
    store: tuple[Engine, Path],
) -> None:
    evidence = evidence_of(store[0])
    assert len(evidence.daily) == 92 and evidence.daily[0].day == SINCE
    assert evidence.gaps == [Gap(rs.GAP_FIRST, rs.GAP_LAST, 0.0)]
    assert len(evidence.counted_days) == 89
    onsets = {c.signal: c.onset for c in evidence.changes}
    assert onsets == {
        "posts": rs.ONSET,
        "active_participants": rs.ONSET,
        "sentiment_mean": rs.ONSET,
    }
    posts = next(c for c in evidence.changes if c.signal == "posts")
    # simulated at 40 (x 1.08 weekdays, 0.8 weekends) then 16: within noise of that
    assert 36 < posts.level_before < 44 and 13 < posts.level_after < 19
    declining = {d.signal for d in evidence.declines if d.declining}
    assert {"posts", "active_participants"} <= declining
    # the baseline the detector judges against is the pre-decline size
    assert evidence.baseline_posts_per_day is not None
    assert 38 < evidence.baseline_posts_per_day < 43


def test_provenance_counts_the_polls_by_hand(store: tuple[Engine, Path]) -> None:
    found = evidence_of(store[0]).provenance
    # one poll a day at the next midnight, from 2024-02-23 to 2024-06-01, minus the three
    # after the outage days: 100 - 3 = 97 polls of one request each; of them, those
    # started 2024-03-01 .. 2024-05-31 are 92 - 3 = 89
    assert found.polls_in_period == {"ok": 89}
    assert found.requests_in_period == 89 and found.requests_total == 97
    assert found.first_poll == rs.FIRST_DAY + DAY and found.last_poll == rs.TODAY
    assert found.endpoints == ["https://www.reddit.com"]
    assert found.scope == [("subreddit", "gigwork")]


def test_a_period_inside_the_outage_has_no_change_point_and_says_so(
    store: tuple[Engine, Path],
) -> None:
    evidence = evidence_of(store[0], since=rs.GAP_FIRST, until=rs.GAP_LAST + DAY)
    assert [d.coverage for d in evidence.daily] == [0.0, 0.0, 0.0]
    assert evidence.changes == [] and evidence.declines == []  # withheld, not "declining"
    assert evidence.posts_per_day is None
    with Session(store[0]) as session:
        page = render_report(ReportContext(evidence, session, "test"))
    assert "the decline score is withheld at its end" in page
    assert "0 of them covered well enough to count" in page
    # the period has no counted day, but the detector's baseline before it has: its size
    assert evidence.baseline_posts_per_day is not None
    assert f"had {evidence.baseline_posts_per_day:.1f} posts a day" in page


def day(number: int, coverage: float) -> DayActivity:
    return DayActivity(number * DAY, 1, 1, 0, 1, 0, 0.0, 0, 0, coverage)


def test_gaps_by_hand() -> None:
    days = [day(n, c) for n, c in enumerate([1.0, 0.0, 0.5, 1.0, 0.89, 1.0, 0.2])]
    assert gaps(days) == [
        Gap(DAY, 2 * DAY, 0.25),
        Gap(4 * DAY, 4 * DAY, 0.89),
        Gap(6 * DAY, 6 * DAY, 0.2),
    ]


def test_endpoints_never_carry_credentials_or_queries() -> None:
    settings = settings_from_mapping(
        {
            "communities": [
                {"id": "f", "source": "rss", "url": "https://blog.example/feed?token=abc#x"},
                {"id": "h", "source": "hackernews", "query": "pay cut"},
                {"id": "d", "source": "discourse", "base_url": "https://forum.example/"},
            ]
        }
    )
    feed, hn, discourse = settings.communities
    assert endpoints(feed) == ["https://blog.example/feed"]
    assert endpoints(hn) == ["https://hacker-news.firebaseio.com", "https://hn.algolia.com"]
    assert endpoints(discourse) == ["https://forum.example"]
    assert scope(hn) == [("query", "pay cut")]


def test_power_rows_bracket_the_size() -> None:
    assert [r.posts_per_day for r in rows_around(40.4)] == [40, 80]
    assert [r.posts_per_day for r in rows_around(40)] == [40]
    assert [r.posts_per_day for r in rows_around(3)] == [10]
    assert [r.posts_per_day for r in rows_around(500)] == [160]


def test_power_rows_are_the_benchmark_table_in_bench_readme() -> None:
    readme = (REPO_ROOT / "bench" / "README.md").read_text()
    table = readme[readme.index("### Result (") :].split("\n\n")[2]
    rows = [line for line in table.splitlines() if re.match(r"\| \d+ \|", line)]
    assert len(rows) == len(MEASURED)
    for line, measured in zip(rows, MEASURED, strict=True):
        cells = [c.strip() for c in line.strip("|").split("|")]
        numbers = [
            float(re.split(r"[ (]", part.strip())[0]) for c in cells[:5] for part in c.split("/")
        ]
        assert numbers == [
            measured.posts_per_day,
            measured.halving_within_3_days,
            measured.fifth_within_10_days,
            measured.fifth_within_14_days,
            measured.fifth_within_21_days,
            measured.false_alarms_per_90_days,
            measured.false_alarms_per_90_days_with_outages,
        ]


def figures(page: str) -> dict[str, str]:
    return dict(re.findall(r'<figure class="chart" data-signal="(\w+)">(.*?)</figure>', page))


def test_each_change_point_is_on_its_own_chart_only(store: tuple[Engine, Path]) -> None:
    evidence = evidence_of(store[0])
    posts = next(c for c in evidence.changes if c.signal == "posts")
    assert [m.label for m in markers_for(evidence, "posts")] == [
        f"level shift 2024-05-12: {posts.shift_ratio:.0%} of before",
        "decline since 2024-05-12",
    ]
    assert [m.kind for m in markers_for(evidence, "replies")] == []
    with Session(store[0]) as session:
        page = render_report(ReportContext(evidence, session, "test"))
    charts = figures(page)
    assert set(charts) == {
        "posts",
        "threads_started",
        "replies",
        "active_participants",
        "new_participants",
        "sentiment_mean",
        "negative_ratio",
        "coverage",
    }
    for signal in ("posts", "active_participants", "sentiment_mean"):
        assert charts[signal].count('class="marker changepoint"') == 1, signal
    for signal in ("threads_started", "replies", "new_participants", "negative_ratio", "coverage"):
        assert 'class="marker changepoint"' not in charts[signal], signal
    # the outage is a gap on every series chart, and on the coverage chart a drop to 0%
    for signal, svg in charts.items():
        if signal != "coverage":
            assert 'data-gap="2024-04-12/2024-04-14"' in svg, signal
    assert "data-gap" not in charts["coverage"]


def test_the_page_is_self_contained_and_escapes_what_it_quotes(
    store: tuple[Engine, Path],
) -> None:
    evidence = evidence_of(store[0])
    hostile = Evidence(
        **{
            **evidence.__dict__,
            "community": '<img src=x onerror="alert(1)">',
            "command": "forum-monitor report --out '</pre><script>alert(2)</script>'",
            "provenance": evidence.provenance.__class__(
                **{
                    **evidence.provenance.__dict__,
                    "endpoints": ["https://x.example/<script>alert(3)</script>"],
                    "last_error": "<b>bad</b>",
                }
            ),
        }
    )
    with Session(store[0]) as session:
        page = render_report(ReportContext(hostile, session, "<v>"))
    assert "<script" not in page and "<img" not in page and "<b>bad" not in page
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page
    assert "https://x.example/&lt;script&gt;alert(3)&lt;/script&gt;" in page
    # no external asset, script, font or link to fetch
    assert not re.search(r"<(script|link|img|iframe|object)\b", page)
    assert not re.search(r'(src|href)="(?!#)', page)
    assert "url(" not in page and "@import" not in page and "@font-face" not in page
    assert "@media print" in page and "@page" in page


def run(*args: str) -> tuple[int, str, str]:
    return_code = 0
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            return_code = main(list(args))
        except SystemExit as exc:
            return_code = int(exc.code or 0)
    return return_code, out.getvalue(), err.getvalue()


def test_cli_writes_the_report_and_its_command_reproduces_it(
    store: tuple[Engine, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FORUM_MONITOR_CONFIG", raising=False)
    monkeypatch.delenv("FORUM_MONITOR_DATABASE_URL", raising=False)
    _, config = store
    out = tmp_path / "gig report.html"
    code, stdout, stderr = run(
        "report", "--config", str(config), "--community", "gig",
        "--since", "2024-03-01", "--until", "2024-05-31", "--out", str(out),
    )  # fmt: skip
    assert (code, stderr) == (0, "")
    assert stdout == (
        f"{out}: gig, 2024-03-01 to 2024-05-31: 89 of 92 days counted, 1 gaps, "
        f"3 change points ({out.stat().st_size} bytes)\n"
    )
    page = out.read_text()
    command = re.search(r'<pre class="command"><code>(.*?)</code></pre>', page)
    assert command is not None
    words = shlex.split(command.group(1).replace("&#x27;", "'").replace("&quot;", '"'))
    assert words == [
        "forum-monitor", "report", "--config", str(config.resolve()), "--community", "gig",
        "--since", "2024-03-01", "--until", "2024-05-31", "--out", str(out.resolve()),
    ]  # fmt: skip
    out.rename(tmp_path / "first.html")
    again = subprocess.run(
        [sys.executable, "-m", "monitor", *words[1:]], capture_output=True, text=True, check=False
    )
    assert again.returncode == 0, again.stderr
    generated = re.compile(r"generated \d{4}-\d\d-\d\d \d\d:\d\d UTC")
    first = generated.sub("", (tmp_path / "first.html").read_text())
    assert generated.sub("", out.read_text()) == first


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--community", "nope"], "--community: unknown community 'nope' (configured: gig, quiet)"),
        (["--since", "2024-13-01"], "--since: '2024-13-01' is not a date; use YYYY-MM-DD (UTC)"),
        (["--until", "31.05.2024"], "--until: '31.05.2024' is not a date; use YYYY-MM-DD (UTC)"),
        (
            ["--since", "2024-05-31", "--until", "2024-05-01"],
            "--since: 2024-05-31 must be before --until 2024-05-01",
        ),
        (
            ["--since", "2024-05-01", "--until", "2024-05-01"],
            "--since: 2024-05-01 must be before --until 2024-05-01",
        ),
        (["--until", "2999-01-01"], "--until: 2999-01-01 is not over yet"),
        (["--out", "/nonexistent/dir/r.html"], "--out: '/nonexistent/dir' is not a directory"),
    ],
)
def test_cli_bad_arguments_exit_2_with_one_line(
    store: tuple[Engine, Path], tmp_path: Path, arguments: list[str], message: str
) -> None:
    _, config = store
    base = {"--community": "gig", "--out": str(tmp_path / "r.html")}
    for flag, value in zip(arguments[::2], arguments[1::2], strict=True):
        base[flag] = value
    argv = ["report", "--config", str(config)] + [w for pair in base.items() for w in pair]
    code, stdout, stderr = run(*argv)
    assert code == 2 and stdout == ""
    assert len(stderr.splitlines()) == 1 and stderr.startswith(message), stderr
    assert not (tmp_path / "r.html").exists()


def test_cli_reports_every_bad_argument_at_once(store: tuple[Engine, Path], tmp_path: Path) -> None:
    _, config = store
    code, _, stderr = run(
        "report", "--config", str(config), "--community", "nope", "--since", "x",
        "--out", str(tmp_path / "r.html"),
    )  # fmt: skip
    assert code == 2
    assert stderr.splitlines() == [
        "--community: unknown community 'nope' (configured: gig, quiet)",
        "--since: 'x' is not a date; use YYYY-MM-DD (UTC)",
    ]


def test_cli_needs_out_and_community(store: tuple[Engine, Path]) -> None:
    code, _, stderr = run("report", "--config", str(store[1]), "--community", "gig")
    assert code == 2 and "the following arguments are required: --out" in stderr


def test_cli_a_community_never_polled_is_an_error_not_an_empty_report(
    store: tuple[Engine, Path], tmp_path: Path
) -> None:
    code, _, stderr = run(
        "report", "--config", str(store[1]), "--community", "quiet",
        "--out", str(tmp_path / "q.html"),
    )  # fmt: skip
    assert code == 1
    assert stderr == (
        "forum-monitor: the store holds no successful poll of 'quiet': poll it first "
        "(forum-monitor poll-once or backfill)\n"
    )
    assert not (tmp_path / "q.html").exists()


def test_cli_an_empty_database_is_an_error(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        f'database_url = "sqlite:///{tmp_path / "empty.db"}"\n'
        '[[communities]]\nid = "gig"\nsource = "reddit"\nsubreddit = "gigwork"\n'
    )
    code, _, stderr = run(
        "report", "--config", str(config), "--community", "gig", "--out", str(tmp_path / "r.html")
    )
    assert code == 1 and "holds no forum-monitor store" in stderr
    assert len(stderr.splitlines()) == 1


def test_cli_an_invalid_config_exits_2_naming_the_field(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[[communities]]\nid = "gig"\nsource = "reddit"\n')
    code, _, stderr = run(
        "report", "--config", str(config), "--community", "gig", "--out", str(tmp_path / "r.html")
    )
    assert code == 2 and "communities[0]" in stderr and "subreddit" in stderr


def test_status_page_charts_mark_each_change_point_on_its_own_chart(
    store: tuple[Engine, Path],
) -> None:
    from monitor.analysis.snapshot import compute_snapshot
    from monitor.web.status import render_community_page
    from monitor.web.view import Presentation, community_view

    settings = rs.settings(Path("unused.db"))
    community = settings.communities[0]
    with Session(store[0]) as session:
        snapshot = compute_snapshot(
            session, settings=settings, community=community, now=rs.TODAY + 1800
        )
    view = community_view(community, snapshot, presentation=Presentation(), now=rs.TODAY + 1800)
    page = render_community_page(
        view, presentation=Presentation(), now=rs.TODAY + 1800, version="test"
    )
    charts = figures(page)
    assert set(charts) == {"posts", "active_participants", "sentiment_mean"}
    for signal, svg in charts.items():
        shift = next(p for p in snapshot.changepoints if p.signal == signal).shift_ratio
        labels = re.findall(
            r'<g class="marker changepoint" data-day="([^"]+)">.*?>([^<]+)</text>', svg
        )
        assert labels == [("2024-05-12", f"shift 05-12: {shift:.0%} of before")], signal
        assert ">2024-04-15</text>" in svg and 'data-gap="2024-04-12/2024-04-14"' in svg
