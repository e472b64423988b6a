"""First-run set-up: migrate the database and seed the demo studio (idempotent)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import select

from engine import services
from engine.security import auth
from engine.store.db import migrate
from engine.store.models import Tenant, User
from engine.uow import UnitOfWork, unit_of_work

logger = logging.getLogger(__name__)

EXAMPLES = Path(__file__).parent.parent / "examples"
DEMO_WORKFLOWS = Path(__file__).parent
DEMO_SLUG = "demo"


def spec_examples() -> list[dict]:
    """The spec's four example workflows, exactly as published."""
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(EXAMPLES.glob("*.json"))]


def demo_workflows() -> list[dict]:
    """The demo studio's workflows: the spec's examples made into what a studio would run.

    Training plans are generated and sent in the member's language; WhatsApp questions are
    answered from the knowledge base in business hours (9-18) and after hours (18-9).
    """
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(DEMO_WORKFLOWS.glob("*.json"))]


def init(db: Engine, *, demo_email: str, demo_password: str) -> dict:
    """Apply migrations; on first run create the demo tenant, its owner login and its workflows.

    The spec's four examples stay in the template gallery (``spec_examples``); the demo runs
    :func:`demo_workflows`, which are built on them.
    """
    migrate(db)
    with unit_of_work(db) as uow:  # the demo studio, its workflows, scenarios and owner: all or nothing
        s = uow.session
        tenant = s.exec(select(Tenant).where(Tenant.slug == DEMO_SLUG)).first()
        user = s.exec(select(User).where(User.email == demo_email.lower())).first()
        created = tenant is None
        if tenant is None:
            from engine.ai.knowledge import DEMO_KNOWLEDGE_BASE

            kb = DEMO_KNOWLEDGE_BASE.model_dump(mode="json", by_alias=True)
            out = services.create_tenant(
                uow=uow,
                slug=DEMO_SLUG,
                name="Demo Yoga & Fitness Studio",
                timezone="Europe/Berlin",
                settings={"knowledgeBase": kb},
            )
            services.import_workflows(uow=uow, actor=auth.system_actor(out.id), items=demo_workflows())
            seed_scenarios(uow, out.id)
            tenant_id = out.id
        else:
            tenant_id = tenant.id
        if user is None:
            user = auth.create_user(uow=uow, email=demo_email, password=demo_password, name="Demo Owner")
            auth.add_membership(uow=uow, user_id=user.id, tenant_id=tenant_id, role="owner")
    return {"tenant_id": tenant_id, "tenant_created": created, "email": demo_email}


#: The spec's manual tests as test-console scenarios of the demo studio (engine/services/scenarios.py).
#: "Hallo" is sent as if at 07:30 on a Sunday, so the after-hours reply (before 9) must run.
DEMO_SCENARIOS = [
    {
        "name": "Trainingsplan per Sprachanruf",
        "steps": [{"kind": "message", "channel": "voice", "text": "Ich möchte einen Trainingsplan"}],
        "expectations": [
            {"kind": "intent", "intent": "training_plan"},
            {"kind": "ran", "workflow": "Trainingsplan auf Anfrage"},
            {"kind": "sent", "contains": "Trainingsplan"},
        ],
    },
    {
        "name": "Trainingsplan per WhatsApp",
        "steps": [{"kind": "message", "channel": "whatsapp", "text": "Ich möchte einen Trainingsplan"}],
        "expectations": [
            {"kind": "intent", "intent": "training_plan"},
            {"kind": "ran", "workflow": "Trainingsplan auf Anfrage"},
            {"kind": "sent", "contains": "Trainingsplan"},
        ],
    },
    {
        "name": "Hallo auf WhatsApp am frühen Morgen",
        "steps": [{"kind": "message", "channel": "whatsapp", "text": "Hallo", "at": "2026-11-29T07:30:00+01:00"}],
        "expectations": [
            {"kind": "ran", "workflow": "Antwort außerhalb der Geschäftszeiten"},
            {"kind": "skipped", "workflow": "Trainingsplan auf Anfrage"},
            {"kind": "skipped", "workflow": "Antworten während der Geschäftszeiten"},
            {"kind": "sent", "contains": "von 9 bis 18 Uhr"},
        ],
    },
    {
        "name": "Verpasster Anruf bekommt nach 5 Minuten eine Nachricht",
        "steps": [{"kind": "missed_call"}, {"kind": "skip_all"}],
        "expectations": [
            {"kind": "ran", "workflow": "Verpasster Anruf: WhatsApp nach 5 Minuten"},
            {"kind": "sent", "contains": "Anruf leider verpasst"},
        ],
    },
]


def seed_scenarios(uow: UnitOfWork, tenant_id: str) -> None:
    """The demo studio's scenarios (skipped when one of the same name exists)."""
    from engine.errors import Conflict
    from engine.services import scenarios

    actor = auth.system_actor(tenant_id)
    for item in DEMO_SCENARIOS:
        try:
            scenarios.save_scenario(uow=uow, actor=actor, data=item)
        except Conflict:
            logger.info("demo scenario %r exists", item["name"])
