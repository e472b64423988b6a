"""The actions as a flow graph in DOT (rendered by st.graphviz_chart; no graphviz binary needed)."""

from __future__ import annotations

import json

from ui.definition import actions_of, describe_condition, describe_delay
from ui.labels import ACTIONS, TRIGGERS

ACCENT, SOFT, GREY = "#0A84FF", "#E6F1FF", "#86868B"


def _quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _summary(action: dict) -> str:
    config = _config if isinstance(_config := action.get("config"), dict) else {}
    atype = action.get("type")
    if atype in ("wait", "schedule_follow_up") and "delay" in config:
        return describe_delay(config["delay"])
    if atype == "call_webhook":
        return f"{config.get('method', 'POST')} {str(config.get('webhookUrl', ''))[:32]}"
    if atype == "branch":
        conditions = [c for c in config.get("conditions") or [] if isinstance(c, dict)]
        text = " and ".join(describe_condition(c) for c in conditions) or "always"
        return "if " + ((text[:40] + "…") if len(text) > 40 else text)
    text = config.get("message") or config.get("prompt") or ""
    return (text[:30] + "…") if len(text) > 30 else text


def _conditions_label(conditions: list) -> str:
    """Every top-level condition on its own line, groups spelled out: (keyword “preis” or intent is pricing)."""
    lines = [describe_condition(c) for c in conditions if isinstance(c, dict)]
    lines = [(line[:70] + "…") if len(line) > 70 else line for line in lines]
    return "If " + "\nand ".join(lines)


def _node(action: dict) -> str:
    atype = action.get("type")
    icon, label = ACTIONS.get(str(atype), ("❔", str(atype)))
    title = action.get("label") or label
    text = f"{icon} {title}\\n{action.get('id')}"
    summary = _summary(action)
    if summary:
        text += "\\n" + summary.replace("\\", "\\\\").replace('"', "'").replace("\n", " ")
    attrs = {"shape": "box", "style": "rounded,filled", "fillcolor": "white", "color": "#D2D2D7"}
    if atype == "branch":
        attrs.update(shape="diamond", fillcolor=SOFT, color=ACCENT)
    elif atype in ("wait", "schedule_follow_up"):
        attrs.update(style="rounded,filled,dashed", fillcolor="#FFF8E6", color="#F5A623")
    attr_text = ", ".join(f"{k}={_quote(v)}" for k, v in attrs.items())
    return f'  {_quote("a:" + str(action.get("id")))} [label="{text}", {attr_text}];'


def to_dot(definition: dict) -> str:
    """Trigger -> (conditions) -> actions, with branch edges and an end node."""
    trigger = _trigger if isinstance(_trigger := definition.get("trigger"), dict) else {}
    icon, label = TRIGGERS.get(str(trigger.get("type")), ("❔", "No trigger"))
    lines = [
        "digraph G {",
        '  rankdir=TB; bgcolor="transparent"; nodesep=0.35; ranksep=0.35;',
        '  node [fontname="Helvetica", fontsize=11, margin="0.18,0.08", penwidth=1.2];',
        f'  edge [fontname="Helvetica", fontsize=10, color="{GREY}", arrowsize=0.7];',
        f'  trigger [label="{icon} {label}", shape=box, style="rounded,filled", '
        f'fillcolor="{ACCENT}", fontcolor=white, color="{ACCENT}"];',
    ]
    actions = [a for a in actions_of(definition) if isinstance(a.get("id"), str)]
    ids = {a["id"] for a in actions}
    first = "trigger"
    conditions = definition.get("conditions") or []
    if conditions:
        lines.append(
            f"  conditions [label={_quote(_conditions_label(conditions))}, shape=box, "
            f'style="rounded,dashed", color="{GREY}"];'
        )
        lines.append("  trigger -> conditions;")
        first = "conditions"
    lines.append(
        '  end [label="End", shape=circle, style=filled, fillcolor="#F5F5F7", color="#D2D2D7", '
        "fontsize=9, width=0.5, fixedsize=true];"
    )
    if not actions:
        lines.append(f"  {first} -> end;")
        return "\n".join(lines + ["}"])
    for action in actions:
        lines.append(_node(action))
    lines.append(f"  {first} -> {_quote('a:' + actions[0]['id'])};")
    lines += _edges(actions, ids)
    return "\n".join(lines + ["}"])


def _edges(actions: list[dict], ids: set[str]) -> list[str]:
    out = []
    for pos, action in enumerate(actions):
        src = _quote("a:" + action["id"])
        if "nextActionId" in action:
            nxt = action.get("nextActionId")
        else:
            nxt = actions[pos + 1]["id"] if pos + 1 < len(actions) else None
        is_branch = action.get("type") == "branch"
        target = _quote("a:" + nxt) if nxt in ids else "end"
        label = ' [label="no"]' if is_branch else ""
        out.append(f"  {src} -> {target}{label};")
        config = _config if isinstance(_config := action.get("config"), dict) else {}
        jump = config.get("nextActionId") if is_branch else None
        if jump in ids:
            out.append(
                f'  {src} -> {_quote("a:" + jump)} [label="yes", color="{ACCENT}", fontcolor="{ACCENT}", penwidth=1.6];'
            )
    return out
