"""Active runs per workflow: the `wfactive` bucket maps a workflow id to the set of its active runs.

A workflow may have up to `max_active_runs` active runs (1 by default). Its key holds them all as one
JSON object, run id -> when it was claimed (unix seconds), and every change of that set is a
compare-and-set on the key's revision (`create` when there is none), so concurrent starts cannot
together go past the limit and a release never drops a run some later start has added meanwhile.

The gateway `claim`s a place before it publishes `wfrun.requested`; the scheduler `release`s it when the
workflow run has finished. A start that finds the set full asks who in it still counts as active: a run
the read models say finished, or a claim whose request was never published and is old, gives up its
place (so a crash between claiming and publishing, or a release the scheduler missed, leaks nothing).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass

import nats.js.errors
from nats.js.kv import KeyValue

# JetStream's error code for a publish whose expected last (subject) sequence is not the stream's.
WRONG_LAST_SEQUENCE = 10071
# Compare-and-set attempts before giving up: each lost attempt means another start or release won.
_ATTEMPTS = 200
_BACKOFF_S = 0.02

# Run id -> claimed at (unix seconds); None for a key written before the time was kept.
Holders = dict[str, float | None]
# Given the holders and the key's revision, which of them still count as active.
StillActive = Callable[[Holders, int], Awaitable[Collection[str]]]


class ActiveRunsBusy(RuntimeError):
    """The workflow's key kept changing under us: too many concurrent starts and releases."""


@dataclass(frozen=True)
class ActiveRuns:
    holders: Holders
    revision: int | None  # None: no key (nothing active)


def decode_holders(value: bytes | None) -> Holders:
    """The set a key holds. A bare run id is what a single-run key held before sets: one holder."""
    text = (value or b"").decode().strip()
    if not text:
        return {}
    if not text.startswith("{"):
        return {text: None}
    raw = json.loads(text)
    return {str(k): (None if v is None else float(v)) for k, v in raw.items()}


def encode_holders(holders: Holders) -> bytes:
    return json.dumps(holders, separators=(",", ":")).encode()


def with_claim(holders: Holders, wfrun_id: str, limit: int, claimed_at: float) -> Holders | None:
    """The set with `wfrun_id` added, or None when `limit` runs already hold it. A run already in the
    set keeps its place (a repeat of the same start)."""
    if wfrun_id in holders:
        return holders
    if len(holders) >= limit:
        return None
    return {**holders, wfrun_id: claimed_at}


def by_claim_time(holders: Holders) -> list[str]:
    """The holders' ids, earliest claim first."""
    return sorted(holders, key=lambda r: (holders[r] or 0.0, r))


async def read_active_runs(kv: KeyValue, workflow_id: str) -> ActiveRuns:
    try:
        entry = await kv.get(workflow_id)
    except nats.js.errors.KeyNotFoundError:
        return ActiveRuns({}, None)
    return ActiveRuns(decode_holders(entry.value), entry.revision)


async def _write(kv: KeyValue, workflow_id: str, holders: Holders, revision: int | None) -> bool:
    """Replace the set read at `revision` by `holders`; False when the key has changed since."""
    try:
        if revision is None:
            await kv.create(workflow_id, encode_holders(holders))
        elif holders:
            await kv.update(workflow_id, encode_holders(holders), last=revision)
        else:
            await kv.delete(workflow_id, last=revision)
    except nats.js.errors.KeyWrongLastSequenceError:
        return False
    except nats.js.errors.BadRequestError as exc:
        if exc.err_code == WRONG_LAST_SEQUENCE:
            return False
        raise
    return True


async def _back_off(attempt: int) -> None:
    await asyncio.sleep(random.uniform(0, _BACKOFF_S * min(attempt + 1, 10)))


async def claim_active_run(
    kv: KeyValue,
    workflow_id: str,
    wfrun_id: str,
    limit: int = 1,
    still_active: StillActive | None = None,
) -> list[str]:
    """Make `wfrun_id` one of the (at most `limit`) active runs of `workflow_id`. An empty list when it now
    is (or already was); else the active runs that fill the workflow, earliest first. With `still_active`,
    the holders of a full set it does not name give up their places."""
    known_active: set[str] = set()
    for attempt in range(_ATTEMPTS):
        current = await read_active_runs(kv, workflow_id)
        holders = current.holders
        claimed = with_claim(holders, wfrun_id, limit, time.time())
        if claimed is None and still_active is not None and current.revision is not None:
            unknown = {r: t for r, t in holders.items() if r not in known_active}
            if unknown:
                known_active |= set(await still_active(unknown, current.revision))
            holders = {r: t for r, t in holders.items() if r in known_active}
            claimed = with_claim(holders, wfrun_id, limit, time.time())
        if claimed is None:
            return by_claim_time(holders)
        if claimed is current.holders or await _write(kv, workflow_id, claimed, current.revision):
            return []
        await _back_off(attempt)
    raise ActiveRunsBusy(f"workflow {workflow_id}: its active runs keep changing")


async def active_runs(kv: KeyValue, workflow_id: str) -> list[str]:
    """The ids of the runs holding `workflow_id`, earliest first (finished ones not yet released too)."""
    return by_claim_time((await read_active_runs(kv, workflow_id)).holders)


async def active_run(kv: KeyValue, workflow_id: str) -> str | None:
    """The earliest run holding `workflow_id`, if any."""
    holders = await active_runs(kv, workflow_id)
    return holders[0] if holders else None


async def release_active_runs(kv: KeyValue, workflow_id: str, wfrun_ids: Collection[str]) -> set[str]:
    """Give up the places of those of `wfrun_ids` that hold `workflow_id`; returns the ones that did. The
    write names the revision it read, so a run added meanwhile keeps its place."""
    for attempt in range(_ATTEMPTS):
        current = await read_active_runs(kv, workflow_id)
        leaving = {r for r in current.holders if r in wfrun_ids}
        if not leaving:
            return set()
        remaining = {r: t for r, t in current.holders.items() if r not in leaving}
        if await _write(kv, workflow_id, remaining, current.revision):
            return leaving
        await _back_off(attempt)
    raise ActiveRunsBusy(f"workflow {workflow_id}: its active runs keep changing")


async def release_active_run(kv: KeyValue, workflow_id: str, wfrun_id: str) -> bool:
    """Free `wfrun_id`'s place in `workflow_id` if it holds one; True when it did."""
    return bool(await release_active_runs(kv, workflow_id, {wfrun_id}))
