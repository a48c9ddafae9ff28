"""What the files and artifacts API takes and answers: file names, artifact patterns, file and artifact
descriptions."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field

from scriptbus.events.files import (
    MAX_FILES_PER_RUN,
    MAX_PATTERNS_PER_RUN,
    Artifact,
    name_problem,
    pattern_problem,
)


def _names(values: list[str]) -> list[str]:
    for value in values:
        problem = name_problem(value)
        if problem is not None:
            raise ValueError(f"file name {value!r} {problem}")
    if len(set(values)) != len(values):
        raise ValueError("names a file twice")
    return values


def _patterns(values: list[str]) -> list[str]:
    for value in values:
        problem = pattern_problem(value)
        if problem is not None:
            raise ValueError(f"pattern {value!r} {problem}")
    return values


FileNames = Annotated[list[str], Field(max_length=MAX_FILES_PER_RUN), AfterValidator(_names)]
ArtifactPatterns = Annotated[list[str], Field(max_length=MAX_PATTERNS_PER_RUN), AfterValidator(_patterns)]

FILES_DOC = (
    "Names of stored files (`PUT /api/v1/files/{name}`) the executor places in the run's folder, at the "
    "same relative paths, before the script starts (0755 when stored as executable, else 0644, owned by "
    "the script's user). A name not stored is a 422."
)
ARTIFACTS_DOC = (
    "Glob patterns, relative to the run's folder (`*.log`, `out/**`), of regular files to keep after the "
    "script ends, whatever its status; listed by `GET /api/v1/runs/{id}/artifacts`. Symlinks are never "
    "followed."
)


class StoredFile(BaseModel):
    """One file in the files store."""

    name: str
    size: int
    sha256: str
    executable: bool
    stored_at: datetime | None
    stored_by: str


class StoredFileList(BaseModel):
    files: list[StoredFile]


class ArtifactList(BaseModel):
    """What a run's `artifacts` patterns kept, each downloadable at `…/artifacts/{path}`."""

    run_id: str
    artifacts: list[Artifact]
