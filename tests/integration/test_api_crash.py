"""kill -9 of the API under event load loses and repeats nothing (issue 21 keeps it so).

Events with idempotency keys from 8 connections to ``python -m engine api``; the server is
killed with SIGKILL once 250 are acknowledged and started again; the clients resend what was
not acknowledged. Every acknowledged event is stored with its execution, none twice. The
full-size run (4,000 of 6,000) is ``python -m bench.faults kill-api``; the workers' crash test
is ``tests/integration/test_runtime_processes.py``.
"""

from __future__ import annotations

import argparse

import pytest

from bench.faults import kill_api_run

pytestmark = pytest.mark.slow


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request) -> str:
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_db").url.render_as_string(hide_password=False)
    request.getfixturevalue("postgres_db")  # emptied for this test
    return request.getfixturevalue("postgres_url")


def test_the_api_killed_with_sigkill_under_load_loses_and_repeats_no_event(url):
    result = kill_api_run(url, argparse.Namespace(events=400, kill_at=250, api_workers=1))
    assert result["killed at"] >= 250
    assert result["stored"] == 400 and result["acknowledged"] == 400
    assert (result["lost"], result["duplicated"], result["stuck"]) == (0, 0, 0), result
    assert result["5xx"] == 0, result
