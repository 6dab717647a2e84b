"""A plain HTML reference of the JSON API, rendered from the app's OpenAPI schema.

FastAPI's default /docs loads Swagger UI from a CDN, which fails offline; this
page needs nothing but the schema (also served raw at /openapi.json).
"""

from __future__ import annotations

from html import escape
from typing import Any

from monitor.web.status import stylesheet


def _schema_text(schema: dict[str, Any], components: dict[str, Any]) -> str:
    if "$ref" in schema:
        schema = components.get(schema["$ref"].rsplit("/", 1)[-1], {})
    if "enum" in schema:
        return "one of " + ", ".join(f"<code>{escape(str(v))}</code>" for v in schema["enum"])
    text = escape(str(schema.get("type", "")))
    bounds = []
    if "minimum" in schema:
        bounds.append(f"≥ {schema['minimum']}")
    if "maximum" in schema:
        bounds.append(f"≤ {schema['maximum']}")
    if "default" in schema:
        bounds.append(f"default {escape(str(schema['default']))}")
    return text + (f" ({', '.join(bounds)})" if bounds else "")


def render_api_docs(openapi: dict[str, Any]) -> str:
    components = openapi.get("components", {}).get("schemas", {})
    blocks = []
    for path, operations in openapi.get("paths", {}).items():
        for method, operation in operations.items():
            rows = "".join(
                f"<tr><td><code>{escape(p['name'])}</code></td><td>{escape(p['in'])}</td>"
                f"<td>{'yes' if p.get('required') else 'no'}</td>"
                f"<td>{_schema_text(p.get('schema', {}), components)}</td>"
                f"<td>{escape(p.get('description', ''))}</td></tr>"
                for p in operation.get("parameters", [])
            )
            params = (
                '<table class="params"><tr><th>parameter</th><th>in</th><th>required</th>'
                f"<th>type</th><th>meaning</th></tr>{rows}</table>"
                if rows
                else ""
            )
            responses = "".join(
                f"<li><code>{escape(code)}</code> {escape(r.get('description', ''))}</li>"
                for code, r in operation.get("responses", {}).items()
            )
            blocks.append(
                f'<section class="endpoint"><h2><span class="method">{method.upper()}</span>'
                f"<code>{escape(path)}</code></h2>"
                f"<p><strong>{escape(operation.get('summary', ''))}</strong></p>"
                f"<p>{escape(operation.get('description', ''))}</p>{params}"
                f"<ul>{responses}</ul></section>"
            )
    info = openapi.get("info", {})
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(info.get('title', ''))} API</title><style>{stylesheet()}</style>"
        '</head><body><header class="top"><h1>'
        f"{escape(info.get('title', ''))} API {escape(info.get('version', ''))}</h1>"
        '<nav><a href="/">status page</a> <a href="/openapi.json">openapi.json</a></nav>'
        f"</header><p>{escape(info.get('description', ''))}</p>"
        f"<main>{''.join(blocks)}</main></body></html>"
    )
