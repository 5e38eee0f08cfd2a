"""Template rendering: named templates on disk → subject, text and HTML per channel."""

from notifier.rendering.templates import CHANNEL_PARTS, RenderedMessage, TemplateRenderer

__all__ = ["CHANNEL_PARTS", "RenderedMessage", "TemplateRenderer"]
