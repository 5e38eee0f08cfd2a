"""firebase-admin set up for the push channel: credential, app, HTTP session, threads.

The push channel (``push.py``) says what a push message is and how a failure maps to a
delivery error; this module holds what it takes to make firebase-admin and google-auth
send as we need, which overrides library defaults and touches two private attributes.
Each choice was read in the installed source (firebase-admin 7.7, google-auth 2.62 and
2.63, urllib3 2) or measured; see FACTS.md.

Threads: sends run on a bounded pool (``push_concurrency`` threads, one per send the
dispatcher keeps in flight); why threads and not ``send_each_async`` is told in
``push.py``. ``FcmApp.close`` shuts the pool down.

Retries: the library retries 500 and 503 itself (urllib3 ``Retry(status=4,
backoff_factor=0.5)``: 5 requests over 7 s, measured) and, as that ``Retry`` honours
``Retry-After``, sleeps through a 429's or 503's ``Retry-After`` up to 4 times in the
sending thread (``Retry-After: 2`` took 8 s and 5 requests). We mount an adapter without
retries on FCM's URL: a send fails fast with FCM's answer and the dispatcher's backoff,
which honours ``retry_after``, decides. The app option ``httpTimeout`` =
``push_timeout_s`` bounds each FCM and token request (the library default is 120 s).

The environment, read once: ``requests`` (``trust_env``, its default) reads the proxy
variables and looks for ``~/.netrc`` again on every request; profiled in the benchmark
that was a third of the sending threads' time on another machine (docs/performance.md).
The FCM URL never changes, so :func:`pin_environment` resolves at start what those
look-ups would find for it (``HTTPS_PROXY``/``HTTP_PROXY``/``ALL_PROXY`` with
``NO_PROXY``, and ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE``), keeps it on the session
and turns the per-request look-ups off. A ``.netrc`` entry is deliberately not carried
over: ``requests`` would send it as Basic auth in place of the OAuth bearer token, so
FCM would refuse every send. Token requests use google-auth's own session and still
read the environment each time (one per hour).

Regional access boundary: after a token refresh google-auth 2.62 starts a thread that
asks iamcredentials.googleapis.com where the service account may be used, only to add
an ``x-allowed-locations`` header to later requests; requests go without it until that
answers and whenever it fails. 2.62 has no setting to turn it off
(``GOOGLE_AUTH_TRUST_BOUNDARY_ENABLED`` is documented as having no effect); 2.63 does
it only when ``GOOGLE_SDK_EXPERIMENTAL_PYTHON_REGIONAL_ACCESS_BOUNDARY_LOOKUP_ENABLED``
is true, which an operator's environment may set. Both ask the hook
``_is_regional_access_boundary_lookup_required``, which the library's own credential
classes override. :class:`FcmServiceAccount` overrides it too, so sending needs only
the token endpoint and FCM, whatever the version and the environment. That is why the
app gets this credential and not ``credentials.Certificate``, which builds a plain one
(and asks for six scopes).
"""

from __future__ import annotations

import functools
import json
import os
import secrets
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import firebase_admin  # type: ignore[import-untyped]
import requests
from firebase_admin import messaging
from google.auth.transport.requests import Request as AuthRequest
from google.oauth2 import service_account

from notifier.errors import ConfigError

#: the only scope sending needs (firebase's ``Certificate`` asks for six, cloud-platform too)
FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"


class FcmServiceAccount(service_account.Credentials):
    """A service account that never looks up its regional access boundary (module docstring)."""

    def _is_regional_access_boundary_lookup_required(self) -> bool:
        return False


