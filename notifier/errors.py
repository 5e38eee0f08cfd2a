"""Every error notifier raises on purpose, drawn once.

    NotifierError
    ├── ConfigError                  a setting, the rules file or a template set is unusable
    │   └── RulesError               the rules file does not validate
    ├── StartupError                 NATS, the database or the HTTP port cannot be reached
    ├── TemplateError                a template is missing or fails to render
    │   └── TemplateNotFound
    ├── DeliveryError                a channel could not hand a message to its provider
    │   ├── TransientDeliveryError   try again later (timeouts, 4xx SMTP, 429, 5xx)
    │   └── PermanentDeliveryError   never retry (bad address, unsubscribed, 5xx SMTP reply)
    ├── StoreError                   the database refused or is unreachable
    ├── IllegalMove                  a ledger status change its table does not allow (a bug)
    └── DeadLetterError              the DEADLETTER stream did not store a dead letter (or
                                     could not delete one): the events stay unacked

A duplicate event is a normal result of the pipeline, not an error; so is a
dead letter (see ``notifier.core.outcomes``).
"""

from __future__ import annotations


class NotifierError(Exception):
    """Base of every error notifier raises deliberately."""


class ConfigError(NotifierError):
    """A setting, the rules file or the template set cannot be used."""


class RulesError(ConfigError):
    """The rules file does not validate; the message names the rule and the field."""


class StartupError(NotifierError):
    """A dependency (NATS, the database, the HTTP port) is unreachable at start-up."""


class TemplateError(NotifierError):
    """A template is missing, does not compile, or failed while rendering."""


class TemplateNotFound(TemplateError):
    """No template of that name exists for the requested channel."""


class DeliveryError(NotifierError):
    """A channel could not hand a message to its provider."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class TransientDeliveryError(DeliveryError):
    """The provider may accept the message later; retry with backoff."""

    def __init__(
        self, message: str, *, code: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class PermanentDeliveryError(DeliveryError):
    """The provider will never accept this message; do not retry.

    ``dead_recipient`` says the address itself is gone for good (an unregistered push
    token): it is recorded and never used again. ``opted_out`` says the recipient told
    the provider to stop (an SMS STOP), and why: the customer is opted out of the channel
    and the message is suppressed, not failed.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        dead_recipient: bool = False,
        opted_out: str | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self.dead_recipient = dead_recipient
        self.opted_out = opted_out


class StoreError(NotifierError):
    """The database refused the operation or could not be reached."""


class IllegalMove(NotifierError):
    """A notification status change that ``core/notification_status.py`` does not allow:
    raised where the conditional update is built, so a bug cannot write it."""


class DeadLetterError(NotifierError):
    """The DEADLETTER stream is missing, refused a dead letter, did not answer in time, or
    could not delete one. ``seqs`` are the ``ORDERS`` stream sequences of the events whose
    dead letters were not stored: they must not be acked.
    """

    def __init__(self, message: str, *, seqs: tuple[int, ...] = ()) -> None:
        super().__init__(message)
        self.seqs = seqs
