"""Insights: how the automations did over a date range, compared with the period before."""

import streamlit as st

from engine.errors import EngineError
from engine.services import insights
from engine.uow import unit_of_work
from ui import insights_view as view
from ui import session
from ui.formatting import percent

actor = session.require_actor()
db = session.db()
tz = session.tenant_timezone()

st.title("Insights")
st.caption(f"Counts in the studio's time zone ({tz}). Test-console and dry runs never count.")

try:
    period = view.range_picker(tz, key="insights")
    with unit_of_work(db, read_only=True) as uow:
        kpis = insights.kpis(uow=uow, actor=actor, period=period)
except EngineError as exc:
    st.error(exc.message)
    st.stop()
st.caption(view.days_label(period))

view.kpi_tiles(kpis)
if kpis["current"]["executions"] == 0 and kpis["previous"]["executions"] == 0:
    st.info("Nothing ran in this range yet. Pick a longer range, or send a test event from a workflow.", icon="📭")

left, right = st.columns(2)
with unit_of_work(db, read_only=True) as uow:
    view.chart_card(
        left,
        "insights_card_executions",
        "**Executions over time, by status**",
        view.executions_chart(insights.executions_by_day(uow=uow, actor=actor, p=period), period.days),
    )
    view.chart_card(
        right,
        "insights_card_volume",
        "**Volume by trigger and channel**",
        view.volume_chart(insights.volume_by_trigger_channel(uow=uow, actor=actor, p=period)),
    )
left, right = st.columns(2)
with unit_of_work(db, read_only=True) as uow:
    view.chart_card(
        left,
        "insights_card_heatmap",
        "**When do members write?** (inbound messages by weekday and hour)",
        view.heatmap_chart(insights.inbound_heatmap(uow=uow, actor=actor, p=period)),
    )
    view.chart_card(
        right,
        "insights_card_intents",
        "**Intents over time**",
        view.intents_chart(insights.intents_by_day(uow=uow, actor=actor, p=period), period.days),
    )

left, right = st.columns(2)
with unit_of_work(db, read_only=True) as uow:
    view.chart_card(
        left,
        "insights_card_failures",
        "**Action failure rates**",
        view.failure_chart(insights.action_failure_rates(uow=uow, actor=actor, p=period)),
    )
with right.container(border=True, key="insights_card_errors"):
    st.markdown("**Top error reasons**")
    with unit_of_work(db, read_only=True) as uow:
        errors = insights.top_errors(uow=uow, actor=actor, p=period)
    if not errors:
        st.caption("No failed executions in this range. 🎉")
    for e in errors:
        st.page_link(
            "pages/executions.py",
            label=f"{e['n']}× {e['error'][:90]}",
            icon=":material/error:",
            query_params={"status": "failed", "execution": e["exampleId"]},
        )
    with unit_of_work(db, read_only=True) as uow:
        skips = insights.skip_reasons(uow=uow, actor=actor, p=period)
    if skips:
        st.markdown("**Top skip reasons**")
        st.dataframe([{"Reason": s["reason"], "Skipped": s["n"]} for s in skips], hide_index=True, width="stretch")

with st.container(border=True, key="insights_card_messages"):
    st.markdown("**Messages by channel and outcome**")
    rows = view.messages_table(kpis)
    if rows:
        st.dataframe(rows, hide_index=True, width="stretch")
    else:
        st.caption("No messages sent in this range.")

st.subheader("Workflows")
with unit_of_work(db, read_only=True) as uow:
    table = insights.per_workflow(uow=uow, actor=actor, p=period)
shown = [
    {
        "Workflow": r["workflow"],
        "Runs": r["runs"],
        "Success rate": percent(r["successRate"]),
        "Skipped": r["skipped"],
        "Errors": r["errors"],
        "Median duration": "–" if r["medianDurationS"] is None else f"{r['medianDurationS']:.2f} s",
        "Last run": view.when(r["lastRun"], tz),
        "Trend": r["trend"],
    }
    for r in table
]
picked = st.dataframe(
    shown,
    hide_index=True,
    width="stretch",
    on_select="rerun",
    selection_mode="single-row",
    key="insights_workflows",
    column_config={
        "Trend": st.column_config.LineChartColumn("Trend (runs per day)"),
    },
)

exports = st.columns(3)
exports[0].download_button(
    "KPI table (CSV)",
    view.kpis_csv(kpis),
    file_name="kpis.csv",
    mime="text/csv",
    icon=":material/download:",
    key="insights_export_kpis",
    on_click="ignore",
)
exports[1].download_button(
    "Per-workflow table (CSV)",
    view.workflows_csv(table),
    file_name="workflows.csv",
    mime="text/csv",
    icon=":material/download:",
    key="insights_export_workflows",
    on_click="ignore",
)
exports[2].page_link("pages/executions.py", label="Executions of this range (CSV on that page)", icon=":material/list:")

selection = getattr(getattr(picked, "selection", None), "rows", None) or []
if table and selection:
    chosen = table[selection[0]]
    with st.container(border=True, key="insights_card_flow"):
        st.markdown(f"**{chosen['workflow']}** · the flow with the numbers of this range")
        try:
            definition = view.definition_of(db, actor, chosen["workflowId"])
            with unit_of_work(db, read_only=True) as uow:
                numbers = insights.flow_numbers(uow=uow, actor=actor, workflow_id=chosen["workflowId"], p=period)
        except EngineError as exc:
            st.error(exc.message)
        else:
            st.graphviz_chart(view.flow_dot(definition, numbers))
        with unit_of_work(db, read_only=True) as uow:
            goal = insights.goal_of(uow=uow, actor=actor, workflow_id=chosen["workflowId"]) or {
                "kind": "booking",
                "days": 7,
            }
        g1, g2 = st.columns(2)
        kind = g1.selectbox(
            "Goal",
            ["booking", "lead"],
            index=0 if goal["kind"] == "booking" else 1,
            format_func=lambda v: {"booking": "a booking", "lead": "a new lead"}.get(v, v),
            key="insights_goal_kind",
        )
        days = g2.number_input("within days", 1, 90, int(goal["days"]), key="insights_goal_days")
        with unit_of_work(db, read_only=True) as uow:
            conv = insights.conversions(
                uow=uow, actor=actor, workflow_id=chosen["workflowId"], p=period, kind=kind, days=int(days)
            )
        hours = conv["medianHoursToConvert"]
        st.metric(
            f"{chosen['workflow']}: {'booked' if kind == 'booking' else 'became a lead'} within {days} days",
            percent(conv["rate"]),
            help=f"{conv['converted']} of {conv['executions']} executions with a contact",
            border=True,
        )
        st.caption(f"Median time to convert: {'–' if hours is None else f'{hours:.1f} h'}")
else:
    st.caption("Select a workflow to see its flow with the numbers on it and its conversions.")
