"""The gate every item passes: text both stores accept, bounded ids, plausible times."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest

from monitor.sources.base import (
    EARLIEST_WEB,
    FUTURE_SKEW_SECONDS,
    INVALID_TIME,
    Intake,
    Item,
    bounded_id,
    epoch_seconds,
    sanitized,
)
from monitor.untrusted import clean_text, for_log, without_userinfo

NOW = 1_760_000_000


def item(**fields: object) -> Item:
    base: dict[str, object] = {
        "external_id": "a1",
        "kind": "thread",
        "thread_id": "a1",
        "created_at": NOW - 60,
    }
    return Item(**{**base, **fields})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("plain text", "plain text"),
        ("tab\tnew\nline\r", "tab\tnew\nline\r"),  # the whitespace text needs stays
        ("nul\x00byte", "nulbyte"),
        ("bell\x07 escape\x1b[31m", "bell escape[31m"),
        ("lone \ud800 surrogate", "lone \ufffd surrogate"),
        ("low \udfff too", "low \ufffd too"),
        ("emoji 😀 and é stay", "emoji 😀 and é stay"),
    ],
)
def test_clean_text(raw: str, clean: str) -> None:
    assert clean_text(raw) == clean
    clean_text(raw).encode("utf-8")  # and UTF-8 takes it


def test_for_log_escapes_and_cuts() -> None:
    forged = "x\n2026-01-01 INFO forged line\x1b[2J"
    assert "\n" not in for_log(forged) and "\x1b" not in for_log(forged)
    assert for_log("y" * 1_000_000) == "'" + "y" * 120 + "'..."
    assert for_log(None) == "'None'"


def test_bounded_id_hashes_what_the_column_cannot_hold() -> None:
    assert bounded_id("x" * 128) == "x" * 128
    long = "x" * 129
    assert bounded_id(long) == "sha256:" + hashlib.sha256(long.encode()).hexdigest()
    assert len(bounded_id("\ud800" * 500)) == 71  # no UnicodeEncodeError on the way


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (1_700_000_000, 1_700_000_000),
        (1_700_000_000.9, 1_700_000_000),
        (float("nan"), INVALID_TIME),
        (float("inf"), INVALID_TIME),
        (float("-inf"), INVALID_TIME),
        (1e20, INVALID_TIME),
        (10**20, INVALID_TIME),
        (True, None),  # a boolean is no number here
        ("1700000000", None),
        (None, None),
    ],
)
def test_epoch_seconds(value: object, seconds: int | None) -> None:
    assert epoch_seconds(value) == seconds


def test_sanitized_item_fits_both_stores() -> None:
    dirty = item(
        external_id="id\x00" + "9" * 200,
        thread_id="t\ud800",
        parent_id="p" * 129,
        author="\x00\ud800",
        title="pay\x00cut",
        text="a\x00b\x1bc",
        url="https://forum.example/" + "a" * 2100,
        edited_at=10**15,
    )
    clean = sanitized(dirty, now=NOW)
    assert clean.external_id == bounded_id("id" + "9" * 200) and len(clean.external_id) == 71
    assert clean.thread_id == "t\ufffd"
    assert len(clean.parent_id or "") == 71
    assert clean.author == "\ufffd"
    assert (clean.title, clean.text) == ("paycut", "abc")
    assert clean.url is None  # over 2048 characters: not kept
    assert clean.edited_at is None  # an edit in the far future is no edit time
    assert sanitized(item(url="https://ok.example/x"), now=NOW).url == "https://ok.example/x"
    assert sanitized(item(author="\x00"), now=NOW).author is None  # nothing left of the name


def test_a_clean_item_is_admitted_as_it_is_and_each_field_alone_is_cleaned() -> None:
    clean = item(
        author="someone", title="pay cut", text="fine", url="https://ok.example/x", edited_at=NOW
    )
    assert sanitized(clean, now=NOW) is clean  # nothing to clean: no copy
    dirty = {
        "external_id": "id\x00",
        "thread_id": "t\x00",
        "parent_id": "p\x00",
        "author": "some\x00one",
        "title": "pay\x00 cut",
        "text": "fi\x00ne",
        "url": "https://user:secret@ok.example/x",
        "edited_at": 10**15,
    }
    for name, value in dirty.items():  # one unclean field is enough to clean the item
        found = sanitized(dataclasses.replace(clean, **{name: value}), now=NOW)
        assert found is not clean
        assert "\x00" not in str(getattr(found, name)) and "secret" not in str(found.url)
    assert sanitized(dataclasses.replace(clean, author=""), now=NOW).author is None


def test_an_edit_before_its_post_or_within_the_skew() -> None:
    assert sanitized(item(edited_at=NOW - 61), now=NOW).edited_at is None
    assert sanitized(item(edited_at=NOW + 10), now=NOW).edited_at == NOW + 10


@pytest.mark.parametrize(
    ("created", "admitted"),
    [
        (NOW, True),
        (NOW + FUTURE_SKEW_SECONDS, True),  # a server clock a little ahead
        (NOW + FUTURE_SKEW_SECONDS + 1, False),
        (253_402_300_799, False),  # year 9999
        (EARLIEST_WEB, True),
        (EARLIEST_WEB - 1, False),  # before the source existed
        (0, False),
        (INVALID_TIME, False),
    ],
)
def test_intake_admits_only_plausible_times(created: int, admitted: bool) -> None:
    intake = Intake(community="c", earliest=EARLIEST_WEB, now=NOW)
    result = intake.admit(item(created_at=created))
    assert (result is not None) == admitted
    assert intake.rejected == ([] if admitted else [("bad_time", "a1")])


def test_intake_notes_rejections_by_id_never_by_text() -> None:
    intake = Intake(community="c", earliest=EARLIEST_WEB, now=NOW)
    intake.reject("missing_field", "x" * 500)
    intake.reject("missing_field")
    assert intake.rejected == [("missing_field", bounded_id("x" * 500)), ("missing_field", None)]


@pytest.mark.parametrize(
    ("url", "clean"),
    [
        ("https://u:pw@forum.example/t/1", "https://forum.example/t/1"),
        ("https://a:b@c@forum.example:8443/x?y=@z", "https://forum.example:8443/x?y=@z"),
        ("https://forum.example/@user", "https://forum.example/@user"),  # a path, no userinfo
        ("not a url", "not a url"),
    ],
)
def test_without_userinfo(url: str, clean: str) -> None:
    assert without_userinfo(url) == clean


def test_a_link_never_keeps_credentials() -> None:
    kept = sanitized(item(url="https://monitor:hunter2@forum.example/t/1/2"), now=NOW)
    assert kept.url == "https://forum.example/t/1/2"
