"""Wire protocol v1 codec: what is accepted, what is refused with which code, and round trips."""

from __future__ import annotations

import re

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance import protocol as p
from appliance.errors import ProtocolError


@pytest.mark.parametrize(
    "frame, expected",
    [
        ({"type": "hello", "token": "t"}, p.Hello("t")),
        ({"type": "hello", "token": "t", "name": "Room 4"}, p.Hello("t", "Room 4")),
        ({"type": "join", "room": "a"}, p.Join("a")),
        ({"type": "join", "room": "board-room-2"}, p.Join("board-room-2")),
        ({"type": "signal", "to": "x", "data": {"sdp": {"type": "offer", "sdp": "v=0"}}}, p.Signal("x", {"sdp": {"type": "offer", "sdp": "v=0"}})),
        ({"type": "signal", "to": "x", "data": {"candidate": {"candidate": "c", "sdpMid": "0"}}}, p.Signal("x", {"candidate": {"candidate": "c", "sdpMid": "0"}})),
        ({"type": "state", "muted": True, "camera": False}, p.State(True, False)),
        ({"type": "leave"}, p.Leave()),
        ({"type": "ping"}, p.Ping()),
        ({"type": "ping", "id": "abc"}, p.Ping("abc")),
        ({"type": "ping", "id": 3}, p.Ping(3)),
    ],
)
def test_valid_client_frames(frame, expected) -> None:
    assert p.parse_client(orjson.dumps(frame)) == expected
    assert p.parse_client(orjson.dumps(frame).decode()) == expected
    assert p.parse_client(p.encode_client(expected)) == expected


@pytest.mark.parametrize(
    "raw, code, ref",
    [
        (b"", "bad_message", None),
        (b"not json", "bad_message", None),
        (b"[1,2]", "bad_message", None),
        (b'{"no":"type"}', "bad_message", None),
        (b'{"type":5}', "bad_message", None),
        (b'{"type":"teleport"}', "unknown", "teleport"),
        (b'{"type":"hello"}', "bad_message", "hello"),
        (b'{"type":"hello","token":""}', "bad_message", "hello"),
        (b'{"type":"hello","token":"t","name":7}', "bad_message", "hello"),
        (b'{"type":"join","room":"Upper"}', "bad_message", "join"),
        (b'{"type":"join","room":"-lead"}', "bad_message", "join"),
        (b'{"type":"join","room":"a\\n"}', "bad_message", "join"),
        (b'{"type":"join","room":"' + b"a" * 64 + b'"}', "bad_message", "join"),
        (b'{"type":"signal","to":"x"}', "bad_message", "signal"),
        (b'{"type":"signal","to":"x","data":{}}', "bad_message", "signal"),
        (b'{"type":"signal","to":"x","data":{"sdp":"v=0"}}', "bad_message", "signal"),
        (b'{"type":"signal","to":"x","data":{"sdp":{"type":"bogus","sdp":""}}}', "bad_message", "signal"),
        (b'{"type":"signal","to":"x","data":{"candidate":"c"}}', "bad_message", "signal"),
        (b'{"type":"signal","to":3,"data":{"candidate":{}}}', "bad_message", "signal"),
        (b'{"type":"state","muted":1,"camera":false}', "bad_message", "state"),
        (b'{"type":"ping","id":true}', "bad_message", "ping"),
        (b'{"type":"ping","id":[1]}', "bad_message", "ping"),
    ],
)
def test_invalid_client_frames(raw, code, ref) -> None:
    with pytest.raises(ProtocolError) as info:
        p.parse_client(raw)
    assert info.value.code == ("bad_message" if code == "unknown" else code)
    assert info.value.ref == ref
    assert info.value.code in p.ERROR_CODES


