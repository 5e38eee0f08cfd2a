"""A channel is a plug-in: a test-only ``fax`` channel, declared here as a module would
declare it and handed to the composition root, is sent on end to end (ingest → pipeline
→ ledger → dispatch queue → adapter) with no other module edited: its templates live in
a temporary copy of the template set, its rule in a temporary rules file."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import ClassVar

from httpx import ASGITransport, AsyncClient

from notifier.app import build_service, create_app
from notifier.channels.base import (
    ChannelPlugin,
    OutboundMessage,
    SendLimits,
    SendReceipt,
)
from notifier.channels.registry import registered
from notifier.config import Settings, default_templates_dir
from notifier.contracts.channels import ChannelSpec, RenderCheck, TemplateParts
from notifier.devtools.natsserver import NatsServer
from notifier.service import Service
from tests.integration.helpers import event, order, publish, settings_for
from tests.support import wait_until

#: a fax page: more lines than this do not fit on the cover sheet's one page
MAX_FAX_LINES = 40


class FaxMachine:
    """The provider of the throwaway channel: keeps every fax it is handed."""

    name: ClassVar[str] = "fax"
    provider: ClassVar[str] = "faxbox"
    breaker_per_recipient: ClassVar[bool] = False

    def __init__(self) -> None:
        self.sent: list[OutboundMessage] = []

    async def start(self) -> None:
        """Nothing to open."""

    async def send(self, message: OutboundMessage) -> SendReceipt:
        """Keep the fax; its number in the tray is the provider's message id."""
        self.sent.append(message)
        return SendReceipt(self.provider, f"fax-{len(self.sent)}")

    async def close(self) -> None:
        """Nothing to close."""


def _one_page(_settings: Settings) -> RenderCheck:
    def check(_cover: str | None, text: str) -> str | None:
        lines = len(text.splitlines())
        return f"{lines} lines, more than a page" if lines > MAX_FAX_LINES else None

    return check


def fax_plugin(machine: FaxMachine) -> ChannelPlugin:
    """What ``notifier/channels/fax.py`` would declare as its ``PLUGIN``."""
    return ChannelPlugin(
        spec=ChannelSpec(
            name=FaxMachine.name,
            parts=TemplateParts(subject="cover", text="text"),
            recipient=lambda customer: customer.phone,
            contact="fax number",
        ),
        requires=(),
        build=lambda _settings: machine,
        limits=lambda _settings: SendLimits(concurrency=2, rate_per_s=0.0),
        render_check=_one_page,
    )


def _fax_templates(root: Path) -> Path:
    """The shipped template set plus the fax parts of ``order_confirmed``."""
    templates = root / "templates"
    shutil.copytree(default_templates_dir(), templates)
    folder = templates / "order_confirmed" / "en"
    (folder / "fax.cover.j2").write_text("Order {{ order.id }}\n  confirmed", encoding="utf-8")
    (folder / "fax.text.j2").write_text(
        "Dear {{ customer.name }},\nyour order {{ order.id }} is confirmed.\n"
        "{% for item in order.attributes.get('items', []) %}{{ item }}\n{% endfor %}",
        encoding="utf-8",
    )
    return templates


def _fax_rules(root: Path) -> Path:
    rules = root / "rules.yaml"
    rules.write_text(
        "version: 1\nrules:\n"
        "  - name: confirmation_by_fax\n"
        "    when: {state: [placed]}\n"
        "    template: order_confirmed\n"
        "    channels: [fax]\n",
        encoding="utf-8",
    )
    return rules


@asynccontextmanager
async def _running(
    settings: Settings, plugins: tuple[ChannelPlugin, ...]
) -> AsyncIterator[tuple[Service, AsyncClient]]:
    service = build_service(settings, plugins=plugins)
    await service.start()
    app = create_app(service)
    try:
        async with AsyncClient(transport=ASGITransport(app=app), base_url="http://t") as client:
            yield service, client
    finally:
        await service.stop()


async def test_a_channel_registered_through_the_seam_is_sent_end_to_end_and_checked(
    nats: NatsServer, database_url: str, tmp_path: Path
) -> None:
    machine = FaxMachine()
    settings = settings_for(
        nats.url,
        database_url,
        None,
        templates_dir=_fax_templates(tmp_path),
        rules_file=_fax_rules(tmp_path),
    )
    plugins = (*registered(), fax_plugin(machine))
    async with _running(settings, plugins) as (service, client):
        assert "fax" in service.dispatcher.workers
        long = event(
            "F-2",
            "placed",
            0,
            email=None,
            phone="+14155550124",
            attributes={"items": [f"item {i}" for i in range(MAX_FAX_LINES)]},
        )
        await publish(nats.url, event("F-1", "placed", 0, email=None, phone="+14155550123"), long)

        async def settled() -> bool:
            views = [await order(client, o) for o in ("F-1", "F-2")]
            return all(
                v and v["notifications"] and v["notifications"][0]["status"] in ("sent", "failed")
                for v in views
            )

        await wait_until(settled, timeout=15)
        view, too_long = await order(client, "F-1"), await order(client, "F-2")

    assert view is not None and too_long is not None
    [refused] = too_long["notifications"]
    assert (refused["channel"], refused["status"]) == ("fax", "failed")
    assert refused["last_error"] == (
        f"template output not sendable on fax: {MAX_FAX_LINES + 2} lines, more than a page"
    )
    [note] = view["notifications"]
    assert (note["channel"], note["template"], note["status"]) == ("fax", "order_confirmed", "sent")
    assert (note["provider"], note["provider_message_id"]) == ("faxbox", "fax-1")
    [fax] = machine.sent
    assert (fax.channel, fax.to, fax.order_id) == ("fax", "+14155550123", "F-1")
    assert fax.subject == "Order F-1 confirmed"  # the cover is one line, as a subject is
    assert fax.text == "Dear Ada Lovelace,\nyour order F-1 is confirmed."
