"""The channel seam: every registered name is a module with its plugin, the contract and
the rules accept exactly the registered channels, what a plugin declares is what the
service runs with, and nothing outside a channel's module says its name."""

from __future__ import annotations

import ast
import logging
import sys
import types
from pathlib import Path

import pytest
from pydantic import ValidationError

from notifier.app import build_channels, build_service
from notifier.channels.base import ChannelAdapter, ChannelPlugin, SendLimits
from notifier.channels.null import NullChannel
from notifier.channels.registry import load, registered
from notifier.config import Settings, load_settings
from notifier.contracts.channels import (
    CUSTOMER_CHANNELS,
    PARTNER_CHANNEL,
    ChannelSpec,
    channel_names,
)
from notifier.contracts.events import Customer, event_json_schema
from notifier.core.rules import load_rules
from notifier.errors import ConfigError, RulesError

PACKAGE = Path(__file__).resolve().parents[2] / "notifier"


@pytest.mark.parametrize("name", channel_names())
def test_every_registered_name_is_a_module_that_declares_its_plugin(name: str) -> None:
    plugin = load(name)
    assert plugin.name == name
    assert (PACKAGE / "channels" / f"{name}.py").is_file()


def test_customer_channels_pick_an_address_and_the_partner_channel_routes() -> None:
    plugins = {p.name: p for p in registered()}
    assert tuple(plugins) == (*CUSTOMER_CHANNELS, PARTNER_CHANNEL)
    for name in CUSTOMER_CHANNELS:
        spec = plugins[name].spec
        assert spec.for_customers and spec.parts is not None and spec.contact, name
        assert plugins[name].routes is None, name
    partner = plugins[PARTNER_CHANNEL]
    assert not partner.spec.for_customers and partner.spec.parts is None
    assert partner.routes is not None


def test_every_setting_a_plugin_names_is_a_setting() -> None:
    fields = set(Settings.model_fields)
    for plugin in registered():
        named = {*plugin.requires, *(plugin.receipts_require or ()), plugin.alerts_to} - {None}
        assert named <= fields, (plugin.name, named - fields)


def test_a_registered_name_without_its_module_or_plugin_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ConfigError, match=r"notifier/channels/fax\.py does not exist"):
        load("fax")
    with pytest.raises(ConfigError, match=r"gsm\.py declares no ChannelPlugin named PLUGIN"):
        load("gsm")
    telex = types.ModuleType("notifier.channels.telex")
    telex.PLUGIN = _plugin("fax")  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "notifier.channels.telex", telex)
    with pytest.raises(ConfigError, match=r"telex\.py declares the channel 'fax'"):
        load("telex")


@pytest.mark.parametrize("name", CUSTOMER_CHANNELS)
def test_a_customer_may_opt_into_each_customer_channel(name: str) -> None:
    assert Customer.model_validate({"id": "c", "channels": [name]}).channels == [name]


@pytest.mark.parametrize("name", [PARTNER_CHANNEL, "fax", "EMAIL"])
def test_a_customer_may_not_opt_into_anything_else(name: str) -> None:
    with pytest.raises(ValidationError, match="should be one of email, sms, push"):
        Customer.model_validate({"id": "c", "channels": [name]})


def test_the_published_schema_lists_exactly_the_customer_channels() -> None:
    customer = event_json_schema()["$defs"]["Customer"]["properties"]["channels"]
    assert customer["anyOf"][0]["items"]["enum"] == list(CUSTOMER_CHANNELS)


def test_a_rule_may_name_only_the_channels_it_is_given(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "version: 1\nrules:\n  - name: a\n    when: {state: [placed]}\n"
        "    template: t\n    channels: [email, fax]\n"
    )
    with pytest.raises(RulesError, match=r"channels\.1: .*unknown channel 'fax'"):
        load_rules(rules, template_exists=lambda _t, _c: True)
    loaded = load_rules(rules, template_exists=lambda _t, _c: True, channels=("email", "fax"))
    assert loaded.rules[0].channels == ("email", "fax")


def test_the_partner_channel_is_not_for_rules(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "version: 1\nrules:\n  - name: a\n    when: {state: [placed]}\n"
        f"    template: t\n    channels: [{PARTNER_CHANNEL}]\n"
    )
    with pytest.raises(RulesError, match=f"unknown channel '{PARTNER_CHANNEL}'"):
        load_rules(rules, template_exists=lambda _t, _c: True)


