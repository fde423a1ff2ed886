"""The media workers' records and picture memory, on their own (no worker process)."""

from __future__ import annotations

import asyncio
import socket

import av
import numpy as np
import pytest

from appliance.capture.pattern import Stamp
from appliance.mesh.workers import frames, wire, worker_count


class Collect:
    def __init__(self):
        self.records: list[tuple[int, bytes]] = []
        self.lost = 0

    def on_record(self, kind, body):
        if kind == 99:
            raise RuntimeError("a handler that fails")
        self.records.append((kind, bytes(body)))

    def on_lost(self):
        self.lost += 1


def test_records_split_anywhere_across_reads_come_out_whole_and_in_order():
    stream = b"".join([
        wire.ctl("hello", pid=7), wire.video(90_000, True, b"\x00\x00\x00\x01" + bytes(5000)),
        wire.audio(960, b"opus"), wire.audio_in(3, b"payload"), wire.frame(3, 4, 11, 640, 480, Stamp(5, 6, 1.5)),
    ])
    for chunk in (1, 7, 4096, len(stream)):
        got = Collect()
        proto = wire.RecordProtocol(got.on_record, got.on_lost)
        for i in range(0, len(stream), chunk):
            proto.data_received(stream[i : i + chunk])
        kinds = [k for k, _ in got.records]
        assert kinds == [wire.CTL, wire.VIDEO, wire.AUDIO, wire.AUDIO_IN, wire.FRAME]
        assert wire.load_ctl(got.records[0][1]) == {"op": "hello", "pid": 7}
        pts, key = wire.VIDEO_HEAD.unpack_from(got.records[1][1])
        assert (pts, key, len(got.records[1][1]) - wire.VIDEO_HEAD.size) == (90_000, 1, 5004)
        assert wire.FRAME_REC.unpack_from(got.records[4][1]) == (3, 4, 11, 640, 480, 1, 5, 6, 1.5)
        assert got.lost == 0


def test_a_failing_record_is_logged_and_the_link_goes_on(caplog):
    got = Collect()
    proto = wire.RecordProtocol(got.on_record, got.on_lost)
    proto.data_received(wire.record(99, b"x") + wire.audio(1, b"a"))
    assert [k for k, _ in got.records] == [wire.AUDIO] and got.lost == 0
    assert "a record of kind 99 failed" in caplog.text


async def test_a_corrupt_length_closes_the_link_once():
    a, b = socket.socketpair()
    got = Collect()
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_unix_connection(lambda: wire.RecordProtocol(got.on_record, got.on_lost), sock=a)
    b.sendall(wire.HEADER.pack(wire.VIDEO, wire.MAX_RECORD + 1) + b"junk")
    for _ in range(50):
        if got.lost:
            break
        await asyncio.sleep(0.02)
    assert got.lost == 1 and transport.is_closing() and got.records == []
    assert not proto.send(wire.ctl("late"))  # nothing is written to a closed link
    b.close()


def test_a_control_record_without_an_op_is_refused():
    import pickle

    with pytest.raises(TypeError):
        wire.load_ctl(pickle.dumps(["not", "a", "dict"]))


def picture(width, height, seed=0):
    rng = np.random.default_rng(seed)
    return av.VideoFrame.from_ndarray(rng.integers(0, 255, (height * 3 // 2, width), dtype=np.uint8), format="yuv420p")


@pytest.mark.parametrize("size", [(640, 480), (1280, 720), (322, 242)])
def test_a_picture_crosses_the_shared_memory_unchanged(size):
    fd = frames.make_region()
    writer, reader = frames.PictureWriter(fd), frames.PictureReader(fd)
    try:
        width, height = size
        sent = picture(width, height)
        slot, seq = writer.write(2, sent)
        got = reader.read(slot, seq, width, height)
        assert got is not None and (got.width, got.height) == size
        for a, b in zip(sent.planes, got.planes, strict=True):
            pw, ph = a.width, a.height
            assert np.array_equal(np.frombuffer(memoryview(a), np.uint8).reshape(-1, a.line_size)[:ph, :pw],
                                  np.frombuffer(memoryview(b), np.uint8).reshape(-1, b.line_size)[:ph, :pw])
    finally:
        writer.close()
        reader.close()
        import os

        os.close(fd)


def test_a_picture_overwritten_before_it_is_read_is_dropped_not_shown_torn():
    fd = frames.make_region()
    writer, reader = frames.PictureWriter(fd), frames.PictureReader(fd)
    first = writer.write(0, picture(320, 240, 1))
    for seed in range(frames.SLOTS):  # the ring comes round to the first slot again
        writer.write(0, picture(320, 240, 2 + seed))
    assert reader.read(first[0], first[1], 320, 240) is None and reader.torn == 1
    newest = writer.write(0, picture(320, 240, 9))
    assert reader.read(newest[0], newest[1], 320, 240) is not None
    assert writer.write(0, picture(1920, 1200)) is None and writer.oversize == 1  # bigger than a slot
    assert reader.read(10_000, 1, 320, 240) is None  # a slot that does not exist
    writer.close()
    reader.close()


def test_rings_of_different_peers_do_not_share_slots():
    fd = frames.make_region()
    writer = frames.PictureWriter(fd)
    slots = {ring: {writer.write(ring, picture(160, 120))[0] for _ in range(frames.SLOTS)} for ring in range(frames.RINGS)}
    everything = [s for ring in slots.values() for s in ring]
    assert len(everything) == len(set(everything)) == frames.RINGS * frames.SLOTS
    writer.close()


def test_worker_count_defaults_to_cores_but_one_and_stays_within_a_room():
    assert worker_count(0, cpus=4) == 3  # a Pi 4
    assert worker_count(0, cpus=2) == 1  # this kind of machine: the unit's own process
    assert worker_count(0, cpus=1) == 1
    assert worker_count(0, cpus=16) == 5  # never more than a room has remote peers
    assert worker_count(2, cpus=16) == 2
    assert worker_count(9, cpus=2) == 5


def test_a_picture_left_in_shared_memory_is_copied_out_only_when_drawn():
    from appliance.mesh.receive import VideoReceiver

    rx = VideoReceiver(None, label="t")
    first = picture(160, 120, 1)
    rx.accept(first)
    loads: list[int] = []

    def load(result):
        def go():
            loads.append(1)
            return result
        return go

    second = picture(160, 120, 2)
    rx.take(None, Stamp(1, 2, 0.0), 160, 120, load(second))
    assert loads == [] and rx.frames == 2 and rx.latest.stamp == Stamp(1, 2, 0.0)  # counted, not copied yet
    assert rx.latest.frame is second and rx.latest.frame is second and loads == [1]  # copied once, when read
    rx.take(None, None, 160, 120, load(None))  # overwritten before it was drawn
    assert rx.latest.frame is second  # the previous picture stands in
