"""What the issue-13 checks cost per request: ``python -m bench.bench_edge``.

Prints microseconds per call of the API's edge check of a JSON body (``JsonGuard``), for a
typical event, a spec example workflow and a body that needs the full walk (40 brackets), and
of rendering a template through the bounded sandbox. No database, no HTTP: the checks alone.
"""

from __future__ import annotations

import json
import timeit
from collections.abc import Callable

from engine.api.limits import body_problem
from engine.demo.seed import spec_examples
from engine.workflow import templating


def _per_call(fn, number: int) -> float:
    best = min(timeit.repeat(fn, number=number, repeat=3))
    return best / number * 1e6


def main() -> None:
    event = json.dumps(
        {
            "triggerType": "whatsapp_message",
            "channel": "whatsapp",
            "content": "Was kostet die 10er-Karte?",
            "from": "+4915112345678",
            "customFields": {"plan": "10er", "visits": 3},
        }
    ).encode()
    workflow = json.dumps(spec_examples()[0]).encode()
    nested = json.dumps({"triggerType": "web_chat", "customFields": {"a": [[[[[[[[[[1]]]]]]]]]] * 4}}).encode()
    rows: list[tuple[str, Callable[[], object], int]] = [
        (f"edge check, event body ({len(event)} B)", lambda: body_problem(event), 20_000),
        (f"edge check, spec workflow ({len(workflow)} B)", lambda: body_problem(workflow), 20_000),
        (f"edge check, full walk ({len(nested)} B, 44 brackets)", lambda: body_problem(nested), 5_000),
    ]
    ctx = {"trigger": {"from": "+4915112345678", "content": "Hallo"}}
    rows += [
        ("render plain path template", lambda: templating.render("Hallo {{trigger.from}}!", ctx), 20_000),
        (
            "render template with filters (sandbox)",
            lambda: templating.render("{{ trigger.content|upper }} {{ 'ab' * 3 }}", ctx),
            5_000,
        ),
    ]
    for label, fn, number in rows:
        print(f"{label:<52} {_per_call(fn, number):8.1f} us/call")


if __name__ == "__main__":
    main()
