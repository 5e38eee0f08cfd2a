"""A protocol-level fake of FCM HTTP v1 and Google's OAuth token endpoint, on 127.0.0.1.

There is no FCM emulator, so tests and ``notifier dev`` run the real firebase-admin
client against this. It speaks the wire protocol, not the library's API: the
service-account file it writes carries a freshly generated RSA key and a ``token_uri``
pointing here; ``POST /token`` verifies the signed JWT-bearer grant and issues a
bearer token; ``POST /v1/projects/{project}/messages:send`` accepts only tokens it
issued, checks the message's shape and answers with the bodies FCM really sends
(``UNREGISTERED``, ``INVALID_ARGUMENT``, ``QUOTA_EXCEEDED`` with ``Retry-After``,
``UNAVAILABLE`` ...). Failures are injected per push token, for the next N requests,
or for everything (``down``).

It serves from the current asyncio loop (aiohttp), like the mail catcher, so a test
awaits :meth:`FcmFake.wait_for` instead of polling another thread. Development only.

This module is the server and its state (keys, issued tokens, injected failures, what
it accepted); what a request must look like and the bodies it answers with are
``fcmwire.py``'s, which also defines :class:`FcmFailure` for :meth:`FcmFake.fail_next`.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth import exceptions as auth_exceptions
from google.auth import jwt

from notifier.devtools.fcmwire import (
    FcmFailure,
    ReceivedPush,
    fcm_error,
    google_error,
    invalid,
    oauth_error,
    received_push,
    shape_problem,
)

#: the audience google-auth puts in every grant, whatever the file's ``token_uri`` says
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
#: a token grant must ask for one of these to be allowed to send
SEND_SCOPES = frozenset(
    {
        "https://www.googleapis.com/auth/firebase.messaging",
        "https://www.googleapis.com/auth/cloud-platform",
    }
)
ACCESS_TOKEN_LIFETIME_S = 3600
MAX_MESSAGES = 1000


@dataclass(frozen=True, slots=True)
class _ServiceAccount:
    project_id: str
    client_email: str
    public_pem: bytes


@dataclass(frozen=True, slots=True)
class _Grant:
    project_id: str
    expires_at: float


@dataclass
class _Injected:
    failure: FcmFailure
    retry_after: float | None = None


class FcmFake:
    """FCM HTTP v1 and its OAuth token endpoint, in this loop, keeping what it accepts.

    Knobs a test turns: ``dead_tokens`` (404 UNREGISTERED), ``invalid_tokens``
    (400 INVALID_ARGUMENT), :meth:`fail_next`, ``down`` (503 for every send),
    ``refuse_grants`` (the token endpoint answers ``invalid_grant``, as for a deleted
    key) and ``latency_s`` (added before every send is answered).
    """

    def __init__(self, *, max_messages: int = MAX_MESSAGES) -> None:
        self.dead_tokens: set[str] = set()
        self.invalid_tokens: set[str] = set()
        self.down = False
        self.refuse_grants = False
        self.latency_s = 0.0
        #: POSTs to /token and to messages:send, answered or not
        self.token_requests = 0
        self.send_requests = 0
        self._accounts: dict[str, _ServiceAccount] = {}
        self._grants: dict[str, _Grant] = {}
        self._next_failures: deque[_Injected] = deque()
        self._messages: deque[ReceivedPush] = deque(maxlen=max_messages)
        self._arrived = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Listen on ``host:port`` (0 = any free port) in the running loop."""
        if self._runner is not None:
            raise RuntimeError("FcmFake is already running")
        app = web.Application()
        app.router.add_post("/token", self._token)
        app.router.add_post("/v1/projects/{project}/messages:send", self._send)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        self._runner = runner
        self._port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        """Stop listening and drop open connections."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    @property
    def base_url(self) -> str:
        """What ``NOTIFIER_FCM_API_BASE`` should be; fails loudly before :meth:`start`."""
        if self._runner is None or self._port is None:
            raise RuntimeError("FcmFake is not running: call start() first")
        return f"http://127.0.0.1:{self._port}"

    @property
    def token_uri(self) -> str:
        """The OAuth token endpoint written into service-account files."""
        return f"{self.base_url}/token"

    def write_credentials(self, path: Path, project_id: str = "notifier-dev") -> Path:
        """Write a service-account JSON with a new RSA key whose grants this fake accepts."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        key_id = secrets.token_hex(20)
        client_email = f"notifier-push@{project_id}.iam.gserviceaccount.com"
        private_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        public_pem = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self._accounts[key_id] = _ServiceAccount(project_id, client_email, public_pem)
        info = {
            "type": "service_account",
            "project_id": project_id,
            "private_key_id": key_id,
            "private_key": private_pem,
            "client_email": client_email,
            "client_id": str(secrets.randbelow(10**20)),
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": self.token_uri,
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "client_x509_cert_url": (
                f"https://www.googleapis.com/robot/v1/metadata/x509/{client_email}"
            ),
            "universe_domain": "googleapis.com",
        }
        path.write_text(json.dumps(info, indent=2))
        path.chmod(0o600)
        return path

    def fail_next(
        self, count: int, failure: FcmFailure, *, retry_after: float | None = None
    ) -> None:
        """Answer the next ``count`` sends with ``failure`` (and ``Retry-After`` if given)."""
        self._next_failures.extend(_Injected(failure, retry_after) for _ in range(count))

    def messages(self) -> list[ReceivedPush]:
        """Every accepted message, oldest first."""
        return list(self._messages)

    def outbox(self) -> list[dict[str, Any]]:
        """Every accepted message as JSON-able dicts, newest first, for a dev page."""
        return [m.to_dict() for m in reversed(self._messages)]

    def clear(self) -> None:
        """Forget accepted messages (not tokens, failures or counters)."""
        self._messages.clear()

    # The bound sits in the call because a test reads better that way.
    async def wait_for(self, count: int, timeout: float = 5.0) -> list[ReceivedPush]:  # noqa: ASYNC109
        """Wait until at least ``count`` messages are held; raises ``TimeoutError`` if not."""
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: len(self._messages) >= count)
        return self.messages()

    async def _token(self, request: web.Request) -> web.Response:
        self.token_requests += 1
        form = await request.post()
        if form.get("grant_type") != JWT_BEARER_GRANT:
            return oauth_error("unsupported_grant_type", "Invalid grant_type.")
        assertion = form.get("assertion")
        if not isinstance(assertion, str) or self.refuse_grants:
            return oauth_error("invalid_grant", "Invalid JWT Signature.")
        try:
            header = jwt.decode_header(assertion)  # type: ignore[no-untyped-call]
            account = self._accounts.get(str(header.get("kid")))
            if account is None:
                return oauth_error("invalid_grant", "Invalid JWT Signature.")
            claims = jwt.decode(  # type: ignore[no-untyped-call]
                assertion, certs=account.public_pem, audience=GOOGLE_TOKEN_AUDIENCE
            )
        except (ValueError, auth_exceptions.GoogleAuthError):
            return oauth_error("invalid_grant", "Invalid JWT Signature.")
        if claims.get("iss") != account.client_email:
            return oauth_error("invalid_grant", "Invalid JWT: issuer does not match the key.")
        if not SEND_SCOPES & set(str(claims.get("scope", "")).split()):
            return oauth_error("invalid_scope", "Invalid OAuth scope or ID token audience.")
        token = f"ya29.fake-{secrets.token_urlsafe(24)}"
        expires_at = time.time() + ACCESS_TOKEN_LIFETIME_S
        self._grants[token] = _Grant(account.project_id, expires_at)
        return web.json_response(
            {"access_token": token, "expires_in": ACCESS_TOKEN_LIFETIME_S, "token_type": "Bearer"}
        )

    async def _send(self, request: web.Request) -> web.Response:
        self.send_requests += 1
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        project = request.match_info["project"]
        refused = self._check_auth(request.headers.get("Authorization", ""), project)
        if refused is not None:
            return refused
        if self.down:
            return fcm_error(FcmFailure.UNAVAILABLE)
        if self._next_failures:
            injected = self._next_failures.popleft()
            return fcm_error(injected.failure, retry_after=injected.retry_after)
        try:
            payload = json.loads(await request.read())
        except ValueError:
            return invalid("Invalid JSON payload received.")
        problem = shape_problem(payload)
        if problem is not None:
            return invalid(problem)
        message: dict[str, Any] = payload["message"]
        token = message.get("token")
        if token in self.dead_tokens:
            return fcm_error(FcmFailure.UNREGISTERED)
        if token in self.invalid_tokens:
            return fcm_error(FcmFailure.INVALID_ARGUMENT)
        if payload.get("validate_only"):
            return web.json_response({"name": f"projects/{project}/messages/fake_message_id"})
        message_id = f"0:{time.time_ns()}%{secrets.token_hex(8)}"
        await self._keep(received_push(project, message_id, message))
        return web.json_response({"name": f"projects/{project}/messages/{message_id}"})

    def _check_auth(self, authorization: str, project: str) -> web.Response | None:
        scheme, _, token = authorization.partition(" ")
        grant = self._grants.get(token) if scheme.lower() == "bearer" else None
        if grant is None or grant.expires_at < time.time():
            return google_error(
                401,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials. Expected OAuth 2 access "
                "token, login cookie or other valid authentication credential.",
            )
        if grant.project_id != project:
            return google_error(
                403,
                "PERMISSION_DENIED",
                f"Permission 'cloudmessaging.messages.create' denied on resource "
                f"'//cloudresourcemanager.googleapis.com/projects/{project}' "
                "(or it may not exist).",
            )
        return None

    async def _keep(self, received: ReceivedPush) -> None:
        async with self._arrived:
            self._messages.append(received)
            self._arrived.notify_all()
