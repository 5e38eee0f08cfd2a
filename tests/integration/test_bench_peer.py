"""The Apprise peer delivers every email to a real SMTP server on 127.0.0.1, and only there."""

from __future__ import annotations

import pytest

from notifier.bench.peer import apprise_email_rate, apprise_email_url
from notifier.devtools.mailcatcher import MailCatcher

COUNT = 20


async def test_apprise_delivers_every_email_to_the_catcher() -> None:
    catcher = MailCatcher(max_messages=COUNT + 10)
    port = await catcher.start(port=0)
    try:
        result = await apprise_email_rate(
            COUNT, smtp_host="127.0.0.1", smtp_port=port, to_addr="peer@example.com"
        )
        caught = await catcher.wait_for(COUNT)
    finally:
        await catcher.stop()

    assert (result.messages, result.errors) == (COUNT, 0)
    assert result.seconds > 0 and result.per_s > 0
    assert len(caught) == COUNT
    assert len({m.subject for m in caught}) == COUNT
    assert all(m.rcpt_tos == ["peer@example.com"] for m in caught)
    assert all(m.mail_from == "orders@example.com" for m in caught)
    assert all(m.subject.startswith("Your order #") for m in caught)
    assert all(900 <= len(m.text.encode()) <= 1200 for m in caught)


async def test_a_refused_connection_is_counted_as_errors_not_raised() -> None:
    catcher = MailCatcher()
    port = await catcher.start(port=0)
    await catcher.stop()  # nothing listens on the port any more

    result = await apprise_email_rate(2, smtp_host="127.0.0.1", smtp_port=port)

    assert (result.messages, result.errors) == (0, 2)


@pytest.mark.parametrize("host", ["localhost", "smtp.example.com", "10.0.0.1", "::1"])
def test_only_an_ipv4_loopback_literal_is_accepted(host: str) -> None:
    with pytest.raises(ValueError, match="loopback"):
        apprise_email_url(
            smtp_host=host, smtp_port=25, to_addr="a@example.com", from_addr="b@example.com"
        )
