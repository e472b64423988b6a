"""The typed tenant settings (engine/tenant_settings.py): stored JSON loads as it always was
stored, a write changes only the paths it names and names the field it refuses, and the
webhook allow-list takes every form engine/outbound/webhooks.py documents."""

from __future__ import annotations

import logging

import pytest

from engine.ai.knowledge import DEMO_KNOWLEDGE_BASE
from engine.errors import InvalidInput
from engine.outbound.webhooks import _parse_allow_entry, allow_entry
from engine.tenant_settings import TenantSettings, known_path, patch_schema, patched, settings_of


def test_empty_settings_have_the_defaults_the_engine_used_to_assume():
    s = TenantSettings.of(None)
    assert (s.default_region, s.language, s.frequency_cap, s.quiet_hours) == ("DE", "de", None, None)
    assert s.ai.provider == "offline" and not s.ai.classify and s.webhook_allow_list == []
    assert s.channels.block("sms").adapter == "outbox" and s.channels.block("email").port == 587
    assert s.channels.block("web") is None and settings_of(s) is s


def test_stored_rows_load_camel_or_snake_case_with_plain_secrets_kept_out_of_dumps():
    raw = {
        "knowledgeBase": DEMO_KNOWLEDGE_BASE.model_dump(mode="json", by_alias=True),
        "channels": {"sms": {"adapter": "twilio", "account_sid": "AC1", "authToken": "plain"}, "web": {"x": 1}},
        "webhookSecret": "legacy-plain",
        "ai": {"provider": "openai", "apiKey": "sk-plain", "timeout": 5},
        "somethingNew": [1, 2],
    }
    s = TenantSettings.of(raw)
    assert len(s.knowledge_base.entries) == len(DEMO_KNOWLEDGE_BASE.entries)
    assert s.channels.sms.account_sid == "AC1" and s.channels.sms.auth_token.get_secret_value() == "plain"
    assert (
        s.ai.provider == "openai_compatible" and s.ai.key_set and s.webhook_secret.get_secret_value() == "legacy-plain"
    )
    dumped = str(s.stored())
    assert "plain" not in dumped and "sk-plain" not in dumped  # secrets never leave through a dump
    assert s.model_extra == {"somethingNew": [1, 2]} and s.channels.model_extra == {"web": {"x": 1}}


def test_a_refused_stored_value_falls_back_to_its_default_and_is_named_once(caplog):
    raw = {
        "frequencyCap": "many",
        "quietHours": {"start": "21:00", "end": "21:00"},
        "webhookAllowList": ["crm.local", "not a host", "10.0.0.0/8:443"],
        "knowledgeBase": {"entries": [{"question": "q", "answer": ""}, {"question": "Q2", "answer": "A2"}]},
        "language": "de",
    }
    with caplog.at_level(logging.WARNING, logger="engine.tenant_settings"):
        s = TenantSettings.of(raw)
        TenantSettings.of(raw)
    assert s.frequency_cap is None and s.quiet_hours is None
    assert s.webhook_allow_list == ["crm.local", "10.0.0.0/8:443"]
    assert [e.question for e in s.knowledge_base.entries] == ["Q2"]
    [record] = [r for r in caplog.records if "ignored" in r.getMessage()]
    for path in ("frequencyCap", "quietHours.end", "webhookAllowList[1]", "knowledgeBase.entries[0].answer"):
        assert path in record.getMessage()


