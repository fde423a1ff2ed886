"""A loopback signaling server for the demo, tests and benchmarks, runnable as its own process.

``python -m appliance.demo.server --state-dir D [--port P] [--host A]`` starts a
:class:`~appliance.signaling.server.SignalServer` on 127.0.0.1 (plain HTTP, no
mDNS advert), writes a fleet enrollment token to ``D/enroll.token`` (mode 0600)
and prints ``listening on <url>``; it runs until SIGTERM. Running it as a child
process lets tests kill the server outright and start it again on the same port.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

TOKEN_FILE = "enroll.token"


def signal_config(port: int = 0, host: str = "127.0.0.1", **extra: Any) -> Any:
    """A server config: on 127.0.0.1 plain HTTP and no mDNS; on any other address (inside a
    network namespace a test made) HTTPS with a generated certificate, advertised by mDNS there."""
    from appliance.config import build
    from appliance.signaling.config import SignalConfig

    mdns = {"enabled": False} if host.startswith("127.") else {"enabled": True, "interfaces": [host]}
    data = {"host": host, "port": port, "mdns": mdns}
    data.update(extra)
    return build(SignalConfig, data, "<demo>")


async def start(state_dir: Path, port: int = 0, host: str = "127.0.0.1", **extra: Any) -> Any:
    """Start a server in this process; make sure an enrollment token is on disk."""
    from appliance.signaling.server import SignalServer

    server = SignalServer(signal_config(port, host, **extra), state_dir=state_dir)
    await server.start()
    token_path = state_dir / TOKEN_FILE
    if not token_path.exists():
        token = await server.admin.enrollment_token(ttl_s=24 * 3600, rooms=("*",))
        fd = os.open(token_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(token + "\n")
    return server


async def _main(state_dir: Path, port: int, host: str, max_room_size: int, **extra: Any) -> None:
    server = await start(state_dir, port, host, max_room_size=max_room_size, **extra)
    print(f"listening on {server.url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m appliance.demo.server")
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--host", default="127.0.0.1", help="127.0.0.1, or an address inside a test's namespace")
    parser.add_argument("--max-room-size", type=int, default=6)
    parser.add_argument("--turn-url", action="append", default=[], help="a TURN url handed out in welcome (repeatable)")
    parser.add_argument("--turn-secret", default="", help="coturn's static-auth-secret, for TURN REST credentials")
    args = parser.parse_args(argv)
    args.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    extra = {"ice": {"turn_urls": args.turn_url, "turn_secret": args.turn_secret}} if args.turn_url else {}
    asyncio.run(_main(args.state_dir, args.port, args.host, args.max_room_size, **extra))
    return 0


if __name__ == "__main__":
    sys.exit(main())
