"""`scriptbus <noun> <verb>`: the parser group every noun of the CLI (commands, wf, files, …) is made of."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scriptbus.client.commands import Context

Handler = Callable[["Context", argparse.Namespace], int]
AddVerb = Callable[..., argparse.ArgumentParser]


def verb_group(
    sub: Any,
    common: argparse.ArgumentParser,
    noun: str,
    *,
    help: str,
    description: str,
    epilog: str | None = None,
    verbs_show_epilog: bool = False,
) -> AddVerb:
    """Adds `scriptbus <noun>` to the client's subparsers `sub`; returns `add(verb, handler, **kw)`, which adds
    one verb with the common options and returns its parser. `epilog` (examples) goes under the noun's help,
    and under each verb's too with `verbs_show_epilog`."""
    shown: dict[str, Any] = {}
    if epilog is not None:
        shown = {"epilog": epilog, "formatter_class": argparse.RawDescriptionHelpFormatter}
    group = sub.add_parser(noun, help=help, description=description, **shown)
    verbs = group.add_subparsers(dest="sub", metavar="<verb>", required=True)

    def add(name: str, handler: Handler, **kw: Any) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = verbs.add_parser(
            name, parents=[common], **(shown if verbs_show_epilog else {}), **kw
        )
        parser.set_defaults(handler=handler)
        return parser

    return add
