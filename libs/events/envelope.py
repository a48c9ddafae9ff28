"""The envelope every event shares, and how an event type's old versions are upcast to its current one."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Turns the JSON object of one version of an event into the next version's.
Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


def new_id() -> str:
    """A fresh identifier: a UUID4 in its canonical text form."""
    return str(uuid.uuid4())


def utcnow() -> datetime:
    return datetime.now(UTC)


class Event(BaseModel):
    """Base of all events: frozen data, unknown fields ignored so old readers survive new writers.

    `class_version` is the shape this code writes (sent as `schema_version`). A change that old
    readers or old stored messages cannot take raises it by one and adds a static method
    `upcast_v<N>_v<N+1>(raw) -> raw` beside it, so every stored version still decodes.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")
    class_version: ClassVar[int] = 1

    type: str
    schema_version: int = 1
    event_id: str = Field(default_factory=new_id)
    occurred_at: datetime = Field(default_factory=utcnow)

    @model_validator(mode="before")
    @classmethod
    def _current_version(cls, data: Any) -> Any:
        # An event made in code is of its class's current version.
        if isinstance(data, dict) and "schema_version" not in data:
            return {**data, "schema_version": cls.class_version}
        return data

    @classmethod
    def upcasters(cls) -> list[Upcaster]:
        """The chain from version 1 to `class_version`; a missing link is a TypeError."""
        chain: list[Upcaster] = []
        for version in range(1, cls.class_version):
            name = f"upcast_v{version}_v{version + 1}"
            step = getattr(cls, name, None)
            if not callable(step):
                raise TypeError(f"{cls.__name__} is at version {cls.class_version} but has no {name}")
            chain.append(step)
        return chain

    @classmethod
    def upcast(cls, raw: dict[str, Any]) -> dict[str, Any]:
        """`raw` (a decoded JSON object of any stored version) brought to `class_version`."""
        version = int(raw.get("schema_version", 1))
        for step in cls.upcasters()[max(version, 1) - 1 :]:
            raw = step(raw)
            version += 1
            raw["schema_version"] = version
        return raw
