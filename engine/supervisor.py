"""``python -m engine start`` (what ``bash scripts/start.sh`` runs): the whole product on one machine.

Three processes, each the product's own command, so they behave exactly as when started by hand:

* **app**: ``streamlit run app.py`` on ``STUDIO_ADDRESS:STUDIO_PORT`` (127.0.0.1:8501), told where
  the API is (``STUDIO_API_URL``) so the settings page can check that it answers;
* **api**: ``python -m engine api`` on ``STUDIO_ADDRESS:STUDIO_API_PORT`` (127.0.0.1:8000): the
  REST API, the provider webhooks and the web-chat widget (without it a connected channel
  receives nothing);
* **worker**: ``python -m engine worker`` (waits, follow-ups, retries, deliveries, cron).

:class:`Supervisor` starts them, restarts one that dies (with a log line; one that dies again
soon after its start waits longer each time, up to a minute, so a crash loop cannot spin), and on
SIGTERM, SIGINT (Ctrl-C) or SIGHUP stops them all: SIGTERM to each (the worker finishes its step,
uvicorn its requests), SIGKILL to any still running after the grace period. Each child runs in
its own session, so a Ctrl-C reaches only the supervisor, which stops them in order; on Linux a
child also gets SIGTERM if the supervisor itself is killed (``PR_SET_PDEATHSIG``), so none is
left behind.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

logger = logging.getLogger(__name__)

#: A child that ran at least this long before it died is restarted after ``FIRST_DELAY``;
#: one that died sooner waits twice as long as the last time, up to ``MAX_DELAY``.
STEADY_SECONDS = 10.0
FIRST_DELAY = 1.0
MAX_DELAY = 60.0
#: How long the children get to stop after SIGTERM before they are killed.
GRACE_SECONDS = 25.0


@dataclass
class Addresses:
    """Where the app and the API listen (from the environment, see :func:`addresses_from_env`)."""

    host: str = "127.0.0.1"
    app_port: int = 8501
    api_port: int = 8000
    #: How the app reaches the API (``STUDIO_API_URL``); derived from host and port when unset.
    api_url: str = ""

    def __post_init__(self) -> None:
        if not self.api_url:
            self.api_url = f"http://{_reachable(self.host)}:{self.api_port}"

    @property
    def app_url(self) -> str:
        return f"http://{_reachable(self.host)}:{self.app_port}"


def _reachable(host: str) -> str:
    """The address a local client uses for a server bound to ``host`` (all interfaces: loopback)."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def addresses_from_env(env: Mapping[str, str]) -> Addresses:
    """From ``STUDIO_ADDRESS``, ``STUDIO_PORT``, ``STUDIO_API_PORT``, ``STUDIO_API_URL`` (a bad port names it)."""
    from engine.errors import InvalidInput

    ports = {}
    for name, default in (("STUDIO_PORT", 8501), ("STUDIO_API_PORT", 8000)):
        raw = env.get(name) or str(default)
        if not raw.isdigit() or not 0 < int(raw) < 65536:
            raise InvalidInput(f"{name} must be a port number (1-65535), not {raw!r}", field=name)
        ports[name] = int(raw)
    return Addresses(
        host=env.get("STUDIO_ADDRESS") or "127.0.0.1",
        app_port=ports["STUDIO_PORT"],
        api_port=ports["STUDIO_API_PORT"],
        api_url=env.get("STUDIO_API_URL") or "",
    )


def product_commands(
    where: Addresses, *, python: str = sys.executable, database_url: str | None = None, app_args: Sequence[str] = ()
) -> dict[str, list[str]]:
    """The three commands, by name (the order they start in)."""
    engine = [python, "-m", "engine"] + (["--database-url", database_url] if database_url else [])
    app = [python, "-m", "streamlit", "run", "app.py", "--server.address", where.host]
    app += ["--server.port", str(where.app_port), "--server.headless", "true", *app_args]
    return {
        "api": [*engine, "api", "--host", where.host, "--port", str(where.api_port)],
        "worker": [*engine, "worker"],
        "app": app,
    }


@dataclass
class Child:
    """One supervised process: how to start it, and its restart state."""

    name: str
    argv: list[str]
    proc: subprocess.Popen | None = None
    started: float = 0.0
    #: The wait before the next restart (doubles while it keeps dying early).
    delay: float = 0.0
    #: When a dead child is due to start again (monotonic), or None while it runs.
    restart_at: float | None = None
    restarts: int = 0


