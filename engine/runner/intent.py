"""The event's intent, when a workflow asks for it: the built-in classifier in-process, or the
tenant's AI provider (asked before the transaction, never with the database locked)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from engine.errors import EngineError
from engine.runner.context import INTENT_MARKERS
from engine.tenant_settings import TenantSettings, settings_of
from engine.workflow.definitions import MESSAGE_TRIGGER_CHANNELS, Event

logger = logging.getLogger(__name__)


def fill_intent(classifier: Callable[[str], Any] | None, ev: Event, candidates: list) -> None:
    """Classify message text when a matching workflow looks at the intent and none was given.

    The built-in classifier runs in-process; a tenant whose AI settings say
    ``"classify": true`` had its text classified by its provider before the transaction
    (see :func:`provider_intent`), so no HTTP call happens while the database is locked.
    """
    if ev.intent or not ev.content or classifier is None:
        return
    if any(
        w.trigger_type == "intent_detected" or any(m in w.definition_text for m in INTENT_MARKERS) for w in candidates
    ):
        result = classifier(ev.content)
        ev.intent, ev.intent_confidence = result.intent, result.confidence


def wants_provider(ev: Event, settings: TenantSettings | dict[str, Any] | None) -> bool:
    """A message without an intent, for a tenant whose AI provider classifies text."""
    if ev.intent or not ev.content or ev.trigger_type not in MESSAGE_TRIGGER_CHANNELS:
        return False
    return settings_of(settings).ai.classify


def provider_intent(ev: Event, settings: TenantSettings | dict[str, Any]) -> None:
    """Ask the tenant's AI provider for the intent (called with no transaction open)."""
    from engine.ai import provider_for_tenant

    try:
        result = provider_for_tenant({"settings": settings}).classify(ev.content or "")
    except EngineError as exc:
        logger.warning("AI provider could not classify (%s); using the built-in classifier", exc.message)
        return
    ev.intent, ev.intent_confidence = result.intent, result.confidence
