"""The scheduler's fan-out driver: follows the stream, decides, records each decision, then acts on it.

Built like the workflow driver (see `scheduler/workflows/driver.py` for the reasoning at length): state
comes only from the stream, folded again from its start by an ordered consumer filtered to fan-out
events and run endings; nothing is decided before the fold reached the stream's end at start; each
decision is appended with `Nats-Expected-Last-Subject-Sequence` on `<prefix>.fanouts.<id>.>`, so a
decision that missed an event of its fan-out (a stop, another scheduler's decision) is refused and taken
again. Effects are re-done after a restart (a dispatched host without its run request gets it, a stopped
fan-out's runs are stopped again): derived run and event ids make that a no-op when already done.

Finished fan-outs stay in memory (a few hundred bytes each), since a retry can reopen them.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import Header
from nats.js.kv import KeyValue
from pydantic import ValidationError

from scriptbus.events.active_runs import WRONG_LAST_SEQUENCE
from scriptbus.events.bus import BUS_ERRORS
from scriptbus.events.claims import CANCEL_REASON, CANCELLED_CLAIM, cancel_event_id
from scriptbus.events.codec import decode_event, encode_event, event_headers
from scriptbus.events.envelope import Event
from scriptbus.events.fanouts import (
    FanoutEvent,
    FanoutHostDispatched,
    FanoutRequested,
    fanout_decision_id,
)
from scriptbus.events.publishing import publish_event, publish_request, subject_for
from scriptbus.events.runs import RunFinished, RunRequested, RunStopRequested
from scriptbus.events.statuses import RunStatus
from scriptbus.events.streams import claims_bucket
from scriptbus.events.subjects import Subjects
from scriptbus.scheduler.fanouts.state import FanoutState, HostState
from scriptbus.scheduler.following import RETRY_S, drive, follow, unfollow

log = logging.getLogger(__name__)

EXPECTED_LAST_SUBJECT_SEQUENCE_SUBJECT = "Nats-Expected-Last-Subject-Sequence-Subject"
TICK_S = 0.5
BATCH = 2000


@dataclass
class _Fanout:
    state: FanoutState
    last_seq: int = 0
    redo: bool = False
    # Runs asked to stop by this process (a restarted scheduler asks again: stops are idempotent).
    stops_sent: frozenset[str] = frozenset()


class StaleDecision(Exception):
    """The fan-out has events the decision did not see."""


class FanoutDriver:
    """Drives every unfinished fan-out of one installation. `start`, then `run` until stopped."""

    def __init__(self, js: JetStreamContext, subjects: Subjects) -> None:
        self._js = js
        self._s = subjects
        self._fanouts: dict[str, _Fanout] = {}
        self._owner: dict[str, str] = {}  # run id -> fan-out id
        self._inbox: asyncio.Queue[Msg] = asyncio.Queue()
        self._dirty: set[str] = set()
        self._queues: set[str] = set()
        self._mark = 0
        self._caught_up = False
        self._folded_seq = 0
        self._sub: JetStreamContext.PushSubscription | None = None
        self._claims: KeyValue | None = None

    async def start(self) -> None:
        s = self._s
        self._claims = await claims_bucket(self._js, s)
        filters = [f"{s.prefix}.fanouts.>", s.all_run_finishes]
        self._mark, self._sub = await follow(self._js, s, filters, self._inbox)
        self._caught_up = self._mark == 0

        log.info("fan-out driver: folding the stream up to sequence %d", self._mark)

    async def close(self) -> None:
        await unfollow(self._sub)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if self._inbox.empty() and not (self._caught_up and self._dirty):
                try:
                    self._fold(await asyncio.wait_for(self._inbox.get(), TICK_S))
                except TimeoutError:
                    if not self._caught_up:
                        await self._check_caught_up()
            for _ in range(BATCH):
                if self._inbox.empty():
                    break
                self._fold(self._inbox.get_nowait())
            if self._caught_up:
                await self._decide_due()

    # folding -----------------------------------------------------------------------------------
    def _fold(self, msg: Msg) -> None:
        seq = msg.metadata.sequence.stream
        tokens = msg.subject.split(".")
        if len(tokens) >= 4:
            if tokens[1] == "runs":
                fanout_id = self._owner.get(tokens[2])
                if fanout_id is not None:
                    event = self._decode(msg)
                    if isinstance(event, RunFinished):
                        self._fanouts[fanout_id].state.apply(event)
                        self._dirty.add(fanout_id)
            elif tokens[1] == "fanouts":
                self._fold_fanout_event(tokens[2], seq, msg)
        self._folded_seq = max(self._folded_seq, seq)
        if not self._caught_up and (seq >= self._mark or msg.metadata.num_pending == 0):
            self._became_caught_up(seq)

    async def _check_caught_up(self) -> None:
        """Caught up without reaching the mark: the messages up to it were purged after we looked."""
        assert self._sub is not None
        try:
            info = await self._sub.consumer_info()
        except BUS_ERRORS as exc:
            log.debug("consumer info: %s", exc)
            return
        delivered = info.delivered.stream_seq if info.delivered is not None else None
        if info.num_pending == 0 and self._inbox.empty() and (delivered or 0) <= self._folded_seq:
            self._became_caught_up(self._folded_seq)

    def _became_caught_up(self, seq: int) -> None:
        self._caught_up = True
        unfinished = [f for f in self._fanouts.values() if not f.state.finished]
        for fanout in unfinished:
            fanout.redo = True
            self._dirty.add(fanout.state.fanout_id)
        log.info("fan-out driver: caught up at sequence %d, %d unfinished fan-out(s)", seq, len(unfinished))

    def _decode(self, msg: Msg) -> Event | None:
        try:
            return decode_event(msg.data)
        except (ValueError, ValidationError) as exc:
            log.error("undecodable event on %s: %s", msg.subject, exc)
            return None

    def _fold_fanout_event(self, fanout_id: str, seq: int, msg: Msg) -> None:
        event = self._decode(msg)
        fanout = self._fanouts.get(fanout_id)
        if fanout is None:
            if not isinstance(event, FanoutRequested) or event.fanout_id != fanout_id:
                return
            fanout = self._fanouts[fanout_id] = _Fanout(FanoutState.requested(event), last_seq=seq)
            log.info("fan-out %s: requested on %d host(s)", fanout_id, len(event.hosts))
        else:
            fanout.last_seq = max(fanout.last_seq, seq)
            if event is None:
                return
            if isinstance(event, FanoutHostDispatched) and self._caught_up:
                # Another scheduler's decision: its run request may be missing if that one died.
                host = fanout.state.hosts.get(event.host)
                if host is None or host.attempt < event.attempt:
                    fanout.redo = True
            self._apply(fanout, event)
        self._dirty.add(fanout_id)

    def _apply(self, fanout: _Fanout, event: Event) -> None:
        fanout.state.apply(event)
        if isinstance(event, FanoutHostDispatched):
            self._owner[event.run_id] = event.fanout_id

    # deciding ------------------------------------------------------------------------------------
    async def _decide_due(self) -> None:
        due = sorted(self._dirty)
        self._dirty.clear()
        for fanout_id in due:
            fanout = self._fanouts.get(fanout_id)
            if fanout is None:
                continue
            try:
                await self._advance(fanout)
            except BUS_ERRORS as exc:
                log.warning("fan-out %s: %s; trying again in %.0fs", fanout_id, exc, RETRY_S)
                self._later(fanout_id)
            except Exception:
                log.exception("fan-out %s: deciding failed; trying again in %.0fs", fanout_id, RETRY_S)
                self._later(fanout_id)

    def _later(self, fanout_id: str) -> None:
        loop = asyncio.get_running_loop()
        loop.call_later(RETRY_S, self._dirty.add, fanout_id)

    async def _advance(self, fanout: _Fanout) -> None:
        state = fanout.state
        if fanout.redo:
            await self._redo_effects(fanout)
        if state.stop_requested:
            await self._stop_active(fanout)
        for event in state.decide():
            assert isinstance(event, FanoutEvent)
            try:
                await self._append(fanout, event)
            except StaleDecision:
                log.info("fan-out %s: decision stale, deciding again", state.fanout_id)
                self._later(state.fanout_id)
                return
            self._apply(fanout, event)
            if isinstance(event, FanoutHostDispatched):
                try:
                    await self._request(state, state.hosts[event.host])
                except BUS_ERRORS:
                    fanout.redo = True
                    raise
        if state.finished:
            log.info("fan-out %s: finished %s", state.fanout_id, state.status.value)

    async def _append(self, fanout: _Fanout, event: FanoutEvent) -> None:
        headers = {
            **event_headers(event),
            Header.EXPECTED_LAST_SUBJECT_SEQUENCE.value: str(fanout.last_seq),
            EXPECTED_LAST_SUBJECT_SEQUENCE_SUBJECT: f"{self._s.prefix}.fanouts.{event.fanout_id}.>",
        }
        try:
            ack = await self._js.publish(subject_for(self._s, event), encode_event(event), headers=headers, timeout=5)
        except nats.js.errors.BadRequestError as exc:
            if exc.err_code == WRONG_LAST_SEQUENCE:
                raise StaleDecision(f"fan-out {event.fanout_id} has events after {fanout.last_seq}") from exc
            raise
        fanout.last_seq = max(fanout.last_seq, ack.seq)
        log.info("fan-out %s: %s %s", event.fanout_id, event.type, getattr(event, "host", ""))

    # acting --------------------------------------------------------------------------------------
    async def _request(self, state: FanoutState, host: HostState) -> None:
        r = state.request
        assert host.run_id is not None
        request = RunRequested(
            event_id=fanout_decision_id(state.fanout_id, "request", host.host, host.attempt),
            run_id=host.run_id,
            script=r.script,
            args=r.args,
            env=r.env,
            secrets=r.secrets,
            description=r.description,
            timeout_s=r.timeout_s,
            stop_grace_s=r.stop_grace_s,
            pool=r.pool or "default",
            host=host.host,
            command_id=r.command_id,
            attempt=host.attempt,
            fanout_id=state.fanout_id,
            requested_by=r.requested_by,
        )
        await publish_request(self._js, self._s, request, self._queues)

    async def _stop_active(self, fanout: _Fanout) -> None:
        for host in fanout.state.hosts.values():
            if host.active and host.run_id is not None and host.run_id not in fanout.stops_sent:
                await self._stop(fanout.state, host)
                fanout.stops_sent = fanout.stops_sent | {host.run_id}

    async def _stop(self, state: FanoutState, host: HostState) -> None:
        """Cancel the run if no executor holds it (then none ever will), else ask its executor to stop it."""
        assert self._claims is not None and host.run_id is not None
        run_id = host.run_id
        try:
            await self._claims.create(run_id, CANCELLED_CLAIM)
            cancelled = True
        except nats.js.errors.KeyWrongLastSequenceError:
            try:
                cancelled = (await self._claims.get(run_id)).value == CANCELLED_CLAIM
            except nats.js.errors.KeyNotFoundError:
                cancelled = False
        event: RunFinished | RunStopRequested
        if cancelled:
            event = RunFinished(
                event_id=cancel_event_id(run_id), run_id=run_id, status=RunStatus.CANCELLED, reason=CANCEL_REASON
            )
        else:
            event = RunStopRequested(
                event_id=fanout_decision_id(state.fanout_id, "run.stop_requested", host.host, host.attempt),
                run_id=run_id,
                reason="fan-out stopped",
                stopped_by=state.request.requested_by,
            )
        await publish_event(self._js, self._s, event)

    async def _redo_effects(self, fanout: _Fanout) -> None:
        for host in fanout.state.hosts.values():
            if not host.active or host.run_id is None:
                continue
            try:
                await self._js.get_last_msg(self._s.events_stream, self._s.run_requested(host.run_id, "*"))
            except nats.js.errors.NotFoundError:
                log.info("fan-out %s: host %s attempt %d requested again", fanout.state.fanout_id, host.host,
                         host.attempt)  # fmt: skip
                await self._request(fanout.state, host)
        fanout.redo = False


async def drive_fanouts(js: JetStreamContext, subjects: Subjects, stop: asyncio.Event) -> None:
    """Drive fan-outs until `stop` is set; while the stream cannot be read, start over from a fresh state."""
    await drive(lambda: FanoutDriver(js, subjects), "fan-out driver", stop)


def start_fanout_driver(js: JetStreamContext, subjects: Subjects, stop: asyncio.Event) -> asyncio.Task[None]:
    """The scheduler's fan-out task; if it dies, the scheduler stops (a silent hang is worse)."""

    def ended(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("fan-out driver died", exc_info=task.exception())
            stop.set()

    task = asyncio.create_task(drive_fanouts(js, subjects, stop), name="fanout-driver")
    task.add_done_callback(ended)
    return task