def test_a_patch_writes_only_its_paths_normalised_and_keeps_the_rest_as_stored():
    raw = {
        "channels": {"sms": {"adapter": "twilio", "messaging_service_sid": "MG1", "accountSid": "AC1"}},
        "frequencyCap": "many",  # refused when loading, but not this patch's business: stays as stored
        "somethingNew": {"a": 1},
    }
    new, model = patched(
        raw,
        {
            "channels.sms.messagingServiceSid": " MG2 ",
            "channels.sms.fromNumber": "030 123456",
            "quietHours": {"start": "8:00", "end": "9:30"},
            "goals.wf1": {"kind": "lead"},
        },
    )
    assert new["channels"]["sms"] == {
        "adapter": "twilio",
        "accountSid": "AC1",
        "messagingServiceSid": "MG2",  # one key per field: the snake_case spelling went
        "fromNumber": "+4930123456",
    }
    assert new["quietHours"] == {"start": "08:00", "end": "09:30"} and new["goals"] == {
        "wf1": {"kind": "lead", "days": 7}
    }
    assert new["frequencyCap"] == "many" and new["somethingNew"] == {"a": 1}
    assert raw["channels"]["sms"]["messaging_service_sid"] == "MG1"  # the input is not changed
    assert model.channels.sms.messaging_service_sid == "MG2"
    removed, _ = patched(new, {"quietHours": None, "goals.wf1": None})
    assert "quietHours" not in removed and removed["goals"] == {}


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"quietHours.start": "21:00"}, "quietHours.end", "required"),
        ({"quietHours": {"start": "7", "end": "8:00"}}, "quietHours.start", "not a time"),
        ({"frequencyCap": 101}, "frequencyCap", "less than or equal to 100"),
        ({"frequencyCap": "3"}, "frequencyCap", "integer"),
        ({"channels.sms.accountSid": "XX1"}, "channels.sms.accountSid", "starts with AC"),
        ({"channels.email.port": 70000}, "channels.email.port", "less than 65536"),
        (
            {"knowledgeBase.entries": [{"question": "q", "answer": "a" * 4001}]},
            "knowledgeBase.entries[0].answer",
            "4000",
        ),
        ({"businessHours.weekly.1": {"open": "08:00", "close": "08:00"}}, "businessHours.weekly.1.close", "same"),
        ({"businessHours.closedDays": ["24.12.2026"]}, "businessHours.closedDays[0]", "date like"),
        ({"webhookAllowList": ["crm.local:0"]}, "webhookAllowList[0]", "between 1 and 65535"),
        ({"optOut": {"stopWords": ["STOP"], "startWords": ["stop"]}}, "optOut", "both opt out and opt in"),
        ({"quietHours": {"start": "21:00", "end": "07:00", "extra": 1}}, "quietHours.extra", "unknown setting"),
        ({"defaultRegion": "Germany"}, "defaultRegion", "pattern"),
    ],
)
def test_a_refused_change_names_its_field(changes, field, words):
    with pytest.raises(InvalidInput) as err:
        patched({"quietHours": None}, changes)
    assert err.value.field == field and words in err.value.message


def test_known_paths_are_the_models_fields_and_the_keys_of_its_maps():
    for path in ("quietHours.start", "goals.wf1.kind", "minutesSaved.wf1", "knowledgeBase.prices", "ai.timeout"):
        assert known_path(path), path
    for path in ("nope", "quietHours.nope", "goals.wf1.nope"):
        assert not known_path(path), path


def test_the_patch_schema_lets_every_field_be_left_out_or_removed():
    schema = patch_schema(["channels", "optOutsRecorded", "ai.apiKeySetAt"])
    props = schema["properties"]
    assert schema["additionalProperties"] is False and "required" not in schema
    assert {"channels", "optOutsRecorded", "webhookSecret"}.isdisjoint(props)
    assert {"type": "null"} in props["quietHours"]["anyOf"]
    quiet = next(o for o in props["quietHours"]["anyOf"] if o.get("type") == "object")
    assert "required" not in quiet and {"type": "null"} in quiet["properties"]["start"]["anyOf"]
    ai = next(o for o in props["ai"]["anyOf"] if o.get("type") == "object")
    assert "apiKey" in ai["properties"] and "apiKeyEncrypted" not in ai["properties"]


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("crm.local", "crm.local"),
        ("*.Studio.Internal", "*.studio.internal"),
        ("127.0.0.1", "127.0.0.1"),
        ("::1", "::1"),
        ("10.0.0.0/8", "10.0.0.0/8"),
        ("fd00::/8", "fd00::/8"),
        (" localhost:8080 ", "localhost:8080"),
        ("127.0.0.1:8080", "127.0.0.1:8080"),
        ("[::1]:9000", "[::1]:9000"),
        ("10.0.0.0/8:443", "10.0.0.0/8:443"),
    ],
)
def test_every_documented_allow_list_form_is_stored_as_the_guard_reads_it(raw, stored):
    assert allow_entry(raw) == stored
    entry = _parse_allow_entry(stored)  # the SSRF guard parses what the settings stored
    assert (entry.port is not None) == (":" in stored and not stored.startswith(("::", "fd00")))


@pytest.mark.parametrize("raw", ["http://crm.local", "crm.local:", "crm.local:http", "a b", "127.0.0.1:0", "x:65536"])
def test_allow_list_entries_that_are_none_of_the_forms_are_refused(raw):
    with pytest.raises(ValueError):
        allow_entry(raw)
