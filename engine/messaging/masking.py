"""Contact masking for analysts: ``+49 151 ****678``, ``j***@example.com``.

(engine/lifecycle/privacy.py is a member's data on request.)

Analysts see contacts masked unless an owner turns on "analysts see contact details"
(tenant setting ``analystsSeeContacts``). Owners and editors always see them. Masking is
applied to whatever an analyst's screen or export shows (executions, steps, timelines, CSV):
every phone number or e-mail address inside the text or data is replaced.
"""

from __future__ import annotations

import re
from typing import Any

from engine.security.auth import Actor
from engine.store.models import Role, Tenant
from engine.tenant_settings import settings_of
from engine.uow import UnitOfWork

__all__ = ["SETTING", "mask_phone", "mask_email", "mask_text", "mask_data", "sees_contacts", "masker_for"]

SETTING = "analystsSeeContacts"
_EMAIL = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+\.[A-Za-z]{2,})")
#: Starts with +, 00 or 0 (international or national), so dates and prices are left alone.
_PHONE = re.compile(r"(?<![\w+-])((?:\+|0)\d[\d \-/().]{5,}\d)(?![\w])")


def mask_email(value: str) -> str:
    """``jana@example.com`` -> ``j***@example.com``."""
    return _EMAIL.sub(lambda m: f"{m.group(1)}***@{m.group(2)}", value)


def mask_phone(value: str) -> str:
    """``+4915112345678`` -> ``+49 151 ****678``; other numbers keep their first 4 and last 3 digits."""
    digits = re.sub(r"\D", "", value)
    if len(digits) < 7:
        return value
    if value.strip().startswith("+49") and len(digits) >= 11:
        return f"+49 {digits[2:5]} ****{digits[-3:]}"
    prefix = "+" if value.strip().startswith("+") else ""
    return f"{prefix}{digits[:4]} ****{digits[-3:]}"


def mask_text(value: str) -> str:
    """Every e-mail address and phone number inside a text, masked."""
    return _PHONE.sub(lambda m: mask_phone(m.group(1)), mask_email(value))


def mask_data(value: Any) -> Any:
    """``mask_text`` applied to every string inside dicts and lists (keys stay)."""
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        return {k: mask_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_data(v) for v in value]
    return value


def sees_contacts(*, uow: UnitOfWork, actor: Actor) -> bool:
    """Owners and editors do; analysts only when the owner turned the setting on."""
    if actor.role != Role.ANALYST:
        return True
    tenant = uow.session.get(Tenant, actor.tenant_id)
    return bool(tenant and settings_of(tenant.settings).analysts_see_contacts)


def masker_for(*, uow: UnitOfWork, actor: Actor):
    """``mask_data`` when the actor must not see contacts, else the identity."""
    return (lambda v: v) if sees_contacts(uow=uow, actor=actor) else mask_data
