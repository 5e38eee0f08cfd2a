"""Time rules as the rules file states them: durations, kinds and conditions, each
mistake one line naming the rule and the field."""

from __future__ import annotations

from datetime import timedelta

import pytest

from notifier.contracts.events import OrderEvent
from notifier.core.durations import format_duration, parse_duration
from notifier.core.rule_kinds import Audience, RuleKind
from notifier.core.rules import parse_rules
from notifier.errors import RulesError


def always(_template: str, _channel: str) -> bool:
    return True


def rules_text(when: str, extra: str = "", channels: str = "[email]") -> str:
    return (
        "version: 1\nrules:\n  - name: late\n"
        f"    when: {when}\n    template: t\n    channels: {channels}\n{extra}"
    )


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("15m", 900), ("48h", 172_800), ("2d", 172_800), (" 1h ", 3600)],
)
def test_durations_read_as_written(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["48", "2 days", "-1h", "0h", "1.5h", "h", 48, None, "1w"])
def test_a_bad_duration_says_the_form(text: object) -> None:
    with pytest.raises(ValueError, match="30s, 15m, 48h or 2d"):
        parse_duration(text)


def test_durations_print_as_a_rules_file_writes_them() -> None:
    assert [format_duration(timedelta(seconds=s)) for s in (30, 900, 7200, 172_800)] == [
        "30s",
        "15m",
        "2h",
        "2d",
    ]


def test_each_kind_loads_with_its_settings() -> None:
    text = """version: 1
rules:
  - name: stuck
    when: {held: {state: [processing], for: 48h}}
    template: t
    channels: [email]
    category: alerts
  - name: not_today
    when: {held: {state: [out_for_delivery], until: end_of_local_day}}
    template: t
    channels: [email]
  - name: missed
    when: {promise_missed: {grace: 12h}}
    template: t
    channels: [email]
    conditions: {source: [web], carrier: [DHL], order_value: {min: 100}}
  - name: later
    when: {estimate_revised: {later: true}}
    template: t
    channels: [email]
  - name: ops_watch
    when: {held: {state: [on_hold], for: 1d}}
    template: t
    channels: [email]
    audience: ops
"""
    rules = parse_rules(text, "test", template_exists=always, ops_channels=["email"])
    stuck, today, missed, later, ops = rules.rules
    assert stuck.kind is RuleKind.HELD and stuck.held_for == timedelta(hours=48)
    assert today.until_end_of_local_day and today.held_for is None
    assert missed.kind is RuleKind.PROMISE_MISSED and missed.grace == timedelta(hours=12)
    assert missed.conditions.carriers == frozenset({"dhl"})
    assert later.kind is RuleKind.ESTIMATE_REVISED
    assert ops.audience is Audience.OPS
    assert rules.timed == (stuck, today, missed, ops)
    assert rules.estimates == (later,)
    # a time rule never fires on a transition
    assert all(r.kind is RuleKind.TRANSITION for s in rules._by_state.values() for r in s)


@pytest.mark.parametrize(
    ("when", "extra", "channels", "message"),
    [
        ("{held: {state: [processing], for: 48}}", "", "[email]", "rule 1 (late): when.held.for"),
        ("{held: {state: [processing]}}", "", "[email]", "rule 1 (late): when.held: "),
        (
            "{held: {state: [processing], for: 1h, until: end_of_local_day}}",
            "",
            "[email]",
            "either for",
        ),
        ("{held: {state: [processing], for: 1h}, state: [shipped]}", "", "[email]", "exactly one"),
        ("{promise_missed: {grace: soon}}", "", "[email]", "when.promise_missed.grace"),
        ("{estimate_revised: {later: false}}", "", "[email]", "when.estimate_revised.later"),
        ("{held: {state: [processing], for: 1h}, from: [placed]}", "", "[email]", "from goes"),
        (
            "{state: [shipped]}",
            "    audience: ops\n",
            "[email, sms]",
            "audience ops is told only on email",
        ),
        ("{state: [shipped]}", "    audience: team\n", "[email]", "rule 1 (late): audience"),
        (
            "{state: [shipped]}",
            "    conditions: {order_value: {min: 10, max: 5}}\n",
            "[email]",
            "conditions.order_value",
        ),
        ("{state: [shipped]}", "    conditions: {colour: [red]}\n", "[email]", "conditions.colour"),
    ],
)
def test_each_mistake_is_one_line_naming_rule_and_field(
    when: str, extra: str, channels: str, message: str
) -> None:
    with pytest.raises(RulesError, match=r"^test: ") as caught:
        parse_rules(
            rules_text(when, extra, channels),
            "test",
            template_exists=always,
            ops_channels=["email"],
        )
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def event(**extra: object) -> OrderEvent:
    body: dict[str, object] = {
        "event_id": "e1",
        "order_id": "o1",
        "source": "web",
        "state": "shipped",
        "occurred_at": "2026-11-20T09:00:00+00:00",
        "customer": {"id": "c1"},
        "shipment": {"id": "p1", "carrier": "DHL"},
        "attributes": {"order_value": "150.00"},
    }
    body.update(extra)
    return OrderEvent.model_validate(body)


@pytest.mark.parametrize(
    ("conditions", "overrides", "allowed"),
    [
        ("{source: [web]}", {}, True),
        ("{source: [pos]}", {}, False),
        ("{carrier: [dhl, UPS]}", {}, True),
        ("{carrier: [UPS]}", {}, False),
        ("{carrier: [DHL]}", {"state": "processing", "shipment": None}, False),
        ("{order_value: {min: 100, max: 200}}", {}, True),
        ("{order_value: {min: 151}}", {}, False),
        ("{order_value: {max: 100}}", {"attributes": {"order_value": 99}}, True),
        ("{order_value: {min: 1}}", {"attributes": {}}, False),
        ("{order_value: {min: 1}}", {"attributes": {"order_value": "lots"}}, False),
    ],
)
def test_conditions_narrow_a_rule_to_some_events(
    conditions: str, overrides: dict[str, object], allowed: bool
) -> None:
    text = rules_text("{state: [shipped]}", f"    conditions: {conditions}\n")
    (rule,) = parse_rules(text, "test", template_exists=always, ops_channels=["email"]).rules
    assert rule.conditions.allow(event(**overrides)) is allowed
