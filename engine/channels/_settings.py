"""Base class for adapter settings: accepts snake_case or camelCase keys."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class ChannelSettings(BaseModel):
    """Adapter settings; fields may be given as ``snake_case`` or ``camelCase``. Unknown keys are ignored."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)
