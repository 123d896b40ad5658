"""The connection layer under the app (issue 23, part 4): what uvicorn is told about proxies, and
the limits it has no option for, kept by our own subclasses of its HTTP protocol classes.

- X-Forwarded-For is believed only from the proxies the operator names (EXPLAINER_TRUSTED_PROXIES;
  uvicorn's own default trusts 127.0.0.1, which lets any local client name itself another client
  and escape the per-client limits).
- A request's headers must be complete within EXPLAINER_HEADER_TIMEOUT of its first byte (or of the
  connection's opening), else the connection is closed: a slow-loris client cannot hold it. (The
  body's own deadline, EXPLAINER_BODY_TIMEOUT, is kept by errors.BodySizeLimit, which answers 408.)
  Headers over MAX_HEADER_BYTES are a 400.
- Open connections are counted per client address (EXPLAINER_CLIENT_CONNECTIONS; a trusted proxy
  speaks for many clients and is exempt) and in all, below the open-file limit, which start-up
  raises to its hard limit. A connection beyond either cap is answered at once with a short 503
  (`too_many_connections`, Retry-After, our security headers) and closed, so that the server never
  runs out of descriptors and one address holding hundreds of half-sent requests cannot keep
  another address out.
- The 400 uvicorn writes for a request it cannot parse as HTTP carries our error body and headers
  too (a bare `uvicorn app.main:app`, or Ray's proxy, writes uvicorn's own plain-text one).

Under Ray Serve, Ray's HTTP proxy runs its own uvicorn, which these classes do not reach: see
app/cluster.py for its X-Forwarded-For, and the README (Security) for what holds there.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
from collections import Counter

from app.serving.settings import Settings

log = logging.getLogger("explainer")

RETRY_AFTER_S = 2  # a refused connection's Retry-After
REFUSAL_LINGER_S = 1.0  # a refused connection waits this long at most for the client to read the 503 and close
MAX_HEADER_BYTES = 64 << 10  # a request's start line and headers (h11 alone stops at 16 KiB; llhttp has no limit)
# Descriptors kept out of the connection cap: the model's files, logs, pipes, threads' wake-ups, and
# refused connections lingering for their 503 to be read (at most half of this many at once).
MIN_RESERVED_FDS = 64


def raise_open_file_limit() -> int | None:
    """Raise this process's soft limit on open files (RLIMIT_NOFILE) to its hard limit, so that
    the connection cap can be high; returns the soft limit now in force (None: no such limit here)."""
    try:
        import resource
    except ImportError:  # Windows: no RLIMIT_NOFILE
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # An unlimited hard limit (macOS) cannot be the soft one: the kernel takes at most its own maximum.
    for target in (hard, 1 << 20, 10240) if hard == resource.RLIM_INFINITY else (hard,):
        if soft != resource.RLIM_INFINITY and soft >= target:
            break
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            log.debug("Open-file limit raised from %d to %d (the hard limit is %s)", soft, target, hard)
            soft = target
            break
        except (ValueError, OSError):
            continue
    return soft


def open_file_limit() -> int | None:
    try:
        import resource
    except ImportError:
        return None
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return None if soft == resource.RLIM_INFINITY else soft


class ConnectionTable:
    """Open connections, by client address and in all (`cap`: below the open-file limit by a
    reserve), for one server."""

    def __init__(self, per_client: int, fd_limit: int | None, exempt: tuple[str, ...] = ()):
        self.per_client = per_client
        self.reserve = None if fd_limit is None else max(MIN_RESERVED_FDS, fd_limit // 8)
        self.cap = None if fd_limit is None else max(1, fd_limit - self.reserve)
        self.exempt_all = "*" in exempt
        self.exempt = tuple(ipaddress.ip_network(e, strict=False) for e in exempt if e != "*")
        self.by_client: Counter[str] = Counter()
        self.open = 0
        self.lingering = 0  # refused connections waiting for the client to read their 503
        self.refused = 0  # since start
        self._full: set[str] = set()  # what is refusing now ("" for the server): logged once each time

    def _is_proxy(self, host: str) -> bool:
        if self.exempt_all:
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self.exempt)

    def admit(self, host: str) -> str | None:
        """Count a new connection from `host`, or say why not: "server" or "client"."""
        if self.cap is not None and self.open >= self.cap:
            return self._refuse("", "%d connections are open, as many as this server takes with its limit of open "
                                    "files: new ones are answered 503 until some close", self.open)
        if host and self.by_client[host] >= self.per_client and not self._is_proxy(host):
            # The address is not logged (app/serving/clients.py): students' addresses are personal.
            return self._refuse(host, "A client address holds %d connections (EXPLAINER_CLIENT_CONNECTIONS): its new "
                                      "ones are answered 503 until some close", self.per_client)
        self.open += 1
        self.by_client[host] += 1
        return None

    def _refuse(self, key: str, message: str, count: int) -> str:
        self.refused += 1
        if key not in self._full:
            self._full.add(key)
            log.warning(message, count)
        return "client" if key else "server"

    def release(self, host: str) -> None:
        self.open -= 1
        self.by_client[host] -= 1
        if self.by_client[host] <= 0:
            del self.by_client[host]
        if self.by_client.get(host, 0) < self.per_client:
            self._full.discard(host)
        if self.cap is None or self.open < self.cap:
            self._full.discard("")

    def may_linger(self) -> bool:
        return self.reserve is None or self.lingering < self.reserve // 2


def error_response(status: int, reason: str, body: dict, security_headers: list[tuple[bytes, bytes]],
                   extra: tuple[tuple[bytes, bytes], ...] = ()) -> bytes:
    """A whole HTTP/1.1 response with our error body and headers, that closes the connection."""
    content = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode()),
               (b"connection", b"close"), *extra, *security_headers]
    head = b"".join(name + b": " + value + b"\r\n" for name, value in headers)
    return b"HTTP/1.1 %d %s\r\n" % (status, reason.encode()) + head + b"\r\n" + content


class _Refused(asyncio.Protocol):
    """A connection over a cap: its 503 written at once, what the client sends read and dropped
    (a close with unread data would reset the connection before the client reads the answer), and
    closed when the client closes, or after REFUSAL_LINGER_S."""

    def __init__(self, table: ConnectionTable, response: bytes):
        self.table, self.response = table, response
        self.timer = None

    def connection_made(self, transport) -> None:
        transport.write(self.response)
        if not self.table.may_linger() or not transport.can_write_eof():
            transport.close()  # descriptors are short: no waiting for the client
            return
        self.table.lingering += 1
        transport.write_eof()
        self.timer = asyncio.get_running_loop().call_later(REFUSAL_LINGER_S, transport.close)

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> bool:
        return False  # the client has read and closed: close our end

    def connection_lost(self, exc) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.table.lingering -= 1


class _Guard:
    """Mixed into uvicorn's HTTP protocol classes (one instance per connection): the caps, the
    header deadline, and our own 400. `settings`, `table` and the prepared responses are class
    attributes, set by `protocol_class`."""

    table: ConnectionTable
    header_timeout_s: float
    responses: dict[str, bytes]
    _header_timer: asyncio.TimerHandle | None = None
    _header_bytes = 0
    _host: str | None = None  # counted under this address in the table

    def connection_made(self, transport) -> None:
        peer = transport.get_extra_info("peername")
        host = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        refusal = self.table.admit(host)
        if refusal is not None:  # hand the connection to a refusal, as uvicorn hands one to a WebSocket
            refused = _Refused(self.table, self.responses[refusal])
            transport.set_protocol(refused)
            refused.connection_made(transport)
            return
        self._host = host
        super().connection_made(transport)
        self._await_headers()

    def connection_lost(self, exc) -> None:
        self._headers_done()
        if self._host is not None:
            self.table.release(self._host)
            self._host = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._before_data()
        super().data_received(data)
        if not self._headers_pending():
            self._headers_done()
        elif not self.transport.is_closing():
            self._header_bytes += len(data)  # all of it belongs to headers still unfinished
            if self._header_bytes > MAX_HEADER_BYTES:
                self._headers_done()
                self.send_400_response(f"The request's headers are over {MAX_HEADER_BYTES // 1024} KB.")

    def _before_data(self) -> None:
        """Start the header deadline if this data begins a request (h11: no callback says so)."""

    def _headers_pending(self) -> bool:
        """Whether a request's headers are still unfinished (httptools: between its callbacks)."""
        return self._header_timer is not None

    def _await_headers(self) -> None:
        if self._header_timer is None:
            self._header_bytes = 0
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _headers_done(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            log.debug("A connection was closed: its request's headers were not complete within %g s "
                      "(EXPLAINER_HEADER_TIMEOUT)", self.header_timeout_s)
            self.transport.close()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to bytes that are not an HTTP request, with our body and headers."""
        body = {"detail": f"{msg} (answered by the server before the app saw the request)", "code": "invalid",
                "field": None, "errors": []}
        self.transport.write(error_response(400, "Bad Request", body, self.responses["headers"]))
        self.transport.close()


def protocol_class(settings: Settings, kind: str = "auto") -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol class (httptools where installed, as its "auto"; else h11) with the
    caps and the header deadline of these settings. Each call makes a class with its own table of
    connections: one per server."""
    from app.serving import security
    from app.errors import ApiError

    if kind == "auto":
        try:
            import httptools  # noqa: F401
            kind = "httptools"
        except ImportError:
            kind = "h11"
    base, hooks = _httptools_base() if kind == "httptools" else _h11_base()
    page = security.Security(None, None, settings.frame_ancestors)
    headers = [*page.headers, (b"content-security-policy", page.page_policy)]
    retry = ((b"retry-after", str(RETRY_AFTER_S).encode()),)

    def busy(detail: str) -> bytes:
        body = ApiError(503, "too_many_connections", detail).body()
        return error_response(503, "Service Unavailable", body, headers, retry)

    responses = {
        "client": busy(f"This computer has {settings.connections_per_client} connections open to the server, the most "
                       "one may hold (EXPLAINER_CLIENT_CONNECTIONS): close some tabs, or try again in a moment."),
        "server": busy("The server has as many connections open as it can hold; try again in a moment."),
        "headers": headers,
    }
    table = ConnectionTable(settings.connections_per_client, open_file_limit(), settings.trusted_proxies)
    log.debug("Connections: at most %s in all, %d per client address; headers within %g s, bodies within %g s",
              table.cap or "any number", settings.connections_per_client, settings.header_timeout_s, settings.body_timeout_s)
    return type(f"Guarded{base.__name__}", (hooks, _Guard, base),
                {"table": table, "header_timeout_s": settings.header_timeout_s, "responses": responses})


def _httptools_base():
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class Hooks:
        """llhttp's callbacks mark a request's start and the end of its headers."""

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._await_headers()

        def on_headers_complete(self) -> None:
            self._headers_done()
            super().on_headers_complete()

    return HttpToolsProtocol, Hooks


def _h11_base():
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class Hooks:
        """h11 has no callbacks: a request is waiting for its headers while the client's state is IDLE."""

        def _before_data(self) -> None:
            if self.conn.their_state is h11.IDLE:
                self._await_headers()

        def _headers_pending(self) -> bool:
            return self.conn.their_state is h11.IDLE

    return H11Protocol, Hooks


def uvicorn_options(settings: Settings, http: str = "auto") -> dict:
    """Keyword arguments for uvicorn.Config: X-Forwarded-For believed only from the proxies the
    operator names, the protocol class with the caps and the header deadline, and no WebSocket
    upgrade (the app has no WebSocket route, and an upgraded connection would leave the table)."""
    trusted = ",".join(settings.trusted_proxies)
    return {"proxy_headers": bool(trusted), "forwarded_allow_ips": trusted or "",
            "http": protocol_class(settings, http), "ws": "none"}
