"""Running the service (`notifier run`, and `notifier dev` around it).

This is the production path: it imports no dev fake and no benchmark, so an installed
service carries none of them in memory and none of their failures; `notifier dev`
wraps :func:`serve` from ``notifier.devtools.devserver``.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import socket
from collections.abc import Sequence

import uvicorn
from fastapi import APIRouter
from nats.errors import NoServersError
from sqlalchemy.exc import SQLAlchemyError

from notifier.api.feed_stream import FeedStreams
from notifier.app import build_service, create_app
from notifier.config import Settings
from notifier.errors import NotifierError, StartupError
from notifier.workers import OwnerLink

log = logging.getLogger("notifier")
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _after_http_stopped(signum: int, _frame: object) -> None:
    log.debug("%s while stopping; the graceful stop goes on", signal.Signals(signum).name)


async def _watch_owner(link: OwnerLink, server: uvicorn.Server) -> None:
    # A dispatch worker whose owner was killed outright (SIGKILL, OOM) stops as it would
    # on SIGTERM, rather than sending on without supervision.
    await link.gone()
    log.warning("the process that started this dispatch worker is gone; stopping")
    server.should_exit = True


class _Server(uvicorn.Server):
    """uvicorn waits for open responses before it stops; live feed streams never end on
    their own, so they are told to end first."""

    def __init__(self, config: uvicorn.Config, streams: FeedStreams | None) -> None:
        super().__init__(config)
        self._streams = streams

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self._streams is not None:
            self._streams.close()
        await super().shutdown(sockets)


async def serve(
    settings: Settings,
    *,
    extra_routers: Sequence[APIRouter] = (),
    supervisor_fd: int | None = None,
) -> None:
    """Serve HTTP and run the pipeline until SIGTERM/SIGINT, then shut down gracefully.

    ``supervisor_fd``: this is a dispatch worker of a ``notifier run --workers``
    process, linked to it by this descriptor (``notifier.workers``): it says when it
    is ready there, and stops when its owner is gone."""
    service = build_service(settings)
    app = create_app(service, extra_routers=extra_routers)
    config = uvicorn.Config(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_level=settings.log_level.lower(),
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=30,
    )
    server = _Server(config, getattr(app.state, "feed_streams", None))
    link = OwnerLink(supervisor_fd) if supervisor_fd is not None else None
    if link is not None:
        await link.open()
    try:
        await service.start()
    except (OSError, TimeoutError, NoServersError, SQLAlchemyError) as exc:
        await service.stop()
        raise StartupError(f"cannot start: {type(exc).__name__}: {exc}") from exc
    except NotifierError:
        await service.stop()
        raise
    # Everything built so far (modules, templates, clients) lives as long as the process:
    # moved out of the collector's sight, a full collection no longer walks it. Profiled
    # under ingest load: collections were a fifth of the main thread, each full one
    # ~100 ms; freezing halved their cost.
    gc.collect()
    gc.freeze()
    # uvicorn restores the previous SIGTERM/SIGINT handlers when it stops and re-raises
    # the signal it caught; with the default handlers that would end the process before
    # the pipeline stops. A no-op handler makes the re-raise harmless, so the graceful
    # stop below always runs.
    previous = {sig: signal.signal(sig, _after_http_stopped) for sig in STOP_SIGNALS}
    watch = None
    if link is not None:
        await link.ready()
        watch = asyncio.create_task(_watch_owner(link, server), name="owner-watch")
    try:
        await server.serve()
    finally:
        if watch is not None:
            watch.cancel()
        if link is not None:
            link.close()
        log.info("stopping: finishing the batch in hand and the sends in flight")
        await service.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not server.started:
        raise StartupError(f"cannot serve HTTP on {settings.http_host}:{settings.http_port}")
