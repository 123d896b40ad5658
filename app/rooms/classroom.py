"""The classroom network (issue 23): where students reach this server, and who the teacher is.

Reachable. A server bound to loopback only (the default, 127.0.0.1) cannot be opened from a
student's laptop, so a room's QR code must never point there. The students' address is, in
order: EXPLAINER_PUBLIC_URL (behind a proxy, a school DNS name); the address this request
arrived on, when that is not loopback (the teacher opened the page by its LAN address, which is
then one the students can open too); the machine's first LAN address, when the server binds
every interface (`explainer serve --classroom`). Otherwise the room is not reachable, and the
page says which command makes it so (CLASSROOM_COMMAND).

The teacher holds the keys (Jupyter's model). Where students can reach the server (any bind but
loopback, seen per request from the address the request arrived on, so a bare uvicorn with
--host 0.0.0.0 is covered too) or when EXPLAINER_TEACHER_TOKEN is set, a teacher action (opening
and closing rooms) needs the teacher token: as `Authorization: Bearer <token>`, or in the cookie
that the teacher URL (`/?token=<token>`, printed on the terminal) sets. On a loopback-only server
everyone who can reach it is at the teacher's own keyboard, and needs nothing.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
import socket
from urllib.parse import quote
from dataclasses import dataclass


from app.errors import ApiError
from app.serving.settings import Settings

CLASSROOM_COMMAND = "explainer serve --classroom"
TEACHER_COOKIE = "explainer_teacher"
TOKEN_PARAM = "token"
COOKIE_MAX_AGE_S = 12 * 3600  # a school day; the teacher URL sets it again


def is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _network_address(host: str) -> bool:
    """An IP address another computer could have used (not loopback, not 0.0.0.0); a name (a test
    client's "testserver") says nothing about where a request came in."""
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return not (ip.is_loopback or ip.is_unspecified)


def binds_everywhere(host: str) -> bool:
    return host.strip("[]") in ("0.0.0.0", "::", "")


def lan_addresses() -> list[str]:
    """This machine's IPv4 addresses another computer on its network could use, the one with
    the default route first. No packet is sent: connecting a UDP socket only picks a route."""
    found: list[str] = []
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: never routed anywhere real
            found.append(probe.getsockname()[0])
    except OSError:  # no route at all (no network): the host name's addresses may still do
        pass
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET):
            found.append(info[4][0])
    except OSError:
        pass
    usable = []
    for address in dict.fromkeys(found):
        ip = ipaddress.ip_address(address)
        if not (ip.is_loopback or ip.is_link_local or ip.is_unspecified or ip.is_multicast):
            usable.append(address)
    return usable


def _origin(host: str, port: int, scheme: str = "http") -> str:
    default = {"http": 80, "https": 443}[scheme]
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}" + ("" if port == default else f":{port}")


@dataclass(frozen=True)
class Visit:
    """What the classroom needs to know of one request: the local address and port it arrived
    on, its scheme and base URL, and the teacher token it presents (Bearer, else the cookie)."""

    arrived: str = ""
    port: int = 80
    scheme: str = "http"
    base_url: str = "http://127.0.0.1"
    token: str | None = None

    @classmethod
    def read(cls, server: tuple | None, scheme: str, base_url: str, authorization: str, cookie: str | None) -> Visit:
        kind, _, value = authorization.partition(" ")
        token = value.strip() if kind.lower() == "bearer" and value.strip() else cookie
        server = server or ("", 0)
        return cls(server[0] or "", server[1] or 80, scheme, base_url.rstrip("/"), token)


def students_base(settings: Settings, visit: Visit) -> str | None:
    """The address students open (no trailing slash), or None when this server cannot be
    reached from another computer."""
    if settings.public_url:
        return settings.public_url
    arrived, port, scheme = visit.arrived, visit.port, visit.scheme
    if _network_address(arrived):
        return _origin(arrived, port, scheme)
    if is_loopback(settings.host):
        return None
    if binds_everywhere(settings.host):
        addresses = lan_addresses()
        return _origin(addresses[0], port, scheme) if addresses else None
    return _origin(settings.host, port, scheme)


class Teacher:
    """The teacher token of this server, and the check of a request against it."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.configured = settings.teacher_token is not None
        self.token = settings.teacher_token or secrets.token_urlsafe(24)

    def required(self, visit: Visit) -> bool:
        if self.configured or not is_loopback(self.settings.host):
            return True
        return _network_address(visit.arrived)

    def matches(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode("utf-8", "surrogateescape"), self.token.encode())

    def is_teacher(self, visit: Visit) -> bool:
        return not self.required(visit) or self.matches(visit.token)

    def check(self, visit: Visit) -> None:
        """403 `teacher_only` unless the request is the teacher's."""
        if not self.is_teacher(visit):
            given = visit.token
            why = ("the teacher token it carries is not this server's (a token made at start changes with each "
                   "start: open the teacher URL the terminal printed this time, or set EXPLAINER_TEACHER_TOKEN)"
                   if given else "it carries no teacher token: open the teacher URL the terminal printed "
                                 f"(it ends in /?{TOKEN_PARAM}=...), or send Authorization: Bearer <token>")
            raise ApiError(403, "teacher_only", f"authorization: only the teacher can do this here, and {why}.",
                           field="authorization")

    def url(self, base: str) -> str:
        return f"{base}/?{TOKEN_PARAM}={quote(self.token)}"


def summary(settings: Settings, teacher: Teacher, visit: Visit) -> dict:
    """What the page's room panel needs to know (schemas.Classroom)."""
    base = students_base(settings, visit)
    return {"teacher": teacher.is_teacher(visit), "token_required": teacher.required(visit),
            "reachable": base is not None, "students_base": base, "command": CLASSROOM_COMMAND}


def students_url(settings: Settings, visit: Visit, path: str) -> tuple[str, bool]:
    """The absolute URL students open for `path` (a room's), and whether another computer can
    reach it (if not, this server's own address: only good on this machine)."""
    base = students_base(settings, visit)
    return (base or visit.base_url) + path, base is not None


def announce(settings: Settings, port: int, teacher: Teacher, out=None) -> None:
    """On the terminal, at start: on a loopback-only bind, the command for a class; on any other,
    the address students open (with a QR code to scan from the projector) and the teacher URL."""
    import sys

    out = out or sys.stdout
    local = _origin("127.0.0.1" if binds_everywhere(settings.host) else settings.host.strip("[]"), port)
    if is_loopback(settings.host):
        print(f"Serving on {local}/ for this computer only. For a class, so that students' laptops can open it: "
              f"{CLASSROOM_COMMAND}", file=out, flush=True)
        return
    if settings.public_url:
        bases = [settings.public_url]
    elif binds_everywhere(settings.host):
        bases = [_origin(address, port) for address in lan_addresses()]
    else:
        bases = [_origin(settings.host.strip("[]"), port)]
    rule = "-" * 72
    lines = [rule, "  Classroom: students' laptops can reach this server."]
    if bases:
        lines += [f"  Students open:   {bases[0]}/", *(f"         or:      {b}/" for b in bases[1:])]
    else:
        lines += ["  This computer has no network address right now: join the classroom's network (Wi-Fi), then "
                  "start the server again."]
    lines += [f"  Teacher (you):   {teacher.url(bases[0] if bases else local)}",
              "                   open this one yourself, do not share it: it lets a browser open and close rooms.",
              rule]
    print("\n".join(lines), file=out, flush=True)
    if bases:
        import segno

        segno.make(bases[0] + "/", error="m").terminal(out=out, compact=True)
        out.flush()
