"""Render a named template for one channel and locale, from ``templates/`` on disk.

Layout: ``<templates_dir>/<name>/<locale>/<channel>.<part>.j2``; folders starting
with ``_`` (``_layouts``) hold shared layouts and macros and are not templates. Which
parts a channel has is the channel's to say (its ``TemplateParts``), handed in.

The pipeline renders about ten thousand messages a second, so everything that
depends only on (template, channel, locale) — which locale folder wins, the
compiled parts, the version hash — is worked out once per *snapshot* and kept.
A snapshot is one consistent reading of the directory; every couple of seconds
the renderer compares the tree's modification times and, when marketing has
edited something, starts a fresh snapshot. ``version`` is hashed from the very
source text Jinja compiled, so it always names what the customer was sent.

This module renders, and decides when to take a new snapshot; finding, loading and
compiling the files of one snapshot is ``snapshot.py``'s.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from jinja2 import Template

from notifier.contracts.channels import TemplateParts
from notifier.errors import ConfigError, TemplateError
from notifier.rendering.snapshot import Fingerprint, Snapshot, describe_error, fingerprint_of


@dataclass(frozen=True, slots=True)
class RenderedMessage:
    """One channel's rendering of a template; ``version`` identifies the sources used."""

    template: str
    channel: str
    version: str
    locale: str
    subject: str | None
    text: str
    html: str | None


class TemplateRenderer:
    """Sandboxed, cached rendering of the template set in ``templates_dir``."""

    #: how often render() looks for edited template files, in seconds
    reload_check_interval_s: ClassVar[float] = 2.0
    #: distinct (template, channel, locale) lookups kept before the cache starts over
    max_cached_lookups: ClassVar[int] = 10_000

    def __init__(
        self,
        templates_dir: Path,
        parts: Mapping[str, TemplateParts],
        *,
        default_locale: str = "en",
        max_output_chars: int = 100_000,
    ) -> None:
        if not templates_dir.is_dir():
            raise ConfigError(f"templates directory {str(templates_dir)!r} does not exist")
        if max_output_chars < 1:
            raise ConfigError("max_output_chars must be positive")
        self._root = templates_dir.resolve()
        #: channel → the template files a message on it is rendered from
        self._parts = dict(parts)
        self._default_locale = default_locale
        self._max_output_chars = max_output_chars
        self._snapshot = self._new_snapshot()

    def names(self) -> frozenset[str]:
        """Template names on disk (folders not starting with ``_``)."""
        return self._current().names

    def has(self, template: str, channel: str) -> bool:
        """Whether the default locale has every file ``channel`` needs for ``template``."""
        return self._current().has(template, channel)

    def render(
        self, template: str, channel: str, locale: str | None, context: Mapping[str, Any]
    ) -> RenderedMessage:
        """Render every part of ``template`` for ``channel`` in the best matching locale.

        Raises ``TemplateNotFound`` when no candidate locale has the template for
        that channel, and ``TemplateError`` (naming file and line) for anything
        that goes wrong while compiling or rendering.
        """
        compiled = self._current().compiled(template, channel, locale)
        out = iter(
            [self._render_part(part, context, compiled.format_locale) for part in compiled.parts]
        )
        parts = self._parts[channel]  # compiled() refuses a channel without parts
        subject = _one_line(next(out)) if parts.subject is not None else None
        text = next(out)
        html = next(out) if parts.html is not None else None
        return RenderedMessage(
            template, channel, compiled.version, compiled.locale, subject, text, html
        )

    def reload(self) -> None:
        """Forget every compiled template and lookup; the next render reads the disk again."""
        self._snapshot = self._new_snapshot()

    def _current(self) -> Snapshot:
        """The snapshot to use, replaced when the files changed since it was taken.

        If the directory cannot be read at the moment (a deploy swapping it out),
        keep serving what was already read and look again at the next check.
        """
        snapshot = self._snapshot
        if time.monotonic() >= snapshot.check_at:
            try:
                fingerprint = fingerprint_of(self._root)
                if fingerprint != snapshot.fingerprint:
                    self._snapshot = snapshot = self._new_snapshot(fingerprint)
            except OSError:
                pass
            snapshot.check_at = time.monotonic() + self.reload_check_interval_s
        return snapshot

    def _new_snapshot(self, fingerprint: Fingerprint | None = None) -> Snapshot:
        return Snapshot(
            self._root,
            fingerprint if fingerprint is not None else fingerprint_of(self._root),
            self._parts,
            default_locale=self._default_locale,
            check_at=time.monotonic() + self.reload_check_interval_s,
            max_sequence_len=self._max_output_chars,
            max_cached=self.max_cached_lookups,
        )

    def _render_part(self, part: Template, context: Mapping[str, Any], locale: str) -> str:
        limit = self._max_output_chars
        chunks: list[str] = []
        size = 0
        try:
            for chunk in part.generate(context, locale=locale):
                size += len(chunk)
                if size > limit:
                    break
                chunks.append(chunk)
        except Exception as exc:
            raise TemplateError(describe_error(exc, self._root, part.name)) from exc
        if size > limit:
            raise TemplateError(f"{part.name}: output is longer than {limit:,} characters")
        return "".join(chunks).strip()


def _one_line(text: str) -> str:
    return " ".join(text.split())
