"""Push render-time limits, the APNs collapse id and the channel's settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from notifier.channels.push import (
    APNS_COLLAPSE_ID_MAX_BYTES,
    BODY_MAX_CHARS,
    DATA_RESERVE_BYTES,
    PAYLOAD_MAX_BYTES,
    PLUGIN,
    PROVIDER_OVERHEAD_BYTES,
    TITLE_MAX_CHARS,
    PushChannel,
    apns_collapse_id,
    payload_bytes,
    push_limit_problem,
)
from notifier.config import load_settings
from notifier.errors import ConfigError

CLEF = "\U0001d11e"  # four bytes in UTF-8


@pytest.mark.parametrize(
    ("title", "body", "problem"),
    [
        ("Shipped", "Your order has shipped", None),
        (None, "Your order has shipped", None),
        ("t" * TITLE_MAX_CHARS, "b" * BODY_MAX_CHARS, None),
        ("t" * (TITLE_MAX_CHARS + 1), "body", "push title has 121 characters"),
        ("title", "b" * (BODY_MAX_CHARS + 1), "push body has 1001 characters"),
        # 1,000 characters, but 4,000 bytes: only the byte budget catches it
        ("title", CLEF * BODY_MAX_CHARS, "bytes as JSON"),
        # JSON escapes count: 1,000 control characters become 6,000 bytes
        ("title", "\x01" * BODY_MAX_CHARS, "bytes as JSON"),
    ],
    ids=["fits", "no-title", "at-limits", "long-title", "long-body", "wide-body", "escaped"],
)
def test_push_limit_problem(title: str | None, body: str, problem: str | None) -> None:
    found = push_limit_problem(title, body)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


def test_the_render_budget_leaves_room_for_data_and_provider_overhead() -> None:
    budget = PAYLOAD_MAX_BYTES - PROVIDER_OVERHEAD_BYTES - DATA_RESERVE_BYTES
    # "\x01" is written as the six bytes \u0001 in JSON
    widest_that_fits = "\x01" * ((budget - payload_bytes("", "", {})) // 6)

    assert push_limit_problem("", widest_that_fits) is None
    assert push_limit_problem("", widest_that_fits + "\x01") is not None


def test_payload_bytes_counts_notification_and_data_as_utf8_json() -> None:
    assert payload_bytes("T", "B", {"k": "v"}) == len(
        '{"notification":{"title":"T","body":"B"},"data":{"k":"v"}}'
    )
    assert payload_bytes(None, "é", {}) == len('{"notification":{"body":"é"},"data":{}}'.encode())


@pytest.mark.parametrize(
    ("notification_id", "kept"),
    [
        ("0b6f7c4e-4a8e-4a57-9d0e-7f4f3c8f2b11", True),
        ("n" * APNS_COLLAPSE_ID_MAX_BYTES, True),
        ("n" * (APNS_COLLAPSE_ID_MAX_BYTES + 1), False),
        ("commande-été", False),
        ("tab\tinside", False),
    ],
    ids=["uuid", "64-bytes", "65-bytes", "non-ascii", "control"],
)
def test_apns_collapse_id(notification_id: str, kept: bool) -> None:
    collapse_id = apns_collapse_id(notification_id)

    assert (collapse_id == notification_id) is kept
    assert len(collapse_id.encode()) <= APNS_COLLAPSE_ID_MAX_BYTES
    assert collapse_id.isascii() and collapse_id.isprintable()
    assert apns_collapse_id(notification_id) == collapse_id


def test_ids_sharing_a_long_prefix_keep_distinct_collapse_ids() -> None:
    prefix = "order-1042-" + "x" * APNS_COLLAPSE_ID_MAX_BYTES
    assert apns_collapse_id(prefix + "packed") != apns_collapse_id(prefix + "shipped")


def test_disabled_without_a_credentials_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NOTIFIER_FCM_CREDENTIALS_FILE", raising=False)
    key_file = tmp_path / "service-account.json"
    key_file.write_text("{}")

    assert PLUGIN.disabled_reason(load_settings()) == "NOTIFIER_FCM_CREDENTIALS_FILE is not set"
    assert PLUGIN.disabled_reason(load_settings(fcm_credentials_file=key_file)) is None
    with pytest.raises(ConfigError, match="NOTIFIER_FCM_CREDENTIALS_FILE"):
        PushChannel.from_settings(load_settings())
    assert isinstance(
        PushChannel.from_settings(load_settings(fcm_credentials_file=key_file)), PushChannel
    )
