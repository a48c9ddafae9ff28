"""Request and response bodies of `/api/v1/tokens`. No body ever holds a digest; only the answer to
`POST` holds the token itself, that once."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from scriptbus.events.tokens import TOKEN_NAME_PATTERN, Role


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role = Field(description="`read`, `run` or `admin`.")
    name: str = Field(
        "",
        pattern=TOKEN_NAME_PATTERN + "|^$",
        description="Who holds it, e.g. `ci`: appears as `requested_by`, `stopped_by`, … in the events it "
        "causes (letters, digits and `_.@:-`, at most 64). Without one, `token-` and the id's first part.",
    )


class Token(BaseModel):
    id: str
    role: Role
    name: str
    created_at: datetime
    created_by: str = Field(description="The name of the token that made it.")
    revoked_at: datetime | None = None
    revoked_by: str = ""


class NewToken(Token):
    token: str = Field(description="The bearer token. Shown this once: only its digest is kept.")


class TokenList(BaseModel):
    items: list[Token]
