"""Tenant settings as one typed model, through the services and the engine, on SQLite and
PostgreSQL: a save writes only what it changes (also two at once), the engine reads what the
settings page and the API wrote, and a webhook reaches an allow-listed ``127.0.0.1:<port>``."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from cryptography.fernet import Fernet
from sqlmodel import Session, select

from engine import services
from engine.errors import InvalidInput, NotFound, PermissionDenied
from engine.outbound.webhooks import SIGNATURE_HEADER, verify_signature
from engine.runner import Runner
from engine.security.auth import Actor, system_actor
from engine.services import channel_settings as cs
from engine.services import studio_settings as ss
from engine.settings import get_settings
from engine.store.db import session_scope
from engine.store.models import SettingsAudit, Tenant
from engine.tenant_settings import TenantSettings
from engine.uow import unit_of_work
from tests.servers import Receiver
from tests.uow import in_uow


@pytest.fixture(autouse=True)
def secret_key(monkeypatch):
    monkeypatch.setenv("STUDIO_SECRET_KEY", Fernet.generate_key().decode())
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _raw(db, tenant_id: str) -> dict:
    with Session(db) as s:
        return dict(s.get(Tenant, tenant_id).settings)


def _audit(db, tenant_id: str) -> list[SettingsAudit]:
    with Session(db) as s:
        return list(s.exec(select(SettingsAudit).where(SettingsAudit.tenant_id == tenant_id)).all())


def test_a_channel_save_changes_only_the_fields_it_names(db, actor):
    """The issue's overwrite at the service level: saving one field leaves the others as stored."""
    in_uow(
        db,
        cs.save_channel,
        actor=actor,
        channel="sms",
        enabled=True,
        values={"accountSid": "AC42", "messagingServiceSid": "MG42"},
        secrets={"authToken": "tw-token"},
    )
    view = in_uow(db, cs.save_channel, actor=actor, channel="sms", values={"fromNumber": "030 1234567"})
    assert view.enabled and view.values["messagingServiceSid"] == "MG42" and view.values["accountSid"] == "AC42"
    assert view.values["fromNumber"] == "+49301234567" and view.secrets["authToken"].set
    assert _raw(db, actor.tenant_id)["channels"]["sms"] == {
        "adapter": "twilio",
        "accountSid": "AC42",
        "messagingServiceSid": "MG42",
        "fromNumber": "+49301234567",
    }
    cleared = in_uow(db, cs.save_channel, actor=actor, channel="sms", values={"fromNumber": ""})  # "" clears one
    assert cleared.values["fromNumber"] is None and cleared.values["messagingServiceSid"] == "MG42"
    changes = [a.changes for a in _audit(db, actor.tenant_id) if a.area == "channels.sms"]
    assert not any("messagingServiceSid" in c for c in changes[1:])  # only the first save touched it
    with pytest.raises(InvalidInput) as err:  # switching on still needs everything the provider needs
        in_uow(db, cs.save_channel, actor=actor, channel="whatsapp", enabled=True, values={"phoneNumberId": "1"})
    assert err.value.field == "channels.whatsapp.accessToken"
    assert "whatsapp" not in _raw(db, actor.tenant_id)["channels"]  # nothing half-written


def test_plain_text_secrets_of_old_rows_move_into_encrypted_storage_on_a_partial_save(db, actor):
    with session_scope(db) as s:
        tenant = s.get(Tenant, actor.tenant_id)
        tenant.settings = {
            "channels": {
                "sms": {
                    "adapter": "twilio",
                    "account_sid": "AC1",
                    "from_number": "+4930123456",
                    "authToken": "old-plain",
                }
            }
        }
        s.add(tenant)
    view = in_uow(db, cs.get_channel, actor=actor, channel="sms")  # snake_case keys of older rows load
    assert view.enabled and view.values["accountSid"] == "AC1" and view.secrets["authToken"].set
    in_uow(db, cs.save_channel, actor=actor, channel="sms", values={"messagingServiceSid": "MG7"})
    raw = _raw(db, actor.tenant_id)["channels"]["sms"]
    assert raw == {
        "adapter": "twilio",
        "account_sid": "AC1",
        "from_number": "+4930123456",
        "messagingServiceSid": "MG7",
    }
    assert in_uow(db, cs.secret_value, tenant_id=actor.tenant_id, name="channels.sms.authToken") == "old-plain"
    with Session(db) as s:
        resolved = cs.resolved_tenant_settings(s, actor.tenant_id, _raw(db, actor.tenant_id))
    assert resolved["channels"]["sms"]["authToken"] == "old-plain"
    assert resolved["channels"]["sms"]["accountSid"] == "AC1"


