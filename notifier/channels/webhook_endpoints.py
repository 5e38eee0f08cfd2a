"""The webhook endpoints file (``NOTIFIER_WEBHOOKS_FILE``): which partner URLs get
which transitions, signed with which secret.

Loaded once at start-up; every problem is one ``ConfigError`` line naming the file, the
endpoint and the field. URLs may carry tokens in their query or user info, and secrets
are secrets, so no error text or repr shows either: the endpoint is named instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import httpx
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    ValidationError,
    field_validator,
)

from notifier.contracts.events import OrderState
from notifier.errors import ConfigError

#: shorter secrets are guessable offline from one captured request
MIN_SECRET_LENGTH = 16

_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
_STATES = frozenset(s.value for s in OrderState)
_KNOWN_STATES = ", ".join(s.value for s in OrderState)

Source = Annotated[str, StringConstraints(min_length=1, max_length=100)]


@dataclass(frozen=True, slots=True)
class WebhookEndpoint:
    """One partner endpoint; ``url`` stays out of the repr because it may hold a token."""

    name: str
    url: str = field(repr=False)
    secret: SecretStr
    #: only events from these sources; None = every source
    sources: frozenset[str] | None = None
    #: only these states; None = every state
    states: frozenset[str] | None = None
    #: seconds to wait for an answer; None = the channel's NOTIFIER_WEBHOOK_TIMEOUT_S
    timeout_s: float | None = None

    def wants(self, source: str, state: str) -> bool:
        """Whether a transition from ``source`` into ``state`` is delivered here."""
        return (self.sources is None or source in self.sources) and (
            self.states is None or state in self.states
        )


class WebhookEndpoints:
    """Every configured endpoint, by name: the planner asks which ones want a transition,
    the adapter looks up the one a delivery is addressed to."""

    def __init__(self, endpoints: Iterable[WebhookEndpoint] = ()) -> None:
        self._by_name: dict[str, WebhookEndpoint] = {}
        for endpoint in endpoints:
            if endpoint.name in self._by_name:
                raise ValueError(f"webhook endpoint {endpoint.name!r} is given twice")
            self._by_name[endpoint.name] = endpoint

    def get(self, name: str) -> WebhookEndpoint | None:
        """The endpoint called ``name``, or None when the file no longer has it."""
        return self._by_name.get(name)

    def matching(self, source: str, state: str) -> tuple[WebhookEndpoint, ...]:
        """The endpoints that want this transition, in file order."""
        return tuple(e for e in self._by_name.values() if e.wants(source, state))

    def __iter__(self) -> Iterator[WebhookEndpoint]:
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name


def _check_url(value: str) -> str:
    # Messages never repeat the value: it may carry a token.
    if any(c.isspace() or not c.isprintable() for c in value):
        raise ValueError("must not contain whitespace or control characters")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    try:
        _ = parts.port
        httpx.URL(value)
    except (ValueError, httpx.InvalidURL):
        raise ValueError("is not a valid URL (check the host and port)") from None
    return value


class _EndpointEntry(BaseModel):
    # hide_input_in_errors: a rejected value (a URL with a token, a secret) stays out of
    # the chained ValidationError's text, which a traceback would print.
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=100)
    url: str
    secret_env: str | None = Field(default=None, pattern=_ENV_NAME)
    secret: SecretStr | None = None
    sources: list[Source] | None = Field(default=None, min_length=1)
    states: list[str] | None = Field(default=None, min_length=1)
    timeout_s: float | None = Field(default=None, gt=0)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return _check_url(value)

    @field_validator("states")
    @classmethod
    def _known_states(cls, value: list[str] | None) -> list[str] | None:
        for state in value or ():
            if state not in _STATES:
                raise ValueError(f"unknown state {state!r} (known: {_KNOWN_STATES})")
        return value


class _WebhooksFile(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    version: Literal[1]
    endpoints: list[_EndpointEntry]


def _entry_name(raw: Any, index: int) -> str | None:
    entries = raw.get("endpoints") if isinstance(raw, dict) else None
    if isinstance(entries, list) and index < len(entries) and isinstance(entries[index], dict):
        name = entries[index].get("name")
        return name if isinstance(name, str) else None
    return None


def _describe(path: Path, raw: Any, error: ValidationError) -> str:
    first = error.errors()[0]
    loc = list(first["loc"])
    message = str(first["msg"]).removeprefix("Value error, ")
    if len(loc) >= 2 and loc[0] == "endpoints" and isinstance(loc[1], int):
        name = _entry_name(raw, loc[1])
        where = f"endpoint {loc[1] + 1}" + (f" ({name})" if name else "")
        rest = ".".join(str(p) for p in loc[2:]) or "entry"
        return f"{path}: {where}: {rest}: {message}"
    return f"{path}: {'.'.join(str(p) for p in loc) or 'top level'}: {message}"


def _resolve_secret(entry: _EndpointEntry, environ: Mapping[str, str]) -> SecretStr:
    """The signing secret, or a ``ValueError("<field>: <problem>")`` that never shows it."""
    if entry.secret_env is not None and entry.secret is not None:
        raise ValueError("secret: set secret_env or secret, not both")
    if entry.secret is not None:
        if len(entry.secret.get_secret_value()) < MIN_SECRET_LENGTH:
            raise ValueError(
                f"secret: must be at least {MIN_SECRET_LENGTH} characters "
                "(better: keep it in an environment variable and use secret_env)"
            )
        return entry.secret
    if entry.secret_env is None:
        raise ValueError("secret_env: required (the environment variable holding the secret)")
    value = environ.get(entry.secret_env, "")
    if not value:
        raise ValueError(f"secret_env: environment variable {entry.secret_env} is not set")
    if len(value) < MIN_SECRET_LENGTH:
        raise ValueError(
            f"secret_env: {entry.secret_env} holds fewer than {MIN_SECRET_LENGTH} characters"
        )
    return SecretStr(value)


def load_webhooks(path: Path, environ: Mapping[str, str] = os.environ) -> WebhookEndpoints:
    """Parse and validate the endpoints file, reading secrets named by ``secret_env``."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read webhooks file: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or "cannot parse"
        # from None: the YAML error's text quotes the offending line, which may hold a secret.
        raise ConfigError(f"{path}: not valid YAML: {where}{problem}") from None
    try:
        parsed = _WebhooksFile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(path, raw, exc)) from exc
    endpoints: list[WebhookEndpoint] = []
    for index, entry in enumerate(parsed.endpoints, start=1):
        where = f"{path}: endpoint {index} ({entry.name})"
        if any(e.name == entry.name for e in endpoints):
            raise ConfigError(f"{where}: name: used by an earlier endpoint")
        try:
            secret = _resolve_secret(entry, environ)
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        endpoints.append(
            WebhookEndpoint(
                name=entry.name,
                url=entry.url,
                secret=secret,
                sources=frozenset(entry.sources) if entry.sources is not None else None,
                states=frozenset(entry.states) if entry.states is not None else None,
                timeout_s=entry.timeout_s,
            )
        )
    return WebhookEndpoints(endpoints)
