"""The classroom network (issue 23): where students reach the server, the teacher token, requests
from other web sites, the caps per client address on rooms and follow streams, and the command
line's classroom start (the addresses printed, a port in use, follow streams at shutdown)."""

from __future__ import annotations

import io
import json
import re
import logging
import socket
import threading

import httpx
import pytest
from fastapi.testclient import TestClient

from app.rooms import classroom
from app.cli import main as cli_main
from app.main import create_app
from app.serving.settings import Settings

from .threaded_server import threaded_server

TOKEN = "a-teacher-token-0123456789"


def client_for(explainer, checkpoint_dir, **settings) -> TestClient:
    return TestClient(create_app(Settings(model=checkpoint_dir, **settings), explainer=explainer))


def qr_url(client, code: str) -> str:
    """The URL a room's QR code encodes, as segno titles the SVG."""
    svg = client.get(f"/api/rooms/{code}/qr.svg").text
    return re.search(r"<title>(.*?)</title>", svg).group(1)


# ---------------------------------------------------------------- where students reach the room

def test_a_public_url_is_where_the_room_and_its_qr_code_point(explainer, checkpoint_dir):
    with client_for(explainer, checkpoint_dir, public_url="http://class.example:9000") as client:
        room = client.post("/api/rooms").json()
        assert room["students_url"] == f"http://class.example:9000/r/{room['code']}" and room["reachable"] is True
        assert room["follow_url"] == f"/r/{room['code']}"
        assert qr_url(client, room["code"]) == room["students_url"]
        info = client.get("/api/classroom").json()
        assert info["students_base"] == "http://class.example:9000" and info["reachable"] is True


def test_a_loopback_only_server_says_the_room_is_not_reachable_and_how_to_fix_it(explainer, checkpoint_dir):
    with client_for(explainer, checkpoint_dir) as client:
        info = client.get("/api/classroom").json()
        assert info == {"teacher": True, "token_required": False, "reachable": False, "students_base": None,
                        "command": "explainer serve --classroom"}
        room = client.post("/api/rooms").json()  # still works, for trying it on this machine
        assert room["reachable"] is False and room["students_url"] == f"http://testserver/r/{room['code']}"


def test_a_classroom_server_points_students_at_its_lan_address(explainer, checkpoint_dir, monkeypatch):
    monkeypatch.setattr(classroom, "lan_addresses", lambda: ["192.168.1.20", "10.0.0.5"])
    with client_for(explainer, checkpoint_dir, host="0.0.0.0") as client:
        room = client.post("/api/rooms", headers={"Authorization": f"Bearer {client.app.state.teacher.token}"}).json()
        assert room["students_url"] == f"http://192.168.1.20/r/{room['code']}" and room["reachable"] is True
        assert "127.0.0.1" not in qr_url(client, room["code"])


def test_lan_addresses_are_never_loopback():
    for address in classroom.lan_addresses():
        assert not address.startswith("127.") and address != "0.0.0.0"


# ---------------------------------------------------------------- the teacher token

def test_a_classroom_server_needs_the_teacher_token_for_rooms(explainer, checkpoint_dir):
    with client_for(explainer, checkpoint_dir, host="0.0.0.0") as client:
        token = client.app.state.teacher.token
        refused = client.post("/api/rooms")
        assert refused.status_code == 403 and refused.json()["code"] == "teacher_only"
        assert refused.json()["errors"][0]["field"] == "authorization"
        assert client.get("/api/classroom").json()["teacher"] is False
        wrong = client.post("/api/rooms", headers={"Authorization": "Bearer not-the-token-at-all"})
        assert wrong.status_code == 403 and "not this server's" in wrong.json()["detail"]

        room = client.post("/api/rooms", headers={"Authorization": f"Bearer {token}"})
        assert room.status_code == 201
        code, secret = room.json()["code"], {"X-Room-Secret": room.json()["secret"]}
        closing = client.delete(f"/api/rooms/{code}", headers=secret)  # closing is the teacher's too
        assert closing.status_code == 403 and closing.json()["code"] == "teacher_only"
        # Students follow and explore without it.
        assert client.get(f"/api/rooms/{code}").status_code == 200
        assert client.post("/api/analyze", json={"text": "The cat"}).status_code == 200

        # The teacher URL: the cookie, then the page without the token in its address.
        opened = client.get(f"/?token={token}&lang=en", follow_redirects=False)
        assert opened.status_code == 303 and opened.headers["location"] == "/?lang=en"
        cookie = opened.headers["set-cookie"]
        assert cookie.startswith(f"{classroom.TEACHER_COOKIE}={token}")
        assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower()
        assert client.get("/api/classroom").json()["teacher"] is True  # the client keeps the cookie
        assert client.delete(f"/api/rooms/{code}", headers=secret).status_code == 204
        assert client.post("/api/rooms").status_code == 201

    with client_for(explainer, checkpoint_dir, host="0.0.0.0") as client:
        stale = client.get("/?token=an-old-token-from-yesterday", follow_redirects=False)
        assert stale.status_code == 200 and "set-cookie" not in stale.headers
        assert client.post("/api/rooms").status_code == 403


