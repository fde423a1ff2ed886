"""Cycles a closed connection leaves are collected shortly after the close, once per burst."""

from __future__ import annotations

import asyncio
import gc
import weakref

from appliance.mesh.garbage import Collector


class Node:
    def __init__(self):
        self.other = None


def cycle():
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


async def test_a_burst_of_closes_frees_their_cycles_with_one_collection():
    gc.disable()  # only the collector under test may collect here
    try:
        collector = Collector()
        left = [cycle() for _ in range(3)]
        for _ in left:
            collector.after_close(0.05)  # three links closed at once (a hang-up)
        await asyncio.sleep(0.02)
        assert all(ref() is not None for ref in left) and collector.collections == 0  # not yet: the burst goes on
        await asyncio.sleep(0.2)
        assert all(ref() is None for ref in left), "the closed links' cycles are still there"
        assert collector.collections == 1 and collector.last_ms is not None and collector.last_ms >= 0
    finally:
        gc.enable()


def test_outside_an_event_loop_it_does_nothing():
    collector = Collector()
    collector.after_close(0.0)
    assert collector.collections == 0
