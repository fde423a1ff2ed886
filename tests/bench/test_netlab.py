"""The network lab's faults do what they say, measured with real UDP between its hosts.

Sockets are made inside the hosts' namespaces from this process (one thread enters the
namespace to make each), so no helper processes are needed; every lab is deleted at the
end of its test, failed or not.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time

import pytest

from appliance.bench.netlab import Host, Lab, missing

pytestmark = pytest.mark.skipif(missing() is not None, reason=f"no network lab here: {missing()}")


@pytest.fixture
def lab():
    lab = Lab.create()
    try:
        yield lab
    finally:
        lab.close()
    assert not [n for n in lab_namespaces() if n.startswith(lab.tag)], "the lab's namespaces were left behind"


def lab_namespaces() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def receiver(host: Host | Lab, address: str) -> socket.socket:
    sock = host.socket(socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
    sock.bind((address, 0))
    sock.settimeout(0.3)
    return sock


def send_count(sender: Host, to: socket.socket, count: int = 1000, size: int = 200) -> int:
    """Send ``count`` datagrams (paced, so no socket buffer overflows) and count the arrivals."""
    out = sender.socket(socket.SOCK_DGRAM)
    dest = to.getsockname()
    got = 0
    try:
        for i in range(count):
            with contextlib.suppress(OSError):  # no route while a port is down: lost, as on a cut cable
                out.sendto(b"x" * size, dest)
            if i % 50 == 49:
                time.sleep(0.002)
        while True:
            try:
                to.recv(65536)
                got += 1
            except TimeoutError:
                return got
    finally:
        out.close()


def test_random_drop_on_one_link_loses_that_share_each_way(lab: Lab):
    a, b = lab.add_host("a"), lab.add_host("b")
    rx_b, rx_a = receiver(b, b.address), receiver(a, a.address)
    assert send_count(a, rx_b) >= 980  # a clean link first
    a.set_loss(30)
    out, back = send_count(a, rx_b), send_count(b, rx_a)
    assert 550 <= out <= 850 and 550 <= back <= 850, (out, back)
    assert send_count(b, receiver(b, "127.0.0.1")) >= 980  # the host itself is untouched
    a.set_loss(0)
    assert send_count(a, rx_b) >= 980
    with pytest.raises(ValueError):
        a.set_loss(101)


def test_blocked_udp_between_hosts_leaves_the_switch_reachable(lab: Lab):
    a, b = lab.add_host("a"), lab.add_host("b")
    a.block_udp_with([b])
    assert send_count(a, receiver(b, b.address), 200) == 0
    assert send_count(b, receiver(a, a.address), 200) == 0
    assert send_count(a, receiver(lab, lab.address), 200) >= 198  # where the server and TURN listen


def test_a_port_down_cuts_the_host_off_and_up_brings_it_back(lab: Lab):
    a = lab.add_host("a")
    rx = receiver(lab, lab.address)
    a.set_link(False)
    assert send_count(a, rx, 200) == 0
    state = subprocess.run([*a.exec_prefix(), "cat", "/sys/class/net/eth0/operstate"], check=False, capture_output=True, text=True).stdout
    assert state.strip() != "up"  # the host sees its carrier go, as with a pulled cable
    a.set_link(True)
    deadline = time.monotonic() + 5
    while send_count(a, rx, 50) < 50:
        assert time.monotonic() < deadline, "the link did not come back"


def test_a_rate_limit_caps_what_a_host_sends(lab: Lab):
    a = lab.add_host("a")
    rx = receiver(lab, lab.address)
    a.set_rate(1000)  # kbit/s
    rx.setblocking(False)
    out = a.socket(socket.SOCK_DGRAM)
    dest, sent, received = rx.getsockname(), 0, 0
    start = time.monotonic()
    while time.monotonic() - start < 2.0:  # about 5 Mbit/s offered
        with contextlib.suppress(OSError):  # the bucket's queue is full: dropped, as the limit means
            out.sendto(b"y" * 1200, dest)
        sent += 1200
        if sent % (1200 * 25) == 0:
            time.sleep(0.05)
        try:
            while True:
                received += len(rx.recv(65536))
        except (BlockingIOError, TimeoutError):
            pass
    out.close()
    kbit = received * 8 / 1000 / (time.monotonic() - start)
    assert sent * 8 / 1000 / 2.0 > 3000 and 400 < kbit < 1500, (sent, kbit)
    a.set_rate(None)


def test_a_new_lab_removes_the_namespaces_a_killed_run_left_and_no_others():
    proc = subprocess.Popen(["true"])  # a pid that has ended
    proc.wait()
    orphan = f"wmlab{proc.pid}x0000-hub"
    subprocess.run(["ip", "netns", "add", orphan], check=True)
    try:
        with Lab.create() as lab:  # our own lab (a live pid) is left alone while it runs
            assert orphan not in lab_namespaces()
            assert Lab.sweep() == [] and lab.hub in lab_namespaces()
    finally:
        subprocess.run(["ip", "netns", "del", orphan], check=False, capture_output=True)
