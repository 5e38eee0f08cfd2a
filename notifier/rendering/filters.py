"""Locale-aware filters for dates and money, so templates never hand-format either.

Customers read times in their own zone and numbers in their own conventions
(``3 mai 2024`` / ``49,90 €``); babel knows those rules, templates should not.
Every filter raises ``TemplateError`` on input it cannot use, never a
``ValueError`` or ``TypeError``: the renderer turns that into a message naming
the template file and line.
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
from babel.numbers import format_currency

from notifier.errors import TemplateError

_FALLBACK_LOCALE = "en"
_T = TypeVar("_T")


def datetime_filter(value: Any, tz: Any, locale: Any, format: str = "medium") -> str:
    """``{{ event.occurred_at|datetime(customer.timezone, locale) }}``: a moment, localised."""
    moment = _in_zone(value, tz)
    pattern = _pattern(format)
    return _babel("datetime", lambda: format_datetime(moment, pattern, locale=_locale(locale)))


def date_filter(value: Any, tz: Any, locale: Any, format: str = "medium") -> str:
    """``{{ shipment.estimated_delivery|date(customer.timezone, locale) }}``: a day, localised.

    A bare date (``2024-05-03``) is a calendar day already and is not shifted
    into the customer's zone; a timestamp is.
    """
    if isinstance(value, date) and not isinstance(value, datetime):
        day = value
    elif isinstance(value, str) and len(value.strip()) == 10:
        day = _parse(value, date.fromisoformat)
    else:
        day = _in_zone(value, tz).date()
    return _format_date(day, _pattern(format), _locale(locale))


def money_filter(amount: Any, currency: Any, locale: Any) -> str:
    """``{{ order.attributes.total|money(order.attributes.currency, locale) }}``."""
    if isinstance(amount, bool) or not isinstance(amount, int | float | Decimal | str):
        raise TemplateError(f"money: amount must be a number, got {type(amount).__name__}")
    try:
        number = Decimal(str(amount))
    except InvalidOperation:
        raise TemplateError(f"money: {amount!r} is not a number") from None
    if not number.is_finite():
        raise TemplateError(f"money: {amount!r} is not a finite number")
    if not isinstance(currency, str) or len(currency) != 3 or not currency.isalpha():
        raise TemplateError(f"money: currency must be an ISO 4217 code, got {currency!r}")
    return _format_money(number, currency.upper(), _locale(locale))


ALL: dict[str, Callable[..., str]] = {
    "datetime": datetime_filter,
    "date": date_filter,
    "money": money_filter,
}


def _in_zone(value: Any, tz: Any) -> datetime:
    moment, zone = _to_datetime(value), _zone(tz)
    try:
        return moment.astimezone(zone)
    except OverflowError:
        raise TemplateError(f"{value!r} is out of range in time zone {tz!r}") from None


def _to_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        moment = _parse(value, datetime.fromisoformat)
    else:
        raise TemplateError(f"expected an ISO-8601 string or datetime, got {type(value).__name__}")
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _parse(text: str, parse: Callable[[str], _T]) -> _T:
    try:
        return parse(text.strip())
    except ValueError:
        raise TemplateError(f"{text!r} is not an ISO-8601 date or time") from None


def _pattern(format: Any) -> str:
    if not isinstance(format, str) or not format:
        raise TemplateError(f"format must be short, medium, long, full or a pattern: {format!r}")
    return format


def _zone(name: Any) -> tzinfo:
    if not isinstance(name, str):
        raise TemplateError(f"time zone must be an IANA name, got {type(name).__name__}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise TemplateError(f"unknown time zone {name!r}") from None


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
        raise TemplateError(f"locale must be a language tag, got {tag!r}")
    return _parse_locale(tag)


@lru_cache(maxsize=4096)
def _format_date(day: date, format: str, locale: Locale) -> str:
    """Cached: the text and HTML parts format the same day, and delivery days repeat."""
    return _babel("date", lambda: format_date(day, format, locale=locale))


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
