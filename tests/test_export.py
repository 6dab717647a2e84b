"""``export-openmetrics``: the store's daily history as OpenMetrics, checked by hand.

The small store (one community, three days) is worked out by hand below; the analysis
fixture (tests/analysis/fixture.py) then checks that every exported value at a day's
end equals what the live snapshot computes at that midnight.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from monitor.analysis.rollups import refresh_days
from monitor.analysis.snapshot import compute_snapshot
from monitor.config import Settings, settings_from_mapping
from monitor.export import ExportError, export_lines, write_export
from monitor.ingest import Ingestor
from monitor.sources.base import Batch, Envelope
from monitor.store import db
from tests.analysis import fixture as fx
from tests.analysis.fixture import AWFUL, BAD, DAY, GREAT, NEUTRAL_1, NOW, TODAY, Spec, at
from tests.support import missing

# The small store: community "tiny" (reddit), one poll at NOW reaching back 3 days, so
# day -3 is half covered (from 12:00) and days -2 and -1 fully. Day 0 is not complete.
TINY_SETTINGS = {
    "pseudonym_key": fx.KEY.decode(),
    "communities": [{"id": "tiny", "source": "reddit", "subreddit": "tiny", "interval": "1h"}],
}
TINY = [
    Spec("t1", "t1", at(-3, "13:00"), "a", GREAT),  # +0.7906
    Spec("t1r1", "t1", at(-3, "14:00"), "b", AWFUL),  # -0.4588, negative
    Spec("t2", "t2", at(-1, "09:00"), "a", NEUTRAL_1),  # 0.0
    Spec("t2r1", "t2", at(-1, "10:00"), None, fx.DELETED),  # a post, no author, no score
    Spec("t2r2", "t2", at(-1, "11:00"), "c", BAD),  # -0.2023, negative; c is new
    Spec("t3", "t3", at(0, "08:00"), "d", NEUTRAL_1),  # today: not exported
]
END_3, END_2, END_1 = TODAY - 2 * DAY, TODAY - DAY, TODAY
"""Ends of days -3, -2 and -1: the sample timestamps."""


def tiny_expected() -> list[tuple[str, str, float, int]]:
    """(metric, window, value, timestamp) in file order, derived from TINY by hand."""
    day3_mood, day1_mood = (0.7906 - 0.4588) / 2, (0.0 - 0.2023) / 2
    all_mood = (0.7906 - 0.4588 + 0.0 - 0.2023) / 4
    rows: list[tuple[str, str, float, int]] = []
    by_window = {
        # posts, threads, new participants, mood, negative share, coverage: per day end
        "1d": [
            (2, 1, 2, day3_mood, 1 / 2, 0.5, END_3),
            (0, 0, 0, None, None, 1.0, END_2),
            (3, 1, 1, day1_mood, 1 / 2, 1.0, END_1),
        ],
        # nothing before day -3 is stored, so 7d and 28d sums run up the same days
        "7d": [
            (2, 1, 2, day3_mood, 1 / 2, 0.5 / 7, END_3),
            (2, 1, 2, day3_mood, 1 / 2, 1.5 / 7, END_2),
            (5, 2, 3, all_mood, 2 / 4, 2.5 / 7, END_1),
        ],
        "28d": [
            (2, 1, 2, day3_mood, 1 / 2, 0.5 / 28, END_3),
            (2, 1, 2, day3_mood, 1 / 2, 1.5 / 28, END_2),
            (5, 2, 3, all_mood, 2 / 4, 2.5 / 28, END_1),
        ],
    }
    active = [(2, END_3), (0, END_2), (2, END_1)]  # day -1: a and c (the deleted one has none)
    columns = {
        "forum_posts": 0,
        "forum_threads_started": 1,
        "forum_active_participants": None,
        "forum_new_participants": 2,
        "forum_sentiment_mean": 3,
        "forum_sentiment_negative_ratio": 4,
        "forum_coverage_ratio": 5,
    }
    for metric, column in columns.items():
        if column is None:
            rows += [(metric, "1d", value, end) for value, end in active]
            continue
        for window, days in by_window.items():
            for day in days:
                value = day[column]
                if value is not None:
                    rows.append((metric, window, float(value), int(day[6])))
    return rows


def tiny_settings(**overrides: object) -> Settings:
    return settings_from_mapping({**TINY_SETTINGS, **overrides})


@pytest.fixture
def tiny(tmp_path: Path) -> Iterator[tuple[Engine, Settings, Path]]:
    database = tmp_path / "tiny.db"
    settings = tiny_settings(database_url=f"sqlite:///{database}")
    engine = fx.make_store(url=f"sqlite:///{database}")
    ingestor = Ingestor(settings=settings, key=fx.KEY)
    community = settings.communities[0]
    with db.session_scope(engine) as session:
        result = ingestor.ingest(
            session,
            community=community,
            batch=Batch(
                envelopes=[Envelope("tiny", "reddit", NOW, fx.item(spec)) for spec in TINY],
                cursor={"polled": NOW},
                validators={},
                requests=1,
                not_modified=False,
                since=NOW - 3 * DAY,
                complete=True,
            ),
            started_at=NOW,
            now=NOW,
        )
        refresh_days(session, community_id="tiny", days=result.touched_days, now=NOW)
    yield engine, settings, database
    engine.dispose()


SAMPLE = re.compile(r"^(?P<name>\w+)\{(?P<labels>[^}]*)\} (?P<value>\S+) (?P<ts>\d+)$")


def parse(lines: list[str]) -> list[tuple[str, dict[str, str], float, int]]:
    samples = []
    for line in lines:
        if line.startswith("#"):
            continue
        found = SAMPLE.match(line.rstrip("\n"))
        assert found, line
        labels = dict(re.findall(r'(\w+)="([^"]*)"', found["labels"]))
        samples.append((found["name"], labels, float(found["value"]), int(found["ts"])))
    return samples


def test_small_store_by_hand(tiny: tuple[Engine, Settings, Path]) -> None:
    engine, settings, _ = tiny
    with Session(engine) as session:
        lines, summary = export_lines(session, settings=settings, now=NOW, days=4)
    samples = parse(lines)
    got = [(name, labels["window"], value, ts) for name, labels, value, ts in samples]
    expected = tiny_expected()
    assert [(n, w, t) for n, w, _, t in got] == [(n, w, t) for n, w, _, t in expected]
    for (name, window, value, ts), (_, _, want, _) in zip(got, expected, strict=True):
        assert value == pytest.approx(want, abs=1e-9), (name, window, ts)
    assert all(
        labels == {"community": "tiny", "source": "reddit", "window": labels["window"]}
        for _, labels, _, _ in samples
    )
    assert summary.communities == 1
    assert summary.samples == len(expected)
    assert summary.series == 3 * 6 + 1


def test_small_store_text(tiny: tuple[Engine, Settings, Path]) -> None:
    engine, settings, _ = tiny
    with Session(engine) as session:
        lines, _ = export_lines(
            session, settings=settings, now=NOW, days=4, extra_labels=[("job", "fm")]
        )
    text = "".join(lines)
    posts = text[: text.index("# HELP forum_threads_started")]
    assert posts == (
        "# HELP forum_posts Posts (thread starts and replies) created in the window.\n"
        "# TYPE forum_posts gauge\n"
        f'forum_posts{{community="tiny",source="reddit",window="1d",job="fm"}} 2 {END_3}\n'
        f'forum_posts{{community="tiny",source="reddit",window="1d",job="fm"}} 0 {END_2}\n'
        f'forum_posts{{community="tiny",source="reddit",window="1d",job="fm"}} 3 {END_1}\n'
        f'forum_posts{{community="tiny",source="reddit",window="7d",job="fm"}} 2 {END_3}\n'
        f'forum_posts{{community="tiny",source="reddit",window="7d",job="fm"}} 2 {END_2}\n'
        f'forum_posts{{community="tiny",source="reddit",window="7d",job="fm"}} 5 {END_1}\n'
        f'forum_posts{{community="tiny",source="reddit",window="28d",job="fm"}} 2 {END_3}\n'
        f'forum_posts{{community="tiny",source="reddit",window="28d",job="fm"}} 2 {END_2}\n'
        f'forum_posts{{community="tiny",source="reddit",window="28d",job="fm"}} 5 {END_1}\n'
    )
    assert text.endswith("# EOF\n") and text.count("# EOF") == 1
    families = [line.split()[2] for line in lines if line.startswith("# TYPE")]
    assert families == [
        "forum_posts",
        "forum_threads_started",
        "forum_active_participants",
        "forum_new_participants",
        "forum_sentiment_mean",
        "forum_sentiment_negative_ratio",
        "forum_coverage_ratio",
    ]


def test_a_window_no_poll_covered_exports_its_coverage_only(tmp_path: Path) -> None:
    """Days -3 and -2 fell in an outage that no poll covered: their posts are unknown."""
    database = tmp_path / "gap.db"
    settings = tiny_settings(database_url=f"sqlite:///{database}")
    engine = fx.make_store(url=f"sqlite:///{database}")
    ingestor = Ingestor(settings=settings, key=fx.KEY)
    first = at(-4, "12:00")
    polls = [
        # the first poll reaches back a day: [-5 12:00, -4 12:00) covered
        (first, first - DAY, True, Spec("g1", "g1", at(-5, "13:00"), "a", GREAT)),
        # after the outage, a poll that could not page back to its cursor covers from
        # its oldest item on: [-1 09:00, NOW)
        (NOW, first, False, Spec("g2", "g2", at(-1, "09:00"), "b", AWFUL)),
    ]
    for polled, since, complete, spec in polls:
        envelopes = [Envelope("tiny", "reddit", polled, fx.item(spec))]
        batch = Batch(envelopes, {"polled": polled}, {}, 1, False, since, complete)
        with db.session_scope(engine) as session:
            result = ingestor.ingest(
                session,
                community=settings.communities[0],
                batch=batch,
                started_at=polled,
                now=polled,
            )
            refresh_days(session, community_id="tiny", days=result.touched_days, now=polled)
    with Session(engine) as session:
        lines, _ = export_lines(session, settings=settings, now=NOW, days=5)
    engine.dispose()
    ends = [TODAY - back * DAY for back in (4, 3, 2, 1, 0)]  # days -5 .. -1
    samples = parse(lines)

    def series(name: str, window: str) -> list[float | None]:
        found = {ts: v for n, labels, v, ts in samples if n == name and labels["window"] == window}
        return [found.get(end) for end in ends]

    assert series("forum_coverage_ratio", "1d") == [0.5, 0.5, 0.0, 0.0, 15 / 24]
    assert series("forum_posts", "1d") == [1, 0, None, None, 1]
    assert series("forum_active_participants", "1d") == [1, 0, None, None, 1]
    assert series("forum_new_participants", "1d") == [1, 0, None, None, 1]
    # 7 days ending on day -3 or -2 reach back into days -5 and -4: partly covered
    assert series("forum_posts", "7d") == [1, 1, 1, 1, 2]
    assert series("forum_coverage_ratio", "7d") == pytest.approx(
        [0.5 / 7, 1 / 7, 1 / 7, 1 / 7, (1 + 15 / 24) / 7]
    )


def test_days_limits_the_export_and_empty_labels_are_left_out(
    tiny: tuple[Engine, Settings, Path],
) -> None:
    engine, settings, _ = tiny
    with Session(engine) as session:
        lines, _ = export_lines(
            session, settings=settings, now=NOW, days=1, extra_labels=[("instance", "")]
        )
    samples = parse(lines)
    assert {ts for _, _, _, ts in samples} == {END_1}
    assert all("instance" not in labels for _, labels, _, _ in samples)


def test_rejects_days_below_one_and_bad_label_names(tiny: tuple[Engine, Settings, Path]) -> None:
    engine, settings, _ = tiny
    with Session(engine) as session, pytest.raises(ExportError, match="at least 1"):
        export_lines(session, settings=settings, now=NOW, days=0)
    with Session(engine) as session, pytest.raises(ExportError, match="label"):
        export_lines(session, settings=settings, now=NOW, days=1, extra_labels=[("window", "x")])


@pytest.fixture(scope="module")
def analysis_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Engine, Settings]]:
    engine, settings = fx.build(Path(tmp_path_factory.mktemp("export")))
    yield engine, settings
    engine.dispose()


@pytest.mark.parametrize("days_back", [0, 1, 7, 20, 45])
def test_every_value_equals_the_live_snapshot_at_that_midnight(
    analysis_store: tuple[Engine, Settings], days_back: int
) -> None:
    engine, settings = analysis_store
    end = TODAY - days_back * DAY
    with Session(engine) as session:
        lines, _ = export_lines(session, settings=settings, now=NOW, days=60)
        exported = {
            (name, labels["community"], labels["window"]): value
            for name, labels, value, ts in parse(lines)
            if ts == end
        }
        for community in settings.communities:
            live = compute_snapshot(session, settings=settings, community=community, now=end)
            for window, coverage in live.coverage.items():
                activity = live.windows.get(window)  # None: unknown, exported as absent
                expected: dict[str, float | None] = {
                    "forum_posts": activity and activity.posts,
                    "forum_threads_started": activity and activity.threads_started,
                    "forum_new_participants": activity and activity.new_participants,
                    "forum_sentiment_mean": activity and activity.sentiment_mean,
                    "forum_sentiment_negative_ratio": activity
                    and activity.sentiment_negative_ratio,
                    "forum_coverage_ratio": coverage,
                }
                if window == "1d":
                    expected["forum_active_participants"] = (
                        activity and activity.active_participants
                    )
                for name, value in expected.items():
                    key = (name, community.id, window)
                    if value is None:
                        assert key not in exported, key
                    else:
                        assert exported[key] == pytest.approx(value, abs=1e-9), key


def test_days_before_anything_was_watched_are_left_out(
    analysis_store: tuple[Engine, Settings],
) -> None:
    engine, settings = analysis_store
    with Session(engine) as session:
        lines, _ = export_lines(session, settings=settings, now=NOW, days=200)
    first = min(ts for _, _, _, ts in parse(lines))
    # the first poll reached back to NOW - 60d (12:00), so that day is the first watched
    assert first == fx.FIRST_POLL_SINCE - fx.FIRST_POLL_SINCE % DAY + DAY


def test_series_are_contiguous_and_timestamps_increase(
    analysis_store: tuple[Engine, Settings],
) -> None:
    engine, settings = analysis_store
    with Session(engine) as session:
        lines, _ = export_lines(session, settings=settings, now=NOW, days=60)
    seen: set[tuple[str, str]] = set()
    previous: tuple[str, str] | None = None
    last_ts = -math.inf
    for line in lines:
        if line.startswith("#"):
            continue
        name, rest = line.split("{", 1)
        key = (name, rest.split("}", 1)[0])
        ts = int(line.split()[-1])
        if key != previous:
            assert key not in seen, f"series {key} split"
            seen.add(key)
            previous, last_ts = key, -math.inf
        assert ts > last_ts
        last_ts = ts


def test_promtool_creates_blocks(tiny: tuple[Engine, Settings, Path], tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        missing("promtool not installed (Debian package prometheus)")
    _, settings, _ = tiny
    out = tmp_path / "history.om"
    write_export(settings=settings, out=out, now=NOW, days=4, extra_labels=[("job", "fm")])
    blocks = tmp_path / "blocks"
    run = subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(out), str(blocks)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert any(path.name == "meta.json" for path in blocks.rglob("meta.json"))


def cli(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORUM_MONITOR_")}
    return subprocess.run(
        [sys.executable, "-m", "monitor", "export-openmetrics", *argv],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
        env=env,
    )


def write_config(tmp_path: Path, database: Path) -> Path:
    config = tmp_path / "config.toml"
    config.write_text(
        f'database_url = "sqlite:///{database}"\n'
        f'pseudonym_key = "{fx.KEY.decode()}"\n'
        '[[communities]]\nid = "tiny"\nsource = "reddit"\nsubreddit = "tiny"\ninterval = "1h"\n'
    )
    return config


def test_cli_writes_the_file(tiny: tuple[Engine, Settings, Path], tmp_path: Path) -> None:
    config = write_config(tmp_path, tiny[2])
    out = tmp_path / "out.om"
    days = (int(time.time()) - NOW) // DAY + 5  # the CLI exports up to today; the store is older
    run = cli("--config", str(config), "--out", str(out), "--days", str(days), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    text = out.read_text()
    assert text.endswith("# EOF\n")
    assert 'job="forum-monitor"' in text and 'instance="127.0.0.1:9808"' in text
    assert "samples in" in run.stdout


@pytest.mark.parametrize(
    "argv",
    [
        ["--out", "{tmp}/no/such/dir/out.om"],
        ["--out", "{tmp}/out.om", "--days", "0"],
        ["--out", "{tmp}/out.om", "--days", "-3"],
    ],
)
def test_cli_bad_input_is_one_line(
    tiny: tuple[Engine, Settings, Path], tmp_path: Path, argv: list[str]
) -> None:
    config = write_config(tmp_path, tiny[2])
    args = [arg.replace("{tmp}", str(tmp_path)) for arg in argv]
    run = cli("--config", str(config), *args, cwd=tmp_path)
    assert run.returncode != 0
    assert "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert not (tmp_path / "out.om").exists()


def test_cli_days_must_be_a_number(tmp_path: Path) -> None:
    run = cli("--out", str(tmp_path / "out.om"), "--days", "many", cwd=tmp_path)
    assert run.returncode == 2
    errors = [line for line in run.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "--days" in errors[0], run.stderr


def test_unwritable_file_is_one_line(tiny: tuple[Engine, Settings, Path], tmp_path: Path) -> None:
    if os.geteuid() == 0:
        target = Path("/proc/forum-monitor-export.om")  # not creatable, even as root
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        target = locked / "out.om"
    config = write_config(tmp_path, tiny[2])
    run = cli("--config", str(config), "--out", str(target), cwd=tmp_path)
    assert run.returncode == 1
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot write" in lines[0], run.stderr
