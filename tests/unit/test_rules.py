"""The rules file: defaults load, and each mistake is one line naming rule and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from notifier.config import DEFAULT_RULES_FILE
from notifier.contracts.events import OrderState
from notifier.core.lifecycle import Transition
from notifier.core.rules import Category, Priority, load_rules, parse_rules
from notifier.errors import RulesError


def always(_template: str, _channel: str) -> bool:
    return True


def test_defaults_cover_the_lifecycle() -> None:
    rules = load_rules(DEFAULT_RULES_FILE, template_exists=always)
    fired = {
        state: [r.template for r in rules.matching(Transition("e", None, None, state, "x"))]
        for state in OrderState
    }
    assert fired[OrderState.PLACED] == ["order_confirmed"]
    assert fired[OrderState.CONFIRMED] == ["order_confirmed"]
    for state in (
        "shipped",
        "out_for_delivery",
        "delivered",
        "delivery_failed",
        "cancelled",
        "refunded",
    ):
        assert set(fired[OrderState(state)]) == {state}
    assert fired[OrderState.IN_TRANSIT] == []
    # in-app goes with every transition, and never inside a fallback chain
    for state in OrderState:
        matched = rules.matching(Transition("e", None, None, state, "x"))
        assert all("inapp" not in r.channels for r in matched if r.fallback)
        assert not matched or any("inapp" in r.channels for r in matched), state


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("version: 1\nrules: [", "not valid YAML"),
        ("version: 2\nrules: []", "version"),
        (
            "version: 1\nrules:\n  - name: a\n    when: {state: [shiped]}\n    template: t\n"
            "    channels: [email]\n",
            "rule 1 (a): when.state.0",
        ),
        (
            "version: 1\nrules:\n  - name: a\n    when: {state: [shipped]}\n    template: t\n"
            "    channels: [fax]\n",
            "rule 1 (a): channels.0",
        ),
        (
            "version: 1\nrules:\n  - name: a\n    when: {state: [shipped]}\n    template: t\n"
            "    channels: [email, email]\n",
            "listed twice",
        ),
        (
            "version: 1\nrules:\n  - name: a\n    when: {state: [shipped]}\n    template: t\n"
            "    channels: [email]\n    priorty: high\n",
            "rule 1 (a): priorty",
        ),
        (
            "version: 1\nrules:\n  - name: a\n    when: {state: [shipped]}\n    template: t\n"
            "    channels: [email]\n  - name: a\n    when: {state: [placed]}\n    template: t\n"
            "    channels: [email]\n",
            "rule 2 (a): name is used twice",
        ),
    ],
)
def test_mistakes_are_reported_by_rule_and_field(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    with pytest.raises(RulesError) as err:
        load_rules(path, template_exists=always)
    assert message in str(err.value)
    assert str(path) in str(err.value)
    assert "\n" not in str(err.value)


def test_a_rule_needs_its_template_for_every_channel(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(
        "version: 1\nrules:\n  - name: a\n    when: {state: [shipped]}\n"
        "    template: shipped\n    channels: [email, sms]\n"
    )
    with pytest.raises(RulesError, match=r"rule 1 \(a\): template 'shipped' has no sms part"):
        load_rules(path, template_exists=lambda _t, channel: channel == "email")


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match="cannot read rules file"):
        load_rules(tmp_path / "nope.yaml", template_exists=always)


def test_from_states_restrict_a_rule(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(
        "version: 1\nrules:\n  - name: back\n    when: {state: [out_for_delivery],"
        " from: [delivery_failed]}\n    template: t\n    channels: [sms]\n"
    )
    rules = load_rules(path, template_exists=always)
    first = Transition("e", "p", OrderState.SHIPPED, OrderState.OUT_FOR_DELIVERY, "x")
    retry = Transition("e", "p", OrderState.DELIVERY_FAILED, OrderState.OUT_FOR_DELIVERY, "x")
    assert rules.matching(first) == ()
    assert [r.name for r in rules.matching(retry)] == ["back"]


def test_a_channel_everyone_receives_may_only_end_a_fallback_chain(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    chain = "version: 1\nrules:\n  - name: ofd\n    when: {state: [shipped]}\n    template: t\n"
    rules.write_text(chain + "    fallback: true\n    channels: [push, inapp, email]\n")
    with pytest.raises(RulesError, match=r"rule 1 \(ofd\): every customer can receive inapp"):
        load_rules(rules, template_exists=always, reaching_everyone=("inapp",))
    rules.write_text(chain + "    fallback: true\n    channels: [push, email, inapp]\n")
    assert load_rules(rules, template_exists=always, reaching_everyone=("inapp",)).rules
    rules.write_text(chain + "    channels: [inapp, push, email]\n")
    assert load_rules(rules, template_exists=always, reaching_everyone=("inapp",)).rules


def test_text_rules_take_category_and_urgent_and_name_their_origin() -> None:
    text = """
version: 1
rules:
  - {name: late, when: {state: [delivery_failed]}, template: t, channels: [sms],
     priority: urgent, category: alerts}
  - {name: kept, when: {state: [shipped]}, template: t, channels: [email]}
"""
    rules = parse_rules(text, "PUT /v1/rules", template_exists=always)
    late, kept = rules.rules
    assert (late.priority, late.category) == (Priority.HIGH, Category.ALERTS)
    assert (kept.priority, kept.category) == (Priority.NORMAL, Category.TRANSACTIONAL)
    with pytest.raises(RulesError, match=r"^PUT /v1/rules: rule 1 \(late\): category"):
        parse_rules(text.replace("alerts}", "marketing}"), "PUT /v1/rules", template_exists=always)