def test_a_configured_token_is_needed_even_on_loopback(explainer, checkpoint_dir):
    with client_for(explainer, checkpoint_dir, teacher_token=TOKEN) as client:
        assert client.get("/api/classroom").json()["token_required"] is True
        assert client.post("/api/rooms").status_code == 403
        assert client.post("/api/rooms", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 201
        assert client.app.state.teacher.url("http://x") == f"http://x/?token={TOKEN}"


# ---------------------------------------------------------------- other web sites

@pytest.mark.parametrize("headers, allowed", [
    ({"Origin": "http://evil.example"}, False),
    ({"Origin": "null"}, False),
    ({"Origin": "http://testserver:8080"}, False),  # another port is another origin
    ({"Sec-Fetch-Site": "cross-site"}, False),
    ({"Sec-Fetch-Site": "same-site", "Origin": "http://testserver"}, False),
    ({"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"}, True),
    ({"Origin": "http://class.example:9000"}, True),  # EXPLAINER_PUBLIC_URL is this server's too
    ({}, True),  # curl, a script: not a browser
])
def test_a_request_that_changes_something_from_another_site_is_refused(explainer, checkpoint_dir, headers, allowed):
    with client_for(explainer, checkpoint_dir, public_url="http://class.example:9000") as client:
        # A plain HTML form: what any page on the web can send without asking.
        form = client.post("/api/rooms", headers={**headers, "Content-Type": "application/x-www-form-urlencoded"},
                           content=b"x=1")
        analyze = client.post("/api/analyze", json={"text": "The cat"}, headers=headers)
        if allowed:
            assert form.status_code == 201 and analyze.status_code == 200
        else:
            for response in (form, analyze):
                assert response.status_code == 403 and response.json()["code"] == "cross_site"
                assert response.json()["errors"][0]["field"] == "origin"
                assert "content-security-policy" in response.headers
        # Reading stays open to links from anywhere.
        assert client.get("/api/model", headers=headers).status_code == 200


def test_the_host_refusal_carries_every_security_header(explainer, checkpoint_dir):
    with client_for(explainer, checkpoint_dir, allowed_hosts=()) as client:
        refused = client.get("/", headers={"Host": "rebinding.evil.example"})
        assert refused.status_code == 400 and refused.json()["code"] == "host_not_allowed"
        for header in ("content-security-policy", "x-content-type-options", "referrer-policy"):
            assert header in refused.headers, header


# ---------------------------------------------------------------- caps per client address

def laptop(number: int) -> httpx.Client:
    """A client from its own loopback address, as another laptop would be."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=f"127.0.0.{number}"), timeout=30)


def test_one_address_cannot_take_every_room_or_follow_place(explainer, checkpoint_dir):
    app = create_app(Settings(model=checkpoint_dir, rooms_per_client=2, followers_per_client=2), explainer=explainer)
    with threaded_server(app) as server, laptop(1) as student, laptop(2) as teacher:
        url = server.url
        codes = [student.post(f"{url}/api/rooms").json()["code"] for _ in range(2)]
        third = student.post(f"{url}/api/rooms")
        assert third.status_code == 429 and third.json()["code"] == "client_limit"
        assert int(third.headers["retry-after"]) > 0
        room = teacher.post(f"{url}/api/rooms")  # another computer still can
        assert room.status_code == 201
        code = room.json()["code"]

        # Two follow streams from one address; the third is refused, another address still follows.
        with student.stream("GET", f"{url}/api/rooms/{code}/events") as one, \
                student.stream("GET", f"{url}/api/rooms/{code}/events") as two:
            assert one.status_code == two.status_code == 200
            three = student.get(f"{url}/api/rooms/{code}/events")
            assert three.status_code == 429 and three.json()["code"] == "client_limit"
            with teacher.stream("GET", f"{url}/api/rooms/{code}/events") as other:
                assert other.status_code == 200
        # The student closes a room of its own: it may open one again.
        secret_less = student.delete(f"{url}/api/rooms/{codes[0]}")
        assert secret_less.status_code == 403  # closing needs the room's secret too
        assert len(codes) == 2


# ---------------------------------------------------------------- the command line

def test_classroom_prints_the_students_address_a_qr_code_and_the_teacher_url(monkeypatch):
    monkeypatch.setattr(classroom, "lan_addresses", lambda: ["192.168.1.20"])
    settings = Settings(host="0.0.0.0")
    teacher = classroom.Teacher(settings)
    out = io.StringIO()
    classroom.announce(settings, 8000, teacher, out)
    text = out.getvalue()
    assert "Students open:   http://192.168.1.20:8000/" in text
    assert f"http://192.168.1.20:8000/?token={teacher.token}" in text
    assert "\u2588" in text  # the QR code, drawn with blocks
    assert "127.0.0.1" not in text

    out = io.StringIO()
    classroom.announce(Settings(), 8000, classroom.Teacher(Settings()), out)
    assert "explainer serve --classroom" in out.getvalue() and "token" not in out.getvalue()


def test_classroom_binds_every_interface(monkeypatch, capsys):
    """--classroom asks for 0.0.0.0 (seen where the port is bound, which comes before the model)."""
    from app import cli
    from app.serving import logs

    monkeypatch.setattr(logs, "configure", lambda level: None)  # in-process: the tests' own logging stays
    asked = []

    def refuse(host, port):
        asked.append((host, port))
        raise OSError(98, "Address already in use")

    monkeypatch.setattr(cli, "_bind", refuse)
    assert cli_main(["serve", "--classroom", "--port", "9999", "--model", "/nonexistent"]) == 2
    assert asked == [("0.0.0.0", 9999)]
    assert cli_main(["serve", "--classroom", "--host", "127.0.0.1", "--port", "9999", "--model", "/nonexistent"]) == 2
    assert asked[-1] == ("127.0.0.1", 9999)


def test_a_port_in_use_exits_2_before_the_model_loads(tmp_path, monkeypatch, capsys):
    from app.serving import logs

    monkeypatch.setattr(logs, "configure", lambda level: None)  # in-process: the tests' own logging stays
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # A model that cannot load: had the server loaded first, its error would be about the model.
        status = cli_main(["serve", "--model", str(tmp_path / "missing"), "--host", "127.0.0.1", "--port", str(port)])
    assert status == 2
    [line] = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert line.startswith(f"error: cannot listen on 127.0.0.1 port {port}") and "--port" in line


def test_shutdown_ends_follow_streams_at_once(explainer, checkpoint_dir, caplog):
    with threaded_server(create_app(Settings(model=checkpoint_dir), explainer=explainer)) as server:
        code = httpx.post(f"{server.url}/api/rooms").json()["code"]
        events: list[str] = []
        ready = threading.Event()

        def follow():
            with httpx.stream("GET", f"{server.url}/api/rooms/{code}/events", timeout=30) as response:
                for line in response.iter_lines():
                    events.append(line)
                    if line.startswith("data:") and not ready.is_set():
                        ready.set()

        reader = threading.Thread(target=follow, daemon=True)
        reader.start()
        assert ready.wait(30)
        server.sigterm()
        # The stream ends with the server, at once: its graceful wait (5 s) is not spent on it.
        reader.join(30)
        assert not reader.is_alive()
        server.thread.join(30)
        assert not server.thread.is_alive()
    assert "event: end" in events, events
    end = json.loads(events[events.index("event: end") + 1].removeprefix("data: "))
    assert end["code"] == "stopping"
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]  # no traceback logged
