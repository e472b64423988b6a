"""Garbage-collector settings for the long-running processes (API server, worker).

CPython's cyclic collector walks every tracked object of the generations it collects. A
server process holds ~250,000 long-lived objects after start-up (the app, SQLAlchemy's
metadata, the intent model), so each full (generation 2) collection took 150-200 ms, and under
load one came every two seconds or so: every request in flight waited for it. That was the
99th percentile of ``POST /api/events`` at 64 connections (see docs/PERFORMANCE.md).

* :func:`freeze_startup_objects` moves what start-up built into the permanent generation
  (``gc.freeze()``, as Instagram's servers do), so later collections no longer walk it.
* :func:`tune` makes young collections rarer: the defaults (700, 10, 10) collect generation 0
  every 700 net allocations, a few times per request here; 20,000 keeps the same guarantees
  (cycles are still found) at a fraction of the passes, for a few MB more memory at most.
"""

from __future__ import annotations

import gc
import logging

logger = logging.getLogger(__name__)

#: Generation thresholds for service processes (CPython's defaults: 700, 10, 10).
THRESHOLDS = (20_000, 20, 10)


def tune() -> None:
    """Rarer young-generation collections (call once, early, in a service process)."""
    gc.set_threshold(*THRESHOLDS)


def freeze_startup_objects() -> None:
    """Collect once, then keep everything alive now out of every later collection."""
    gc.collect()
    gc.freeze()
    logger.debug("gc: %d start-up objects frozen", gc.get_freeze_count())
