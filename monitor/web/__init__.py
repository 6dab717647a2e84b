"""The human-facing pages: the status page at / and the API reference at /docs.

Server-rendered with the standard library, self-contained (the stylesheet is
inlined, charts are inline SVG): no JavaScript, no external asset, so the pages
work offline and on any screen.
"""
