"""The test console page per role (AppTest over the seeded demo studio)."""

from __future__ import annotations

from engine.services import console, scenarios
from engine.services.console import ConsoleInput, TestContact
from engine.uow import unit_of_work
from tests.app.conftest import actor_for

PAGE = "pages/console.py"


def _texts(at) -> str:
    return "\n".join(
        [str(m.value) for m in at.markdown] + [str(c.value) for c in at.caption] + [e.label for e in at.expander]
    )


def _send(at, text: str, channel: str = "whatsapp"):
    at.selectbox(key="console_channel").set_value(channel)
    at.text_area(key="console_text").input(text)
    at.button(key="FormSubmitter:console_form-Send").click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_owner_sends_hallo_and_sees_every_decision(app_factory, studio):
    at = app_factory("owner", PAGE)
    assert not at.exception, [e.value for e in at.exception]
    _send(at, "Hallo")
    text = _texts(at)
    assert "Hallo" in text  # the member's bubble
    assert "Training Plan Request — skipped: listens for intent training_plan" in text
    assert "After Hours Auto-Reply" in text
    assert "Listening to other triggers (not considered):" in text and "missed call: Missed Call Follow-Up" in text
    assert "Test mode" in text


def test_editor_training_plan_on_voice(app_factory, studio):
    at = app_factory("editor", PAGE)
    _send(at, "Ich möchte einen Trainingsplan", channel="voice")
    text = _texts(at)
    assert "**Intent:** `training_plan`" in text
    assert "✅ Training Plan Request — succeeded" in text
    assert "Dein personalisierter Trainingsplan" in text  # the reply bubble (demo seed; issue 14 adds the plan)


def test_empty_message_is_refused_inline(app_factory, studio):
    at = app_factory("owner", PAGE)
    _send(at, "   ")
    assert any("type a message first" in e.value for e in at.error)


def test_missed_call_then_skip_all_brings_the_follow_up(app_factory, studio):
    at = app_factory("owner", PAGE)
    at.segmented_control(key="console_kind").set_value("missed_call").run()
    at.button(key="FormSubmitter:console_form-Send").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("Missed Call Follow-Up: continue at step send-1" in c.value for c in at.caption)
    assert "Ich habe gesehen" not in _texts(at)
    at.button(key="console_skip_all").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert "Ich habe gesehen, dass du angerufen hast" in _texts(at)


def test_new_conversation_starts_clean(app_factory, studio):
    at = app_factory("owner", PAGE)
    _send(at, "Hallo")
    before = at.session_state["console_contact"]["phone"]
    at.button(key="console_new").click().run()
    assert at.session_state["console_contact"]["phone"] != before
    assert any("No messages yet" in i.value for i in at.info)


def test_analyst_sees_scenarios_read_only(app_factory, studio):
    owner = actor_for(studio, "owner")
    contact = console.new_contact()
    with unit_of_work(studio["db"]) as uow:
        console.send(uow=uow, actor=owner, contact=contact, inp=ConsoleInput(text="Hallo"))
    with unit_of_work(studio["db"], read_only=True) as uow:
        conv = console.conversation(uow=uow, actor=owner, contact=contact)
    with unit_of_work(studio["db"]) as uow:
        sc = scenarios.save_scenario(
            uow=uow,
            actor=owner,
            data={
                "name": "Hallo guard",
                "steps": scenarios.steps_from(conv),
                "expectations": [{"kind": "sent", "contains": "nie gesendet"}],
            },
        )
    with unit_of_work(studio["db"]) as uow:
        scenarios.run_all(uow=uow, actor=owner)
    at = app_factory("analyst", PAGE)
    assert not at.exception, [e.value for e in at.exception]
    assert any(e.label.startswith("❌ Hallo guard · fail") for e in at.expander)
    assert any("nie gesendet" in e.value for e in at.error)
    keys = {b.key for b in at.button}
    assert "console_run_all" not in keys and f"console_sc_del_{sc.id}" not in keys
    assert not list(at.get("form"))  # no way to send
    assert isinstance(contact, TestContact)


def test_owner_saves_and_runs_a_scenario(app_factory, studio):
    at = app_factory("owner", PAGE)
    _send(at, "Hallo")
    at.button(key="console_save").click().run()
    at.text_input(key="console_sc_name").input("Hallo on WhatsApp")
    at.button(key="console_sc_save").click().run()
    assert not at.exception, [e.value for e in at.exception]
    with unit_of_work(studio["db"], read_only=True) as uow:
        assert "Hallo on WhatsApp" in [
            s.name for s in scenarios.list_scenarios(uow=uow, actor=actor_for(studio, "owner"))
        ]
    at.button(key="console_run_all").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(e.label.startswith("✅ Hallo on WhatsApp · pass") for e in at.expander)


def _missed_call_guard(studio):
    owner = actor_for(studio, "owner")
    contact = console.new_contact()
    with unit_of_work(studio["db"]) as uow:
        console.send(uow=uow, actor=owner, contact=contact, inp=ConsoleInput(kind="missed_call"))
    with unit_of_work(studio["db"]) as uow:
        console.fast_forward(uow=uow, actor=owner, contact=contact, all_items=True)
    with unit_of_work(studio["db"], read_only=True) as uow:
        conv = console.conversation(uow=uow, actor=owner, contact=contact)
    with unit_of_work(studio["db"]) as uow:
        scenarios.save_scenario(
            uow=uow,
            actor=owner,
            data={
                "name": "Missed call follow-up",
                "steps": scenarios.steps_from(conv),
                "expectations": [{"kind": "sent", "contains": "angerufen"}],
            },
        )
    from engine import services

    with unit_of_work(studio["db"], read_only=True) as uow:
        return next(w for w in services.list_workflows(uow=uow, actor=owner).items if w.name == "Missed Call Follow-Up")


