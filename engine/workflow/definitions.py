"""The workflow format: triggers, conditions, actions and events as pydantic v2 models.

The JSON is the spec's (camelCase keys such as ``nextActionId``, lower-snake type values)
and every example of the spec imports unchanged. Each family is a discriminated union on
``type`` so a bad action yields one targeted error instead of one per union member.

Beyond the spec:

* Condition groups ``{"type": "all" | "any", "conditions": [...]}`` and
  ``{"type": "not", "condition": {...}}``, nestable; a plain list of conditions means *all*.
* ``time_range`` accepts ``between`` with ``[start, end]`` hours (``[18, 9]`` wraps midnight:
  18:00-08:59).
* ``day_of_week`` uses JavaScript's numbering: **0 = Sunday, 1 = Monday ... 6 = Saturday**.
* Actions may carry ``retry`` (max attempts, backoff) and ``onError`` (``continue`` | ``stop``).
* Delays (``wait``, ``schedule_follow_up``) are milliseconds, as in the spec.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from engine.workflow.limits import DATE_PATTERN, json_problems, sane_datetime, text_datetime


class Channel(StrEnum):
    """Where a message comes from or goes to."""

    VOICE = "voice"
    WHATSAPP = "whatsapp"
    EMAIL = "email"
    WEB = "web"
    SMS = "sms"


class TriggerType(StrEnum):
    VOICE_CALL = "voice_call"
    WHATSAPP_MESSAGE = "whatsapp_message"
    EMAIL_RECEIVED = "email_received"
    WEB_CHAT = "web_chat"
    SMS_RECEIVED = "sms_received"
    INTENT_DETECTED = "intent_detected"
    TIME_BASED = "time_based"
    MISSED_CALL = "missed_call"
    LEAD_CREATED = "lead_created"
    BOOKING_CREATED = "booking_created"


class ConditionType(StrEnum):
    KEYWORD_MATCH = "keyword_match"
    INTENT_MATCH = "intent_match"
    SENDER_MATCH = "sender_match"
    TIME_RANGE = "time_range"
    DAY_OF_WEEK = "day_of_week"
    CONFIDENCE_THRESHOLD = "confidence_threshold"
    CHANNEL_MATCH = "channel_match"
    CUSTOM_FIELD = "custom_field"


class GroupType(StrEnum):
    ALL = "all"
    ANY = "any"
    NOT = "not"


class ActionType(StrEnum):
    SEND_MESSAGE = "send_message"
    SEND_WHATSAPP = "send_whatsapp"
    SEND_EMAIL = "send_email"
    SEND_SMS = "send_sms"
    ASK_AI = "ask_ai"
    GENERATE_WORKOUT_PLAN = "generate_workout_plan"
    SCHEDULE_FOLLOW_UP = "schedule_follow_up"
    CREATE_LEAD = "create_lead"
    UPDATE_LEAD = "update_lead"
    CALL_WEBHOOK = "call_webhook"
    WAIT = "wait"
    BRANCH = "branch"


#: Intents the built-in classifier knows. Trigger and condition configs accept any
#: lower-snake intent (a configured AI provider may know more); validation warns on others.
KNOWN_INTENTS = (
    "training_plan",
    "booking",
    "cancellation",
    "pricing",
    "opening_hours",
    "trial_class",
    "membership",
    "complaint",
    "greeting",
    "other",
)

#: Which trigger types carry an inbound message on a channel.
MESSAGE_TRIGGER_CHANNELS: dict[str, Channel] = {
    TriggerType.VOICE_CALL: Channel.VOICE,
    TriggerType.WHATSAPP_MESSAGE: Channel.WHATSAPP,
    TriggerType.EMAIL_RECEIVED: Channel.EMAIL,
    TriggerType.WEB_CHAT: Channel.WEB,
    TriggerType.SMS_RECEIVED: Channel.SMS,
}

#: Operators per condition type, exactly the spec's table (+ ``between`` for time_range).
OPERATORS: dict[str, tuple[str, ...]] = {
    "keyword_match": ("equals", "contains", "starts_with", "ends_with"),
    "intent_match": ("equals", "in", "not_in"),
    "sender_match": ("equals", "contains"),
    "time_range": ("greater_than", "less_than", "between", "outside_business_hours", "within_business_hours"),
    "day_of_week": ("equals", "in"),
    "confidence_threshold": ("greater_than", "less_than"),
    "channel_match": ("equals", "in"),
    "custom_field": ("equals", "contains", "greater_than", "less_than"),
}

MS_PER_DAY = 86_400_000
#: Longest ``wait`` we accept. Longer pauses are better modelled as a follow-up or a cron trigger.
MAX_WAIT_MS = 90 * MS_PER_DAY
#: Longest ``schedule_follow_up`` delay.
MAX_FOLLOW_UP_MS = 365 * MS_PER_DAY

Intent = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")]
Template = Annotated[str, Field(max_length=20_000)]


class Model(BaseModel):
    """Base of every definition model: camelCase JSON, unknown keys rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_enum_values=True,
    )


