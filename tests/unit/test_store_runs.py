"""engine.store.runs row builders: complete rows from the tables' own columns and defaults."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from engine.store.models import DueWork, Execution, OutboxMessage, StepRun
from engine.store.runs import build_row, due_row, outbox_row

NOW = datetime(2026, 5, 4, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize("model", [Execution, StepRun, OutboxMessage, DueWork])
def test_a_built_row_has_every_column_and_the_models_defaults(model):
    row = build_row(model, NOW, tenant_id="t1")
    assert set(row) == {c.key for c in model.__table__.columns}
    instance = model(tenant_id="t1")  # what the model itself would fill in
    for column in model.__table__.columns:
        if column.key in ("id",) or isinstance(row[column.key], datetime):
            continue
        assert row[column.key] == getattr(instance, column.key), column.key


def test_now_columns_take_the_callers_time_and_factories_run_per_row():
    first, second = due_row(NOW, tenant_id="t1", kind="resume"), due_row(NOW, tenant_id="t1", kind="resume")
    assert first["created_at"] == first["due_at"] == NOW  # the unit of work's clock, not the wall clock
    assert first["id"] != second["id"] and first["payload"] == {} and first["payload"] is not second["payload"]


def test_given_values_win_and_a_now_column_without_now_is_refused():
    row = outbox_row(NOW, tenant_id="t1", channel="sms", status="pending", adapter="twilio")
    assert (row["status"], row["adapter"], row["recipient"], row["created_at"]) == ("pending", "twilio", "", NOW)
    with pytest.raises(ValueError, match="created_at defaults to now"):
        build_row(OutboxMessage, None, tenant_id="t1", channel="sms")
