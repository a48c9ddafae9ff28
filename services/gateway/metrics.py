"""Prometheus metrics, read at scrape time: counters from `run_stats` (they only grow, and survive
deleted runs), gauges from the read models, the recorder's lag from JetStream."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator

import nats.errors
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from scriptbus.events.executors import ExecutorState
from scriptbus.gateway import fleet, readmodels
from scriptbus.gateway.errors import db_errors
from scriptbus.gateway.state import Gateway

log = logging.getLogger(__name__)

DURATION_BUCKETS = (0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, math.inf)


class _Scraped(Collector):
    """A custom collector over the families read for one scrape."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


def _le(value: float) -> str:
    return "+Inf" if math.isinf(value) else repr(float(value))


def _counters(stats: list[tuple[str, str, float]]) -> list[Metric]:
    by_name: dict[str, dict[str, float]] = {}
    for name, label, value in stats:
        by_name.setdefault(name, {})[label] = value
    families: list[Metric] = []
    for stat, metric, label, doc in (
        ("requested", "scriptbus_runs_requested", "pool", "Runs requested, by pool."),
        ("started", "scriptbus_runs_started", "host", "Runs started, by executor host."),
        ("finished", "scriptbus_runs_finished", "status", "Runs finished, by final status."),
    ):
        family = CounterMetricFamily(metric, doc, labels=[label])
        for value_label, value in sorted(by_name.get(stat, {}).items()):
            family.add_metric([value_label], value)
        families.append(family)
    families.append(
        CounterMetricFamily(
            "scriptbus_output_bytes",
            "Bytes of output scripts wrote (stdout and stderr).",
            value=sum(by_name.get("output_bytes", {}).values()),
        )
    )
    # The recorder counts each finished run in every bucket its duration fits (cumulative, as Prometheus
    # wants); a bucket it has not touched yet counts as the one below it.
    stored = {float(le): v for le, v in by_name.get("duration_bucket", {}).items() if _is_number(le)}
    count = sum(by_name.get("duration_count", {}).values())
    buckets: list[tuple[str, float]] = []
    running = 0.0
    for bound in DURATION_BUCKETS:
        running = count if math.isinf(bound) else max(running, stored.get(float(bound), running))
        buckets.append((_le(bound), running))
    families.append(
        HistogramMetricFamily(
            "scriptbus_run_duration_seconds",
            "How long finished runs ran, from start to end.",
            buckets=buckets,
            sum_value=sum(by_name.get("duration_sum", {}).values()),
        )
    )
    return families


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


async def _gauges(gw: Gateway) -> list[Metric]:
    families: list[Metric] = []
    active = GaugeMetricFamily("scriptbus_runs_active", "Runs queued, running or stopping now.", labels=["status"])
    for status, n in sorted((await readmodels.active_runs(gw.pool)).items()):
        active.add_metric([status], n)
    families.append(active)
    depth = GaugeMetricFamily(
        "scriptbus_queue_depth",
        "Queued runs per target (the host asked for, else the pool).",
        labels=["target"],
    )
    for target, n in sorted((await readmodels.queue_depth(gw.pool)).items()):
        depth.add_metric([target], n)
    families.append(depth)

    executors = await fleet.list_executors(gw)
    capacity = GaugeMetricFamily("scriptbus_executor_capacity", "Runs a live executor takes at once.", labels=["host"])
    running = GaugeMetricFamily(
        "scriptbus_executor_running", "Runs a live executor had at its last heartbeat.", labels=["host"]
    )
    states = {state: 0 for state in ExecutorState}
    for ex in executors:
        states[ex.state] += 1
        if ex.state in ("online", "draining"):
            capacity.add_metric([ex.host], ex.capacity)
            running.add_metric([ex.host], ex.running)
    by_state = GaugeMetricFamily("scriptbus_executors", "Executor hosts by state.", labels=["state"])
    for state, n in states.items():
        by_state.add_metric([state], n)
    families += [capacity, running, by_state]
    return families


async def _recorder_lag(gw: Gateway) -> Metric | None:
    """Events stored but not yet projected; None when NATS cannot say."""
    if not gw.nc.is_connected:
        return None
    try:
        info = await gw.js.stream_info(gw.subjects.events_stream)
    except (TimeoutError, nats.errors.Error, OSError) as exc:
        log.warning("metrics: no stream info: %s", exc)
        return None
    position = await readmodels.projection_position(gw.pool)
    return GaugeMetricFamily(
        "scriptbus_recorder_lag_messages",
        "Messages in the events stream the recorder has not applied yet.",
        value=max(0, int(info.state.last_seq) - position),
    )


async def scrape(gw: Gateway) -> bytes:
    """The metrics in Prometheus' text format; a 503 when PostgreSQL does not answer."""
    with db_errors():
        families = _counters(await readmodels.run_stats(gw.pool))
        families += await _gauges(gw)
        lag = await _recorder_lag(gw)
    if lag is not None:
        families.append(lag)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Scraped(families))
    return generate_latest(registry)
