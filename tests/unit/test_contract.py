"""The event contract, checked for every event type there is: found by walking `scriptbus.events`, so a
new event that nobody publishes, decodes, projects or can upgrade fails here, not in production."""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
import types
from datetime import UTC, datetime
from enum import Enum
from typing import Any, ClassVar, Literal, Union, get_args, get_origin, get_type_hints

import pytest

import scriptbus.events
from scriptbus.events import Event, Subjects, decode_event, encode_event, new_id, subject_for
from scriptbus.events.codec import EVENT_TYPES
from scriptbus.events.files import Artifact
from scriptbus.events.schedules import CatchUp, Overlap, ScheduleSpec
from scriptbus.events.workflows import StepExec, StepFanOut, StepSpec, WorkflowSettings
from scriptbus.recorder.projections import IGNORED, PROJECTIONS, output_run_id


def _event_types() -> list[type[Event]]:
    """Every concrete event class of the package: an Event subclass whose `type` is a literal."""
    for module in pkgutil.walk_packages(scriptbus.events.__path__, "scriptbus.events."):
        importlib.import_module(module.name)
    found: list[type[Event]] = []
    pending: list[type[Event]] = list(Event.__subclasses__())
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        # Classes a test defines for itself are not part of the contract.
        if cls.__module__.startswith("scriptbus.") and get_origin(cls.model_fields["type"].annotation) is Literal:
            found.append(cls)
    return sorted(set(found), key=_type_name)


def _type_name(cls: type[Event]) -> str:
    name: str = cls.model_fields["type"].default
    return name


EVENT_CLASSES = _event_types()


def _sample(annotation: Any) -> Any:
    """A non-default value of `annotation`, so every field takes part in the round trip."""
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        return _sample(next(arg for arg in get_args(annotation) if arg is not type(None)))
    if origin is list:
        return [_sample(get_args(annotation)[0])]
    if origin is dict:
        return {"KEY": _sample(get_args(annotation)[1])}
    if origin is Literal:
        return get_args(annotation)[0]
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return list(annotation)[-1]
    samples: dict[Any, Any] = {
        bool: True,
        int: 7,
        float: 2.5,
        str: new_id(),
        datetime: datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
    }
    if annotation in samples:
        return samples[annotation]
    if annotation in COHERENT_SAMPLES:
        return COHERENT_SAMPLES[annotation]
    raise TypeError(f"no sample value for {annotation!r}: teach tests/unit/test_contract.py::_sample")


# Nested models whose fields must agree with each other get one hand-made, fully filled value.
COHERENT_SAMPLES: dict[Any, Any] = {
    Artifact: Artifact(path="out/report.txt", size=3, sha256="ab" * 32),
    StepSpec: StepSpec(
        name="t1",
        place=2,
        exec=StepExec.PARALLEL,
        function="echo",
        params=["hi"],
        retries=2,
        retry_backoff_s=0.5,
        retry_max_backoff_s=8,
        retry_on_exit_codes=[3],
        lost_retries=1,
        timeout_s=9,
        stop_grace_s=1,
        hold_max_s=4,
        env={"A": "b"},
        pool="p1",
        continue_on_error=True,
        fan_out=StepFanOut(pool="web", labels={"role": "edge"}, hosts=["h1"], max_parallel=1, max_failures=2),
    ),  # fmt: skip
    WorkflowSettings: WorkflowSettings(max_active_runs=3),
    ScheduleSpec: ScheduleSpec(
        name="nightly",
        cron="5 3 * * 1-5",
        timezone="Europe/Berlin",
        command_id=new_id(),
        args=["a"],
        env={"A": "b"},
        secrets=["S"],
        overlap=Overlap.QUEUE,
        catch_up=CatchUp.NONE,
    ),  # fmt: skip
}
# Fields that must name something elsewhere in the same event.
FIELD_OVERRIDES: dict[str, dict[str, Any]] = {
    "wfrun.requested": {"task": "t1", "kept_steps": {"t1": "r1"}},
    # A SHA-256 in hex, as every token's digest is.
    "token.created": {"digest": "ab" * 32},
}


def _example(cls: type[Event]) -> Event:
    fields = {name: _sample(f.annotation) for name, f in cls.model_fields.items() if name != "schema_version"}
    fields.update(FIELD_OVERRIDES.get(_type_name(cls), {}))
    return cls(**fields)


