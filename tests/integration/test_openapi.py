"""The API against its own OpenAPI document, tried systematically with schemathesis.

Every route of ``/openapi.json`` is called with generated requests, valid and invalid,
on the real service (uvicorn on a free port, SQLite, a real nats-server, the SMS channel
on so the Twilio receipt route answers): without an API token configured, and with one
configured, sent and not sent. Each answer must be no 5xx and must be what the document
allows: status code, content type, headers and body schema, a refused valid request or
an accepted invalid one, and a ``/v1`` route that answers without its token.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode, Response
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import positive_data_acceptance
from schemathesis.specs.openapi.schemas import OpenApiSchema

from notifier.app import build_service, create_app
from notifier.config import Settings
from notifier.devtools.natsserver import NatsServer
from tests.integration.conftest import TWILIO_SID, TWILIO_TOKEN
from tests.integration.helpers import settings_for
from tests.support import free_port

TOKEN = "schemathesis-token-0123456789"
#: per route and kind (valid, invalid): 15 routes x 2 x 3 modes, some 1,300 requests
EXAMPLES = 15
#: the routes the document must list (a route that drops out of it is no longer tried)
ROUTES = {
    "GET /healthz",
    "GET /readyz",
    "GET /metrics",
    "GET /v1/orders/{order_id}",
    "DELETE /v1/customers/{customer_id}/personal-data",
    "GET /v1/stats/delivery",
    "GET /v1/customers/{customer_id}/dead-push-tokens",
    "POST /v1/receipts/twilio",
    "GET /v1/customers/{customer_id}/feed",
    "POST /v1/customers/{customer_id}/feed/read",
    "GET /v1/customers/{customer_id}/preferences",
    "PUT /v1/customers/{customer_id}/preferences",
    "GET /v1/rules",
    "PUT /v1/rules",
    "POST /v1/rules:validate",
    "GET /v1/rules/versions",
    "GET /v1/rules/versions/{version}",
}
#: answers that never end (a live stream): tested in test_feed.py, not called here
OPEN_ENDED = {"GET /v1/customers/{customer_id}/feed/stream"}
START_TIMEOUT_S = 60.0


class LiveService:
    """The whole service in a thread with its own event loop, its API served by uvicorn
    on ``settings.http_port``: schemathesis calls it over HTTP from the test's thread."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.base_url = f"http://127.0.0.1:{settings.http_port}"
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._server: uvicorn.Server | None = None
        self._thread = threading.Thread(target=self._run, name="live-service", daemon=True)

    def __enter__(self) -> LiveService:
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_S):
            raise TimeoutError(f"the service did not start within {START_TIMEOUT_S} s")
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._server is not None:
            self._server.should_exit = True
        self._thread.join(START_TIMEOUT_S)
        if self._error is not None:  # it failed to stop cleanly
            raise self._error

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # handed to the test's thread
            self._error = exc
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        service = build_service(self.settings)
        await service.start()
        try:
            server = uvicorn.Server(
                uvicorn.Config(
                    create_app(service),
                    host="127.0.0.1",
                    port=self.settings.http_port,
                    log_level="warning",
                    lifespan="off",
                    access_log=False,
                )
            )
            server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
            self._server = server
            task = asyncio.create_task(server.serve())
            while not server.started:
                if task.done():
                    task.result()  # it could not start: say why
                await asyncio.sleep(0.01)
            self._ready.set()
            await task
        finally:
            await service.stop()


@pytest.fixture(scope="module")
def live_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """One nats-server for the module's services."""
    with NatsServer(store_dir=tmp_path_factory.mktemp("nats")) as server:
        yield server


def _settings(nats: NatsServer, data: Path, **overrides: Any) -> Settings:
    port = free_port()
    return settings_for(
        nats.url,
        f"sqlite+aiosqlite:///{data / 'notifier.db'}",
        None,
        http_port=port,
        public_base_url=f"http://127.0.0.1:{port}",
        twilio_account_sid=TWILIO_SID,
        twilio_auth_token=TWILIO_TOKEN,
        twilio_from="+15005550006",
        **overrides,
    )


