"""Human labels and icons for trigger, condition and action types (one place, used everywhere)."""

from __future__ import annotations

from engine.workflow.definitions import ActionType, Channel, ConditionType, TriggerType

TRIGGERS: dict[str, tuple[str, str]] = {
    TriggerType.VOICE_CALL: ("📞", "Voice call"),
    TriggerType.WHATSAPP_MESSAGE: ("💬", "WhatsApp message"),
    TriggerType.EMAIL_RECEIVED: ("✉️", "E-mail received"),
    TriggerType.WEB_CHAT: ("🌐", "Web chat"),
    TriggerType.SMS_RECEIVED: ("📱", "SMS received"),
    TriggerType.INTENT_DETECTED: ("🎯", "Intent detected"),
    TriggerType.TIME_BASED: ("⏰", "Schedule"),
    TriggerType.MISSED_CALL: ("📵", "Missed call"),
    TriggerType.LEAD_CREATED: ("🌱", "New lead"),
    TriggerType.BOOKING_CREATED: ("📅", "New booking"),
}

ACTIONS: dict[str, tuple[str, str]] = {
    ActionType.SEND_MESSAGE: ("📨", "Send message"),
    ActionType.SEND_WHATSAPP: ("💬", "Send WhatsApp"),
    ActionType.SEND_EMAIL: ("✉️", "Send e-mail"),
    ActionType.SEND_SMS: ("📱", "Send SMS"),
    ActionType.ASK_AI: ("✨", "Ask the AI"),
    ActionType.GENERATE_WORKOUT_PLAN: ("🏋️", "Workout plan"),
    ActionType.SCHEDULE_FOLLOW_UP: ("🔔", "Schedule follow-up"),
    ActionType.CREATE_LEAD: ("🌱", "Create lead"),
    ActionType.UPDATE_LEAD: ("✏️", "Update lead"),
    ActionType.CALL_WEBHOOK: ("🔗", "Call webhook"),
    ActionType.WAIT: ("⏳", "Wait"),
    ActionType.BRANCH: ("🔀", "Branch"),
}

CONDITIONS: dict[str, str] = {
    ConditionType.KEYWORD_MATCH: "Keyword in message",
    ConditionType.INTENT_MATCH: "Detected intent",
    ConditionType.SENDER_MATCH: "Sender",
    ConditionType.TIME_RANGE: "Time of day",
    ConditionType.DAY_OF_WEEK: "Day of week",
    ConditionType.CONFIDENCE_THRESHOLD: "Intent confidence",
    ConditionType.CHANNEL_MATCH: "Channel",
    ConditionType.CUSTOM_FIELD: "Custom field",
    "all": "Group: all of",
    "any": "Group: any of",
    "not": "Group: not",
}

OPERATOR_LABELS = {
    "equals": "is",
    "contains": "contains",
    "starts_with": "starts with",
    "ends_with": "ends with",
    "in": "is one of",
    "not_in": "is none of",
    "greater_than": "is after / above",
    "less_than": "is before / below",
    "between": "is between",
    "outside_business_hours": "is outside business hours",
    "within_business_hours": "is within business hours",
}

CHANNELS: dict[str, str] = {
    Channel.VOICE: "📞 Voice",
    Channel.WHATSAPP: "💬 WhatsApp",
    Channel.EMAIL: "✉️ E-mail",
    Channel.WEB: "🌐 Web chat",
    Channel.SMS: "📱 SMS",
}

#: 0 = Sunday ... 6 = Saturday, as JavaScript counts (the workflow format's numbering).
WEEKDAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]

ROLE_LABELS = {"owner": "Owner", "editor": "Editor", "analyst": "Analyst"}


def trigger_label(trigger_type: str) -> str:
    icon, label = TRIGGERS.get(trigger_type, ("❔", trigger_type))
    return f"{icon} {label}"


def action_label(action_type: str) -> str:
    icon, label = ACTIONS.get(action_type, ("❔", action_type))
    return f"{icon} {label}"


def intent_label(intent: str) -> str:
    return intent.replace("_", " ").capitalize()


def hour_label(hour: float) -> str:
    whole = int(hour)
    return f"{whole:02d}:{int(round((hour - whole) * 60)):02d}"
