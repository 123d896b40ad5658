"""Follow the teacher (issue 13), over HTTP: a room is opened, only its secret publishes to it,
students read it and follow its event stream; unknown codes are 404, closed ones 410, rooms are
bounded in number, and the state is the schema's and nothing else. The store's clock is
replaced, so expiry is tested without waiting; the event stream is read from a real server."""

from __future__ import annotations

import asyncio
import gc
import io
import json
import re
import threading
import time
import xml.etree.ElementTree as ET

import httpx
import pytest
import segno
from fastapi.testclient import TestClient

from app.errors import ApiError
from app.main import create_app
from app.rooms.store import ALPHABET, Followers, LocalRoomStore, follow
from app.serving.settings import Settings, SettingsError

from .threaded_server import threaded_server
from .waiting import settle, wait_until

STATE = {"text": "The cat sat on the mat", "ids": [464, 3797, 3332, 319, 262, 2603, 50256], "stage": "attention",
         "layer": 1, "head": 3, "pinned": 2, "temperature": 0.7, "scene": {"id": "1-tour", "step": 1},
         "interventions": [{"hook": "blocks.1.attn.hook_z", "op": "zero", "head": 2, "neuron": None, "position": None,
                            "source_run_id": None},
                           {"hook": "blocks.0.hook_mlp_out", "op": "zero", "head": None, "neuron": None,
                            "position": None, "source_run_id": None}]}
FULL = dict(STATE)  # every field given: the snapshot holds exactly it
HEAD_OFF = {"hook": "blocks.1.attn.hook_z", "op": "zero", "head": 2}


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def clock():
    return Clock()


@pytest.fixture(scope="module")
def app(explainer, checkpoint_dir, clock):
    app = create_app(Settings(model=checkpoint_dir), explainer=explainer)
    # Set before start-up, as a cluster deployment sets its own store: create_app keeps it.
    app.state.rooms = LocalRoomStore(max_rooms=3, idle_s=60, clock=clock)
    return app


@pytest.fixture(scope="module")
def client(app):
    with TestClient(app) as client:
        yield client


@pytest.fixture(autouse=True)
def empty_rooms(app, clock):
    """Each test starts with no room open (and no tombstone)."""
    clock.now += 10**6
    app.state.rooms.active  # noqa: B018 (sweeps: every room closes)
    app.state.rooms._tombstones.clear()
    yield


def open_room(client) -> dict:
    response = client.post("/api/rooms")
    assert response.status_code == 201, response.text
    return response.json()


def publish(client, code, state, secret=None):
    headers = {"X-Room-Secret": secret} if secret is not None else {}
    return client.put(f"/api/rooms/{code}/state", json=state, headers=headers)


def test_the_app_keeps_a_store_set_before_start_up(app):
    assert isinstance(app.state.rooms, LocalRoomStore) and app.state.rooms.max_rooms == 3


def test_open_publish_snapshot(client, app):
    room = open_room(client)
    code = room["code"]
    assert re.fullmatch(f"[{ALPHABET}]{{6}}", code) and not set(code) & set("0O1IL")
    assert len(room["secret"]) >= 43 and room["follow_url"] == f"/r/{code}" and room["expires_in"] == 60
    assert client.get(f"/api/rooms/{code}").json() == {"version": 0, "state": None}
    assert app.state.rooms.active == 1

    assert publish(client, code, STATE, room["secret"]).json() == {"version": 1}
    assert client.get(f"/api/rooms/{code}").json() == {"version": 1, "state": FULL}
    # The code as a student might type it.
    assert client.get(f"/api/rooms/{code.lower()}").json()["version"] == 1
    # The same state again refreshes the room without a new version; a change is a new version.
    assert publish(client, code, STATE, room["secret"]).json() == {"version": 1}
    minimal = {"text": "Hello"}
    assert publish(client, code.lower(), minimal, room["secret"]).json() == {"version": 2}
    assert client.get(f"/api/rooms/{code}").json() == {"version": 2, "state": {
        "text": "Hello", "ids": None, "stage": None, "layer": 0, "head": 0, "pinned": None, "temperature": 1.0, "scene": None,
        "interventions": []}}


