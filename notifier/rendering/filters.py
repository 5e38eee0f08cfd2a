"""Locale-aware filters for dates and money, so templates never hand-format either.

Customers read times in their own zone and numbers in their own conventions
(``3 mai 2024`` / ``49,90 €``); babel knows those rules, templates should not.

The values come from the shop (``attributes`` are free-form), and a value a filter
cannot read must never cost the customer their message: it is shown as the shop sent
it when it is text (``"price": "abc"`` shows ``abc``), and left out otherwise; a
time zone or locale that is not usable falls back to UTC or English. Only the
template's own mistake (a ``format`` babel refuses) raises ``TemplateError``, which
the renderer reports with the template file and line.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, tzinfo
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_datetime
from babel.numbers import format_currency, format_decimal

from notifier.errors import TemplateError

_FALLBACK_LOCALE = "en"
#: amounts past this many digits before the point are not prices; shown as sent
_MAX_DIGITS = 15
#: raw text shown in place of a value a filter cannot read is cut to this length
_MAX_RAW = 100
_T = TypeVar("_T")


def datetime_filter(value: Any, tz: Any, locale: Any, format: str = "medium") -> str:
    """``{{ event.occurred_at|datetime(customer.timezone, locale) }}``: a moment, localised."""
    pattern = _pattern(format)
    moment = _in_zone(value, tz)
    if moment is None:
        return _as_sent(value)
    return _babel("datetime", lambda: format_datetime(moment, pattern, locale=_locale(locale)))


def date_filter(value: Any, tz: Any, locale: Any, format: str = "medium") -> str:
    """``{{ shipment.estimated_delivery|date(customer.timezone, locale) }}``: a day, localised.

    A bare date (``2024-05-03``) is a calendar day already and is not shifted
    into the customer's zone; a timestamp is.
    """
    pattern = _pattern(format)
    day: date | None
    if isinstance(value, date) and not isinstance(value, datetime):
        day = value
    elif isinstance(value, str) and len(value.strip()) == 10:
        day = _parse(value, date.fromisoformat)
    else:
        moment = _in_zone(value, tz)
        day = moment.date() if moment is not None else None
    if day is None:
        return _as_sent(value)
    return _format_date(day, pattern, _locale(locale))


def money_filter(amount: Any, currency: Any, locale: Any) -> str:
    """``{{ order.attributes.total|money(order.attributes.currency, locale) }}``.

    Without a usable ISO 4217 code the amount is shown as a plain number.
    """
    number = _number(amount)
    if number is None:
        return _as_sent(amount)
    where = _locale(locale)
    if (
        isinstance(currency, str)
        and len(currency) == 3
        and currency.isascii()
        and (currency.isalpha())
    ):
        try:
            return _format_money(number, currency.upper(), where)
        except TemplateError:
            pass
    return _format_number(number, where)


ALL: dict[str, Callable[..., str]] = {
    "datetime": datetime_filter,
    "date": date_filter,
    "money": money_filter,
}


def _in_zone(value: Any, tz: Any) -> datetime | None:
    moment = _to_datetime(value)
    if moment is None:
        return None
    try:
        return moment.astimezone(_zone(tz))
    except OverflowError:
        return None  # year 1 or 9999 pushed past the calendar by the zone's offset


def _to_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        moment: datetime | None = value
    elif isinstance(value, str):
        moment = _parse(value, datetime.fromisoformat)
    else:
        return None
    if moment is None:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _parse(text: str, parse: Callable[[str], _T]) -> _T | None:
    try:
        return parse(text.strip())
    except ValueError:
        return None


def _number(amount: Any) -> Decimal | None:
    """A finite amount of a sensible size, or ``None``."""
    if isinstance(amount, bool) or not isinstance(amount, int | float | Decimal | str):
        return None
    try:
        number = Decimal(str(amount).strip())
    except (InvalidOperation, ValueError):
        return None
    if not number.is_finite() or number.adjusted() >= _MAX_DIGITS:
        return None
    return number


def _as_sent(value: Any) -> str:
    """A value a filter cannot read, as the shop sent it when it is text; else nothing."""
    if isinstance(value, str):
        return value.strip()[:_MAX_RAW]
    return ""


def _pattern(format: Any) -> str:
    if not isinstance(format, str) or not format:
        raise TemplateError("format must be short, medium, long, full or a babel pattern")
    return format


def _zone(name: Any) -> tzinfo:
    if not isinstance(name, str):
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long
        return UTC


@lru_cache(maxsize=256)
def _parse_locale(tag: str) -> Locale:
    """``fr-CA`` → fr_CA; an unknown region falls back to the language, then English.

    Formatting in a neighbouring locale beats failing a customer's notification.
    """
    parts = tag.replace("_", "-").split("-")
    for end in range(len(parts), 0, -1):
        try:
            return Locale.parse("_".join(parts[:end]))
        except (UnknownLocaleError, ValueError):
            continue
    return Locale.parse(_FALLBACK_LOCALE)


def _locale(tag: Any) -> Locale:
    if not isinstance(tag, str) or not tag:
        return _parse_locale(_FALLBACK_LOCALE)
    return _parse_locale(tag)


@lru_cache(maxsize=4096)
def _format_date(day: date, format: str, locale: Locale) -> str:
    """Cached: the text and HTML parts format the same day, and delivery days repeat."""
    return _babel("date", lambda: format_date(day, format, locale=locale))


@lru_cache(maxsize=4096)
def _format_number(number: Decimal, locale: Locale) -> str:
    """An amount without a currency, with two decimals in the customer's convention."""
    return _babel("money", lambda: format_decimal(number, "#,##0.00", locale=locale))


@lru_cache(maxsize=4096)
def _format_money(number: Decimal, currency: str, locale: Locale) -> str:
    """Cached: babel takes ~40 µs per amount, and prices repeat across orders."""
    return _babel("money", lambda: format_currency(number, currency, locale=locale))


def _babel(what: str, format_value: Callable[[], str]) -> str:
    try:
        return format_value()
    except InvalidOperation:
        raise TemplateError(f"{what}: number out of range") from None
    except (ValueError, TypeError, KeyError, AttributeError, ArithmeticError) as exc:
        raise TemplateError(f"{what}: {exc}") from None
