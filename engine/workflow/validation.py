"""Workflow validation: every problem at once, each with a JSON path and a plain message.

Two passes over the raw JSON: pydantic's parse (types, required fields, operators) and the
graph and content checks (targets, duplicates, cycles, reachability, templates, cron,
delays, URLs, channel limits). The graph pass runs on the raw dict so that one broken
action does not hide a dangling ``nextActionId`` elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from croniter import croniter
from pydantic import ValidationError

from engine.errors import ValidationFailed
from engine.workflow import limits, plain, templating
from engine.workflow.definitions import (
    KNOWN_INTENTS,
    MAX_FOLLOW_UP_MS,
    MAX_WAIT_MS,
    MESSAGE_TRIGGER_CHANNELS,
    OPERATORS,
    WorkflowDefinition,
)

Severity = Literal["error", "warning"]

#: Longest text a channel accepts in one message.
CHANNEL_LIMITS = {"whatsapp": 4096, "sms": 1600, "web": 10_000, "email": 100_000, "voice": 5000}
MESSAGE_ACTION_CHANNELS = {"send_whatsapp": "whatsapp", "send_sms": "sms", "send_email": "email"}
GROUP_TYPES = {"all", "any", "not"}


@dataclass(frozen=True)
class Problem:
    """One finding: where (JSON path such as ``actions[1].nextActionId``), what, how bad."""

    path: str
    message: str
    severity: Severity = "error"

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.severity}: {self.path or '(workflow)'}: {self.message}"


def validate(raw: Any) -> list[Problem]:
    """All problems of a workflow definition (errors and warnings), in document order."""
    if not isinstance(raw, dict):
        return [Problem("", "a workflow must be a JSON object with name, trigger, conditions and actions")]
    beyond = limit_problems(raw)
    if beyond:
        return beyond  # nothing else is checked on a value no backend could store
    checks = _graph_problems(raw) + _content_problems(raw)
    # Where a check of ours has a friendlier message for the same spot, drop pydantic's.
    covered = {p.path for p in checks}
    schema = [p for p in _schema_problems(raw) if p.path not in covered]
    problems = _dedupe(schema + checks)
    return sorted(problems, key=lambda p: p.severity != "error")


def errors_only(problems: Iterable[Problem]) -> list[Problem]:
    return [p for p in problems if p.severity == "error"]


def parse_workflow(raw: Any) -> tuple[WorkflowDefinition, list[Problem]]:
    """Validate and parse; raises :class:`ValidationFailed` on any error. Returns warnings."""
    problems = validate(raw)
    if errors_only(problems):
        raise ValidationFailed(problems)
    try:
        return WorkflowDefinition.model_validate(raw), problems
    except ValidationError as exc:  # a gap between the checks above and the model: still a 422
        raise ValidationFailed([_from_pydantic(err, raw) for err in exc.errors(include_url=False)]) from exc


# --------------------------------------------------------------------------- pass 0: limits


def limit_problems(raw: dict) -> list[Problem]:
    """What is beyond the product's limits (``engine/workflow/limits.py``): checked before anything else.

    NUL characters, non-finite numbers and too deep JSON anywhere; too many actions; too
    deep or too many condition groups. Each with its JSON path.
    """
    problems = [Problem(path, message) for path, message in limits.json_problems(raw)]
    if problems:
        return problems
    actions = raw.get("actions")
    if isinstance(actions, list) and len(actions) > limits.MAX_ACTIONS:
        problems.append(Problem("actions", f"a workflow has at most {limits.MAX_ACTIONS} actions (got {len(actions)})"))
    roots = [("conditions", raw.get("conditions"))]
    roots += [
        (f"actions[{i}].config.conditions", a["config"].get("conditions"))
        for i, a in _actions(raw)
        if a.get("type") == "branch" and isinstance(a.get("config"), dict)
    ]
    count = 0
    for path, conditions in roots:
        found, deep = _condition_shape(conditions, path)
        count += found
        problems += deep
    if count > limits.MAX_CONDITIONS:
        problems.append(
            Problem("conditions", f"a workflow has at most {limits.MAX_CONDITIONS} conditions (got {count})")
        )
    return problems


def _condition_shape(conditions: Any, path: str) -> tuple[int, list[Problem]]:
    """How many conditions there are under ``conditions``, and a problem where groups nest too deep."""
    count, problems = 0, []
    todo: list[tuple[Any, str, int]] = [(conditions, path, 0)]
    while todo:
        node, where, depth = todo.pop()
        if isinstance(node, list):
            todo.extend((c, f"{where}[{i}]", depth) for i, c in enumerate(node))
            continue
        if not isinstance(node, dict):
            continue
        count += 1
        if node.get("type") not in GROUP_TYPES:
            continue
        if depth >= limits.MAX_CONDITION_DEPTH:
            problems.append(Problem(where, f"condition groups nest at most {limits.MAX_CONDITION_DEPTH} levels deep"))
            continue
        if node.get("type") == "not":
            todo.append((node.get("condition"), f"{where}.condition", depth + 1))
        else:
            todo.append((node.get("conditions"), f"{where}.conditions", depth + 1))
    return count, problems


# --------------------------------------------------------------------------- pass 1: schema


def _schema_problems(raw: dict) -> list[Problem]:
    try:
        WorkflowDefinition.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        kept = [err for err in errors if not _other_union_member(err, raw)]
        # Never drop every error: a value that fits no member of a union is still an error.
        return [_from_pydantic(err, raw) for err in kept or errors[:1]]
    return []


def _other_union_member(err: Mapping[str, Any], raw: dict) -> bool:
    """Whether the error comes from the list member of a ``x | list[x]`` union while the
    value is a single item, or the other way round: the other member's error is the useful one."""
    value: Any = raw
    for part in err["loc"]:
        if isinstance(part, str) and not isinstance(value, dict):
            return part.startswith("list[") != isinstance(value, list)
        try:
            value = value[part]
        except (KeyError, IndexError, TypeError):
            continue  # a discriminator tag: stay on the same object
    return False


