"""The failures of talking to NATS that the executor rides out (retrying or logging), as opposed to bugs."""

from __future__ import annotations

import nats.errors

# nats.errors.Error covers the JetStream and KV errors too; OSError the socket underneath.
BUS_ERRORS: tuple[type[BaseException], ...] = (nats.errors.Error, TimeoutError, OSError)
