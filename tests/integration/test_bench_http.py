"""``python -m engine bench http`` end to end on tiny settings (figures printed, never asserted)."""

from __future__ import annotations

import argparse

import pytest

from bench import http

WRK_OUTPUT = """Running 20s test @ http://127.0.0.1:8000/api/events
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    40.11ms   10.02ms 200.00ms   80.00%
  Latency Distribution
     50%   38.50ms
     75%   45.00ms
     90%   52.00ms
     99%    1.20s
  30000 requests in 20.00s, 6.00MB read
  Socket errors: connect 0, read 1, write 0, timeout 2
  Non-2xx or 3xx responses: 5
Requests/sec:   1500.00
Transfer/sec:    300.00KB
"""


def test_wrk_output_is_read_into_figures():
    r = http._parse_wrk(WRK_OUTPUT, 64)
    assert (r.requests, r.ok, r.non2xx, r.errors) == (30000, 29995, 5, 3)
    assert (r.rps, r.p50_ms, r.p99_ms) == (1500.0, 38.5, 1200.0)


@pytest.mark.slow
def test_bench_http_serves_loads_and_checks_every_acknowledged_event(capsys, monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    args = argparse.Namespace(duration=2, connections="4", pg_workers=0, python_load=True)
    assert http.main(args) == 0
    out = capsys.readouterr().out.splitlines()
    [line] = [x for x in out if x.startswith("[sqlite, 1 process] c4")]
    assert "check ok" in line and "events without execution 0" in line
    acknowledged = int(line.split("acknowledged")[1].split()[0])
    assert acknowledged > 0
