"""Pieces of the Insights page: the date-range picker, KPI tiles with deltas, Altair charts,
the flow graph with numbers. Charts are built from the service's aggregate rows (never from
execution rows); every chart has tooltips."""

from __future__ import annotations

import csv
import io
import re
from datetime import date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import altair as alt
import streamlit as st

from engine.services import insights
from engine.uow import unit_of_work
from ui.flow_graph import to_dot

PRESET_LABELS = {
    "today": "Today",
    "7d": "Last 7 days",
    "30d": "Last 30 days",
    "month": "This month",
    "custom": "Custom",
}
OUTCOME_COLORS = {
    "succeeded": "#34C759",
    "failed": "#FF3B30",
    "skipped": "#FF9500",
    "in_progress": "#0A84FF",
    "cancelled": "#8E8E93",
}


def range_picker(tz: str, key: str = "insights") -> insights.Period:
    """Preset or custom range (query param ``range`` keeps it in links), in the studio's timezone."""
    presets = list(PRESET_LABELS)
    initial = st.query_params.get("range", "30d")
    preset = (
        st.segmented_control(
            "Date range",
            presets,
            format_func=lambda v: PRESET_LABELS.get(v, v),
            key=f"{key}_range",
            default=initial if initial in presets else "30d",
        )
        or "30d"
    )
    st.query_params["range"] = preset
    if preset != "custom":
        return insights.resolve_period(tz, preset)
    today = datetime.now(ZoneInfo(tz)).date()
    picked = st.date_input("From – to", (today - timedelta(days=13), today), max_value=today, key=f"{key}_custom")
    if isinstance(picked, tuple | list):
        first, last = (picked[0], picked[-1]) if picked else (today, today)
    else:
        first = last = picked
    return insights.period_of(first, last, tz)


def _fmt(value: Any, kind: str = "int") -> str:
    if value is None:
        return "–"
    if kind == "pct":
        return f"{value * 100:.0f}%"
    if kind == "sec":
        return f"{value:.0f} s" if value < 120 else f"{value / 60:.1f} min"
    if kind == "min":
        return f"{value / 60:.1f} h" if value >= 120 else f"{value:.0f} min"
    return f"{value:,}"


KPI_TILES: list[tuple[str, str, str, Literal["normal", "inverse", "off"]]] = [
    ("inbound_messages", "Inbound messages", "int", "normal"),
    ("executions", "Executions", "int", "normal"),
    ("success_rate", "Success rate", "pct", "normal"),
    ("failures", "Failures", "int", "inverse"),
    ("skipped", "Skipped", "int", "off"),
    ("leads_created", "Leads created", "int", "normal"),
    ("bookings", "Bookings", "int", "normal"),
    ("first_reply_median_s", "First reply (median)", "sec", "inverse"),
    ("first_reply_p90_s", "First reply (p90)", "sec", "inverse"),
    ("minutes_saved", "Time saved", "min", "normal"),
]


def kpi_tiles(k: dict[str, Any]) -> None:
    """One metric per KPI with the delta against the previous period."""
    cols = st.columns(5)
    for i, (key, label, kind, color) in enumerate(KPI_TILES):
        delta = k["delta"].get(key)
        shown = (
            None
            if delta is None
            else (
                f"{delta * 100:+.0f} pts"
                if kind == "pct"
                else f"{delta:+.0f}"
                if kind in ("int", "sec", "min")
                else delta
            )
        )
        unchanged = delta is not None and round(delta * (100 if kind == "pct" else 1)) == 0
        cols[i % 5].metric(
            label,
            _fmt(k["current"].get(key), kind),
            "no change" if unchanged else shown,
            delta_color="off" if unchanged else color,
            delta_arrow="off" if unchanged else "auto",
            border=True,
            help=f"previous period: {_fmt(k['previous'].get(key), kind)}",
        )


#: Columns of the messages table, each a group of outbox statuses (every status in exactly one):
#: "recorded" (no provider connected, nobody received it) is never counted as delivered.
MESSAGE_COLUMNS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Recorded (no provider)", ("recorded",)),
    ("Sent", ("sent",)),
    ("Delivered", ("delivered",)),
    ("Read", ("read",)),
    ("Failed", ("failed",)),
    ("Outcome unknown", ("unknown",)),
    ("Suppressed", ("suppressed",)),
    ("Deferred (quiet hours)", ("deferred",)),
    ("Queued / retrying", ("pending", "sending", "retrying")),
    ("Simulated", ("simulated",)),
)


def messages_table(k: dict[str, Any]) -> list[dict[str, Any]]:
    """Messages by channel and outcome: recorded apart from sent, delivered and read, then failed,
    unknown, suppressed, deferred by quiet hours and still on their way."""
    rows = []
    for channel, by_status in sorted(k["current"]["messages"].items()):
        row: dict[str, Any] = {"Channel": channel}
        for label, statuses in MESSAGE_COLUMNS:
            row[label] = sum(by_status.get(s, 0) for s in statuses)
        rows.append(row)
    return rows


def _day_axis(days: list[date]) -> alt.X:
    """Every local day of the period on the x axis (empty days too), labelled once each ("26 Nov")."""
    return alt.X(
        "day:O",
        title=None,
        scale=alt.Scale(domain=[d.isoformat() for d in days]),
        axis=alt.Axis(labelExpr="utcFormat(toDate(datum.value), '%d %b')", labelAngle=0, labelOverlap=True),
    )


