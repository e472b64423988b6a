"""Serving the REST API: ``python -m engine api [--workers N]``.

* **Server.** uvicorn with httptools (a C HTTP parser) and uvloop when they are installed
  (``uvicorn[standard]``), no access log (one log line per request costs as much as the
  request's own framework work).
* **Processes.** ``--workers N`` starts N uvicorn processes sharing the listening socket;
  each builds the app from ``DATABASE_URL`` (``create_app`` as a factory) and has its own
  connection pool (40 connections, the size of the thread pool) and API-key cache.
  Each process listens on **its own socket** bound to the same port with ``SO_REUSEPORT``
  (Linux), so the kernel spreads new connections evenly over them. (uvicorn's own
  ``--workers`` share one listening socket: the process that wakes first accepts a whole
  burst, and 62 of a load generator's 64 connections went to one process, so two
  processes served no more than one.) Elsewhere uvicorn's own workers are used.
  This scales on **PostgreSQL** only. **SQLite has one writer**: the engine's group commit
  batches the events of *one* process into one transaction, and several processes would
  each commit their own small batches, taking turns on the file lock (measured slower
  than one process). With SQLite one process is the mode; ``--workers`` above 1 is refused
  with a message saying so.
"""

from __future__ import annotations

import importlib.util
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time

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
    if not hasattr(socket, "SO_REUSEPORT") or not sys.platform.startswith("linux"):
        uvicorn.run("engine.api.serve:app_factory", factory=True, workers=workers, **options)
        return
    Supervisor(workers, options).run()


def _listening_socket(host: str, port: int) -> socket.socket:
    """A listening socket on host:port that other processes may bind too (``SO_REUSEPORT``)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock


def _serve_one(options: dict) -> None:
    """One server process of :class:`Supervisor`: its own socket, the app over ``DATABASE_URL``."""
    import uvicorn

    sock = _listening_socket(options["host"], options["port"])
    config = uvicorn.Config(app_factory(), **{k: v for k, v in options.items() if k not in ("host", "port")})
    uvicorn.Server(config).run(sockets=[sock])


class Supervisor:
    """Starts ``workers`` server processes (each :func:`_serve_one`), restarts one that dies, and
    stops them all on SIGTERM or SIGINT (each finishes its requests in flight, as uvicorn does)."""

    #: A process that dies sooner than this after its start is not restarted: something is wrong
    #: (the port is taken, the database is unreachable) and restarting would only loop.
    MIN_LIFETIME = 5.0

    def __init__(self, workers: int, options: dict) -> None:
        self.workers, self.options = workers, options
        self.stopping = threading.Event()
        self.failed = False
        self._spawn = multiprocessing.get_context("spawn")

    def _start(self, index: int) -> tuple[multiprocessing.process.BaseProcess, float]:
        proc = self._spawn.Process(target=_serve_one, args=(self.options,), name=f"api-{index}")
        proc.start()
        return proc, time.monotonic()

    def run(self) -> None:
        _listening_socket(self.options["host"], self.options["port"]).close()  # a taken port fails here, clearly
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stopping.set())
        procs = [self._start(i) for i in range(self.workers)]
        try:
            while not self.stopping.wait(0.5):
                for i, (proc, started) in enumerate(procs):
                    if proc.is_alive():
                        continue
                    if proc.exitcode == 0:  # it was told to stop (Ctrl-C reaches the whole process group)
                        self.stopping.set()
                        break
                    if time.monotonic() - started < self.MIN_LIFETIME:
                        logger.error("server process %s exited at start (code %s); stopping", proc.name, proc.exitcode)
                        self.failed = True
                        self.stopping.set()
                        break
                    logger.warning("server process %s exited (code %s); starting another", proc.name, proc.exitcode)
                    procs[i] = self._start(i)
        finally:
            for proc, _ in procs:
                if proc.is_alive():
                    proc.terminate()  # SIGTERM: uvicorn finishes what is in flight
            for proc, _ in procs:
                proc.join(timeout=25)
                if proc.is_alive():
                    proc.kill()
                    proc.join()
        if self.failed:
            raise EngineError("a server process could not start; see its messages above")


def app_factory(db=None):
    """The app of one server process, with the intent model trained in the background at once.

    Every message event answers its intent, and training takes seconds: without this the
    first requests after a start would each wait for it. Once trained, start-up's objects are
    frozen out of the garbage collector's passes (:mod:`engine.worker.heap`).
    """
    import threading

    from engine.ai.intent import default_classifier
    from engine.api import create_app
    from engine.worker import heap

    def warm_up() -> None:
        default_classifier()
        heap.freeze_startup_objects()  # the app and the trained model: out of every later collection

    heap.tune()
    threading.Thread(target=warm_up, name="intent-warm-up", daemon=True).start()
    return create_app(db)
