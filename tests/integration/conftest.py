"""Every integration test on a database ends by checking that the Insights rollups equal the
counts recomputed from the rows (engine/store/rollups.py): whatever the test drove (ingest,
worker batches, cancel, replay, delivery callbacks, pruning), its writers kept them."""

from __future__ import annotations

import pytest

from engine.store import rollups

_DATABASES = ("db", "sqlite_db", "postgres_db")


@pytest.fixture(autouse=True)
def _rollups_match_rows(request):
    name = next((n for n in _DATABASES if n in request.fixturenames), None)
    unchecked = request.node.get_closest_marker("rollups_unchecked") is not None
    db = request.getfixturevalue(name) if name and not unchecked else None  # set up first: torn down after this
    yield
    if db is None:
        return
    with db.connect() as conn:
        stored, expected = rollups.stored(conn), rollups.from_rows(conn)
    assert stored == expected, rollups.difference(stored, expected)