@dataclass(frozen=True, slots=True)
class FcmApp:
    """One channel's firebase app, its sending threads and HTTP session; close() releases
    them."""

    app: Any
    pool: ThreadPoolExecutor
    session: requests.Session
    credential: FcmServiceAccount
    timeout_s: float

    def fetch_token(self) -> None:
        """Blocking: fetch an access token now, so the first burst of sends does not
        fetch one per thread. Raises google-auth's error if the token endpoint refuses."""
        with requests.Session() as session:
            request = functools.partial(AuthRequest(session), timeout=self.timeout_s)
            self.credential.refresh(request)  # type: ignore[no-untyped-call]

    def close(self) -> None:
        """Blocking: waits for in-flight sends. ``delete_app`` closes the app's unused
        httpx client with ``asyncio.run``, so this must run off the event loop."""
        self.pool.shutdown(wait=True)
        firebase_admin.delete_app(self.app)
        self.session.close()


def open_app(
    credentials_file: Path, *, api_base: str, timeout_s: float, max_workers: int
) -> FcmApp:
    """Load the credentials and create a named firebase app that sends to ``api_base``.

    Raises :class:`~notifier.errors.ConfigError` for a credentials file that cannot be
    used; contacts no server (see :meth:`FcmApp.fetch_token`).
    """
    credential = load_credential(credentials_file)
    # Later tokens are fetched by one background thread shortly before the current
    # one expires, instead of by every sending thread once it has.
    credential.with_non_blocking_refresh()  # type: ignore[no-untyped-call]
    app = firebase_admin.initialize_app(
        credential,
        {"projectId": credential.project_id, "httpTimeout": timeout_s},
        name=f"notifier-push-{secrets.token_hex(4)}",
    )
    session = messaging_session(app, api_base, max_workers)
    pool = ThreadPoolExecutor(max_workers, thread_name_prefix="fcm-send")
    return FcmApp(app=app, pool=pool, session=session, credential=credential, timeout_s=timeout_s)


def load_credential(path: Path) -> FcmServiceAccount:
    """The service account in ``path``, scoped to FCM; a clear ConfigError otherwise."""
    where = f"NOTIFIER_FCM_CREDENTIALS_FILE ({path})"
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{where} cannot be read as JSON: {exc}") from None
    if not isinstance(info, dict) or info.get("type") != "service_account":
        raise ConfigError(f"{where} is not a service-account key file")
    try:
        credential = FcmServiceAccount.from_service_account_info(  # type: ignore[no-untyped-call]
            info, scopes=[FCM_SCOPE]
        )
    except ValueError as exc:
        raise ConfigError(f"{where} is not usable: {exc}") from None
    if not credential.project_id:
        raise ConfigError(f"{where} has no project_id")
    assert isinstance(credential, FcmServiceAccount)
    return credential


def messaging_session(app: Any, api_base: str, pool_size: int) -> requests.Session:
    """Create the app's messaging service against ``api_base``, with library retries off.

    ``FCM_URL`` is read once, when the service is created, so it is restored at once
    and no other app is affected. Both attributes touched are private; the tests send
    to a fake that counts requests, so a library change that undoes this shows there.
    """
    service_class = messaging._MessagingService
    default_url = service_class.FCM_URL
    service_class.FCM_URL = api_base + "/v1/projects/{0}/messages:send"
    try:
        service = messaging._get_messaging_service(app)
    finally:
        service_class.FCM_URL = default_url
    session: requests.Session = service._client.session
    adapter = requests.adapters.HTTPAdapter(
        pool_connections=1, pool_maxsize=pool_size, max_retries=0
    )
    # Longest prefix wins, over the library's "https://" and "https://fcm.googleapis.com".
    session.mount(api_base + "/", adapter)
    pin_environment(session, api_base + "/")
    return session


def pin_environment(session: requests.Session, url: str) -> None:
    """Resolve for ``url`` now what ``requests`` would read from the environment on each
    request (module docstring), keep it on ``session``, and stop the per-request reads.

    Only for a session that sends to ``url`` alone: the proxy kept is the one for it.
    """
    # the same look-ups as Session.merge_environment_settings, made once
    session.proxies.update(requests.utils.get_environ_proxies(url))
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle and session.verify is True:
        session.verify = bundle
    session.trust_env = False
