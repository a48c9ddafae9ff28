"""Workflow runs, driven by the scheduler. The pure core, testable without NATS or PostgreSQL (the
definitions and seed 004's verbs, which the gateway uses too, are `scriptbus.events.workflow_definitions`):

- `state`: a workflow run's state, folded from its events and its step runs' events.
- `decide`: what happens next, given the state and the time: `decide(state, now) -> Decision`.
"""
