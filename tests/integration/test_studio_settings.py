"""Studio settings services: validation naming the field, audit log, secret handling,
signing-secret rotation, knowledge-base CSV import, users, outbox retry. SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet
from sqlmodel import Session, select

from engine import auth, services
from engine.auth import Actor
from engine.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from engine.services import channel_settings as cs
from engine.services import member_admin, outbox
from engine.services import studio_settings as ss
from engine.settings import get_settings
from engine.store.models import DueWork, OutboxMessage, utcnow
from engine.webhooks import verify_signature


@pytest.fixture(autouse=True)
def secret_key(monkeypatch):
    monkeypatch.setenv("STUDIO_SECRET_KEY", Fernet.generate_key().decode())
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_hours_cap_quiet_hours_validate_and_audit(db, actor):
    with pytest.raises(InvalidInput) as err:
        ss.save_quiet_hours(db, actor, start="21 Uhr", end="08:00")
    assert err.value.field == "quietHours.start"
    with pytest.raises(InvalidInput) as err:
        ss.save_frequency_cap(db, actor, 0)
    assert err.value.field == "frequencyCap"
    ss.save_quiet_hours(db, actor, start="21:00", end="8:00")
    ss.save_frequency_cap(db, actor, 3)
    ss.save_business_hours(db, actor, {"weekly": {"1": {"open": "07:00", "close": "22:00"}}, "closedDays": ["2026-12-25"]})
    view = ss.get_studio_settings(db, actor)
    assert view.quiet_hours == {"start": "21:00", "end": "08:00"} and view.frequency_cap == 3
    assert view.business_hours["closedDays"] == ["2026-12-25"]
    areas = [a.area for a in cs.list_audit(db, actor)]
    assert {"quietHours", "frequencyCap", "businessHours"} <= set(areas)


def test_ai_key_is_encrypted_and_never_shown(db, actor):
    with pytest.raises(InvalidInput) as err:
        ss.save_ai_provider(db, actor, provider="openai_compatible", base_url="https://llm.example/v1", model="m")
    assert err.value.field == "ai.apiKey"
    ss.save_ai_provider(db, actor, provider="openai_compatible", base_url="https://llm.example/v1", model="m",
                        api_key="sk-very-secret-123")
    # Saving again without a key keeps it.
    view = ss.save_ai_provider(db, actor, provider="openai_compatible", base_url="https://llm.example/v1", model="m2")
    assert view.api_key.set
    settings = services.get_tenant(db, actor).settings
    assert "sk-very-secret-123" not in json.dumps(settings)
    assert "sk-very-secret-123" not in ss.get_studio_settings(db, actor).model_dump_json()
    from engine.ai import provider_for_tenant

    provider = provider_for_tenant({"name": "x", "settings": settings})
    assert provider.model == "m2"
    assert "sk-very-secret-123" not in json.dumps([a.model_dump(mode="json") for a in cs.list_audit(db, actor)])


def test_knowledge_csv_import_all_or_nothing(db, actor):
    good = "question,answer,tags\nWas kostet eine Probestunde?,Die erste Stunde ist gratis.,Probestunde;trial\n"
    assert ss.import_knowledge_csv(db, actor, good.encode()) == 1
    bad = "question,answer\nGibt es Parkplätze?,Ja, im Hof.\nLeere Antwort,\n"
    with pytest.raises(InvalidInput) as err:
        ss.import_knowledge_csv(db, actor, bad.encode())
    assert "line 3" in err.value.field
    assert len(ss.get_studio_settings(db, actor).knowledge_entries) == 1  # nothing half-written
    with pytest.raises(InvalidInput) as err:
        ss.import_knowledge_csv(db, actor, b"frage,antwort\nx,y\n")
    assert err.value.field == "file"
    entries = ss.get_studio_settings(db, actor).knowledge_entries
    assert entries[0]["tags"] == ["Probestunde", "trial"]


def test_a_new_studio_signing_secret_is_encrypted_not_in_its_settings(db, actor):
    from engine.store.models import TenantSecret

    assert "webhookSecret" not in services.get_tenant(db, actor).settings
    [current] = ss.signing_secrets(db, actor.tenant_id, {})
    with Session(db) as s:
        row = s.exec(select(TenantSecret).where(TenantSecret.tenant_id == actor.tenant_id)).one()
    assert current.startswith("whsec_") and current not in row.ciphertext


def test_a_legacy_plain_signing_secret_still_signs_until_rotated(db, actor):
    from engine.store.db import session_scope
    from engine.store.models import Tenant, TenantSecret

    with session_scope(db) as s:  # a studio created before secrets were encrypted
        s.execute(sa.delete(TenantSecret).where(TenantSecret.tenant_id == actor.tenant_id))
        tenant = s.get(Tenant, actor.tenant_id)
        tenant.settings = {**tenant.settings, "webhookSecret": "legacy-plain-secret"}
        s.add(tenant)
    assert ss.signing_secrets(db, actor.tenant_id, services.get_tenant(db, actor).settings) == ["legacy-plain-secret"]
    new = ss.rotate_signing_secret(db, actor)
    settings = services.get_tenant(db, actor).settings
    assert "webhookSecret" not in settings
    assert ss.signing_secrets(db, actor.tenant_id, settings) == [new, "legacy-plain-secret"]


def test_signing_secret_rotation_keeps_old_valid_for_24_hours(db, actor):
    legacy = ss.signing_secrets(db, actor.tenant_id, {})[0]
    new = ss.rotate_signing_secret(db, actor)
    settings = services.get_tenant(db, actor).settings
    assert "webhookSecret" not in settings  # no longer kept in plain text
    both = ss.signing_secrets(db, actor.tenant_id, settings)
    assert both == [new, legacy]
    later = ss.signing_secrets(db, actor.tenant_id, settings, now=utcnow() + timedelta(hours=24, seconds=1))
    assert later == [new]
    # The header carries both signatures during the grace period; receivers with either secret verify it.
    from engine.webhooks import _build_headers

    headers = _build_headers({}, b'{"a":1}', "application/json", both, 1_700_000_000)
    header = headers["X-Studio-Signature"] if "X-Studio-Signature" in headers else next(
        v for k, v in headers.items() if "signature" in k.lower())
    for secret in (new, legacy):
        assert verify_signature(secret, header, b'{"a":1}', now=1_700_000_000)
    assert not verify_signature("other", header, b'{"a":1}', now=1_700_000_000)
    view = ss.get_studio_settings(db, actor)
    assert view.signing_secret.set and view.previous_secret_valid_until is not None
    assert new not in view.model_dump_json()


def test_webhook_allow_list_validation(db, actor):
    assert ss.save_webhook_allow_list(db, actor, ["crm.local", "10.0.0.0/8", "", "192.168.1.5"]) == [
        "crm.local", "10.0.0.0/8", "192.168.1.5"]
    with pytest.raises(InvalidInput) as err:
        ss.save_webhook_allow_list(db, actor, ["http://crm.local/path"])
    assert err.value.field == "webhookAllowList"


def test_last_owner_can_be_neither_removed_nor_demoted(db, tenant):
    owner = auth.create_user(db, email="o@x.test", password="password-123")
    auth.add_membership(db, user_id=owner.id, tenant_id=tenant.id, role="owner")
    actor = Actor(tenant_id=tenant.id, user_id=owner.id, role="owner", email="o@x.test")
    editor = services.add_member(db, actor, email="e@x.test", role="editor", password="password-123")
    with pytest.raises(Conflict):
        member_admin.change_role(db, actor, owner.id, "editor")
    with pytest.raises(Conflict):
        member_admin.remove_member(db, actor, owner.id)
    member_admin.change_role(db, actor, editor.user_id, "owner")
    member_admin.change_role(db, actor, owner.id, "analyst")  # now there is another owner
    roles = {m.email: m.role for m in services.list_members(db, actor)}
    assert roles == {"o@x.test": "analyst", "e@x.test": "owner"}
    new_owner = Actor(tenant_id=tenant.id, user_id=editor.user_id, role="owner", email="e@x.test")
    member_admin.remove_member(db, new_owner, owner.id)
    assert [m.email for m in services.list_members(db, new_owner)] == ["e@x.test"]
    assert any(a.area == "users" for a in cs.list_audit(db, new_owner))


def test_other_tenants_users_and_settings_are_out_of_reach(db, actor, other_actor):
    foreign = auth.create_user(db, email="b@x.test", password="password-123")
    auth.add_membership(db, user_id=foreign.id, tenant_id=other_actor.tenant_id, role="editor")
    with pytest.raises(NotFound) as err:
        member_admin.remove_member(db, actor, foreign.id)
    assert "not a member" in str(err.value)
    editor = Actor(tenant_id=actor.tenant_id, role="editor")
    for call in (lambda: ss.save_frequency_cap(db, editor, 2), lambda: ss.rotate_signing_secret(db, editor),
                 lambda: cs.save_channel(db, editor, "email", enabled=False, values={})):
        with pytest.raises(PermissionDenied):
            call()


def test_outbox_retry_only_for_failed_and_own_tenant(db, actor, other_actor):
    from engine.store.db import session_scope

    with session_scope(db) as s:
        msg = OutboxMessage(tenant_id=actor.tenant_id, channel="sms", recipient="+4917611112222", body="Hallo",
                            status="failed", adapter="twilio", error="Twilio error 30003")
        ok = OutboxMessage(tenant_id=actor.tenant_id, channel="sms", recipient="+4917611112222", body="x",
                           status="sent", adapter="twilio")
        s.add(msg)
        s.add(ok)
    with pytest.raises(NotFound):
        outbox.retry_delivery(db, other_actor, msg.id)
    with pytest.raises(Conflict):
        outbox.retry_delivery(db, actor, ok.id)
    row = outbox.retry_delivery(db, actor, msg.id)
    assert row.status == "pending" and row.reason is None
    assert row.delivery_events[-1]["previousError"] == "Twilio error 30003"
    with Session(db) as s:
        assert s.exec(select(DueWork).where(DueWork.kind == "deliver")).one().payload == {"outboxId": msg.id}
    page = outbox.browse_outbox(db, actor, status="sent", channel="sms")
    assert page.total == 1 and outbox.browse_outbox(db, other_actor).total == 0
    with pytest.raises(InvalidInput):
        outbox.browse_outbox(db, actor, status="bogus")


def test_ai_provider_test_button_talks_to_the_endpoint(db, actor):
    from tests.servers import Receiver

    with Receiver() as llm:
        llm.responses.append((200, {"choices": [{"message": {"content": "Mo-Fr 7-22 Uhr."}}]}, {}))
        llm.responses.append((401, {"error": {"message": "bad key"}}, {}))
        ss.save_ai_provider(db, actor, provider="openai_compatible", base_url=llm.url + "/v1", model="small",
                            api_key="sk-test-button-key")
        ok, answer = ss.check_ai_provider(db, actor)
        assert ok and answer == "Mo-Fr 7-22 Uhr."
        sent = llm.requests[0]
        assert sent.path == "/v1/chat/completions" and sent.headers["authorization"] == "Bearer sk-test-button-key"
        ok, answer = ss.check_ai_provider(db, actor)
        assert not ok and "API key" in answer and "sk-test-button-key" not in answer


def test_outbox_page_masks_contacts_for_analysts_unless_allowed(db, actor):
    from engine.masking import SETTING
    from engine.store.db import session_scope

    with session_scope(db) as s:
        s.add(OutboxMessage(tenant_id=actor.tenant_id, channel="sms", recipient="+4917611112222",
                            body="Hallo, ruf an: +4917611112222", status="sent", adapter="twilio"))
    analyst = Actor(tenant_id=actor.tenant_id, role="analyst")
    row = outbox.browse_outbox(db, analyst).items[0]
    assert "11112222" not in row.recipient and "11112222" not in row.body and row.recipient.endswith("222")
    assert outbox.browse_outbox(db, actor).items[0].recipient == "+4917611112222"  # owners see everything
    services.update_tenant_settings(db, actor, settings={SETTING: True})
    assert outbox.browse_outbox(db, analyst).items[0].recipient == "+4917611112222"
