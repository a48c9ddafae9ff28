"""`scriptbus tokens …`: make an API token with a role (printed once), list them, revoke one."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from scriptbus.client import render
from scriptbus.client.api import Api, ClientError, is_full_id
from scriptbus.client.commands import Context, _print_json
from scriptbus.client.verbs import verb_group

ROLES = ("read", "run", "admin")


def resolve_token(api: Api, ref: str) -> str:
    """The id of the live token `ref` names: its id, an unambiguous start of one, or its name."""
    if is_full_id(ref):
        return ref.lower()
    live = api.list_tokens().get("items", [])
    matches = [t for t in live if t.get("name") == ref] or [t for t in live if str(t.get("id", "")).startswith(ref)]
    if not matches:
        raise ClientError(f"no live token has the name or an id starting with {ref!r} (see `scriptbus tokens list`)")
    if len(matches) > 1:
        raise ClientError(f"{ref!r} is ambiguous: {len(matches)} tokens match; give more of the id")
    return str(matches[0]["id"])


def cmd_create(ctx: Context, args: argparse.Namespace) -> int:
    made = ctx.api.create_token(args.role, args.name or "")
    if ctx.json:
        _print_json(made)
        return 0
    # The token alone on stdout, so `export SCRIPTBUS_TOKEN=$(scriptbus tokens create …)` works.
    print(made["token"])
    label = f"{made.get('name')!r} " if made.get("name") else ""
    print(
        f"token {label}({made['role']}) created, id {made['id']}. It is shown only this once: keep it now; "
        "use it with --token or SCRIPTBUS_TOKEN.",
        file=sys.stderr,
    )
    return 0


def cmd_list(ctx: Context, args: argparse.Namespace) -> int:
    listing = ctx.api.list_tokens(revoked=args.revoked)
    if ctx.json:
        _print_json(listing)
    else:
        print(render.tokens_table(listing.get("items", []), ctx.colour))
    return 0


def cmd_revoke(ctx: Context, args: argparse.Namespace) -> int:
    token_id = resolve_token(ctx.api, args.ref)
    ctx.api.revoke_token(token_id)
    if ctx.json:
        _print_json({"id": token_id, "revoked": True})
    else:
        print(f"revoked token {token_id}")
    return 0


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """`scriptbus tokens` and its verbs, on the client's subparsers `sub`."""
    add = verb_group(
        sub,
        common,
        "tokens",
        help="API tokens with roles (admin)",
        description="API tokens: `read` sees everything, `run` also starts and stops runs and workflow runs, "
        "`admin` also manages commands, workflows and tokens. Once any token exists, every caller needs one.",
    )

    tp = add("create", cmd_create, help="make a token and print it (only this once)")
    tp.add_argument("--role", required=True, choices=ROLES, help="what the token may do")
    tp.add_argument("--name", default="", help="who holds it: shown as requested_by/stopped_by in events")
    tp = add("list", cmd_list, help="list live tokens (never their values)")
    tp.add_argument("--revoked", action="store_true", help="also list revoked tokens")
    tp = add("revoke", cmd_revoke, help="revoke a token: refused from the next request on")
    tp.add_argument("ref", metavar="ID", help="the token's id (or an unambiguous start of it), or its name")
