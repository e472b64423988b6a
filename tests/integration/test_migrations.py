"""The Alembic migrations create exactly the schema the models describe, on both databases."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from engine.store.models import SQLModel


@pytest.mark.filterwarnings("ignore:.*expression-based index")
def test_migrations_match_the_models(db):
    with db.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    # Expression indexes (lower(name)) are not compared by autogenerate; anything else is drift.
    drift = [d for d in diff if not (d[0] in ("add_index", "remove_index") and "lower_name" in d[1].name)]
    assert drift == []
