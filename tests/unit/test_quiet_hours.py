"""Quiet-hours window math: same-day and over-midnight windows, DST days, who is held."""

from __future__ import annotations

from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

import pytest

from notifier.config import load_settings
from notifier.core.quiet_hours import QuietHours, QuietWindow
from notifier.core.rules import Priority
from notifier.errors import ConfigError

NIGHT = QuietWindow(time(21, 0), time(8, 0))
PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("21:00-08:00", NIGHT),
        (" 9:30 - 17:45 ", QuietWindow(time(9, 30), time(17, 45))),
        ("23:59:30-00:00:15", QuietWindow(time(23, 59, 30), time(0, 0, 15))),
        ("", None),
        ("   ", None),
    ],
)
def test_parse(text: str, expected: QuietWindow | None) -> None:
    assert QuietWindow.parse(text) == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("21-8", "HH:MM-HH:MM"),
        ("24:00-08:00", "00-23"),
        ("21:60-08:00", "00-59"),
        ("21:00:61-08:00", "00-59"),
        ("08:00-08:00", "differ"),
    ],
)
def test_parse_refuses_with_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        QuietWindow.parse(text)


CASES = [
    # now (UTC), zone, window end (UTC) or None
    (utc(2026, 6, 10, 18, 59), PARIS, None),  # 20:59 CEST: before the window
    (utc(2026, 6, 10, 19, 0), PARIS, utc(2026, 6, 11, 6, 0)),  # 21:00 CEST: starts
    (utc(2026, 6, 10, 22, 30), PARIS, utc(2026, 6, 11, 6, 0)),  # 00:30, next day
    (utc(2026, 6, 11, 5, 59), PARIS, utc(2026, 6, 11, 6, 0)),  # 07:59
    (utc(2026, 6, 11, 6, 0), PARIS, None),  # 08:00: over (the end is exclusive)
    (utc(2026, 1, 10, 21, 0), PARIS, utc(2026, 1, 11, 7, 0)),  # 22:00 CET (winter)
    (utc(2026, 6, 11, 1, 0), NEW_YORK, utc(2026, 6, 11, 12, 0)),  # 21:00 EDT
    (utc(2026, 6, 10, 23, 0), NEW_YORK, None),  # 19:00 EDT
    # DST starts in Paris on 2026-03-29 at 02:00: the night is an hour shorter
    (utc(2026, 3, 28, 21, 0), PARIS, utc(2026, 3, 29, 6, 0)),  # 22:00 CET → 08:00 CEST
    # DST ends in Paris on 2026-10-25 at 03:00: an hour longer
    (utc(2026, 10, 24, 20, 0), PARIS, utc(2026, 10, 25, 7, 0)),  # 22:00 CEST → 08:00 CET
    # a New York evening on the day the clocks go back (2026-11-01)
    (utc(2026, 11, 1, 4, 30), NEW_YORK, utc(2026, 11, 1, 13, 0)),  # 00:30 EDT → 08:00 EST
]


@pytest.mark.parametrize(("now", "zone", "expected"), CASES, ids=str)
def test_night_window_ends(now: datetime, zone: ZoneInfo, expected: datetime | None) -> None:
    assert NIGHT.ends_at(now, zone) == expected


def test_a_same_day_window() -> None:
    lunch = QuietWindow(time(12, 0), time(14, 0))
    assert lunch.ends_at(utc(2026, 6, 10, 12, 30), ZoneInfo("UTC")) == utc(2026, 6, 10, 14, 0)
    assert lunch.ends_at(utc(2026, 6, 10, 14, 0), ZoneInfo("UTC")) is None
    assert lunch.ends_at(utc(2026, 6, 10, 11, 59), ZoneInfo("UTC")) is None


def test_an_end_inside_the_spring_gap_is_read_with_the_offset_before_it() -> None:
    # 01:00-02:30 in Paris on 2026-03-29: 02:30 does not exist (02:00 jumps to 03:00)
    window = QuietWindow(time(1, 0), time(2, 30))
    now = utc(2026, 3, 29, 0, 15)  # 01:15 CET
    assert window.ends_at(now, PARIS) == utc(2026, 3, 29, 1, 30)  # 03:30 CEST


NOW = utc(2026, 6, 10, 22, 0)  # midnight in Paris
MORNING = utc(2026, 6, 11, 6, 0)


@pytest.mark.parametrize(
    ("priority", "held_channel", "expected"),
    [
        (Priority.NORMAL, True, MORNING),
        (Priority.LOW, True, MORNING),
        (Priority.HIGH, True, None),  # urgent and high go now
        (Priority.NORMAL, False, None),  # email, in-app, webhooks never wait
    ],
)
def test_who_is_held(priority: Priority, held_channel: bool, expected: datetime | None) -> None:
    quiet = QuietHours(NIGHT)
    got = quiet.hold_until(
        customer_id="c1",
        timezone="Europe/Paris",
        priority=priority,
        held_channel=held_channel,
        now=NOW,
    )
    assert got == expected


def _held(quiet: QuietHours, customer_id: str) -> datetime | None:
    return quiet.hold_until(
        customer_id=customer_id,
        timezone="Europe/Paris",
        priority=Priority.NORMAL,
        held_channel=True,
        now=NOW,
    )


def test_off_without_a_window_and_a_customer_window_replaces_the_default() -> None:
    assert _held(QuietHours(), "c1") is None
    late = QuietWindow(time(23, 0), time(10, 0))
    quiet = QuietHours(NIGHT, override=lambda cid: late if cid == "owl" else None)
    assert _held(quiet, "owl") == utc(2026, 6, 11, 8, 0)
    assert _held(quiet, "lark") == MORNING


def test_an_unknown_time_zone_reads_as_utc() -> None:
    quiet = QuietHours(NIGHT)
    got = quiet.hold_until(
        customer_id="c1", timezone="Mars/Olympus", priority=1, held_channel=True, now=NOW
    )
    assert got == utc(2026, 6, 11, 8, 0)


@pytest.mark.parametrize("value", ["9pm-8am", "21:00-24:00", "21:00-21:00:00"])
def test_a_bad_setting_is_one_line_naming_it(value: str) -> None:
    with pytest.raises(ConfigError, match=r"^NOTIFIER_QUIET_HOURS: "):
        load_settings(quiet_hours=value)


@pytest.mark.parametrize("value", ["", "21:00-08:00", "21:00:30-08:00"])
def test_every_setting_the_config_takes_parses(value: str) -> None:
    assert QuietWindow.parse(load_settings(quiet_hours=value).quiet_hours) == QuietWindow.parse(
        value
    )
