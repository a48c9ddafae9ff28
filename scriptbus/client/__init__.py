"""The `scriptbus` command-line client: `run`, `ps`, `show`, `logs`, `stop`, `rm`, `commands`,
`executors`, talking to the gateway's REST API.

`api.py` holds the HTTP calls and error mapping, `follow.py` live following over SSE, `render.py`
tables and times, `spinner.py` the queued spinner, `commands.py` the subcommands and `main`.
"""

from scriptbus.client.commands import CLIENT_COMMANDS, main

__all__ = ["CLIENT_COMMANDS", "main"]
