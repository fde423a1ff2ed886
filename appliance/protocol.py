"""Wire protocol v1 of the signaling WebSocket: parse, validate and serialize, nothing else.

Both ends use this module. Client -> server frames are frozen dataclasses: the server parses
them with :func:`parse_client`, a unit builds them and writes them with :func:`encode_client`.
Server -> client frames are TypedDicts built by :func:`welcome`, :func:`joined`, … and
written by :func:`encode_server`; a unit reads them with :func:`parse_server`. It is pure:
no I/O, no logging, no clock, so it can be fuzzed and imported anywhere.

Every frame is one JSON object with a string ``type``, at most :data:`MAX_FRAME_BYTES`
bytes. Anything else raises :class:`~appliance.errors.ProtocolError` whose ``code`` is one
of :data:`ERROR_CODES` and whose ``ref`` is the offending ``type`` when one was readable.

The constants here (room names, limits, close codes) are the only copy: the browser client
gets them from ``welcome`` or from the ``protocol.js`` module the server renders from them.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from types import UnionType
from typing import Any, Literal, NotRequired, TypedDict, Union, get_args, get_origin, get_type_hints, is_typeddict

import orjson

from appliance.errors import ProtocolError

VERSION = 1
MAX_FRAME_BYTES = 64 * 1024
MAX_ROOM_CHARS = 63
ROOM_PATTERN = rf"^[a-z0-9][a-z0-9-]{{0,{MAX_ROOM_CHARS - 1}}}$"
_ROOM_RE = re.compile(ROOM_PATTERN)
MAX_NAME_CHARS = 64
# Combining marks a name may stack on one character: enough for every script, too few to
# paint a tile with "zalgo" text that spills over its neighbours.
MAX_NAME_MARKS = 3
MAX_PEER_ID_CHARS = 64
MAX_TOKEN_CHARS = 8192
# The ``data`` of a ``signal`` is relayed as it came, so its shape is bounded: SDP and ICE
# candidates nest two levels deep. A deeper value could not even be written back out (the
# JSON encoder stops at a few hundred levels), and a wide one costs time to walk.
MAX_DATA_DEPTH = 32
MAX_DATA_CONTAINERS = 1024

ERROR_CODES = (
    "bad_message",
    "unauthorized",
    "forbidden",
    "room_full",
    "unknown_peer",
    "not_in_room",
    "rate_limited",
    "too_large",
)

# WebSocket close codes the server sends (4000-4999 is the application range). Only
# CLOSE_UNAUTHORIZED means "this token will not do": a client stops retrying with it. A room
# the token does not grant is not a close but an ``error`` ``forbidden``: the connection
# stays usable for another room, so there is no 4403.
CLOSE_UNAUTHORIZED = 4401  # no hello in time, bad token, or revoked identity
CLOSE_RATE_LIMITED = 4429  # sustained flooding
CLOSE_BAD_MESSAGES = 4400  # sustained malformed input
#: The peer id of the site's conference server (SFU) in a room that uses one: a client sends its
#: ``signal``\ s for the SFU ``to`` it and gets the SFU's ``from`` it. Server-issued peer ids are
#: 16 hex digits, so it never names a participant.
SFU_PEER_ID = "sfu"
#: How a room's media flows: directly between participants, or through the site's SFU.
ROOM_MODES = ("mesh", "sfu")

CLOSE_CODES = {"unauthorized": CLOSE_UNAUTHORIZED, "rate_limited": CLOSE_RATE_LIMITED, "bad_messages": CLOSE_BAD_MESSAGES}


# --- client -> server --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hello:
    token: str
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Join:
    room: str


@dataclass(frozen=True, slots=True)
class Signal:
    to: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class State:
    muted: bool
    camera: bool


@dataclass(frozen=True, slots=True)
class Leave:
    pass


@dataclass(frozen=True, slots=True)
class Ping:
    id: str | int | None = None


ClientMessage = Hello | Join | Signal | State | Leave | Ping


def valid_room(name: object) -> bool:
    """True when ``name`` is a string allowed as a room name."""
    return isinstance(name, str) and _ROOM_RE.match(name) is not None and not name.endswith("\n")


def clean_name(text: str) -> str:
    """A display name as people see it on a wall or a browser tile: one line, no tricks.

    Format characters (Unicode category Cf: the bidi overrides and isolates U+202A-U+202E and
    U+2066-U+2069 that make "ecila" read "alice", zero-width spaces and joiners, the BOM) are
    removed; control characters and every kind of space or line break become one space, runs
    of them collapse and the ends are trimmed; more than :data:`MAX_NAME_MARKS` combining marks
    on one character are dropped; the result is NFC and at most :data:`MAX_NAME_CHARS`
    characters. Both ends use it: the server on what a client calls itself, a unit on every
    name it shows (an older server passed names on as they came).
    """
    out: list[str] = []
    marks = 0
    for char in unicodedata.normalize("NFC", text):
        category = unicodedata.category(char)
        if category in ("Cf", "Cs"):
            continue
        if category == "Cc" or category[0] == "Z" or char.isspace():
            if out and out[-1] != " ":
                out.append(" ")
            marks = 0
            continue
        if category in ("Mn", "Me"):
            marks += 1
            if marks > MAX_NAME_MARKS or not out or out[-1] == " ":
                continue  # a mark on nothing, or one too many
        else:
            marks = 0
        out.append(char)
    return "".join(out).strip()[:MAX_NAME_CHARS].rstrip()


def load_frame(frame: bytes | str) -> dict[str, Any]:
    """Decode one frame into a JSON object that has a string ``type``; size checked first."""
    if isinstance(frame, str):
        try:
            frame = frame.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: no UTF-8 form, so no valid JSON text either
            raise ProtocolError("bad_message", "frame is not valid UTF-8") from None
    size = len(frame)
    if size > MAX_FRAME_BYTES:
        raise ProtocolError("too_large", f"frame of {size} bytes exceeds {MAX_FRAME_BYTES}")
    try:
        obj = orjson.loads(frame)
    except orjson.JSONDecodeError:
        raise ProtocolError("bad_message", "frame is not valid JSON") from None
    if not isinstance(obj, dict):
        raise ProtocolError("bad_message", "frame must be a JSON object")
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("bad_message", "frame needs a string 'type'")
    return obj


def parse_client(frame: bytes | str) -> ClientMessage:
    """Parse and validate one client->server frame."""
    obj = load_frame(frame)
    kind = obj["type"]
    parser = _CLIENT_PARSERS.get(kind)
    if parser is None:
        raise ProtocolError("bad_message", "unknown message type", _ref(kind))
    return parser(obj)


def _ref(kind: str) -> str:
    return kind if len(kind) <= 32 else kind[:32]


def _bad(kind: str, message: str) -> ProtocolError:
    return ProtocolError("bad_message", message, kind)


def _string(obj: dict[str, Any], key: str, kind: str, limit: int, *, optional: bool = False) -> str | None:
    value = obj.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        raise _bad(kind, f"'{key}' must be a non-empty string")
    if len(value) > limit:
        raise _bad(kind, f"'{key}' is longer than {limit} characters")
    return value


def _parse_hello(obj: dict[str, Any]) -> Hello:
    token = _string(obj, "token", "hello", MAX_TOKEN_CHARS)
    name = _string(obj, "name", "hello", MAX_NAME_CHARS, optional=True)
    if name is not None:
        name = clean_name(name) or None  # nothing left once cleaned is no name: the server uses the token's
    return Hello(token=token, name=name)  # type: ignore[arg-type]


def _parse_join(obj: dict[str, Any]) -> Join:
    room = obj.get("room")
    if not valid_room(room):
        raise _bad("join", "'room' must match " + ROOM_PATTERN)
    return Join(room=room)  # type: ignore[arg-type]


def _parse_signal(obj: dict[str, Any]) -> Signal:
    to = _string(obj, "to", "signal", MAX_PEER_ID_CHARS)
    data = obj.get("data")
    if not isinstance(data, dict):
        raise _bad("signal", "'data' must be an object")
    if not _bounded(data):
        raise _bad("signal", f"'data' nests deeper than {MAX_DATA_DEPTH} levels or holds more than {MAX_DATA_CONTAINERS} objects and arrays")
    if "sdp" in data:
        sdp = data["sdp"]
        if (
            not isinstance(sdp, dict)
            or not isinstance(sdp.get("type"), str)
            or sdp["type"] not in ("offer", "answer", "pranswer", "rollback")
            or not isinstance(sdp.get("sdp", ""), str)
        ):
            raise _bad("signal", "'data.sdp' must be {type: offer|answer|pranswer|rollback, sdp: string}")
    elif "candidate" in data:
        if not isinstance(data["candidate"], dict):
            raise _bad("signal", "'data.candidate' must be an object")
    else:
        raise _bad("signal", "'data' must hold 'sdp' or 'candidate'")
    return Signal(to=to, data=data)  # type: ignore[arg-type]


def _bounded(value: dict[str, Any]) -> bool:
    """True when ``value`` nests at most MAX_DATA_DEPTH levels (itself the first) and holds
    at most MAX_DATA_CONTAINERS objects and arrays; walked a level at a time, never recursively."""
    level: list[Any] = [value]
    seen = 1
    for _ in range(MAX_DATA_DEPTH):
        deeper: list[Any] = []
        for item in level:
            deeper += [v for v in (item.values() if type(item) is dict else item) if type(v) is dict or type(v) is list]
        if not deeper:
            return True
        seen += len(deeper)
        if seen > MAX_DATA_CONTAINERS:
            return False
        level = deeper
    return False


def _parse_state(obj: dict[str, Any]) -> State:
    muted, camera = obj.get("muted"), obj.get("camera")
    if not isinstance(muted, bool) or not isinstance(camera, bool):
        raise _bad("state", "'muted' and 'camera' must be booleans")
    return State(muted=muted, camera=camera)


def _parse_leave(obj: dict[str, Any]) -> Leave:
    return Leave()


def _parse_ping(obj: dict[str, Any]) -> Ping:
    ident = obj.get("id")
    if ident is not None and (isinstance(ident, bool) or not isinstance(ident, (str, int))):
        raise _bad("ping", "'id' must be a string or an integer")
    if isinstance(ident, str) and len(ident) > 128:
        raise _bad("ping", "'id' is longer than 128 characters")
    if isinstance(ident, int) and not -(2**53) <= ident <= 2**53:
        raise _bad("ping", "'id' is out of range")
    return Ping(id=ident)


_CLIENT_PARSERS: dict[str, Callable[[dict[str, Any]], ClientMessage]] = {
    "hello": _parse_hello,
    "join": _parse_join,
    "signal": _parse_signal,
    "state": _parse_state,
    "leave": _parse_leave,
    "ping": _parse_ping,
}


def encode_client(msg: ClientMessage) -> bytes:
    """Serialize a client->server message (what a unit or test client sends)."""
    if isinstance(msg, Hello):
        obj: dict[str, Any] = {"type": "hello", "token": msg.token}
        if msg.name is not None:
            obj["name"] = msg.name
    elif isinstance(msg, Join):
        obj = {"type": "join", "room": msg.room}
    elif isinstance(msg, Signal):
        obj = {"type": "signal", "to": msg.to, "data": msg.data}
    elif isinstance(msg, State):
        obj = {"type": "state", "muted": msg.muted, "camera": msg.camera}
    elif isinstance(msg, Leave):
        obj = {"type": "leave"}
    elif isinstance(msg, Ping):
        obj = {"type": "ping"} if msg.id is None else {"type": "ping", "id": msg.id}
    else:
        raise TypeError(f"not a client message: {msg!r}")
    return orjson.dumps(obj)


# --- server -> client --------------------------------------------------------
#
# Server frames are TypedDicts: the dict *is* the JSON object on the wire, so what the
# server builds, what orjson writes and what a client reads are one thing, and the unit's
# mesh and the browser go on reading them as plain objects. Build them with the functions
# below (they fix the ``type`` and the key order, which keeps the bytes stable), write them
# with :func:`encode_server`, read them with :func:`parse_server`.


class PeerStatus(TypedDict):
    muted: bool
    camera: bool


class RosterEntry(TypedDict):
    """One participant already in the room, as carried in ``joined``.

    ``name`` is what the participant calls itself (cleaned by :func:`clean_name`); ``account``
    is who the server knows it to be — the token's subject: a user's account name or a
    device's id — so that nobody can pass for someone else by name. ``account`` was added to
    protocol v1 after its first servers: a client must accept entries without it.
    """

    peer_id: str
    name: str
    kind: str
    state: PeerStatus
    account: NotRequired[str]


class Limits(TypedDict):
    max_room_size: int
    max_frame_bytes: int


class Welcome(TypedDict):
    type: Literal["welcome"]
    peer_id: str
    ice_servers: list[dict[str, Any]]
    limits: Limits


class Joined(TypedDict):
    """``mode`` (one of :data:`ROOM_MODES`) was added to protocol v1 with the SFU: a client
    must accept ``joined`` without it (a room is then a mesh)."""

    type: Literal["joined"]
    room: str
    peer_id: str
    peers: list[RosterEntry]
    mode: NotRequired[str]
    epoch: NotRequired[int]


class RoomMode(TypedDict):
    """The room changes how its media flows (an addition to protocol v1).

    ``mode`` is ``mesh`` or ``sfu``; ``epoch`` counts the room's SFU sessions, so a client
    already in ``sfu`` that hears a new epoch (the SFU was restarted) publishes afresh."""

    type: Literal["room-mode"]
    room: str
    mode: str
    epoch: int


# ``from`` is a Python keyword, hence the functional form.
Relayed = TypedDict("Relayed", {"type": Literal["signal"], "from": str, "data": dict[str, Any]})


class PeerJoined(TypedDict):
    """A newcomer; ``name`` and ``account`` as in :class:`RosterEntry`."""

    type: Literal["peer-joined"]
    peer_id: str
    name: str
    kind: str
    account: NotRequired[str]


class PeerLeft(TypedDict):
    type: Literal["peer-left"]
    peer_id: str
    reason: str


class PeerState(TypedDict):
    type: Literal["peer-state"]
    peer_id: str
    muted: bool
    camera: bool


class Left(TypedDict):
    type: Literal["left"]
    room: str


class Pong(TypedDict):
    type: Literal["pong"]
    id: str | int | None


class ErrorFrame(TypedDict):
    type: Literal["error"]
    code: str
    message: str
    ref: NotRequired[str]


ServerMessage = Welcome | Joined | Relayed | PeerJoined | PeerLeft | PeerState | Left | Pong | ErrorFrame | RoomMode
SERVER_MESSAGES: tuple[type, ...] = (Welcome, Joined, Relayed, PeerJoined, PeerLeft, PeerState, Left, Pong, ErrorFrame, RoomMode)


def roster_entry(peer_id: str, name: str, kind: str, muted: bool, camera: bool, account: str | None = None) -> RosterEntry:
    """One ``joined`` roster entry; ``account`` goes last, so the keys before it keep their bytes."""
    entry: RosterEntry = {"peer_id": peer_id, "name": name, "kind": kind, "state": {"muted": muted, "camera": camera}}
    if account is not None:
        entry["account"] = account
    return entry


def welcome(peer_id: str, ice_servers: list[dict[str, Any]], max_room_size: int) -> Welcome:
    return {
        "type": "welcome",
        "peer_id": peer_id,
        "ice_servers": ice_servers,
        "limits": {"max_room_size": max_room_size, "max_frame_bytes": MAX_FRAME_BYTES},
    }


def joined(room: str, peer_id: str, peers: list[RosterEntry], mode: str | None = None, epoch: int = 0) -> Joined:
    """A ``joined``; ``mode`` (and ``epoch``) only when the server has an SFU, after the other keys."""
    msg: Joined = {"type": "joined", "room": room, "peer_id": peer_id, "peers": peers}
    if mode is not None:
        msg["mode"] = mode
        msg["epoch"] = epoch
    return msg


def room_mode(room: str, mode: str, epoch: int) -> RoomMode:
    if mode not in ROOM_MODES:
        raise ValueError(f"unknown room mode {mode!r}")
    return {"type": "room-mode", "room": room, "mode": mode, "epoch": epoch}


def relayed(sender: str, data: dict[str, Any]) -> Relayed:
    """The relayed form of a validated ``signal``: ``{type, from, data}``."""
    return {"type": "signal", "from": sender, "data": data}


def peer_joined(peer_id: str, name: str, kind: str, account: str | None = None) -> PeerJoined:
    """A ``peer-joined``; ``account`` goes last, as in :func:`roster_entry`."""
    msg: PeerJoined = {"type": "peer-joined", "peer_id": peer_id, "name": name, "kind": kind}
    if account is not None:
        msg["account"] = account
    return msg


def peer_left(peer_id: str, reason: str) -> PeerLeft:
    return {"type": "peer-left", "peer_id": peer_id, "reason": reason}


def peer_state(peer_id: str, muted: bool, camera: bool) -> PeerState:
    return {"type": "peer-state", "peer_id": peer_id, "muted": muted, "camera": camera}


def left(room: str) -> Left:
    return {"type": "left", "room": room}


def pong(ident: str | int | None) -> Pong:
    return {"type": "pong", "id": ident}


def error(code: str, message: str, ref: str | None = None) -> ErrorFrame:
    """An ``error`` frame; ``code`` must be one of :data:`ERROR_CODES`."""
    if code not in ERROR_CODES:
        raise ValueError(f"unknown error code {code!r}")
    err: ErrorFrame = {"type": "error", "code": code, "message": message}
    if ref is not None:
        err["ref"] = ref
    return err


def encode_server(msg: ServerMessage) -> bytes:
    """Serialize a server->client message: the one path every server frame takes to the wire."""
    return orjson.dumps(msg)


def _runtime_types(hint: Any) -> tuple[type, ...]:
    """What ``isinstance`` checks for a field annotated ``hint`` (top level only)."""
    if is_typeddict(hint):
        return (dict,)
    origin = get_origin(hint)
    if origin is Union or origin is UnionType:
        return tuple(t for arg in get_args(hint) for t in _runtime_types(arg))
    if origin is not None:
        return (origin,)
    return (type(None),) if hint is None else (hint,)


def _field_checks(message: type) -> tuple[str, dict[str, tuple[tuple[type, ...], bool]]]:
    """The ``type`` value of a server message and, per other field, (types, required)."""
    hints = get_type_hints(message, include_extras=True)
    (kind,) = get_args(hints.pop("type"))
    checks = {}
    for key, hint in hints.items():
        required = get_origin(hint) is not NotRequired
        checks[key] = (_runtime_types(hint if required else get_args(hint)[0]), required)
    return kind, checks


_SERVER_FIELDS = dict(_field_checks(m) for m in SERVER_MESSAGES)
SERVER_TYPES = tuple(_SERVER_FIELDS)


def parse_server(frame: bytes | str) -> ServerMessage:
    """Parse one server->client frame; the object is returned after its fields are checked."""
    obj = load_frame(frame)
    kind = obj["type"]
    fields = _SERVER_FIELDS.get(kind)
    if fields is None:
        raise ProtocolError("bad_message", "unknown server message type", _ref(kind))
    for key, (types, required) in fields.items():
        if (required or key in obj) and not isinstance(obj.get(key), types):
            raise _bad(kind, f"'{key}' is missing or has the wrong type")
    return obj  # type: ignore[return-value]
