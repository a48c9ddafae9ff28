"""Pulling run requests within capacity, claiming each run exactly once, obeying stop requests, and
handing back or stopping work at shutdown."""

from __future__ import annotations

import asyncio
import logging

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy
from nats.js.kv import KeyValue

from scriptbus.events import (
    RunFinished,
    RunRequested,
    RunStatus,
    RunStopRequested,
    Subjects,
    claim_holder,
    claims_bucket,
    decode_event,
    ensure_queue,
    executor_claim,
    publish_event,
    valid_token,
)
from scriptbus.events.bus import BUS_ERRORS
from scriptbus.events.workflows import WfRunStepHeld, WfRunStepReleased, WfRunStopRequested
from scriptbus.executor.capacity import Capacity
from scriptbus.executor.execution import SHUTDOWN_REASON, Execution, ExecutorIdentity
from scriptbus.executor.output import OutputPublisher
from scriptbus.executor.process import StopCause

log = logging.getLogger(__name__)

# Most requests taken in one fetch; a fetch never asks for more than the free slots.
MAX_BATCH = 16
# A fetch waits this long for requests; also how soon a pull loop notices that it should stop.
FETCH_WAIT_S = 1.0
# A request we could not claim (NATS trouble) comes back after this.
RETRY_DELAY_S = 1.0
# At shutdown, how long past the longest grace period finishes may take to reach NATS.
SHUTDOWN_PUBLISH_S = 15.0


class _Pending:
    """A request between decode and start: a stop seen now is remembered here."""

    __slots__ = ("stop_reason", "wfrun_id")

    def __init__(self, wfrun_id: str | None = None) -> None:
        self.stop_reason: str | None = None
        self.wfrun_id = wfrun_id