def test_two_rooms_have_different_codes_and_secrets(client):
    a, b = open_room(client), open_room(client)
    assert a["code"] != b["code"] and a["secret"] != b["secret"]
    assert publish(client, b["code"], STATE, a["secret"]).status_code == 403


@pytest.mark.parametrize("secret", [None, "", "wrong", "é".encode() * 10])
def test_only_the_secret_publishes(client, secret):
    room = open_room(client)
    publish(client, room["code"], STATE, room["secret"])
    response = publish(client, room["code"], {**STATE, "layer": 0}, secret)
    assert response.status_code == 403
    body = response.json()
    assert body["code"] == "not_teacher" and body["errors"][0]["field"] == "x-room-secret"
    assert client.get(f"/api/rooms/{room['code']}").json() == {"version": 1, "state": FULL}


def test_only_the_teacher_closes_a_room_and_its_code_then_says_so(client, app):
    room = open_room(client)
    code = room["code"]
    publish(client, code, STATE, room["secret"])
    refused = client.delete(f"/api/rooms/{code}", headers={"X-Room-Secret": "wrong"})
    assert refused.status_code == 403 and refused.json()["code"] == "not_teacher"
    assert client.get(f"/api/rooms/{code}").status_code == 200
    assert client.delete(f"/api/rooms/{code}", headers={"X-Room-Secret": room["secret"]}).status_code == 204
    gone = client.get(f"/api/rooms/{code}")
    assert gone.status_code == 410 and gone.json()["code"] == "room_expired"
    assert client.delete(f"/api/rooms/{code}", headers={"X-Room-Secret": room["secret"]}).status_code == 410
    assert app.state.rooms.active == 0


@pytest.mark.parametrize("method, path", [("GET", ""), ("PUT", "/state"), ("GET", "/events"), ("GET", "/qr.svg")])
def test_an_unknown_code_is_404(client, method, path):
    response = client.request(method, f"/api/rooms/ZZZZZZ{path}", json=STATE if method == "PUT" else None,
                              headers={"X-Room-Secret": "x"})
    assert response.status_code == 404, response.text
    assert response.json()["code"] == "unknown_room" and response.json()["errors"][0]["field"] == "code"


@pytest.mark.parametrize("method, path", [("GET", ""), ("PUT", "/state"), ("GET", "/events"), ("GET", "/qr.svg")])
def test_a_room_left_idle_closes_and_its_code_says_so(client, app, clock, method, path):
    room = open_room(client)
    code = room["code"]
    clock.now += 59
    assert publish(client, code, STATE, room["secret"]).status_code == 200  # a publish keeps it open
    clock.now += 59
    assert client.get(f"/api/rooms/{code}").status_code == 200
    clock.now += 2  # 61 s since the last publish
    response = client.request(method, f"/api/rooms/{code}{path}", json=STATE if method == "PUT" else None,
                              headers={"X-Room-Secret": room["secret"]})
    assert response.status_code == 410, response.text
    assert response.json()["code"] == "room_expired" and "Ask the teacher for a new code" in response.json()["detail"]
    assert app.state.rooms.active == 0


def test_tombstones_are_bounded():
    clock = Clock()
    store = LocalRoomStore(max_rooms=8, idle_s=10, clock=clock, max_tombstones=2, tombstone_s=100)

    async def main():
        codes = [(await store.open())["code"] for _ in range(3)]
        clock.now += 11
        assert store.active == 0
        statuses = []
        for code in codes:
            try:
                await store.snapshot(code)
            except ApiError as error:
                statuses.append(error.status)
        assert sorted(statuses) == [404, 410, 410]  # only the 2 most recent are remembered
        clock.now += 101
        for code in codes:
            with pytest.raises(ApiError) as caught:
                await store.snapshot(code)
            assert caught.value.code == "unknown_room"

    asyncio.run(main())


def test_rooms_are_bounded_in_number(client, clock):
    rooms = [open_room(client) for _ in range(3)]
    response = client.post("/api/rooms")
    assert response.status_code == 503 and response.json()["code"] == "too_many_rooms"
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    # The first one is refreshed; the others close after their idle time, and make room.
    clock.now += 30
    publish(client, rooms[0]["code"], STATE, rooms[0]["secret"])
    clock.now += 31
    assert open_room(client)["code"] not in {r["code"] for r in rooms}
    assert client.get(f"/api/rooms/{rooms[0]['code']}").status_code == 200
    assert client.get(f"/api/rooms/{rooms[1]['code']}").status_code == 410


