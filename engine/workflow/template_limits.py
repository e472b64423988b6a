"""A Jinja2 sandbox that cannot be talked into building huge values.

Jinja's sandbox stops attribute tricks but not size: ``{{ 'x' * 100000000 }}``,
``{{ 'x'|center(10**9) }}`` or ``{{ 9**9**9 }}`` would allocate gigabytes or spin the CPU.
Here every operator, filter and string method that can grow a value checks the size it
would produce *before* producing it, against :data:`engine.workflow.limits.MAX_RENDERED_BYTES`,
and rendering stops as soon as the output passes that limit. Written here because Jinja2
has no such option (its ``MAX_RANGE`` bounds only ``range``).
"""

from __future__ import annotations

import re
from typing import Any

from jinja2 import filters as jinja_filters
from jinja2 import pass_eval_context
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from engine.workflow.limits import MAX_RENDERED_BYTES

#: Largest exponent ``**`` accepts (2 ** 4096 still prints in a blink).
MAX_EXPONENT = 4096
_WIDTH = re.compile(r"%[-#0 +]*(\d+)|\.(\d+)|\{[^{}]*?(\d{4,})[^{}]*\}")
_SIZED = (str, list, tuple, bytes)


#: Largest integer an operator may produce (a number of 30,000 digits).
MAX_INT_BITS = 100_000


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int_bits(operator: str, left: int, right: int) -> int:
    if operator == "*":
        return left.bit_length() + right.bit_length()
    return left.bit_length() * max(right, 0)


class TooLarge(SecurityError):
    """The template would produce more text than the limit allows."""


def _too_large(what: str) -> TooLarge:
    return TooLarge(f"{what} would be larger than the limit of {MAX_RENDERED_BYTES // 1024} KB")


def _size(value: Any) -> int:
    return len(value) if isinstance(value, _SIZED) else 0


def _check_widths(fmt: str) -> None:
    for match in _WIDTH.finditer(fmt):
        width = next((int(g) for g in match.groups() if g), 0)
        if width > MAX_RENDERED_BYTES:
            raise _too_large("the formatted text")


def _check_int(value: Any, what: str) -> None:
    if isinstance(value, int) and not isinstance(value, bool) and value > MAX_RENDERED_BYTES:
        raise _too_large(what)


@pass_eval_context
def _bounded_replace(eval_ctx, s, old, new, count=None):
    s, old, new = str(s), str(old), str(new)
    times = s.count(old) if old else len(s) + 1
    if count is not None:
        times = min(times, max(int(count), 0))
    if len(s) + times * max(len(new) - len(old), 0) > MAX_RENDERED_BYTES:
        raise _too_large("the replaced text")
    return jinja_filters.do_replace(eval_ctx, s, old, new, count)


@pass_eval_context
def _bounded_join(eval_ctx, value, d="", attribute=None):
    items = list(value)
    if len(str(d)) * len(items) > MAX_RENDERED_BYTES:
        raise _too_large("the joined text")
    return jinja_filters.do_join(eval_ctx, items, d, attribute)


def _bounded_center(value, width=80):
    _check_int(width, "the centred text")
    return jinja_filters.do_center(value, width)


def _bounded_indent(s, width=4, first=False, blank=False):
    pad = len(width) if isinstance(width, str) else int(width)
    if pad * (str(s).count("\n") + 1) + len(str(s)) > MAX_RENDERED_BYTES:
        raise _too_large("the indented text")
    return jinja_filters.do_indent(s, width, first, blank)


def _bounded_format(value, *args, **kwargs):
    _check_widths(str(value))
    return jinja_filters.do_format(value, *args, **kwargs)


#: Filters that could multiply their input: bounded versions, or gone (batch / slice fill).
_FILTERS = {
    "replace": _bounded_replace,
    "join": _bounded_join,
    "center": _bounded_center,
    "indent": _bounded_indent,
    "format": _bounded_format,
}
_DROPPED_FILTERS = ("batch", "slice", "wordwrap")
_GROWING_METHODS = {"center", "ljust", "rjust", "zfill", "expandtabs"}


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """:class:`ImmutableSandboxedEnvironment` plus size checks on everything that can grow a value."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.filters.update({k: v for k, v in _FILTERS.items() if k in self.filters})
        for name in _DROPPED_FILTERS:
            self.filters.pop(name, None)
        self.globals.pop("lipsum", None)

    def call_binop(self, context, operator: str, left: Any, right: Any) -> Any:
        if (
            operator in ("*", "**")
            and _is_int(left)
            and _is_int(right)
            and _int_bits(operator, left, right) > MAX_INT_BITS
        ):
            raise SecurityError("the number would be too large")
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, _SIZED) and isinstance(times, int) and len(seq) * times > MAX_RENDERED_BYTES:
                    raise _too_large("the repeated text")
        elif operator == "+" and _size(left) + _size(right) > MAX_RENDERED_BYTES:
            raise _too_large("the joined text")
        elif operator == "**" and isinstance(right, (int, float)) and abs(right) > MAX_EXPONENT and abs(left) > 1:
            raise SecurityError(f"exponents above {MAX_EXPONENT} are not allowed")
        elif operator == "%" and isinstance(left, str):
            _check_widths(left)
        return super().call_binop(context, operator, left, right)

    def call(__self, __context, __obj, *args: Any, **kwargs: Any) -> Any:
        owner = getattr(__obj, "__self__", None)
        name = getattr(__obj, "__name__", "")
        if isinstance(owner, str):
            if name in _GROWING_METHODS:
                for value in (*args, *kwargs.values()):
                    _check_int(value, "the padded text")
                if (
                    name == "expandtabs"
                    and owner.count("\t") * max([a for a in args if isinstance(a, int)] or [8]) > MAX_RENDERED_BYTES
                ):
                    raise _too_large("the expanded text")
            elif name == "replace" and len(args) >= 2:
                times = owner.count(str(args[0])) if args[0] else len(owner) + 1
                if len(owner) + times * max(len(str(args[1])) - len(str(args[0])), 0) > MAX_RENDERED_BYTES:
                    raise _too_large("the replaced text")
            elif name == "join" and args:
                items = list(args[0])
                if len(owner) * len(items) + sum(_size(i) for i in items) > MAX_RENDERED_BYTES:
                    raise _too_large("the joined text")
                args = (items, *args[1:])
            elif name in ("format", "format_map"):
                _check_widths(owner)
        return super().call(__context, __obj, *args, **kwargs)
