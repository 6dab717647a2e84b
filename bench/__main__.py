"""``python -m bench [NAME ...]``: run the named benchmarks, or all of them.

Exit status 0 when every target was met, 1 when one was missed, 2 for an
unknown name.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bench import (
    capacity,
    capacity_age,
    capacity_read,
    decline_detection,
    flows,
    ingest_throughput,
    scale,
    terms,
)


@dataclass(frozen=True)
class CapacitySection:
    """One table of ``python -m bench capacity``: its rows are tuples of strings in the
    columns of ``header``, the last cell PASS, FAIL or info."""

    title: str
    header: tuple[str, ...]
    rows: Callable[[], Sequence[Sequence[str]]]


CAPACITY_SECTIONS: list[CapacitySection] = [
    CapacitySection(
        "bursts and steady state (bench.capacity)",
        capacity.HEADER,
        lambda: [row.cells() for row in capacity.capacity_rows()],
    ),
    CapacitySection(
        "reading: /metrics, status page, single-community API (bench.capacity_read)",
        ("measure", *(f"{size:,} communities" for size in capacity_read.SIZES), "target", "result"),
        capacity_read.read_rows,
    ),
    CapacitySection(
        "age: refresh cost on a year-old store, startup and steady analysis (bench.capacity_age)",
        ("measure", "result", "target"),
        lambda: capacity_age.age_rows(
            fleet=1000 if os.environ.get("FORUM_MONITOR_BENCH_FULL") == "1" else 100
        ),
    ),
]
"""Issue 12's capacity targets, one section per concern, run in this order."""


def print_markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")


def capacity_all() -> bool:
    """Every section of ``CAPACITY_SECTIONS``, each table printed as it is measured."""
    passed = True
    for section in CAPACITY_SECTIONS:
        rows = section.rows()
        print(f"\ncapacity: {section.title}")
        print_markdown(section.header, rows)
        sys.stdout.flush()
        passed = passed and all(row[-1] != "FAIL" for row in rows)
    return passed


BENCHMARKS: dict[str, Callable[[], bool]] = {
    "capacity": capacity_all,
    "decline": decline_detection.main,
    "flows": flows.main,
    "ingest": ingest_throughput.main,
    "scale": scale.main,
    "terms": terms.main,
}
"""Name -> benchmark; each prints its table and returns whether all targets passed."""


def main(argv: list[str]) -> int:
    unknown = [name for name in argv if name not in BENCHMARKS]
    if unknown:
        print(
            f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}",
            file=sys.stderr,
        )
        return 2
    results = [BENCHMARKS[name]() for name in argv or BENCHMARKS]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
