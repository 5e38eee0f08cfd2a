"""The schema. Personal data lives in ``events.payload`` and ``notifications`` recipient and
bodies; both have a retention (see ``store.maintenance``) and an erase-one-customer path.
Refused events keep theirs in the DEADLETTER stream; ``dead_letters`` indexes them, so
retention and erasure reach them too. In-app ``feed_items`` keep titles and bodies: they
age with the ledger and go with the customer. ``customer_preferences`` may hold contact
overrides: erased with the customer, and aged out once the customer has no order left.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
)
from sqlalchemy.engine import Dialect

metadata = MetaData()


class UtcDateTime(TypeDecorator[datetime]):
    """A moment, stored in UTC and read back aware.

    SQLAlchemy's SQLite ``DateTime`` writes a datetime's clock fields and drops its
    offset, so 10:00+01:00 came back as 10:00 UTC: an hour late, enough to judge a
    Paris customer's next event stale. Everything goes in as UTC now, on both backends.
    Rows written before this keep the clock time they were given.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None or value.tzinfo is None:
            return value
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None or value.tzinfo is not None:
            return value
        return value.replace(tzinfo=UTC)


orders = Table(
    "orders",
    metadata,
    Column("order_id", String(200), primary_key=True),
    Column("source", String(100), nullable=False),
    Column("customer_id", String(200), nullable=False, index=True),
    Column("state", String(40), nullable=False),
    Column("order_state", String(40)),
    Column("shipments", JSON, nullable=False),
    Column("last_event_at", UtcDateTime()),
    Column("updated_at", UtcDateTime(), nullable=False, index=True),
)

#: the dedup records and each order's history in one: an event id is unique forever
#: (within retention) and its row keeps the content hash that tells a duplicate from a
#: revision
events = Table(
    "events",
    metadata,
    Column("event_id", String(200), primary_key=True),
    Column("order_id", String(200), nullable=False, index=True),
    Column("customer_id", String(200), nullable=False, index=True),
    Column("seq", BigInteger, nullable=False),
    Column("revised_seq", BigInteger, nullable=False),
    Column("occurred_at", UtcDateTime(), nullable=False),
    Column("state", String(40), nullable=False),
    Column("shipment_id", String(200)),
    Column("content_hash", String(64), nullable=False),
    Column("payload", Text, nullable=False),
    Column("retracted", Boolean, nullable=False),
    Column("outcome", String(20), nullable=False),
    Column("received_at", UtcDateTime(), nullable=False),
)

