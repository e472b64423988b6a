"""Builder checks benchmark: what issue 14 adds to every keystroke and every inbound message.

    python -m bench.bench_builder

Prints the median time of (a) ``validate()`` on each demo workflow and on a 12-step workflow
with templates in every step (the builder validates on every rerun), and (b) the member
language guess the runner now adds to every event with text (``trigger.language``).
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable
from functools import partial

from engine.ai.language import detect_language
from engine.demo.seed import demo_workflows
from engine.workflow.validation import validate

MESSAGES = [
    "Hallo",
    "Ich möchte einen Trainingsplan",
    "Hi, what does a membership cost and can I book a trial class?",
    "Wann habt ihr am Sonntag geöffnet? Ich würde gerne mit meiner Freundin vorbeikommen.",
]


def _validate_copy(wf: dict) -> object:
    return validate(copy.deepcopy(wf))


def median_us(fn: Callable[[], object], repeat: int = 7, number: int = 200) -> float:
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        runs.append((time.perf_counter() - start) / number)
    return statistics.median(runs) * 1e6


def big_workflow() -> dict:
    steps = [
        {
            "id": f"s{i}",
            "type": "send_whatsapp",
            "config": {
                "message": f"Hallo {{{{trigger.from}}}}, Schritt {i}: {{{{results.s0.status}}}} {{{{lead.name}}}}"
            },
        }
        for i in range(12)
    ]
    return {
        "name": "big",
        "trigger": {"type": "whatsapp_message", "config": {}},
        "conditions": [
            {
                "type": "any",
                "conditions": [
                    {"type": "keyword_match", "operator": "contains", "value": "preis"},
                    {"type": "intent_match", "operator": "equals", "value": "pricing"},
                ],
            }
        ],
        "actions": steps,
    }


def main() -> None:
    for wf in demo_workflows():
        print(f"validate {wf['name'][:40]:<40} {median_us(partial(_validate_copy, wf)):8.0f} µs")
    big = big_workflow()
    print(f"validate {'12 steps, templates everywhere':<40} {median_us(lambda: validate(copy.deepcopy(big))):8.0f} µs")
    for text in MESSAGES:
        print(f"language {text[:40]!r:<42} {median_us(partial(detect_language, text), number=2000):6.1f} µs")


if __name__ == "__main__":
    main()
