"""The registered channels, loaded: each name in ``notifier.contracts.channels`` is the
module ``notifier/channels/<name>.py``, and its ``PLUGIN`` is the channel.

Loaded by name so that registering a channel stays one line in one place, the list the
event contract's opt-in is made from; a name without its module, or a module whose
``PLUGIN`` is missing or names another channel, is a start-up error that says so.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable

from notifier.channels.base import ChannelPlugin
from notifier.contracts.channels import ChannelSpec, TemplateParts, channel_names
from notifier.errors import ConfigError


def load(name: str) -> ChannelPlugin:
    """The ``PLUGIN`` of ``notifier/channels/<name>.py``."""
    try:
        module = importlib.import_module(f"{__package__}.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__package__}.{name}":
            raise  # the module exists; something it imports does not
        raise ConfigError(
            f"channel {name!r} is registered but notifier/channels/{name}.py does not exist"
        ) from None
    plugin = getattr(module, "PLUGIN", None)
    if not isinstance(plugin, ChannelPlugin):
        raise ConfigError(f"notifier/channels/{name}.py declares no ChannelPlugin named PLUGIN")
    if plugin.name != name:
        raise ConfigError(f"notifier/channels/{name}.py declares the channel {plugin.name!r}")
    return plugin


def registered() -> tuple[ChannelPlugin, ...]:
    """Every registered channel, customer channels first, in registration order."""
    return tuple(load(name) for name in channel_names())


def specs(plugins: Iterable[ChannelPlugin]) -> dict[str, ChannelSpec]:
    """What the pure stages are told about ``plugins``, by channel name."""
    return {plugin.name: plugin.spec for plugin in plugins}


def template_parts(plugins: Iterable[ChannelPlugin]) -> dict[str, TemplateParts]:
    """The template files of each of ``plugins`` whose messages are rendered from templates."""
    return {plugin.name: plugin.spec.parts for plugin in plugins if plugin.spec.parts}