def test_a_channel_without_its_settings_is_off_with_the_reason_said_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    plugin = _plugin("fax", requires=("public_base_url", "alert_email"))
    with caplog.at_level(logging.WARNING, logger="notifier"):
        channels = build_channels(load_settings(), [plugin])
    assert channels == {}
    said = [r.getMessage() for r in caplog.records if "fax" in r.getMessage()]
    assert said == [
        "fax channel disabled: NOTIFIER_PUBLIC_BASE_URL, NOTIFIER_ALERT_EMAIL are not set"
    ]
    channels = build_channels(
        load_settings(public_base_url="https://n.example.com", alert_email="ops@example.com"),
        [plugin],
    )
    assert list(channels) == ["fax"]


def test_every_customer_channel_can_be_null() -> None:
    settings = load_settings(null_channels=",".join(CUSTOMER_CHANNELS))
    channels = build_channels(settings)
    assert list(channels) == list(CUSTOMER_CHANNELS)
    for name, adapter in channels.items():
        assert isinstance(adapter, NullChannel) and adapter.name == name
    with pytest.raises(ConfigError, match="NOTIFIER_NULL_CHANNELS: unknown channel"):
        load_settings(null_channels=PARTNER_CHANNEL)


def test_what_the_plugins_declare_is_what_the_dispatcher_runs_with(tmp_path: Path) -> None:
    base = {
        "smtp_host": "smtp.invalid",
        "twilio_account_sid": "AC" + "1" * 32,
        "twilio_auth_token": "token",
        "twilio_from": "+15005550006",
        "database_url": f"sqlite+aiosqlite:///{tmp_path / 'n.db'}",
        "sms_concurrency": 3,
        "email_rate_per_s": 7.0,
    }
    service = build_service(load_settings(**base, public_base_url="https://n.example.com"))
    sms = service.dispatcher.workers["sms"]
    assert (sms.limits.concurrency, sms.limits.rate_per_s) == (3, 30.0)
    assert service.dispatcher.workers["email"].limits.rate_per_s == 7.0
    assert sms.settings.receipt_channels == {"sms"}  # Twilio calls back: fallback waits
    assert sms.settings.dead_recipient_channels == {"push"}
    # without a callback URL, or with a null SMS channel, no receipt ever comes
    for extra in ({}, {"public_base_url": "https://n.example.com", "null_channels": "sms"}):
        service = build_service(load_settings(**base, **extra))
        assert service.dispatcher.workers["sms"].settings.receipt_channels == frozenset()


#: string constants that equal a channel name without meaning the channel, and why
NOT_CHANNEL_NAMES = {
    ("store/maintenance.py", "email"): "the customer's contact field, erased with the others",
    ("contracts/events.py", "email"): "the JSON Schema string format of an address",
    ("core/drafts.py", "webhook"): "the fixed key of a partner body's digest, stored per row",
    ("core/preferences.py", "email"): "the customer's contact field a stored override replaces",
    ("store/preferences.py", "email"): "the stored override's column",
    ("store/tables.py", "email"): "the stored override's column",
    (
        "store/migrations/versions/0007_customer_preferences.py",
        "email",
    ): "the stored override's column",
}
#: not the service: the benchmark and the dev fakes stand in for particular providers
NOT_THE_SERVICE = ("bench", "devtools")


def test_no_module_outside_a_channel_says_its_name() -> None:
    names = set(channel_names())
    allowed = {f"channels/{name}.py" for name in names} | {"contracts/channels.py"}
    said: list[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        where = path.relative_to(PACKAGE).as_posix()
        if where in allowed or where.split("/")[0] in NOT_THE_SERVICE:
            continue
        for line, value in _strings(path):
            if value in names and (where, value) not in NOT_CHANNEL_NAMES:
                said.append(f"{where}:{line}: {value!r}")
    assert not said, "channel names belong in the channel's module: " + ", ".join(said)


def test_the_name_check_sees_a_name_said_in_code(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text('"""Docstrings may say sms."""\n\nif channel == "push":\n    pass\n')
    assert list(_strings(module)) == [(3, "push")]


def _strings(path: Path) -> list[tuple[int, str]]:
    """String constants in code, docstrings and other bare strings left out."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    bare = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in bare
    ]


def _plugin(name: str, requires: tuple[str, ...] = ()) -> ChannelPlugin:
    def build(_settings: Settings) -> ChannelAdapter:
        return NullChannel()

    return ChannelPlugin(
        spec=ChannelSpec(name=name, recipient=lambda c: c.phone, contact="fax number"),
        requires=requires,
        build=build,
        limits=lambda _s: SendLimits(concurrency=1, rate_per_s=0.0),
    )
