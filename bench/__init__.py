"""Benchmarks: measured rates and ratios printed as tables, not timed tests."""