def executions_chart(rows: list[dict[str, Any]], days: list[date]) -> alt.Chart:
    scale = alt.Scale(domain=list(OUTCOME_COLORS), range=list(OUTCOME_COLORS.values()))
    return (
        alt.Chart(alt.Data(values=rows))
        .mark_bar()
        .encode(
            x=_day_axis(days),
            y=alt.Y("n:Q", title="executions", stack=True),
            color=alt.Color("outcome:N", scale=scale, title="status"),
            tooltip=[
                alt.Tooltip("day:O", title="day"),
                alt.Tooltip("outcome:N"),
                alt.Tooltip("n:Q", title="executions"),
            ],
        )
        .properties(height=240)
    )


def volume_chart(rows: list[dict[str, Any]]) -> alt.Chart:
    return (
        alt.Chart(alt.Data(values=rows))
        .mark_bar()
        .encode(
            y=alt.Y("trigger:N", title=None, sort="-x"),
            x=alt.X("n:Q", title="executions", stack=True),
            color=alt.Color("channel:N"),
            tooltip=["trigger:N", "channel:N", alt.Tooltip("n:Q", title="executions")],
        )
        .properties(height=220)
    )


def intents_chart(rows: list[dict[str, Any]], days: list[date]) -> alt.Chart:
    return (
        alt.Chart(alt.Data(values=rows))
        .mark_line(point=True)
        .encode(
            x=_day_axis(days),
            y=alt.Y("n:Q", title="messages"),
            color=alt.Color("intent:N"),
            tooltip=[alt.Tooltip("day:O"), "intent:N", alt.Tooltip("n:Q", title="messages")],
        )
        .properties(height=220)
    )


def heatmap_chart(rows: list[dict[str, Any]]) -> alt.Chart:
    days = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
    return (
        alt.Chart(alt.Data(values=rows))
        .mark_rect()
        .encode(
            x=alt.X("hour:O", title="hour (studio time)"),
            y=alt.Y("weekday:N", sort=days, title=None),
            color=alt.Color("n:Q", title="messages", scale=alt.Scale(scheme="blues"), legend=alt.Legend(format="d")),
            tooltip=["weekday:N", "hour:O", alt.Tooltip("n:Q", title="messages")],
        )
        .properties(height=220)
    )


def failure_chart(rows: list[dict[str, Any]]) -> alt.Chart:
    return (
        alt.Chart(alt.Data(values=rows))
        .mark_bar(color="#FF3B30")
        .encode(
            y=alt.Y("actionType:N", title=None, sort="-x"),
            x=alt.X("failureRate:Q", title="failure rate", axis=alt.Axis(format="%")),
            tooltip=[
                alt.Tooltip("actionType:N", title="action"),
                "attempts:Q",
                "failed:Q",
                alt.Tooltip("failureRate:Q", format=".0%", title="failure rate"),
            ],
        )
        .properties(height=220)
    )


def trend_text(trend: list[int]) -> str:
    """A text sparkline of daily runs (the table's trend column)."""
    bars = "▁▂▃▄▅▆▇█"
    top = max(trend) if trend else 0
    return "".join(bars[min(7, int(n / top * 7))] if top else bars[0] for n in trend[-30:])


_NODE = re.compile(r'^  "a:(?P<id>[^"]+)" \[label="(?P<label>[^"]*)"', re.MULTILINE)


def flow_dot(definition: dict[str, Any], numbers: dict[str, dict[str, int]]) -> str:
    """The workflow's flow graph with, on each step, how many executions reached it and how they ended."""

    def add(match: re.Match) -> str:
        n = numbers.get(match["id"])
        extra = (
            "\\n— not reached —"
            if not n
            else (
                f"\\n▶ {n['reached']} reached · ✅ {n.get('succeeded', 0)} · ⛔ {n.get('failed', 0)}"
                + (f" · ⏳ {n['waiting']}" if n.get("waiting") else "")
            )
        )
        return f'  "a:{match["id"]}" [label="{match["label"]}{extra}"'

    return _NODE.sub(add, to_dot(definition))


def when(value: str | None, tz: str) -> str:
    if not value:
        return "–"
    return datetime.fromisoformat(value).astimezone(ZoneInfo(tz)).strftime("%d %b, %H:%M")


def days_label(p: insights.Period) -> str:
    n = (p.last - p.first).days + 1
    span = p.first.strftime("%d %b %Y") if n == 1 else f"{p.first:%d %b} – {p.last:%d %b %Y}"
    prev = p.previous()
    return f"{span} ({n} day{'s' if n != 1 else ''}) · compared with {prev.first:%d %b} – {prev.last:%d %b}"


def _csv(rows: list[list[Any]]) -> str:
    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    return buf.getvalue()


def kpis_csv(k: dict[str, Any]) -> str:
    keys = [key for key, v in k["current"].items() if not isinstance(v, dict)]
    return _csv(
        [
            ["kpi", "value", "previous", "delta"],
            *([key, k["current"][key], k["previous"][key], k["delta"][key]] for key in keys),
        ]
    )


def workflows_csv(rows: list[dict[str, Any]]) -> str:
    keys = [
        "workflow",
        "runs",
        "succeeded",
        "successRate",
        "skipped",
        "errors",
        "inProgress",
        "medianDurationS",
        "lastRun",
    ]
    return _csv([keys, *([r[k] for k in keys] for r in rows)])


def definition_of(db: Any, actor: Any, workflow_id: str) -> dict[str, Any]:
    from engine import services

    with unit_of_work(db, read_only=True) as uow:
        return services.get_workflow(uow=uow, actor=actor, workflow_id=workflow_id).definition


def chart_card(column, key: str, title: str, chart) -> None:
    """One bordered card with a title (markdown) and an Altair chart, in ``column``."""
    with column.container(border=True, key=key):
        st.markdown(title)
        st.altair_chart(chart, width="stretch")
