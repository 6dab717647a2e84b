"""forum-monitor: community health of public discussion forums as Prometheus metrics."""

__version__ = "0.1.0"
