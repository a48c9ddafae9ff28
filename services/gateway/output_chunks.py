"""A run's output as NDJSON lines that each say which stream their bytes came from (the console's log
tells stdout and stderr apart with them; the plain `/output` route sends the bytes alone)."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator

from scriptbus.gateway.readmodels import OutputPiece

MEDIA_TYPE = "application/x-ndjson"
EXAMPLE = (
    '{"stream":"stdout","offset":0,"data":"building…\\n"}\n'
    '{"stream":"stderr","offset":12,"data":"warning: \\u001b[33mold\\u001b[0m\\n"}\n'
    '{"stream":"stdout","offset":31,"data":"/w==","base64":true}\n'
)


def chunk_line(piece: OutputPiece) -> bytes:
    """One JSON line: `data` as text when the bytes are valid UTF-8, else base64 with `"base64": true`
    (bytes cut inside a character, or binary output: the line must still give back the exact bytes)."""
    line: dict[str, object]
    try:
        line = {"stream": piece.stream.value, "offset": piece.start, "data": piece.data.decode("utf-8")}
    except UnicodeDecodeError:
        line = {
            "stream": piece.stream.value,
            "offset": piece.start,
            "data": base64.b64encode(piece.data).decode("ascii"),
            "base64": True,
        }
    return json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


async def as_lines(pieces: AsyncIterator[OutputPiece]) -> AsyncIterator[bytes]:
    """Each piece as its line, as it comes (live pieces are not held back to be merged)."""
    try:
        async for piece in pieces:
            if piece.data:
                yield chunk_line(piece)
    finally:
        aclose = getattr(pieces, "aclose", None)
        if aclose is not None:
            await aclose()
