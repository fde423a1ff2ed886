"""``wallmesh device token|list|revoke``: the fleet's device identities.

``token`` prints an enrollment token (expiring, revocable) that carries the server's URL and
TLS fingerprint; a unit trades it for its own device id and secret at first boot.
``revoke`` takes effect on a running server within about a second: its live connection is
closed and its tokens are refused.
"""

from __future__ import annotations

import argparse

from appliance.signaling.cliargs import overrides, store_parent


def add_arguments(parser: argparse.ArgumentParser) -> None:
    common = store_parent()
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    token = sub.add_parser("token", parents=[common], help="print a fleet enrollment token")
    token.add_argument("--ttl", type=int, help="lifetime in seconds (default from config: 7 days)")
    token.add_argument("--rooms", default="*", help="comma-separated rooms enrolled devices may join, '*' for all")
    token.add_argument("--list", action="store_true", help="list enrollment tokens instead")
    token.add_argument("--revoke", metavar="TOKEN_ID", help="revoke an enrollment token (its id from --list)")
    sub.add_parser("list", parents=[common], help="list enrolled devices")
    revoke = sub.add_parser("revoke", parents=[common], help="revoke a device: close its connection, refuse its tokens")
    revoke.add_argument("device_id")


def run(args: argparse.Namespace) -> int:
    import asyncio
    import time

    from appliance.signaling.offline import admin_state_dir, load_config, open_admin

    config = load_config(args.config, overrides(args))
    state_dir = admin_state_dir(config, args.state_dir, args.config, create=args.action == "token" and not (args.list or args.revoke))

    async def go() -> None:
        async with open_admin(config, state_dir) as admin:
            if args.action == "token" and args.revoke:
                await admin.revoke_enrollment(args.revoke)
                print(f"enrollment token {args.revoke} revoked")
            elif args.action == "token" and args.list:
                for e in await admin.list_enrollments():
                    left = int(e["expires"] - time.time())
                    status = "revoked" if e["revoked"] else ("expired" if left <= 0 else f"{left}s left")
                    print(f"{e['id']}\trooms={','.join(e['rooms'])}\t{status}")
            elif args.action == "token":
                rooms = [r.strip() for r in args.rooms.split(",") if r.strip()]
                print(await admin.enrollment_token(args.ttl, rooms), flush=True)
            elif args.action == "revoke":
                await admin.revoke_device(args.device_id)
                print(f"device {args.device_id} revoked")
            else:
                for d in await admin.list_devices():
                    flag = "\trevoked" if d["revoked"] else ""
                    print(f"{d['device_id']}\t{d['name']}\trooms={','.join(d['rooms'])}{flag}")

    asyncio.run(go())
    return 0
