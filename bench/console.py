"""Test-console benchmark: ``python -m bench.console [--messages N]``.

A studio with 50 enabled workflows (40 on WhatsApp messages with keyword conditions, a
quarter of which match and reply; 5 on intents; 5 on other triggers). One console message
(test mode) is sent at a time and the whole result is built: ingest through the runner,
then the decision report (intent, every workflow considered with its explanation or step
trace, replies). Prints the server time per message (median, p95, max) on SQLite and, when
DATABASE_URL points to PostgreSQL, there too (a throw-away database next to it).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid

import sqlalchemy as sa

from engine import services
from engine.security.auth import system_actor
from engine.services import console
from engine.services.console import ConsoleInput
from engine.store.db import get_engine, migrate
from engine.uow import unit_of_work

WORDS = ["hallo", "preis", "kurs", "yoga", "termin", "probetraining", "kündigung", "pause", "sauna", "parkplatz"]
INTENTS = ["training_plan", "booking", "pricing", "opening_hours", "cancellation"]
OTHER = ["missed_call", "lead_created", "booking_created", "email_received", "web_chat"]


def _workflows() -> list[dict]:
    send = [{"id": "send-1", "type": "send_whatsapp", "config": {"message": "Hi {{trigger.from}}, danke!"}}]
    out = []
    for i in range(40):
        word = WORDS[i % len(WORDS)]
        out.append(
            {
                "name": f"Keyword {i:02d} {word}",
                "trigger": {"type": "whatsapp_message", "config": {}},
                "conditions": [{"type": "keyword_match", "operator": "contains", "value": word}],
                "actions": send,
            }
        )
    for intent in INTENTS:
        out.append(
            {
                "name": f"Intent {intent}",
                "trigger": {"type": "intent_detected", "config": {"intent": intent}},
                "conditions": [{"type": "confidence_threshold", "operator": "greater_than", "value": 0.5}],
                "actions": send,
            }
        )
    for trigger in OTHER:
        out.append(
            {"name": f"Other {trigger}", "trigger": {"type": trigger, "config": {}}, "conditions": [], "actions": send}
        )
    return out


def measure(db, messages: int) -> dict[str, float]:
    migrate(db)
    with unit_of_work(db) as uow:
        tenant = services.create_tenant(uow=uow, slug=f"bench-{uuid.uuid4().hex[:8]}", name="Bench")
    actor = system_actor(tenant.id)
    with unit_of_work(db) as uow:
        services.import_workflows(uow=uow, actor=actor, items=_workflows())
    texts = [
        "Hallo, was kostet ein Yoga Kurs?",
        "Ich möchte einen Trainingsplan",
        "Wann habt ihr offen?",
        "Hallo!",
        "Gibt es einen Parkplatz bei der Sauna?",
    ]
    contact = console.new_contact()
    with unit_of_work(db) as uow:
        console.send(
            uow=uow, actor=actor, contact=contact, inp=ConsoleInput(text="warm-up")
        )  # classifier and caches loaded
    wall, server, considered = [], [], 0
    for i in range(messages):
        start = time.perf_counter()
        with unit_of_work(db) as uow:
            report = console.send(uow=uow, actor=actor, contact=contact, inp=ConsoleInput(text=texts[i % len(texts)]))
        wall.append((time.perf_counter() - start) * 1000)
        server.append(report.server_ms or 0.0)
        considered = max(considered, len(report.decisions) + sum(len(v) for v in report.other_triggers.values()))
    wall.sort()
    return {
        "median": statistics.median(wall),
        "p95": wall[int(len(wall) * 0.95) - 1],
        "max": wall[-1],
        "workflows": considered,
    }


def _postgres(url: str, messages: int) -> dict[str, float]:
    admin = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT")
    name = f"bench_console_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    target = url.rsplit("/", 1)[0] + "/" + name
    try:
        return measure(get_engine(target), messages)
    finally:
        get_engine(target).dispose()
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def _line(label: str, r: dict[str, float]) -> str:
    return (
        f"{label}: console message with {int(r['workflows'])} enabled workflows: median {r['median']:.1f} ms, "
        f"p95 {r['p95']:.1f} ms, max {r['max']:.1f} ms (server time, ingest + full decision report)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.console")
    parser.add_argument("--messages", type=int, default=100)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        db = get_engine(f"sqlite:///{tmp}/bench.db")
        print(_line("SQLite", measure(db, args.messages)))
        db.dispose()
    url = os.environ.get("DATABASE_URL", "")
    if url.startswith("postgresql"):
        print(_line("PostgreSQL", _postgres(url, args.messages)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
