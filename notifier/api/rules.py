"""``/v1/rules``: read the rules in effect, change them, validate a draft, see the history.

A change is the whole document, as the rules file would hold it (YAML, or JSON, which
is YAML), sent as ``{"document": "<text>"}``: what is stored, shown and rolled back to
is exactly the text that was sent, comments included. It is validated as the file is
at start-up; a document that does not validate is a 422 whose one line names the rule
and the field. Who made a change is the ``X-Notifier-Actor`` header (the API has one
shared token, so it knows no one by name), ``api`` without it.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from enum import Enum, IntEnum
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Path
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field

from notifier.api.http import MAX_BODY_BYTES
from notifier.api.responses import error_responses
from notifier.core.rules import RuleSet
from notifier.errors import RulesError
from notifier.ingest.live_rules import LiveRules
from notifier.store.rule_sets import rule_set, rule_set_history

#: the largest version the column holds (a 32-bit integer)
MAX_VERSION = 2**31 - 1
#: who changes the rules when the request does not say
DEFAULT_ACTOR = "api"
Actor = Annotated[
    str,
    Header(
        alias="X-Notifier-Actor",
        min_length=1,
        max_length=100,
        pattern=r"^[!-~]([ -~]*[!-~])?$",
        description="who makes the change (a handle, not an email address), stored with "
        f"the version; `{DEFAULT_ACTOR}` when absent",
    ),
]


class RulesDocument(BaseModel):
    """A whole rules document, as the rules file would hold it."""

    model_config = ConfigDict(extra="forbid")

    #: bounded by the API's body limit (a 413 past it), not by a length of its own
    document: str = Field(
        min_length=1,
        description=f"YAML or JSON, `version: 1`; the body is at most {MAX_BODY_BYTES} bytes",
    )


class Refused(BaseModel):
    """The newest stored version, when this process refuses it (it does not validate)."""

    version: int
    error: str


class RulesInEffect(BaseModel):
    """The rules this process applies: version 0 is the rules file."""

    version: int
    author: str | None
    created_at: datetime | None
    document: str
    rules: list[dict[str, Any]]
    refused: Refused | None


class Version(BaseModel):
    """One stored version, without its document."""

    version: int
    author: str
    created_at: datetime


class StoredVersion(Version):
    """One stored version with its document (to roll back to: ``PUT`` it again)."""

    document: str


class History(BaseModel):
    """Every stored version, newest first (the rules file, version 0, is not stored)."""

    versions: list[Version]


class Validated(BaseModel):
    """A document that validates, and what it parses to."""

    valid: bool
    rules: list[dict[str, Any]]


def build_rules_router(live: LiveRules) -> APIRouter:
    """The rules routes; include it in the ``/v1`` router, which does the auth."""
    router = APIRouter(tags=["rules"])

    @router.get("/rules")
    async def rules_in_effect() -> RulesInEffect:
        """The rules in effect in this process, with their document and parsed form."""
        active, refused = live.active, live.refused
        return RulesInEffect(
            version=active.version,
            author=active.author,
            created_at=active.created_at,
            document=active.document,
            rules=rules_json(active.rules),
            refused=Refused(version=refused.version, error=refused.error) if refused else None,
        )

    @router.put("/rules", responses=error_responses(400, 413, s400="The body is not JSON"))
    async def change_rules(body: RulesDocument, actor: Actor = DEFAULT_ACTOR) -> Version:
        """Store the whole document as the next version, in effect on every replica
        within ``NOTIFIER_RULES_POLL_S``; a rollback is a PUT of an older document.
        A document that does not validate is a 422 whose ``detail[0].msg`` names the
        rule and the field (``loc``: ``["body", "document"]``)."""
        try:
            stored = await live.publish(body.document, actor)
        except RulesError as exc:
            raise _invalid(exc) from None
        return Version(version=stored.version, author=stored.author, created_at=stored.created_at)

    @router.post(
        "/rules:validate", responses=error_responses(400, 413, s400="The body is not JSON")
    )
    async def validate_rules(body: RulesDocument) -> Validated:
        """Validate a document as a PUT would (the same 422); nothing is stored."""
        try:
            parsed = live.check(body.document)
        except RulesError as exc:
            raise _invalid(exc) from None
        return Validated(valid=True, rules=rules_json(parsed))

    @router.get("/rules/versions")
    async def rule_versions() -> History:
        """Every stored version, newest first."""
        found = await rule_set_history(live.engine)
        return History(versions=[Version(**dataclasses.asdict(v)) for v in found])

    @router.get("/rules/versions/{version}", responses=error_responses(404))
    async def rule_version(
        version: Annotated[int, Path(ge=1, le=MAX_VERSION, description="a stored version")],
    ) -> StoredVersion:
        """One stored version with its document."""
        found = await rule_set(live.engine, version)
        if found is None:
            raise HTTPException(status_code=404, detail=f"rules version {version} not found")
        return StoredVersion(**dataclasses.asdict(found))

    return router


def _invalid(exc: RulesError) -> RequestValidationError:
    return RequestValidationError(
        [{"type": "value_error", "loc": ("body", "document"), "msg": str(exc)}]
    )


def rules_json(rules: RuleSet) -> list[dict[str, Any]]:
    """Each rule's fields as JSON, whatever fields a rule has."""
    return [
        {f.name: _plain(getattr(rule, f.name)) for f in dataclasses.fields(rule)}
        for rule in rules.rules
    ]


def _plain(value: Any) -> Any:
    if isinstance(value, IntEnum):  # a priority: its name, as a rules file says it
        return value.name.lower()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, frozenset | set):
        return sorted((_plain(v) for v in value), key=lambda v: (v is None, str(v)))
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return value
