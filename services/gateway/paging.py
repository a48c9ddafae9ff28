"""Keyset cursors for the runs list: an opaque token naming the last run of a page by (created_at, id),
so the next page starts just past it however many runs were added meanwhile."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import datetime
from typing import Protocol

from scriptbus.gateway.schemas import utc_instant

_NOT_OURS = "not a cursor this API returned (use `next_cursor` of a previous page)"


class Keyed(Protocol):
    """What pages are ordered by: runs and workflow runs alike."""

    @property
    def created_at(self) -> datetime: ...
    @property
    def id(self) -> str: ...


def encode_cursor(run: Keyed) -> str:
    """The cursor of the page that follows `run`."""
    raw = json.dumps({"t": run.created_at.isoformat(), "id": run.id}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """(created_at, id) from a cursor; ValueError when it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        fields = json.loads(raw)
        if (
            not isinstance(fields, dict)
            or not isinstance(fields.get("t"), str)
            or not isinstance(fields.get("id"), str)
        ):
            raise ValueError(_NOT_OURS)
        created_at = datetime.fromisoformat(fields["t"])
        run_id = str(uuid.UUID(fields["id"]))
        if created_at.tzinfo is None:
            raise ValueError(_NOT_OURS)
        # A forged time whose zone takes it past year 9999 in UTC cannot go to PostgreSQL.
        created_at = utc_instant(created_at)
    except (binascii.Error, ValueError, TypeError, KeyError, UnicodeDecodeError, RecursionError) as exc:
        raise ValueError(_NOT_OURS) from exc
    return created_at, run_id
