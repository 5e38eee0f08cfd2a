"""The declarative rules file: which transition sends which template on which channels.

Loaded and validated at start-up (``load_rules``), or from any text (``parse_rules``);
every problem is reported as one ``RulesError`` line that names the file (or where the
text came from), the rule and the field.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from enum import IntEnum, StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from notifier.contracts.channels import CUSTOMER_CHANNELS
from notifier.contracts.events import OrderState
from notifier.core.lifecycle import Transition
from notifier.core.rule_kinds import (
    TIMED,
    Audience,
    Conditions,
    ConditionsIn,
    EstimateRevisedWhen,
    HeldWhen,
    PredictedLateWhen,
    PromiseMissedWhen,
    RuleKind,
)
from notifier.errors import RulesError


class Priority(IntEnum):
    """Lower sends first. ``urgent`` in a rules file is ``high``: it goes out at once,
    quiet hours or not."""

    HIGH = 0
    NORMAL = 1
    LOW = 2


class Category(StrEnum):
    """What a customer may switch off: ``transactional`` (what they must know about
    their order) always keeps at least one channel; ``alerts`` can be turned off."""

    TRANSACTIONAL = "transactional"
    ALERTS = "alerts"


def _registered(channel: str, info: ValidationInfo) -> str:
    """A rule names a channel customers are told on; load_rules says which there are."""
    known: Collection[str] = (info.context or {}).get("channels", CUSTOMER_CHANNELS)
    if channel not in known:
        raise ValueError(f"unknown channel {channel!r}; channels are {', '.join(known)}")
    return channel


class _When(BaseModel):
    model_config = ConfigDict(extra="forbid")

    state: list[OrderState] | None = Field(default=None, min_length=1)
    from_: list[OrderState | None] | None = Field(default=None, alias="from")
    held: HeldWhen | None = None
    promise_missed: PromiseMissedWhen | None = None
    estimate_revised: EstimateRevisedWhen | None = None
    predicted_late: PredictedLateWhen | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> _When:
        given = [k for k in _KINDS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of {', '.join(_KINDS)}")
        if self.from_ is not None and self.state is None:
            raise ValueError("from goes only with state")
        return self

    @property
    def kind(self) -> RuleKind:
        """What the rule waits for."""
        return RuleKind.TRANSITION if self.state is not None else RuleKind(self._given())

    def _given(self) -> str:
        return next(k for k in _KINDS if getattr(self, k) is not None)


_KINDS = ("state", "held", "promise_missed", "estimate_revised", "predicted_late")


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    when: _When
    template: str = Field(min_length=1)
    channels: list[Annotated[str, AfterValidator(_registered)]] = Field(min_length=1)
    priority: Literal["urgent", "high", "normal", "low"] = "normal"
    category: Category = Category.TRANSACTIONAL
    once: bool = False
    fallback: bool = False
    conditions: ConditionsIn | None = None
    audience: Audience = Audience.CUSTOMER

    @field_validator("channels")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("a channel is listed twice")
        return value

    @model_validator(mode="after")
    def _ops_channels(self, info: ValidationInfo) -> _Rule:
        """The operations team has an address on some channels only (email)."""
        ops: Collection[str] = (info.context or {}).get("ops_channels", ())
        if self.audience is Audience.OPS and not set(self.channels) <= set(ops):
            raise ValueError(
                "audience ops is told only on "
                + (", ".join(ops) or "no channel")
                + f": channels must be [{', '.join(ops)}]"
            )
        return self


class _RulesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Literal[1]
    rules: list[_Rule] = Field(min_length=1)


@dataclass(frozen=True, slots=True)
class Rule:
    """One validated rule."""

    name: str
    states: frozenset[OrderState]
    from_states: frozenset[OrderState | None] | None
    template: str
    channels: tuple[str, ...]
    priority: Priority
    once: bool
    #: send on the first channel the customer can receive; the next only if it fails
    fallback: bool = False
    category: Category = Category.TRANSACTIONAL
    kind: RuleKind = RuleKind.TRANSITION
    #: a held rule: how long the state may last, or until the end of the customer's day
    held_for: timedelta | None = None
    until_end_of_local_day: bool = False
    #: a promise_missed rule: how long past the promised moment before it fires
    grace: timedelta = timedelta(0)
    #: a predicted_late rule: the transit-time percentile a shipment has outlasted
    percentile: float = 90.0
    conditions: Conditions = field(default_factory=Conditions)
    audience: Audience = Audience.CUSTOMER

    @property
    def timed(self) -> bool:
        """Whether the store keeps a timer for this rule."""
        return self.kind in TIMED

    def matches(self, transition: Transition) -> bool:
        """Whether this rule fires for the transition."""
        if self.kind is not RuleKind.TRANSITION or transition.to_state not in self.states:
            return False
        return self.from_states is None or transition.from_state in self.from_states


class RuleSet:
    """All rules, indexed by the state they fire on."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules = tuple(rules)
        self._by_state: dict[OrderState, tuple[Rule, ...]] = {
            state: tuple(r for r in rules if r.kind is RuleKind.TRANSITION and state in r.states)
            for state in OrderState
        }
        #: the rules the store keeps timers for, and those that watch delivery estimates
        self.timed = tuple(r for r in self.rules if r.timed)
        self.estimates = tuple(r for r in self.rules if r.kind is RuleKind.ESTIMATE_REVISED)
        self._by_name = {r.name: r for r in self.rules}

    def named(self, name: str) -> Rule | None:
        """The rule of that name (a stored timer names its rule), if it still exists."""
        return self._by_name.get(name)

    def matching(self, transition: Transition) -> tuple[Rule, ...]:
        """The rules a transition fires, in file order."""
        return tuple(r for r in self._by_state[transition.to_state] if r.matches(transition))

    def templates(self) -> frozenset[str]:
        """Every template a rule refers to."""
        return frozenset(r.template for r in self.rules)


