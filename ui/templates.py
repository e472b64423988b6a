"""The template gallery: the spec's four examples plus the studio templates in ui/templates/."""

from __future__ import annotations

import json
from pathlib import Path

from engine.demo.seed import spec_examples

FOLDER = Path(__file__).parent / "templates"


def studio_templates() -> list[dict]:
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(FOLDER.glob("*.json"))]


def gallery() -> list[tuple[str, dict]]:
    """(source, definition) pairs: "Spec example" or "Studio template"."""
    return [("Spec example", d) for d in spec_examples()] + [("Studio template", d) for d in studio_templates()]


def parse_upload(data: bytes) -> list:
    """An uploaded file's workflows (one object or a list). Raises ValueError with a readable reason."""
    try:
        raw = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ValueError("the file is not UTF-8 text") from exc
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from exc
    if isinstance(raw, dict) and isinstance(raw.get("workflows"), list):
        raw = raw["workflows"]
    return raw if isinstance(raw, list) else [raw]


def as_draft(definition: dict) -> dict:
    """A copy of a template that is switched off: adding a template never starts it silently."""
    return {**definition, "enabled": False}
