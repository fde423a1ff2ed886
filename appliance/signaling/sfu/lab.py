"""A Janus of its own on one machine: in a network namespace, reached over a veth pair.

Janus never gathers ICE candidates on loopback, so on a single machine (tests, the
benchmark) it cannot share 127.0.0.1 with the units. :class:`JanusLab` makes a namespace
with one veth pair (the host end ``10.x.y.1``, the namespace end ``10.x.y.2``, a /30 of
their own), writes a Janus configuration with :mod:`~appliance.signaling.sfu.janusconf`
(ICE enforced to the namespace end, the HTTP API on its address), and runs ``janus`` inside
it as a child process. Units then gather on the host end's address (``[ice] addresses``),
and the signaling server reaches the API at :attr:`JanusLab.url`. Everything it made is
removed by :meth:`JanusLab.close`, also after a failed start. Needs root and iproute2.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Self

import aiohttp

from appliance.errors import WallmeshError
from appliance.signaling.sfu.janusconf import JanusSettings, ensure_secret, janus_lib_dir, write_config

log = logging.getLogger(__name__)


class LabUnavailable(WallmeshError, RuntimeError):
    """This machine cannot host the lab (not root, no iproute2, no Janus)."""


def _ip(*args: str) -> None:
    proc = subprocess.run(["ip", *args], check=False, capture_output=True, text=True)
    if proc.returncode != 0:
        raise LabUnavailable(f"ip {' '.join(args)}: {proc.stderr.strip()}")


class JanusLab:
    """A namespace, a veth pair and a Janus inside; see the module docstring."""

    def __init__(self, state_dir: Path | str, *, subnet: int | None = None) -> None:
        self.state_dir = Path(state_dir)
        tag = secrets.token_hex(3)
        self.netns = f"wm-sfu-{os.getpid()}-{tag}"
        self.host_if = f"wmsh{tag}"
        self.inner_if = f"wmsn{tag}"
        octet = subnet if subnet is not None else int(tag[:2], 16) * 4 % 256
        self.host_ip = f"10.214.{octet}.1"
        self.janus_ip = f"10.214.{octet}.2"
        self.port = 8088
        self.url = f"http://{self.janus_ip}:{self.port}/janus"
        self.secret_file = self.state_dir / "janus-api-secret"
        self.admin_key_file = self.state_dir / "janus-admin-key"
        self.proc: asyncio.subprocess.Process | None = None
        self.log_path = self.state_dir / f"janus-{self.inner_if}.log"
        self._made_ns = False
        self._made_link = False

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        if os.geteuid() != 0:
            raise LabUnavailable("a network namespace needs root")
        if shutil.which("ip") is None:
            raise LabUnavailable("the 'ip' command (iproute2) is missing")
        if shutil.which("janus") is None or janus_lib_dir() is None:
            raise LabUnavailable("Janus is not installed (scripts/setup installs the 'janus' package)")
        try:
            await asyncio.to_thread(self._make_network)
            await self.start_janus()
        except BaseException:
            await self.close()
            raise

    def _make_network(self) -> None:
        _ip("netns", "add", self.netns)
        self._made_ns = True
        _ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.inner_if)
        self._made_link = True
        _ip("link", "set", self.inner_if, "netns", self.netns)
        _ip("addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
        _ip("link", "set", self.host_if, "up")
        _ip("-n", self.netns, "addr", "add", f"{self.janus_ip}/30", "dev", self.inner_if)
        _ip("-n", self.netns, "link", "set", self.inner_if, "up")
        _ip("-n", self.netns, "link", "set", "lo", "up")

    async def start_janus(self, timeout_s: float = 15.0) -> None:
        """Start (or start again, after :meth:`kill_janus`) Janus and wait for its API."""
        conf = await asyncio.to_thread(self._write_config)
        logfile = await asyncio.to_thread(open, self.log_path, "ab")
        try:
            self.proc = await asyncio.create_subprocess_exec(
                "ip", "netns", "exec", self.netns, "janus", "-C", str(conf), "-F", str(conf.parent), "--disable-colors",
                stdin=subprocess.DEVNULL, stdout=logfile, stderr=subprocess.STDOUT,
            )
        finally:
            logfile.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        async with aiohttp.ClientSession() as http:
            while True:
                if self.proc.returncode is not None:
                    raise LabUnavailable(f"janus exited with {self.proc.returncode}; see {self.log_path}")
                try:
                    async with http.get(self.url + "/info", timeout=aiohttp.ClientTimeout(total=1)) as response:
                        if response.status == 200:
                            return
                except (aiohttp.ClientError, TimeoutError):
                    pass
                if loop.time() > deadline:
                    raise LabUnavailable(f"janus did not answer at {self.url} within {timeout_s:g} s")
                await asyncio.sleep(0.1)

    def _write_config(self) -> Path:
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        settings = JanusSettings(
            api_secret=ensure_secret(self.secret_file), admin_key=ensure_secret(self.admin_key_file),
            ice_interface=self.inner_if, http_ip=self.janus_ip, http_port=self.port,
        )
        return write_config(settings, self.state_dir / f"janus-conf-{self.inner_if}")

    async def kill_janus(self) -> None:
        """Kill Janus at once (a crash, as far as everyone else can tell)."""
        proc, self.proc = self.proc, None
        if proc is None or proc.returncode is not None:
            return
        proc.send_signal(signal.SIGKILL)
        await proc.wait()

    async def stop_janus(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.returncode is not None:
            return
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 5)
        except TimeoutError:
            proc.kill()
            await proc.wait()

    async def close(self) -> None:
        """Stop Janus and remove the namespace and the veth pair. Idempotent."""
        await self.stop_janus()
        await asyncio.to_thread(self._remove_network)

    def _remove_network(self) -> None:
        if self._made_link:
            self._made_link = False
            subprocess.run(["ip", "link", "del", self.host_if], check=False, capture_output=True)
        if self._made_ns:
            self._made_ns = False
            subprocess.run(["ip", "netns", "del", self.netns], check=False, capture_output=True)