# --------------------------------------------------------------------------- triggers


class ChannelTriggerConfig(Model):
    channel: Channel | None = None
    #: Optional filter: only messages classified with this intent.
    intent: Intent | None = None


class IntentTriggerConfig(Model):
    intent: Intent
    channel: Channel | None = None


class TimeTriggerConfig(Model):
    #: Five-field cron expression, evaluated in the tenant's timezone.
    schedule: str = Field(min_length=1, max_length=200)


class EmptyConfig(Model):
    pass


class VoiceCallTrigger(Model):
    type: Literal["voice_call"]
    config: ChannelTriggerConfig = Field(default_factory=ChannelTriggerConfig)


class WhatsAppMessageTrigger(Model):
    type: Literal["whatsapp_message"]
    config: ChannelTriggerConfig = Field(default_factory=ChannelTriggerConfig)


class EmailReceivedTrigger(Model):
    type: Literal["email_received"]
    config: ChannelTriggerConfig = Field(default_factory=ChannelTriggerConfig)


class WebChatTrigger(Model):
    type: Literal["web_chat"]
    config: ChannelTriggerConfig = Field(default_factory=ChannelTriggerConfig)


class SmsReceivedTrigger(Model):
    type: Literal["sms_received"]
    config: ChannelTriggerConfig = Field(default_factory=ChannelTriggerConfig)


class IntentDetectedTrigger(Model):
    type: Literal["intent_detected"]
    config: IntentTriggerConfig


class TimeBasedTrigger(Model):
    type: Literal["time_based"]
    config: TimeTriggerConfig


class MissedCallTrigger(Model):
    type: Literal["missed_call"]
    config: EmptyConfig = Field(default_factory=EmptyConfig)


class LeadCreatedTrigger(Model):
    type: Literal["lead_created"]
    config: EmptyConfig = Field(default_factory=EmptyConfig)


class BookingCreatedTrigger(Model):
    type: Literal["booking_created"]
    config: EmptyConfig = Field(default_factory=EmptyConfig)


Trigger = Annotated[
    (
        VoiceCallTrigger
        | WhatsAppMessageTrigger
        | EmailReceivedTrigger
        | WebChatTrigger
        | SmsReceivedTrigger
        | IntentDetectedTrigger
        | TimeBasedTrigger
        | MissedCallTrigger
        | LeadCreatedTrigger
        | BookingCreatedTrigger
    ),
    Field(discriminator="type"),
]

# --------------------------------------------------------------------------- conditions


def _compact_number(value: float) -> float | int:
    # Export ``9`` as written, not ``9.0``: an import -> export round trip keeps the JSON text.
    return int(value) if float(value).is_integer() else value


#: A float that exports whole numbers without ``.0``.
Number = Annotated[float, PlainSerializer(_compact_number, when_used="json")]
Hour = Annotated[Number, Field(ge=0, le=24)]
Weekday = Annotated[int, Field(ge=0, le=6, description="0 = Sunday ... 6 = Saturday")]
Scalar = bool | int | float | str