def test_saves_of_different_settings_at_once_all_stay(db, actor):
    """Two sessions save different settings at the same time, again and again: every save stays
    (each reads the JSON the other committed: the tenant row is locked for the save)."""
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []
    rounds = 25

    def save(prefix: str) -> None:
        try:
            barrier.wait(timeout=10)
            for i in range(rounds):
                with unit_of_work(db) as uow:
                    ss.update_settings(uow=uow, actor=actor, changes={f"minutesSaved.{prefix}{i}": float(i)})
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=save, args=(p,)) for p in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    saved = _raw(db, actor.tenant_id)["minutesSaved"]
    assert sorted(saved) == sorted(f"{p}{i}" for p in "ab" for i in range(rounds))


def test_existing_rows_and_the_demo_seed_load_and_keep_unknown_keys(db, tenant_factory, caplog):
    from engine.ai.knowledge import DEMO_KNOWLEDGE_BASE

    kb = DEMO_KNOWLEDGE_BASE.model_dump(mode="json", by_alias=True)
    tenant = tenant_factory(
        knowledgeBase=kb, futureFeature={"x": 1}, frequencyCap="lots", quietHours={"start": "22:00", "end": "06:00"}
    )
    actor = system_actor(tenant.id)
    with caplog.at_level("WARNING", logger="engine.tenant_settings"):
        view = in_uow(db, ss.get_studio_settings, actor=actor)
    assert len(view.knowledge_entries) == len(DEMO_KNOWLEDGE_BASE.entries)
    assert view.frequency_cap is None and view.quiet_hours == {"start": "22:00", "end": "06:00"}
    assert "frequencyCap" in caplog.text  # the refused stored value is named, the studio keeps working
    in_uow(db, ss.save_frequency_cap, actor=actor, cap=2)
    raw = _raw(db, tenant.id)
    assert raw["futureFeature"] == {"x": 1} and raw["frequencyCap"] == 2 and raw["knowledgeBase"] == kb
    with pytest.raises(InvalidInput) as err:
        in_uow(db, ss.patch_settings, actor=actor, body={"futureFeature": {"x": 2}})
    assert err.value.field == "futureFeature"  # the API may not write a key the model does not know


def test_what_the_settings_page_saves_is_what_delivery_applies(db, actor):
    """Quiet hours and the cap written by the services are read by the engine through the same model."""
    in_uow(db, ss.save_quiet_hours, actor=actor, start="20:00", end="8:00")
    in_uow(db, ss.patch_settings, actor=actor, body={"frequencyCap": 1, "defaultRegion": "at"})
    with unit_of_work(db) as uow:
        services.create_workflow(
            uow=uow,
            actor=actor,
            data={
                "name": "Reminder",
                "trigger": {"type": "web_chat", "config": {}},
                "actions": [
                    {"id": "s1", "type": "send_sms", "config": {"message": "a", "recipient": "0664 1234567"}},
                    {"id": "s2", "type": "send_sms", "config": {"message": "b", "recipient": "0664 1234567"}},
                ],
            },
        )
    runner = Runner(db, clock=lambda: datetime(2026, 11, 25, 21, 0, tzinfo=UTC))  # 22:00 in Berlin: quiet
    runner.ingest(actor.tenant_id, {"triggerType": "web_chat", "content": "go", "from": "staff"})
    from engine.store.models import OutboxMessage

    with Session(db) as s:
        rows = s.exec(select(OutboxMessage).where(OutboxMessage.tenant_id == actor.tenant_id)).all()
    by_body = {r.body: r for r in rows}
    assert by_body["a"].recipient == "+436641234567"  # defaultRegion AT
    assert by_body["a"].status == "deferred" and "quiet hours 20:00-08:00" in by_body["a"].error
    assert by_body["b"].status == "suppressed" and "frequency cap" in by_body["b"].error