class Worker:
    """The executor's work: one pull loop per target, a claim per request, an `Execution` per run."""

    def __init__(
        self,
        nc: Client,
        js: JetStreamContext,
        subjects: Subjects,
        me: ExecutorIdentity,
        targets: list[str],
        max_concurrency: int,
    ) -> None:
        self._nc = nc
        self._js = js
        self._subjects = subjects
        self._me = me
        self.targets = targets
        self.capacity = Capacity(max_concurrency, parties=len(targets))
        self._publisher = OutputPublisher(nc, js)
        self._kv: KeyValue | None = None
        self._pending: dict[str, _Pending] = {}
        self.executions: dict[str, Execution] = {}
        # Runs whose claim we sent without learning the answer: finding our own claim later means ours.
        self._unsure_claims: set[str] = set()
        self._loops: list[asyncio.Task[None]] = []
        self._subs: list[JetStreamContext.PullSubscription] = []
        self._handlers: set[asyncio.Task[None]] = set()
        self.draining = False
        self._finishes: JetStreamContext.PushSubscription | None = None

    async def start(self) -> None:
        """Queues, the stop subscription (before any pull, so no stop for a run we take is missed),
        then one pull loop per target."""
        for target in self.targets:
            await ensure_queue(self._js, self._subjects, target)
        self._kv = await claims_bucket(self._js, self._subjects)
        await self._nc.subscribe(self._subjects.all_stop_requests, cb=self._on_stop)
        # From the stream, not core NATS: an ordered consumer picks up where it was after a reconnect, so
        # an executor that was paused or cut off still learns which of its runs ended elsewhere.
        self._finishes = await self._js.subscribe(
            self._subjects.all_run_finishes, ordered_consumer=True, deliver_policy=DeliverPolicy.NEW, cb=self._on_finish
        )
        # A workflow run's stop reaches its steps' runs here too, so it works while the scheduler is down;
        # so do holds made through the API, which such a stop must wait for.
        for held in (self._subjects.all_step_holds, self._subjects.all_step_releases):
            await self._js.subscribe(held, ordered_consumer=True, deliver_policy=DeliverPolicy.NEW, cb=self._on_hold)
        await self._nc.subscribe(self._subjects.all_wfrun_stop_requests, cb=self._on_wfrun_stop)
        for target in self.targets:
            sub = await self._js.pull_subscribe_bind(
                durable=self._subjects.queue_consumer(target), stream=self._subjects.events_stream
            )
            self._subs.append(sub)
            self._loops.append(asyncio.create_task(self._pull_loop(target, sub), name=f"pull-{target}"))

    def running_run_ids(self) -> list[str]:
        return list(self.executions)

    # pulling ----------------------------------------------------------------------------------
    async def _pull_loop(self, target: str, sub: JetStreamContext.PullSubscription) -> None:
        while not self.draining:
            reserved = await self.capacity.reserve(MAX_BATCH)
            if reserved == 0:
                break
            try:
                msgs = await sub.fetch(reserved, timeout=FETCH_WAIT_S)
            except (nats.errors.TimeoutError, TimeoutError):
                msgs = []
            except BUS_ERRORS as exc:
                log.warning("pull %s: %s", target, exc)
                self.capacity.release(reserved)
                await asyncio.sleep(RETRY_DELAY_S)
                continue
            # A reply to an earlier, timed-out fetch can make a batch larger than what we reserved.
            extra = msgs[reserved:]
            msgs = msgs[:reserved]
            self.capacity.release(reserved - len(msgs))
            for msg in extra:
                await self._nak(msg)
            for msg in msgs:
                # Each handler owns one reserved slot until its run is over.
                task = asyncio.create_task(self._handle(msg))
                self._handlers.add(task)
                task.add_done_callback(self._handlers.discard)

    async def _handle(self, msg: Msg) -> None:
        try:
            await self._claim_and_run(msg)
        except Exception:
            log.exception("request on %s failed", msg.subject)
        finally:
            self.capacity.release(1)

    async def _claim_and_run(self, msg: Msg) -> None:
        try:
            request = decode_event(msg.data)
        except ValueError as exc:
            request = None
            log.error("undecodable request on %s: %s", msg.subject, exc)
        if not isinstance(request, RunRequested) or not valid_token(request.run_id):
            log.error("dropping invalid request on %s", msg.subject)
            await msg.ack()
            return
        run_id = request.run_id
        if self.draining:
            await self._nak(msg, delay=0)
            return
        if run_id in self._pending or run_id in self.executions:
            await msg.ack()  # a redelivery of a request we are already handling
            return
        pending = self._pending[run_id] = _Pending(request.workflow_run_id)
        execution: Execution | None = None
        try:
            claimed = await self._claim(run_id)
            if claimed is None:
                await self._nak(msg)
                return
            if not claimed:
                log.info("run %s: claimed elsewhere, dropped", run_id)
                await msg.ack()
                return
            last_stop = await self._stop_already_requested(run_id, request.workflow_run_id)
            if pending.stop_reason is None:
                pending.stop_reason = last_stop
            if self.draining and pending.stop_reason is None:
                # Not started yet: hand it back so another executor runs it.
                await self._unclaim(run_id)
                await self._nak(msg, delay=0)
                return
            if pending.stop_reason is None:
                # Registered in the same step as the pending entry goes away (no await in between):
                # a stop finds one or the other, and shutdown finds every execution.
                execution = Execution(request, self._me, self._js, self._subjects, self._publisher)
                self.executions[run_id] = execution
        finally:
            self._pending.pop(run_id, None)
        await msg.ack()
        if execution is None:
            log.info("run %s: stopped before it started", run_id)
            await publish_event(
                self._js,
                self._subjects,
                RunFinished(
                    run_id=run_id,
                    status=RunStatus.CANCELLED,
                    host=self._me.host,
                    reason=pending.stop_reason or "",
                ),
            )
            return
        try:
            await execution.run()
        finally:
            del self.executions[run_id]

    async def _claim(self, run_id: str) -> bool | None:
        """True if this executor now holds the run, False if someone else (another executor, or a stop)
        does, None if NATS did not answer."""
        assert self._kv is not None
        try:
            await self._kv.create(run_id, executor_claim(self._me.executor_id))
            self._unsure_claims.discard(run_id)
            return True
        except nats.js.errors.KeyWrongLastSequenceError:
            if run_id in self._unsure_claims:
                self._unsure_claims.discard(run_id)
                try:
                    entry = await self._kv.get(run_id)
                    return claim_holder(entry.value) == self._me.executor_id
                except BUS_ERRORS as exc:
                    log.warning("run %s: claim unknown: %s", run_id, exc)
                    return None
            return False
        except BUS_ERRORS as exc:
            self._unsure_claims.add(run_id)
            log.warning("run %s: claim failed: %s", run_id, exc)
            return None

    async def _unclaim(self, run_id: str) -> None:
        assert self._kv is not None
        try:
            await self._kv.delete(run_id)
        except BUS_ERRORS as exc:
            log.warning("run %s: could not hand back the claim: %s", run_id, exc)

    async def _stop_already_requested(self, run_id: str, wfrun_id: str | None = None) -> str | None:
        """A stop stored before our claim whose core message we missed (e.g. across a reconnect)."""
        if wfrun_id is not None and (wfrun_stop := await self._wfrun_stop_already_requested(run_id, wfrun_id)):
            return wfrun_stop
        try:
            raw = await self._js.get_last_msg(
                self._subjects.events_stream, self._subjects.run_event(run_id, "stop_requested")
            )
        except nats.js.errors.NotFoundError:
            return None
        except BUS_ERRORS as exc:
            log.warning("run %s: could not look for an earlier stop: %s", run_id, exc)
            return None
        event = decode_event(raw.data or b"{}")
        return event.reason if isinstance(event, RunStopRequested) else None

    async def _wfrun_stop_already_requested(self, run_id: str, wfrun_id: str) -> str | None:
        """A stop of the workflow run this run is a step of, stored before our claim."""
        if not valid_token(wfrun_id):
            return None
        try:
            raw = await self._js.get_last_msg(
                self._subjects.events_stream, self._subjects.wfrun_event(wfrun_id, "stop_requested")
            )
        except nats.js.errors.NotFoundError:
            return None
        except BUS_ERRORS as exc:
            log.warning("run %s: could not look for an earlier workflow stop: %s", run_id, exc)
            return None
        event = decode_event(raw.data or b"{}")
        return f"workflow run stopped ({event.reason})" if isinstance(event, WfRunStopRequested) else None

    async def _nak(self, msg: Msg, delay: float = RETRY_DELAY_S) -> None:
        try:
            await msg.nak(delay=delay or None)
        except BUS_ERRORS as exc:
            log.warning("nak failed: %s", exc)

    # stops -------------------------------------------------------------------------------------
    async def _on_stop(self, msg: Msg) -> None:
        try:
            event = decode_event(msg.data)
        except ValueError:
            return
        if not isinstance(event, RunStopRequested):
            return
        execution = self.executions.get(event.run_id)
        if execution is not None:
            execution.request_stop(StopCause.STOP, event.reason)
            return
        pending = self._pending.get(event.run_id)
        if pending is not None and pending.stop_reason is None:
            pending.stop_reason = event.reason

    async def _on_finish(self, msg: Msg) -> None:
        """A run we still run has a finish we did not publish: the scheduler declared us lost (we were
        paused, or cut off) and it may be retried elsewhere. It must not go on here."""
        try:
            event = decode_event(msg.data)
        except ValueError:
            return
        if not isinstance(event, RunFinished):
            return
        execution = self.executions.get(event.run_id)
        if execution is not None and not execution.ended:  # else it is our own finish
            log.warning("run %s: already ended elsewhere (%s); killing what is left here", event.run_id, event.status)
            execution.request_stop(StopCause.STOP, f"run already ended ({event.status}): {event.reason}", grace_s=0)

    async def _on_hold(self, msg: Msg) -> None:
        try:
            event = decode_event(msg.data)
        except ValueError:
            return
        # Holds with an attempt are the ones our executions report for hold files.
        if not isinstance(event, (WfRunStepHeld, WfRunStepReleased)) or event.attempt is not None:
            return
        for execution in list(self.executions.values()):
            req = execution.request
            if req.workflow_run_id == event.wfrun_id and req.workflow_step == event.step:
                execution.api_held = isinstance(event, WfRunStepHeld)

    async def _on_wfrun_stop(self, msg: Msg) -> None:
        try:
            event = decode_event(msg.data)
        except ValueError:
            return
        if not isinstance(event, WfRunStopRequested):
            return
        reason = f"workflow run stopped ({event.reason})"
        for execution in list(self.executions.values()):
            if execution.request.workflow_run_id == event.wfrun_id:
                execution.request_stop(StopCause.STOP, reason)
        for pending in self._pending.values():
            if pending.wfrun_id == event.wfrun_id and pending.stop_reason is None:
                pending.stop_reason = reason

    # shutdown ----------------------------------------------------------------------------------
    async def stop_pulling(self) -> None:
        """Take no more requests: end the pull loops once their current fetch is done."""
        self.draining = True
        self.capacity.close()
        await asyncio.gather(*self._loops, return_exceptions=True)
        for sub in self._subs:
            # Unread replies to expired fetches would otherwise hold up draining the connection.
            try:
                await sub.unsubscribe()
            except BUS_ERRORS as exc:
                log.debug("unsubscribe: %s", exc)

    async def stop_runs(self, publish_within_s: float = SHUTDOWN_PUBLISH_S) -> None:
        """Stop every run (TERM, grace, KILL) and wait until each has published its finish. Once the
        runs are dead, publishing gets `publish_within_s` more; past that (NATS unreachable) the
        remaining output and finishes are given up so the executor can still exit."""
        executions = list(self.executions.values())
        for execution in executions:
            execution.request_stop(StopCause.SHUTDOWN, SHUTDOWN_REASON)
        grace = max((e.grace_s for e in executions), default=0.0)
        deadline = asyncio.get_running_loop().time() + grace + publish_within_s
        while self._handlers:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0 and not self._publisher.gave_up:
                log.error("NATS unreachable: giving up on unpublished output and finishes")
                self._publisher.give_up()
            await asyncio.wait(list(self._handlers), timeout=max(left, 0.5))
