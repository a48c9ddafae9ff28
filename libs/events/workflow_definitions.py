"""Projects, workflows and steps: seed 004's JSON as it is, and its verbs as pure functions.

`{"context": {"project": {"name", "workflows": [{"name", "tasks": [...]}]}}}` is the document users
already have. The verbs act on one project's current definitions and return a `Change`: the project
before and after, each changed workflow with a new version, and the events that record it.

- `create` (spad `create`, `POST /projects/import`): makes what is missing, adds workflows and tasks;
  a task inserted at a taken `place` shifts that task and every later one down by one.
- `replace` (spad `update`, `import?mode=replace`): as the seed, a delete of the named leaves then a
  create: the named tasks are replaced, the others stay; a workflow given with `"tasks": []` is emptied,
  one given without `tasks` keeps its tasks and takes the workflow's own fields.
- `remove` (spad `delete`): removes the leaves of the tree (tasks, or whole workflows), in order; a
  project only when it is empty.
- `dump` (spad `dump`): the document `replace` takes back without changing anything.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from scriptbus.events import run_env
from scriptbus.events.envelope import Event
from scriptbus.events.workflows import (
    NAME_PATTERN,
    ProjectDefined,
    ProjectRemoved,
    StepSpec,
    WorkflowDefined,
    WorkflowRemoved,
    WorkflowSettings,
    project_id,
    valid_name,
    workflow_id,
)


class DefinitionError(ValueError):
    """Bad input: `field` is its path in the document (`context.project.workflows[0].tasks[1].place`)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class DefinitionNotFound(DefinitionError):
    """The document names a project, workflow or task that does not exist (404)."""


class DefinitionConflict(DefinitionError):
    """The document contradicts what exists: a task added twice, a non-empty project removed (409)."""


# the document ------------------------------------------------------------------------------------


def _check_name(value: str) -> str:
    if not valid_name(value):
        raise ValueError(f"must match {NAME_PATTERN}")
    return value


class TaskDefinition(StepSpec):
    """A task as users write it: every StepSpec field, and nothing else (a typo is an error, not a default)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        # Definitions are an admin's, so PATH may be set here; what bash or the loader read never.
        bad = [name for name in value if not run_env.valid_name(name)]
        if bad:
            raise ValueError(f"invalid variable name(s) {bad!r}: names must match {run_env.NAME_PATTERN}")
        refused = run_env.refusal(value)
        if refused is not None:
            raise ValueError(refused)
        return value


class _Document(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class WorkflowDocument(_Document):
    id: int | None = None
    name: str
    # None (absent) and [] differ: see `replace` and `remove`.
    tasks: list[TaskDefinition] | None = None
    max_active_runs: int | None = Field(default=None, ge=1, le=10_000)

    _name = field_validator("name")(_check_name)


class ProjectDocument(_Document):
    id: int | None = None
    name: str
    workflows: list[WorkflowDocument] | None = None

    _name = field_validator("name")(_check_name)


class ContextDocument(_Document):
    project: ProjectDocument


class SeedDocument(_Document):
    """Seed 004's document: `{"context": {"project": {...}}}`."""

    context: ContextDocument

    @property
    def project(self) -> ProjectDocument:
        return self.context.project


_TASK_FIELDS = frozenset(StepSpec.model_fields)


