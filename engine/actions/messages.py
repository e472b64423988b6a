"""Message actions: send_message, send_whatsapp, send_email, send_sms -> the outbox."""

from __future__ import annotations

from engine.actions import StepContext, StepResult, register
from engine.messaging.delivery import default_channel, queue_message


def _send(step: StepContext, channel: str | None) -> StepResult:
    cfg = step.action.config
    body = step.render(cfg.message)
    recipient = step.render(cfg.recipient) if cfg.recipient else step.trigger.get("from")
    fields = cfg.__dict__  # declared fields only; getattr() of a missing one raises inside pydantic (slow)
    channel = channel or fields.get("channel") or default_channel(step.trigger, recipient)
    subject = step.render(fields["subject"]) if fields.get("subject") else None
    rendered = {
        "message": body,
        "recipient": recipient,
        "channel": channel,
        **({"subject": subject} if subject else {}),
    }
    if step.dry_run:
        return StepResult(output={**rendered, "status": "simulated", "simulated": True}, input=rendered)
    assert step.uow is not None  # a local step runs in a unit of work
    output = queue_message(
        step.uow,
        tenant=step.tenant,
        execution_id=step.execution_id,
        step_id=step.step_id,
        channel=channel,
        recipient=recipient,
        body=body,
        subject=subject,
        now=step.now,
        trigger=step.trigger,
        test=step.test,
    )
    return StepResult(output=output, input=rendered)


@register("send_message", atomic=True)
def send_message(step: StepContext) -> StepResult:
    return _send(step, None)


@register("send_whatsapp", atomic=True)
def send_whatsapp(step: StepContext) -> StepResult:
    return _send(step, "whatsapp")


@register("send_email", atomic=True)
def send_email(step: StepContext) -> StepResult:
    return _send(step, "email")


@register("send_sms", atomic=True)
def send_sms(step: StepContext) -> StepResult:
    return _send(step, "sms")
