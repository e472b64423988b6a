"""Issue 13: schemathesis fuzzes every operation of the OpenAPI document, on SQLite and PostgreSQL.

Whatever the document lists is fuzzed (routes added later too), with schemathesis' checks
all on: no server error, every status code and response body as documented, invalid data
refused, valid auth not ignored. Bounded: ``FUZZ_EXAMPLES`` examples per operation (default
15; raise it locally, e.g. ``FUZZ_EXAMPLES=200``) and no deadline. The figures (operations,
cases, failures per backend) are printed at the end of the module and written to
``test-artifacts/fuzz-figures.json``.
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from pathlib import Path

import pytest
import schemathesis
import sqlalchemy as sa
from hypothesis import HealthCheck, settings
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import positive_data_acceptance

from engine import services
from engine.api import create_app
from engine.security.auth import system_actor
from engine.uow import unit_of_work

#: Operations whose 422s go beyond what JSON Schema can say (a nextActionId must name an
#: action of the same workflow, a cron schedule must fire, a template must parse): there a
#: schema-valid body may rightly be refused, so only "schema-valid data is accepted" is off.
SEMANTIC = {"/api/workflows/create", "/api/workflows/update", "/api/workflows/import"}


#: Operations whose body names a member's phone number or e-mail address: whether it is one is
#: libphonenumber's call (for the studio's default region) and the address grammar's, beyond
#: what JSON Schema can say; every other check stays on.
CONTACTS = {"/api/contacts/export", "/api/contacts/erase", "/api/contacts/opt-outs"}
#: Which fields a channel's settings take depends on the {channel} path parameter, and which of
#: them are required on whether the body switches the channel on (JSON Schema cannot tie a body
#: to a path parameter, nor one field's requirement to another's value).
CHANNEL_SETTINGS = "/api/settings/channels/{channel}"
#: A merge patch of the studio's settings: its schema says each field's type, but not the rules
#: between fields (quiet hours' end differs from their start, an OpenAI-compatible provider needs
#: a key and a model, a partial object must complete the stored one).
STUDIO_SETTINGS = "/api/settings"
#: Routes taking a period: from/to are each a valid date, but together at most 400 days in order,
#: and range=custom needs one of them (relations between parameters JSON Schema cannot say).
PERIODS = {
    "/api/stats",
    "/api/stats/workflows",
    "/api/stats/workflows/{workflow_id}/flow",
    "/api/stats/workflows/{workflow_id}/conversions",
    "/api/stats/export.csv",
    "/api/executions",
    "/api/executions/search",
    "/api/executions/export.csv",
}


def _period_refusable(query: dict) -> bool:
    from datetime import date

    if query.get("range") == "custom" and not (query.get("from") or query.get("to")):
        return True
    try:
        first, last = date.fromisoformat(str(query["from"])), date.fromisoformat(str(query["to"]))
    except (KeyError, ValueError):
        return False
    return last < first or (last - first).days >= 400


def _words(body, key: str) -> set[str]:
    words = body.get(key) if isinstance(body, dict) else None
    return {w.strip().upper() for w in words if isinstance(w, str)} if isinstance(words, list) else set()


def _semantic(case) -> bool:
    """Whether a schema-valid request may rightly be refused: see SEMANTIC, CONTACTS,
    CHANNEL_SETTINGS, STUDIO_SETTINGS and PERIODS; an event with an idempotency key, which must match the header
    and, when reused, the first event's body; a retention whose summaries would not outlive its
    details; opt-out words that are also opt-in words; a search cursor (opaque, from a previous
    page); cross-field rules JSON Schema cannot say."""
    path, body, query = case.operation.path, case.body, case.query or {}
    if path in SEMANTIC or path in CONTACTS or (path == CHANNEL_SETTINGS and case.method.upper() == "PUT"):
        return True
    if path == STUDIO_SETTINGS and case.method.upper() == "PATCH":
        return True
    if path in PERIODS and _period_refusable(query):
        return True
    if path in ("/api/executions", "/api/executions/search") and query.get("after"):
        return True
    if path == "/api/settings/retention" and isinstance(body, dict):
        details, summary = body.get("detailsDays"), body.get("summaryDays")
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (details, summary))
        return numbers and summary < details
    if path == "/api/settings/opt-out-words":
        return bool(_words(body, "stopWords") & _words(body, "startWords"))
    if path == "/api/events":
        headers = {k.lower() for k in (case.headers or {})}
        return "idempotency-key" in headers or (isinstance(body, dict) and "idempotencyKey" in body)
    return False


def _auth_for(case, auth: dict[str, str]) -> dict[str, str]:
    """The key's header, unless this case is about leaving it out (a negative header component:
    the only header the API documents is Authorization); then the request goes without it."""
    meta = case.meta
    component = meta.components.get(ParameterLocation.HEADER) if meta is not None else None
    if component is not None and component.mode.is_negative:
        return {}
    return auth


EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "15"))
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
FIGURES: dict[str, dict] = defaultdict(
    lambda: {"operations": set(), "cases": 0, "failed_operations": [], "seconds": 0.0}
)


#: One app for the module; each test points it at its database (the document needs none).
#: No rate limit here: the fuzzer is one key sending as fast as it can.
APP = create_app(sa.create_engine("sqlite://"), rate_limit=0)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)
# Schemathesis' coverage phase enumerates every case the schema defines, which for the
# recursive workflow format runs to gigabytes: explicit examples plus bounded fuzzing instead.
schema.config.phases.update(phases=["examples", "fuzzing"])


@pytest.fixture
def fuzz_auth(db, tenant) -> dict[str, str]:
    APP.state.db = db
    with unit_of_work(db) as uow:
        _, secret = services.create_api_key(uow=uow, actor=system_actor(tenant.id), name="fuzzer", role="owner")
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture(scope="module", autouse=True)
def _report_figures():
    yield
    if not FIGURES:
        return
    report = {
        backend: {
            "operations": len(f["operations"]),
            "cases": f["cases"],
            "failures": len(f["failed_operations"]),
            "failed_operations": f["failed_operations"],
            "seconds": round(f["seconds"], 1),
            "examples_per_operation": EXAMPLES,
        }
        for backend, f in FIGURES.items()
    }
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "fuzz-figures.json").write_text(json.dumps(report, indent=2))
    print("\nfuzzer figures:", json.dumps(report))


@pytest.fixture
def _count_failures(request):
    yield
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        backend = request.node.callspec.params.get("db", "sqlite")
        FIGURES[backend]["failed_operations"].append(request.node.name)


@pytest.mark.usefixtures("_count_failures")
@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_every_operation_holds_its_contract(case, fuzz_auth, request):
    backend = request.node.callspec.params.get("db", "sqlite") if hasattr(request.node, "callspec") else "sqlite"
    figures = FIGURES[backend]
    figures["operations"].add(case.operation.label)
    figures["cases"] += 1
    started = time.perf_counter()
    excluded = [positive_data_acceptance] if _semantic(case) else []
    try:
        case.call_and_validate(headers=_auth_for(case, fuzz_auth), excluded_checks=excluded)
    finally:
        figures["seconds"] += time.perf_counter() - started
