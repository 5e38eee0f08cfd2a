"""The pages a customer reaches from a message to get fewer of them: one-click
unsubscribe (``/u/{token}``, RFC 8058) and their preferences page
(``/preferences/{token}``). Tokens: ``core.optout_links``.

``POST /u/{token}`` with ``List-Unsubscribe=One-Click`` (what a mail client sends from
the ``List-Unsubscribe-Post`` header, and the confirmation page's button) opts the
customer out of the token's category on its channel at once; ``GET`` only shows that
button, since mail scanners open every link. A forged, altered or expired token gets
403 and changes nothing. The preferences page shows which channels alerts use and
takes a form that changes them; it shows no contact. Like the order-status page, no
answer is cached, indexed or sent on as a ``Referer``.
"""

from __future__ import annotations

import html
import logging
import secrets
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.ext.asyncio import AsyncEngine

from notifier.api.track import security_headers
from notifier.contracts.channels import CUSTOMER_CHANNELS
from notifier.contracts.preferences import ALERTS, ChannelsByCategory, CustomerPreferences
from notifier.core.optout_links import (
    PREFERENCES_PATH,
    UNSUBSCRIBE_PATH,
    read_preferences,
    read_unsubscribe,
)
from notifier.signing import TokenProblem
from notifier.store.preferences import get_preferences, opt_out, put_preferences

log = logging.getLogger("notifier.optout")

ONE_CLICK = "One-Click"
BROKEN = "This link does not work: it has expired or was altered. Use the link in a newer message."


def _page(status: int, title: str, body: str) -> HTMLResponse:
    nonce = secrets.token_urlsafe(16)
    headers = security_headers(nonce)
    # the page's own form posts back to it
    headers["Content-Security-Policy"] = headers["Content-Security-Policy"].replace(
        "form-action 'none'", "form-action 'self'"
    )
    page = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title>"
        f'<style nonce="{nonce}">body{{font-family:sans-serif;max-width:32em;margin:2em auto}}'
        "</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    return HTMLResponse(page, status_code=status, headers=headers)


def _refused(problem: TokenProblem, page: str) -> HTMLResponse:
    log.info("%s page refused: token %s", page, problem.value)
    return _page(403, "Link not valid", f"<p>{html.escape(BROKEN)}</p>")


async def _form(request: Request) -> dict[str, list[str]]:
    """The urlencoded body (what RFC 8058 clients and the pages' forms send)."""
    raw = await request.body()
    return parse_qs(raw.decode("utf-8", errors="replace"), keep_blank_values=True)


def build_optout_router(engine: AsyncEngine, secret: str | None) -> APIRouter:
    """The pages; without ``secret`` (``NOTIFIER_TRACK_SECRET``) they answer 404."""
    router = APIRouter()

    def off() -> HTMLResponse:
        return _page(404, "Not available", "<p>This page is not configured.</p>")

    @router.get(UNSUBSCRIBE_PATH + "{token}", include_in_schema=False)
    async def confirm(token: str) -> HTMLResponse:
        """A button that unsubscribes; opening the link changes nothing."""
        if secret is None:
            return off()
        found = read_unsubscribe(secret, token)
        if isinstance(found, TokenProblem):
            return _refused(found, "unsubscribe")
        form = (
            f'<form method="post"><input type="hidden" name="List-Unsubscribe" '
            f'value="{ONE_CLICK}"><button type="submit">Unsubscribe</button></form>'
        )
        what = f"{found.category} on {found.channel}"
        return _page(200, "Unsubscribe", f"<p>Stop {html.escape(what)}?</p>{form}")

    @router.post(UNSUBSCRIBE_PATH + "{token}", include_in_schema=False)
    async def unsubscribe(token: str, request: Request) -> HTMLResponse:
        """One click: the token's category stops on its channel."""
        if secret is None:
            return off()
        found = read_unsubscribe(secret, token)
        if isinstance(found, TokenProblem):
            return _refused(found, "unsubscribe")
        if (await _form(request)).get("List-Unsubscribe") != [ONE_CLICK]:
            return _page(400, "Unsubscribe", "<p>Expected List-Unsubscribe=One-Click.</p>")
        if found.category != ALERTS or found.channel not in CUSTOMER_CHANNELS:
            return _refused(TokenProblem.MALFORMED, "unsubscribe")
        await opt_out(engine, found.customer_id, found.channel, [found.category])
        what = f"{found.category} on {found.channel}"
        return _page(200, "Unsubscribed", f"<p>You will get no more {html.escape(what)}.</p>")

    @router.get(PREFERENCES_PATH + "{token}", include_in_schema=False)
    async def show(token: str) -> HTMLResponse:
        """Which channels alerts use, as a form that changes them."""
        if secret is None:
            return off()
        found = read_preferences(secret, token)
        if isinstance(found, TokenProblem):
            return _refused(found, "preferences")
        prefs = await get_preferences(engine, found) or CustomerPreferences()
        return _page(200, "Your notification preferences", _alerts_form(prefs))

    @router.post(PREFERENCES_PATH + "{token}", include_in_schema=False)
    async def change(token: str, request: Request) -> HTMLResponse:
        """Alerts go to the ticked channels (none ticked: no alerts)."""
        if secret is None:
            return off()
        found = read_preferences(secret, token)
        if isinstance(found, TokenProblem):
            return _refused(found, "preferences")
        ticked = (await _form(request)).get(ALERTS, [])
        chosen = [c for c in CUSTOMER_CHANNELS if c in ticked]
        prefs = await get_preferences(engine, found) or CustomerPreferences()
        channels = ChannelsByCategory(transactional=prefs.channels.transactional, alerts=chosen)
        prefs = prefs.model_copy(update={"channels": channels})
        await put_preferences(engine, found, prefs)
        return _page(200, "Your notification preferences", "<p>Saved.</p>" + _alerts_form(prefs))

    return router


def _alerts_form(prefs: CustomerPreferences) -> str:
    alerts = prefs.channels.alerts
    boxes = "".join(
        f'<label><input type="checkbox" name="{ALERTS}" value="{c}"'
        f"{' checked' if alerts is None or c in alerts else ''}> {c}</label><br>"
        for c in CUSTOMER_CHANNELS
    )
    return (
        "<p>Order updates you must know about (confirmation, shipping, delivery) always "
        "reach you. Alerts go to the channels ticked below.</p>"
        f'<form method="post">{boxes}<button type="submit">Save</button></form>'
    )
