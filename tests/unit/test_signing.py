"""Signed tokens: what opens, what does not, and why."""

from __future__ import annotations

import pytest

from notifier.signing import TokenProblem, check, mint

NOW = 1_800_000_000


def test_a_minted_token_checks_until_it_expires() -> None:
    token = mint("s3cret", "track", "order-1", NOW + 60)
    assert check("s3cret", "track", "order-1", token, now=NOW) is None
    assert check("s3cret", "track", "order-1", token, now=NOW + 60) is TokenProblem.EXPIRED


@pytest.mark.parametrize(
    ("secret", "purpose", "subject"),
    [("other", "track", "order-1"), ("s3cret", "feed", "order-1"), ("s3cret", "track", "order-2")],
)
def test_a_token_opens_only_its_own_subject_and_purpose(
    secret: str, purpose: str, subject: str
) -> None:
    token = mint("s3cret", "track", "order-1", NOW + 60)
    assert check(secret, purpose, subject, token, now=NOW) is TokenProblem.FORGED


@pytest.mark.parametrize("token", ["", ".", "abc", "zz.AAAA", "1." + "A" * 100, "x" * 20 + ".AA"])
def test_garbage_is_malformed_not_an_error(token: str) -> None:
    assert check("s3cret", "track", "order-1", token, now=NOW) is TokenProblem.MALFORMED


def test_a_changed_expiry_breaks_the_mac() -> None:
    token = mint("s3cret", "track", "order-1", NOW + 60)
    mac = token.partition(".")[2]
    assert check("s3cret", "track", "order-1", f"{NOW + 10**6:x}.{mac}", now=NOW) is (
        TokenProblem.FORGED
    )


def test_an_empty_secret_mints_nothing() -> None:
    with pytest.raises(ValueError, match="secret"):
        mint("", "track", "order-1", NOW)