def test_patch_settings_names_the_refused_field_and_writes_nothing(db, actor, other_actor):
    before = _raw(db, actor.tenant_id)
    cases = {
        "quietHours.start": {"quietHours": {"start": "9 Uhr", "end": "10:00"}},
        "quietHours.end": {"quietHours": {"start": "21:00"}},  # a partial object must complete the stored one
        "frequencyCap": {"frequencyCap": "3"},
        "webhookAllowList[1]": {"webhookAllowList": ["crm.local", "127.0.0.1:0"]},
        "businessHours.weekly.9": {"businessHours": {"weekly": {"9": {"open": "08:00", "close": "09:00"}}}},
        "goals.wf1.kind": {"goals": {"wf1": {"kind": "sale"}}},
        "ai.apiKey": {"ai": {"provider": "openai_compatible", "model": "m"}},
        "channels": {"channels": {"sms": {"adapter": "twilio"}}},
        "optOutsRecorded": {"optOutsRecorded": False},
        "retention": {"retention": {"detailsDays": 30, "summaryDays": 10}},
        "knowledgeBase.prices[0].name": {"knowledgeBase": {"prices": [{"price": 3}]}},
    }
    for field, body in cases.items():
        with pytest.raises(InvalidInput) as err:
            in_uow(db, ss.patch_settings, actor=actor, body={"language": "en", **body})
        assert err.value.field == field, (body, err.value.message)
    assert _raw(db, actor.tenant_id) == before  # not even the valid "language" of the same patch
    after = in_uow(db, ss.patch_settings, actor=actor, body={"quietHours": {"start": "21:00", "end": "7:00"}})
    assert after.quiet_hours is not None and after.quiet_hours.end == "07:00"
    in_uow(db, ss.patch_settings, actor=actor, body={"quietHours": {"end": "06:30"}})  # merges key by key
    assert _raw(db, actor.tenant_id)["quietHours"] == {"start": "21:00", "end": "06:30"}
    in_uow(db, ss.patch_settings, actor=actor, body={"quietHours": None})  # null removes: the default applies
    assert "quietHours" not in _raw(db, actor.tenant_id)
    assert "quietHours" not in _raw(db, other_actor.tenant_id)
    with pytest.raises(PermissionDenied):
        in_uow(db, ss.patch_settings, actor=Actor(tenant_id=actor.tenant_id, role="editor"), body={"language": "en"})
    with pytest.raises(NotFound):
        in_uow(db, ss.patch_settings, actor=Actor(tenant_id="no-such-studio", role="owner"), body={"language": "en"})


def test_the_ai_key_given_through_the_api_is_stored_encrypted(db, actor):
    in_uow(
        db,
        ss.patch_settings,
        actor=actor,
        body={"ai": {"provider": "openai_compatible", "model": "m", "apiKey": "sk-patch-secret-9"}},
    )
    raw = _raw(db, actor.tenant_id)
    assert "sk-patch-secret-9" not in str(raw) and raw["ai"]["apiKeyEncrypted"]
    assert "sk-patch-secret-9" not in str([a.changes for a in _audit(db, actor.tenant_id)])
    in_uow(db, ss.patch_settings, actor=actor, body={"ai": {"model": "m2"}})  # the key stays
    settings = TenantSettings.of(_raw(db, actor.tenant_id))
    assert settings.ai.key_set and settings.ai.model == "m2"
    from engine.ai import provider_for_tenant

    assert provider_for_tenant({"settings": settings}).model == "m2"