class KeywordMatch(Model):
    """The message text equals / contains / starts or ends with the value (case-insensitive)."""

    type: Literal["keyword_match"]
    operator: Literal["equals", "contains", "starts_with", "ends_with"]
    #: One keyword, or a list meaning "any of these".
    value: (
        Annotated[str, Field(min_length=1)] | Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)]
    )
    case_sensitive: bool = False


class IntentMatch(Model):
    type: Literal["intent_match"]
    operator: Literal["equals", "in", "not_in"]
    value: Intent | Annotated[list[Intent], Field(min_length=1)]


class SenderMatch(Model):
    type: Literal["sender_match"]
    operator: Literal["equals", "contains"]
    value: Annotated[str, Field(min_length=1)]


class TimeRange(Model):
    """The hour of day in the tenant's timezone; ``between`` takes ``[start, end)``.

    ``outside_business_hours`` / ``within_business_hours`` (no ``value``) use the studio's
    business hours and closed days from its settings.
    """

    type: Literal["time_range"]
    operator: Literal["greater_than", "less_than", "between", "outside_business_hours", "within_business_hours"]
    value: Hour | Annotated[list[Hour], Field(min_length=2, max_length=2)] | None = None

    @model_validator(mode="after")
    def _value_needed(self) -> TimeRange:
        if self.value is None and not self.operator.endswith("business_hours"):
            raise ValueError(f"{self.operator} needs a value (an hour, or [start, end] for between)")
        return self


class DayOfWeek(Model):
    """The weekday in the tenant's timezone: 0 = Sunday, 1 = Monday ... 6 = Saturday."""

    type: Literal["day_of_week"]
    operator: Literal["equals", "in"]
    value: Weekday | Annotated[list[Weekday], Field(min_length=1)]


class ConfidenceThreshold(Model):
    type: Literal["confidence_threshold"]
    operator: Literal["greater_than", "less_than"]
    value: Annotated[Number, Field(ge=0, le=1)]


class ChannelMatch(Model):
    type: Literal["channel_match"]
    operator: Literal["equals", "in"]
    value: Channel | Annotated[list[Channel], Field(min_length=1)]


class CustomField(Model):
    """Compares ``customFields[field]`` of the event (or lead) with the value."""

    type: Literal["custom_field"]
    operator: Literal["equals", "contains", "greater_than", "less_than"]
    field: Annotated[str, Field(min_length=1, max_length=100)]
    value: Scalar


class AllGroup(Model):
    """True when every condition in it is true (an empty group is true)."""

    type: Literal["all"]
    conditions: list[Condition] = Field(default_factory=list)


class AnyGroup(Model):
    """True when at least one condition in it is true."""

    type: Literal["any"]
    conditions: list[Condition] = Field(min_length=1)


class NotGroup(Model):
    """True when its condition is false."""

    type: Literal["not"]
    condition: Condition


LeafCondition = (
    KeywordMatch | IntentMatch | SenderMatch | TimeRange | DayOfWeek | ConfidenceThreshold | ChannelMatch | CustomField
)

Condition = Annotated[
    LeafCondition | AllGroup | AnyGroup | NotGroup,
    Field(discriminator="type"),
]

# --------------------------------------------------------------------------- actions

Delay = Annotated[int, Field(ge=0, description="milliseconds")]


class RetryPolicy(Model):
    """Retry a failed action with exponential backoff and jitter (waits are durable rows)."""

    max_attempts: Annotated[int, Field(ge=1, le=10)] = 3
    #: First backoff in seconds; doubles per attempt, capped at ``maxBackoff``.
    backoff: Annotated[float, Field(gt=0, le=3600)] = 30.0
    max_backoff: Annotated[float, Field(gt=0, le=86_400)] = 3600.0


class SendMessageConfig(Model):
    message: Template
    recipient: str | None = None
    channel: Channel | None = None


class ChannelMessageConfig(Model):
    message: Template
    recipient: str | None = None


class SendEmailConfig(Model):
    message: Template
    recipient: str | None = None
    subject: Template | None = None


