"""NOTIFIER_NULL_CHANNELS: instant in-process channels for benchmarks."""

from __future__ import annotations

import pytest

from notifier.app import build_channels
from notifier.channels.base import OutboundMessage
from notifier.config import load_settings
from notifier.errors import ConfigError


async def test_null_channels_replace_providers_and_accept_at_once() -> None:
    settings = load_settings(null_channels="email, push", smtp_host="smtp.invalid")
    channels = build_channels(settings)
    assert channels["email"].provider == "null"
    assert channels["push"].provider == "null"
    assert "sms" not in channels  # no Twilio credentials: still disabled
    message = OutboundMessage(notification_id="n1", channel="email", to="a@example.com", text="t")
    receipt = await channels["email"].send(message)
    assert (receipt.provider, receipt.provider_message_id) == ("null", "n1")


def test_unknown_null_channel_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match=r"NOTIFIER_NULL_CHANNELS: .*unknown channel.*fax"):
        load_settings(null_channels="email,fax")
