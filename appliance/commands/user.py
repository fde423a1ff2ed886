"""``wallmesh user add|list|remove``: user accounts in the site's store.

Works whether or not the server runs (see :mod:`appliance.signaling.offline`). ``add``
reads the password from stdin when stdin is not a terminal, else prompts twice.
"""

from __future__ import annotations

import argparse
import sys

from appliance.signaling.cliargs import overrides, store_parent


def add_arguments(parser: argparse.ArgumentParser) -> None:
    common = store_parent()
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = sub.add_parser("add", parents=[common], help="add a user (password from stdin when not a terminal)")
    add.add_argument("name")
    add.add_argument("--rooms", default="*", help="comma-separated rooms the user may join, '*' for all (default)")
    sub.add_parser("list", parents=[common], help="list users")
    remove = sub.add_parser("remove", parents=[common], help="remove a user")
    remove.add_argument("name")


def _password() -> str:
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    import getpass

    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        from appliance.signaling.admin import AdminError

        raise AdminError("the passwords differ")
    return first


def run(args: argparse.Namespace) -> int:
    import asyncio

    from appliance.signaling.offline import admin_state_dir, load_config, open_admin

    config = load_config(args.config, overrides(args))
    state_dir = admin_state_dir(config, args.state_dir, args.config, create=args.action == "add")
    password = _password() if args.action == "add" else ""

    async def go() -> None:
        async with open_admin(config, state_dir) as admin:
            if args.action == "add":
                rooms = [r.strip() for r in args.rooms.split(",") if r.strip()]
                await admin.add_user(args.name, password, rooms)
                print(f"user {args.name} added")
            elif args.action == "remove":
                await admin.remove_user(args.name)
                print(f"user {args.name} removed")
            else:
                for user in await admin.list_users():
                    print(f"{user['name']}\trooms={','.join(user['rooms'])}")

    asyncio.run(go())
    return 0
