"""NATS credentials for `scriptbus up`'s nats-server, or for a nats-server you run yourself.

`scriptbus nats-user executor --host H --pools a,b`: a credential for an executor on another host.

Writes a new nkey seed (0600) for host H, registers its public key in the data dir of `scriptbus up`
with the permissions of an executor serving H and the pools, and makes the running nats-server read its
users again (SIGHUP). Copy the seed to H and start the executor there with
`SCRIPTBUS_NATS_CREDS=<seed file> SCRIPTBUS_NATS_URL=nats://<this host>:<port> SCRIPTBUS_POOLS=a,b
scriptbus executor --host H`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from scriptbus.credentials import Credentials
from scriptbus.embedded import nats_config, reload_nats
from scriptbus.events.subjects import Subjects


def main(argv: list[str] | None = None) -> None:
    from scriptbus.up import default_data_dir

    parser = argparse.ArgumentParser(
        prog="scriptbus nats-user", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="role", required=True)
    executor = sub.add_parser("executor", help="a credential for an executor on another host")
    executor.add_argument("--host", required=True, help="the executor's --host (SCRIPTBUS_HOST) on that machine")
    executor.add_argument("--pools", default="default", help="comma-separated pools it serves (default %(default)s)")
    executor.add_argument("--out", type=Path, default=None, help="where to write the seed (default: the data dir)")
    init = sub.add_parser(
        "init",
        help="seeds for the four services and the reader, and nats/nats-server.conf with their authorization "
        "(for a nats-server you run yourself, e.g. docker-compose.yml)",
    )
    init.add_argument("--host", required=True, help="the local executor's --host")
    init.add_argument("--pools", default="default", help="comma-separated pools it serves (default %(default)s)")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("SCRIPTBUS_DATA_DIR") or default_data_dir()),
        help="the data dir of `scriptbus up` (env SCRIPTBUS_DATA_DIR; default %(default)s)",
    )
    args = parser.parse_args(argv)
    data_dir: Path = args.data_dir.expanduser().resolve()
    pools = [p.strip() for p in args.pools.split(",") if p.strip()]
    credentials = Credentials(data_dir)
    subjects = Subjects(os.environ.get("SCRIPTBUS_PREFIX", "scriptbus"))
    if args.role == "init":
        seeds = credentials.ensure_local_users(args.host, pools)
        config = data_dir / "nats" / "nats-server.conf"
        config.write_text(nats_config(credentials.write_authorization(subjects), config.parent))
        print(f"nats-server config: {config} (includes {credentials.nats_authorization})")
        for name, seed in seeds.items():
            print(f"  {name}: SCRIPTBUS_NATS_CREDS={seed}")
        return
    try:
        seed, user = credentials.add_executor(args.host, pools, args.out)
    except ValueError as exc:
        sys.exit(f"scriptbus nats-user: --host/--pools: {exc}")
    credentials.write_authorization(subjects)
    reloaded = reload_nats(data_dir / "nats" / "nats-server.pid")
    print(f"executor {args.host} (pools {','.join(pools)}): public key {user.public_key}")
    print(f"  seed (keep it secret, mode 0600): {seed}")
    print(
        "  nats-server "
        + (
            "reloaded its users"
            if reloaded
            else "of `scriptbus up` is not running here: it accepts this user when it starts; a nats-server "
            "you run yourself (compose) accepts it once sent SIGHUP (`docker compose kill -s HUP nats`)"
        )
    )
    print(f"  on {args.host}: SCRIPTBUS_NATS_CREDS=<copy of the seed> SCRIPTBUS_NATS_URL=nats://<this host>:<port> \\")
    print(f"      SCRIPTBUS_POOLS={','.join(pools)} scriptbus executor --host {args.host}")
