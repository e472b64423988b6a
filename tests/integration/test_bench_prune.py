"""``python -m bench.prune`` end to end at a tiny size: a real API server, HTTP load from a separate
process, the worker's pruner in the bench process (figures printed, never asserted)."""

from __future__ import annotations

import re

import pytest

from bench import prune


def _acknowledged_and_errors(line: str) -> tuple[int, int]:
    m = re.search(r"errors ([\d,]+) \(([\d,]+) acknowledged\)", line)
    assert m, line
    return int(m.group(2).replace(",", "")), int(m.group(1).replace(",", ""))


@pytest.mark.slow
def test_bench_prune_ingests_over_http_while_pruning(capsys, monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert prune.main(["--n", "300", "--seconds", "2", "--connections", "4", "--python-load", "--batch", "100"]) == 0
    out = capsys.readouterr().out
    assert "SQLite: 300 old executions (1,200 rows); POST /api/events over HTTP with python, 4 connections" in out
    lines = {line.split(":")[0].strip(): line for line in out.splitlines() if ":" in line}
    for label in ("ingest without pruning", "ingest during pruning"):
        acknowledged, errors = _acknowledged_and_errors(lines[label])
        assert acknowledged > 0 and errors == 0, lines[label]
        assert re.search(r"[\d,]+ req/s, p50 [\d.]+ ms, p99 [\d.]+ ms", lines[label])
    # Every old execution went (run() also checks that counts survived and none is left).
    assert "{'executions': 300, 'outbox_messages': 300, 'events': 300}" in lines["pruning"]
    assert re.search(r"database size: [\d.,]+ MB before, [\d.,]+ MB after", out)
