"""The stores file (``NOTIFIER_STORES_FILE``): who a message comes from.

One notifier often serves several shops. Each store names its sender address, reply-to,
SMS sender, logo, brand colour and contacts; an event's store is
``attributes["store_id"]`` when the event gives one, else its ``source``, else the
file's ``default``. Without a file (or for an event no store matches) messages go out
as before: from ``NOTIFIER_SMTP_FROM`` and ``NOTIFIER_TWILIO_FROM``, with no branding.

```yaml
stores:
  acme:
    name: Acme Outdoor
    email_from: "Acme Outdoor <orders@acme.example>"
    reply_to: help@acme.example          # optional, and every field below
    sms_sender: ACME                     # alphanumeric sender ID, or E.164
    logo_url: https://acme.example/logo.png
    brand_color: "#0a7d4f"
    support_email: help@acme.example
    support_phone: "+14155550100"
    website: https://acme.example
default: acme
```

Loaded and validated once at start-up: every problem is one ``ConfigError`` line that
names the file, the store and the field (never the value).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from email.utils import parseaddr
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    StringConstraints,
    ValidationError,
    model_validator,
)

from notifier.contracts.events import PLAIN, OrderEvent, _check_email, _check_phone
from notifier.errors import ConfigError

#: a Twilio alphanumeric sender ID: up to 11 letters, digits and spaces, one letter at least
ALPHANUMERIC_SENDER = re.compile(r"(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}")
_URL = re.compile(r"https?://[^\s/\"'<>]+(/[^\s\"'<>]*)?")
_COLOR = re.compile(r"#(?:[0-9a-fA-F]{3}){1,2}")
_KEY = r"^[A-Za-z0-9_.:-]{1,100}$"


def _mailbox(value: str) -> str:
    """``Name <address>`` or a bare address; the address must be one."""
    name, address = parseaddr(value)
    if not address or (name == "" and address != value.strip()):
        raise ValueError("must be an address or Name <address>")
    _check_email(address)
    return value


def _sms_sender(value: str) -> str:
    if value.startswith("+"):
        return _check_phone(value)
    if not ALPHANUMERIC_SENDER.fullmatch(value):
        raise ValueError(
            "must be an E.164 number or an alphanumeric sender ID "
            "(1-11 letters, digits or spaces, at least one letter)"
        )
    return value


def _url(value: str) -> str:
    if not _URL.fullmatch(value):
        raise ValueError("must be an http:// or https:// URL")
    return value


def _color(value: str) -> str:
    if not _COLOR.fullmatch(value):
        raise ValueError("must be a hex colour, #rgb or #rrggbb")
    return value


Text = Annotated[str, StringConstraints(min_length=1, max_length=100), PLAIN]
Mailbox = Annotated[str, StringConstraints(max_length=300), PLAIN, AfterValidator(_mailbox)]
Address = Annotated[str, StringConstraints(max_length=254), PLAIN, AfterValidator(_check_email)]
Url = Annotated[str, StringConstraints(max_length=2000), PLAIN, AfterValidator(_url)]
#: an image inlined as a ``data:`` URI, for a shop whose logo should not load from a host
_DATA_IMAGE = re.compile(r"data:image/(?:png|gif|jpeg|webp|svg\+xml);base64,[A-Za-z0-9+/]+={0,2}")


def _logo(value: str) -> str:
    if value.startswith("data:"):
        if not _DATA_IMAGE.fullmatch(value):
            raise ValueError(
                "a data: logo must be a base64 PNG, GIF, JPEG, WebP or SVG image "
                "(data:image/png;base64,...)"
            )
        return value
    return _url(value)


#: a logo: an http(s) URL, or an image of at most ~24 KB inlined as a data: URI
Logo = Annotated[str, StringConstraints(max_length=32_768), PLAIN, AfterValidator(_logo)]


class Store(BaseModel):
    """One shop's sender and branding."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Text
    email_from: Mailbox
    reply_to: Address | None = None
    sms_sender: Annotated[str, PLAIN, AfterValidator(_sms_sender)] | None = None
    logo_url: Logo | None = None
    brand_color: Annotated[str, AfterValidator(_color)] | None = None
    support_email: Address | None = None
    support_phone: Annotated[str, AfterValidator(_check_phone)] | None = None
    website: Url | None = None


class _StoresFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stores: dict[Annotated[str, StringConstraints(pattern=_KEY)], Store]
    default: str | None = None

    @model_validator(mode="after")
    def _default_is_a_store(self) -> _StoresFile:
        if self.default is not None and self.default not in self.stores:
            raise ValueError(f"default names no store; stores are {', '.join(self.stores)}")
        return self


class StoreBook:
    """The stores of the file, and which one an event belongs to."""

    def __init__(self, stores: Mapping[str, Store] | None = None, default: str | None = None):
        self.stores = dict(stores or {})
        self.default = default
        #: what templates see of each store: plain data, made once and shared
        self._views = {key: store.model_dump() for key, store in self.stores.items()}

    def key_for(self, event: OrderEvent) -> str | None:
        """The store ``event`` belongs to: ``attributes.store_id``, else its source, else
        the default; None when no store matches."""
        return self.key_of(event.source, event.attributes)

    def key_of(self, source: str, attributes: Mapping[str, Any]) -> str | None:
        """:meth:`key_for` from an event's source and attributes."""
        wanted = attributes.get("store_id")
        if isinstance(wanted, str) and wanted in self.stores:
            return wanted
        if source in self.stores:
            return source
        return self.default

    def view_of(self, source: str, attributes: Mapping[str, Any]) -> dict[str, Any] | None:
        """The store as templates and the order-status page see it, from an event's
        source and attributes; None when no store matches."""
        key = self.key_of(source, attributes)
        return self._views[key] if key is not None else None

    def for_event(self, event: OrderEvent) -> Store | None:
        """The store of ``event``, or None."""
        key = self.key_for(event)
        return self.stores[key] if key is not None else None

    def view(self, event: OrderEvent) -> dict[str, Any] | None:
        """The store of ``event`` as templates see it (``store``), or None."""
        key = self.key_for(event)
        return self._views[key] if key is not None else None


def load_stores(path: Path | None) -> StoreBook:
    """The stores file at ``path`` validated, or an empty book when there is none."""
    if path is None:
        return StoreBook()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read stores file: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML: {where}{getattr(exc, 'problem', '')}") from exc
    try:
        parsed = _StoresFile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_describe(exc)}") from exc
    return StoreBook(parsed.stores, parsed.default)


def _describe(exc: ValidationError) -> str:
    """``store acme: email_from: not an email address``: the store and the field, never
    the value (a validator's message may quote it)."""
    first = exc.errors(include_url=False)[0]
    loc = [str(p) for p in first["loc"]]
    message = re.sub(r"""('[^']*'|"[^"]*")""", "", str(first["msg"]))
    message = message.removeprefix("Value error, ").strip().rstrip(":").strip()
    if len(loc) >= 2 and loc[0] == "stores":
        where = f"store {loc[1]}" + (f": {'.'.join(loc[2:])}" if len(loc) > 2 else "")
        if loc[-1] == "[key]":
            where = f"store key {loc[1]!r} must be letters, digits and _ . : -"
            return where
    else:
        where = ".".join(loc) or "top level"
    return f"{where}: {message}"
