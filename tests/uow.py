"""Calling a service the way an entry point does: in a unit of work of its own."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import Engine

from engine.uow import unit_of_work


def in_uow(db: Engine, service: Callable[..., Any], /, *, read_only: bool = False, **kwargs: Any) -> Any:
    """``service(uow=..., **kwargs)`` in one unit of work (read-only ones never take SQLite's write lock)."""
    with unit_of_work(db, read_only=read_only) as uow:
        return service(uow=uow, **kwargs)
