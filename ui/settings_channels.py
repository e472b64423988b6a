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
from ui import settings_form

TITLES = {"whatsapp": "WhatsApp Cloud API", "sms": "Twilio (SMS and calls)", "email": "E-mail (SMTP)"}


def _secret_caption(state: cs.SecretState) -> str:
    if not state.set:
        return "not set"
    return f"set on {state.set_at:%d %b %Y}" + (f" by {state.set_by}" if state.set_by else "") + ", type to replace"


def _key(channel: str, f: cs.FieldSpec) -> str:
    return settings_form.key(f"settings_ch_form_{channel}", f"settings_ch_{channel}_{f.name}", secret=f.secret)


def _shown(view: cs.ChannelView, fields: tuple[cs.FieldSpec, ...], channel: str) -> dict[str, Any]:
    """The stored channel as its widgets hold it (text fields as text, secrets as empty fields)."""
    shown: dict[str, Any] = {f"settings_ch_{channel}_enabled": view.enabled}
    for f in fields:
        value = "" if f.secret else view.values.get(f.name)
        if f.choices:
            value = value if value in f.choices else (f.default or f.choices[0])
        shown[_key(channel, f)] = "" if value is None else value if f.choices else str(value)
    return shown


def _save_channel(db, actor, channel: str, fields: tuple[cs.FieldSpec, ...]) -> Any:
    def save(changed: dict[str, Any]) -> str:
        enabled = changed.get(f"settings_ch_{channel}_enabled")
        specs = {_key(channel, f): f for f in fields}
        fields_changed = {k: v for k, v in changed.items() if k in specs}
        values = {specs[k].name: v for k, v in fields_changed.items() if not specs[k].secret}
        secrets = {specs[k].name: v for k, v in fields_changed.items() if specs[k].secret and v}
        with unit_of_work(db) as uow:
            cs.save_channel(uow=uow, actor=actor, channel=channel, enabled=enabled, values=values, secrets=secrets)
        names = (["switched " + ("on" if enabled else "off")] if enabled is not None else []) + [
            specs[k].label for k in fields_changed
        ]
        note = " Secrets are stored encrypted and are not shown again." if secrets else ""
        return f"Saved: {', '.join(names)}.{note}"

    return save


def _channel_form(db, actor, channel: str) -> None:
    with unit_of_work(db, read_only=True) as uow:
        view = cs.get_channel(uow=uow, actor=actor, channel=channel)
    _, fields = cs.CHANNEL_FIELDS[channel]
    form = f"settings_ch_form_{channel}"
    # Widgets take the stored values through page state (settings_form.sync): a typed secret is
    # emptied after the save, every other field shows what was saved.
    settings_form.sync(form, _shown(view, fields, channel))
    with st.form(form, border=False):
        st.toggle(
            "Send through this provider",
            key=f"settings_ch_{channel}_enabled",
            help="Off: messages are only recorded in the outbox.",
        )
        slots: dict[str, Any] = {}
        cols = st.columns(2)
        for i, f in enumerate(fields):
            col = cols[i % 2]
            key = _key(channel, f)
            slots[f.name] = col.container()  # error messages appear right above the field
            if f.secret:
                col.text_input(
                    f"{f.label} ({_secret_caption(view.secrets[f.name])})",
                    type="password",
                    key=key,
                    help=f.help or None,
                    placeholder="unchanged" if view.secrets[f.name].set else "",
                )
            elif f.choices:
                col.selectbox(f.label, f.choices, key=key, help=f.help or None)
            else:
                col.text_input(f.label, key=key, help=f.help or None)
        settings_form.save_button(form, "Save", _save_channel(db, actor, channel, fields))
    settings_form.result(form, slots)
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


@st.cache_data(ttl=15, show_spinner=False)
def _endpoint(api_url: str, public_url: str | None) -> cs.EndpointStatus:
    return cs.webhook_endpoint(api_url=api_url, public_url=public_url)


def _webhook_endpoint() -> None:
    """Whether the process that receives provider webhooks (the REST API) is up."""
    conf = get_settings()
    status = _endpoint(conf.api_url, conf.public_url)
    a, b = st.columns([5, 1], vertical_alignment="center")
    up = status.reachable and status.message.startswith("The webhook endpoint is up")
    (a.success if up else a.warning)(status.message, icon="✅" if up else "⚠️")
    if b.button("Check again", key="settings_ch_endpoint_check"):
        _endpoint.clear()
        st.rerun()


def _public_base() -> str:
    """The base of the URLs providers call: STUDIO_PUBLIC_URL, else the API's own address."""
    conf = get_settings()
    return (conf.public_url or conf.api_url).rstrip("/")


def _callback_urls(db, actor) -> None:
    st.subheader("Callback URLs")
    conf = get_settings()
    if not conf.public_url:
        st.warning(
            "**STUDIO_PUBLIC_URL is not set.** The API then checks each Twilio request against the URL the "
            "request arrived at: its scheme, its `Host` header and its path. The URLs below are exactly what "
            f"it verifies when providers call the API directly at {conf.api_url.rstrip('/')}. If providers reach "
            "it at another address, over HTTPS or through a proxy, set STUDIO_PUBLIC_URL to that public address "
            "(scheme and host, no path) for the API and this app and restart them: Twilio signs the URL it "
            "called, and a signature for another URL is refused (403).",
            icon="⚠️",
        )
    with unit_of_work(db) as uow:
        urls = cs.callback_urls(uow=uow, actor=actor, base_url=_public_base())
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
    base = _public_base()
    with unit_of_work(db) as uow:
        snippet = (
            f'<script src="{base}/widget.js" data-studio="{cs.chat_key(uow=uow, actor=actor)}" '
            'data-title="Chat with us" async></script>'
        )
    st.code(snippet, language="html")
    form = "settings_ch_webchat_form"
    settings_form.sync(form, {"settings_ch_webchat_origins": "\n".join(allowed_origins(db, actor.tenant_id))})
    with st.form(form, border=False):
        st.text_area(
            "Websites allowed to use the chat (one per line, e.g. https://www.mystudio.de)",
            key="settings_ch_webchat_origins",
        )

        def save(changed: dict) -> str:
            with unit_of_work(db) as uow:
                saved = save_web_chat(
                    uow=uow, actor=actor, allowed_origins=changed["settings_ch_webchat_origins"].splitlines()
                )
            return f"Saved: {len(saved)} website(s) may use the chat."

        settings_form.save_button(form, "Save", save)
    settings_form.result(form)


def render(db, actor, tenant) -> None:
    """The Channels section of the settings page."""
    with st.container(border=True, key="settings_ch_card_endpoint"):
        st.subheader("Webhook endpoint")
        _webhook_endpoint()
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