def test_builder_shows_the_draft_failing_a_scenario_and_asks_before_saving(app_factory, studio):
    from engine import services

    wf = _missed_call_guard(studio)
    owner = actor_for(studio, "owner")
    with unit_of_work(studio["db"], read_only=True) as uow:
        draft = services.get_workflow(uow=uow, actor=owner, workflow_id=wf.id).definition
    at = app_factory("editor")
    at.session_state["builder_workflow_id"] = wf.id
    at.session_state["builder_def"] = draft
    at.switch_page("pages/builder.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("Scenarios: 5 pass, 0 fail" in s.value for s in at.success)  # 4 demo scenarios + this one
    draft = dict(at.session_state["builder_def"])
    draft["actions"] = [dict(a) for a in draft["actions"]]
    draft["actions"][1]["config"] = {"message": "Schön, dass du dich meldest."}
    at.session_state["builder_def"] = draft
    at.session_state["builder_rev"] = at.session_state["builder_rev"] + 1  # widgets start again from the dict
    at.run()
    # This scenario fails on the changed message; the demo's missed-call scenario guards the demo's
    # own missed-call workflow ("Verpasster Anruf ..."), which this draft does not change.
    assert any("Scenarios: 4 pass, 1 fail" in e.value for e in at.error), [e.value for e in at.error]
    at.button(key="builder_save").click().run()
    assert not at.exception, [e.value for e in at.exception]
    with unit_of_work(studio["db"], read_only=True) as uow:
        assert services.get_workflow(uow=uow, actor=owner, workflow_id=wf.id).version == 1  # not saved yet: asks first
    at.button(key="builder_sc_go").click().run()
    assert not at.exception, [e.value for e in at.exception]
    with unit_of_work(studio["db"], read_only=True) as uow:
        assert services.get_workflow(uow=uow, actor=owner, workflow_id=wf.id).version == 2


def test_switching_on_a_workflow_that_fails_a_scenario_asks_first(app_factory, studio):
    from engine import services

    owner = actor_for(studio, "owner")
    with unit_of_work(studio["db"], read_only=True) as uow:
        wf = next(
            w
            for w in services.list_workflows(uow=uow, actor=owner).items
            if w.name == "Verpasster Anruf: WhatsApp nach 5 Minuten"
        )
    with unit_of_work(studio["db"]) as uow:
        services.update_workflow(
            uow=uow,
            actor=owner,
            workflow_id=wf.id,
            changes={
                "actions": [
                    {"id": "wait-1", "type": "wait", "config": {"delay": 300000}, "nextActionId": "send-1"},
                    {"id": "send-1", "type": "send_whatsapp", "config": {"message": "Servus"}, "nextActionId": None},
                ]
            },
        )
    with unit_of_work(studio["db"]) as uow:
        services.set_enabled(uow=uow, actor=owner, workflow_id=wf.id, enabled=False)
    at = app_factory("editor")
    toggle = next(t for t in at.toggle if wf.id in t.key)
    toggle.set_value(True).run()
    assert not at.exception, [e.value for e in at.exception]
    with unit_of_work(studio["db"], read_only=True) as uow:
        assert not services.get_workflow(uow=uow, actor=owner, workflow_id=wf.id).enabled  # asked, not switched
    assert any("Verpasster Anruf" in w.value for w in at.warning)
    at.button(key="workflows_enable_confirm").click().run()
    with unit_of_work(studio["db"], read_only=True) as uow:
        assert services.get_workflow(uow=uow, actor=owner, workflow_id=wf.id).enabled


def test_live_mode_sends_only_after_confirmation(app_factory, studio):
    from sqlmodel import Session, select

    from engine.store.models import EventRecord

    at = app_factory("owner", PAGE)
    at.toggle(key="console_live").set_value(True).run()
    _send(at, "Hallo live")
    with Session(studio["db"]) as s:
        assert s.exec(select(EventRecord)).all() == []  # not yet: the dialog asks first
    at.button(key="console_live_go").click().run()
    assert not at.exception, [e.value for e in at.exception]
    with Session(studio["db"]) as s:
        (event,) = s.exec(select(EventRecord)).all()
    assert event.content == "Hallo live" and not event.is_test
    assert "Live" in _texts(at)


def test_stop_then_start_shows_the_opt_out_and_a_real_one_is_only_mentioned(app_factory, studio):
    """Issue 21: STOP greys the reply with its reason and opts the test conversation out (a banner),
    START opts back in; a real member's opt-out of the same number is mentioned, not applied."""
    from engine.runner import Runner

    at = app_factory("owner", PAGE)
    _send(at, "STOP")
    assert any("This test conversation opted out: the contact wrote STOP" in w.value for w in at.warning)
    assert "Not sent: test conversation opted out" in _texts(at)
    _send(at, "START")
    assert not any("This test conversation opted out" in w.value for w in at.warning)
    assert any("Opt-in word" in s.value for s in at.success)

    phone = at.session_state["console_contact"]["phone"]
    stop = {"triggerType": "whatsapp_message", "channel": "whatsapp", "from": phone, "content": "STOP"}
    Runner(studio["db"]).ingest(studio["tenant_id"], stop)
    at.run()
    assert any("For real this contact opted out" in i.value and "not affected" in i.value for i in at.info)
    assert not any("opted out" in w.value for w in at.warning)
