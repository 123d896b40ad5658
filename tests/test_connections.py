"""The connection layer (app/serving/connections.py, errors.BodySizeLimit) on real uvicorn servers on
127.0.0.1, with other loopback addresses (127.0.0.2, 127.0.0.3...) standing for other computers:
read deadlines for headers and bodies, caps on connections per client address and in all, the
503 and 400 written before the app, and X-Forwarded-For believed only from a trusted proxy.

Durations are printed (run with -s), never asserted: a deadline missed shows as a connection
still open when the test's own generous socket timeout runs out."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import resource
import select
import socket
import sys
import time

import httpx
import pytest
from fastapi import Request

from app.serving import clients, connections
from app.main import create_app
from app.serving.settings import Settings

from . import ci
from .live_server import serving
from .threaded_server import threaded_server
from .waiting import wait_until

WAIT_S = 20  # a socket's timeout here: far beyond every deadline the servers are given
HALF_SENT = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slow\r\n"  # the blank line never comes


@contextlib.contextmanager
def in_process(settings: Settings, explainer, http: str = "auto"):
    """The app on a real uvicorn in a thread, with explainer serve's connection options; yields
    (port, the protocol class, whose `table` counts the open connections). GET /whoami answers
    the client the fair queue sees (app/serving/clients.py)."""
    app = create_app(settings, explainer=explainer)

    @app.get("/whoami")
    def whoami(request: Request) -> dict:
        return {"client": clients.client.get()}

    with threaded_server(app, settings, http) as server:
        yield server.port, server.protocol


def connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket()
    sock.bind((source, 0))
    sock.settimeout(WAIT_S)
    sock.connect(("127.0.0.1", port))
    return sock


def until_closed(sock: socket.socket) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and how long that took.
    A connection still open after WAIT_S fails the test."""
    start, data = time.monotonic(), b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except TimeoutError:
        pytest.fail(f"the server left the connection open for {WAIT_S} s (received {data[:200]!r})")
    except ConnectionResetError:
        pass
    return data, time.monotonic() - start


