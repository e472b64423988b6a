"""Actions that reach leads, the AI and other systems: create_lead, update_lead, ask_ai,
generate_workout_plan, call_webhook."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session, select

from engine.actions import StepContext, StepResult, register
from engine.ai import provider_for_tenant
from engine.errors import InvalidInput, NotFound
from engine.store.models import Lead, LeadStatus
from engine.tenant_settings import settings_of

LEAD_FIELDS = ("name", "email", "phone", "source", "status", "notes")


def lead_to_dict(lead: Lead) -> dict[str, Any]:
    return {
        "id": lead.id,
        "name": lead.name,
        "email": lead.email,
        "phone": lead.phone,
        "source": lead.source,
        "status": lead.status,
        "notes": lead.notes,
        "customFields": lead.custom_fields or {},
    }


def _normalized_contact(email: str | None, phone: str | None) -> tuple[str | None, str | None]:
    from engine.channels.phones import normalize_email, normalize_phone

    return (normalize_email(email) if email else None, normalize_phone(phone) if phone else None)


def find_lead_by_contact(s: Session, tenant_id: str, email: str | None, phone: str | None) -> Lead | None:
    for column, value in ((Lead.email, email), (Lead.phone, phone)):
        if value:
            lead = s.exec(select(Lead).where(Lead.tenant_id == tenant_id, column == value)).first()
            if lead:
                return lead
    return None


def _apply_updates(lead: Lead, updates: dict[str, Any], now: datetime) -> list[str]:
    unknown = sorted(set(updates) - set(LEAD_FIELDS) - {"customFields"})
    if unknown:
        raise InvalidInput(
            f"unknown lead field(s) {', '.join(unknown)}; known: {', '.join(LEAD_FIELDS)}, customFields",
            field=f"updates.{unknown[0]}",
        )
    if "status" in updates and updates["status"] not in {s.value for s in LeadStatus}:
        raise InvalidInput(
            f"status {updates['status']!r} is not one of {', '.join(s.value for s in LeadStatus)}",
            field="updates.status",
        )
    email, phone = _normalized_contact(updates.get("email"), updates.get("phone"))
    changed = []
    for key in LEAD_FIELDS:
        if key in updates and updates[key] not in (None, ""):
            value = {"email": email, "phone": phone}.get(key, updates[key])
            if getattr(lead, key) != value:
                setattr(lead, key, value)
                changed.append(key)
    if updates.get("customFields"):
        lead.custom_fields = {**(lead.custom_fields or {}), **updates["customFields"]}
        changed.append("customFields")
    lead.updated_at = now
    return changed


@register("create_lead")
def create_lead(step: StepContext) -> StepResult:
    """Create a lead, or update the one with the same e-mail or phone; emits lead_created."""
    cfg = step.action.config
    data = {k: step.render(v) for k, v in cfg.model_dump(exclude_none=True).items() if k != "custom_fields"}
    custom = step.render(cfg.custom_fields or {})
    email, phone = _normalized_contact(data.get("email"), data.get("phone"))
    rendered = {**data, **({"customFields": custom} if custom else {})}
    if step.dry_run:
        return StepResult(output={"simulated": True, "lead": rendered}, input=rendered)
    if step.test:
        # Test console: no lead is stored, but lead_created still fires (as a test event).
        assert step.emit is not None  # the runner always gives one
        emitted = step.emit(
            {
                "triggerType": "lead_created",
                "from": phone or email,
                "data": {
                    "name": data.get("name", ""),
                    "email": email,
                    "phone": phone,
                    "source": data.get("source") or "workflow",
                },
            }
        )
        return StepResult(
            output={
                "simulated": True,
                "note": "test mode: no lead was stored",
                "lead": rendered,
                "leadCreatedEvent": emitted,
            },
            input=rendered,
        )
    assert step.uow is not None  # a local step runs in a unit of work
    s = step.uow.session
    existing = find_lead_by_contact(s, step.tenant["id"], email, phone)
    if existing:
        changed = _apply_updates(existing, {**data, "customFields": custom}, step.now)
        s.add(existing)
        return StepResult(
            output={
                "leadId": existing.id,
                "created": False,
                "changed": changed,
                "note": "a lead with the same e-mail or phone exists: updated it instead of creating a duplicate",
            },
            input=rendered,
            lead=lead_to_dict(existing),
        )
    lead = Lead(
        tenant_id=step.tenant["id"],
        name=data.get("name", ""),
        email=email,
        phone=phone,
        source=data.get("source") or "workflow",
        notes=data.get("notes"),
        custom_fields=custom,
        created_at=step.now,
        updated_at=step.now,
    )
    s.add(lead)
    assert step.emit is not None  # the runner always gives one
    emitted = step.emit(
        {
            "triggerType": "lead_created",
            "leadId": lead.id,
            "from": phone or email,
            "data": {"name": lead.name, "email": email, "phone": phone, "source": lead.source},
        }
    )
    return StepResult(
        output={"leadId": lead.id, "created": True, "leadCreatedEvent": emitted},
        input=rendered,
        lead=lead_to_dict(lead),
    )


@register("update_lead")
def update_lead(step: StepContext) -> StepResult:
    """Update a lead by id, or the lead whose phone or e-mail is the trigger's sender."""
    cfg = step.action.config
    lead_id = step.render(cfg.lead_id) if cfg.lead_id else None
    updates = step.render(cfg.updates)
    rendered = {"leadId": lead_id, "updates": updates}
    if step.dry_run or step.test:
        return StepResult(output={"simulated": True, **rendered}, input=rendered)
    assert step.uow is not None  # a local step runs in a unit of work
    s = step.uow.session
    lead = _find_for_update(s, step, lead_id)
    changed = _apply_updates(lead, updates, step.now)
    s.add(lead)
    return StepResult(output={"leadId": lead.id, "changed": changed}, input=rendered, lead=lead_to_dict(lead))


