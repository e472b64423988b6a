"""The REST API (FastAPI): ``create_app(db)``; run it with ``python -m engine api``."""

from engine.api.app import create_app

__all__ = ["create_app"]
