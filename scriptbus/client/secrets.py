"""`scriptbus secrets set|list|rm`: write-only secrets. A value is read from stdin or a prompt, never
from the command line (where `ps` and shell history would show it), and is never printed."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote

from scriptbus.client import render
from scriptbus.client.api import ClientError
from scriptbus.client.commands import Context, UsageError
from scriptbus.client.verbs import verb_group
from scriptbus.events.secret_box import SecretKeyError, ensure_key_pair

EPILOG = """examples:
  scriptbus secrets set DB_PASSWORD                 # asks for the value (not echoed)
  vault read -field=pw db | scriptbus secrets set DB_PASSWORD
  scriptbus run --secret DB_PASSWORD 'psql "postgresql://app:$DB_PASSWORD@db/app" -c "select 1"'
"""


def read_value(stdin: TextIO, prompt: Callable[[str], str] = getpass.getpass) -> str:
    """The value: all of stdin when it is not a terminal (one final newline dropped, as `echo` adds
    it), else typed twice at a prompt that does not echo."""
    if not stdin.isatty():
        value = stdin.read()
        return value[:-1] if value.endswith("\n") else value
    value = prompt("value (not shown): ")
    if prompt("again: ") != value:
        raise UsageError("the two values differ; nothing was stored")
    return value


def _path(name: str) -> str:
    return "/secrets/" + quote(name, safe="")


def _body(response: Any) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError as exc:
        raise ClientError(f"the API answered {response.status_code} with something that is not JSON") from exc
    if not isinstance(body, dict):
        raise ClientError("the API answered with unexpected JSON")
    return body


def cmd_set(ctx: Context, args: argparse.Namespace) -> int:
    value = read_value(sys.stdin)
    if not value:
        raise UsageError("empty value: give it on stdin or at the prompt; nothing was stored")
    response = ctx.api.request("PUT", _path(args.name), json={"value": value})
    secret = _body(response)
    if ctx.json:
        print(json.dumps(secret, indent=2, ensure_ascii=False))
    else:
        print(f"secret {secret['name']} {'set' if response.status_code == 201 else 'replaced'}")
    return 0


def cmd_list(ctx: Context, args: argparse.Namespace) -> int:
    items = _body(ctx.api.request("GET", "/secrets")).get("items", [])
    if ctx.json:
        print(json.dumps({"items": items}, indent=2, ensure_ascii=False))
    elif not items:
        print("no secrets (an admin sets one with `scriptbus secrets set NAME`)")
    else:
        rows = [[s["name"], render.ago(s.get("set_at")), s.get("set_by") or "-"] for s in items]
        print(render.table(["NAME", "SET", "BY"], rows, ctx.colour))
    return 0


def cmd_rm(ctx: Context, args: argparse.Namespace) -> int:
    ctx.api.request("DELETE", _path(args.name))
    if not ctx.json:
        print(f"secret {args.name} removed")
    return 0


def cmd_keygen(ctx: Context, args: argparse.Namespace) -> int:
    try:
        private, public = ensure_key_pair(Path(args.dir).expanduser())
    except (OSError, SecretKeyError) as exc:
        raise ClientError(f"cannot make the key pair in {args.dir}: {exc}") from exc
    print(f"private key (executors: SCRIPTBUS_SECRETS_KEY_FILE)       {private}")
    print(f"public key  (gateways:  SCRIPTBUS_SECRETS_PUBLIC_KEY_FILE) {public}")
    return 0


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """`scriptbus secrets` and its verbs, on the client's subparsers `sub`."""
    add = verb_group(
        sub,
        common,
        "secrets",
        help="write-only secrets runs get in their environment",
        description="Secrets: values an admin stores once; runs and commands that name them (--secret NAME) "
        "get them as environment variables. Nobody reads a value back.",
        epilog=EPILOG,
    )

    sp = add(
        "set",
        cmd_set,
        help="store a value (from stdin, or typed at a prompt)",
        description="Store the value of secret NAME, read from stdin (a pipe or file) or typed twice at a "
        "prompt. Never give it on the command line. Admins only.",
    )
    sp.add_argument("name", metavar="NAME", help="the environment variable the script gets it in")
    add("list", cmd_list, help="list secrets: names, when and by whom (never values)")
    sp = add("rm", cmd_rm, help="remove a secret (runs naming it then fail without running)")
    sp.add_argument("name", metavar="NAME")
    sp = add(
        "keygen",
        cmd_keygen,
        help="make the key pair values are sealed with (for services run without `up`)",
        description="Make secrets.key (0600) and secrets.pub in DIR, unless they exist. `scriptbus up` "
        "does this itself in its data dir. Works on this machine only: it does not call the API.",
    )
    sp.add_argument("dir", metavar="DIR", help="where to put the two files (made 0700 if missing)")
