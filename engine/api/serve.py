"""Serving the REST API: ``python -m engine api [--workers N]``.

* **Server.** uvicorn with httptools (a C HTTP parser) and uvloop when they are installed
  (``uvicorn[standard]``), no access log (one log line per request costs as much as the
  request's own framework work).
* **Processes.** ``--workers N`` starts N uvicorn processes sharing the listening socket;
  each builds the app from ``DATABASE_URL`` (``create_app`` as a factory) and has its own
  connection pool (40 connections, the size of the thread pool) and API-key cache.
  This scales on **PostgreSQL** only. **SQLite has one writer**: the engine's group commit
  batches the events of *one* process into one transaction, and several processes would
  each commit their own small batches, taking turns on the file lock (measured slower
  than one process). With SQLite one process is the mode; ``--workers`` above 1 is refused
  with a message saying so.
"""

from __future__ import annotations

import importlib.util
import logging
import os

from engine.errors import EngineError

logger = logging.getLogger(__name__)


class SqliteWorkers(EngineError):
    """--workers above 1 needs PostgreSQL (DATABASE_URL=postgresql://...): SQLite has a single writer, and one
    process batches every event into shared commits (group commit), so more processes would only take turns on
    the file lock. Run one process on SQLite."""


def server_options() -> dict:
    """uvicorn options: the fast parser and loop when installed, no access log."""
    options: dict = {"access_log": False, "timeout_keep_alive": 30}
    if importlib.util.find_spec("httptools"):
        options["http"] = "httptools"
    if importlib.util.find_spec("uvloop"):
        options["loop"] = "uvloop"
    return options


def serve(url: str, *, host: str, port: int, workers: int = 1, verbose: bool = False) -> None:
    """Run the API over the database at ``url`` until interrupted (blocks)."""
    import uvicorn

    if workers < 1:
        raise EngineError("--workers must be 1 or more")
    if workers > 1 and url.startswith("sqlite"):
        raise SqliteWorkers()
    options = server_options() | {"host": host, "port": port, "log_level": "info" if verbose else "warning"}
    if workers == 1:
        from engine.store.db import get_engine

        uvicorn.run(app_factory(get_engine(url)), **options)
        return
    # Worker processes are spawned: they find the database in the environment.
    os.environ["DATABASE_URL"] = url
    logger.info("serving on %s:%s with %d processes", host, port, workers)
    uvicorn.run("engine.api.serve:app_factory", factory=True, workers=workers, **options)


def app_factory(db=None):
    """The app of one server process, with the intent model trained in the background at once.

    Every message event answers its intent, and training takes seconds: without this the
    first requests after a start would each wait for it. Once trained, start-up's objects are
    frozen out of the garbage collector's passes (:mod:`engine.heap`).
    """
    import threading

    from engine import heap
    from engine.ai.intent import default_classifier
    from engine.api import create_app

    def warm_up() -> None:
        default_classifier()
        heap.freeze_startup_objects()  # the app and the trained model: out of every later collection

    heap.tune()
    threading.Thread(target=warm_up, name="intent-warm-up", daemon=True).start()
    return create_app(db)
