"""Seed 004's document and verbs: create, update (replace), delete (remove), dump."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from scriptbus.events import Subjects, decode_event, encode_event, subject_for
from scriptbus.events.workflow_definitions import (
    Catalog,
    Change,
    DefinitionConflict,
    DefinitionError,
    DefinitionNotFound,
    Project,
    create,
    dump,
    parse_document,
    parse_removal,
    remove,
    replace,
)
from scriptbus.events.workflows import (
    ProjectDefined,
    ProjectRemoved,
    StepExec,
    WorkflowDefined,
    WorkflowRemoved,
    project_id,
    workflow_id,
)
from tests.helpers.seed004 import SEED_004_SAMPLE

_W = "context.project.workflows[0]"


def doc(workflows: list[dict[str, Any]], project: str = "pr1", **extra: Any) -> dict[str, Any]:
    return {"context": {"project": {"name": project, **extra, "workflows": workflows}}}


def task(name: str, place: int, exec: str = "await", function: str = "simple", **fields: Any) -> dict[str, Any]:
    return {"name": name, "place": place, "exec": exec, "function": function, "params": ["1"], **fields}


def seed_project() -> Project:
    change = create(None, parse_document(SEED_004_SAMPLE))
    assert change.after is not None
    return change.after


def order(project: Project, workflow: str) -> list[tuple[str, int]]:
    found = project.workflow(workflow)
    assert found is not None
    return [(s.name, s.place) for s in found.steps]


def after(change: Change) -> Project:
    assert change.after is not None
    return change.after


# the seed's sample ----------------------------------------------------------------------------------


def test_the_seed_sample_is_imported_as_it_is() -> None:
    change = create(None, parse_document(SEED_004_SAMPLE))
    project = after(change)
    assert project.name == "pr1" and project.seed_id == 1
    assert [w.name for w in project.workflows] == ["wf1", "wf2"]
    wf1 = project.workflow("wf1")
    assert wf1 is not None and wf1.version == 1
    t11, t12 = wf1.steps
    assert (t11.name, t11.place, t11.exec, t11.function, t11.params) == ("t11", 1, StepExec.PARALLEL, "simple", ["0"])
    assert (t12.name, t12.place, t12.exec, t12.function, t12.params) == ("t12", 2, StepExec.AWAIT, "simple", ["5"])
    # The seed's defaults: one restart, a 6 s grace before SIGKILL.
    assert (t12.retries, t12.stop_grace_s) == (1, 6.0)
    wf2 = project.workflow("wf2")
    assert wf2 is not None and [(s.name, s.function) for s in wf2.steps] == [("t21", "simple"), ("t22", "echo")]
    assert [type(e) for e in change.events("alice")] == [ProjectDefined, WorkflowDefined, WorkflowDefined]


def test_the_seed_sample_dumps_back_to_itself_and_a_round_trip_changes_nothing() -> None:
    project = seed_project()
    dumped = dump(project)
    assert dumped == json.loads(SEED_004_SAMPLE)
    change = replace(project, parse_document(json.dumps(dumped)))
    assert not change.changed and change.after == project
    assert change.events() == []
    assert change.named == ("wf1", "wf2")  # the caller still refuses it while one of them runs


def test_importing_the_sample_twice_is_a_conflict_naming_the_task() -> None:
    with pytest.raises(DefinitionConflict) as err:
        create(seed_project(), parse_document(SEED_004_SAMPLE))
    assert err.value.field == "context.project.workflows[0].tasks[0].name"
    assert "t11" in err.value.reason and "already exists" in err.value.reason


# create ---------------------------------------------------------------------------------------------


def test_a_task_inserted_at_a_taken_place_shifts_the_later_ones_down() -> None:
    project = seed_project()
    change = create(project, parse_document(doc([{"name": "wf1", "tasks": [task("t10", 1)]}])))
    assert order(after(change), "wf1") == [("t10", 1), ("t11", 2), ("t12", 3)]
    # Only wf1 has a new version; wf2 is untouched and no event is written for it.
    assert [(w.name, w.version) for w in after(change).workflows] == [("wf1", 2), ("wf2", 1)]
    assert [(type(e), getattr(e, "version", None)) for e in change.events()] == [(WorkflowDefined, 2)]


def test_a_task_inserted_in_the_middle_shifts_only_what_follows() -> None:
    project = seed_project()
    change = create(project, parse_document(doc([{"name": "wf1", "tasks": [task("t1x", 2)]}])))
    assert order(after(change), "wf1") == [("t11", 1), ("t1x", 2), ("t12", 3)]


def test_tasks_inserted_together_keep_their_order_ahead_of_those_they_shift() -> None:
    project = seed_project()
    change = create(project, parse_document(doc([{"name": "wf1", "tasks": [task("b", 2), task("a", 1)]}])))
    assert order(after(change), "wf1") == [("a", 1), ("b", 2), ("t11", 3), ("t12", 4)]


def test_a_task_at_a_free_place_shifts_nothing_and_gets_the_next_seed_id() -> None:
    project = seed_project()
    project = after(create(project, parse_document(doc([{"name": "wf1", "tasks": [task("t13", 3)]}]))))
    wf1 = project.workflow("wf1")
    assert wf1 is not None
    assert [(s.name, s.place, s.id) for s in wf1.steps] == [("t11", 1, 1), ("t12", 2, 2), ("t13", 3, 3)]


def test_create_makes_missing_projects_and_workflows() -> None:
    change = create(None, parse_document(doc([{"name": "nightly", "tasks": [task("a", 1)]}], project="p2")))
    project = after(change)
    assert project.name == "p2" and [w.name for w in project.workflows] == ["nightly"]
    assert project.workflows[0].seed_id == 1
    change = create(project, parse_document(doc([{"name": "hourly"}], project="p2")))
    assert [w.name for w in after(change).workflows] == ["nightly", "hourly"]
    assert after(change).workflows[1].seed_id == 2


def test_an_empty_project_can_be_created() -> None:
    change = create(None, parse_document({"context": {"project": {"name": "empty"}}}))
    assert after(change) == Project(name="empty")
    assert [type(e) for e in change.events()] == [ProjectDefined]


# update (replace) -----------------------------------------------------------------------------------


def test_update_replaces_the_named_tasks_and_keeps_the_others() -> None:
    project = seed_project()
    change = replace(project, parse_document(doc([{"name": "wf1", "tasks": [task("t12", 2, params=["9"])]}])))
    wf1 = after(change).workflow("wf1")
    assert wf1 is not None and wf1.version == 2
    assert [(s.name, s.params) for s in wf1.steps] == [("t11", ["0"]), ("t12", ["9"])]
    assert after(change).workflow("wf2") == project.workflow("wf2")


def test_update_can_swap_two_tasks_places() -> None:
    project = seed_project()
    change = replace(project, parse_document(doc([{"name": "wf1", "tasks": [task("t11", 2), task("t12", 1)]}])))
    assert order(after(change), "wf1") == [("t12", 1), ("t11", 2)]


def test_update_with_an_empty_task_list_empties_the_workflow() -> None:
    change = replace(seed_project(), parse_document(doc([{"name": "wf1", "tasks": []}])))
    assert order(after(change), "wf1") == []


def test_update_without_tasks_changes_the_workflow_settings_only() -> None:
    project = seed_project()
    change = replace(project, parse_document(doc([{"name": "wf1", "max_active_runs": 1}])))
    wf1 = after(change).workflow("wf1")
    assert wf1 is not None and wf1.settings.max_active_runs == 1
    assert order(after(change), "wf1") == order(project, "wf1")
    assert dump(after(change), "wf1")["context"]["project"]["workflows"][0].get("max_active_runs", 1) == 1


def test_max_active_runs_from_1_to_10000_is_kept_and_beyond_refused_naming_the_field() -> None:
    change = replace(seed_project(), parse_document(doc([{"name": "wf1", "max_active_runs": 10_000}])))
    wf1 = after(change).workflow("wf1")
    assert wf1 is not None and wf1.settings.max_active_runs == 10_000
    assert dump(after(change), "wf1")["context"]["project"]["workflows"][0]["max_active_runs"] == 10_000
    for bad in (0, 10_001):
        with pytest.raises(DefinitionError) as refused:
            parse_document(doc([{"name": "wf1", "max_active_runs": bad}]))
        assert refused.value.field == "context.project.workflows[0].max_active_runs"


def test_update_of_a_missing_workflow_creates_it() -> None:
    change = replace(seed_project(), parse_document(doc([{"name": "wf3", "tasks": [task("x", 1)]}])))
    assert order(after(change), "wf3") == [("x", 1)]


# delete (remove) ------------------------------------------------------------------------------------


def test_delete_removes_the_leaves_of_the_tree() -> None:
    project = seed_project()
    change = remove(project, parse_removal(doc([{"name": "wf1", "tasks": [{"name": "t11"}]}, {"name": "wf2"}])))
    assert [w.name for w in after(change).workflows] == ["wf1"]
    assert order(after(change), "wf1") == [("t12", 2)]  # places are not renumbered
    events = change.events("bob")
    assert [type(e) for e in events] == [WorkflowRemoved, WorkflowDefined]
    assert isinstance(events[0], WorkflowRemoved) and (events[0].workflow, events[0].version) == ("wf2", 1)


def test_delete_takes_a_dumped_tree_and_deletes_in_order() -> None:
    project = seed_project()
    tree = dump(project, "wf1")
    tree["context"]["project"]["workflows"].append({"name": "wf1"})  # then the workflow itself
    change = remove(project, parse_removal(tree))
    assert [w.name for w in after(change).workflows] == ["wf2"]


def test_a_project_is_deleted_only_when_empty() -> None:
    project = seed_project()
    with pytest.raises(DefinitionConflict) as err:
        remove(project, parse_removal({"context": {"project": {"name": "pr1"}}}))
    assert "wf1, wf2" in err.value.reason
    emptied = after(remove(project, parse_removal(doc([{"name": "wf1"}, {"name": "wf2"}]))))
    change = remove(emptied, parse_removal({"context": {"project": {"name": "pr1"}}}))
    assert change.after is None
    assert [type(e) for e in change.events()] == [ProjectRemoved]


@pytest.mark.parametrize(
    ("tree", "field"),
    [
        (doc([{"name": "wf9"}]), "context.project.workflows[0].name"),
        (doc([{"name": "wf1", "tasks": [{"name": "t11"}, {"name": "t99"}]}]), f"{_W}.tasks[1].name"),
    ],
)
def test_deleting_what_does_not_exist_names_it(tree: dict[str, Any], field: str) -> None:
    with pytest.raises(DefinitionNotFound) as err:
        remove(seed_project(), parse_removal(tree))
    assert err.value.field == field


def test_a_typo_in_a_delete_tree_is_refused_rather_than_deleting_the_workflow() -> None:
    with pytest.raises(DefinitionError) as err:
        parse_removal(doc([{"name": "wf1", "task": [{"name": "t11"}]}]))
    assert err.value.field == "context.project.workflows[0].task"


# dump -----------------------------------------------------------------------------------------------


def test_dump_of_one_workflow_or_one_task() -> None:
    project = seed_project()
    one = dump(project, "wf2")["context"]["project"]
    assert [w["name"] for w in one["workflows"]] == ["wf2"]
    single = dump(project, "wf1", "t12")["context"]["project"]["workflows"][0]
    seed_t12 = json.loads(SEED_004_SAMPLE)["context"]["project"]["workflows"][0]["tasks"][1]
    assert single == {"id": 1, "name": "wf1", "tasks": [seed_t12]}
    # A dumped task goes back through update unchanged.
    assert not replace(project, parse_document(dump(project, "wf1", "t12"))).changed
    with pytest.raises(DefinitionNotFound):
        dump(project, "wf9")
    with pytest.raises(DefinitionNotFound):
        dump(project, "wf1", "t99")


def test_our_own_fields_are_dumped_when_set_and_survive_a_round_trip() -> None:
    ours = task(
        "deploy",
        1,
        retries=3,
        retry_backoff_s=2,
        retry_max_backoff_s=30,
        retry_on_exit_codes=[75],
        timeout_s=600,
        stop_grace_s=10,
        hold_max_s=60,
        env={"MODE": "fast"},
        pool="gpu",
        continue_on_error=True,
    )
    scripted = {"name": "inline", "place": 2, "exec": "parallel", "script": "echo hi", "params": []}
    project = after(create(None, parse_document(doc([{"name": "w", "tasks": [ours, scripted]}]))))
    dumped = dump(project)["context"]["project"]["workflows"][0]["tasks"]
    assert dumped[0] == {"id": 1, **ours}
    assert dumped[1] == {"id": 2, "name": "inline", "place": 2, "exec": "parallel", "params": [], "script": "echo hi"}
    assert not replace(project, parse_document(dump(project))).changed


def test_a_fan_out_step_dumps_back_to_itself() -> None:
    fan_out = {"pool": "web", "labels": {"role": "edge"}, "hosts": ["h1", "h2"], "max_parallel": 1, "max_failures": 2}
    ours = task("roll", 1, fan_out=fan_out)
    project = after(create(None, parse_document(doc([{"name": "w", "tasks": [ours, task("plain", 2)]}]))))
    dumped = dump(project)["context"]["project"]["workflows"][0]["tasks"]
    assert dumped[0] == {"id": 1, **ours}
    assert "fan_out" not in dumped[1]
    assert not replace(project, parse_document(dump(project))).changed
    # The least a fan-out says: every live executor.
    bare = after(create(None, parse_document(doc([{"name": "w", "tasks": [task("all", 1, fan_out={})]}]))))
    assert dump(bare)["context"]["project"]["workflows"][0]["tasks"][0]["fan_out"] == {}


# validation -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tasks", "field", "words"),
    [
        ([task("t", 1, retriez=2)], f"{_W}.tasks[0].retriez", "unknown field"),
        ([{"place": 1, "function": "x"}], f"{_W}.tasks[0].name", "required"),
        ([task("t", 1, exec="background")], f"{_W}.tasks[0].exec", "await"),
        ([task("t", 1, script="echo")], f"{_W}.tasks[0]", "exactly one of"),
        ([{"name": "t", "place": 1}], f"{_W}.tasks[0]", "exactly one of"),
        ([task("t", 1, retries=-1)], f"{_W}.tasks[0].retries", "greater than or equal to 0"),
        ([task("t", -1)], f"{_W}.tasks[0].place", "greater than or equal to 0"),
        ([task("t", 1, retry_backoff_s=10, retry_max_backoff_s=5)], f"{_W}.tasks[0]", "retry_max_backoff_s"),
        ([task("t", 1, pool="a.b")], f"{_W}.tasks[0].pool", "A-Za-z0-9"),
        ([task("t 1", 1)], f"{_W}.tasks[0].name", "must match"),
        ([task("t", 1, timeout_s=0)], f"{_W}.tasks[0].timeout_s", "greater than 0"),
        ([task("a", 1), task("b", 1)], f"{_W}.tasks[1].place", "taken by 'a'"),
        ([task("a", 1), task("a", 2)], f"{_W}.tasks[1].name", "appears twice"),
        ([task("t", 1, host="h1", fan_out={})], f"{_W}.tasks[0].fan_out", "cannot be combined with `host`"),
        ([task("t", 1, fan_out={"max_parallel": 0})], f"{_W}.tasks[0].fan_out.max_parallel", "greater than"),
        ([task("t", 1, fan_out={"max_failures": 0})], f"{_W}.tasks[0].fan_out.max_failures", "greater than"),
        ([task("t", 1, fan_out={"pool": "a b"})], f"{_W}.tasks[0].fan_out.pool", "A-Za-z0-9"),
        ([task("t", 1, fan_out={"hosts": ["a/b"]})], f"{_W}.tasks[0].fan_out.hosts", "A-Za-z0-9"),
        ([task("t", 1, fan_out={"label": {}})], f"{_W}.tasks[0].fan_out.label", "unknown field"),
    ],
)
def test_bad_tasks_are_refused_with_the_field_named(tasks: list[dict[str, Any]], field: str, words: str) -> None:
    with pytest.raises(DefinitionError) as err:
        create(None, parse_document(doc([{"name": "wf", "tasks": tasks}])))
    assert err.value.field == field
    assert words in err.value.reason


def test_bad_documents_are_refused_with_the_field_named() -> None:
    cases = [
        (b"{not json", "body"),
        ({"project": {"name": "p"}}, "context"),
        ({"context": {"project": {"name": "p", "workflows": [{"name": "w 1"}]}}}, f"{_W}.name"),
        ({"context": {"project": {"name": "p", "colour": "red"}}}, "context.project.colour"),
    ]
    for body, field in cases:
        with pytest.raises(DefinitionError) as err:
            parse_document(body)  # type: ignore[arg-type]
        assert err.value.field == field, body
    with pytest.raises(DefinitionError) as err:
        create(None, parse_document(doc([{"name": "w"}, {"name": "w"}])))
    assert err.value.field == "context.project.workflows[1].name"
    with pytest.raises(DefinitionError) as err:
        create(seed_project(), parse_document(doc([], project="other")))
    assert err.value.field == "context.project.name"


def test_numbers_in_params_are_taken_as_the_arguments_they_spell() -> None:
    project = after(create(None, parse_document(doc([{"name": "w", "tasks": [task("t", 1, params=[5, "x", 1.5])]}]))))
    wf = project.workflow("w")
    assert wf is not None and wf.steps[0].params == ["5", "x", "1.5"]


# events ---------------------------------------------------------------------------------------------


def test_the_catalog_folded_from_the_events_is_the_project_after_each_change() -> None:
    catalog = Catalog()
    project = None
    changes: list[Callable[[Project | None], Change]] = [
        lambda p: create(p, parse_document(SEED_004_SAMPLE)),
        lambda p: create(p, parse_document(doc([{"name": "wf1", "tasks": [task("t10", 1)]}]))),
        lambda p: replace(p, parse_document(doc([{"name": "wf2", "tasks": []}]))),
        lambda p: remove(p, parse_removal(doc([{"name": "wf1"}]))),
    ]
    events = []
    for make in changes:
        change = make(project)
        for event in change.events("alice"):
            events.append(event)
            decoded = decode_event(encode_event(event))  # through the wire format
            assert decoded is not None
            catalog.apply(decoded)
        project = change.after
        assert catalog.project("pr1") == project
    for event in events:  # a replay changes nothing
        catalog.apply(event)
    assert catalog.project("pr1") == project


def test_definition_events_go_to_their_workflow_subjects() -> None:
    events = create(None, parse_document(SEED_004_SAMPLE)).events()
    s = Subjects("sb")
    assert [subject_for(s, e) for e in events] == [
        f"sb.workflows.{project_id('pr1')}.project_defined",
        f"sb.workflows.{workflow_id('pr1', 'wf1')}.defined",
        f"sb.workflows.{workflow_id('pr1', 'wf2')}.defined",
    ]
    assert workflow_id("pr1", "wf1") == workflow_id("pr1", "wf1") != workflow_id("pr1", "wf2")
    for event in events:
        assert decode_event(encode_event(event)) == event