def _find_for_update(s: Session, step: StepContext, lead_id: str | None) -> Lead:
    if lead_id:
        lead = s.exec(select(Lead).where(Lead.id == lead_id, Lead.tenant_id == step.tenant["id"])).first()
        if lead is None:
            raise NotFound(f"lead {lead_id} not found")
        return lead
    sender = step.trigger.get("from")
    if not sender:
        raise InvalidInput("no leadId and the trigger has no sender to look the lead up by", field="leadId")
    email, phone = (sender, None) if "@" in sender else (None, sender)
    email, phone = _normalized_contact(email, phone)
    lead = find_lead_by_contact(s, step.tenant["id"], email, phone)
    if lead is None:
        raise NotFound(f"no lead with e-mail or phone {sender}")
    return lead


@register("generate_workout_plan", atomic=True)
def generate_workout_plan(step: StepContext) -> StepResult:
    """A deterministic plan from the member's profile (config, then trigger data, then lead)."""
    from engine.ai.workout import generate_plan, profile_from_data

    lead_fields = (step.context.get("lead") or {}).get("customFields") or {}
    trigger = {**(step.trigger.get("customFields") or {}), **step.trigger}
    config = step.action.config.model_dump(by_alias=True, exclude_none=True)
    profile = profile_from_data({**lead_fields, **trigger, **config})
    plan = generate_plan(profile)
    return StepResult(output=plan.to_output(), input={"profile": profile.model_dump(mode="json")})


@register("ask_ai", external=True)
def ask_ai(step: StepContext) -> StepResult:
    """Answer the member's message with the tenant's AI provider (offline knowledge base by default)."""
    prompt = step.render(step.action.config.prompt)
    question = step.trigger.get("content") or None
    provider = provider_for_tenant(step.tenant)
    if step.simulate_calls and provider.__class__.__name__ != "OfflineProvider":
        # A dry or test run calls nothing outside; the offline provider is local, so it still answers.
        what = "dry run" if step.dry_run else "test mode"
        return StepResult(
            output={"text": f"({what}: the AI provider was not called)", "provider": "simulated", "simulated": True},
            input={"prompt": prompt, "question": question},
        )
    # Answer in the member's language when the message tells it, else in the studio's.
    language = step.trigger.get("language") or settings_of(step.tenant.get("settings")).language
    answer = provider.answer(prompt, question=question, language=language)
    return StepResult(output=answer.to_output(), input={"prompt": prompt, "question": question})


@register("call_webhook", external=True)
def call_webhook(step: StepContext) -> StepResult:
    """One signed HTTP call; the runner retries retryable failures durably."""
    from engine.outbound.webhooks import call_webhook as http_call

    cfg = step.action.config
    url = step.render(cfg.webhook_url)
    headers = step.render(cfg.headers or {})
    body = step.render(cfg.body) if cfg.body is not None else None
    method = cfg.method or "POST"
    settings = settings_of(step.tenant.get("settings"))
    headers.setdefault("Idempotency-Key", f"{step.execution_id}:{step.action.id}")
    rendered = {"url": url, "method": method, "headers": headers, "body": body}
    if step.simulate_calls:
        what = "dry run" if step.dry_run else "test mode"
        return StepResult(
            output={"simulated": True, "note": f"{what}: the webhook was not called", "request": rendered},
            input=rendered,
        )
    from engine.services.studio_settings import signing_secrets

    secrets = signing_secrets(step.db, step.tenant["id"], settings)
    response = http_call(
        url=url,
        method=method,
        headers=headers,
        body=body,
        secret=secrets or None,
        allow_list=settings.webhook_allow_list,
        timeout=cfg.timeout or 10.0,
    )
    # No ``now``: the signature's timestamp is checked by the receiver against its own clock, so
    # it is the real time (engine.outbound.webhooks signs with the default clock), never an injected one.
    return StepResult(output=response, input=rendered)
