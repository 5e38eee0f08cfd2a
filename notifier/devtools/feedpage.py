"""``GET /dev/feed/{customer_id}``: one customer's in-app feed, live, as a shop's page
would show it, so a newcomer sees a notification arrive the moment it is sent.

The page holds what a shopper's browser would: a customer token minted here, server
side, with the dev feed secret (``signing.mint(secret, "feed", customer_id, exp)``),
never the operator token. Its script opens the stream first
(``EventSource`` on ``/v1/customers/{id}/feed/stream?token=…``) and then paints the
newest items (``GET /v1/customers/{id}/feed?token=…``), dropping an item it already
shows, so nothing that arrives in between is missed. The feed API belongs to the
``inapp`` channel; where this build has no such route, or no feed secret, the page
says so instead of making requests that could only fail.
"""

from __future__ import annotations

import time
from html import escape

from fastapi import APIRouter, Request, Response
from pydantic import SecretStr

from notifier import signing
from notifier.config import Settings
from notifier.devtools.devpages import page

#: the route the page streams from; its presence says the feed API is in this build
STREAM_ROUTE = "/v1/customers/{customer_id}/feed/stream"
#: how long the token a dev page holds stays good
TOKEN_TTL_S = 12 * 3600

_SCRIPT = """
const main = document.getElementById("feed");
const base = "/v1/customers/" + encodeURIComponent(main.dataset.customer) + "/feed";
const auth = "token=" + encodeURIComponent(main.dataset.token);
const list = document.getElementById("items");
const empty = document.getElementById("empty");
const unread = document.getElementById("unread");
const status = document.getElementById("status");
const seen = new Set();
function say(state, text) { status.dataset.state = state; status.textContent = text; }
function safeLink(href) {
  try { const url = new URL(href, location.href);
        return ["http:", "https:"].includes(url.protocol) ? url.href : null; }
  catch (e) { return null; }
}
function show(item, newest) {
  if (seen.has(item.id)) return false;
  seen.add(item.id);
  const li = document.createElement("li");
  li.className = item.read ? "item" : "item unread";
  li.dataset.itemId = item.id;
  const title = document.createElement("strong");
  title.textContent = item.title;
  const body = document.createElement("p");
  body.textContent = item.body;
  const meta = document.createElement("small");
  meta.textContent = [item.created_at, item.template, "order " + item.order_id].join(" \\u00b7 ");
  li.append(title, body, meta);
  const href = item.link && safeLink(item.link);
  if (href) {
    const a = document.createElement("a");
    a.href = href; a.textContent = " open"; li.append(a);
  }
  if (newest) list.prepend(li); else list.append(li);
  empty.hidden = true;
  return true;
}
function listen() {
  const stream = new EventSource(base + "/stream?" + auth);
  stream.onopen = () => say("live", "Live: new items appear here as they are sent.");
  stream.onerror = () => say("reconnecting", "Stream interrupted; reconnecting\\u2026");
  stream.addEventListener("item", (e) => {
    const item = JSON.parse(e.data);
    if (show(item, true) && !item.read) unread.textContent = Number(unread.textContent) + 1;
  });
}
async function paint() {
  const answer = await fetch(base + "?limit=20&" + auth);
  if (!answer.ok) { say("error", "The feed API answered " + answer.status + "."); return; }
  const feed = await answer.json();
  feed.items.forEach((item) => show(item, false));
  unread.textContent = feed.unread_count;
}
document.getElementById("read-all").addEventListener("click", async () => {
  const answer = await fetch(base + "/read?" + auth, {
    method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify({all: true})});
  if (!answer.ok) { say("error", "Marking read answered " + answer.status + "."); return; }
  list.querySelectorAll(".unread").forEach((li) => li.classList.remove("unread"));
  unread.textContent = 0;
});
listen();
paint().catch((e) => say("error", "Could not load the feed: " + e.message));
"""


def _secret(settings_value: object) -> str | None:
    """``feed_secret`` as the settings hold it (plain or ``SecretStr``), or ``None``."""
    if isinstance(settings_value, SecretStr):
        settings_value = settings_value.get_secret_value()
    return settings_value if isinstance(settings_value, str) and settings_value else None


def _has_feed_api(request: Request) -> bool:
    # from the OpenAPI document (built once, then cached by FastAPI): routers included
    # in the app are not listed route by route in ``app.routes``
    paths: dict[str, object] = request.app.openapi().get("paths", {})
    return STREAM_ROUTE in paths


def _unavailable(customer_id: str, why: str) -> Response:
    body = (
        f'<main id="feed" data-state="unavailable"><p>Customer '
        f"<code>{escape(customer_id)}</code></p>"
        f'<p id="status" data-state="unavailable">The in-app feed is not available: '
        f"{escape(why)}</p></main>"
    )
    return page(f"Feed: {customer_id}", body)


def feed_page_router(settings: Settings) -> APIRouter:
    """The dev feed page; ``settings`` are the dev server's (``feed_secret`` if present)."""
    router = APIRouter(prefix="/dev/feed", tags=["dev"])
    secret = _secret(getattr(settings, "feed_secret", None))

    @router.get("/{customer_id}", response_class=Response)
    async def feed_page(customer_id: str, request: Request) -> Response:
        if not _has_feed_api(request):
            return _unavailable(customer_id, f"this build has no {STREAM_ROUTE} route.")
        if secret is None:
            return _unavailable(customer_id, "NOTIFIER_FEED_SECRET is not set.")
        token = signing.mint(secret, "feed", customer_id, int(time.time()) + TOKEN_TTL_S)
        body = (
            f'<main id="feed" data-customer="{escape(customer_id)}" data-token="{escape(token)}">'
            f"<p>Customer <code>{escape(customer_id)}</code>: "
            '<span id="unread">0</span> unread <button id="read-all">Mark all read</button></p>'
            '<p id="status" data-state="connecting">Connecting\u2026</p>'
            '<p id="empty" class="empty">No items yet: run <code>notifier emit --demo</code> '
            "in another shell and watch them arrive.</p>"
            '<ol id="items"></ol></main>'
        )
        return page(f"Feed: {customer_id}", body, script=_SCRIPT)

    return router
