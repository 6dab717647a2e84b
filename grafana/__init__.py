"""Grafana dashboards as code (generate.py) and the queries they run (panel_queries.py)."""
