"""``wallmesh signal``: run the site's signaling server until SIGINT/SIGTERM.

Prints ``listening on <url>`` (and ``fingerprint <sha256>`` when serving HTTPS) to stdout,
flushed, so scripts and tests can start it as a subprocess with ``--port 0``.
"""

from __future__ import annotations

import argparse

from appliance.signaling.cliargs import add_store_arguments, overrides


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_store_arguments(parser)
    parser.add_argument("--host", help="address to bind (a loopback address may serve plain HTTP)")
    parser.add_argument("--port", type=int, help="TCP port; 0 picks a free one")
    parser.add_argument("--rotate-key", action="store_true", help="make a new token-signing key current and exit")


def run(args: argparse.Namespace) -> int:
    import asyncio
    import faulthandler
    import signal

    from appliance.signaling.offline import load_config, state_dir_of
    from appliance.signaling.server import SignalServer, tune_gc

    config = load_config(args.config, {**overrides(args), "host": args.host, "port": args.port})
    from appliance.signaling.offline import DEFAULT_CONFIG
    from appliance.signaling.sfu.broker import check_config

    check_config(config, args.config or (str(DEFAULT_CONFIG) if DEFAULT_CONFIG.exists() else None))  # [sfu] keys that cannot work together
    state_dir = state_dir_of(config, args.state_dir)
    if args.rotate_key:
        from appliance.signaling.auth import KeyRing

        t = config.tokens
        kid = KeyRing(state_dir, max_token_ttl_s=max(t.user_ttl_s, t.device_ttl_s, t.enrollment_ttl_s)).rotate()
        print(f"signing key {kid} is current; the previous key is accepted until its tokens expire")
        return 0

    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1` dumps every stack to stderr

    async def serve() -> None:
        server = SignalServer(config, state_dir=state_dir)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await server.start()
        try:
            tune_gc()
            print(f"listening on {server.url}", flush=True)
            if server.fingerprint:
                print(f"fingerprint {server.fingerprint}", flush=True)
            await stop.wait()
        finally:
            await server.stop()

    asyncio.run(serve())
    return 0