class RemovalTask(_Document):
    """A task to remove: its name is what counts; the other fields of a dumped task may come along."""

    model_config = ConfigDict(frozen=True, extra="allow")

    name: str

    @model_validator(mode="before")
    @classmethod
    def _known_fields(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            unknown = sorted(set(value) - _TASK_FIELDS)
            if unknown:
                raise ValueError(f"unknown task fields {unknown}")
        return value


class RemovalWorkflow(_Document):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: int | None = None
    name: str
    tasks: list[RemovalTask] | None = None
    max_active_runs: int | None = None


class RemovalProject(_Document):
    id: int | None = None
    name: str
    workflows: list[RemovalWorkflow] | None = None


class RemovalContext(_Document):
    project: RemovalProject


class RemovalDocument(_Document):
    """Seed 004's `delete` tree: where it ends (a task, or a workflow without tasks) is what goes."""

    context: RemovalContext

    @property
    def project(self) -> RemovalProject:
        return self.context.project


def _path(loc: Iterable[int | str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


def _load(data: str | bytes | Mapping[str, Any]) -> Any:
    if isinstance(data, Mapping):
        return data
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DefinitionError("body", f"not JSON: {exc}") from None


def _validation_error(exc: ValidationError) -> DefinitionError:
    first = exc.errors()[0]
    reason = str(first["msg"]).removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        reason = "unknown field"
    return DefinitionError(_path(first["loc"]), reason)


def parse_document(data: str | bytes | Mapping[str, Any]) -> SeedDocument:
    """Seed 004's JSON for `create` and `update`, validated; errors name the field."""
    try:
        return SeedDocument.model_validate(_load(data))
    except ValidationError as exc:
        raise _validation_error(exc) from None


def parse_removal(data: str | bytes | Mapping[str, Any]) -> RemovalDocument:
    """Seed 004's JSON for `delete`: names are what matter."""
    try:
        return RemovalDocument.model_validate(_load(data))
    except ValidationError as exc:
        raise _validation_error(exc) from None


# the stored definitions --------------------------------------------------------------------------


class Workflow(BaseModel):
    """One version of a workflow's definition."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    version: int = 0
    seed_id: int | None = None
    settings: WorkflowSettings = Field(default_factory=WorkflowSettings)
    steps: tuple[StepSpec, ...] = ()  # ordered by place; places are unique

    def step(self, name: str) -> StepSpec | None:
        return next((s for s in self.steps if s.name == name), None)

    def same_definition(self, other: Workflow) -> bool:
        return self.model_copy(update={"version": 0}) == other.model_copy(update={"version": 0})


class Project(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    seed_id: int | None = None
    workflows: tuple[Workflow, ...] = ()

    def workflow(self, name: str) -> Workflow | None:
        return next((w for w in self.workflows if w.name == name), None)


@dataclass(frozen=True)
class Change:
    """What a verb did to one project. `after` is None when the project was removed."""

    before: Project | None
    after: Project | None
    # Every workflow the document named, changed or not: the caller refuses the change (409) while any runs.
    named: tuple[str, ...]

    @property
    def defined(self) -> tuple[Workflow, ...]:
        """Workflows that are new or have a new version."""
        if self.after is None:
            return ()
        old = {w.name: w.version for w in self.before.workflows} if self.before else {}
        return tuple(w for w in self.after.workflows if old.get(w.name) != w.version)

    @property
    def removed(self) -> tuple[Workflow, ...]:
        if self.before is None:
            return ()
        kept = {w.name for w in self.after.workflows} if self.after else set()
        return tuple(w for w in self.before.workflows if w.name not in kept)

    @property
    def changed(self) -> bool:
        return self.before != self.after

    def events(self, by: str = "") -> list[Event]:
        """The events that record this change, in the order to store them."""
        events: list[Event] = []
        name = (self.after or self.before or Project(name="-")).name
        if self.before is None and self.after is not None:
            events.append(
                ProjectDefined(project_id=project_id(name), project=name, seed_id=self.after.seed_id, defined_by=by)
            )
        for w in self.removed:
            events.append(
                WorkflowRemoved(
                    workflow_id=workflow_id(name, w.name),
                    project=name,
                    workflow=w.name,
                    version=w.version,
                    removed_by=by,
                )
            )
        for w in self.defined:
            events.append(
                WorkflowDefined(
                    workflow_id=workflow_id(name, w.name),
                    project=name,
                    workflow=w.name,
                    version=w.version,
                    seed_id=w.seed_id,
                    settings=w.settings,
                    steps=list(w.steps),
                    defined_by=by,
                )
            )
        if self.before is not None and self.after is None:
            events.append(ProjectRemoved(project_id=project_id(name), project=name, removed_by=by))
        return events


class Catalog:
    """Every project's current definitions, folded from definition events (replays are no-ops)."""

    def __init__(self) -> None:
        self.projects: dict[str, Project] = {}

    def project(self, name: str) -> Project | None:
        return self.projects.get(name)

    def apply(self, event: Event) -> None:
        if isinstance(event, ProjectDefined):
            self.projects.setdefault(event.project, Project(name=event.project, seed_id=event.seed_id))
        elif isinstance(event, ProjectRemoved):
            known = self.projects.get(event.project)
            if known is not None and not known.workflows:
                del self.projects[event.project]
        elif isinstance(event, WorkflowDefined):
            project = self.projects.get(event.project) or Project(name=event.project)
            current = project.workflow(event.workflow)
            if current is not None and current.version >= event.version:
                return
            new = Workflow(
                name=event.workflow,
                version=event.version,
                seed_id=event.seed_id,
                settings=event.settings,
                steps=tuple(sorted(event.steps, key=lambda s: s.place)),
            )
            workflows = [new if w.name == new.name else w for w in project.workflows]
            if current is None:
                workflows.append(new)
            self.projects[event.project] = project.model_copy(update={"workflows": tuple(workflows)})
        elif isinstance(event, WorkflowRemoved):
            owner = self.projects.get(event.project)
            gone = owner.workflow(event.workflow) if owner else None
            if owner is not None and gone is not None and gone.version <= event.version:
                kept = tuple(w for w in owner.workflows if w.name != event.workflow)
                self.projects[event.project] = owner.model_copy(update={"workflows": kept})


# the verbs ---------------------------------------------------------------------------------------

_PROJECT = "context.project"


def _spec(task: StepSpec) -> StepSpec:
    """The stored form of a task: a plain StepSpec, so definitions compare equal whatever parsed them."""
    return StepSpec.model_validate(task.model_dump())


def _insert(steps: list[StepSpec], new: StepSpec) -> list[StepSpec]:
    """`new` at its place; when the place is taken, that step and every later one move down by one."""
    if any(s.place == new.place for s in steps):
        steps = [s.model_copy(update={"place": s.place + 1}) if s.place >= new.place else s for s in steps]
    return sorted([*steps, new], key=lambda s: s.place)


def _with_ids(steps: list[StepSpec], tasks: list[TaskDefinition]) -> list[StepSpec]:
    """Tasks without seed 004's `id` get the next free number in their workflow, as the seed numbers them."""
    next_id = max((s.id or 0 for s in steps), default=0)
    next_id = max(next_id, max((t.id or 0 for t in tasks), default=0))
    out = []
    for task in tasks:
        spec = _spec(task)
        if spec.id is None:
            next_id += 1
            spec = spec.model_copy(update={"id": next_id})
        out.append(spec)
    return out


def _check_document(doc: ProjectDocument) -> None:
    names: set[str] = set()
    for i, wf in enumerate(doc.workflows or []):
        where = f"{_PROJECT}.workflows[{i}]"
        if wf.name in names:
            raise DefinitionError(f"{where}.name", f"workflow {wf.name!r} appears twice")
        names.add(wf.name)
        task_names: dict[str, int] = {}
        places: dict[int, str] = {}
        for j, task in enumerate(wf.tasks or []):
            if task.name in task_names:
                raise DefinitionError(f"{where}.tasks[{j}].name", f"task {task.name!r} appears twice")
            if task.place in places:
                raise DefinitionError(
                    f"{where}.tasks[{j}].place", f"place {task.place} is taken by {places[task.place]!r} here too"
                )
            task_names[task.name] = j
            places[task.place] = task.name


def _check_project(current: Project | None, name: str) -> None:
    if current is not None and current.name != name:
        raise DefinitionError(f"{_PROJECT}.name", f"is {name!r}, the definitions given are of {current.name!r}")


def _versioned(before: Project | None, after: Project, named: Iterable[str]) -> Change:
    """`after` with a new version for each workflow whose definition differs from `before`'s."""
    workflows = []
    for w in after.workflows:
        old = before.workflow(w.name) if before else None
        if old is not None and old.same_definition(w):
            workflows.append(old)
        else:
            workflows.append(w.model_copy(update={"version": (old.version if old else 0) + 1}))
    final = after.model_copy(update={"workflows": tuple(workflows)})
    if before is not None and final == before:
        final = before
    return Change(before=before, after=final, named=tuple(dict.fromkeys(named)))


def _new_workflow(project: Project, doc: WorkflowDocument) -> Workflow:
    seed_id = doc.id
    if seed_id is None:
        seed_id = max((w.seed_id or 0 for w in project.workflows), default=0) + 1
    settings = WorkflowSettings(max_active_runs=doc.max_active_runs or 1)
    return Workflow(name=doc.name, seed_id=seed_id, settings=settings)


def _put(project: Project, workflow: Workflow) -> Project:
    replaced = [workflow if w.name == workflow.name else w for w in project.workflows]
    if project.workflow(workflow.name) is None:
        replaced.append(workflow)
    return project.model_copy(update={"workflows": tuple(replaced)})


def create(current: Project | None, doc: SeedDocument) -> Change:
    """Seed 004's `create`: make the project and workflows that are missing and add the tasks.

    A task whose name exists in its workflow is a conflict (`replace` is for that)."""
    pdoc = doc.project
    _check_project(current, pdoc.name)
    _check_document(pdoc)
    project = current or Project(name=pdoc.name, seed_id=pdoc.id)
    for i, wdoc in enumerate(pdoc.workflows or []):
        workflow = project.workflow(wdoc.name) or _new_workflow(project, wdoc)
        for j, task in enumerate(wdoc.tasks or []):
            if workflow.step(task.name) is not None:
                raise DefinitionConflict(
                    f"{_PROJECT}.workflows[{i}].tasks[{j}].name",
                    f"task {task.name!r} already exists in {pdoc.name}/{wdoc.name}; update replaces it",
                )
        steps = list(workflow.steps)
        for spec in sorted(_with_ids(steps, list(wdoc.tasks or [])), key=lambda s: s.place):
            steps = _insert(steps, spec)
        if wdoc.max_active_runs is not None:
            workflow = workflow.model_copy(update={"settings": WorkflowSettings(max_active_runs=wdoc.max_active_runs)})
        project = _put(project, workflow.model_copy(update={"steps": tuple(steps)}))
    return _versioned(current, project, (w.name for w in pdoc.workflows or []))


def replace(current: Project | None, doc: SeedDocument) -> Change:
    """Seed 004's `update`: delete the named leaves, then create them as given.

    Named tasks are replaced and the workflow's other tasks stay; `"tasks": []` empties the workflow;
    a workflow without `tasks` keeps its tasks and takes the document's `id` and `max_active_runs`."""
    pdoc = doc.project
    _check_project(current, pdoc.name)
    _check_document(pdoc)
    project = current or Project(name=pdoc.name, seed_id=pdoc.id)
    for wdoc in pdoc.workflows or []:
        workflow = project.workflow(wdoc.name) or _new_workflow(project, wdoc)
        update: dict[str, Any] = {}
        if wdoc.id is not None:
            update["seed_id"] = wdoc.id
        if wdoc.max_active_runs is not None:
            update["settings"] = WorkflowSettings(max_active_runs=wdoc.max_active_runs)
        if wdoc.tasks is not None:
            named = {t.name for t in wdoc.tasks}
            steps = [s for s in workflow.steps if s.name not in named] if wdoc.tasks else []
            for spec in sorted(_with_ids(steps, wdoc.tasks), key=lambda s: s.place):
                steps = _insert(steps, spec)
            update["steps"] = tuple(steps)
        project = _put(project, workflow.model_copy(update=update))
    return _versioned(current, project, (w.name for w in pdoc.workflows or []))


def remove(current: Project | None, doc: RemovalDocument) -> Change:
    """Seed 004's `delete`: the leaves of the tree go, in the document's order. A task leaf removes that
    task, a workflow leaf (no tasks) the whole workflow, a project leaf the project, only when empty."""
    pdoc = doc.project
    if current is None:
        raise DefinitionNotFound(f"{_PROJECT}.name", f"no project {pdoc.name!r}")
    _check_project(current, pdoc.name)
    project: Project = current
    if not pdoc.workflows:
        if project.workflows:
            names = ", ".join(w.name for w in project.workflows)
            raise DefinitionConflict(
                f"{_PROJECT}.name", f"project {pdoc.name!r} still has workflows ({names}); only an empty one is removed"
            )
        return Change(before=current, after=None, named=())
    for i, wdoc in enumerate(pdoc.workflows):
        where = f"{_PROJECT}.workflows[{i}]"
        workflow = project.workflow(wdoc.name)
        if workflow is None:
            raise DefinitionNotFound(f"{where}.name", f"no workflow {wdoc.name!r} in project {pdoc.name!r}")
        if not wdoc.tasks:
            project = project.model_copy(
                update={"workflows": tuple(w for w in project.workflows if w.name != wdoc.name)}
            )
            continue
        steps = list(workflow.steps)
        for j, task in enumerate(wdoc.tasks):
            if not any(s.name == task.name for s in steps):
                raise DefinitionNotFound(
                    f"{where}.tasks[{j}].name", f"no task {task.name!r} in {pdoc.name}/{wdoc.name}"
                )
            steps = [s for s in steps if s.name != task.name]
        project = _put(project, workflow.model_copy(update={"steps": tuple(steps)}))
    return _versioned(current, project, (w.name for w in pdoc.workflows))


_SEED_TASK_FIELDS = ("id", "name", "place", "exec", "function", "params")


def dump_task(step: StepSpec) -> dict[str, Any]:
    """A task in seed 004's field order; our own fields only when they differ from their defaults."""
    out: dict[str, Any] = {}
    if step.id is not None:
        out["id"] = step.id
    out["name"] = step.name
    out["place"] = step.place
    out["exec"] = step.exec.value
    if step.function is not None:
        out["function"] = step.function
    out["params"] = list(step.params)
    out.update(step.model_dump(mode="json", exclude_defaults=True, exclude=set(_SEED_TASK_FIELDS)))
    return out


def dump_workflow(workflow: Workflow, task: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if workflow.seed_id is not None:
        out["id"] = workflow.seed_id
    out["name"] = workflow.name
    if workflow.settings != WorkflowSettings():
        out["max_active_runs"] = workflow.settings.max_active_runs
    out["tasks"] = [dump_task(s) for s in workflow.steps if task is None or s.name == task]
    return out


def dump(project: Project, workflow: str | None = None, task: str | None = None) -> dict[str, Any]:
    """Seed 004's `dump`: the project, or one workflow of it, or one task, as a document `replace` takes back."""
    workflows = project.workflows
    if workflow is not None:
        found = project.workflow(workflow)
        if found is None:
            raise DefinitionNotFound("workflow", f"no workflow {workflow!r} in project {project.name!r}")
        if task is not None and found.step(task) is None:
            raise DefinitionNotFound("task", f"no task {task!r} in {project.name}/{workflow}")
        workflows = (found,)
    elif task is not None:
        raise DefinitionError("task", "a task is named within its workflow: give the workflow too")
    body: dict[str, Any] = {}
    if project.seed_id is not None:
        body["id"] = project.seed_id
    body["name"] = project.name
    body["workflows"] = [dump_workflow(w, task) for w in workflows]
    return {"context": {"project": body}}


def put_workflow(current: Project | None, project: str, doc: WorkflowDocument) -> Change:
    """`PUT /projects/{p}/workflows/{w}`: the workflow becomes exactly `doc`, its tasks and no others
    (made, with the project, when missing)."""
    _check_project(current, project)
    _check_document(ProjectDocument(name=project, workflows=[doc]))
    base = current or Project(name=project)
    workflow = base.workflow(doc.name) or _new_workflow(base, doc)
    steps: list[StepSpec] = []
    for spec in sorted(_with_ids([], list(doc.tasks or [])), key=lambda s: s.place):
        steps = _insert(steps, spec)
    update: dict[str, Any] = {
        "steps": tuple(steps),
        "settings": WorkflowSettings(max_active_runs=doc.max_active_runs or 1),
    }
    if doc.id is not None:
        update["seed_id"] = doc.id
    return _versioned(current, _put(base, workflow.model_copy(update=update)), (doc.name,))


def remove_workflow(current: Project | None, project: str, workflow: str) -> Change:
    """`DELETE /projects/{p}/workflows/{w}`: seed 004's `delete` of that one workflow."""
    doc = RemovalDocument(
        context=RemovalContext(project=RemovalProject(name=project, workflows=[RemovalWorkflow(name=workflow)]))
    )
    return remove(current, doc)