class AskAiConfig(Model):
    prompt: Template
    channel: Channel | None = None


class WorkoutPlanConfig(Model):
    """All optional: values missing here come from trigger data or the lead, else defaults."""

    goal: str | None = None
    level: str | None = None
    days_per_week: Annotated[int, Field(ge=1, le=6)] | None = None
    minutes_per_session: Annotated[int, Field(ge=15, le=120)] | None = None
    equipment: list[str] | None = None
    language: Literal["de", "en"] | None = None


class FollowUpConfig(Model):
    delay: Delay
    message: Template
    channel: Channel | None = None
    recipient: str | None = None


class CreateLeadConfig(Model):
    name: Template
    email: str | None = None
    phone: str | None = None
    source: str | None = None
    notes: str | None = None
    custom_fields: dict[str, Any] | None = None


class UpdateLeadConfig(Model):
    #: Lead id (may be a template such as ``{{trigger.leadId}}``); empty = the trigger's sender.
    lead_id: str | None = None
    updates: dict[str, Any] = Field(default_factory=dict)


class CallWebhookConfig(Model):
    webhook_url: Annotated[str, Field(min_length=1, max_length=2048)]
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] | None = None
    headers: dict[str, str] | None = None
    body: Any = None
    #: Seconds.
    timeout: Annotated[float, Field(gt=0, le=60)] | None = None


class WaitConfig(Model):
    delay: Delay


class BranchConfig(Model):
    conditions: list[Condition] = Field(default_factory=list)
    next_action_id: str | None = None


ActionId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_\-]*$")]


class ActionBase(Model):
    id: ActionId
    #: The next action's id; ``null`` ends the run; absent = the next action in the list.
    next_action_id: str | None = None
    retry: RetryPolicy | None = None
    #: ``continue`` (default, as the spec) or ``stop`` the run when this action fails.
    on_error: Literal["continue", "stop"] | None = None
    label: Annotated[str, Field(max_length=200)] | None = None

    @property
    def has_explicit_next(self) -> bool:
        """Whether ``nextActionId`` was given (even as ``null``)."""
        return "next_action_id" in self.model_fields_set

    @model_serializer(mode="wrap")
    def _drop_implicit_next(self, handler):
        data = handler(self)
        if not isinstance(data, dict):
            return data
        if not self.has_explicit_next:
            data.pop("nextActionId", None)
            data.pop("next_action_id", None)
        # The spec's key order (id, type, config, nextActionId, ...), so exports diff cleanly.
        first = [k for k in ("id", "type", "config", "nextActionId", "next_action_id") if k in data]
        return {**{k: data[k] for k in first}, **{k: v for k, v in data.items() if k not in first}}


class SendMessageAction(ActionBase):
    type: Literal["send_message"]
    config: SendMessageConfig


class SendWhatsAppAction(ActionBase):
    type: Literal["send_whatsapp"]
    config: ChannelMessageConfig


class SendEmailAction(ActionBase):
    type: Literal["send_email"]
    config: SendEmailConfig


class SendSmsAction(ActionBase):
    type: Literal["send_sms"]
    config: ChannelMessageConfig


class AskAiAction(ActionBase):
    type: Literal["ask_ai"]
    config: AskAiConfig


class GenerateWorkoutPlanAction(ActionBase):
    type: Literal["generate_workout_plan"]
    config: WorkoutPlanConfig = Field(default_factory=WorkoutPlanConfig)


class ScheduleFollowUpAction(ActionBase):
    type: Literal["schedule_follow_up"]
    config: FollowUpConfig


class CreateLeadAction(ActionBase):
    type: Literal["create_lead"]
    config: CreateLeadConfig


class UpdateLeadAction(ActionBase):
    type: Literal["update_lead"]
    config: UpdateLeadConfig


class CallWebhookAction(ActionBase):
    type: Literal["call_webhook"]
    config: CallWebhookConfig


class WaitAction(ActionBase):
    type: Literal["wait"]
    config: WaitConfig


class BranchAction(ActionBase):
    type: Literal["branch"]
    config: BranchConfig


