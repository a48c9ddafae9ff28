"""One active run per workflow: the `wfactive` bucket maps a workflow id to its active workflow run.

The gateway `claim`s the key before it publishes `wfrun.requested`; the scheduler `release`s it when
that workflow run has finished. KV `create` is the one atomic check, so two concurrent starts of a
workflow cannot both win, and a release never frees a key some later run has taken since.
"""

from __future__ import annotations

import nats.js.errors
from nats.js.kv import KeyValue

# JetStream's error code for a publish whose expected last (subject) sequence is not the stream's.
WRONG_LAST_SEQUENCE = 10071


async def claim_active_run(kv: KeyValue, workflow_id: str, wfrun_id: str) -> str | None:
    """Make `wfrun_id` the active run of `workflow_id`. None when it now is (or already was); else the
    id of the active run that holds the workflow."""
    for _ in range(3):
        try:
            await kv.create(workflow_id, wfrun_id.encode())
            return None
        except nats.js.errors.KeyWrongLastSequenceError:
            pass
        try:
            entry = await kv.get(workflow_id)
        except nats.js.errors.KeyNotFoundError:
            continue  # released between our create and our look: try again
        holder = (entry.value or b"").decode()
        return None if holder == wfrun_id else holder
    raise RuntimeError(f"workflow {workflow_id}: its active-run key keeps changing")


async def active_run(kv: KeyValue, workflow_id: str) -> str | None:
    """The id of the active run of `workflow_id`, if any."""
    try:
        entry = await kv.get(workflow_id)
    except nats.js.errors.KeyNotFoundError:
        return None
    return (entry.value or b"").decode() or None


async def release_active_run(kv: KeyValue, workflow_id: str, wfrun_id: str) -> bool:
    """Free `workflow_id` if `wfrun_id` still holds it; True when it did. The delete names the revision
    it read, so a run that took the key meanwhile keeps it."""
    try:
        entry = await kv.get(workflow_id)
    except nats.js.errors.KeyNotFoundError:
        return False
    if (entry.value or b"").decode() != wfrun_id:
        return False
    try:
        await kv.delete(workflow_id, last=entry.revision)
    except nats.js.errors.BadRequestError as exc:
        if exc.err_code == WRONG_LAST_SEQUENCE:
            return False
        raise
    return True
