"""What the pipeline's messages are built with, besides templates: the rules (from the
file, or a document sent to the rules API, validated alike) and the signed links
(order-status page, unsubscribe, preferences). Part of the composition root."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from notifier.channels.base import ChannelPlugin
from notifier.config import Settings
from notifier.core.links import LinkMaker, TrackLinks, no_links
from notifier.core.optout_links import OptOutLinks
from notifier.core.rule_kinds import Audience
from notifier.core.rules import RuleSet, parse_rules
from notifier.errors import RulesError
from notifier.ingest.live_rules import ActiveRules, RulesParser
from notifier.rendering.templates import TemplateRenderer

log = logging.getLogger("notifier")


def rules_parser(
    settings: Settings, renderer: TemplateRenderer, plugins: Iterable[ChannelPlugin]
) -> RulesParser:
    """How a rules document is validated, against the channels and the templates on disk:
    the rules file at start-up and every document sent to the rules API alike. A rule
    for the operations team needs their address (``NOTIFIER_OPS_EMAIL``)."""
    plugins = tuple(plugins)
    customers = [p.name for p in plugins if p.spec.for_customers]
    everyone = [p.name for p in plugins if p.spec.reaches_everyone]
    ops_channels = [p.name for p in plugins if p.alerts_to is not None]

    def parse(document: str, origin: str) -> RuleSet:
        rules = parse_rules(
            document,
            origin,
            template_exists=renderer.has,
            channels=customers,
            reaching_everyone=everyone,
            ops_channels=ops_channels,
        )
        ops = next((r for r in rules.rules if r.audience is Audience.OPS), None)
        if ops is not None and settings.ops_email is None:
            raise RulesError(
                f"{origin}: rule {ops.name}: audience ops needs NOTIFIER_OPS_EMAIL, "
                "the address it is sent to"
            )
        return rules

    return parse


def file_rules(settings: Settings, parse: RulesParser) -> ActiveRules:
    """The rules file, validated: version 0, in effect while no version is stored."""
    path = settings.rules_file
    try:
        document = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RulesError(f"{path}: cannot read rules file: {exc.strerror}") from exc
    return ActiveRules(0, document, parse(document, str(path)))


def track_links(settings: Settings) -> LinkMaker:
    """Signed links to the order-status page, when it is configured; else none."""
    if settings.public_base_url is None or settings.track_secret is None:
        if settings.public_base_url is not None or settings.track_secret is not None:
            log.warning(
                "the order-status page needs both NOTIFIER_PUBLIC_BASE_URL and "
                "NOTIFIER_TRACK_SECRET: messages carry no tracking-page link"
            )
        return no_links
    return TrackLinks(
        settings.public_base_url,
        settings.track_secret.get_secret_value(),
        settings.track_link_ttl_days * 86_400,
    )


def optout_links(settings: Settings) -> OptOutLinks | None:
    """Signed unsubscribe and preferences links (signed with the tracking secret, under
    purposes of their own), when the public base URL and that secret are set."""
    if settings.public_base_url is None or settings.track_secret is None:
        return None
    return OptOutLinks(
        settings.public_base_url,
        settings.track_secret.get_secret_value(),
        settings.track_link_ttl_days * 86_400,
    )
