"""A simulated store with a known decline and a known outage, for the evidence report.

Community ``gig`` (reddit), 100 UTC days before ``TODAY`` (2024-06-01): about 40 posts a
day from about 70 authors until the day before ``ONSET`` (2024-05-12), then about 16 a day
from about 25 authors, more of them negative. The days ``GAP_FIRST``..``GAP_LAST``
(2024-04-12..14) fell in an outage: no poll covered them and no post of them was fetched.
Everything goes through the real write path (``Ingestor``, one poll per day, each covering
the day it fetched; the poll after the outage covers its own day only), so coverage comes
from the poll history as the service records it.
"""

from __future__ import annotations

import random
from pathlib import Path

from sqlalchemy import Engine

from monitor.config import Settings, settings_from_mapping
from monitor.ingest import Ingestor
from monitor.sources.base import Item
from tests.analysis import fixture as fx

DAY = fx.DAY
TODAY = fx.TODAY  # 2024-06-01T00:00:00Z
NOW = fx.NOW
FIRST_DAY = TODAY - 100 * DAY  # 2024-02-22
ONSET = TODAY - 20 * DAY  # 2024-05-12
GAP_FIRST, GAP_LAST = TODAY - 50 * DAY, TODAY - 48 * DAY  # 2024-04-12 .. 2024-04-14
EVENT_LABEL = "Platform cut pay rates"

CALM = [fx.GREAT, fx.COMMUNITY, fx.WELCOME, fx.NEUTRAL_1, fx.NEUTRAL_4, fx.NEUTRAL_5]
UPSET = [fx.PAY_CUT, fx.AWFUL, fx.RATE_AWFUL, fx.BAD, fx.NEUTRAL_4, fx.SWITCHING]


def settings(database: Path, **community: object) -> Settings:
    return settings_from_mapping(
        {
            "pseudonym_key": fx.KEY.decode(),
            "database_url": f"sqlite:///{database}",
            "communities": [
                {
                    "id": "gig",
                    "source": "reddit",
                    "subreddit": "gigwork",
                    "interval": "1h",
                    **community,
                },
                {"id": "quiet", "source": "hackernews", "interval": "1h"},
            ],
        }
    )


def _poisson(rng: random.Random, mean: float) -> int:
    # normal approximation is enough for means of 16 and more
    return max(0, round(rng.gauss(mean, mean**0.5)))


def day_items(day: int, rng: random.Random) -> list[Item]:
    declined = day >= ONSET
    weekday = (day // DAY + 3) % 7  # 0 = Monday
    rhythm = 0.8 if weekday >= 5 else 1.08
    count = _poisson(rng, (16.0 if declined else 40.0) * rhythm)
    authors = 25 if declined else 70
    texts = UPSET if declined else CALM
    items: list[Item] = []
    threads: list[str] = []
    for number in range(count):
        created = day + 600 + number * (86000 // max(1, count))
        external = f"p{day // DAY}-{number}"
        author = f"user{rng.randrange(authors)}"
        text = rng.choice(texts)
        if number % 4 == 0 or not threads:
            threads.append(external)
            items.append(Item(external, "thread", external, created, author=author, title=text))
        else:
            thread = rng.choice(threads)
            items.append(
                Item(external, "reply", thread, created, parent_id=thread, author=author, text=text)
            )
    return items


def build(database: Path, *, seed: int = 5) -> tuple[Engine, Settings]:
    """The store at ``database``: every day's poll at the next midnight, except the outage."""
    settings_ = settings(database)
    engine = fx.make_store(url=f"sqlite:///{database}")
    ingestor = Ingestor(settings=settings_, key=fx.KEY)
    rng = random.Random(seed)
    for day in range(FIRST_DAY, TODAY, DAY):
        items = day_items(day, rng)
        if GAP_FIRST <= day <= GAP_LAST:
            continue  # the outage: nothing fetched, nothing covered
        fx.ingest(
            engine,
            ingestor,
            settings_,
            "gig",
            items,
            now=day + DAY,
            covered_from=day,
        )
    return engine, settings_
