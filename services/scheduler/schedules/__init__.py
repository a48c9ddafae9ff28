"""Schedules, driven by the scheduler: `state` folds one schedule and says which ticks are due; `driver`
records each tick once on the stream and requests the run it makes."""
