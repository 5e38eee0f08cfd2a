"""The webhooks file, the signature scheme and the answer table, without a network."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from notifier.channels.base import MAX_RETRY_AFTER_S, parse_retry_after
from notifier.channels.webhook import (
    PLUGIN,
    WebhookChannel,
    WebhookEndpoint,
    error_for_status,
    load_webhooks,
    sign,
    signature_header,
    verify,
)
from notifier.config import load_settings
from notifier.errors import ConfigError, PermanentDeliveryError, TransientDeliveryError

SECRET = "s3cret-s3cret-s3cret"
ENV = {"ACME_SECRET": SECRET, "SHORT_SECRET": "tooshort"}
VALID = """\
version: 1
endpoints:
  - name: acme-erp
    url: https://erp.acme.example/hooks/notifier?token=abc
    secret_env: ACME_SECRET
    sources: [shop-eu]
    states: [shipped, delivered]
    timeout_s: 5
  - name: globex
    url: http://127.0.0.1:9000/hook
    secret: "inline-secret-of-20c"
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "webhooks.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _one(**fields: str) -> str:
    entry = {"name": "acme", "url": "https://a.example/h", "secret_env": "ACME_SECRET"}
    entry.update(fields)
    lines = "".join(f"    {k}: {v}\n" for k, v in entry.items() if v != "<omit>")
    return f"version: 1\nendpoints:\n  - {lines.lstrip()}"


def test_valid_file_loads(tmp_path: Path) -> None:
    endpoints = load_webhooks(_write(tmp_path, VALID), ENV)

    acme = endpoints.get("acme-erp")
    assert acme is not None
    assert acme.secret.get_secret_value() == SECRET
    assert acme.sources == frozenset({"shop-eu"})
    assert acme.states == frozenset({"shipped", "delivered"})
    assert acme.timeout_s == 5
    globex = endpoints.get("globex")
    assert globex is not None
    assert globex.sources is None and globex.states is None and globex.timeout_s is None
    assert len(endpoints) == 2 and "globex" in endpoints and endpoints.get("gone") is None


def test_repr_shows_neither_url_nor_secret(tmp_path: Path) -> None:
    acme = load_webhooks(_write(tmp_path, VALID), ENV).get("acme-erp")

    assert "token=abc" not in repr(acme) and SECRET not in repr(acme)


