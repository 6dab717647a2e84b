"""The Stack Exchange adapter's parsing, on responses recorded from the real API.

Every file of ``shared/real-samples/stackexchange`` is read here (see its
PROVENANCE.md for what each one answers). Expected ids, times and counts were read
off the files, times converted with ``date -u -d @T``. Cases no recording has (a
``throttle_violation`` body, broken items) are hand-made and say so.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from monitor.errors import MalformedResponse
from monitor.sources.base import INVALID_TIME, Item
from monitor.sources.stackexchange import (
    ANSWERS,
    COMMENTS,
    QUESTIONS,
    StackExchangeError,
    StackExchangeThrottled,
    answer_item,
    api_error,
    comment_item,
    parse_listing,
    question_item,
    throttle_wait,
)

HOST = "api.stackexchange.com"


def load(real_samples: Path, name: str) -> Any:
    return json.loads((real_samples / "stackexchange" / name).read_text())


def items_of(body: Any, parse: Any) -> list[Item]:
    listing = parse_listing(body, host=HOST)
    parsed = [parse(raw) for raw in listing.items]
    assert all(item is not None for item in parsed)
    return [item for item in parsed if item is not None]


def no_profile_links(items: list[Item]) -> bool:
    """``owner.link`` (``https://stackoverflow.com/users/<id>/<name>``) names a person."""
    return all(item.url is None or "/users/" not in item.url for item in items)


def test_thirty_questions_of_2020(real_samples: Path) -> None:
    body = load(real_samples, "questions_sort-activity_30items_2020-10.json")
    listing = parse_listing(body, host=HOST)
    assert (listing.has_more, listing.quota_remaining, listing.backoff) == (True, 285, None)
    items = items_of(body, question_item)
    assert len(items) == 30
    assert all(i.kind == "thread" and i.thread_id == i.external_id for i in items)
    first = items[0]
    assert (first.external_id, first.created_at, first.author) == (
        "23958900",
        1401466113,  # 2014-05-30T16:08:33Z: sorted by activity, an old question came back
        "1463320",  # owner.user_id of "jvataman", not the display name
    )
    assert first.url == (
        "https://stackoverflow.com/questions/23958900/how-to-receive-p2p-smtp-messages-using-java"
    )
    assert no_profile_links(items)
    # 30 owners, all registered, 30 different user ids
    assert len({i.author for i in items}) == 30
    # 14 items carry last_edit_date; 64324688: created 20:07:34Z, edited 20:40:53Z
    assert sum(i.edited_at is not None for i in items) == 14
    edited = next(i for i in items if i.external_id == "64324688")
    assert (edited.created_at, edited.edited_at) == (1602533254, 1602535253)
    # the two closed questions ("Opinion-based", "Needs details or clarity") stay threads
    closed = {i.external_id: i.kind for i in items if i.external_id in ("64309142", "64324890")}
    assert closed == {"64309142": "thread", "64324890": "thread"}
    # 5 titles carry HTML entities (&#39; and &quot;), undone for scoring
    titles = {i.external_id: i.title for i in items}
    assert titles["64325072"].startswith('Stuck on error with null Exception in thread "main" ')
    assert titles["64325069"].startswith("Failed to start bean 'documentationPluginsBootstrapper'")
    assert sum("&#39;" in i.title or "&quot;" in i.title for i in items) == 0
    # bodies are HTML: 29 open with a paragraph, 64324764's with a code block
    assert all(i.text_is_html for i in items)
    assert [i.external_id for i in items if not i.text.startswith("<p>")] == ["64324764"]


def test_thirty_answers_with_a_backoff(real_samples: Path) -> None:
    body = load(real_samples, "answers_sort-activity_30items_with-backoff_2020-10.json")
    listing = parse_listing(body, host=HOST)
    # the API asked for 10 seconds before the next call of /answers
    assert (listing.has_more, listing.quota_remaining, listing.backoff) == (True, 292, 10.0)
    items = items_of(body, answer_item)
    assert len(items) == 30 and all(i.kind == "reply" for i in items)
    assert all(i.parent_id == i.thread_id for i in items)  # an answer answers its question
    # 30 answers on 28 questions: 64325005 and 64324320 have two each
    threads = Counter(i.thread_id for i in items)
    assert len(threads) == 28
    assert sorted(t for t, n in threads.items() if n == 2) == ["64324320", "64325005"]
    first = items[0]
    assert (first.external_id, first.thread_id, first.created_at) == (
        "64325062",
        "64325021",
        1602535212,
    )
    # the one unregistered owner (answer 64325057) has a user id all the same
    unregistered = next(i for i in items if i.external_id == "64325057")
    assert unregistered.author == "14438281"
    assert len({i.author for i in items}) == 30
    assert sum(i.edited_at is not None for i in items) == 10
    assert all(i.url is None for i in items)  # this filter sends no link


def test_answers_and_questions_of_one_day_share_threads(real_samples: Path) -> None:
    """Both files were recorded minutes apart (quota 292, then 285): 8 of the answers
    answer questions of the question file, and land in those threads."""
    questions = items_of(
        load(real_samples, "questions_sort-activity_30items_2020-10.json"), question_item
    )
    answers = items_of(
        load(real_samples, "answers_sort-activity_30items_with-backoff_2020-10.json"), answer_item
    )
    shared = {a.thread_id for a in answers} & {q.external_id for q in questions}
    assert sorted(shared) == [
        "64323583",
        "64324377",
        "64324678",
        "64324695",
        "64324933",
        "64324978",
        "64325021",
        "64325023",
    ]


def test_three_comments_on_one_post(real_samples: Path) -> None:
    body = load(real_samples, "comments_on-post-63218212_3items_2020-08.json")
    listing = parse_listing(body, host=HOST)
    assert (listing.has_more, listing.quota_remaining) == (False, 293)
    # the post's question is resolved by the adapter; here it is given (the post itself)
    items = [comment_item(raw, question=63218212) for raw in listing.items]
    assert [(i.external_id, i.created_at) for i in items if i] == [
        ("c111798304", 1596428204),  # 2020-08-03T04:16:44Z
        ("c111790046", 1596388768),  # 2020-08-02T17:19:28Z
        ("c111788880", 1596384943),  # 2020-08-02T16:15:43Z
    ]
    assert all(
        i and (i.kind, i.thread_id, i.parent_id) == ("reply", "63218212", "63218212") for i in items
    )
    # Asperi (12299030) wrote two of them, matt (341994) one
    assert Counter(i.author for i in items if i) == {"12299030": 2, "341994": 1}
    assert all(i and i.url is None for i in items)  # owner.link is a profile: not kept
    assert items[2] and "stackoverflow.com/a/61133796" in items[2].text


def test_five_questions_and_an_answer_of_api_2_3(real_samples: Path) -> None:
    questions = items_of(
        load(real_samples, "questions_2.3_withbody_5items_2026-07.json"), question_item
    )
    assert [(q.external_id, q.created_at) for q in questions] == [
        ("79972444", 1782969123),  # 2026-07-02T05:12:03Z
        ("79972441", 1782968572),
        ("79972433", 1782965878),
        ("79972431", 1782965617),
        ("79972418", 1782960081),  # 02:41:21Z, the only one edited (05:28:42Z)
    ]
    assert [q.edited_at for q in questions] == [None, None, None, None, 1782970122]
    assert questions[0].title.startswith("Can mypy be told to forget previous type if it doesn't")
    assert questions[3].title.startswith("How do I center my <div> element")
    assert questions[1].url == (
        "https://stackoverflow.com/questions/79972441/"
        "i-encountered-something-odd-with-the-claude-code-extension-for-vs-code-do-you-k"
    )
    (answer,) = items_of(
        load(real_samples, "answers_2.3_withbody_question-79972441_1item_2026-07.json"),
        answer_item,
    )
    assert (answer.external_id, answer.thread_id, answer.created_at) == (
        "79972445",
        "79972441",  # the second question above
        1782969190,  # 2026-07-02T05:13:10Z, 10 minutes after it
    )
    # Milad (6186647) answered his own question: one author, so one pseudonym
    assert answer.author == questions[1].author == "6186647"


def test_thirty_search_results_without_bodies(real_samples: Path) -> None:
    body = load(real_samples, "search_intitle-android_30items_2016-07.json")
    items = items_of(body, question_item)
    assert len(items) == 30
    assert all(i.text == "" for i in items)  # the default filter sends no body
    assert items[0].external_id == "37808626" and items[0].created_at == 1465897880
    assert sum(i.edited_at is not None for i in items) == 13
    assert len({i.author for i in items}) == 30
    # 4388992's owner is unregistered and still has a user id
    assert next(i for i in items if i.external_id == "4388992").author == "535162"


def test_a_deleted_owner_leaves_the_question_without_author(real_samples: Path) -> None:
    body = load(real_samples, "question_by-id_owner-does_not_exist_api-2.0_2012.json")
    listing = parse_listing(body, host=HOST)
    assert listing.quota_remaining == -89970  # as recorded (the gauge shows 0: spent)
    (raw,) = listing.items
    assert raw["owner"] == {"display_name": "gcc", "user_type": "does_not_exist"}
    item = question_item(raw)
    assert item is not None
    assert (item.external_id, item.kind, item.author, item.deleted) == (
        "13332",
        "thread",
        None,
        False,
    )
    assert (item.created_at, item.edited_at) == (1278527266, 1296990699)  # 2010-07-07, 2011-02-06
    assert item.title == "How do I run Worms: World Party on Ubuntu?"
    assert (
        item.url
        == "http://gaming.stackexchange.com/questions/13332/how-do-i-run-worms-world-party-on-ubuntu"
    )


def test_an_error_body_is_a_typed_failure_naming_the_error(real_samples: Path) -> None:
    body = load(real_samples, "error_key_required_api-2.0_2012.json")
    error = api_error(body, host=HOST, http_status=400)
    assert isinstance(error, StackExchangeError)
    assert (error.error_id, error.error_name, error.status, error.reason) == (
        405,
        "key_required",
        405,
        "http_4xx",
    )
    assert str(error) == (
        "api.stackexchange.com answered Stack Exchange error 405 'key_required': "
        "'`key` is required when `access_token` is passed.'"
    )
    with pytest.raises(StackExchangeError, match="key_required"):
        parse_listing(body, host=HOST)  # the same when it comes with a 200 (JSONP style)


# -- hand-made: no recording has these -------------------------------------------------


@pytest.mark.parametrize(
    ("message", "wait"),
    [
        ("too many requests from this IP, more requests available in 42 seconds", 42.0),
        ("too many requests from this IP, more requests available in 82621 seconds", 3600.0),
        ("too many requests from this IP", 60.0),  # as quoted on stackapps.com, no time
        (None, 60.0),
    ],
)
def test_a_throttle_violation_is_rate_limited_for_as_long_as_it_says(
    message: str | None, wait: float
) -> None:
    body = {"error_id": 502, "error_name": "throttle_violation", "error_message": message}
    error = api_error(body, host=HOST, http_status=400)
    assert isinstance(error, StackExchangeThrottled)
    assert (error.reason, error.retry_after, error.error_name) == (
        "rate_limited",
        wait,
        "throttle_violation",
    )
    assert throttle_wait(message) == wait


@pytest.mark.parametrize(
    ("error_id", "name", "reason"),
    [
        (400, "bad_parameter", "http_4xx"),
        (404, "no_method", "http_4xx"),
        (500, "internal_error", "http_5xx"),
        (503, "temporarily_unavailable", "http_5xx"),
    ],
)
def test_other_errors_are_counted_by_their_id(error_id: int, name: str, reason: str) -> None:
    body = {"error_id": error_id, "error_name": name, "error_message": "x\ny"}
    error = api_error(body, host=HOST, http_status=400)
    assert isinstance(error, StackExchangeError) and error.reason == reason
    assert "\n" not in str(error)  # what the server wrote is escaped: one log line


@pytest.mark.parametrize(
    "body",
    [{"quota_remaining": 3}, {"items": [], "quota_remaining": 3}, [], "<html>", {"error_id": "x"}],
    ids=["no items", "no has_more", "a list", "a string", "an error id that is no number"],
)
def test_an_answer_without_items_or_has_more_is_malformed(body: object) -> None:
    with pytest.raises(MalformedResponse):
        parse_listing(body, host=HOST)


QUESTION = {"question_id": 5, "creation_date": 1_700_000_000, "title": "t", "owner": {}}


@pytest.mark.parametrize(
    ("endpoint", "raw", "problem"),
    [
        (QUESTIONS, QUESTION, None),
        (QUESTIONS, {**QUESTION, "question_id": None}, "missing_field"),
        (QUESTIONS, {**QUESTION, "question_id": 2**60}, "bad_id"),
        (QUESTIONS, {**QUESTION, "question_id": "5"}, "bad_id"),
        (QUESTIONS, {**QUESTION, "creation_date": None}, "missing_field"),
        (ANSWERS, {"answer_id": 6, "creation_date": 1}, "missing_field"),  # no question
        (COMMENTS, {"comment_id": 7, "post_id": 0, "creation_date": 1}, "bad_id"),
    ],
)
def test_what_cannot_be_placed_is_named(
    endpoint: Any, raw: dict[str, Any], problem: str | None
) -> None:
    assert endpoint.problem(raw) == problem


def test_a_time_that_is_no_number_is_a_bad_time_for_the_intake() -> None:
    item = question_item({**QUESTION, "creation_date": "yesterday"})
    assert item is not None and item.created_at == INVALID_TIME  # rejected as bad_time
    odd_owner = question_item({**QUESTION, "owner": {"user_id": True}})
    assert odd_owner is not None and odd_owner.author is None  # a boolean is no user id