def _from_pydantic(err: Mapping[str, Any], raw: dict) -> Problem:
    loc, node = _clean_loc(err["loc"], raw)
    path = format_path(loc)
    kind = err["type"]
    field = next((str(part) for part in reversed(loc) if isinstance(part, str)), "")
    if kind == "union_tag_invalid":
        return Problem(path + ".type", _unknown_type_message(loc, err))
    if kind == "union_tag_not_found":
        return Problem(path + ".type", "type is missing")
    if field == "operator" and isinstance(node, dict) and node.get("type") in OPERATORS:
        ctype = node["type"]
        allowed = ", ".join(OPERATORS[ctype])
        return Problem(
            path, f"operator {node.get('operator')!r} is not allowed for {ctype} conditions (allowed: {allowed})"
        )
    if kind == "missing":
        return Problem(path, f"{plain.label(field)} is required.")
    if kind == "extra_forbidden":
        return Problem(path, f"“{field}” is not a field here (check the spelling).")
    return Problem(path, plain.plain_message(err, field))


def _unknown_type_message(loc: tuple, err: Mapping[str, Any]) -> str:
    family = {"actions": "action", "trigger": "trigger", "conditions": "condition"}.get(str(loc[0]), "item")
    if "conditions" in loc[1:] or "condition" in loc:
        family = "condition"
    allowed = err.get("ctx", {}).get("expected_tags", "")
    return f"unknown {family} type {err['ctx']['tag']!r} (expected one of {allowed})"


def _clean_loc(loc: tuple, raw: Any) -> tuple[tuple, Any]:
    """Drop pydantic's union tags and type names from a location; return it and the last object."""
    clean: list = []
    node, parent = raw, raw
    for part in loc:
        if isinstance(node, dict) and part not in node and isinstance(part, str) and node.get("type") is not None:
            # a discriminator tag or a union member name such as 'str' or 'list[str]'
            continue
        if isinstance(part, str) and node is not raw and not isinstance(node, dict):
            continue  # a union member name such as 'constrained-float' under a list or scalar
        clean.append(part)
        parent = node
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            node = None
    return tuple(clean), (node if isinstance(node, dict) else parent)


