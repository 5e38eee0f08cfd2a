"""Settings from the environment (prefix ``NOTIFIER_``); no instance is made at import.

Every field here is listed in the README's configuration table.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from notifier.contracts.channels import CUSTOMER_CHANNELS
from notifier.errors import ConfigError

#: the installed package: the shipped rules and templates travel inside it (package data),
#: so the defaults below hold from a wheel, an editable install and a checkout alike
PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_RULES_FILE = PACKAGE_DIR / "defaults" / "rules.yaml"
#: the channels ``NOTIFIER_NULL_CHANNELS`` can replace with an instant in-process sink
NULL_CAPABLE = CUSTOMER_CHANNELS
#: ``HH:MM-HH:MM`` (24-hour, two digits each, seconds optional), or empty for none
_HHMM = r"([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?"
_QUIET_HOURS = rf"^({_HHMM}-{_HHMM})?$"


def default_templates_dir() -> Path:
    """The shipped templates (``notifier/templates``), used unless ``NOTIFIER_TEMPLATES_DIR``
    names another set."""
    return PACKAGE_DIR / "templates"


class SmtpTls(StrEnum):
    """How the SMTP connection is secured."""

    #: plain text (local relays, the dev mail catcher)
    NONE = "none"
    #: connect plain, then upgrade with STARTTLS (port 587)
    STARTTLS = "starttls"
    #: TLS from the first byte (port 465)
    TLS = "tls"


class Role(StrEnum):
    """What one ``notifier run`` process does (README: Operations, process layout)."""

    #: everything in one process: ingest, the outbox, the HTTP API and every channel's sends
    ALL = "all"
    #: ingest, the outbox, retention and the whole HTTP API; sends nothing
    INGEST = "ingest"
    #: the channels' dispatch consumers and the delivery-rate alerts; serves only
    #: ``/healthz``, ``/readyz`` and ``/metrics``
    DISPATCH = "dispatch"


class Settings(BaseSettings):
    """All configuration. Build it with :func:`load_settings` to get one clear error line."""

    model_config = SettingsConfigDict(env_prefix="NOTIFIER_", extra="ignore", frozen=True)

    environment: str = Field(default="production", pattern="^(production|development|test)$")
    log_level: str = Field(default="INFO", pattern="^(DEBUG|INFO|WARNING|ERROR)$")

    nats_url: str = "nats://127.0.0.1:4222"
    nats_creds_file: Path | None = None
    nats_duplicate_window_s: float = Field(default=120.0, gt=0)
    stream_max_age_days: float = Field(default=7.0, gt=0)
    deadletter_max_age_days: float = Field(default=30.0, gt=0)
    ingest_consumer: str = Field(default="notifier-ingest", pattern=r"^[A-Za-z0-9_-]+$")
    ingest_batch_size: int = Field(default=500, ge=1, le=10_000)
    ingest_batch_wait_s: float = Field(default=0.02, gt=0, le=10)
    ingest_ack_wait_s: float = Field(default=30.0, ge=1)
    ingest_max_deliver: int = Field(default=20, ge=1)
    ingest_batch_attempts: int = Field(default=5, ge=1)
    #: events wait and none was acknowledged for this long: ``/readyz`` says ``degraded``
    ingest_stall_s: float = Field(default=60.0, gt=0)
    #: what one event may weigh (README: event contract); bigger ones are dead-lettered
    event_max_bytes: int = Field(default=65_536, ge=1024, le=8 * 1024 * 1024)
    event_max_depth: int = Field(default=32, ge=4, le=100)
    event_max_string: int = Field(default=10_000, ge=100, le=1_000_000)
    #: how far ahead of this service's clock ``occurred_at`` may be
    event_max_clock_skew_s: float = Field(default=300.0, ge=0)

    database_url: str = "sqlite+aiosqlite:///notifier.db"
    dedup_retention_days: int = Field(default=30, ge=1)
    notification_retention_days: int = Field(default=180, ge=1)

    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=0, le=65535)
    api_token: SecretStr | None = None

    smtp_host: str | None = None
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_tls: SmtpTls = SmtpTls.NONE
    smtp_ca_file: Path | None = None
    smtp_from: str = "Orders <orders@localhost>"
    smtp_timeout_s: float = Field(default=10.0, gt=0)
    smtp_pool_size: int = Field(default=4, ge=1, le=64)

    #: where this service is reachable from outside (provider callbacks, links)
    public_base_url: str | None = Field(default=None, pattern=r"^https?://[^\s/]+(/[^\s]*)?$")
    #: signs the order-status page links (``/track/{order_id}?t=…``) in every email and
    #: SMS; with ``public_base_url`` unset or this unset, messages carry no such link
    track_secret: SecretStr | None = None
    #: how long a tracking link opens the page, counted from the event it was sent for
    track_link_ttl_days: int = Field(default=90, ge=1, le=3650)

    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None
    #: the sender: an E.164 number, or a Messaging Service SID (``MG…``)
    twilio_from: str | None = None
    twilio_api_base: str = Field(default="https://api.twilio.com", pattern=r"^https?://\S+$")
    sms_timeout_s: float = Field(default=10.0, gt=0)
    sms_max_segments: int = Field(default=6, ge=1, le=10)

    fcm_credentials_file: Path | None = None
    fcm_api_base: str = Field(default="https://fcm.googleapis.com", pattern=r"^https?://\S+$")
    push_timeout_s: float = Field(default=10.0, gt=0)

    webhooks_file: Path | None = None
    #: who each shop's messages come from, and their branding (README: stores)
    stores_file: Path | None = None
    webhook_timeout_s: float = Field(default=10.0, gt=0)

    #: sends per second per channel (token bucket; 0 = unlimited) and sends in flight
    email_rate_per_s: float = Field(default=0.0, ge=0)
    sms_rate_per_s: float = Field(default=30.0, ge=0)
    sms_concurrency: int = Field(default=8, ge=1, le=256)
    push_rate_per_s: float = Field(default=500.0, ge=0)
    push_concurrency: int = Field(default=16, ge=1, le=256)
    webhook_rate_per_s: float = Field(default=50.0, ge=0)
    inapp_concurrency: int = Field(default=8, ge=1, le=256)
    webhook_concurrency: int = Field(default=8, ge=1, le=256)
    #: consecutive transient failures that open a provider's circuit, and for how long
    breaker_failures: int = Field(default=5, ge=1)
    breaker_open_s: float = Field(default=30.0, gt=0)

    #: operations alert when the delivery rate over the window drops below this
    alert_delivery_rate: float = Field(default=0.999, ge=0, le=1)
    alert_window_s: float = Field(default=3600.0, ge=60)
    alert_min_samples: int = Field(default=20, ge=1)
    alert_check_interval_s: float = Field(default=60.0, gt=0)
    alert_email: str | None = None
    alert_webhook_url: str | None = Field(default=None, pattern=r"^https?://\S+$")

    #: signs the per-customer feed tokens a shopper's app holds; unset: only the operator
    #: token opens a feed
    feed_secret: SecretStr | None = None
    #: a live feed stream sends a comment this often, so proxies keep it open
    feed_keepalive_s: float = Field(default=15.0, gt=0, le=300)
    #: new items one stream connection may have waiting; past it, it catches up from the
    #: database instead
    feed_stream_queue: int = Field(default=100, ge=1, le=10_000)

    #: the customer's local quiet hours (``HH:MM-HH:MM``, may run over midnight; empty:
    #: off): ``normal``/``low`` SMS and push planned inside wait until the window ends
    quiet_hours: str = Field(default="21:00-08:00", pattern=_QUIET_HOURS)

    rules_file: Path = DEFAULT_RULES_FILE
    #: how often due timers of the time rules (held, promise_missed) are looked for
    timer_poll_s: float = Field(default=1.0, gt=0, le=60)
    #: predicted_late rules: how often transit times are relearned from the store (and
    #: how soon a shipment the model could not yet predict is looked at again), over
    #: which recent deliveries, and how many a carrier needs before it is predicted
    prediction_refresh_s: float = Field(default=600.0, gt=0, le=86_400)
    prediction_window_days: int = Field(default=90, ge=1, le=3650)
    prediction_min_sample: int = Field(default=30, ge=1)
    #: where rules with ``audience: ops`` send, by email; needed only when one exists
    ops_email: str | None = Field(default=None, pattern=r"^[^@\s<>]+@[^@\s<>]+$")
    #: how often each ingest process asks the database for a newer rules version (one
    #: cheap query): a ``PUT /v1/rules`` is in effect everywhere within about this long
    rules_poll_s: float = Field(default=0.5, ge=0.05, le=60)
    templates_dir: Path = Field(default_factory=default_templates_dir)
    default_locale: str = "en"

    #: channels that accept every message instantly without a provider (benchmarks only)
    null_channels: str = Field(default="", pattern=r"^[a-z, ]*$")

    dispatch_max_attempts: int = Field(default=40, ge=1)
    dispatch_backoff_base_s: float = Field(default=2.0, gt=0)
    dispatch_backoff_max_s: float = Field(default=300.0, gt=0)
    dispatch_lease_s: float = Field(default=60.0, gt=0)
    dispatch_batch_size: int = Field(default=50, ge=1, le=1000)

    role: Role = Role.ALL
    #: dispatch processes this one starts and supervises (0: it dispatches itself)
    dispatch_workers: int = Field(default=0, ge=0, le=64)

    @field_validator(
        "rules_file",
        "smtp_ca_file",
        "nats_creds_file",
        "fcm_credentials_file",
        "webhooks_file",
        "stores_file",
    )
    @classmethod
    def _file_exists(cls, path: Path | None) -> Path | None:
        if path is not None and not path.is_file():
            raise ValueError(f"{path} is not a readable file")
        return path

    @field_validator("quiet_hours")
    @classmethod
    def _quiet_window(cls, value: str) -> str:
        start, _, end = (t if t.count(":") == 2 else f"{t}:00" for t in value.partition("-"))
        if value and start == end:
            raise ValueError("start and end must differ")
        return value

    @field_validator("feed_secret")
    @classmethod
    def _long_secret(cls, secret: SecretStr | None) -> SecretStr | None:
        if secret is not None and len(secret.get_secret_value()) < 16:
            raise ValueError("use at least 16 characters (a random string)")
        return secret

    @field_validator("templates_dir")
    @classmethod
    def _dir_exists(cls, path: Path) -> Path:
        if not path.is_dir():
            raise ValueError(f"{path} is not a directory")
        return path

    @field_validator("null_channels")
    @classmethod
    def _known_channels(cls, value: str) -> str:
        unknown = [c for c in _names(value) if c not in NULL_CAPABLE]
        if unknown:
            raise ValueError(
                f"unknown channel(s) {', '.join(unknown)}; choose from {', '.join(NULL_CAPABLE)}"
            )
        return ",".join(_names(value))

    @property
    def null_channel_names(self) -> tuple[str, ...]:
        """The channels ``NOTIFIER_NULL_CHANNELS`` replaces with instant in-process sinks."""
        return _names(self.null_channels)

    @property
    def ingests(self) -> bool:
        """This process runs ingest, the outbox and the whole HTTP API."""
        return self.role in (Role.ALL, Role.INGEST)

    @property
    def dispatches(self) -> bool:
        """This process sends (rather than none, or its dispatch workers)."""
        return self.role in (Role.ALL, Role.DISPATCH) and self.dispatch_workers == 0

    @model_validator(mode="after")
    def _check_combinations(self) -> Settings:
        if self.dispatch_workers and self.role == Role.DISPATCH:
            raise ValueError(
                "a dispatch process starts no workers: NOTIFIER_DISPATCH_WORKERS needs "
                "NOTIFIER_ROLE all or ingest"
            )
        if self.dispatch_workers and self.database_url.startswith("sqlite"):
            # measured (docs/performance.md): processes queue for SQLite's one write lock
            # in its sleeping busy handler, and ingest and sends both slow down
            raise ValueError(
                "dispatch workers (--workers, NOTIFIER_DISPATCH_WORKERS) need PostgreSQL: "
                "SQLite has one writer, and several processes waiting for it are slower "
                "than one; set NOTIFIER_DATABASE_URL to postgresql://…"
            )
        if self.track_secret is not None and len(self.track_secret.get_secret_value()) < 16:
            raise ValueError("NOTIFIER_TRACK_SECRET must be at least 16 characters")
        if (self.smtp_username is None) != (self.smtp_password is None):
            raise ValueError("set both NOTIFIER_SMTP_USERNAME and NOTIFIER_SMTP_PASSWORD")
        clear_text = self.smtp_tls == SmtpTls.NONE
        if self.environment == "production" and self.smtp_password and clear_text:
            raise ValueError(
                "refusing to send SMTP credentials in clear text; set NOTIFIER_SMTP_TLS"
            )
        return self


def _names(value: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(part.strip() for part in value.split(",") if part.strip()))


def load_settings(**overrides: object) -> Settings:
    """Read the environment; any problem becomes one ``ConfigError`` line naming the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = "_".join(str(part) for part in first["loc"])
        name = f"NOTIFIER_{loc.upper()}" if loc else "settings"
        message = str(first["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"{name}: {message}") from exc