@pytest.mark.parametrize("patch, field", [
    ({"layer": -1}, "layer"), ({"head": 1024}, "head"), ({"stage": "nowhere"}, "stage"),
    ({"temperature": 10.5}, "temperature"), ({"temperature": "1"}, "temperature"), ({"pinned": "2"}, "pinned"),
    ({"scene": {"id": "Not An Id", "step": 0}}, "scene.id"), ({"scene": {"id": "ok", "step": 20}}, "scene.step"),
    ({"text": "x" * 100_001}, "text"), ({"notes": "anything at all"}, "notes"), ({"layer": 1.5}, "layer"),
    # What is switched off: checked as POST /api/analyze checks its interventions (the hook grammar,
    # the ops, integers only, nothing else), a layer bounded like `layer`, and at most 32 of them.
    ({"interventions": [{"hook": "blocks.1.attn.hook_z", "op": "drop", "head": 0}]}, "interventions.0.op"),
    ({"interventions": [HEAD_OFF, {"hook": "blocks.01.attn.hook_z", "op": "zero"}]}, "interventions.1.hook"),
    ({"interventions": [{"hook": "blocks.1.attn.hook_zz", "op": "zero"}]}, "interventions.0.hook"),
    ({"interventions": [{"hook": "blocks.1024.attn.hook_z", "op": "zero", "head": 0}]}, "interventions.0.hook"),
    ({"interventions": [{"hook": "blocks.1.attn.hook_z", "op": "zero", "head": "2"}]}, "interventions.0.head"),
    ({"interventions": [{"hook": "blocks.1.attn.hook_z", "op": "zero", "head": -1}]}, "interventions.0.head"),
    ({"interventions": [{"hook": "blocks.1.attn.hook_z", "op": "zero", "layer": 1}]}, "interventions.0.layer"),
    ({"interventions": [HEAD_OFF] * 33}, "interventions"), ({"interventions": HEAD_OFF}, "interventions"),
])
def test_a_state_outside_the_schema_is_422_naming_the_field(client, patch, field):
    room = open_room(client)
    response = publish(client, room["code"], {**STATE, **patch}, room["secret"])
    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["errors"]] == [field]
    assert client.get(f"/api/rooms/{room['code']}").json()["state"] is None


def test_what_is_switched_off_round_trips_as_analyze_takes_it(client):
    """The state's interventions come back in full (every field named), and POST /api/analyze
    takes them as they are: a student analyzing the teacher's prompt with them gets the run the
    teacher's page shows, with the same id and numbers."""
    room = open_room(client)
    off = [HEAD_OFF, {"hook": "blocks.0.hook_attn_out", "op": "zero"}, {"hook": "blocks.1.mlp.hook_post", "op": "zero",
                                                                         "neuron": 7}]
    assert publish(client, room["code"], {"text": "The cat sat", "interventions": off}, room["secret"]).status_code == 200
    stored = client.get(f"/api/rooms/{room['code']}").json()["state"]["interventions"]
    fields = ("hook", "op", "head", "neuron", "position", "source_run_id")
    assert stored == [{f: x.get(f) for f in fields} for x in off]
    teachers = client.post("/api/analyze", json={"text": "The cat sat", "interventions": off}).json()
    students = client.post("/api/analyze", json={"text": "The cat sat", "interventions": stored}).json()
    clean = client.post("/api/analyze", json={"text": "The cat sat"}).json()
    assert students["run_id"] == teachers["run_id"] != clean["run_id"]
    assert students["top"] == teachers["top"] != clean["top"]
    # Switched back on: an empty list, a new version.
    assert publish(client, room["code"], {"text": "The cat sat"}, room["secret"]).json() == {"version": 2}
    assert client.get(f"/api/rooms/{room['code']}").json()["state"]["interventions"] == []


def test_a_blank_prompt_is_empty_prompt(client):
    room = open_room(client)
    response = publish(client, room["code"], {**STATE, "text": " \n"}, room["secret"])
    assert response.status_code == 422 and response.json()["code"] == "empty_prompt"
    assert publish(client, room["code"], {k: v for k, v in STATE.items() if k != "text"}, room["secret"]).status_code == 422