Action = Annotated[
    (
        SendMessageAction
        | SendWhatsAppAction
        | SendEmailAction
        | SendSmsAction
        | AskAiAction
        | GenerateWorkoutPlanAction
        | ScheduleFollowUpAction
        | CreateLeadAction
        | UpdateLeadAction
        | CallWebhookAction
        | WaitAction
        | BranchAction
    ),
    Field(discriminator="type"),
]

# --------------------------------------------------------------------------- workflow


class WorkflowDefinition(Model):
    """What an owner builds: trigger -> conditions -> actions."""

    name: Annotated[str, Field(min_length=1, max_length=200)]
    description: Annotated[str, Field(max_length=2000)] | None = None
    enabled: bool = True
    trigger: Trigger
    conditions: list[Condition] = Field(default_factory=list)
    actions: list[Action] = Field(min_length=1)

    def to_json(self) -> dict[str, Any]:
        """The definition as the spec's JSON (camelCase keys, unset optional keys left out)."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)

    def action(self, action_id: str) -> Any:
        """The action with this id, or ``None``."""
        return next((a for a in self.actions if a.id == action_id), None)


class Event(Model):
    """An inbound event: a message, a missed call, a new lead or booking, a cron tick.

    A message trigger implies its channel (``MESSAGE_TRIGGER_CHANNELS``): left out, it is filled
    in (the WhatsApp 24-hour window looks for the member's WhatsApp messages by channel); one
    that contradicts the trigger type is refused, naming the field.
    """

    trigger_type: TriggerType
    channel: Annotated[Channel | None, Field(validate_default=True)] = None
    content: Annotated[str, Field(max_length=100_000)] | None = None
    from_: Annotated[str | None, Field(max_length=320)] = Field(default=None, alias="from")
    intent: Intent | None = None
    intent_confidence: Annotated[float, Field(ge=0, le=1)] | None = None
    lead_id: str | None = None
    booking_id: str | None = None
    custom_fields: dict[str, Any] = Field(default_factory=dict)
    data: dict[str, Any] = Field(default_factory=dict)
    received_at: Annotated[
        datetime | None,
        BeforeValidator(text_datetime),
        AfterValidator(sane_datetime),
        Field(json_schema_extra={"pattern": DATE_PATTERN}),
    ] = None
    idempotency_key: Annotated[str, Field(min_length=1, max_length=200)] | None = None

    @field_validator("channel")
    @classmethod
    def _channel_of_trigger(cls, channel: str | None, info: ValidationInfo) -> str | None:
        trigger = info.data.get("trigger_type")
        implied = MESSAGE_TRIGGER_CHANNELS.get(trigger) if trigger else None
        if implied is None or channel == implied:
            return channel
        if channel is None:
            return str(implied)
        raise PydanticCustomError(
            "channel_mismatch",
            "a {trigger} event comes in on the {implied} channel, not {channel}: send {implied} or leave it out",
            {"trigger": str(trigger), "implied": str(implied), "channel": str(channel)},
        )

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        """Nothing a backend cannot store: NUL characters, NaN / Infinity, too deep JSON."""
        if isinstance(data, dict):
            for where, message in json_problems(data):
                raise ValueError(f"{where}: {message}" if where else message)
        return data


AllGroup.model_rebuild()
AnyGroup.model_rebuild()
NotGroup.model_rebuild()
BranchConfig.model_rebuild()
WorkflowDefinition.model_rebuild()

TRIGGER_MODELS = {get_args(m.model_fields["type"].annotation)[0]: m for m in get_args(get_args(Trigger)[0])}
CONDITION_MODELS = {get_args(m.model_fields["type"].annotation)[0]: m for m in get_args(LeafCondition)}
ACTION_MODELS = {get_args(m.model_fields["type"].annotation)[0]: m for m in get_args(get_args(Action)[0])}


def workflow_json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of a workflow definition, for editors and the API."""
    schema = WorkflowDefinition.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema.setdefault("title", "Studio Automations workflow")
    return schema