def _matches(subject: str, pattern: str) -> bool:
    """NATS subject matching: `*` is one token, a final `>` is one or more."""
    tokens, wanted = subject.split("."), pattern.split(".")
    for i, want in enumerate(wanted):
        if want == ">":
            return len(tokens) > i
        if i >= len(tokens) or (want != "*" and want != tokens[i]):
            return False
    return len(tokens) == len(wanted)


def test_event_types_are_found() -> None:
    names = [_type_name(cls) for cls in EVENT_CLASSES]
    assert "run.requested" in names and "executor.heartbeat" in names
    assert len(names) == len(set(names)), "two event classes share a `type`"


@pytest.mark.parametrize("cls", EVENT_CLASSES, ids=_type_name)
def test_every_event_type_round_trips(cls: type[Event]) -> None:
    event = _example(cls)
    wire = encode_event(event)
    assert EVENT_TYPES.get(_type_name(cls)) is cls, "register the class in scriptbus.events.codec.EVENT_TYPES"
    assert json.loads(wire)["type"] == _type_name(cls)
    assert json.loads(wire)["schema_version"] == cls.class_version
    decoded = decode_event(wire)
    assert type(decoded) is cls
    assert decoded == event


@pytest.mark.parametrize("cls", EVENT_CLASSES, ids=_type_name)
def test_every_event_type_has_a_subject_in_a_stream(cls: type[Event]) -> None:
    s = Subjects("contract")
    subject = subject_for(s, _example(cls))
    streams = s.events_subjects + s.executors_subjects
    assert any(_matches(subject, pattern) for pattern in streams), f"{subject} is in no stream: {streams}"
    # The recorder reads `<prefix>.runs.<id>.out` as raw output, never as an event.
    assert output_run_id(subject) is None


@pytest.mark.parametrize("cls", EVENT_CLASSES, ids=_type_name)
def test_every_event_type_is_projected_or_explicitly_ignored(cls: type[Event]) -> None:
    name = _type_name(cls)
    assert (name in PROJECTIONS) != (name in IGNORED), (
        f"{name}: add a projection to scriptbus.recorder.projections.PROJECTIONS, or list it in IGNORED"
    )
    if name in PROJECTIONS:
        handler = PROJECTIONS[name]
        event_param = list(inspect.signature(handler).parameters)[1]
        handled = get_type_hints(handler)[event_param]
        assert cls is handled or cls in get_args(handled), f"{handler.__name__} takes {handled}, not {cls.__name__}"


@pytest.mark.parametrize("cls", EVENT_CLASSES, ids=_type_name)
def test_every_event_type_upcasts_from_version_1_to_its_current_version(cls: type[Event]) -> None:
    assert cls.class_version >= 1
    assert len(cls.upcasters()) == cls.class_version - 1
    if cls.class_version == 1:
        # Messages from before versions were written decode as version 1.
        event = _example(cls)
        unversioned = {k: v for k, v in json.loads(encode_event(event)).items() if k != "schema_version"}
        assert decode_event(json.dumps(unversioned).encode()) == event


# The upcast mechanism itself, on an event type of this test's own (left out of the contract above).


class _Renamed(Event):
    """Version 1 called the field `old`; version 2 calls it `new`."""

    class_version: ClassVar[int] = 2
    type: Literal["test.renamed"] = "test.renamed"
    new: str

    @staticmethod
    def upcast_v1_v2(raw: dict[str, Any]) -> dict[str, Any]:
        return {**raw, "new": raw.get("old", "")}


class _Gap(Event):
    class_version: ClassVar[int] = 3
    type: Literal["test.gap"] = "test.gap"

    @staticmethod
    def upcast_v1_v2(raw: dict[str, Any]) -> dict[str, Any]:
        return raw


def test_an_event_made_in_code_carries_its_class_version() -> None:
    assert _Renamed(new="x").schema_version == 2
    assert json.loads(_Renamed(new="x").model_dump_json())["schema_version"] == 2


def test_an_old_version_is_upcast_to_the_current_one() -> None:
    for stored in ({"type": "test.renamed", "old": "x"}, {"type": "test.renamed", "schema_version": 1, "old": "x"}):
        event = _Renamed.model_validate(_Renamed.upcast(dict(stored)))
        assert (event.new, event.schema_version) == ("x", 2)
    # A current message passes through untouched.
    assert _Renamed.upcast({"type": "test.renamed", "schema_version": 2, "new": "y"})["new"] == "y"


def test_a_gap_in_the_upcast_chain_is_an_error() -> None:
    with pytest.raises(TypeError, match="upcast_v2_v3"):
        _Gap.upcasters()