def test_the_qr_code_is_an_svg_of_the_absolute_follow_url(client):
    room = open_room(client)
    response = client.get(f"/api/rooms/{room['code'].lower()}/qr.svg")
    assert response.status_code == 200 and response.headers["content-type"] == "image/svg+xml"
    svg = ET.fromstring(response.content)  # well-formed XML
    ns = {"s": "http://www.w3.org/2000/svg"}
    assert svg.tag == "{http://www.w3.org/2000/svg}svg"
    url = f"http://testserver/r/{room['code']}"
    assert svg.find("s:title", ns).text == url
    # The dark modules are those of the URL's QR code (the same symbol, module for module).
    symbol = segno.make(url, error="m")
    out = io.BytesIO()
    symbol.save(out, kind="svg", xmldecl=False, omitsize=True, border=2)
    expected = ET.fromstring(out.getvalue()).find("s:path", ns).get("d")
    assert [p.get("d") for p in svg.findall("s:path", ns)][-1] == expected
    w, h = symbol.symbol_size(border=2)
    assert svg.get("viewBox") == f"0 0 {w} {h}"


def test_every_stage_card_of_the_page_is_a_stage_a_room_takes():
    """The teacher's page publishes the data-stage of the card it is at: each must fit RoomState."""
    from pathlib import Path

    from app.schemas import STAGES

    templates = Path(__file__).resolve().parents[1] / "templates"
    found = {m for f in templates.rglob("*.html") for m in re.findall(r'data-stage="([^"{]+)"', f.read_text())}
    assert len(found) >= 15 and found <= STAGES, found - STAGES


def test_the_follow_page_is_the_explainer(client):
    room = open_room(client)
    html = client.get(f"/r/{room['code']}").text
    assert '<script type="module" src="/static/main.js"></script>' in html
    assert client.get("/r/NOSUCH").status_code == 200  # the page itself says it is unknown (static/room.js)


def test_the_openapi_document_lists_the_room_routes_and_codes(client):
    doc = client.get("/openapi.json").json()
    assert {"/api/rooms", "/api/rooms/{code}", "/api/rooms/{code}/state", "/api/rooms/{code}/events",
            "/api/rooms/{code}/qr.svg"} <= set(doc["paths"])
    codes = doc["components"]["schemas"]["ErrorBody"]["properties"]["code"]["enum"]
    assert {"unknown_room", "room_expired", "not_teacher", "too_many_rooms", "room_full"} <= set(codes)
    put = doc["paths"]["/api/rooms/{code}/state"]["put"]
    assert {"403", "404", "410", "422"} <= set(put["responses"])
    assert any(p["name"] == "x-room-secret" and p["in"] == "header" for p in put["parameters"])


@pytest.mark.parametrize("variable, value", [("EXPLAINER_ROOMS_MAX", "0"), ("EXPLAINER_ROOMS_MAX", "many"),
                                             ("EXPLAINER_ROOM_IDLE", "0"), ("EXPLAINER_ROOM_IDLE", "nan"),
                                             ("EXPLAINER_ROOM_IDLE", "2h")])
def test_room_settings_are_checked(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=rf"^{variable} must be .*, got {value!r}\.$"):
        Settings.from_env()


def test_room_settings_are_read(monkeypatch):
    monkeypatch.setenv("EXPLAINER_ROOMS_MAX", "5")
    monkeypatch.setenv("EXPLAINER_ROOM_IDLE", "90")
    settings = Settings.from_env()
    assert (settings.rooms_max, settings.room_idle_s) == (5, 90.0)
    monkeypatch.delenv("EXPLAINER_ROOMS_MAX")
    monkeypatch.delenv("EXPLAINER_ROOM_IDLE")
    assert (Settings.from_env().rooms_max, Settings.from_env().room_idle_s) == (64, 7200.0)


# ---------------------------------------------------------------- the store and the stream, in process

