"""One reading of the template directory, and everything derived from it.

The renderer (``templates.py``) renders; this module finds and loads what it renders.
A :class:`Snapshot` lists the template names on disk, maps each requested locale to
the folder that serves it (``fr-CA`` → ``fr-CA``, ``fr``, then the default locale),
compiles a channel's parts with every layout they use, and hashes those sources into
the template's ``version``. Lookups, and their failures, are cached per (template,
channel, locale) for the snapshot's life; :func:`fingerprint_of` tells the renderer when
the files changed so that it takes a new snapshot instead of invalidating entries.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from jinja2 import Template, meta
from jinja2 import TemplateSyntaxError as JinjaSyntaxError

from notifier.contracts.channels import TemplateParts
from notifier.errors import TemplateError, TemplateNotFound
from notifier.rendering.sandbox import BoundedSandbox, RecordingLoader

#: (path, mtime in ns, size) of everything under the templates directory
Fingerprint = frozenset[tuple[str, int, int]]

#: how deep the change check looks: <name>/<locale>/<file> plus nested layout folders
_MAX_DEPTH = 6


@dataclass(frozen=True, slots=True)
class Compiled:
    """What render() needs for one (template, channel, requested locale)."""

    locale: str
    format_locale: str
    version: str
    parts: tuple[Template, ...]


@dataclass(frozen=True, slots=True)
class _Failure:
    """A cached lookup failure, re-raised as a fresh exception on every call."""

    error: type[TemplateError]
    message: str


class Snapshot:
    """One reading of the template directory and everything derived from it.

    ``check_at`` is the renderer's: when it next compares the directory with
    ``fingerprint``.
    """

    def __init__(
        self,
        root: Path,
        fingerprint: Fingerprint,
        parts: Mapping[str, TemplateParts],
        *,
        default_locale: str,
        check_at: float,
        max_sequence_len: int,
        max_cached: int,
    ) -> None:
        self.root = root
        self.fingerprint = fingerprint
        self._parts = parts
        self.check_at = check_at
        self._default_locale = default_locale
        self._loader = RecordingLoader(root)
        self._env = BoundedSandbox(self._loader, max_sequence_len=max_sequence_len)
        self._max_cached = max_cached
        self._locales: dict[str, dict[str, str]] = {}
        self._compiled: dict[tuple[str, str, str], Compiled | _Failure] = {}
        self.names = frozenset(
            entry.name
            for entry in os.scandir(root)
            if entry.is_dir() and not entry.name.startswith(("_", "."))
        )

    def has(self, template: str, channel: str) -> bool:
        """Whether the default locale has every file ``channel`` needs for ``template``."""
        if channel not in self._parts:
            return False
        folder = self._locale_folders(template).get(self._default_locale.lower())
        return folder is not None and all(
            (self.root / name).is_file() for name in self._part_names(template, folder, channel)
        )

    def compiled(self, template: str, channel: str, locale: str | None) -> Compiled:
        """The parts of ``template`` for ``channel`` in the best locale, compiled once;
        raises ``TemplateNotFound`` or ``TemplateError``, the same each time it is asked."""
        key = (template, channel, locale or "")
        found = self._compiled.get(key)
        if found is None:
            if len(self._compiled) >= self._max_cached:
                self._compiled.clear()
            try:
                found = self._compile(template, channel, locale)
            except TemplateError as exc:
                found = _Failure(type(exc), str(exc))
            except OSError as exc:
                found = _Failure(TemplateError, f"cannot read template {template!r}: {exc}")
            self._compiled[key] = found
        if isinstance(found, _Failure):
            raise found.error(found.message)
        return found

    def _compile(self, template: str, channel: str, locale: str | None) -> Compiled:
        folder = self._resolve_folder(template, channel, locale)
        names = self._part_names(template, folder, channel)
        try:
            parts = tuple(self._env.get_template(name) for name in names)
            used = self._load_with_references(names)
        except Exception as exc:
            raise TemplateError(describe_error(exc, self.root, names[0])) from exc
        digest = hashlib.sha256()
        for name in sorted(used):
            digest.update(f"{name}\0{self._loader.sources[name]}\0".encode())
        return Compiled(
            locale=folder,
            format_locale=_format_locale(locale, folder),
            version=digest.hexdigest()[:12],
            parts=parts,
        )

    def _resolve_folder(self, template: str, channel: str, locale: str | None) -> str:
        wanted = f"no {channel!r} template {template!r} for locale {locale!r}"
        if channel not in self._parts:
            raise TemplateNotFound(f"{wanted}: channels are {', '.join(self._parts)}")
        if template not in self.names:
            raise TemplateNotFound(f"{wanted}: there is no folder {template!r}")
        folders = self._locale_folders(template)
        tried = _candidates(locale, self._default_locale)
        for candidate in tried:
            folder = folders.get(candidate)
            if folder is None:
                continue
            names = self._part_names(template, folder, channel)
            present = [name for name in names if (self.root / name).is_file()]
            if len(present) == len(names):
                return folder
            if present:
                missing = ", ".join(sorted(set(names) - set(present)))
                raise TemplateError(f"template {template!r} is incomplete: missing {missing}")
        raise TemplateNotFound(f"{wanted}: looked in {', '.join(tried)}")

    def _locale_folders(self, template: str) -> dict[str, str]:
        """Lower-cased tag → folder name, so ``fr-ca`` finds ``fr-CA``."""
        folders = self._locales.get(template)
        if folders is None:
            path = self.root / template
            folders = (
                {e.name.lower(): e.name for e in os.scandir(path) if e.is_dir()}
                if template in self.names
                else {}
            )
            self._locales[template] = folders
        return folders

    def _part_names(self, template: str, folder: str, channel: str) -> tuple[str, ...]:
        files = self._parts[channel].files
        return tuple(f"{template}/{folder}/{channel}.{part}.j2" for part in files)

    def _load_with_references(self, names: tuple[str, ...]) -> set[str]:
        """Compile ``names`` and every layout they extend, include or import."""
        used: set[str] = set()
        pending = list(names)
        while pending:
            name = pending.pop()
            if name in used:
                continue
            self._env.get_template(name)
            used.add(name)
            ast = self._env.parse(self._loader.sources[name], name)
            pending.extend(ref for ref in meta.find_referenced_templates(ast) if ref)
        return used


def _candidates(locale: str | None, default_locale: str) -> list[str]:
    """``fr-CA`` → fr-ca, fr, then the default; lower-cased, without repeats."""
    tags: list[str] = []
    if locale:
        subtags = locale.replace("_", "-").lower().split("-")
        tags = ["-".join(subtags[:end]) for end in range(len(subtags), 0, -1)]
    tags.append(default_locale.lower())
    return list(dict.fromkeys(tags))


def _format_locale(requested: str | None, folder: str) -> str:
    """Format numbers and dates as ``fr-CA`` in the ``fr`` text, but not as ``de`` in English."""
    if requested and _language(requested) == _language(folder):
        return requested
    return folder


def _language(tag: str) -> str:
    return tag.replace("_", "-").split("-", maxsplit=1)[0].lower()


def fingerprint_of(root: Path) -> Fingerprint:
    """Path, mtime and size of every file and folder: about half a millisecond, and any
    edit, addition or removal changes it. Symlinks are followed (mounted volumes use
    them), to a bounded depth so that a symlink loop cannot hang the check."""
    return frozenset(_walk(str(root), depth=_MAX_DEPTH))


def _walk(folder: str, depth: int) -> Iterator[tuple[str, int, int]]:
    with os.scandir(folder) as entries:
        for entry in entries:
            try:
                stat = entry.stat()
            except OSError:
                continue
            yield entry.path, stat.st_mtime_ns, stat.st_size
            if depth > 0 and entry.is_dir():
                yield from _walk(entry.path, depth - 1)


def describe_error(exc: BaseException, root: Path, fallback: str | None) -> str:
    """``shipped/en/email.text.j2:5: UndefinedError: 'name' is undefined``."""
    if isinstance(exc, JinjaSyntaxError):
        where = f"{_relative(exc.filename, root) or exc.name or fallback}:{exc.lineno}"
        return f"{where}: syntax error: {exc.message}"
    where = _template_frame(exc.__traceback__, root) or str(fallback)
    detail = str(exc) if isinstance(exc, TemplateError) else f"{type(exc).__name__}: {exc}"
    return f"{where}: {detail}"


def _template_frame(tb: TracebackType | None, root: Path) -> str | None:
    """The innermost traceback frame that is a template line (Jinja rewrites them so)."""
    found = None
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.endswith(".j2"):
            found = f"{_relative(filename, root)}:{tb.tb_lineno}"
        tb = tb.tb_next
    return found


def _relative(filename: str | None, root: Path) -> str | None:
    if filename is None:
        return None
    try:
        return Path(filename).relative_to(root).as_posix()
    except ValueError:
        return filename
