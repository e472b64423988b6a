"""Members get each message once (issue 21), with real worker processes (``python -m engine
worker``) against a slow loopback provider (bench/provider.py: 0.3-2 s per send), counting the
provider's requests per message.

* N workers on PostgreSQL send each of 200 messages exactly once. The workers' execution lease
  is 10 s, far shorter than a batch of sends takes, so a claim that were not renewed would be
  taken over mid-batch (before issue 21: 20 of 80 sent twice with no fault at all).
* kill -9 of workers while they send (SQLite and PostgreSQL): every message ends sent once or
  "outcome unknown", never sent twice unannounced; a Twilio look-up settles what Twilio got.

The figures of the same runs at larger sizes are in docs/RELIABILITY.md (bench/outbox_sends.py).
"""

from __future__ import annotations

import pytest

from bench.outbox_sends import run

pytestmark = pytest.mark.slow


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_and_url(request):
    if request.param == "sqlite":
        db = request.getfixturevalue("sqlite_db")
        return db, db.url.render_as_string(hide_password=False)
    return request.getfixturevalue("postgres_db"), request.getfixturevalue("postgres_url")


@pytest.mark.postgres
def test_four_workers_on_postgresql_send_each_of_200_messages_exactly_once(postgres_db, postgres_url):
    result = run(postgres_db, postgres_url, workers=4, messages=200, delay=(0.3, 2.0), lease_seconds=10, deadline=400)
    assert result.duplicates == []
    assert result.requests == 200
    assert result.outcomes == {"sent": 200}
    assert result.sent_not_received == []


def test_kill9_while_sending_leaves_each_message_sent_once_or_unknown(db_and_url):
    db, url = db_and_url
    result = run(db, url, workers=3, messages=45, sms=15, kills=3, delay=(0.3, 2.0), lease_seconds=10, deadline=400)
    assert result.duplicates == [], "a message was sent twice"
    assert set(result.outcomes) <= {"sent", "unknown"} and sum(result.outcomes.values()) == 60
    assert result.sent_not_received == []
    # Each kill was timed while the provider had a send of the victim's (its answer lost with it):
    # every message a dead worker left "sending" was never sent again; it is "unknown" for the
    # owner, or "sent" where Twilio's message list showed it.
    assert 1 <= result.caught_sending == result.left_sending <= 3
    assert result.outcomes.get("unknown", 0) == result.left_sending - result.settled_by_lookup
    assert result.requests == 60 - (result.outcomes.get("unknown", 0) - result.unknown_received)
    # The killed workers' claimed, unstarted items went to another worker within a short lease.
    assert len(result.takeover_seconds) == 3
