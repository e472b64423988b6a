"""The benchmark runs end to end (tiny sizes; figures are printed, never asserted)."""

from __future__ import annotations

import argparse

from bench import run


def test_bench_runs_and_prints_every_figure(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert run.main(argparse.Namespace(n=40, waiting=60, producers=4)) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split(")")[0] for line in out if line.startswith("[sqlite] (")] == [
        "[sqlite] (a",
        "[sqlite] (b",
        "[sqlite] (c",
    ]
    assert any("one caller at a time" in line for line in out)
    assert out[-1].startswith("executions/s: ") and int(out[-1].split(": ")[1]) > 0
