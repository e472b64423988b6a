"""AI helpers: offline intent classifier, workout plan generator, reply providers (ask_ai).

:func:`provider_for_tenant` is the one place that selects a studio's reply provider; the
``ask_ai`` action, the runner's message classification and the settings page's check all
ask it. It imports lazily so that ``import engine.ai`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

    from engine.ai.providers import OfflineProvider, OpenAICompatibleProvider


def provider_for_tenant(
    tenant: dict[str, Any], client: httpx.Client | None = None
) -> OfflineProvider | OpenAICompatibleProvider:
    """The tenant's AI provider (settings ``ai``) over its knowledge base (settings ``knowledgeBase``).

    ``tenant`` needs ``settings`` (and ``name`` for the empty knowledge base's studio name).
    An API key saved in the settings page is stored encrypted (``apiKeyEncrypted``) and
    decrypted here, only for the provider. Bad settings raise ``InvalidInput`` naming the field.
    """
    from engine.ai.knowledge import KnowledgeBase
    from engine.ai.providers import provider_from_settings
    from engine.tenant_settings import settings_of

    settings = settings_of(tenant.get("settings"))
    # No knowledge base yet: an empty one, so the offline provider hands off politely
    # instead of quoting someone else's prices.
    stored_kb = settings.knowledge_base
    kb = KnowledgeBase.model_validate(
        stored_kb.model_dump(mode="json", by_alias=True, exclude_none=True)
        if stored_kb
        else {"studioName": tenant.get("name") or "unser Studio"}
    )
    ai = settings.ai.model_dump(mode="json", by_alias=True, exclude_none=True)
    if settings.ai.api_key_encrypted:
        from engine.security.secrets import decrypt

        ai["apiKey"] = decrypt(settings.ai.api_key_encrypted)
    elif settings.ai.api_key:  # plain text from before encryption
        ai["apiKey"] = settings.ai.api_key.get_secret_value()
    return provider_from_settings(ai, kb, client=client)
