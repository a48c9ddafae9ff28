"""The read models' positions: which stream sequence the recorder has applied, and where it says so.

The recorder writes `projection_position` rows under these names; the gateway reads them (and LISTENs on
the channel) to answer only once a write is visible."""

from __future__ import annotations

# Position in the events stream (runs, output, commands).
EVENTS_POSITION = "runs"
# Position in the executors stream, which is projected on its own.
EXECUTORS_POSITION = "executors"
# NOTIFY channel after each commit on the events stream; the payload is the new last_seq.
POSITION_CHANNEL = "scriptbus_position"