class Supervisor:
    """Runs ``commands`` (name -> argv) until told to stop; see the module docstring."""

    def __init__(
        self,
        commands: Mapping[str, list[str]],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        grace: float = GRACE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.children = [Child(name, list(argv)) for name, argv in commands.items()]
        self.env = dict(os.environ if env is None else env)
        self.cwd = cwd
        self.grace = grace
        self.clock = clock
        self.stopping = threading.Event()

    # ------------------------------------------------------------------ running

    def run(self) -> int:
        """Start every child, keep them running, stop them all on a signal. Returns 0."""
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        try:
            self.start_all()
            while not self.stopping.wait(0.2):
                self.check()
        finally:
            self.stop()
        return 0

    def start_all(self) -> None:
        for child in self.children:
            self._start(child)

    def _on_signal(self, signum: int, _frame: object) -> None:
        if not self.stopping.is_set():
            logger.info("%s: stopping %s", signal.Signals(signum).name, ", ".join(c.name for c in self.children))
        self.stopping.set()

    def _start(self, child: Child) -> None:
        parent = os.getpid()
        child.proc = subprocess.Popen(
            child.argv,
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,  # Ctrl-C reaches the supervisor only; it stops the children in order
            preexec_fn=lambda: _die_with(parent),
        )
        child.started, child.restart_at = self.clock(), None
        logger.info("started %s (pid %s)", child.name, child.proc.pid)

    def check(self) -> None:
        """Restart children that died, once their back-off has passed."""
        now = self.clock()
        for child in self.children:
            if child.restart_at is not None:
                if now >= child.restart_at and not self.stopping.is_set():
                    child.restarts += 1
                    self._start(child)
                continue
            code = child.proc.poll() if child.proc else None
            if code is None:
                continue
            ran = now - child.started
            child.delay = FIRST_DELAY if ran >= STEADY_SECONDS else min(max(child.delay * 2, FIRST_DELAY), MAX_DELAY)
            child.restart_at = now + child.delay
            logger.warning(
                "%s (pid %s) %s after %.0f s; restarting in %.0f s",
                child.name,
                child.proc.pid if child.proc else "?",
                _how(code),
                ran,
                child.delay,
            )

    # ------------------------------------------------------------------ stopping

    def stop(self) -> None:
        """SIGTERM to every running child, SIGKILL to those still running after the grace period."""
        running = [c for c in self.children if c.proc is not None and c.proc.poll() is None]
        for child in running:
            _signal_group(child.proc, signal.SIGTERM)
        deadline = self.clock() + self.grace
        for child in running:
            assert child.proc is not None
            try:
                child.proc.wait(timeout=max(0.0, deadline - self.clock()))
            except subprocess.TimeoutExpired:
                logger.warning("%s did not stop within %.0f s; killing it", child.name, self.grace)
                _signal_group(child.proc, signal.SIGKILL)
                child.proc.wait()
        for child in running:
            # Whatever a child left in its session (a helper process) goes with it.
            _signal_group(child.proc, signal.SIGKILL)


def _how(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def _signal_group(proc: subprocess.Popen | None, sig: int) -> None:
    if proc is None:
        return
    try:
        os.killpg(proc.pid, sig)  # the child leads its own session (start_new_session)
    except ProcessLookupError:
        pass
    except PermissionError:  # its group id was reused by someone else's process: only the child
        if proc.poll() is None:
            proc.send_signal(sig)


def _die_with(parent: int) -> None:
    """In the child, before exec: get SIGTERM when the supervisor dies (Linux), even by SIGKILL."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        return
    if os.getppid() != parent:  # the supervisor died before the line above
        os._exit(1)


def start(
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    database_url: str | None = None,
    app_args: Sequence[str] = (),
    announce: Callable[[Addresses], None] | None = None,
) -> int:
    """Run the product (app, API, worker) until a signal; ``announce`` is told the addresses first."""
    env = dict(os.environ if env is None else env)
    where = addresses_from_env(env)
    env["STUDIO_API_URL"] = where.api_url
    if announce is not None:
        announce(where)
    commands = product_commands(where, database_url=database_url, app_args=list(app_args))
    return Supervisor(commands, env=env, cwd=cwd).run()
