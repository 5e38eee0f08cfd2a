"""Signed, expiring tokens for links and credentials a shopper holds (a tracking link,
a feed token): ``<expiry>.<mac>``, where the MAC is HMAC-SHA256 over the purpose, the
subject (an order or customer id) and the expiry, truncated to 128 bits.

The subject is not in the token: the URL that carries the token names it
(``/track/{order_id}?t=…``), so a link stays short enough for an SMS and a token for
one order or customer opens nothing else. The purpose keeps a token minted for one use
(``track``) from opening another (``feed``) even under the same secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from enum import StrEnum

#: 16 bytes of HMAC-SHA256: 22 characters in base64url, forgery odds 2^-128
_MAC_BYTES = 16


class TokenProblem(StrEnum):
    """Why a token was refused: for logs and metrics, never shown to the holder."""

    #: not of the form ``<expiry>.<mac>``
    MALFORMED = "malformed"
    #: signed for another subject or purpose, or with another secret
    FORGED = "forged"
    #: well signed, but past its expiry
    EXPIRED = "expired"


def _mac(secret: str, purpose: str, subject: str, expires_at: int) -> str:
    message = f"{purpose}\x00{subject}\x00{expires_at}".encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()[:_MAC_BYTES]
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def mint(secret: str, purpose: str, subject: str, expires_at: int) -> str:
    """A token for ``subject`` that holds until ``expires_at`` (Unix seconds)."""
    if not secret:
        raise ValueError("a signing secret must not be empty")
    return f"{expires_at:x}.{_mac(secret, purpose, subject, expires_at)}"


def check(
    secret: str, purpose: str, subject: str, token: str, *, now: float | None = None
) -> TokenProblem | None:
    """``None`` when ``token`` was minted with ``secret`` for ``purpose`` and ``subject``
    and has not expired; otherwise why not. The MAC is compared in constant time."""
    expiry, sep, mac = token.partition(".")
    if not sep or not expiry or len(expiry) > 12 or not mac or len(mac) > 64:
        return TokenProblem.MALFORMED
    try:
        expires_at = int(expiry, 16)
    except ValueError:
        return TokenProblem.MALFORMED
    if not secret or not hmac.compare_digest(
        mac.encode(), _mac(secret, purpose, subject, expires_at).encode()
    ):
        return TokenProblem.FORGED
    if expires_at <= (time.time() if now is None else now):
        return TokenProblem.EXPIRED
    return None
