"""Settings > Channels: provider fields, write-only secrets, "send a test message", callback URLs.

Page state keys are prefixed ``settings_ch_``. Logic lives in
``engine.services.channel_settings``; this module only lays it out.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from engine.errors import EngineError
from engine.services import channel_settings as cs
from engine.settings import get_settings
from engine.uow import unit_of_work

TITLES = {"whatsapp": "WhatsApp Cloud API", "sms": "Twilio (SMS and calls)", "email": "E-mail (SMTP)"}


def _secret_caption(state: cs.SecretState) -> str:
    if not state.set:
        return "not set"
    return f"set on {state.set_at:%d %b %Y}" + (f" by {state.set_by}" if state.set_by else "") + ", type to replace"


def _channel_form(db, actor, channel: str) -> None:
    with unit_of_work(db, read_only=True) as uow:
        view = cs.get_channel(uow=uow, actor=actor, channel=channel)
    _, fields = cs.CHANNEL_FIELDS[channel]
    # clear_on_submit: typed secrets must not stay in the page (the input would keep the value).
    with st.form(f"settings_ch_form_{channel}", border=False, clear_on_submit=True):
        enabled = st.toggle(
            "Send through this provider",
            value=view.enabled,
            key=f"settings_ch_{channel}_enabled",
            help="Off: messages are only recorded in the outbox.",
        )
        values: dict[str, Any] = {}
        secrets: dict[str, str | None] = {}
        slots: dict[str, Any] = {}
        cols = st.columns(2)
        for i, f in enumerate(fields):
            col = cols[i % 2]
            key = f"settings_ch_{channel}_{f.name}"
            slots[f.name] = col.container()  # error messages appear right above the field
            if f.secret:
                secrets[f.name] = col.text_input(
                    f"{f.label} ({_secret_caption(view.secrets[f.name])})",
                    value="",
                    type="password",
                    key=key,
                    help=f.help or None,
                    placeholder="unchanged" if view.secrets[f.name].set else "",
                )
            elif f.choices:
                current = view.values.get(f.name) or f.default
                values[f.name] = col.selectbox(
                    f.label,
                    f.choices,
                    index=f.choices.index(current) if current in f.choices else 0,
                    key=key,
                    help=f.help or None,
                )
            else:
                current = view.values.get(f.name)
                values[f.name] = col.text_input(
                    f.label, value="" if current is None else str(current), key=key, help=f.help or None
                )
        if st.form_submit_button("Save", type="primary"):
            try:
                with unit_of_work(db) as uow:
                    cs.save_channel(
                        uow=uow, actor=actor, channel=channel, enabled=enabled, values=values, secrets=secrets
                    )
            except EngineError as exc:
                name = str(getattr(exc, "field", "") or "").rsplit(".", 1)[-1]
                slots.get(name, st).error(exc.message, icon="⚠️")
            else:
                st.session_state["settings_ch_saved"] = channel
                st.rerun()  # show the new state ("set on ...") at once
    if st.session_state.get("settings_ch_saved") == channel:
        del st.session_state["settings_ch_saved"]
        st.success("Saved. Secrets are stored encrypted and are not shown again.", icon="✅")
    a, b = st.columns([3, 1], vertical_alignment="bottom")
    to = a.text_input(
        "Send a test message to",
        key=f"settings_ch_{channel}_test_to",
        placeholder="name@example.org" if channel == "email" else "+49 176 ...",
    )
    if b.button("Send test", key=f"settings_ch_{channel}_test"):
        try:
            with st.spinner("Asking the provider..."):
                with unit_of_work(db) as uow:
                    result = cs.send_test_message(uow=uow, actor=actor, channel=channel, recipient=to)
        except EngineError as exc:
            st.error(exc.message, icon="⚠️")
        else:
            (st.success if result.ok else st.error)(f"Provider answer: {result.answer}")


def _callback_urls(db, actor) -> None:
    st.subheader("Callback URLs")
    base = get_settings().public_url
    if not base:
        base = st.text_input(
            "Public address of the API",
            value="https://studio.example.com",
            key="settings_ch_base",
            help="Set STUDIO_PUBLIC_URL on the server to fix it here.",
        )
    with unit_of_work(db) as uow:
        urls = cs.callback_urls(uow=uow, actor=actor, base_url=base)
    st.caption(
        "Paste these into the providers' consoles (the copy button is at the right of each box). "
        "Anyone with a URL can only send signed requests: the signature is checked with your secrets."
    )
    labels = {
        "whatsapp": "Meta > WhatsApp > Configuration > Callback URL (verify token as above)",
        "twilio_sms": "Twilio number > Messaging > A message comes in (HTTP POST)",
        "twilio_message_status": "Twilio messaging service > Status callback URL",
        "twilio_call_status": "Twilio number > Voice > Call status changes",
        "twilio_transcription": "<Record transcribeCallback> of your voice TwiML",
        "email": "Inbound e-mail service (Postmark inbound JSON) > Webhook URL",
        "widget": "Web chat script",
    }
    for key, url in urls.items():
        if key == "widget":
            continue
        st.markdown(f"**{labels[key]}**")
        st.code(url, language=None)


def _web_chat(db, actor, tenant) -> None:
    from engine.inbound.webchat import allowed_origins, save_web_chat

    st.subheader("Web chat")
    st.caption(
        "Put this script on your website; visitors' messages start your web chat workflows and "
        "their replies appear in the chat box."
    )
    base = (
        get_settings().public_url or st.session_state.get("settings_ch_base") or "https://studio.example.com"
    ).rstrip("/")
    with unit_of_work(db) as uow:
        snippet = (
            f'<script src="{base}/widget.js" data-studio="{cs.chat_key(uow=uow, actor=actor)}" '
            'data-title="Chat with us" async></script>'
        )
    st.code(snippet, language="html")
    with st.form("settings_ch_webchat_form", border=False):
        origins = st.text_area(
            "Websites allowed to use the chat (one per line, e.g. https://www.mystudio.de)",
            value="\n".join(allowed_origins(db, actor.tenant_id)),
            key="settings_ch_webchat_origins",
        )
        if st.form_submit_button("Save", type="primary"):
            try:
                with unit_of_work(db) as uow:
                    save_web_chat(uow=uow, actor=actor, allowed_origins=origins.splitlines())
            except EngineError as exc:
                st.error(exc.message, icon="⚠️")
            else:
                st.success("Saved.", icon="✅")


def render(db, actor, tenant) -> None:
    """The Channels section of the settings page."""
    for channel, title in TITLES.items():
        with st.container(border=True, key=f"settings_ch_card_{channel}"):
            st.subheader(title)
            _channel_form(db, actor, channel)
    with st.container(border=True, key="settings_ch_card_webchat"):
        _web_chat(db, actor, tenant)
    with st.container(border=True, key="settings_ch_card_urls"):
        _callback_urls(db, actor)


def render_audit(db, actor, tenant) -> None:
    """The audit log section: who changed which setting when (secrets as "changed")."""
    with unit_of_work(db, read_only=True) as uow:
        rows = cs.list_audit(uow=uow, actor=actor)
    if not rows:
        st.info("No settings changes recorded yet.")
        return
    st.dataframe(
        [
            {
                "When": r.at,
                "Who": r.actor,
                "Area": r.area,
                "What": "; ".join(
                    f"{k}: {v if v == 'changed' else str(v.get('from')) + ' → ' + str(v.get('to'))}"
                    for k, v in r.changes.items()
                ),
            }
            for r in rows
        ],
        hide_index=True,
        width="stretch",
    )
