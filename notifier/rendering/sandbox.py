"""The Jinja environment templates run in: sandboxed, strict, and bounded.

Templates are edited by marketing, not by engineers, so a template must not be
able to reach Python internals (the sandbox), silently print nothing for a
misspelt variable (``StrictUndefined``), or take the pipeline down by building a
gigabyte string (the intercepted ``*`` and ``**`` below). Autoescaping is on for
the HTML parts only: escaping a plain-text email or an SMS would show customers
``&amp;``.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from notifier.rendering import filters

#: largest integer a template may compute with ``*`` or ``**``, in bits (~1,200 digits)
MAX_INT_BITS = 4096

#: attribute checks remembered per environment; templates name a bounded set of attributes
_MAX_CACHED_ATTRIBUTES = 4096

_Sequence = (str, bytes, list, tuple)

#: names ``getattr(some_dict, name)`` finds: a template's ``d.get`` is the method, and
#: ``d.anything_else`` is the item (``d["anything_else"]``), as Jinja decides it
_DICT_ATTRIBUTES = frozenset(dir(dict))


def autoescape_html_parts(name: str | None) -> bool:
    """Escape only ``*.html.j2`` files (email bodies and the layouts they extend)."""
    return name is not None and name.endswith("html.j2")


class RecordingLoader(FileSystemLoader):
    """A file loader that remembers the exact source it handed to Jinja.

    The renderer hashes these strings for ``RenderedMessage.version``, so the
    version always describes the text that was compiled, even if a file changes
    on disk a moment later.
    """

    def __init__(self, root: Path) -> None:
        super().__init__(str(root), encoding="utf-8", followlinks=False)
        self.sources: dict[str, str] = {}

    def get_source(self, environment: Any, template: str) -> tuple[str, str, Callable[[], bool]]:
        source, filename, uptodate = super().get_source(environment, template)
        self.sources[template] = source
        return source, filename, uptodate


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """A sandbox that refuses repetition and powers whose result would be huge.

    The immutable variant also forbids ``list.append`` and friends, which leaves
    templates no way to grow a value across loop iterations except ``namespace``.
    """

    intercepted_binops = frozenset({"*", "**"})

    def __init__(self, loader: RecordingLoader, *, max_sequence_len: int) -> None:
        super().__init__(
            loader=loader,
            undefined=StrictUndefined,
            autoescape=autoescape_html_parts,
            auto_reload=False,
            cache_size=-1,
            keep_trailing_newline=False,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.max_sequence_len = max_sequence_len
        self.filters.update(filters.ALL)
        self._safe_attributes: dict[tuple[type, str], bool] = {}

    def make_globals(self, d: MutableMapping[str, Any] | None) -> MutableMapping[str, Any]:
        """A plain dict instead of Jinja's ``ChainMap``: every render copies the globals
        into its context, and a ``ChainMap`` is copied key by key in Python, where a dict
        is copied in C (with the ``getattr`` below, a typical render took a third less).

        Nothing changes the environment's globals once templates are loaded (a new
        snapshot builds a new environment), so the live view is not needed.
        """
        return {**self.globals, **(d or {})}

    def getattr(self, obj: Any, attribute: str) -> Any:
        """``order.id`` on the plain dicts of the template context, without Jinja's
        ``getattr`` attempt and its ``AttributeError`` first: the same answer, cheaper."""
        if type(obj) is dict and attribute not in _DICT_ATTRIBUTES:
            try:
                return obj[attribute]
            except KeyError:
                return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        """Jinja's answer, cached per (type, attribute name).

        Jinja decides from the attribute name and ``isinstance`` checks only, and
        asks on every ``.get(...)`` in every render: the cache takes about a
        quarter off the time of a typical email.
        """
        key = (type(obj), attr)
        safe = self._safe_attributes.get(key)
        if safe is None:
            safe = super().is_safe_attribute(obj, attr, value)
            if len(self._safe_attributes) < _MAX_CACHED_ATTRIBUTES:
                self._safe_attributes[key] = safe
        return safe

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        """Check the size of the result before Python allocates it."""
        if operator == "*":
            self._check_product(left, right)
        elif operator == "**":
            self._check_power(left, right)
        return super().call_binop(context, operator, left, right)

    def _check_product(self, left: Any, right: Any) -> None:
        if isinstance(left, _Sequence) and _is_int(right):
            self._check_repeat(len(left), right)
        elif isinstance(right, _Sequence) and _is_int(left):
            self._check_repeat(len(right), left)
        elif (
            _is_int(left)
            and _is_int(right)
            and abs(left).bit_length() + abs(right).bit_length() > MAX_INT_BITS
        ):
            raise SecurityError(f"integer product exceeds {MAX_INT_BITS} bits")

    def _check_repeat(self, length: int, times: int) -> None:
        if length * times > self.max_sequence_len:
            raise SecurityError(
                f"repetition would build {length * times:,} items;"
                f" the limit is {self.max_sequence_len:,}"
            )

    @staticmethod
    def _check_power(base: Any, exponent: Any) -> None:
        if (
            _is_int(base)
            and _is_int(exponent)
            and abs(base) > 1
            and exponent > 0
            and (abs(base).bit_length() - 1) * exponent > MAX_INT_BITS
        ):
            raise SecurityError(f"power {base} ** {exponent} exceeds {MAX_INT_BITS} bits")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