def test_wait_returns_on_a_publish_or_at_its_timeout():
    async def main():
        store = LocalRoomStore()
        room = await store.open()
        code, secret = room["code"], room["secret"]
        assert await store.wait(code, 0, 0.01) == (0, None)  # nothing new: the current one at the timeout
        waiters = [asyncio.ensure_future(store.wait(code, 0, 30)) for _ in range(30)]
        await settle()
        assert not any(w.done() for w in waiters)
        assert await store.publish(code, secret, {"text": "a"}) == 1
        assert await asyncio.wait_for(asyncio.gather(*waiters), 5) == [(1, {"text": "a"})] * 30
        assert await store.wait(code, 0, 30) == (1, {"text": "a"})  # already newer: at once

    asyncio.run(main())


def test_followers_wake_when_their_room_closes():
    clock = Clock()

    async def main():
        store = LocalRoomStore(idle_s=10, clock=clock)
        code = (await store.open())["code"]
        waiter = asyncio.ensure_future(store.wait(code, 0, 30))
        await settle()
        clock.now += 11
        assert store.active == 0  # the sweep wakes the waiter, which finds the room closed
        with pytest.raises(ApiError) as caught:
            await asyncio.wait_for(waiter, 5)
        assert caught.value.code == "room_expired"

    asyncio.run(main())


def test_a_closed_room_ends_its_followers_streams_at_once():
    async def main():
        store = LocalRoomStore(idle_s=600)
        followers = Followers()
        room = await store.open()
        code, secret = room["code"], room["secret"]
        await store.publish(code, secret, {"text": "a"})
        stream = follow(store, code, *(await store.snapshot(code)), followers.enter(code), heartbeat_s=30)
        await anext(stream)  # the state
        next_event = asyncio.ensure_future(anext(stream))
        await settle()
        await store.close(code, secret)
        end = parse(await asyncio.wait_for(next_event, 5))  # not at the next heartbeat, 30 s away
        assert end["event"] == "end" and json.loads(end["data"])["code"] == "room_expired"
        with pytest.raises(StopAsyncIteration):
            await anext(stream)
        assert followers.count(code) == 0

    asyncio.run(main())


def parse(chunk: bytes) -> dict:
    fields = {}
    for line in chunk.decode().strip("\n").split("\n"):
        name, _, value = line.partition(":")
        fields[name or "comment"] = value.strip()
    return fields


def test_the_stream_sends_the_state_then_each_version_heartbeats_and_ends():
    clock = Clock()

    async def main():
        store = LocalRoomStore(idle_s=10, clock=clock)
        followers = Followers(per_room=2)
        room = await store.open()
        code, secret = room["code"], room["secret"]
        await store.publish(code, secret, {"text": "a"})
        ticket = followers.enter(code)
        stream = follow(store, code, *(await store.snapshot(code)), ticket, heartbeat_s=0.02)
        first = parse(await anext(stream))
        assert first["retry"] == "1000" and first["id"] == "1" and json.loads(first["data"]) == {"version": 1, "state": {"text": "a"}}
        assert parse(await anext(stream)) == {"comment": "heartbeat"}
        assert followers.count(code) == 1
        next_event = asyncio.ensure_future(anext(stream))
        await settle()
        await store.publish(code, secret, {"text": "b"})
        assert json.loads(parse(await next_event)["data"]) == {"version": 2, "state": {"text": "b"}}
        clock.now += 11
        end = parse(await anext(stream))
        assert end["event"] == "end" and json.loads(end["data"])["code"] == "room_expired"
        with pytest.raises(StopAsyncIteration):
            await anext(stream)
        assert followers.count(code) == 0  # the place is given back

    asyncio.run(main())


def test_the_stream_stops_when_the_client_has_left():
    async def main():
        store = LocalRoomStore()
        room = await store.open()
        gone = False

        async def is_disconnected():
            return gone

        stream = follow(store, room["code"], 0, None, None, is_disconnected, heartbeat_s=0.01)
        await anext(stream)
        assert parse(await anext(stream)) == {"comment": "heartbeat"}
        gone = True
        with pytest.raises(StopAsyncIteration):
            await anext(stream)

    asyncio.run(main())


