"""Issue 14 in AppTest: safe defaults, plain messages next to fields, variables checked
against the trigger, templates added as drafts, deep links into the builder, sessions."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from engine import services
from engine.demo.seed import spec_examples
from engine.security import auth
from engine.uow import unit_of_work
from tests.app.conftest import APP, PASSWORD, actor_for


def _key(at: AppTest, suffix: str) -> str:
    return f"builder_{at.session_state['builder_rev']}_{suffix}"


def _texts(at: AppTest) -> list[str]:
    return [e.value for e in at.error] + [w.value for w in at.warning]


def _add_action(at: AppTest, action_type: str) -> None:
    at.selectbox(key=_key(at, "actions_newtype")).set_value(action_type)
    at.button(key=_key(at, "actions_add")).click().run()
    assert not at.exception, [e.value for e in at.exception]


def _add_condition(at: AppTest, ctype: str, prefix: str = "cond") -> None:
    at.selectbox(key=_key(at, f"{prefix}_newtype")).set_value(ctype)
    at.button(key=_key(at, f"{prefix}_add")).click().run()
    assert not at.exception, [e.value for e in at.exception]


def test_a_new_workflow_is_a_whatsapp_draft(app_factory, studio):
    at = app_factory("owner", "pages/builder.py")
    definition = at.session_state["builder_def"]
    assert definition["trigger"]["type"] == "whatsapp_message" and definition["enabled"] is False
    toggle = at.toggle(key=_key(at, "basics_enabled"))
    assert toggle.label == "Turn on when saved" and toggle.value is False
    at.text_input(key=_key(at, "basics_name")).input("Hallo beantworten")
    at.run()
    _add_action(at, "send_whatsapp")
    at.text_area(key=_key(at, "actions_0_send_whatsapp_message")).input("Hallo! Wie können wir helfen?")
    at.run()
    at.button(key="builder_save").click().run()
    with unit_of_work(studio["db"], read_only=True) as uow:
        stored = services.get_workflow(
            uow=uow, actor=actor_for(studio, "owner"), workflow_id=at.session_state["builder_workflow_id"]
        )
    assert stored.enabled is False
    assert any("off (a draft)" in s.value for s in at.success)


def test_new_workflow_is_a_clear_action_and_clears_the_builder(app_factory):
    at = app_factory("owner", "pages/builder.py")
    labels = [b.label for b in at.button]
    assert "New workflow" in labels and "Start over" not in labels
    at.text_input(key=_key(at, "basics_name")).input("Something")
    at.run()
    at.button(key="builder_new").click().run()
    assert at.session_state["builder_def"]["name"] == ""


def test_a_new_intent_condition_has_no_intent_picked(app_factory):
    at = app_factory("owner", "pages/builder.py")
    _add_condition(at, "intent_match")
    condition = at.session_state["builder_def"]["conditions"][0]
    assert condition.get("value") is None
    assert any("Pick the intent this condition looks for." in t for t in _texts(at))


def test_problems_read_as_sentences_without_validator_text(app_factory):
    at = app_factory("owner", "pages/builder.py")
    _add_action(at, "send_whatsapp")
    texts = _texts(at)
    assert any("Give the workflow a name" in t for t in texts)
    assert any("The message: write what the member should receive." in t for t in texts)
    joined = " ".join(texts)
    for raw in ("should have at least", "List should", "String should", "after validation", "name name"):
        assert raw not in joined
    # the summary names the place in the form's words, not a JSON path
    assert any("Step 1 (send-1) · Message" in t for t in texts) and "actions[0]" not in joined


def test_an_empty_group_is_a_problem_before_saving(app_factory):
    at = app_factory("owner", "pages/builder.py")
    _add_condition(at, "any")
    assert any("group is empty" in t for t in _texts(at))
    assert at.button(key="builder_save").disabled


def test_a_group_shows_what_is_inside_in_the_review(app_factory):
    at = app_factory("owner", "pages/builder.py")
    _add_condition(at, "any")
    _add_condition(at, "keyword_match", prefix="cond_0_any")
    at.text_input(key=_key(at, "cond_0_any_0_keyword_match_contains_value")).input("preis")
    at.run()
    _add_condition(at, "intent_match", prefix="cond_0_any")
    at.selectbox(key=_key(at, "cond_0_any_1_intent_match_equals_value")).set_value("pricing")
    at.run()
    assert not at.exception
    adds = [s.label for s in at.selectbox if s.label.startswith("Add a condition")]
    assert adds.count("Add a condition") == 1 and adds.count("Add a condition to this group") == 1
    assert any("(keyword “preis” or intent is pricing)" in m.value for m in at.markdown)


def test_variables_are_checked_against_the_trigger_with_a_suggestion(app_factory):
    at = app_factory("owner", "pages/builder.py")
    _add_action(at, "send_whatsapp")
    at.text_area(key=_key(at, "actions_0_send_whatsapp_message")).input("Hallo {{trigger.name}} / {{lead.vorname}}")
    at.run()
    warnings = [w.value for w in at.warning]
    assert any("not something a WhatsApp message provides" in w and "Did you mean trigger.from?" in w for w in warnings)
    assert any("Did you mean lead.name?" in w for w in warnings)
    offered = " ".join(m.value for m in at.markdown)
    assert "{{trigger.from}}" in offered and "{{trigger.name}}" not in offered


def test_the_whatsapp_trigger_offers_no_other_channel(app_factory):
    at = app_factory("owner", "pages/builder.py")
    keys = [s.key for s in at.selectbox]
    assert not any(k and k.endswith("whatsapp_message_channel") for k in keys)
    channel = at.text_input(key=_key(at, "trigger_whatsapp_message_own_channel"))
    assert channel.disabled and "WhatsApp" in channel.value


def test_a_reply_the_trigger_cannot_answer_on_is_a_problem(app_factory):
    at = app_factory("owner", "pages/builder.py")
    at.selectbox(key=_key(at, "trigger_type")).set_value("email_received").run()
    _add_action(at, "send_whatsapp")
    assert any("is an e-mail address, which cannot get whatsapp" in e.value for e in at.error)


def test_adding_a_template_saves_a_draft_and_links_to_the_builder(app_factory, studio):
    at = app_factory("owner", "pages/templates.py")
    at.button(key="templates_add_0").click().run()
    added = at.session_state["templates_added"]
    with unit_of_work(studio["db"], read_only=True) as uow:
        stored = services.get_workflow(uow=uow, actor=actor_for(studio, "owner"), workflow_id=added["id"])
    assert stored.enabled is False and stored.name == spec_examples()[0]["name"]
    assert any("is **off**" in s.value for s in at.success)
    assert at.get("page_link")


def test_a_link_with_an_id_opens_that_workflow_in_the_builder(app_factory, studio):
    owner = actor_for(studio, "owner")
    with unit_of_work(studio["db"], read_only=True) as uow:
        wf = services.list_workflows(uow=uow, actor=owner, search="Missed Call").items[0]
    at = AppTest.from_file(APP, default_timeout=60)
    fresh = app_factory("owner")
    for k in ("auth_actor", "auth_user", "auth_tenants", "auth_tenant_name"):
        at.session_state[k] = fresh.session_state[k]
    at.query_params["id"] = wf.id
    at.switch_page("pages/builder.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.session_state["builder_workflow_id"] == wf.id
    assert at.title[0].value.startswith("Edit · Missed Call")


def test_a_link_to_another_studios_workflow_opens_nothing(app_factory, studio):
    with unit_of_work(studio["db"]) as uow:
        other = services.create_tenant(uow=uow, slug="rival", name="Rival Gym", timezone="Europe/Berlin")
    with unit_of_work(studio["db"]) as uow:
        foreign = services.create_workflow(uow=uow, actor=auth.system_actor(other.id), data=spec_examples()[0])
    at = AppTest.from_file(APP, default_timeout=60)
    fresh = app_factory("owner")
    for k in ("auth_actor", "auth_user", "auth_tenants", "auth_tenant_name"):
        at.session_state[k] = fresh.session_state[k]
    at.query_params["id"] = foreign.id
    at.switch_page("pages/builder.py").run()
    assert any("does not exist in this studio" in e.value for e in at.error)
    assert at.session_state["builder_workflow_id"] is None


def test_signing_in_starts_a_server_session_and_signing_out_ends_it(studio):
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.text_input(key="login_email").input("owner@demo.studio")
    at.text_input(key="login_password").input(PASSWORD)
    at.button[0].click().run()
    token = at.session_state["auth_token"]
    with unit_of_work(studio["db"], read_only=True) as uow:
        assert auth.resume_session(uow=uow, token=token)[2] == studio["tenant_id"]  # the studio is remembered
    at.button(key="auth_logout").click().run()
    with unit_of_work(studio["db"], read_only=True) as uow:
        assert auth.resume_session(uow=uow, token=token) is None


def test_ended_sessions_sign_the_open_tab_out(studio, monkeypatch):
    from ui import session

    monkeypatch.setattr(session, "RECHECK_SECONDS", 0)
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.text_input(key="login_email").input("owner@demo.studio")
    at.text_input(key="login_password").input(PASSWORD)
    at.button[0].click().run()
    assert at.session_state["auth_actor"] is not None
    with unit_of_work(studio["db"]) as uow:
        auth.end_sessions(uow=uow, user_id=studio["user_ids"]["owner"])  # e.g. the user was removed
    at.run()
    assert "auth_actor" not in at.session_state
    assert at.text_input(key="login_email")


def test_the_on_error_select_has_a_label(app_factory):
    at = app_factory("owner", "pages/builder.py")
    _add_action(at, "wait")
    select = at.selectbox(key=_key(at, "actions_0_wait_onerror"))
    assert select.label == "When this action fails" and select.label_visibility != "collapsed"


def test_a_new_tab_with_the_session_cookie_is_signed_in_and_a_forged_one_is_not(studio, monkeypatch):
    from ui import session

    with unit_of_work(studio["db"]) as uow:
        token = auth.start_session(uow=uow, user_id=studio["user_ids"]["editor"], tenant_id=studio["tenant_id"])
    monkeypatch.setattr(session, "_cookie_token", lambda: token)  # what st.context.cookies holds after a reload
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert (
        at.session_state["auth_actor"].role == "editor"
        and at.session_state["auth_actor"].tenant_id == studio["tenant_id"]
    )
    assert any(t.value == "Workflows" for t in at.title)

    monkeypatch.setattr(session, "_cookie_token", lambda: token + "x")
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert "auth_actor" not in at.session_state and at.text_input(key="login_email")