notifications = Table(
    "notifications",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("idempotency_key", String(700), nullable=False, unique=True),
    Column("event_id", String(200), nullable=False),
    Column("order_id", String(200), nullable=False, index=True),
    Column("customer_id", String(200), nullable=False, index=True),
    Column("channel", String(20), nullable=False),
    Column("template", String(100), nullable=False),
    Column("template_version", String(40)),
    Column("locale", String(40)),
    Column("state", String(40), nullable=False),
    Column("recipient", Text),
    Column("subject", Text),
    Column("body_text", Text),
    Column("body_html", Text),
    #: who it comes from, decided when it was rendered (its store's email ``From`` or
    #: SMS sender; NULL: the channel's own) and where replies go: what is sent is this
    Column("sender", Text),
    Column("reply_to", Text),
    Column("status", String(20), nullable=False),
    Column("priority", Integer, nullable=False),
    #: stream position of the event behind it: an order's messages go out in this order
    Column("event_seq", BigInteger, nullable=False),
    Column("digest", String(64), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("provider", String(40)),
    Column("provider_message_id", String(300)),
    Column("last_error", Text),
    Column("next_attempt_at", UtcDateTime(), nullable=False),
    Column("lease_until", UtcDateTime()),
    Column("created_at", UtcDateTime(), nullable=False, index=True),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("sent_at", UtcDateTime()),
    #: the provider's final word (delivery receipt), when it sends one
    Column("delivered_at", UtcDateTime()),
    #: a dispatch message must still be published to ``notify.<channel>`` (the outbox);
    #: ``dispatch_gen`` counts publications, so each one has its own ``Nats-Msg-Id``
    Column("dispatch_pending", Boolean, nullable=False, default=False),
    Column("dispatch_gen", Integer, nullable=False, default=0),
    #: a fallback rule's notifications share a group; ``standby`` rows wait by rank
    Column("fallback_group", String(700)),
    Column("fallback_rank", Integer),
    #: the rule's category (``transactional`` or ``alerts``; NULL before categories):
    #: what a customer's opt-out, checked again when it is claimed, applies to
    Column("category", String(20)),
    #: an alert's one-click unsubscribe link (an email's ``List-Unsubscribe``)
    Column("unsubscribe_url", Text),
    #: held by the customer's quiet hours: not published nor sent before this moment
    Column("not_before", UtcDateTime()),
    Index("ix_notifications_due", "status", "channel", "next_attempt_at"),
    Index("ix_notifications_pending", "dispatch_pending"),
    Index("ix_notifications_fallback", "fallback_group", "status", "fallback_rank"),
    Index("ix_notifications_provider_id", "provider_message_id"),
)

#: push tokens the provider said are gone for good; only a hash of the token is kept
dead_push_tokens = Table(
    "dead_push_tokens",
    metadata,
    Column("token_sha256", String(64), primary_key=True),
    Column("customer_id", String(200), nullable=False, index=True),
    Column("reason", String(200), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False, index=True),
)

#: operations alerts already raised, so each is sent at most once per window
ops_alerts = Table(
    "ops_alerts",
    metadata,
    Column("key", String(200), primary_key=True),
    Column("subject", String(100), nullable=False, index=True),
    Column("detail", Text, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False, index=True),
)

#: one row per event dead letter in the DEADLETTER stream (the payload stays there):
#: how erasure finds a customer's dead letters, how retention ages them with the
#: stream, and what triage counts by reason and source
dead_letters = Table(
    "dead_letters",
    metadata,
    #: the message's sequence in the DEADLETTER stream
    Column("seq", BigInteger, primary_key=True),
    Column("reason", String(40), nullable=False, index=True),
    Column("source", String(100), nullable=False, index=True),
    #: what was parseable of the payload; an unreadable one has neither
    Column("order_id", String(200)),
    Column("customer_id", String(200), index=True),
    #: the event's sequence in the ORDERS stream
    Column("original_seq", BigInteger, nullable=False),
    #: names the field and the rule, never the value
    Column("detail", Text, nullable=False),
    Column("received_at", UtcDateTime(), nullable=False, index=True),
)

#: the in-app feed: one item per notification on the in-app channel (its id is the
#: notification's), kept for the customer to read; title, body and link are personal
#: data, deleted with the customer and by the ledger's retention. ``seq`` orders a feed
#: (cursors and stream resumption count on it never going back)
feed_items = Table(
    "feed_items",
    metadata,
    Column(
        "seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("id", String(40), nullable=False, unique=True),
    Column("customer_id", String(200), nullable=False),
    Column("order_id", String(200), nullable=False),
    Column("template", String(100), nullable=False),
    Column("title", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("link", Text),
    Column("created_at", UtcDateTime(), nullable=False, index=True),
    #: when the customer marked it read; None while unread
    Column("read_at", UtcDateTime()),
    Index("ix_feed_items_customer_seq", "customer_id", "seq"),
)

#: one customer's stored preferences (``contracts.preferences``): channels per category
#: (NULL: the event decides), contact overrides (personal data: erased with the customer,
#: and kept no longer than the ledger once the customer has no order left), language,
#: time zone, quiet hours, and the orders they muted
customer_preferences = Table(
    "customer_preferences",
    metadata,
    Column("customer_id", String(200), primary_key=True),
    Column("transactional_channels", JSON),
    Column("alerts_channels", JSON),
    Column("preferred_channel", String(20)),
    Column("email", Text),
    Column("phone", String(20)),
    Column("locale", String(35)),
    Column("timezone", String(64)),
    Column("quiet_hours_start", String(5)),
    Column("quiet_hours_end", String(5)),
    Column("muted_orders", JSON, nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False, index=True),
)

#: durable timers of the time rules (``core.timers``): one per order, rule and shipment
#: ("" for the order itself), armed, re-armed and cleared in the transaction of the
#: batch that changes the order, and claimed by the poller when due. No personal data
#: (ids and times); they go with their order (retention) and their customer (erasure)
timers = Table(
    "timers",
    metadata,
    Column("order_id", String(200), primary_key=True),
    Column("rule", String(100), primary_key=True),
    Column("shipment", String(200), primary_key=True),
    Column("customer_id", String(200), nullable=False, index=True),
    Column("due_at", UtcDateTime(), nullable=False),
    #: the ``occurred_at`` of what armed it, and which event that was
    Column("armed_at", UtcDateTime(), nullable=False),
    Column("event_id", String(200), nullable=False),
    #: when it fired (or was found moved on): the same due time never fires twice
    Column("fired_at", UtcDateTime()),
    #: a poller took it until then; past it (the poller died), another may
    Column("claimed_until", UtcDateTime()),
    Column("updated_at", UtcDateTime(), nullable=False),
    Index("ix_timers_due", "fired_at", "due_at"),
)

#: the rules documents stored through the API, one row per version (the newest is in
#: effect; the rules file is version 0, used while there is none). No personal data:
#: ``author`` is who changed them, a handle an operator chooses (``X-Notifier-Actor``)
rule_sets = Table(
    "rule_sets",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("document", Text, nullable=False),
    Column("author", String(100), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
)
