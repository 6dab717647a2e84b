"""``python -m bench [NAME ...]``: run the named benchmarks, or all of them.

Exit status 0 when every target was met, 1 when one was missed, 2 for an
unknown name.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from bench import capacity, decline_detection, ingest_throughput, scale

BENCHMARKS: dict[str, Callable[[], bool]] = {
    "capacity": capacity.main,
    "decline": decline_detection.main,
    "ingest": ingest_throughput.main,
    "scale": scale.main,
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
