"""Engine exceptions.

One base class, :class:`EngineError`; each subclass's docstring is its default message
(the procrastinate pattern), so ``raise NotFound()`` already says something useful.
"""

from __future__ import annotations


class EngineError(Exception):
    """Something went wrong in the workflow engine."""

    def __init__(self, message: str | None = None, **details: object) -> None:
        self.message = message or (self.__doc__ or "").strip()
        self.details = details
        super().__init__(self.message)


class NotFound(EngineError):
    """Not found."""


class PermissionDenied(EngineError):
    """You do not have permission to do this."""


class Conflict(EngineError):
    """This conflicts with data that already exists."""


class InvalidInput(EngineError):
    """The input is not valid."""

    def __init__(self, message: str | None = None, *, field: str | None = None, **details: object) -> None:
        self.field = field
        if field and message:
            message = f"{field}: {message}"
        super().__init__(message, **details)


class ValidationFailed(InvalidInput):
    """The workflow definition has errors."""

    def __init__(self, problems: list, message: str | None = None) -> None:
        self.problems = problems
        errors = [p for p in problems if getattr(p, "severity", "error") == "error"]
        summary = "; ".join(f"{p.path}: {p.message}" for p in errors[:5])
        more = f" (+{len(errors) - 5} more)" if len(errors) > 5 else ""
        super().__init__(message or f"The workflow has {len(errors)} error(s): {summary}{more}")


class ActionError(EngineError):
    """The action failed."""


class RetryableError(ActionError):
    """The action failed for a reason that may go away; it can be retried.

    ``retry_after`` (seconds) is a hint from the other side (e.g. HTTP ``Retry-After``).
    """

    def __init__(self, message: str | None = None, *, retry_after: float | None = None, **details: object) -> None:
        self.retry_after = retry_after
        super().__init__(message, **details)


class PermanentError(ActionError):
    """The action failed and retrying will not help."""


class OutcomeUnknown(ActionError):
    """The request may have reached the provider, but its answer was lost; sending again could send twice."""


class BlockedAddress(PermanentError):
    """The address is not allowed (internal or private network) and is not on the tenant's allow-list."""


class InvalidRecipient(PermanentError):
    """The recipient is not a valid address or phone number."""


class TemplateError(ActionError):
    """A template could not be rendered."""


class StorageUnavailable(EngineError):
    """The database cannot take this request now; try again shortly."""

    def __init__(self, message: str | None = None, *, kind: str = "unavailable", retry_after: int = 5) -> None:
        #: ``locked`` (another process holds the write lock), ``full`` (no space left), ``io``
        #: (the storage failed a write) or ``unreachable`` (no connection to the server).
        self.kind = kind
        #: Seconds a client should wait before trying again (HTTP ``Retry-After``).
        self.retry_after = retry_after
        super().__init__(message)