def test_size_limit_counts_utf8_bytes() -> None:
    head = '{"type":"signal","to":"x","data":{"sdp":{"type":"offer","sdp":"'
    ok = head + "x" * (p.MAX_FRAME_BYTES - len(head) - 4) + '"}}}'
    assert len(ok) == p.MAX_FRAME_BYTES
    p.parse_client(ok)
    wide = head + "é" * (p.MAX_FRAME_BYTES // 2) + '"}}}'  # fewer characters than bytes: 2 bytes each
    with pytest.raises(ProtocolError) as info:
        p.parse_client(wide)
    assert info.value.code == "too_large"


# What the server wrote before its frames were typed: every key, value and key order must stay.
GOLDEN = [
    (p.welcome("a1", [{"urls": ["stun:s"]}], 6),
     b'{"type":"welcome","peer_id":"a1","ice_servers":[{"urls":["stun:s"]}],"limits":{"max_room_size":6,"max_frame_bytes":65536}}'),
    (p.joined("r", "a1", [p.roster_entry("b2", "B", "device", False, True)]),
     b'{"type":"joined","room":"r","peer_id":"a1","peers":[{"peer_id":"b2","name":"B","kind":"device","state":{"muted":false,"camera":true}}]}'),
    (p.relayed("b2", {"candidate": {"candidate": "c"}}), b'{"type":"signal","from":"b2","data":{"candidate":{"candidate":"c"}}}'),
    (p.peer_joined("b2", "B", "user"), b'{"type":"peer-joined","peer_id":"b2","name":"B","kind":"user"}'),
    (p.peer_left("b2", "timeout"), b'{"type":"peer-left","peer_id":"b2","reason":"timeout"}'),
    (p.peer_state("b2", True, False), b'{"type":"peer-state","peer_id":"b2","muted":true,"camera":false}'),
    (p.left("r"), b'{"type":"left","room":"r"}'),
    (p.pong(None), b'{"type":"pong","id":null}'),
    (p.pong("7"), b'{"type":"pong","id":"7"}'),
    (p.error("room_full", "full", "join"), b'{"type":"error","code":"room_full","message":"full","ref":"join"}'),
    (p.error("rate_limited", "slow down"), b'{"type":"error","code":"rate_limited","message":"slow down"}'),
    (p.room_mode("r", "sfu", 2), b'{"type":"room-mode","room":"r","mode":"sfu","epoch":2}'),
]

# ``account`` (who the server knows a participant to be) was added to v1 later: it goes after
# every key an older client reads, and a frame without it is still a valid frame.
WITH_ACCOUNT = [
    (p.joined("r", "a1", [p.roster_entry("b2", "B", "device", False, True, "unit-7f3a")]),
     b'{"type":"joined","room":"r","peer_id":"a1","peers":[{"peer_id":"b2","name":"B","kind":"device","state":{"muted":false,"camera":true},"account":"unit-7f3a"}]}'),
    (p.peer_joined("b2", "alice", "user", "bob"), b'{"type":"peer-joined","peer_id":"b2","name":"alice","kind":"user","account":"bob"}'),
]


@pytest.mark.parametrize("msg, wire", WITH_ACCOUNT, ids=[w[:30].decode() for _, w in WITH_ACCOUNT])
def test_the_account_is_an_addition_to_the_old_wire_form(msg, wire) -> None:
    assert p.encode_server(msg) == wire
    assert p.parse_server(wire) == msg
    # the same frame from a server that does not send it: every other byte as before
    without = orjson.dumps(_drop_account(orjson.loads(wire)))
    assert without == re.sub(rb',"account":"[^"]*"', b"", wire)
    assert p.parse_server(without) == _drop_account(msg)


def test_the_room_mode_in_joined_is_an_addition_to_the_old_wire_form() -> None:
    """A server with an SFU says the room's mode after every key an older client reads."""
    old = p.joined("r", "a1", [])
    new = p.joined("r", "a1", [], "sfu", 3)
    assert p.encode_server(new) == p.encode_server(old)[:-1] + b',"mode":"sfu","epoch":3}'
    assert p.parse_server(p.encode_server(new)) == new
    with pytest.raises(ValueError):
        p.room_mode("r", "star", 1)
    with pytest.raises(ProtocolError):
        p.parse_server(b'{"type":"room-mode","room":"r","mode":"sfu","epoch":"1"}')


def _drop_account(obj):
    if isinstance(obj, dict):
        return {k: _drop_account(v) for k, v in obj.items() if k != "account"}
    if isinstance(obj, list):
        return [_drop_account(v) for v in obj]
    return obj


def test_an_account_of_the_wrong_type_is_refused() -> None:
    with pytest.raises(ProtocolError):
        p.parse_server(b'{"type":"peer-joined","peer_id":"b2","name":"alice","kind":"user","account":7}')


@pytest.mark.parametrize(
    "raw, clean",
    [
        ("alice", "alice"),
        ("\u202eecila", "ecila"),  # right-to-left override: would show as "alice"
        ("al\u200bice", "alice"),  # zero-width space
        ("\u2066bob\u2069 \u2067x\u2068", "bob x"),  # bidi isolates
        ("\ufeffRoom 4", "Room 4"),
        ("  Room\t\t4\n", "Room 4"),
        ("Room\u00a0\u2003 4\u2028five\x00\x1b[31m", "Room 4 five [31m"),
        ("e\u0301", "\u00e9"),  # NFC
        ("o" + "\u0335" * 40 + "k", "o\u0335\u0335\u0335k"),  # "zalgo" stacks are cut
        ("\u0301alice", "alice"),  # a mark on nothing
        ("\u200b\u202e\u200d", ""),
        ("Zoë's café 会议室", "Zoë's café 会议室"),
    ],
)
def test_names_are_cleaned(raw, clean) -> None:
    assert p.clean_name(raw) == clean
    assert p.clean_name(clean) == clean, "cleaning is idempotent"


@settings(max_examples=300)
@given(st.text(max_size=p.MAX_NAME_CHARS * 2))
def test_a_clean_name_is_one_trimmed_line_without_format_characters(raw) -> None:
    import unicodedata

    clean = p.clean_name(raw)
    assert len(clean) <= p.MAX_NAME_CHARS
    assert clean == clean.strip() and "  " not in clean
    assert not any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp") for c in clean)
    assert p.clean_name(clean) == clean


def test_hello_names_arrive_clean() -> None:
    assert p.parse_client('{"type":"hello","token":"t","name":"\u202eecila "}') == p.Hello("t", "ecila")
    assert p.parse_client('{"type":"hello","token":"t","name":"\u200b\u200b"}') == p.Hello("t", None)


@pytest.mark.parametrize("msg, wire", GOLDEN, ids=[w[:30].decode() for _, w in GOLDEN])
def test_server_frames_keep_their_wire_form(msg, wire) -> None:
    assert p.encode_server(msg) == wire
    assert p.parse_server(wire) == msg


def test_every_server_message_type_is_built_and_parsed() -> None:
    assert sorted({msg["type"] for msg, _ in GOLDEN}) == sorted(p.SERVER_TYPES)
    assert set(p.SERVER_TYPES) == {"welcome", "joined", "signal", "peer-joined", "peer-left", "peer-state", "left", "pong", "error", "room-mode"}
    with pytest.raises(ValueError):
        p.error("made_up", "x")


@pytest.mark.parametrize(
    "raw",
    [
        b'{"type":"peer-left","peer_id":1,"reason":"x"}',
        b'{"type":"peer-left","reason":"x"}',
        b'{"type":"welcome","peer_id":"a","ice_servers":{},"limits":{}}',
        b'{"type":"peer-state","peer_id":"a","muted":0,"camera":true}',
        b'{"type":"signal","from":"a","data":"x"}',
        b'{"type":"error","code":"room_full","message":"full","ref":3}',
        b'{"type":"pong","id":[1]}',
        b'{"type":"hello","token":"t"}',
    ],
)
def test_malformed_server_frames_are_refused(raw) -> None:
    with pytest.raises(ProtocolError) as info:
        p.parse_server(raw)
    assert info.value.code == "bad_message"


def test_optional_server_fields_may_be_absent() -> None:
    assert p.parse_server(b'{"type":"error","code":"forbidden","message":"no"}') == p.error("forbidden", "no")
    assert p.parse_server(b'{"type":"pong"}') == {"type": "pong"}


@settings(max_examples=500)
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_parse_never_raises_anything_else(raw) -> None:
    try:
        p.parse_client(raw)
    except ProtocolError as exc:
        assert exc.code in p.ERROR_CODES


@given(st.from_regex(p.ROOM_PATTERN, fullmatch=True))
def test_room_names_from_the_pattern_are_valid(room) -> None:
    assert p.valid_room(room) == (not room.endswith("\n"))


@pytest.mark.parametrize("parse", [p.parse_client, p.parse_server])
@pytest.mark.parametrize("raw", ["\ud800", '{"type":"ping","id":"\udfff"}', '{"type":"hello","token":"a\ud83d"}'])
def test_text_frames_without_a_utf8_form_are_bad_messages(parse, raw) -> None:
    with pytest.raises(ProtocolError) as info:
        parse(raw)
    assert info.value.code == "bad_message"


@settings(max_examples=300)
@given(st.text(max_size=80), st.sampled_from(["\ud800", "\udbff", "\udc00", ""]), st.text(max_size=80))
def test_text_frames_never_raise_anything_else(head, surrogate, tail) -> None:
    for parse in (p.parse_client, p.parse_server):
        try:
            parse(head + surrogate + tail)
        except ProtocolError as exc:
            assert exc.code in p.ERROR_CODES


def test_the_room_rule_is_the_one_in_the_design() -> None:
    assert p.ROOM_PATTERN == r"^[a-z0-9][a-z0-9-]{0,62}$"
    assert p.valid_room("a" * p.MAX_ROOM_CHARS) and not p.valid_room("a" * (p.MAX_ROOM_CHARS + 1))
    assert p.CLOSE_CODES == {"unauthorized": 4401, "rate_limited": 4429, "bad_messages": 4400}
