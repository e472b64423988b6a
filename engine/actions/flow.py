"""Flow actions: wait, branch, schedule_follow_up."""

from __future__ import annotations

from datetime import timedelta

from engine.actions import StepContext, StepResult, register
from engine.messaging.delivery import default_channel, schedule_follow_up
from engine.tenant_settings import settings_of
from engine.workflow.conditions import EvalContext, evaluate

STUDIO_TEAM = "studio-team"


def _contact(step: StepContext) -> str | None:
    lead = step.context.get("lead") or {}
    return step.trigger.get("from") or lead.get("phone") or lead.get("email")


@register("wait", atomic=True)
def wait(step: StepContext) -> StepResult:
    """Park the execution; the worker resumes it at ``now + delay`` (a durable row)."""
    delay_ms = step.action.config.delay
    until = step.now + timedelta(milliseconds=delay_ms)
    output = {"delayMs": delay_ms, "resumeAt": until.isoformat()}
    if step.dry_run:
        return StepResult(output={**output, "simulated": True, "note": "a dry run reports waits instead of sleeping"})
    return StepResult(output=output, wait_until=until)


@register("branch", atomic=True)
def branch(step: StepContext) -> StepResult:
    """If the branch's conditions hold, jump to its target; else follow the action's own next."""
    local_now = step.now.astimezone(step.tenant["tz"])
    result = evaluate(
        step.action.config.conditions,
        EvalContext(
            step.trigger, local_now, step.context.get("lead"), settings_of(step.tenant.get("settings")).business_hours
        ),
        path=f"actions.{step.action.id}.config.conditions",
    )
    output = {
        "matched": result.passed,
        "explanation": result.explanation,
        "target": step.action.config.next_action_id if result.passed else None,
    }
    if result.passed:
        return StepResult(output=output, next_action_id=step.action.config.next_action_id, jump=True)
    return StepResult(output=output)


@register("schedule_follow_up", atomic=True)
def follow_up(step: StepContext) -> StepResult:
    """Schedule a message for later without blocking the rest of the workflow."""
    cfg = step.action.config
    message = step.render(cfg.message)
    recipient = step.render(cfg.recipient) if cfg.recipient else _contact(step)
    channel = cfg.channel or default_channel(step.trigger, recipient)
    if not recipient:
        # Nobody to write to (e.g. a lead without contact data): a task for the studio team.
        recipient, channel = STUDIO_TEAM, "web"
    due = step.now + timedelta(milliseconds=cfg.delay)
    rendered = {"message": message, "recipient": recipient, "channel": channel, "delay": cfg.delay}
    output = {"scheduledFor": due.isoformat(), "channel": channel, "recipient": recipient, "message": message}
    if step.dry_run:
        return StepResult(output={**output, "simulated": True}, input=rendered)
    assert step.uow is not None  # a local step runs in a unit of work
    follow_up_id = schedule_follow_up(
        step.uow,
        tenant_id=step.tenant["id"],
        execution_id=step.execution_id,
        step_id=step.step_id,
        due_at=due,
        channel=channel,
        recipient=recipient,
        body=message,
        test=step.test,
    )
    return StepResult(output={**output, "followUpId": follow_up_id}, input=rendered)
