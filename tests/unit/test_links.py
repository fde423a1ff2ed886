"""The link watch reads the kernel's operstate files; here a directory laid out like
``/sys/class/net`` stands in for sysfs (the file format is the kernel's: one word)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from appliance.unit.links import LinkWatch, link_states


def set_state(root: Path, name: str, state: str) -> None:
    (root / name).mkdir(parents=True, exist_ok=True)
    (root / name / "operstate").write_text(state + "\n")


def test_states_are_read_for_the_named_links_or_all_but_loopback(tmp_path: Path):
    set_state(tmp_path, "lo", "unknown")
    set_state(tmp_path, "eth0", "up")
    set_state(tmp_path, "wlan0", "lowerlayerdown")
    assert link_states((), tmp_path) == {"eth0": True, "wlan0": False}
    assert link_states(("wlan0", "usb9"), tmp_path) == {"wlan0": False}  # an absent name is not an error
    assert link_states((), tmp_path / "missing") == {}


def test_a_link_coming_up_is_called_back_once_and_a_link_that_stays_up_is_not(tmp_path: Path):
    set_state(tmp_path, "eth0", "up")
    set_state(tmp_path, "eth1", "down")
    ups: list[str] = []
    watch = LinkWatch((), ups.append, root=tmp_path)
    states = watch.check(link_states((), tmp_path))
    assert ups == []
    set_state(tmp_path, "eth0", "lowerlayerdown")  # the cable is pulled
    states = watch.check(states)
    assert ups == []
    set_state(tmp_path, "eth0", "up")  # ... and plugged back in
    set_state(tmp_path, "eth2", "up")  # a new interface that appears up counts as well
    states = watch.check(states)
    assert sorted(ups) == ["eth0", "eth2"] and watch.ups == 2
    watch.check(states)
    assert len(ups) == 2


async def test_the_watch_runs_on_the_loop_and_closes(tmp_path: Path):
    set_state(tmp_path, "eth0", "down")
    came_up = asyncio.Event()
    watch = LinkWatch(("eth0",), lambda _name: came_up.set(), period=0.01, root=tmp_path)
    watch.start()
    await asyncio.sleep(0.05)
    set_state(tmp_path, "eth0", "up")
    await asyncio.wait_for(came_up.wait(), 5)
    await watch.close()
    await watch.close()  # idempotent