def parse(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One response on a connection that stays open (Content-Length framed)."""
    response = http.client.HTTPResponse(sock)
    response.begin()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()


def wait_for(condition, what: str, timeout_s: float = WAIT_S) -> None:
    wait_until(condition, what, timeout_s, every_s=0.01)


def assert_security_headers(headers: dict[str, str]) -> None:
    assert headers["x-content-type-options"] == "nosniff" and headers["referrer-policy"] == "no-referrer"
    assert "default-src 'self'" in headers["content-security-policy"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]


def via(source: str) -> httpx.HTTPTransport:
    return httpx.HTTPTransport(local_address=source)


# ------------------------------------------------------------------ read deadlines ----

@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_a_request_whose_headers_stall_is_closed_at_the_header_timeout(explainer, checkpoint_dir, http):
    settings = Settings(model=checkpoint_dir, header_timeout_s=0.5)
    with in_process(settings, explainer, http) as (port, protocol):
        silent, since = connect(port), {}  # opens and never sends a byte
        since["silent"] = time.monotonic()
        stalled = connect(port)
        stalled.sendall(HALF_SENT)
        since["stalled"] = time.monotonic()
        # A connection that completed one request, then starts another and stalls in its headers:
        # the deadline starts again with each request, and uvicorn's keep-alive timer is off once bytes arrive.
        again = connect(port)
        again.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        status, _, body = read_response(again)
        assert status == 200 and json.loads(body)["status"] == "ok"
        again.sendall(HALF_SENT)
        since["stalled second request"] = time.monotonic()
        for name, sock in (("silent", silent), ("stalled", stalled), ("stalled second request", again)):
            data, _ = until_closed(sock)
            assert data == b"", (name, data)
            print(f"{http}: a {name} connection was closed {time.monotonic() - since[name]:.2f} s after its last byte "
                  "(header timeout 0.5 s)")
        # Headers that arrive in pieces but in time are served.
        slow = connect(port)
        for piece in (b"GET /healthz HTTP/1.1\r\n", b"Host: 127.0.0.1\r\n", b"\r\n"):
            slow.sendall(piece)
        assert read_response(slow)[0] == 200
        slow.close()
        wait_for(lambda: protocol.table.open == 0, "every closed connection is released from the table")
        assert not protocol.table.by_client


@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_a_body_that_stalls_is_answered_408_and_the_connection_closed(explainer, checkpoint_dir, http):
    settings = Settings(model=checkpoint_dir, body_timeout_s=0.5)
    with in_process(settings, explainer, http) as (port, _):
        sock = connect(port)
        sock.sendall(b"POST /api/analyze HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{\"text\": \"The")
        raw, seconds = until_closed(sock)
        print(f"{http}: a stalled body was answered and closed after {seconds:.2f} s (body timeout 0.5 s)")
        status, headers, body = parse(raw)
        assert status == 408 and headers["connection"] == "close"
        late = "The request body did not arrive within 0.5 s."
        assert json.loads(body) == {"detail": late, "code": "body_timeout", "field": "body",
                                    "errors": [{"field": "body", "message": late, "code": "body_timeout"}]}
        assert_security_headers(headers)
        # A whole body in time is served as before.
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=WAIT_S) as client:
            answer = client.post("/api/analyze", json={"text": "The cat"})
        assert answer.status_code == 200 and answer.json()["run_id"]


@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_what_the_server_library_refuses_carries_our_body_and_headers(explainer, checkpoint_dir, http):
    with in_process(Settings(model=checkpoint_dir), explainer, http) as (port, _):
        too_long = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * (connections.MAX_HEADER_BYTES + 1024)
        for sent, detail in ((b"\x16\x03\x01\x02\x00 not HTTP at all\r\n\r\n", "Invalid HTTP request received."),
                             (too_long, None)):
            sock = connect(port)
            sock.sendall(sent)
            status, headers, body = parse(until_closed(sock)[0])
            error = json.loads(body)
            assert status == 400 and error["code"] == "invalid" and error["errors"] == [], (http, error)
            assert "before the app saw the request" in error["detail"]
            if detail:
                assert error["detail"].startswith(detail)
            assert_security_headers(headers)


# ------------------------------------------------------------------ caps and proxies ----

def test_connections_are_capped_per_client_address_and_released_when_they_close(explainer, checkpoint_dir):
    settings = Settings(model=checkpoint_dir, connections_per_client=2, trusted_proxies=("127.0.0.3",))
    with in_process(settings, explainer) as (port, protocol):
        table = protocol.table
        held = [connect(port) for _ in range(2)]
        for sock in held:
            sock.sendall(HALF_SENT)
        wait_for(lambda: table.by_client["127.0.0.1"] == 2, "two connections counted for 127.0.0.1")

        third = connect(port)
        third.sendall(HALF_SENT)
        status, headers, body = parse(until_closed(third)[0])
        assert status == 503 and headers["retry-after"] == str(connections.RETRY_AFTER_S)
        error = json.loads(body)
        assert error["code"] == "too_many_connections" and "EXPLAINER_CLIENT_CONNECTIONS" in error["detail"]
        assert_security_headers(headers)

        with httpx.Client(base_url=f"http://127.0.0.1:{port}", transport=via("127.0.0.2"), timeout=WAIT_S) as other:
            assert other.get("/whoami").json() == {"client": "127.0.0.2"}  # another computer is served

        # A trusted proxy speaks for many clients: it is not held to one client's cap.
        proxied = [connect(port, "127.0.0.3") for _ in range(3)]
        for sock in proxied:
            sock.sendall(HALF_SENT)
        wait_for(lambda: table.by_client["127.0.0.3"] == 3, "three connections counted for the proxy")

        held.pop().close()
        wait_for(lambda: table.by_client["127.0.0.1"] == 1, "a closed connection is released")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=WAIT_S) as again:
            assert again.get("/whoami").json() == {"client": "127.0.0.1"}
        for sock in held + proxied:
            sock.close()
        wait_for(lambda: table.open == 0 and table.lingering == 0, "every connection released")
        assert not table.by_client


def test_x_forwarded_for_is_believed_only_from_a_trusted_proxy(explainer, checkpoint_dir):
    settings = Settings(model=checkpoint_dir, trusted_proxies=("127.0.0.3",))
    forwarded = {"X-Forwarded-For": "203.0.113.7"}
    with in_process(settings, explainer) as (port, _):
        def whoami(source: str, headers: dict | None = None) -> str:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", transport=via(source), timeout=WAIT_S) as client:
                return client.get("/whoami", headers=headers).json()["client"]

        assert whoami("127.0.0.1", forwarded) == "127.0.0.1"  # this machine is no proxy unless named
        assert whoami("127.0.0.2", forwarded) == "127.0.0.2"
        assert whoami("127.0.0.3", forwarded) == "203.0.113.7"
        assert whoami("127.0.0.3") == "127.0.0.3"
    # Nothing trusted by default: uvicorn's own default would believe 127.0.0.1.
    assert connections.uvicorn_options(Settings())["forwarded_allow_ips"] == ""


def test_start_up_raises_the_open_file_limit_to_the_hard_limit():
    code = ("import resource; resource.setrlimit(resource.RLIMIT_NOFILE, (256, 1024)); "
            "from app.serving.connections import raise_open_file_limit; "
            "print(raise_open_file_limit(), resource.getrlimit(resource.RLIMIT_NOFILE)[0])")
    soft_hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if soft_hard != resource.RLIM_INFINITY and soft_hard < 1024:
        ci.skip("this machine's hard limit on open files is under 1024")
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["1024", "1024"]


# -------------------------------------------- a flood through `explainer serve`, end to end ----

FD_LIMIT = 1024  # the server's, as on the machine where 1,100 half-sent requests took them all


def serve_with_fd_limit(checkpoint_dir: str, soft: int, hard: int) -> list[str]:
    """`explainer serve` in a process whose open-file limit starts at soft/hard."""
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_NOFILE, (%d, %d)); "
            "from app.cli import main; sys.exit(main())" % (soft, hard))
    return [sys.executable, "-c", code, "serve", "--model", checkpoint_dir]


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def server_side_connections(port: int) -> int:
    """TCP connections the server on `port` has not closed yet (established, or closed by the client only)."""
    with open("/proc/net/tcp") as table:
        rows = [line.split() for line in table.readlines()[1:]]
    return sum(1 for row in rows if row[1].endswith(f":{port:04X}") and row[3] in ("01", "08"))


def half_sent(port: int, source: str, count: int) -> list[socket.socket]:
    socks = []
    for _ in range(count):
        sock = connect(port, source)
        sock.sendall(HALF_SENT)
        socks.append(sock)
    return socks


def answered(socks: list[socket.socket], expected: int) -> dict[int, bytes]:
    """What the server wrote on each of `socks` (by index), waiting until `expected` have an
    answer (a 503, or a reset: either way the server did not keep the connection)."""
    got: dict[int, bytes] = {}
    poller = select.poll()
    by_fd = {sock.fileno(): i for i, sock in enumerate(socks)}
    for fd in by_fd:
        poller.register(fd, select.POLLIN)
    deadline = time.monotonic() + 60
    while len(got) < expected and time.monotonic() < deadline:
        for fd, _ in poller.poll(200):
            i = by_fd[fd]
            try:
                got[i] = got.get(i, b"") + socks[i].recv(65536)
            except ConnectionResetError:
                got.setdefault(i, b"")
            if len(got[i]) == 0 or got[i].endswith(b"}"):  # the whole 503, or closed
                poller.unregister(fd)
    return got


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc and binds 127.0.0.x")
@pytest.mark.timeout(300)
def test_one_address_holding_1100_half_sent_requests_does_not_stop_another(checkpoint_dir):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 4096:
        ci.skip("this test holds about 2,200 connections itself")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 4096), hard))
    env = {"EXPLAINER_HEADER_TIMEOUT": "120", "EXPLAINER_LOG_LEVEL": "debug", "EXPLAINER_TRUSTED_PROXIES": None,
           "EXPLAINER_CLIENT_CONNECTIONS": None}
    # The soft limit starts low: start-up raises it to the hard one.
    with serving(serve_with_fd_limit(checkpoint_dir, 256, FD_LIMIT), env=env) as server:
        pid, port = server.process.pid, int(server.url.rsplit(":", 1)[1])
        limits = open(f"/proc/{pid}/limits").read()
        assert re.search(rf"Max open files\s+{FD_LIMIT}\s+{FD_LIMIT}", limits), limits
        per_client, cap = Settings().connections_per_client, FD_LIMIT - max(connections.MIN_RESERVED_FDS, FD_LIMIT // 8)
        socks: list[socket.socket] = []
        # The start-up's /healthz polls came from 127.0.0.1 too: none may still count against it.
        wait_for(lambda: server_side_connections(port) == 0, "the server closed the start-up's connections")
        try:
            flood = half_sent(port, "127.0.0.1", 1100)
            socks += flood
            refused = answered(flood, 1100 - per_client)
            assert len(refused) == 1100 - per_client
            held = [sock for i, sock in enumerate(flood) if i not in refused]
            assert len(held) == per_client and held == flood[:per_client]  # the first ones, in the order they came
            bodies = [json.loads(parse(raw)[2]) for raw in refused.values() if raw]
            assert bodies and {b["code"] for b in bodies} == {"too_many_connections"}
            print(f"1,100 half-sent requests from 127.0.0.1: {len(held)} held, {len(refused)} refused "
                  f"({len(bodies)} read their 503), server fds {open_fds(pid)} of {FD_LIMIT}")

            # Another computer is served throughout.
            with httpx.Client(base_url=server.url, transport=via("127.0.0.2"), timeout=WAIT_S,
                              headers={"Connection": "close"}) as other:
                for _ in range(10):
                    start = time.monotonic()
                    probe = other.get("/healthz")
                    assert probe.status_code == 200 and probe.json()["status"] == "ok"
                    print(f"  127.0.0.2 /healthz: 200 in {(time.monotonic() - start) * 1e3:.0f} ms")

            # Many computers together reach the server's own cap, below its descriptors: a new
            # connection is then a 503 too, not a failure to accept.
            wait_for(lambda: server_side_connections(port) == per_client, "the probes' connections closed")
            extra = []
            for n in range(10, 10 + (cap - per_client) // per_client + 2):
                extra += half_sent(port, f"127.0.0.{n}", per_client)
            socks += extra
            over = answered(extra, len(extra) - (cap - per_client))
            print(f"{per_client + len(extra)} connections from {1 + len(extra) // per_client} addresses: "
                  f"{len(over)} refused; server fds {open_fds(pid)} of {FD_LIMIT} (cap {cap})")
            assert len(over) == len(extra) - (cap - per_client)
            assert [i for i in range(len(extra)) if i not in over] == list(range(cap - per_client))  # in arrival order
            assert open_fds(pid) < FD_LIMIT
            late = connect(port, "127.0.0.2")
            late.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            status, headers, body = parse(until_closed(late)[0])
            error = json.loads(body)
            assert status == 503 and error["code"] == "too_many_connections", body
            assert "retry-after" in headers and "as many connections open as it can hold" in error["detail"]
        finally:
            for sock in socks:
                sock.close()

        # All released: the other computer is served again.
        def healthy() -> bool:
            try:
                with httpx.Client(transport=via("127.0.0.2"), timeout=WAIT_S) as client:
                    return client.get(f"{server.url}/healthz").status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, "the server answers once the flood has closed", 60)
        log = server.log
    assert "Too many open files" not in log and "out of system resource" not in log
    assert log.count("holds 64 connections (EXPLAINER_CLIENT_CONNECTIONS)") >= 1
    assert "as many as this server takes with its limit of open files" in log
