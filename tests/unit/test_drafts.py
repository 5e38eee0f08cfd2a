"""Drafting helpers that must give the same answers as the plain computations they save."""

from __future__ import annotations

from typing import Any

import pytest

from notifier.core.drafts import DraftContext
from notifier.core.intents import context_digest


@pytest.mark.parametrize(
    ("values", "recipient"),
    [
        ({"order": {"id": "A-1", "attributes": {"total": "49.90"}}}, "ada@example.com"),
        ({"customer": {"name": "Émile Nelligan"}, "z": [1, 2.5, None, True]}, "+14155550100"),
        ({"b": {"y": 1, "x": 2}, "a": 'quote " and \\ and \u2028'}, 'token/with"quote'),
    ],
)
def test_digest_to_equals_the_context_digest(values: dict[str, Any], recipient: str) -> None:
    context = DraftContext(lambda: values)
    assert context.digest_to(recipient) == context_digest({"context": values, "to": recipient})
    assert context.values is values


def test_the_context_is_made_once() -> None:
    made: list[int] = []

    def make() -> dict[str, Any]:
        made.append(1)
        return {"a": 1}

    context = DraftContext(make)
    context.digest_to("x")
    context.digest_to("y")
    assert context.values == {"a": 1}
    assert len(made) == 1
