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
from engine.auth import system_actor

#: Operations whose 422s go beyond what JSON Schema can say (a nextActionId must name an
#: action of the same workflow, a cron schedule must fire, a template must parse): there a
#: schema-valid body may rightly be refused, so only "schema-valid data is accepted" is off.
SEMANTIC = {"/api/workflows/create", "/api/workflows/update", "/api/workflows/import"}


def _semantic(case) -> bool:
    """Whether a schema-valid request may rightly be refused: see SEMANTIC; and an event with an
    idempotency key, which must match the header and, when reused, the first event's body."""
    if case.operation.path in SEMANTIC:
        return True
    if case.operation.path == "/api/events":
        headers = {k.lower() for k in (case.headers or {})}
        return "idempotency-key" in headers or (isinstance(case.body, dict) and "idempotencyKey" in case.body)
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
FIGURES: dict[str, dict] = defaultdict(lambda: {"operations": set(), "cases": 0, "failed_operations": [], "seconds": 0.0})


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
    _, secret = services.create_api_key(db, system_actor(tenant.id), name="fuzzer", role="owner")
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture(scope="module", autouse=True)
def _report_figures():
    yield
    if not FIGURES:
        return
    report = {backend: {"operations": len(f["operations"]), "cases": f["cases"],
                        "failures": len(f["failed_operations"]), "failed_operations": f["failed_operations"],
                        "seconds": round(f["seconds"], 1), "examples_per_operation": EXAMPLES}
              for backend, f in FIGURES.items()}
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
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
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
