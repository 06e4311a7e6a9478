"""Connector settings for pure tests, whose targets are never connected to."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class NoSettings(BaseModel):
    model_config = ConfigDict(frozen=True)


NO_SETTINGS = NoSettings()
