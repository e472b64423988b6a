"""Settings page, data part (AppTest): retention saves with validation, a member's data is found,
exported and erased after confirmation, opt-out words and manual opt-outs."""

from __future__ import annotations

from engine.lifecycle.privacy import contact_counts, list_erasures
from engine.lifecycle.retention import get_retention
from engine.messaging.optout import list_opt_outs
from engine.runner import Runner
from engine.security.auth import system_actor
from engine.uow import unit_of_work
from tests.uow import in_uow

PHONE = "+4915112345678"
PAGE = "pages/settings.py"


def seed_member(studio):
    actor = system_actor(studio["tenant_id"])
    Runner(studio["db"]).ingest(
        studio["tenant_id"],
        {"triggerType": "whatsapp_message", "channel": "whatsapp", "from": PHONE, "content": "Mein Knie tut weh"},
    )
    return actor


def test_retention_is_saved(app_factory, studio):
    at = app_factory("owner", PAGE)
    at.number_input(key="privacy_details_days").set_value(30)
    at.number_input(key="privacy_summary_days").set_value(400)
    at.button(key="FormSubmitter:privacy_retention_form-Save retention").click().run()
    assert not at.exception
    assert any("details for 30 days" in s.value for s in at.success)
    ret = in_uow(studio["db"], get_retention, read_only=True, actor=system_actor(studio["tenant_id"]))
    assert (ret.details_days, ret.summary_days) == (30, 400)


def test_find_export_and_erase_a_member(app_factory, studio):
    actor = seed_member(studio)
    at = app_factory("owner", PAGE)
    at.text_input(key="privacy_contact").input("0151 12345678")
    at.button(key="privacy_find").click().run()
    assert not at.exception
    assert any(PHONE in m.value and "stored row" in m.value for m in at.markdown)
    assert at.get("download_button")
    at.button(key="privacy_erase").click().run()
    assert not at.exception
    confirm = at.button(key="privacy_erase_confirm")
    assert confirm.disabled  # the checkbox first
    at.checkbox(key="privacy_erase_sure").check().run()
    at.button(key="privacy_erase_confirm").click().run()
    assert not at.exception
    assert any("Erased" in s.value for s in at.success)
    with unit_of_work(studio["db"], read_only=True) as uow:
        assert sum(contact_counts(uow=uow, actor=actor, phone=PHONE).values()) == 0
    with unit_of_work(studio["db"], read_only=True) as uow:
        assert len(list_erasures(uow=uow, actor=actor)) == 1


def test_bad_contact_names_the_problem(app_factory):
    at = app_factory("owner", PAGE)
    at.text_input(key="privacy_contact").input("12")
    at.button(key="privacy_find").click().run()
    assert any("phone" in e.value for e in at.error)


def test_manual_opt_out(app_factory, studio):
    at = app_factory("owner", PAGE)
    at.text_input(key="privacy_manual_contact").input(PHONE)
    at.button(key="FormSubmitter:privacy_manual_form-Apply").click().run()
    assert not at.exception
    with unit_of_work(studio["db"], read_only=True) as uow:
        assert [o.contact for o in list_opt_outs(uow=uow, actor=system_actor(studio["tenant_id"]))] == [PHONE]
