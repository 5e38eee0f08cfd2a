"""Template rendering: named templates on disk → subject, text and HTML per channel."""

from notifier.rendering.templates import RenderedMessage, TemplateRenderer

__all__ = ["RenderedMessage", "TemplateRenderer"]
