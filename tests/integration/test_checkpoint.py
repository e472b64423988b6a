"""Background WAL checkpoints (engine/store/checkpoint.py) for SQLite files."""

from __future__ import annotations

import time

import sqlalchemy as sa

from engine.store import checkpoint as cp
from engine.store.db import get_engine


def test_commits_mark_the_file_and_the_thread_checkpoints_it(tmp_path, monkeypatch):
    done: list[tuple] = []
    original = cp.checkpoint

    def recording(path):
        result = original(path)
        done.append((path, result))
        return result

    monkeypatch.setattr(cp, "checkpoint", recording)
    checkpointer = cp.Checkpointer(interval=0.05)
    monkeypatch.setattr(cp, "CHECKPOINTER", checkpointer)
    path = tmp_path / "ck.db"
    engine = get_engine(f"sqlite:///{path}")
    marked: list[str] = []
    monkeypatch.setattr(checkpointer, "mark", lambda p, _orig=checkpointer.mark: (marked.append(p), _orig(p)))
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x TEXT)")
        conn.execute(sa.text("INSERT INTO t VALUES (:x)"), [{"x": "y" * 500} for _ in range(200)])
    assert marked == [str(path.resolve())]
    deadline = time.monotonic() + 10
    while not done and time.monotonic() < deadline:
        time.sleep(0.02)
    [(checked, (busy, frames, copied))] = done[:1]
    assert checked == str(path.resolve()) and busy == 0 and frames > 0 and copied == frames
    engine.dispose()


def test_a_missing_file_is_never_created(tmp_path):
    gone = tmp_path / "gone.db"
    assert cp.checkpoint(str(gone)) is None
    assert not gone.exists()
