"""Studio settings services: validation naming the field, audit log, secret handling,
signing-secret rotation, knowledge-base CSV import, users, outbox retry. SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet
from sqlmodel import Session, select

from engine import services
from engine.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from engine.outbound.webhooks import verify_signature
from engine.security import auth
from engine.security.auth import Actor
from engine.services import channel_settings as cs
from engine.services import member_admin, outbox
from engine.services import studio_settings as ss
from engine.settings import get_settings
from engine.store.models import DueWork, OutboxMessage, utcnow
from engine.uow import unit_of_work
from tests.uow import in_uow


@pytest.fixture(autouse=True)
def secret_key(monkeypatch):
    monkeypatch.setenv("STUDIO_SECRET_KEY", Fernet.generate_key().decode())
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_hours_cap_quiet_hours_validate_and_audit(db, actor):
    with pytest.raises(InvalidInput) as err:
        with unit_of_work(db) as uow:
            ss.save_quiet_hours(uow=uow, actor=actor, start="21 Uhr", end="08:00")
    assert err.value.field == "quietHours.start"
    with pytest.raises(InvalidInput) as err:
        with unit_of_work(db) as uow:
            ss.save_frequency_cap(uow=uow, actor=actor, cap=0)
    assert err.value.field == "frequencyCap"
    with unit_of_work(db) as uow:
        ss.save_quiet_hours(uow=uow, actor=actor, start="21:00", end="8:00")
    with unit_of_work(db) as uow:
        ss.save_frequency_cap(uow=uow, actor=actor, cap=3)
    with unit_of_work(db) as uow:
        ss.save_business_hours(
            uow=uow,
            actor=actor,
            hours={"weekly": {"1": {"open": "07:00", "close": "22:00"}}, "closedDays": ["2026-12-25"]},
        )
    with unit_of_work(db, read_only=True) as uow:
        view = ss.get_studio_settings(uow=uow, actor=actor)
    assert view.quiet_hours == {"start": "21:00", "end": "08:00"} and view.frequency_cap == 3
    assert view.business_hours["closedDays"] == ["2026-12-25"]
    with unit_of_work(db, read_only=True) as uow:
        areas = [a.area for a in cs.list_audit(uow=uow, actor=actor)]
    assert {"quietHours", "frequencyCap", "businessHours"} <= set(areas)


def test_ai_key_is_encrypted_and_never_shown(db, actor):
    with pytest.raises(InvalidInput) as err:
        with unit_of_work(db) as uow:
            ss.save_ai_provider(
                uow=uow, actor=actor, provider="openai_compatible", base_url="https://llm.example/v1", model="m"
            )
    assert err.value.field == "ai.apiKey"
    with unit_of_work(db) as uow:
        ss.save_ai_provider(
            uow=uow,
            actor=actor,
            provider="openai_compatible",
            base_url="https://llm.example/v1",
            model="m",
            api_key="sk-very-secret-123",
        )
    # Saving again without a key keeps it.
    with unit_of_work(db) as uow:
        view = ss.save_ai_provider(
            uow=uow, actor=actor, provider="openai_compatible", base_url="https://llm.example/v1", model="m2"
        )
    assert view.api_key.set
    with unit_of_work(db, read_only=True) as uow:
        settings = services.get_tenant(uow=uow, actor=actor).settings
    assert "sk-very-secret-123" not in json.dumps(settings)
    with unit_of_work(db, read_only=True) as uow:
        assert "sk-very-secret-123" not in ss.get_studio_settings(uow=uow, actor=actor).model_dump_json()
    from engine.actions.integrations import provider_for_tenant

    provider = provider_for_tenant({"name": "x", "settings": settings})
    assert provider.model == "m2"
    with unit_of_work(db, read_only=True) as uow:
        assert "sk-very-secret-123" not in json.dumps(
            [a.model_dump(mode="json") for a in cs.list_audit(uow=uow, actor=actor)]
        )


def test_knowledge_csv_import_all_or_nothing(db, actor):
    good = "question,answer,tags\nWas kostet eine Probestunde?,Die erste Stunde ist gratis.,Probestunde;trial\n"
    with unit_of_work(db) as uow:
        assert ss.import_knowledge_csv(uow=uow, actor=actor, data=good.encode()) == 1
    bad = "question,answer\nGibt es Parkplätze?,Ja, im Hof.\nLeere Antwort,\n"
    with pytest.raises(InvalidInput) as err:
        with unit_of_work(db) as uow:
            ss.import_knowledge_csv(uow=uow, actor=actor, data=bad.encode())
    assert "line 3" in err.value.field
    with unit_of_work(db, read_only=True) as uow:
        assert len(ss.get_studio_settings(uow=uow, actor=actor).knowledge_entries) == 1  # nothing half-written
    with pytest.raises(InvalidInput) as err:
        with unit_of_work(db) as uow:
            ss.import_knowledge_csv(uow=uow, actor=actor, data=b"frage,antwort\nx,y\n")
    assert err.value.field == "file"
    with unit_of_work(db, read_only=True) as uow:
        entries = ss.get_studio_settings(uow=uow, actor=actor).knowledge_entries
    assert entries[0]["tags"] == ["Probestunde", "trial"]


def test_knowledge_entries_keep_their_english_question_and_answer(db, actor):
    csv_text = "question,answer,tags,questionEn,answerEn\nGibt es eine Sauna?,Ja.,Sauna,Is there a sauna?,Yes.\n"
    in_uow(db, ss.import_knowledge_csv, actor=actor, data=csv_text.encode(), replace=True)
    entries = in_uow(db, ss.get_studio_settings, actor=actor).knowledge_entries
    assert entries == [
        {
            "question": "Gibt es eine Sauna?",
            "answer": "Ja.",
            "tags": ["Sauna"],
            "questionEn": "Is there a sauna?",
            "answerEn": "Yes.",
        }
    ]
    in_uow(db, ss.save_knowledge_entries, actor=actor, entries=[{**entries[0], "answerEn": ""}])  # emptied: gone
    assert "answerEn" not in in_uow(db, ss.get_studio_settings, actor=actor).knowledge_entries[0]
    with pytest.raises(InvalidInput) as err:
        in_uow(db, ss.save_knowledge_entries, actor=actor, entries=[{**entries[0], "answerEn": "x" * 4001}])
    assert err.value.field == "knowledgeBase.entries[0].answerEn"


def test_a_new_studio_signing_secret_is_encrypted_not_in_its_settings(db, actor):
    from engine.store.models import TenantSecret

    with unit_of_work(db, read_only=True) as uow:
        assert "webhookSecret" not in services.get_tenant(uow=uow, actor=actor).settings
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
    assert ss.signing_secrets(db, actor.tenant_id, in_uow(db, services.get_tenant, actor=actor).settings) == [
        "legacy-plain-secret"
    ]
    with unit_of_work(db) as uow:
        new = ss.rotate_signing_secret(uow=uow, actor=actor)
    with unit_of_work(db, read_only=True) as uow:
        settings = services.get_tenant(uow=uow, actor=actor).settings
    assert "webhookSecret" not in settings
    assert ss.signing_secrets(db, actor.tenant_id, settings) == [new, "legacy-plain-secret"]


def test_signing_secret_rotation_keeps_old_valid_for_24_hours(db, actor):
    legacy = ss.signing_secrets(db, actor.tenant_id, {})[0]
    with unit_of_work(db) as uow:
        new = ss.rotate_signing_secret(uow=uow, actor=actor)
    with unit_of_work(db, read_only=True) as uow:
        settings = services.get_tenant(uow=uow, actor=actor).settings
    assert "webhookSecret" not in settings  # no longer kept in plain text
    both = ss.signing_secrets(db, actor.tenant_id, settings)
    assert both == [new, legacy]
    later = ss.signing_secrets(db, actor.tenant_id, settings, now=utcnow() + timedelta(hours=24, seconds=1))
    assert later == [new]
    # The header carries both signatures during the grace period; receivers with either secret verify it.
    from engine.outbound.webhooks import _build_headers

    headers = _build_headers({}, b'{"a":1}', "application/json", both, 1_700_000_000)
    header = (
        headers["X-Studio-Signature"]
        if "X-Studio-Signature" in headers
        else next(v for k, v in headers.items() if "signature" in k.lower())
    )
    for secret in (new, legacy):
        assert verify_signature(secret, header, b'{"a":1}', now=1_700_000_000)
    assert not verify_signature("other", header, b'{"a":1}', now=1_700_000_000)
    with unit_of_work(db, read_only=True) as uow:
        view = ss.get_studio_settings(uow=uow, actor=actor)
    assert view.signing_secret.set and view.previous_secret_valid_until is not None
    assert new not in view.model_dump_json()


def test_webhook_allow_list_validation(db, actor):
    with unit_of_work(db) as uow:
        assert ss.save_webhook_allow_list(
            uow=uow, actor=actor, entries=["crm.local", "10.0.0.0/8", "", "192.168.1.5"]
        ) == ["crm.local", "10.0.0.0/8", "192.168.1.5"]
    with pytest.raises(InvalidInput) as err:
        with unit_of_work(db) as uow:
            ss.save_webhook_allow_list(uow=uow, actor=actor, entries=["http://crm.local/path"])
    assert err.value.field == "webhookAllowList[0]"  # the entry is named (it used to be the whole list)


def test_webhook_allow_list_stores_the_host_port_entries_webhooks_documents(db, actor):
    """engine/outbound/webhooks.py documents ``host:port``, ``[v6]:port`` and ``network:port`` entries; the
    settings used to refuse every one of them."""
    entries = ["127.0.0.1:8080", "localhost:8080", "[::1]:9000", "10.0.0.0/8:443", "*.Studio.Internal:8443"]
    saved = in_uow(db, ss.save_webhook_allow_list, actor=actor, entries=entries)
    assert saved == ["127.0.0.1:8080", "localhost:8080", "[::1]:9000", "10.0.0.0/8:443", "*.studio.internal:8443"]
    assert in_uow(db, ss.get_studio_settings, actor=actor).webhook_allow_list == saved
    for bad, why in (("127.0.0.1:99999", "between 1 and 65535"), ("crm.local:http", "number"), ("a b:80", "host")):
        with pytest.raises(InvalidInput) as err:
            in_uow(db, ss.save_webhook_allow_list, actor=actor, entries=["crm.local", bad])
        assert err.value.field == "webhookAllowList[1]" and why in err.value.message
    assert in_uow(db, ss.get_studio_settings, actor=actor).webhook_allow_list == saved  # nothing half-written


def test_last_owner_can_be_neither_removed_nor_demoted(db, tenant):
    with unit_of_work(db) as uow:
        owner = auth.create_user(uow=uow, email="o@x.test", password="password-123")
    with unit_of_work(db) as uow:
        auth.add_membership(uow=uow, user_id=owner.id, tenant_id=tenant.id, role="owner")
    actor = Actor(tenant_id=tenant.id, user_id=owner.id, role="owner", email="o@x.test")
    with unit_of_work(db) as uow:
        editor = services.add_member(uow=uow, actor=actor, email="e@x.test", role="editor", password="password-123")
    with pytest.raises(Conflict):
        with unit_of_work(db) as uow:
            member_admin.change_role(uow=uow, actor=actor, user_id=owner.id, role="editor")
    with pytest.raises(Conflict):
        with unit_of_work(db) as uow:
            member_admin.remove_member(uow=uow, actor=actor, user_id=owner.id)
    with unit_of_work(db) as uow:
        member_admin.change_role(uow=uow, actor=actor, user_id=editor.user_id, role="owner")
    with unit_of_work(db) as uow:
        member_admin.change_role(uow=uow, actor=actor, user_id=owner.id, role="analyst")  # now there is another owner
    with unit_of_work(db, read_only=True) as uow:
        roles = {m.email: m.role for m in services.list_members(uow=uow, actor=actor)}
    assert roles == {"o@x.test": "analyst", "e@x.test": "owner"}
    new_owner = Actor(tenant_id=tenant.id, user_id=editor.user_id, role="owner", email="e@x.test")
    with unit_of_work(db) as uow:
        member_admin.remove_member(uow=uow, actor=new_owner, user_id=owner.id)
    with unit_of_work(db, read_only=True) as uow:
        assert [m.email for m in services.list_members(uow=uow, actor=new_owner)] == ["e@x.test"]
    with unit_of_work(db, read_only=True) as uow:
        assert any(a.area == "users" for a in cs.list_audit(uow=uow, actor=new_owner))


def test_other_tenants_users_and_settings_are_out_of_reach(db, actor, other_actor):
    with unit_of_work(db) as uow:
        foreign = auth.create_user(uow=uow, email="b@x.test", password="password-123")
    with unit_of_work(db) as uow:
        auth.add_membership(uow=uow, user_id=foreign.id, tenant_id=other_actor.tenant_id, role="editor")
    with pytest.raises(NotFound) as err:
        with unit_of_work(db) as uow:
            member_admin.remove_member(uow=uow, actor=actor, user_id=foreign.id)
    assert "not a member" in str(err.value)
    editor = Actor(tenant_id=actor.tenant_id, role="editor")
    for call in (
        lambda: in_uow(db, ss.save_frequency_cap, actor=editor, cap=2),
        lambda: in_uow(db, ss.rotate_signing_secret, actor=editor),
        lambda: in_uow(db, cs.save_channel, actor=editor, channel="email", enabled=False, values={}),
    ):
        with pytest.raises(PermissionDenied):
            call()


def test_outbox_retry_only_for_failed_and_own_tenant(db, actor, other_actor):
    from engine.store.db import session_scope

    with session_scope(db) as s:
        msg = OutboxMessage(
            tenant_id=actor.tenant_id,
            channel="sms",
            recipient="+4917611112222",
            body="Hallo",
            status="failed",
            adapter="twilio",
            error="Twilio error 30003",
        )
        ok = OutboxMessage(
            tenant_id=actor.tenant_id,
            channel="sms",
            recipient="+4917611112222",
            body="x",
            status="sent",
            adapter="twilio",
        )
        s.add(msg)
        s.add(ok)
    with pytest.raises(NotFound):
        with unit_of_work(db) as uow:
            outbox.retry_delivery(uow=uow, actor=other_actor, outbox_id=msg.id)
    with pytest.raises(Conflict):
        with unit_of_work(db) as uow:
            outbox.retry_delivery(uow=uow, actor=actor, outbox_id=ok.id)
    with unit_of_work(db) as uow:
        row = outbox.retry_delivery(uow=uow, actor=actor, outbox_id=msg.id)
    assert row.status == "pending" and row.reason is None
    assert row.delivery_events[-1]["previousError"] == "Twilio error 30003"
    with Session(db) as s:
        assert s.exec(select(DueWork).where(DueWork.kind == "deliver")).one().payload == {"outboxId": msg.id}
    with unit_of_work(db, read_only=True) as uow:
        page = outbox.browse_outbox(uow=uow, actor=actor, status="sent", channel="sms")
    with unit_of_work(db, read_only=True) as uow:
        assert page.total == 1 and outbox.browse_outbox(uow=uow, actor=other_actor).total == 0
    with pytest.raises(InvalidInput):
        with unit_of_work(db, read_only=True) as uow:
            outbox.browse_outbox(uow=uow, actor=actor, status="bogus")


def test_ai_provider_test_button_talks_to_the_endpoint(db, actor):
    from tests.servers import Receiver

    with Receiver() as llm:
        llm.responses.append((200, {"choices": [{"message": {"content": "Mo-Fr 7-22 Uhr."}}]}, {}))
        llm.responses.append((401, {"error": {"message": "bad key"}}, {}))
        with unit_of_work(db) as uow:
            ss.save_ai_provider(
                uow=uow,
                actor=actor,
                provider="openai_compatible",
                base_url=llm.url + "/v1",
                model="small",
                api_key="sk-test-button-key",
            )
        with unit_of_work(db) as uow:
            ok, answer = ss.check_ai_provider(uow=uow, actor=actor)
        assert ok and answer == "Mo-Fr 7-22 Uhr."
        sent = llm.requests[0]
        assert sent.path == "/v1/chat/completions" and sent.headers["authorization"] == "Bearer sk-test-button-key"
        with unit_of_work(db) as uow:
            ok, answer = ss.check_ai_provider(uow=uow, actor=actor)
        assert not ok and "API key" in answer and "sk-test-button-key" not in answer


def test_outbox_page_masks_contacts_for_analysts_unless_allowed(db, actor):
    from engine.messaging.masking import SETTING
    from engine.store.db import session_scope

    with session_scope(db) as s:
        s.add(
            OutboxMessage(
                tenant_id=actor.tenant_id,
                channel="sms",
                recipient="+4917611112222",
                body="Hallo, ruf an: +4917611112222",
                status="sent",
                adapter="twilio",
            )
        )
    analyst = Actor(tenant_id=actor.tenant_id, role="analyst")
    with unit_of_work(db, read_only=True) as uow:
        row = outbox.browse_outbox(uow=uow, actor=analyst).items[0]
    assert "11112222" not in row.recipient and "11112222" not in row.body and row.recipient.endswith("222")
    with unit_of_work(db, read_only=True) as uow:
        assert (
            outbox.browse_outbox(uow=uow, actor=actor).items[0].recipient == "+4917611112222"
        )  # owners see everything
    with unit_of_work(db) as uow:
        services.update_tenant_settings(uow=uow, actor=actor, settings={SETTING: True})
    with unit_of_work(db, read_only=True) as uow:
        assert outbox.browse_outbox(uow=uow, actor=analyst).items[0].recipient == "+4917611112222"
