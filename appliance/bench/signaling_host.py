"""Runs ``SignalServer`` as a process of its own, for the benchmark, when the CLI cannot.

The benchmark prefers the real ``wallmesh signal`` and ``wallmesh user add`` commands. This
module is the fallback with the same behaviour for the benchmark's purpose: it builds the
server from the same TOML config, creates the benchmark's account through the server's
admin API (password on stdin), prints ``listening on <url>`` and serves until SIGTERM,
applying the same start-up garbage-collector tuning the server module offers.

    python -m appliance.bench.signaling_host --config C --state-dir D --user NAME
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path


async def serve(args: argparse.Namespace, password: str) -> None:
    from appliance import config as config_mod
    from appliance.signaling import server as server_mod
    from appliance.signaling.config import SignalConfig

    cfg = config_mod.load(SignalConfig, args.config, {"host": "127.0.0.1", "port": 0, "state_dir": args.state_dir})
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server_mod.SignalServer(cfg, state_dir=Path(args.state_dir)) as server:
        if args.user:
            await server.admin.add_user(args.user, password)
        tune = getattr(server_mod, "tune_gc", None)
        if tune is not None:
            tune()
        print(f"listening on {server.url}", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--user", default="", help="account to create; its password is read from stdin")
    args = parser.parse_args(argv)
    password = sys.stdin.readline().strip() if args.user else ""
    asyncio.run(serve(args, password))
    return 0


if __name__ == "__main__":
    sys.exit(main())
