"""Server-rendered pages for shoppers (the order-status page), from the package's own
``templates/_pages``: the same sandbox as messages, HTML autoescaped.

The pages are part of the service, not of a shop's template set, so they are read
from the installed package whatever ``NOTIFIER_TEMPLATES_DIR`` says. Every word a
page shows is in ``_pages/words.<lang>.j2``; the markup is written once.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jinja2 import TemplateError as JinjaError

from notifier.errors import TemplateError
from notifier.rendering.sandbox import BoundedSandbox, RecordingLoader

#: the package's templates: ``_pages`` and the ``_layouts`` they share with messages
PACKAGE_TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


class PageRenderer:
    """Renders ``_pages/<name>.html.j2`` with plain data."""

    def __init__(self, root: Path = PACKAGE_TEMPLATES) -> None:
        self._env = BoundedSandbox(RecordingLoader(root), max_sequence_len=100_000)

    def render(self, name: str, context: Mapping[str, Any]) -> str:
        """The page as HTML, or ``TemplateError`` (a bug in the page, not in the data)."""
        try:
            return self._env.get_template(f"_pages/{name}.html.j2").render(context)
        except JinjaError as exc:
            raise TemplateError(f"page {name}: {exc}") from exc
