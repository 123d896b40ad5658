"""Follow the teacher (issue 13): a room that the teacher's page publishes its view to (the
prompt, the stage, layer, head, pinned token, temperature, the scene step: schemas.RoomState),
and that students' pages follow live over server-sent events.

A room is a 6-character code from an alphabet without look-alikes (no 0/O, 1/I/L), and a secret
only the teacher's page holds: a publish without it is 403 `not_teacher`. Rooms are bounded in
number (EXPLAINER_ROOMS_MAX, else 503 `too_many_rooms`) and close after EXPLAINER_ROOM_IDLE
seconds without a publish (the teacher's page re-publishes while it is open), or when the teacher
closes it (DELETE, with the secret: its followers are told at once); a closed room's
code is remembered for a while, so a student gets 410 `room_expired` rather than 404
`unknown_room`.

The store's interface (a cluster deployment may set app.state.rooms to another implementation
of it before start-up, e.g. one behind a Ray actor):

    await open() -> {"code", "secret", "expires_in"}
    await publish(code, secret, state: dict) -> version      a state equal to the current one only
                                                             refreshes the room (same version)
    await close(code, secret)                                 the teacher ends it (followers told at once)
    await snapshot(code) -> (version, state | None)
    await wait(code, after, timeout) -> (version, state | None)   at once if version > after,
                                                             else when it is, or at timeout
    active -> int                                             rooms open now

Everything runs on the event loop, without threads: each method is one step between awaits, so
it needs no lock. A follower waiting costs one pending wait on its room's asyncio.Event (set and
replaced by each publish), never a polling loop.

Besides the store, per process: Followers (at most MAX_FOLLOWERS event streams per room, else
503 `room_full`) and follow(), the event stream itself.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import math
import secrets
import time
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable

from app.errors import ApiError

ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"  # no 0/O, 1/I/L
CODE_LENGTH = 6
MAX_FOLLOWERS = 256  # event streams per room, per process
HEARTBEAT_S = 15.0  # a comment line this often keeps proxies from closing an idle stream
RETRY_MS = 1000  # EventSource's wait before it reconnects after a dropped connection


def normalize(code: str) -> str:
    """A code as typed (k7qx2m, ' K7QX2M ') as issued."""
    return code.strip().upper()


class _Room:
    __slots__ = ("secret", "owner", "version", "state", "touched", "changed")

    def __init__(self, secret: str, now: float, owner: str = ""):
        self.secret = secret
        self.owner = owner  # the client address that opened it (per-client cap)
        self.version = 0
        self.state: dict | None = None
        self.touched = now
        self.changed = asyncio.Event()  # set (and replaced) by each new version


class LocalRoomStore:
    """Rooms in this process. `clock` (monotonic seconds) can be replaced in tests."""

    def __init__(self, max_rooms: int = 64, idle_s: float = 7200.0, clock: Callable[[], float] = time.monotonic,
                 max_tombstones: int | None = None, tombstone_s: float | None = None, per_client: int | None = None):
        self.max_rooms = max_rooms
        self.per_client = per_client  # rooms one client address may hold open; None: no cap
        self.idle_s = idle_s
        self.clock = clock
        # Ordered by the last open or publish, oldest first: expiry pops from the front.
        self._rooms: OrderedDict[str, _Room] = OrderedDict()
        # Codes of closed rooms -> when they closed, oldest first; bounded in number and age.
        self._tombstones: OrderedDict[str, float] = OrderedDict()
        self.max_tombstones = max_tombstones if max_tombstones is not None else max(1024, 16 * max_rooms)
        self.tombstone_s = tombstone_s if tombstone_s is not None else max(24 * 3600.0, 4 * idle_s)

    # --- bookkeeping

    def _sweep(self) -> None:
        now = self.clock()
        while self._rooms:
            code, room = next(iter(self._rooms.items()))
            if now - room.touched < self.idle_s:
                break
            self._end(code)
        while self._tombstones and (len(self._tombstones) > self.max_tombstones
                                    or now - next(iter(self._tombstones.values())) > self.tombstone_s):
            self._tombstones.popitem(last=False)

    def _room(self, code: str) -> _Room:
        self._sweep()
        code = normalize(code)
        room = self._rooms.get(code)
        if room is not None:
            return room
        if code in self._tombstones:
            raise ApiError(410, "room_expired", f"code: room {code} has closed: the teacher closed it, or it was left "
                           f"unchanged for {_duration(self.idle_s)}. Ask the teacher for a new code.", field="code")
        raise ApiError(404, "unknown_room", f"code: there is no room {code!r}: check the code the teacher shows.",
                       field="code")

    def _touch(self, code: str, room: _Room) -> None:
        room.touched = self.clock()
        self._rooms.move_to_end(code)

    def _new_code(self) -> str:
        while True:
            code = "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))
            if code not in self._rooms and code not in self._tombstones:
                return code

    # --- the interface

    @property
    def active(self) -> int:
        self._sweep()
        return len(self._rooms)

    async def open(self, owner: str = "") -> dict:
        """A new room, opened by client address `owner`: 429 client_limit if that address holds
        `per_client` rooms already (one student's script cannot take every room of the server)."""
        self._sweep()
        if self.per_client is not None:
            held = [room for room in self._rooms.values() if room.owner == owner]
            if len(held) >= self.per_client:
                wait = max(1, math.ceil(held[0].touched + self.idle_s - self.clock()))
                raise ApiError(429, "client_limit", f"This computer has {len(held)} rooms open already, the most one "
                               "computer may keep (EXPLAINER_CLIENT_ROOMS): close one first (the room panel's Close "
                               "room), or use the one that is open.", headers={"Retry-After": str(wait)})
        if len(self._rooms) >= self.max_rooms:
            oldest = next(iter(self._rooms.values()))
            wait = max(1, math.ceil(oldest.touched + self.idle_s - self.clock()))
            raise ApiError(503, "too_many_rooms", f"{self.max_rooms} rooms are open, the most this server keeps "
                           "(EXPLAINER_ROOMS_MAX); a room closes when it has been left unchanged for "
                           f"{_duration(self.idle_s)}.", headers={"Retry-After": str(wait)})
        code, secret = self._new_code(), secrets.token_urlsafe(32)
        self._rooms[code] = _Room(secret, self.clock(), owner)
        return {"code": code, "secret": secret, "expires_in": self.idle_s}

    def _teachers(self, code: str, secret: str) -> _Room:
        """The room, if `secret` is its teacher's; else 403 not_teacher (404 / 410 as _room)."""
        room = self._room(code)
        if not hmac.compare_digest(room.secret.encode(), (secret or "").encode("utf-8", "surrogateescape")):
            raise ApiError(403, "not_teacher", "x-room-secret: only the teacher's page, which opened the room, "
                           "can change it.", field="x-room-secret")
        return room

    async def publish(self, code: str, secret: str, state: dict) -> int:
        room = self._teachers(code, secret)
        self._touch(normalize(code), room)
        if state != room.state:
            room.version += 1
            room.state = state
            room.changed.set()
            room.changed = asyncio.Event()
        return room.version

    async def close(self, code: str, secret: str) -> None:
        """The teacher closes the room: its followers are told at once (410 room_expired after)."""
        self._teachers(code, secret)
        self._end(normalize(code))

    def _end(self, code: str) -> None:
        room = self._rooms.pop(code)
        self._tombstones[code] = self.clock()
        room.changed.set()  # its followers wake now, and find it closed

    async def snapshot(self, code: str) -> tuple[int, dict | None]:
        room = self._room(code)
        return room.version, room.state

    async def wait(self, code: str, after: int, timeout: float) -> tuple[int, dict | None]:
        room = self._room(code)
        if room.version <= after:
            changed = room.changed
            try:
                async with asyncio.timeout(timeout):
                    await changed.wait()
            except TimeoutError:
                pass
            room = self._room(code)  # 410 if it closed meanwhile
        return room.version, room.state


def _duration(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{int(seconds // 3600)} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)} min"
    return f"{seconds:g} s"


class _Ticket:
    """One follower's place in its room; the place is given back when released or collected."""
    __slots__ = ("__weakref__", "followers", "code", "who")

    def __init__(self, followers: Followers, code: str, who: str):
        self.followers, self.code, self.who = followers, code, who

    def release(self) -> None:
        for key, table in ((self.code, self.followers._places), (self.who, self.followers._clients)):
            places = table.get(key)
            if places is not None:
                places.discard(self)
                if not places:
                    del table[key]


class Followers:
    """Event streams open in this process: at most `per_room` in a room, and at most
    `per_client` held by one client address (one script cannot take a room's every place). A
    place is held by a ticket: released when the stream ends, or when it is garbage (a stream
    never started). `stop()` (the server is stopping) ends every stream at once."""

    def __init__(self, per_room: int = MAX_FOLLOWERS, per_client: int | None = None):
        self.per_room = per_room
        self.per_client = per_client
        self._places: dict[str, weakref.WeakSet] = {}
        self._clients: dict[str, weakref.WeakSet] = {}
        self.stopping = asyncio.Event()

    def count(self, code: str) -> int:
        return len(self._places.get(normalize(code), ()))

    def enter(self, code: str, who: str = "") -> _Ticket:
        code = normalize(code)
        places = self._places.setdefault(code, weakref.WeakSet())
        mine = self._clients.setdefault(who, weakref.WeakSet())
        if self.per_client is not None and len(mine) >= self.per_client:
            raise ApiError(429, "client_limit", f"This computer follows rooms in {len(mine)} tabs already, the most one "
                           "computer may (EXPLAINER_CLIENT_FOLLOWERS): close a tab that follows a room.",
                           headers={"Retry-After": "30"})
        if len(places) >= self.per_room:
            raise ApiError(503, "room_full", f"room {code} has {self.per_room} followers already, the most it takes.",
                           headers={"Retry-After": "30"})
        ticket = _Ticket(self, code, who)
        places.add(ticket)
        mine.add(ticket)
        return ticket

    def stop(self) -> None:
        self.stopping.set()


def event(version: int, state: dict | None) -> bytes:
    """One state as a server-sent event: `id` is its version (EventSource sends it back as
    Last-Event-ID when it reconnects), the data {"version", "state"}."""
    data = json.dumps({"version": version, "state": state}, separators=(",", ":"), ensure_ascii=False)
    return f"id: {version}\ndata: {data}\n\n".encode()


STOPPING = ApiError(503, "stopping", "The server is stopping; this page follows the room again when it is back.")


def _end(error: ApiError) -> bytes:
    body = json.dumps({"detail": error.detail, "code": error.code}, separators=(",", ":"))
    return f"event: end\ndata: {body}\n\n".encode()


async def follow(rooms, code: str, version: int, state: dict | None, ticket: _Ticket | None = None,
                 is_disconnected: Callable[[], Awaitable[bool]] | None = None,
                 heartbeat_s: float = HEARTBEAT_S, stopping: asyncio.Event | None = None) -> AsyncIterator[bytes]:
    """The event stream of a room, from its (version, state) just read: that state first, then
    each new version as it is published, a comment every `heartbeat_s` while nothing is, and
    `event: end` {detail, code} when the room closes, or at once when `stopping` is set (the
    server is shutting down: its graceful wait is not spent on idle streams). Ends when the
    client leaves (checked between waits; a cancellation ends it at once too)."""
    stopping = stopping or asyncio.Event()
    try:
        yield f"retry: {RETRY_MS}\n".encode() + event(version, state)
        while not stopping.is_set():
            if is_disconnected is not None and await is_disconnected():
                return
            waiting = asyncio.ensure_future(rooms.wait(code, version, heartbeat_s))
            stop = asyncio.ensure_future(stopping.wait())
            try:
                await asyncio.wait({waiting, stop}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stop.cancel()
                if not waiting.done():
                    waiting.cancel()
                    await asyncio.gather(waiting, return_exceptions=True)
            if waiting.cancelled():
                break
            try:
                new, state = waiting.result()
            except ApiError as error:
                yield _end(error)
                return
            if new > version:
                version = new
                yield event(version, state)
            else:
                yield b": heartbeat\n\n"
        yield _end(STOPPING)
    finally:
        if ticket is not None:
            ticket.release()