@pytest.fixture(scope="module")
def open_service(
    live_nats: NatsServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveService]:
    """A service without an API token (as in development)."""
    with LiveService(_settings(live_nats, tmp_path_factory.mktemp("open"))) as live:
        yield live


@pytest.fixture(scope="module")
def guarded_service(
    live_nats: NatsServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveService]:
    """A service with ``NOTIFIER_API_TOKEN`` set."""
    settings = _settings(live_nats, tmp_path_factory.mktemp("guarded"), api_token=TOKEN)
    with LiveService(settings) as live:
        yield live


#: (which service, the token schemathesis sends where the document asks for one)
MODES = {
    "no-token-configured": ("open_service", None),
    "token-sent": ("guarded_service", TOKEN),
    "token-not-sent": ("guarded_service", None),
}


@pytest.fixture(params=sorted(MODES))
def api_schema(request: pytest.FixtureRequest) -> OpenApiSchema:
    """The service's own document as it serves it, with the token to send, if any."""
    fixture, token = MODES[request.param]
    live: LiveService = request.getfixturevalue(fixture)
    # as configured, schemathesis also leaves the token out, or spoils it, in invalid requests
    auth = {"auth": {"openapi": {"HTTPBearer": {"bearer": token}}}} if token else {}
    return schemathesis.openapi.from_url(
        f"{live.base_url}/openapi.json", config=schemathesis.Config.from_dict(auth)
    )


def _window_over_the_limit(case: Case, response: Response) -> bool:
    """A ``window`` of the documented syntax but over 400d: a documented 422 that the
    document's pattern cannot foresee (a regex cannot bound a number)."""
    if case.operation.path != "/v1/stats/delivery" or response.status_code != 422:
        return False
    detail = response.json().get("detail")
    return isinstance(detail, list) and all(
        e.get("loc") == ["query", "window"] and "at most 400d" in e.get("msg", "") for e in detail
    )


def _rules_that_do_not_validate(case: Case, response: Response) -> bool:
    """A rules document of the documented shape (any text) that is not a valid rule set:
    a documented 422 no schema can foresee (it takes the templates on disk to tell)."""
    if case.operation.path not in ("/v1/rules", "/v1/rules:validate"):
        return False
    if response.status_code != 422:
        return False
    detail = response.json().get("detail")
    return isinstance(detail, list) and all(
        e.get("loc") == ["body", "document"] and e.get("msg", "").startswith("document: ")
        for e in detail
    )


def _check(case: Case) -> None:
    response = case.call(timeout=30)
    assert response.status_code < 500, f"{case.operation.label}: {response.text}"
    documented_refusal = _window_over_the_limit(case, response) or _rules_that_do_not_validate(
        case, response
    )
    excluded = [positive_data_acceptance] if documented_refusal else []
    case.validate_response(response, excluded_checks=excluded)


def test_every_route_answers_as_its_document_says(api_schema: OpenApiSchema) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert {op.label for op in operations} >= ROUTES | OPEN_ENDED
    operations = [op for op in operations if op.label not in OPEN_ENDED]
    # schemathesis' pytest plugin (from_fixture) does not run under pytest 9.2, so each
    # operation is a Hypothesis test of its own here, valid and invalid requests apart
    failures: list[str] = []
    for operation in operations:
        for mode in GenerationMode:

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def answers_as_documented(case: Case) -> None:
                _check(case)

            try:
                answers_as_documented()
            except Unsatisfiable:
                # no request to this route can be invalid (it takes nothing, or any string)
                if mode is GenerationMode.POSITIVE:
                    raise
            except (AssertionError, FailureGroup) as exc:  # one report names every failure
                failures.append(f"{operation.label}, {mode} requests: {exc}")
    assert not failures, "\n\n".join(failures)