def _describe(origin: str, raw: Any, error: ValidationError) -> str:
    first = error.errors()[0]
    loc = list(first["loc"])
    where = ".".join(str(p) for p in loc) or "top level"
    if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
        rules = raw.get("rules") if isinstance(raw, dict) else None
        name = None
        if isinstance(rules, list) and loc[1] < len(rules) and isinstance(rules[loc[1]], dict):
            name = rules[loc[1]].get("name")
        rest = ".".join(str(p) for p in loc[2:]) or "rule"
        where = f"rule {loc[1] + 1}" + (f" ({name})" if name else "") + f": {rest}"
    return f"{origin}: {where}: {first['msg']}"


def load_rules(
    path: Path,
    *,
    template_exists: Callable[[str, str], bool],
    channels: Collection[str] = CUSTOMER_CHANNELS,
    reaching_everyone: Collection[str] = (),
    ops_channels: Collection[str] = (),
) -> RuleSet:
    """Read and validate a rules file (see ``parse_rules``)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RulesError(f"{path}: cannot read rules file: {exc.strerror}") from exc
    return parse_rules(
        text,
        str(path),
        template_exists=template_exists,
        channels=channels,
        reaching_everyone=reaching_everyone,
        ops_channels=ops_channels,
    )


def parse_rules(
    text: str,
    origin: str,
    *,
    template_exists: Callable[[str, str], bool],
    channels: Collection[str] = CUSTOMER_CHANNELS,
    reaching_everyone: Collection[str] = (),
    ops_channels: Collection[str] = (),
) -> RuleSet:
    """Parse and validate a rules document (YAML, or JSON, which is YAML) that came from
    ``origin`` (a path, or where the API got it), which every error line starts with.

    ``template_exists(template, channel)`` checks parts, and each rule may name only
    ``channels`` (the registered customer channels). A fallback rule may name a channel
    ``reaching_everyone`` only last: anywhere else, every customer would "receive" it
    and the channels after it would never be tried. A rule with ``audience: ops`` may
    name only ``ops_channels`` (those with an operations address)."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or "cannot parse"
        raise RulesError(f"{origin}: not valid YAML: {where}{problem}") from exc
    try:
        parsed = _RulesFile.model_validate(
            raw, context={"channels": tuple(channels), "ops_channels": tuple(ops_channels)}
        )
    except ValidationError as exc:
        raise RulesError(_describe(origin, raw, exc)) from exc
    names: set[str] = set()
    rules: list[Rule] = []
    for index, item in enumerate(parsed.rules, start=1):
        if item.name in names:
            raise RulesError(f"{origin}: rule {index} ({item.name}): name is used twice")
        names.add(item.name)
        blocking = [c for c in item.channels[:-1] if c in reaching_everyone]
        if item.fallback and blocking:
            raise RulesError(
                f"{origin}: rule {index} ({item.name}): every customer can receive "
                f"{blocking[0]}, so in a fallback chain the channels after it are never "
                "tried; put it last, or give it a rule of its own"
            )
        for channel in item.channels:
            if not template_exists(item.template, channel):
                raise RulesError(
                    f"{origin}: rule {index} ({item.name}): template {item.template!r} "
                    f"has no {channel} part"
                )
        when = item.when
        held = when.held
        rules.append(
            Rule(
                name=item.name,
                states=frozenset(when.state or (held.state if held else ())),
                from_states=frozenset(when.from_) if when.from_ is not None else None,
                template=item.template,
                channels=tuple(item.channels),
                priority=Priority.HIGH
                if item.priority == "urgent"
                else Priority[item.priority.upper()],
                category=item.category,
                once=item.once,
                fallback=item.fallback,
                kind=when.kind,
                held_for=held.for_ if held else None,
                until_end_of_local_day=held is not None and held.until is not None,
                grace=when.promise_missed.grace if when.promise_missed else timedelta(0),
                percentile=when.predicted_late.percentile if when.predicted_late else 90.0,
                conditions=Conditions.of(item.conditions),
                audience=item.audience,
            )
        )
    return RuleSet(rules)
