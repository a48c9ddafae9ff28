"""The pure pieces behind the workflow routes: a whole-workflow PUT, a workflow DELETE, field paths of
seed 004's documents as FastAPI locations, and a run described from its request alone."""

from __future__ import annotations

import pytest

from scriptbus.events.workflow_definitions import (
    DefinitionNotFound,
    WorkflowDocument,
    create,
    parse_document,
    put_workflow,
    remove_workflow,
)
from scriptbus.events.workflows import StepExec, StepSpec, StepStatus, WfRunRequested, WorkflowRunStatus
from scriptbus.gateway.workflow_actions import _from_request
from scriptbus.gateway.workflows import _loc
from tests.helpers.seed004 import SEED_004_SAMPLE


def test_put_makes_the_workflow_exactly_the_body_with_a_new_version() -> None:
    project = create(None, parse_document(SEED_004_SAMPLE)).after
    doc = WorkflowDocument.model_validate({"name": "wf1", "tasks": [{"name": "b", "place": 3, "function": "echo"}]})
    change = put_workflow(project, "pr1", doc)
    assert change.after is not None
    wf1 = change.after.workflow("wf1")
    assert wf1 is not None and [(s.name, s.place, s.id) for s in wf1.steps] == [("b", 3, 1)]
    assert wf1.version == 2 and [w.name for w in change.defined] == ["wf1"]
    # The same body again changes nothing.
    assert not put_workflow(change.after, "pr1", doc).changed


def test_put_makes_a_missing_project_and_delete_removes_one_workflow() -> None:
    doc = WorkflowDocument.model_validate({"name": "w", "tasks": []})
    made = put_workflow(None, "p", doc)
    assert [e.type for e in made.events()] == ["project.defined", "workflow.defined"]
    gone = remove_workflow(made.after, "p", "w")
    assert gone.after is not None and gone.after.workflows == ()
    with pytest.raises(DefinitionNotFound):
        remove_workflow(made.after, "p", "nope")


@pytest.mark.parametrize(
    ("field", "loc"),
    [
        ("body", ("body",)),
        ("context", ("body", "context")),
        (
            "context.project.workflows[0].tasks[12].place",
            ("body", "context", "project", "workflows", 0, "tasks", 12, "place"),
        ),
    ],
)
def test_a_field_path_is_a_fastapi_location(field: str, loc: tuple[object, ...]) -> None:
    assert _loc(field) == loc


def test_a_run_described_from_its_request_matches_what_the_read_model_starts_with() -> None:
    steps = [
        StepSpec(name="t12", place=2, function="simple"),
        StepSpec(name="t11", place=1, function="simple", exec=StepExec.PARALLEL),
    ]
    request = WfRunRequested(
        wfrun_id="r2",
        project="pr1",
        workflow="wf1",
        workflow_id="w",
        version=3,
        steps=steps,
        retry_of="r1",
        kept_steps={"t11": "run-1"},
    )
    run = _from_request(request)
    assert (run.status, run.version, run.retry_of) == (WorkflowRunStatus.QUEUED, 3, "r1")
    assert [(s.name, s.status, s.spad_status, s.run_id) for s in run.steps] == [
        ("t11", StepStatus.SUCCEEDED, "success0", "run-1"),
        ("t12", StepStatus.PENDING, "new", None),
    ]
    only = _from_request(request.model_copy(update={"task": "t12", "kept_steps": {}}))
    assert [s.name for s in only.steps] == ["t12"]
