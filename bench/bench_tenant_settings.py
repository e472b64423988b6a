"""Typed tenant settings benchmark: what issue 21 adds where the engine reads a studio's settings.

    python -m bench.bench_tenant_settings

Prints the median time of (a) loading the stored JSON into ``TenantSettings`` (the runner does
it once per tenant and batch of events, the worker once per item, delivery once per message it
sends) for an empty studio, the demo studio (13 knowledge entries) and a studio with every
setting and 2,000 knowledge entries (the limit): the first time (validation) and again (the
model of the same JSON is kept); (b) ``settings_of`` on a model that is already
loaded (what every reader in the engine calls); (c) ``patched`` for one changed field of the
large studio (a save).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from functools import partial

from engine.ai.knowledge import DEMO_KNOWLEDGE_BASE
from engine.tenant_settings import TenantSettings, _validate, patched, settings_of


def median_us(fn: Callable[[], object], repeat: int = 7, number: int = 200) -> float:
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        runs.append((time.perf_counter() - start) / number)
    return statistics.median(runs) * 1e6


def studios() -> dict[str, dict]:
    demo = {"knowledgeBase": DEMO_KNOWLEDGE_BASE.model_dump(mode="json", by_alias=True)}
    entry = {"question": "Gibt es Parkplätze?", "answer": "Ja, im Hof.", "tags": ["parken"], "answerEn": "Yes."}
    full = {
        "channels": {
            "sms": {"adapter": "twilio", "accountSid": "AC1", "fromNumber": "+4930123456"},
            "whatsapp": {"adapter": "whatsapp_cloud", "phoneNumberId": "1055"},
            "email": {"adapter": "smtp", "host": "smtp.studio.test", "fromAddress": "a@studio.test"},
        },
        "businessHours": {"weekly": {str(d): {"open": "07:00", "close": "22:00"} for d in range(7)}, "closedDays": []},
        "quietHours": {"start": "21:00", "end": "08:00"},
        "frequencyCap": 3,
        "webhookAllowList": ["crm.local", "10.0.0.0/8", "127.0.0.1:8080"],
        "minutesSaved": {f"wf{i}": 3.0 for i in range(50)},
        "knowledgeBase": {"studioName": "Studio", "entries": [entry] * 2000},
    }
    return {"empty": {}, "demo": demo, "every setting, 2,000 entries": full}


def main() -> None:
    for name, raw in studios().items():
        number = 20 if "2,000" in name else 200
        first = median_us(partial(_validate, raw), number=number)
        again = median_us(partial(TenantSettings.of, raw), number=number)
        print(f"load {name:<30} first {first:10.1f} µs   again (cached by its JSON) {again:8.1f} µs")
    loaded = TenantSettings.of(studios()["demo"])
    print(f"settings_of(loaded model)           {median_us(lambda: settings_of(loaded), number=20000):10.2f} µs")
    full = studios()["every setting, 2,000 entries"]
    print(
        f"patched(one field, 2,000 entries)   "
        f"{median_us(lambda: patched(full, {'frequencyCap': 4}), number=10):10.1f} µs"
    )


if __name__ == "__main__":
    main()
