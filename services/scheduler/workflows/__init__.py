"""Workflow runs, driven by the scheduler. The pure core, testable without NATS or PostgreSQL:

- `definition`: projects, workflows and steps; seed 004's JSON and its create/update/delete/dump verbs.
- `state`: a workflow run's state, folded from its events and its step runs' events.
- `decide`: what happens next, given the state and the time: `decide(state, now) -> Decision`.
"""