def format_path(loc: Iterable) -> str:
    """``("actions", 1, "config", "delay")`` -> ``actions[1].config.delay``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# --------------------------------------------------------------------------- pass 2: graph


def _actions(raw: dict) -> list[tuple[int, dict]]:
    actions = raw.get("actions")
    if not isinstance(actions, list):
        return []
    return [(i, a) for i, a in enumerate(actions) if isinstance(a, dict)]


def _graph_problems(raw: dict) -> list[Problem]:
    actions = _actions(raw)
    if isinstance(raw.get("actions"), list) and not raw["actions"]:
        return [Problem("actions", "add at least one action: a workflow without actions does nothing")]
    problems: list[Problem] = []
    ids: dict[str, int] = {}
    for i, action in actions:
        aid = action.get("id")
        if isinstance(aid, str) and aid in ids:
            problems.append(
                Problem(f"actions[{i}].id", f"duplicate action id {aid!r} (also used by actions[{ids[aid]}])")
            )
        elif isinstance(aid, str):
            ids[aid] = i
    problems += _target_problems(actions, ids)
    edges = successors(raw)
    problems += _cycle_problems(edges, ids)
    problems += _reachability_problems(edges, actions)
    return problems


def _target_problems(actions: list[tuple[int, dict]], ids: dict[str, int]) -> list[Problem]:
    problems = []
    for i, action in actions:
        targets = [(f"actions[{i}].nextActionId", action.get("nextActionId"))]
        config = action.get("config")
        if action.get("type") == "branch" and isinstance(config, dict):
            targets.append((f"actions[{i}].config.nextActionId", config.get("nextActionId")))
        for path, target in targets:
            if target is None:
                continue
            if not isinstance(target, str) or target not in ids:
                problems.append(Problem(path, f"points to action {target!r}, which does not exist"))
            elif target == action.get("id"):
                problems.append(Problem(path, "an action cannot point to itself"))
    return problems


def successors(raw: dict) -> dict[str, list[str]]:
    """Action id -> the ids that can run after it (following the runner's rules)."""
    actions = _actions(raw)
    known = {a.get("id") for _, a in actions if isinstance(a.get("id"), str)}
    edges: dict[str, list[str]] = {}
    for pos, (_, action) in enumerate(actions):
        aid = action.get("id")
        if not isinstance(aid, str):
            continue
        nxt: list[str] = []
        if "nextActionId" in action:
            if isinstance(action["nextActionId"], str):
                nxt.append(action["nextActionId"])
        elif pos + 1 < len(actions) and isinstance(actions[pos + 1][1].get("id"), str):
            nxt.append(actions[pos + 1][1]["id"])
        config = action.get("config")
        if action.get("type") == "branch" and isinstance(config, dict) and isinstance(config.get("nextActionId"), str):
            nxt.append(config["nextActionId"])
        edges[aid] = [t for t in nxt if t in known and t != aid]
    return edges


def _cycle_problems(edges: dict[str, list[str]], ids: dict[str, int]) -> list[Problem]:
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    problems: list[Problem] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in edges.get(node, []):
            if state.get(nxt) == 1:
                loop = stack[stack.index(nxt) :] + [nxt]
                problems.append(
                    Problem(
                        f"actions[{ids[node]}].nextActionId",
                        "the actions form a loop (" + " -> ".join(loop) + "); loops are not allowed",
                    )
                )
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for node in edges:
        if node not in state:
            visit(node, [node])
    return problems


def _reachability_problems(edges: dict[str, list[str]], actions: list[tuple[int, dict]]) -> list[Problem]:
    if not actions or not isinstance(actions[0][1].get("id"), str):
        return []
    seen, todo = set(), [actions[0][1]["id"]]
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(edges.get(node, []))
    return [
        Problem(f"actions[{i}]", f"action {a['id']!r} can never run: no earlier action leads to it", "warning")
        for i, a in actions
        if isinstance(a.get("id"), str) and a["id"] not in seen
    ]


# --------------------------------------------------------------------------- pass 3: content


def _content_problems(raw: dict) -> list[Problem]:
    problems = _name_problems(raw)
    problems += _trigger_problems(raw.get("trigger"))
    problems += _condition_problems(raw.get("conditions"), "conditions")
    action_ids = {a.get("id") for _, a in _actions(raw)}
    trigger_channel = _trigger_channel(raw.get("trigger"))
    for i, action in _actions(raw):
        problems += _action_problems(action, f"actions[{i}]", action_ids, trigger_channel)
        problems += _plain_action_problems(raw, action, f"actions[{i}]")
    return problems


def _name_problems(raw: dict) -> list[Problem]:
    name = raw.get("name")
    if name is None or (isinstance(name, str) and not name.strip()):
        return [Problem("name", "Give the workflow a name, e.g. “Welcome new leads”.")]
    return []


def _plain_action_problems(raw: dict, action: dict, path: str) -> list[Problem]:
    """Empty texts, replies the trigger cannot answer on, variables it does not provide."""
    trigger = _trigger if isinstance(_trigger := raw.get("trigger"), dict) else {}
    problems = [Problem(p, m) for p, m in plain.empty_text_problems(action, path)]
    reply = plain.reply_problem(action, path, trigger)
    if reply:
        problems.append(Problem(*reply))  # (path, message[, "warning"])
    config = action.get("config")
    if isinstance(config, dict):
        types = {a["id"]: a.get("type") for _, a in _actions(raw) if isinstance(a.get("id"), str)}
        problems += [
            Problem(p, m, "warning")
            for p, m in plain.variable_problems(
                config, f"{path}.config", trigger_type=trigger.get("type"), actions=types
            )
        ]
    return problems


def _trigger_channel(trigger: Any) -> str | None:
    if not isinstance(trigger, dict):
        return None
    config = _config if isinstance(_config := trigger.get("config"), dict) else {}
    if config.get("channel"):
        return config["channel"]
    channel = MESSAGE_TRIGGER_CHANNELS.get(str(trigger.get("type")))
    return str(channel) if channel else None


def _trigger_problems(trigger: Any) -> list[Problem]:
    if not isinstance(trigger, dict) or not isinstance(trigger.get("config"), dict):
        return []
    config = trigger["config"]
    problems = []
    mismatch = plain.trigger_channel_problem(trigger)
    if mismatch:
        problems.append(Problem(*mismatch))
    if trigger.get("type") == "time_based" and isinstance(config.get("schedule"), str):
        message = cron_problem(config["schedule"])
        if message:
            problems.append(Problem("trigger.config.schedule", message))
    intent = config.get("intent")
    if isinstance(intent, str) and intent not in KNOWN_INTENTS:
        problems.append(Problem("trigger.config.intent", _unknown_intent(intent), "warning"))
    return problems


def cron_problem(expression: str) -> str | None:
    """Why a cron expression is not a valid five-field schedule, or ``None``."""
    fields = expression.split()
    if len(fields) != 5:
        return (
            f"schedule {expression!r} must have 5 fields (minute hour day-of-month month day-of-week), "
            f"it has {len(fields)}"
        )
    if not croniter.is_valid(expression):
        return f"schedule {expression!r} is not a valid cron expression"
    try:
        croniter(expression, datetime(2000, 1, 1)).get_next(datetime)
    except Exception:  # noqa: BLE001 - croniter says "no date found" in several ways
        return f"schedule {expression!r} never fires (no such date, e.g. 30 February)"
    return None


def _unknown_intent(intent: str) -> str:
    return f"intent {intent!r} is not one the built-in classifier knows ({', '.join(KNOWN_INTENTS)})"


def _condition_problems(conditions: Any, path: str) -> list[Problem]:
    if not isinstance(conditions, list):
        return []
    problems: list[Problem] = []
    for i, cond in enumerate(conditions):
        problems += _one_condition_problems(cond, f"{path}[{i}]")
    return problems


def _one_condition_problems(cond: Any, path: str) -> list[Problem]:
    if not isinstance(cond, dict):
        return []
    ctype = cond.get("type")
    if ctype in ("all", "any"):
        empty = [Problem(p, m) for p, m in plain.empty_group_problems(cond, path)]
        return empty or _condition_problems(cond.get("conditions"), f"{path}.conditions")
    if ctype == "not":
        return _one_condition_problems(cond.get("condition"), f"{path}.condition")
    value, op = cond.get("value"), cond.get("operator")
    if ctype == "intent_match" and value in (None, "", []):
        return [Problem(f"{path}.value", "Pick the intent this condition looks for.")]
    if ctype in ("keyword_match", "sender_match") and value in (None, "", []):
        return [
            Problem(
                f"{path}.value", "Enter a keyword." if ctype == "keyword_match" else "Enter the sender to look for."
            )
        ]
    if ctype == "time_range" and op == "between" and not (isinstance(value, list) and len(value) == 2):
        return [Problem(f"{path}.value", "between needs two hours: [start, end], e.g. [9, 18]")]
    if ctype == "time_range" and str(op).endswith("business_hours") and value is not None:
        return [Problem(f"{path}.value", f"{op} takes no value: it uses the studio's business hours (Settings)")]
    if ctype == "time_range" and op != "between" and isinstance(value, list):
        return [Problem(f"{path}.value", f"{op} needs one hour (0-24); use between for a range")]
    if ctype in ("intent_match",) and op == "equals" and isinstance(value, list):
        return [Problem(f"{path}.value", "equals needs one value; use in for a list")]
    if ctype in ("day_of_week", "channel_match") and op == "equals" and isinstance(value, list):
        return [Problem(f"{path}.value", "equals needs one value; use in for a list")]
    if ctype == "intent_match":
        intents = value if isinstance(value, list) else [value]
        return [
            Problem(f"{path}.value", _unknown_intent(v), "warning")
            for v in intents
            if isinstance(v, str) and v not in KNOWN_INTENTS
        ]
    return []


def _action_problems(action: dict, path: str, action_ids: set, trigger_channel: str | None) -> list[Problem]:
    config = action.get("config")
    if not isinstance(config, dict):
        return []
    atype = action.get("type")
    problems = _template_problems(config, f"{path}.config", action_ids)
    problems += _delay_problems(atype, config, path)
    if atype == "call_webhook" and isinstance(config.get("webhookUrl"), str):
        message = url_problem(config["webhookUrl"])
        if message:
            problems.append(Problem(f"{path}.config.webhookUrl", message))
    if atype == "branch":
        problems += _condition_problems(config.get("conditions"), f"{path}.config.conditions")
    problems += _length_problems(atype, config, path, trigger_channel)
    return problems


def _template_problems(config: dict, path: str, action_ids: set) -> list[Problem]:
    problems = []
    for sub, text in templating.iter_strings(config):
        if not templating.has_template(text):
            continue
        where = f"{path}.{sub}"
        syntax = templating.check_syntax(text)
        if syntax:
            problems.append(Problem(where, syntax))
            continue
        for ref in templating.references(text):
            if ref[0] not in templating.ROOTS:
                roots = ", ".join(r + ".…" for r in templating.ROOTS[:-1])
                problems.append(
                    Problem(where, f"unknown variable {'.'.join(ref)!r}: templates can use {roots} and now")
                )
            elif ref[0] == "results" and len(ref) > 1 and ref[1] not in action_ids:
                problems.append(Problem(where, f"{'.'.join(ref)!r} refers to action {ref[1]!r}, which does not exist"))
    return problems


def _delay_problems(atype: Any, config: dict, path: str) -> list[Problem]:
    bounds = {"wait": (MAX_WAIT_MS, "90 days"), "schedule_follow_up": (MAX_FOLLOW_UP_MS, "365 days")}
    delay = config.get("delay")
    if atype not in bounds or not isinstance(delay, (int, float)) or isinstance(delay, bool):
        return []
    limit, words = bounds[atype]
    if delay < 0:
        return [Problem(f"{path}.config.delay", f"delay cannot be negative (got {delay} ms)")]
    if delay > limit:
        return [Problem(f"{path}.config.delay", f"delay is at most {words} ({limit:,} ms); got {delay:,} ms")]
    return []


def url_problem(url: str) -> str | None:
    """Why a webhook URL cannot be used, or ``None``. Templates in the path are allowed."""
    if url.startswith("{{"):
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return f"webhook URL must start with http:// or https:// (got {url!r})"
    if not parts.hostname:
        return f"webhook URL {url!r} has no host"
    return None


def _length_problems(atype: Any, config: dict, path: str, trigger_channel: str | None) -> list[Problem]:
    message = config.get("message")
    if not isinstance(message, str):
        return []
    channel = (
        MESSAGE_ACTION_CHANNELS.get(atype)
        or config.get("channel")
        or (trigger_channel if atype in ("send_message", "schedule_follow_up") else None)
    )
    limit = CHANNEL_LIMITS.get(channel or "")
    if limit and len(message) > limit:
        return [
            Problem(
                f"{path}.config.message", f"message is {len(message):,} characters; {channel} allows at most {limit:,}"
            )
        ]
    return []


def _dedupe(problems: list[Problem]) -> list[Problem]:
    seen, out = set(), []
    for p in problems:
        if (p.path, p.message) not in seen:
            seen.add((p.path, p.message))
            out.append(p)
    return out