def test_a_webhook_reaches_an_allow_listed_loopback_port_and_no_other(db, actor):
    """engine/outbound/webhooks.py documents ``host:port`` entries; the settings now store them, and the
    runner's call_webhook reaches exactly that port, signed with the studio's secret."""
    with Receiver() as allowed, Receiver() as other:
        port = allowed.url.rsplit(":", 1)[1]
        saved = in_uow(db, ss.save_webhook_allow_list, actor=actor, entries=[f"127.0.0.1:{port}"])
        assert saved == [f"127.0.0.1:{port}"]
        with unit_of_work(db) as uow:
            for name, url in (("allowed", allowed.url + "/crm"), ("other", other.url + "/crm")):
                services.create_workflow(
                    uow=uow,
                    actor=actor,
                    data={
                        "name": f"Hook {name}",
                        "trigger": {"type": "web_chat", "config": {}},
                        "actions": [
                            {"id": "hook", "type": "call_webhook", "config": {"webhookUrl": url, "body": {"a": 1}}}
                        ],
                    },
                )
        result = Runner(db).ingest(actor.tenant_id, {"triggerType": "web_chat", "content": "hi", "from": "v1"})
        steps = {}
        for execution_id in result.execution_ids:
            ex = in_uow(db, services.get_execution, actor=actor, execution_id=execution_id)
            steps[ex.workflow_name] = ex.steps[0]
        assert steps["Hook allowed"].status == "succeeded", steps["Hook allowed"].error
        assert steps["Hook other"].status == "failed" and "not on the allow-list" in steps["Hook other"].error
        assert len(allowed.requests) == 1 and not other.requests
        request = allowed.requests[0]
        [secret] = ss.signing_secrets(db, actor.tenant_id, _raw(db, actor.tenant_id))
        now = int(request.headers["X-Studio-Timestamp"])
        assert verify_signature(secret, request.headers[SIGNATURE_HEADER], request.body, now=now)


def test_readers_of_a_stored_row_share_one_model(db, actor):
    """No reader keeps a dict of its own: the runner's tenant, delivery and the services see the model."""
    from engine.runner import load_tenant

    in_uow(db, ss.save_business_hours, actor=actor, hours={"weekly": {"1": {"open": "9:00", "close": "18:00"}}})
    with Session(db) as s:
        with s.connection() as conn:
            tenant = load_tenant(conn, actor.tenant_id)
        assert isinstance(tenant["settings"], TenantSettings)
        assert tenant["settings"].business_hours.weekly["1"].open == "09:00"


def test_a_knowledge_base_edit_from_a_stale_page_is_refused_not_written_over(db, actor):
    first = [{"question": "Parken?", "answer": "Im Hof.", "tags": []}]
    in_uow(db, ss.save_knowledge_entries, actor=actor, entries=first, expected=[])
    shown = in_uow(db, ss.get_studio_settings, actor=actor).knowledge_entries
    in_uow(db, ss.save_knowledge_entries, actor=actor, entries=[*shown, {"question": "Sauna?", "answer": "Ja."}])
    from engine.errors import Conflict

    with pytest.raises(Conflict) as err:  # the editor still shows one entry: saving it would drop "Sauna?"
        in_uow(
            db,
            ss.save_knowledge_entries,
            actor=actor,
            entries=[{"question": "Parken?", "answer": "Ja."}],
            expected=shown,
        )
    assert "changed meanwhile" in err.value.message
    assert [e["question"] for e in in_uow(db, ss.get_studio_settings, actor=actor).knowledge_entries] == [
        "Parken?",
        "Sauna?",
    ]


def test_the_insights_table_writes_only_the_rows_the_owner_edited():
    from ui.insights_settings import _changes

    shown = [
        {"id": "wf1", "Minutes saved per run": 2.0, "Goal": "", "Within days": 7},
        {"id": "wf2", "Minutes saved per run": 5.0, "Goal": "lead", "Within days": 3},
    ]
    edited = [dict(shown[0], **{"Minutes saved per run": 4.5}), dict(shown[1], Goal="")]
    assert _changes(edited, shown) == {"minutesSaved.wf1": 4.5, "goals.wf2": None}
    assert _changes(shown, shown) == {}
