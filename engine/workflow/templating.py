"""``{{trigger.from}}``-style templates, rendered in Jinja2's sandbox.

Roots: ``trigger``, ``results``, ``lead``, ``tenant``, ``now``. Action ids may contain ``-``
(``{{results.ai-1.text}}``), which Jinja would read as a subtraction, so dotted paths are
rewritten to subscripts (``results["ai-1"]["text"]``) before Jinja sees them. An unknown
variable raises :class:`TemplateError` instead of rendering an empty string.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError
from jinja2.sandbox import SecurityError

from engine.errors import TemplateError
from engine.workflow.limits import MAX_RENDERED_BYTES, MAX_TEMPLATE_NESTING
from engine.workflow.template_limits import BoundedSandbox

ROOTS = ("trigger", "results", "lead", "tenant", "now")

_EXPR = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
# A dotted path: root identifier followed by one or more ".segment" (segments may hold '-').
_PATH = re.compile(r"(?<![\w.\"'\]])([A-Za-z_]\w*)((?:\.[A-Za-z0-9_][\w-]*)+)")
_STRING = re.compile(r"(\"[^\"]*\"|'[^']*')")

_env = BoundedSandbox(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)


def has_template(text: str) -> bool:
    """Whether the text contains a ``{{ ... }}`` expression."""
    return "{{" in text


def _subscript(match: re.Match[str]) -> str:
    root, rest = match.group(1), match.group(2)
    parts = rest[1:].split(".")
    return root + "".join(f'["{p}"]' for p in parts)


def _rewrite_expression(expr: str) -> str:
    # Leave string literals alone; rewrite dotted paths everywhere else.
    pieces = _STRING.split(expr)
    return "".join(p if i % 2 else _PATH.sub(_subscript, p) for i, p in enumerate(pieces))


def _rewrite(template: str) -> str:
    return _EXPR.sub(lambda m: "{{" + _rewrite_expression(m.group(1)) + "}}", template)


def references(template: str) -> list[tuple[str, ...]]:
    """Every variable path used in the template, e.g. ``("results", "ai-1", "text")``."""
    found: list[tuple[str, ...]] = []
    for expr in _EXPR.findall(template):
        for piece in _STRING.split(expr)[::2]:
            consumed: set[int] = set()
            for m in _PATH.finditer(piece):
                found.append((m.group(1), *m.group(2)[1:].split(".")))
                consumed.update(range(m.start(), m.end()))
            for m in re.finditer(r"(?<![\w.\"'\]])([A-Za-z_]\w*)", piece):
                if m.start() not in consumed and m.group(1) not in _JINJA_WORDS and not _is_filter(piece, m.start()):
                    found.append((m.group(1),))
    return found


_JINJA_WORDS = {"and", "or", "not", "in", "is", "if", "else", "true", "false", "none", "True", "False", "None"}


def _is_filter(piece: str, start: int) -> bool:
    return piece[:start].rstrip().endswith("|")


def _nesting(template: str) -> int:
    """The deepest nesting of ``{{``, ``{%``, brackets and parentheses in the template."""
    depth = deepest = 0
    for ch in template:
        if ch in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in ")]}":
            depth = max(depth - 1, 0)
    return deepest


@lru_cache(maxsize=2048)
def _compile(template: str):
    # Jinja's parser recurses per nesting level: refuse deep nesting before it overflows the stack.
    if _nesting(template) > MAX_TEMPLATE_NESTING + 2:
        raise TemplateError(f"template is nested too deeply (more than {MAX_TEMPLATE_NESTING} levels of brackets)")
    try:
        return _env.from_string(_rewrite(template))
    except TemplateSyntaxError as exc:
        raise TemplateError(f"template syntax error: {exc.message}") from exc
    except (RecursionError, MemoryError) as exc:
        raise TemplateError("template is nested too deeply") from exc


def _render_bounded(template: str, context: dict[str, Any]) -> str:
    """Render, stopping as soon as the output passes :data:`MAX_RENDERED_BYTES`."""
    out: list[str] = []
    size = 0
    for chunk in _compile(template).generate(context):
        size += len(chunk)
        if size > MAX_RENDERED_BYTES:
            raise TemplateError(f"the rendered text is larger than the limit of {MAX_RENDERED_BYTES // 1024} KB")
        out.append(chunk)
    return "".join(out)


def check_syntax(template: str) -> str | None:
    """The syntax error message of the template, or ``None`` when it parses."""
    try:
        _compile(template)
    except TemplateError as exc:
        return exc.message
    return None


#: ``{{ path }}`` with nothing but a dotted path inside (the common case).
_SIMPLE = re.compile(r"\{\{\s*([A-Za-z_]\w*(?:\.[A-Za-z0-9_][\w-]*)*)\s*\}\}")
_PLAIN_TYPES = (str, int, float, bool, type(None))


@lru_cache(maxsize=2048)
def _plan(template: str) -> tuple | None:
    """Literal text and key paths, alternating, when every expression is a plain path; else None."""
    parts: list[Any] = []
    pos = 0
    for m in _SIMPLE.finditer(template):
        parts.append(template[pos : m.start()])
        parts.append(tuple(m.group(1).split(".")))
        pos = m.end()
    parts.append(template[pos:])
    literals = parts[::2]
    if any(marker in literal for literal in literals for marker in ("{{", "{%", "{#")) or any(
        literal.endswith("{") for literal in literals[:-1]
    ):
        return None  # filters, operators, statements, comments, "{{{": Jinja's job
    return tuple(parts)


def _render_plain(plan: tuple, context: dict[str, Any]) -> str | None:
    """What Jinja renders for a plan of plain paths (``str()`` of the value), or None when a
    path does not lead through dict keys to a plain value (Jinja then decides, errors included)."""
    out = []
    for i, part in enumerate(plan):
        if i % 2 == 0:
            out.append(part)
            continue
        value: Any = context
        for key in part:
            if type(value) is not dict or key not in value:
                return None
            value = value[key]
        if not isinstance(value, _PLAIN_TYPES):
            return None
        out.append(value if type(value) is str else str(value))
    return "".join(out)


def render(template: str, context: dict[str, Any]) -> str:
    """Render the template; unknown variables and sandbox violations raise TemplateError.

    Templates made only of text and plain paths (``Hi {{trigger.from}}!``) are filled in
    directly, as Jinja would fill them; anything else, and any path that does not resolve,
    goes through the sandboxed Jinja environment.
    """
    if not has_template(template):
        return template
    plan = _plan(template)
    if plan is not None:
        text = _render_plain(plan, context)
        if text is not None:
            if len(text) > MAX_RENDERED_BYTES:
                raise TemplateError(f"the rendered text is larger than the limit of {MAX_RENDERED_BYTES // 1024} KB")
            return text
    try:
        return _render_bounded(template, context)
    except UndefinedError as exc:
        raise TemplateError(f"unknown variable in template {template!r}: {exc.message}") from exc
    except SecurityError as exc:
        raise TemplateError(f"template not allowed: {exc}") from exc
    except (RecursionError, MemoryError) as exc:
        raise TemplateError("template is nested too deeply or too large to render") from exc
    except TemplateError:
        raise
    except Exception as exc:
        raise TemplateError(f"template {template!r} failed: {exc}") from exc


def render_value(value: Any, context: dict[str, Any]) -> Any:
    """Render templates inside strings, lists and dicts (keys stay as written)."""
    if isinstance(value, str):
        return render(value, context)
    if isinstance(value, list):
        return [render_value(v, context) for v in value]
    if isinstance(value, dict):
        return {k: render_value(v, context) for k, v in value.items()}
    return value


def iter_strings(value: Any, path: str = ""):
    """Yield ``(path, string)`` for every string inside nested lists and dicts."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from iter_strings(v, f"{path}[{i}]")
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from iter_strings(v, f"{path}.{k}" if path else str(k))
