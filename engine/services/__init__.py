"""Use cases shared by the UI, the REST API and the CLI. Every function takes an Actor.

``workflows``: tenants, workflow CRUD, versions, import/export, stats.
``runs``: events, manual and dry runs, executions, outbox, leads and bookings.
``members``: users and roles of a studio. ``api_keys``: keys of the REST API.
"""

from engine.services.api_keys import *  # noqa: F403
from engine.services.api_keys import __all__ as _api_keys_all
from engine.services.members import *  # noqa: F403
from engine.services.members import __all__ as _members_all
from engine.services.runs import *  # noqa: F403
from engine.services.runs import __all__ as _runs_all
from engine.services.workflows import *  # noqa: F403
from engine.services.workflows import __all__ as _wf_all

__all__ = list(_wf_all) + list(_runs_all) + list(_members_all) + list(_api_keys_all)
