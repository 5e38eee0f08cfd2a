"""The frame every ``notifier dev`` page shares: one HTML document, no external assets.

A page is server-rendered with its styles inline; a page that needs a script gets it
inline under a per-response nonce, and the ``Content-Security-Policy`` allows nothing
else (no other host, no other script), so what a dev page shows is what this process
served. :func:`wants_html` decides between a page and the JSON that the same route has
always answered.
"""

from __future__ import annotations

import secrets
from html import escape
from typing import Annotated

from fastapi import Query, Request
from fastapi.responses import HTMLResponse

#: ``?format=html`` or ``?format=json``: overrides the ``Accept`` header
FORMAT_QUERY = Annotated[
    str | None, Query(alias="format", pattern="^(html|json)$", description="html or json")
]

_STYLE = """
:root { color-scheme: light dark; font-family: system-ui, sans-serif; }
body { margin: 0 auto; max-width: 72rem; padding: 1rem; line-height: 1.4; }
header.bar { display: flex; gap: 1rem; align-items: baseline; flex-wrap: wrap; }
nav a { margin-right: .75rem; }
section { margin: 1.5rem 0; }
article { border: 1px solid #8884; border-radius: .5rem; padding: .75rem; margin: .75rem 0; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .1rem .75rem; margin: 0; }
dt { font-weight: 600; }
dd { margin: 0; overflow-wrap: anywhere; }
iframe { width: 100%; height: 28rem; border: 1px solid #8884; background: #fff;
         resize: vertical; margin-top: .5rem; }
pre { white-space: pre-wrap; overflow-wrap: anywhere; }
.empty, .note { color: #777; }
.unread { font-weight: 700; }
"""


def wants_html(request: Request, fmt: str | None) -> bool:
    """``?format=`` decides; otherwise HTML only when the client lists ``text/html``
    before ``application/json`` (a browser does; curl, httpx and scripts send ``*/*``
    or ask for JSON, and keep getting the JSON they always got)."""
    if fmt is not None:
        return fmt == "html"
    accept = request.headers.get("accept", "").lower()
    html_at = accept.find("text/html")
    json_at = accept.find("application/json")
    return html_at >= 0 and (json_at < 0 or html_at < json_at)


def page(title: str, body: str, *, script: str | None = None) -> HTMLResponse:
    """A whole document around ``body`` (already escaped HTML), with ``script`` inline."""
    nonce = secrets.token_urlsafe(16)
    script_tag = f'<script nonce="{nonce}">{script}</script>' if script else ""
    document = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f'<body><header class="bar"><h1>{escape(title)}</h1>'
        '<nav><a href="/dev/outbox">Outbox</a></nav></header>'
        f"{body}{script_tag}</body></html>"
    )
    policy = (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data: http: https:; "
        f"script-src 'nonce-{nonce}'; connect-src 'self'; frame-ancestors 'none'"
    )
    return HTMLResponse(
        document,
        headers={"Content-Security-Policy": policy, "Cache-Control": "no-store", "Vary": "Accept"},
    )