@pytest.mark.parametrize(
    ("source", "state", "wanted"),
    [
        ("shop-eu", "shipped", ["acme-erp", "globex"]),
        ("shop-eu", "placed", ["globex"]),
        ("shop-us", "shipped", ["globex"]),
    ],
)
def test_matching_filters_on_source_and_state(
    tmp_path: Path, source: str, state: str, wanted: list[str]
) -> None:
    endpoints = load_webhooks(_write(tmp_path, VALID), ENV)

    assert [e.name for e in endpoints.matching(source, state)] == wanted


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("version: 1\nendpoints: [\n", "not valid YAML: line"),
        ("version: 2\nendpoints: []\n", "version:"),
        ("version: 1\n", "endpoints: Field required"),
        (_one(name="Acme"), "endpoint 1 (Acme): name: String should match pattern"),
        (_one(url="ftp://a.example/h"), "endpoint 1 (acme): url: must be an http:// or https://"),
        (_one(url="https:///nohost"), "endpoint 1 (acme): url: must be an http:// or https://"),
        (_one(url="https://a.example:99999/h"), "endpoint 1 (acme): url: is not a valid URL"),
        (_one(states="[shiped]"), "endpoint 1 (acme): states: unknown state 'shiped'"),
        (_one(sources="[]"), "endpoint 1 (acme): sources: List should have at least 1 item"),
        (_one(timeout_s="0"), "endpoint 1 (acme): timeout_s: Input should be greater than 0"),
        (_one(colour="blue"), "endpoint 1 (acme): colour: Extra inputs are not permitted"),
        (
            _one(secret_env="MISSING_SECRET"),
            "endpoint 1 (acme): secret_env: environment variable MISSING_SECRET is not set",
        ),
        (
            _one(secret_env="SHORT_SECRET"),
            "endpoint 1 (acme): secret_env: SHORT_SECRET holds fewer than 16 characters",
        ),
        (
            _one(secret_env="<omit>", secret="tooshort"),
            "endpoint 1 (acme): secret: must be at least 16 characters",
        ),
        (_one(secret_env="<omit>"), "endpoint 1 (acme): secret_env: required"),
        (_one(secret="inline-secret-of-20c"), "endpoint 1 (acme): secret: set secret_env or"),
        (
            _one() + "  - name: acme\n    url: https://b.example/\n    secret_env: ACME_SECRET\n",
            "endpoint 2 (acme): name: used by an earlier endpoint",
        ),
    ],
    ids=lambda v: v if len(v) < 40 else None,
)
def test_config_errors_name_file_endpoint_and_field(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = _write(tmp_path, text)

    with pytest.raises(ConfigError) as caught:
        load_webhooks(path, ENV)

    message = str(caught.value)
    assert message.startswith(f"{path}: ") and expected in message
    assert "\n" not in message


def test_config_errors_do_not_echo_urls_or_secrets(tmp_path: Path) -> None:
    for text in (
        _one(url="ftp://a.example/h?token=leaky"),
        _one(secret_env="<omit>", secret="leaky-short"),
    ):
        with pytest.raises(ConfigError) as caught:
            load_webhooks(_write(tmp_path, text), ENV)
        chain = f"{caught.value} {caught.value.__cause__}"
        assert "leaky" not in chain


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read webhooks file"):
        load_webhooks(tmp_path / "absent.yaml", ENV)


def test_sign_matches_the_documented_scheme() -> None:
    import hashlib
    import hmac

    expected = hmac.new(SECRET.encode(), b'1700000000.{"a":1}', hashlib.sha256).hexdigest()

    assert sign(SECRET, 1_700_000_000, b'{"a":1}') == expected
    assert sign(SECRET.encode(), 1_700_000_000, b'{"a":1}') == expected


BODY = b'{"event":"shipped"}'
NOW = 1_700_000_000


@pytest.mark.parametrize(
    ("header", "body", "now", "ok"),
    [
        (signature_header(SECRET, NOW, BODY), BODY, NOW, True),
        (signature_header(SECRET, NOW, BODY), BODY, NOW + 300, True),
        (signature_header(SECRET, NOW, BODY), BODY + b" ", NOW, False),
        (signature_header("another-secret-entirely", NOW, BODY), BODY, NOW, False),
        (signature_header(SECRET, NOW, BODY), BODY, NOW + 301, False),
        (signature_header(SECRET, NOW + 301, BODY), BODY, NOW, False),
        (f"t={NOW},v1=00ff,v1={sign(SECRET, NOW, BODY)}", BODY, NOW, True),
        (f"t={NOW}, v0=x, v1={sign(SECRET, NOW, BODY)}", BODY, NOW, True),
        (f"t={NOW + 1},v1={sign(SECRET, NOW, BODY)}", BODY, NOW, False),
        (f"v1={sign(SECRET, NOW, BODY)}", BODY, NOW, False),
        (f"t={NOW}", BODY, NOW, False),
        (f"t=soon,v1={sign(SECRET, NOW, BODY)}", BODY, NOW, False),
        (f"t={NOW},v1=ünïcode", BODY, NOW, False),
        ("", BODY, NOW, False),
    ],
    ids=[
        "round-trip",
        "at-tolerance",
        "tampered-body",
        "wrong-secret",
        "stale",
        "future",
        "rotation",
        "unknown-keys-and-spaces",
        "timestamp-swapped",
        "no-timestamp",
        "no-signature",
        "bad-timestamp",
        "non-ascii",
        "empty",
    ],
)
def test_verify(header: str, body: bytes, now: int, ok: bool) -> None:
    assert verify(SECRET, header, body, now=now) is ok


def test_verify_tolerance_is_adjustable() -> None:
    header = signature_header(SECRET, NOW, BODY)

    assert verify(SECRET, header, BODY, now=NOW + 600, tolerance_s=900)


WHEN = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, None),
        ("3", 3.0),
        (" 120 ", 120.0),
        ("999999", MAX_RETRY_AFTER_S),
        ("Sat, 01 Mar 2025 12:00:30 GMT", 30.0),
        ("Sat, 01 Mar 2025 11:00:00 GMT", 0.0),
        ("-5", None),
        ("soon", None),
    ],
)
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, now=WHEN) == seconds


@pytest.mark.parametrize(
    ("status", "kind", "code", "retry_after"),
    [
        (200, None, None, None),
        (204, None, None, None),
        (429, TransientDeliveryError, "http_429", 7.0),
        (503, TransientDeliveryError, "http_503", 7.0),
        (408, TransientDeliveryError, "http_408", None),
        (425, TransientDeliveryError, "http_425", None),
        (500, TransientDeliveryError, "http_500", None),
        (502, TransientDeliveryError, "http_502", None),
        (410, PermanentDeliveryError, "http_410", None),
        (400, PermanentDeliveryError, "http_400", None),
        (401, PermanentDeliveryError, "http_401", None),
        (404, PermanentDeliveryError, "http_404", None),
        (301, PermanentDeliveryError, "http_301", None),
    ],
)
def test_answer_table(
    status: int, kind: type[Exception] | None, code: str | None, retry_after: float | None
) -> None:
    error = error_for_status("acme", status, "7")

    if kind is None:
        assert error is None
        return
    assert isinstance(error, kind) and error.code == code and "acme" in str(error)
    if isinstance(error, TransientDeliveryError):
        assert error.retry_after == retry_after


def test_disabled_without_a_webhooks_file(tmp_path: Path) -> None:
    path = _write(tmp_path, VALID)

    assert PLUGIN.disabled_reason(load_settings()) == "NOTIFIER_WEBHOOKS_FILE is not set"
    assert PLUGIN.disabled_reason(load_settings(webhooks_file=path)) is None
    with pytest.raises(ConfigError, match="NOTIFIER_WEBHOOKS_FILE"):
        WebhookChannel.from_settings(load_settings())


def test_from_settings_reads_secrets_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACME_SECRET", SECRET)
    channel = WebhookChannel.from_settings(
        load_settings(webhooks_file=_write(tmp_path, VALID), webhook_timeout_s=3)
    )

    assert [e.name for e in channel.endpoints] == ["acme-erp", "globex"]


def test_endpoint_wants() -> None:
    from pydantic import SecretStr

    endpoint = WebhookEndpoint(
        "e", "https://e.example/", SecretStr(SECRET), states=frozenset({"shipped"})
    )

    assert endpoint.wants("any", "shipped") and not endpoint.wants("any", "placed")
