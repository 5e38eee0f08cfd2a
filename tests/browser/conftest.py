"""Pages in a real browser: Debian's Chromium driven by Playwright, never a downloaded one.

``browser`` launches ``/usr/bin/chromium`` (or ``NOTIFIER_TEST_CHROMIUM``) headless, once
per session. ``page`` gives each test a fresh context; at teardown it saves a full-page
screenshot to ``test-artifacts/screenshots/<test>.png`` (pass or fail) and fails the
test if the page logged an error in the browser console or threw, unless the test
declared that error expected (``console.allow(regex)``).

Without Chromium (or Playwright) these tests are skipped with the reason, except under
``NOTIFIER_REQUIRE_BROWSER=1`` (set by ``.ci/run``), where that is a failure. Every test
here is marked ``browser`` (``pytest -m browser`` runs only these).

Playwright's async API, on pytest-asyncio's session loop: the browser outlives one
test's loop, and the sync API would hold the thread's event loop as "running" for the
whole session, which breaks every asyncio test after it. So each module here starts
with ``pytestmark = pytest.mark.asyncio(loop_scope="session")`` (collection says so
when one does not).

Wait with locators and ``expect(locator).to_have_…``, not ``page.wait_for_function("…")``:
the dev pages' ``Content-Security-Policy`` forbids ``eval``, which a string predicate needs.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import pytest_asyncio

from notifier.config import PACKAGE_DIR
from tests.browser.stack import DevStack, dev_stack

if TYPE_CHECKING:
    from playwright.async_api import Browser, ConsoleMessage, Page

HERE = Path(__file__).resolve().parent
SCREENSHOTS = PACKAGE_DIR.parent / "test-artifacts" / "screenshots"
#: what the issue asks for: no sandbox (containers, root), no GPU, no window
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu"]


def chromium_path() -> Path:
    """Where the browser is: ``NOTIFIER_TEST_CHROMIUM``, else Debian's package."""
    return Path(os.environ.get("NOTIFIER_TEST_CHROMIUM") or "/usr/bin/chromium")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE not in item.path.parents:
            continue
        item.add_marker(pytest.mark.browser)
        marker = item.get_closest_marker("asyncio")
        if marker is None or marker.kwargs.get("loop_scope") != "session":
            raise pytest.UsageError(
                f"{item.nodeid}: a browser test runs on the session loop, with the browser: "
                'start its module with pytestmark = pytest.mark.asyncio(loop_scope="session")'
            )


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("NOTIFIER_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason}; NOTIFIER_REQUIRE_BROWSER=1 requires the browser tests to run")
    pytest.skip(reason)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    """Chromium, headless, for the whole session (launched on first use)."""
    executable = chromium_path()
    if not os.access(executable, os.X_OK):
        _skip_or_fail(
            f"no Chromium at {executable} (apt-get install chromium, or set NOTIFIER_TEST_CHROMIUM)"
        )
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        _skip_or_fail("Python Playwright is not installed (pip install -e '.[dev]')")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=executable, args=LAUNCH_ARGS)
        yield launched
        await launched.close()


@dataclass
class ConsoleWatch:
    """Errors the page logged; a test may allow the ones it provokes on purpose."""

    seen: list[str] = field(default_factory=list)
    allowed: list[re.Pattern[str]] = field(default_factory=list)

    def allow(self, pattern: str) -> None:
        """Do not fail on console errors matching ``pattern`` (a regex, searched)."""
        self.allowed.append(re.compile(pattern))

    def record(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            where = message.location.get("url", "")
            self.seen.append(f"console.error: {message.text} ({where})")

    def unexpected(self) -> list[str]:
        return [s for s in self.seen if not any(p.search(s) for p in self.allowed)]


@pytest.fixture
def console() -> ConsoleWatch:
    return ConsoleWatch()


def _screenshot_name(node_name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", node_name).strip("_") + ".png"


@pytest_asyncio.fixture(loop_scope="session")
async def page(
    browser: Browser, console: ConsoleWatch, request: pytest.FixtureRequest
) -> AsyncIterator[Page]:
    """A fresh page; screenshot and console check at teardown."""
    context = await browser.new_context(viewport={"width": 1100, "height": 900})
    opened = await context.new_page()
    opened.on("console", console.record)
    opened.on("pageerror", lambda error: console.seen.append(f"uncaught: {error}"))
    try:
        yield opened
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shot = SCREENSHOTS / _screenshot_name(request.node.name)
        await opened.screenshot(path=shot, full_page=True)
    finally:
        await context.close()
    errors = console.unexpected()
    if errors:
        pytest.fail("the page logged errors in the browser console:\n" + "\n".join(errors))


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def dev(
    browser: Browser, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[DevStack]:
    """``notifier dev`` for the tests of one module (:mod:`tests.browser.stack`); after
    ``browser``, so that a machine without Chromium skips before starting it."""
    async with dev_stack(tmp_path_factory.mktemp("dev")) as stack:
        yield stack
