"""Rules through the API: read, change, validate, history, and every replica following.

The whole service runs in process against a real nats-server and SQLite or PostgreSQL;
a change is observed where it matters, in what an event then sends.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import pytest
from httpx import AsyncClient

from notifier.config import DEFAULT_RULES_FILE
from notifier.devtools.mailcatcher import MailCatcher
from notifier.devtools.natsserver import NatsServer
from notifier.service import Service
from notifier.store.rule_sets import store_rule_set
from tests.integration.helpers import event, order, publish, running, settings_for, statuses
from tests.support import wait_until

#: ``placed`` tells the customer their order is on hold (instead of confirmed): a
#: change anyone can see in the ledger and the mail
ON_HOLD_WHEN_PLACED = """\
# a rules change through the API
version: 1
rules:
  - name: placed_on_hold
    when: {state: [placed]}
    template: on_hold
    channels: [email]
    priority: urgent
"""
SHIPPED_ONLY = """\
version: 1
rules:
  - name: shipped
    when: {state: [shipped], from: [confirmed, null]}
    template: shipped
    channels: [email, sms]
    fallback: true
"""
RULE = "version: 1\nrules:\n  - name: r\n    when: {state: [shipped]}\n"


async def _version(client: AsyncClient) -> int:
    response = await client.get("/v1/rules")
    response.raise_for_status()
    version: int = response.json()["version"]
    return version


async def _put(client: AsyncClient, document: str, **headers: str) -> dict[str, Any]:
    response = await client.put("/v1/rules", json={"document": document}, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_rules_round_trip_with_versions_and_rollback(
    nats: NatsServer, database_url: str
) -> None:
    settings = settings_for(nats.url, database_url, None, rules_file=DEFAULT_RULES_FILE)
    async with running(settings) as (_service, client):
        first = (await client.get("/v1/rules")).json()
        assert first["version"] == 0
        assert first["author"] is None and first["created_at"] is None
        assert first["document"] == DEFAULT_RULES_FILE.read_text()
        assert "order_confirmed" in [r["name"] for r in first["rules"]]
        assert first["refused"] is None

        put = await _put(client, ON_HOLD_WHEN_PLACED, **{"X-Notifier-Actor": "ops-ada"})
        assert (put["version"], put["author"]) == (1, "ops-ada")
        now = (await client.get("/v1/rules")).json()
        assert now["version"] == 1 and now["author"] == "ops-ada"
        assert now["created_at"] == put["created_at"]
        assert now["document"] == ON_HOLD_WHEN_PLACED  # as sent, comment included
        assert now["rules"] == [
            {
                "name": "placed_on_hold",
                "states": ["placed"],
                "from_states": None,
                "template": "on_hold",
                "channels": ["email"],
                "priority": "high",
                "once": False,
                "fallback": False,
                "category": "transactional",
                "kind": "transition",
                "held_for": None,
                "until_end_of_local_day": False,
                "grace": "PT0S",
                "percentile": 90.0,
                "conditions": {
                    "sources": None,
                    "carriers": None,
                    "min_value": None,
                    "max_value": None,
                },
                "audience": "customer",
            }
        ]

        assert (await _put(client, SHIPPED_ONLY))["author"] == "api"
        shipped = (await client.get("/v1/rules")).json()["rules"][0]
        assert shipped["from_states"] == ["confirmed", None]
        assert shipped["fallback"] is True

        history = (await client.get("/v1/rules/versions")).json()["versions"]
        assert [(v["version"], v["author"]) for v in history] == [(2, "api"), (1, "ops-ada")]
        old = (await client.get("/v1/rules/versions/1")).json()
        assert (old["version"], old["document"]) == (1, ON_HOLD_WHEN_PLACED)
        missing = await client.get("/v1/rules/versions/7")
        assert missing.status_code == 404
        assert missing.json() == {"detail": "rules version 7 not found"}

        # a rollback is a PUT of the older document: a new version, the old rules
        assert (await _put(client, old["document"]))["version"] == 3
        back = (await client.get("/v1/rules")).json()
        assert (back["version"], back["rules"][0]["name"]) == (3, "placed_on_hold")


#: (document, what the one error line must say): each names the rule and the field
INVALID = [
    (
        RULE + "    template: shipped\n    channels: [fax]\n",
        "rule 1 (r): channels.0: Value error, unknown channel 'fax'",
    ),
    (
        RULE + "    template: no_such_template\n    channels: [email]\n",
        "rule 1 (r): template 'no_such_template' has no email part",
    ),
    (
        RULE + "    template: a: b\n    channels: [email]\n",
        "not valid YAML: line 5: mapping values are not allowed here",
    ),
    (RULE + "    template: shipped\n", "rule 1 (r): channels: Field required"),
    (
        RULE + "    template: shipped\n    channels: [email, sms]\n    priority: asap\n",
        "rule 1 (r): priority",
    ),
    ("version: 2\nrules: []\n", "document: version"),
]


async def test_a_document_that_does_not_validate_is_a_422_naming_rule_and_field(
    nats: NatsServer, tmp_path: Any
) -> None:
    settings = settings_for(nats.url, f"sqlite+aiosqlite:///{tmp_path / 'n.db'}", None)
    async with running(settings) as (_service, client):
        for document, says in INVALID:
            for method, path in (("PUT", "/v1/rules"), ("POST", "/v1/rules:validate")):
                response = await client.request(method, path, json={"document": document})
                assert response.status_code == 422, (path, document)
                [error] = response.json()["detail"]
                assert error["loc"] == ["body", "document"]
                assert error["msg"].startswith("document: ")
                assert says in error["msg"], error["msg"]
                assert "\n" not in error["msg"]
        # a body that is not a document at all: FastAPI's own 422, naming the field
        rules_object = {"version": 1, "rules": []}
        response = await client.put("/v1/rules", json=rules_object)
        assert response.status_code == 422
        assert ["body", "document"] in [e["loc"] for e in response.json()["detail"]]
        bad_actor = await client.put(
            "/v1/rules",
            json={"document": SHIPPED_ONLY},
            headers={"X-Notifier-Actor": " x"},
        )
        assert bad_actor.status_code == 422
        assert bad_actor.json()["detail"][0]["loc"] == ["header", "X-Notifier-Actor"]
        assert (await client.get("/v1/rules/versions")).json() == {"versions": []}
        assert await _version(client) == 0


async def test_validate_stores_nothing(nats: NatsServer, tmp_path: Any) -> None:
    settings = settings_for(nats.url, f"sqlite+aiosqlite:///{tmp_path / 'n.db'}", None)
    async with running(settings) as (_service, client):
        response = await client.post("/v1/rules:validate", json={"document": SHIPPED_ONLY})
        assert response.status_code == 200
        assert response.json()["valid"] is True
        assert [r["name"] for r in response.json()["rules"]] == ["shipped"]
        assert (await client.get("/v1/rules/versions")).json() == {"versions": []}
        assert await _version(client) == 0


async def test_a_change_decides_the_next_event_without_a_restart(
    nats: NatsServer, mail: MailCatcher, tmp_path: Any
) -> None:
    settings = settings_for(nats.url, f"sqlite+aiosqlite:///{tmp_path / 'n.db'}", mail.port)
    async with running(settings) as (_service, client):
        await publish(nats.url, event("A-1", "placed", 0))
        await wait_until(lambda: len(mail.messages()) == 1)
        assert statuses(await order(client, "A-1")) == {"order_confirmed": "sent"}

        await _put(client, ON_HOLD_WHEN_PLACED)  # in effect here once the PUT answers
        await publish(nats.url, event("A-2", "placed", 0))
        await wait_until(lambda: len(mail.messages()) == 2)
        assert statuses(await order(client, "A-2")) == {"on_hold": "sent"}


async def test_new_rules_reach_the_next_batch_and_never_the_one_in_hand(
    nats: NatsServer, tmp_path: Any
) -> None:
    settings = settings_for(nats.url, f"sqlite+aiosqlite:///{tmp_path / 'n.db'}", None)
    async with running(settings) as (service, client):
        processor = service.consumer.processor
        in_hand = processor.pipeline  # what a batch being planned holds
        await _put(client, SHIPPED_ONLY)
        assert [r.name for r in processor.pipeline.rules.rules] == ["shipped"]
        assert "order_confirmed" in [r.name for r in in_hand.rules.rules]


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_a_change_through_one_replica_is_followed_by_another_within_a_second(
    nats: NatsServer, mail: MailCatcher, database_url: str
) -> None:
    settings = settings_for(nats.url, database_url, mail.port)
    async with running(settings) as (second, second_client):
        async with running(settings) as (_first, first_client):
            assert await _version(second_client) == 0
            await _put(first_client, ON_HOLD_WHEN_PLACED)

            async def second_has_it() -> bool:
                return await _version(second_client) == 1

            # NOTIFIER_RULES_POLL_S is 0.5: the second replica takes it at its next poll
            await wait_until(second_has_it, timeout=1.5, interval=0.02)
        # the first replica is gone: the event can only be planned by the second
        await publish(nats.url, event("B-1", "placed", 0))
        await wait_until(lambda: len(mail.messages()) == 1, timeout=10)
        assert statuses(await order(second_client, "B-1")) == {"on_hold": "sent"}
        new = second.metrics.registry.get_sample_value("notifier_events_total", {"outcome": "new"})
        assert new == 1


async def _checks(client: AsyncClient) -> dict[str, Any]:
    response = await client.get("/readyz")
    assert response.status_code == 200  # degraded, still serving
    body: dict[str, Any] = response.json()
    return body


async def test_a_stored_version_that_no_longer_validates_keeps_the_previous_rules(
    nats: NatsServer,
    mail: MailCatcher,
    database_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Stored by an older deployment whose templates this one no longer has, say."""
    settings = settings_for(nats.url, database_url, mail.port)
    broken = RULE + "    template: gone_template\n    channels: [email]\n"
    async with running(settings) as (service, client):
        await _put(client, ON_HOLD_WHEN_PLACED)
        caplog.set_level(logging.ERROR, logger="notifier.ingest.live_rules")
        await store_rule_set(service.engine, broken, "older-deploy")
        live = service.rules
        assert live is not None
        await wait_until(lambda: live.refused is not None)
        for _ in range(3):  # polls that find it again say nothing more
            await live.refresh()
        refusals = [r for r in caplog.records if "rules version 2 refused" in r.getMessage()]
        assert len(refusals) == 1
        assert "template 'gone_template' has no email part" in refusals[0].getMessage()

        ready = await _checks(client)
        assert ready["status"] == "degraded"
        assert ready["checks"]["rules"].startswith(
            "degraded: rules version 2 refused, version 1 still in effect: rules version 2: "
        )
        shown = (await client.get("/v1/rules")).json()
        assert shown["version"] == 1
        assert shown["refused"]["version"] == 2
        assert _gauge(service, "notifier_rules_refused_version") == 2
        assert _gauge(service, "notifier_rules_version") == 1
        await publish(nats.url, event("C-1", "placed", 0))
        await wait_until(lambda: len(mail.messages()) == 1)
        assert statuses(await order(client, "C-1")) == {"on_hold": "sent"}

        await _put(client, SHIPPED_ONLY)  # a newer good version ends it
        assert (await _checks(client))["checks"]["rules"] == "ok"
        assert _gauge(service, "notifier_rules_refused_version") == 0


async def test_start_up_takes_the_newest_stored_version_that_validates(
    nats: NatsServer, database_url: str
) -> None:
    settings = settings_for(nats.url, database_url, None)
    broken = RULE + "    template: gone_template\n    channels: [email]\n"
    async with running(settings) as (service, client):
        await _put(client, ON_HOLD_WHEN_PLACED)
        await _put(client, SHIPPED_ONLY)
        await store_rule_set(service.engine, broken, "older-deploy")
    async with contextlib.AsyncExitStack() as stack:
        service, client = await stack.enter_async_context(running(settings))
        shown = (await client.get("/v1/rules")).json()
        assert (shown["version"], shown["refused"]["version"]) == (2, 3)
        assert [r["name"] for r in shown["rules"]] == ["shipped"]
        assert (await _checks(client))["checks"]["rules"].startswith("degraded: rules version 3")


def _gauge(service: Service, name: str) -> float | None:
    return service.metrics.registry.get_sample_value(name)