def test_followers_are_bounded_per_room_and_a_stream_never_started_gives_its_place_back():
    followers = Followers(per_room=2)
    a = followers.enter("ABCDEF")
    b = followers.enter("abcdef")
    with pytest.raises(ApiError) as caught:
        followers.enter("ABCDEF")
    assert caught.value.status == 503 and caught.value.code == "room_full"
    assert followers.enter("GHJKMN") is not None  # another room has its own places
    a.release()
    c = followers.enter("ABCDEF")
    del b  # a stream that never ran: its ticket is collected
    gc.collect()
    assert followers.count("ABCDEF") == 1
    assert c is not None


# ---------------------------------------------------------------- the event stream over a real server

def read_events(lines_in, n: int, out: list) -> None:
    """Read an SSE response's lines (one iterator) until out holds n events (not comments), each (time, fields)."""
    lines = []
    for line in lines_in:
        if line:
            lines.append(line)
            continue
        if lines and not all(l.startswith(":") for l in lines):
            out.append((time.perf_counter(), parse("\n".join(lines).encode())))
            if len(out) >= n:
                return
        lines = []


def test_thirty_followers_get_the_state_then_each_publish_over_a_real_server(explainer, checkpoint_dir):
    settings, clock = Settings(model=checkpoint_dir, room_idle_s=5), Clock()
    app = create_app(settings, explainer=explainer)
    app.state.rooms = LocalRoomStore(settings.rooms_max, settings.room_idle_s, clock=clock,
                                     per_client=settings.rooms_per_client)
    with threaded_server(app) as server:
        url = server.url
        room = httpx.post(f"{url}/api/rooms").json()
        code, secret = room["code"], room["secret"]
        headers = {"X-Room-Secret": secret}
        assert httpx.put(f"{url}/api/rooms/{code}/state", json=STATE, headers=headers).json() == {"version": 1}
        n = 30
        received = [[] for _ in range(n)]
        started = threading.Barrier(n + 1)

        def student(i: int) -> None:
            # Each from its own address, as from its own laptop (one address may hold only a few streams).
            laptop = httpx.HTTPTransport(local_address=f"127.0.0.{i + 2}")
            with httpx.Client(timeout=30, transport=laptop) as http, http.stream("GET", f"{url}/api/rooms/{code}/events") as response:
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/event-stream")
                lines = response.iter_lines()
                read_events(lines, 1, received[i])
                started.wait()
                read_events(lines, 3, received[i])

        threads = [threading.Thread(target=student, args=(i,), daemon=True) for i in range(n)]
        for thread in threads:
            thread.start()
        started.wait(30)
        sent = time.perf_counter()
        assert httpx.put(f"{url}/api/rooms/{code}/state", json={**STATE, "head": 0}, headers=headers).json() == {"version": 2}
        wait_until(lambda: all(len(events) == 2 for events in received), "every student has version 2")
        # The room closes 5 s after this publish (on the store's clock); a student's read finds it
        # closed, and the followers are told.
        clock.now += 4.9
        assert httpx.get(f"{url}/api/rooms/{code}").json()["state"]["head"] == 0  # still open
        clock.now += 0.2
        assert httpx.get(f"{url}/api/rooms/{code}").json()["code"] == "room_expired"
        for thread in threads:
            thread.join(30)
        assert not any(t.is_alive() for t in threads)
        for events in received:
            first, second, end = (fields for _, fields in events)
            assert json.loads(first["data"]) == {"version": 1, "state": FULL} and first["id"] == "1"
            assert json.loads(second["data"]) == {"version": 2, "state": {**FULL, "head": 0}} and second["id"] == "2"
            assert end["event"] == "end" and json.loads(end["data"])["code"] == "room_expired"
        latencies = sorted((events[1][0] - sent) * 1000 for events in received)
        print(f"\npublish -> 30 followers over loopback: median {latencies[n // 2]:.1f} ms, max {latencies[-1]:.1f} ms")
        assert httpx.get(f"{url}/api/rooms/ZZZZZZ").json()["code"] == "unknown_room"

        # A client that leaves gives its place back: 300 streams opened and closed one after the
        # other, in a room that takes 256 at once, are all let in.
        room = httpx.post(f"{url}/api/rooms").json()
        with httpx.Client(timeout=30) as http:
            for i in range(300):
                with http.stream("GET", f"{url}/api/rooms/{room['code']}/events") as response:
                    assert response.status_code == 200, (i, response.read())
                    assert next(response.iter_lines()).startswith("retry:")
