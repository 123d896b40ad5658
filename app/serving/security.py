"""Security headers on every response, and the Host check that stops DNS rebinding.

The page satisfies a strict policy: scripts only from this server (no inline script; the model
info embedded in the page is a JSON data block, which is never executed), no plugins, no
framing unless EXPLAINER_FRAME_ANCESTORS allows it. Styles may be inline: plotly.js writes its
own <style> rules. Only /docs (Swagger UI, which starts from an inline script and holds no user
content) gets inline scripts.

A Host header that is an IP address cannot come from DNS rebinding, so it is always accepted
(students reach a teacher's laptop by its LAN address); a name must be a loopback name, the
name the server was started on (--host), or listed in EXPLAINER_ALLOWED_HOSTS.

A request that changes something (POST, PUT, DELETE, PATCH) sent by another web site is refused
(403 cross_site), so that no page a student opens elsewhere can open rooms or queue work here
with a plain HTML form: its `Sec-Fetch-Site` must be same-origin (or none: typed by the user),
and its `Origin`, when sent, must be this server's own (the Host it was asked by, or
EXPLAINER_PUBLIC_URL). A request with neither header (curl, a script) is not a browser's, and
passes."""

from __future__ import annotations

import ipaddress
import json
from urllib.parse import urlsplit

from app.errors import ApiError

LOOPBACK_NAMES = ("localhost",)


def policy(frame_ancestors: str, inline_scripts: bool = False) -> str:
    script = "'self' 'unsafe-inline'" if inline_scripts else "'self'"
    return (f"default-src 'self'; script-src {script}; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; "
            f"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors {frame_ancestors}")


def host_allowed(host_header: str, allowed: tuple[str, ...]) -> bool:
    host = host_header.strip().lower()
    if host.startswith("["):  # [::1]:8000
        name = host[1:].split("]", 1)[0]
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        pass
    return "*" in allowed or name in LOOPBACK_NAMES or name in allowed


UNSAFE_METHODS = {"POST", "PUT", "DELETE", "PATCH"}
SAME_SITE = {"same-origin", "none"}


def _netloc(url: str) -> str:
    """host[:port] of a URL, lower case, without the scheme's default port."""
    parts = urlsplit(url.lower())
    default = {"http": 80, "https": 443}.get(parts.scheme)
    try:
        port = parts.port
    except ValueError:
        return ""
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    return host if port in (None, default) else f"{host}:{port}"


def from_this_site(headers: dict, public_url: str | None = None) -> bool:
    """Whether a state-changing request comes from this server's own pages (or no browser)."""
    site = headers.get(b"sec-fetch-site")
    if site is not None and site.decode("latin-1").strip().lower() not in SAME_SITE:
        return False
    origin = headers.get(b"origin")
    if origin is None:
        return True
    origin = origin.decode("latin-1").strip()
    host = headers.get(b"host", b"").decode("latin-1").strip().lower()
    own = {host, _netloc(f"http://{host}"), _netloc(f"https://{host}")}
    if public_url:
        own.add(_netloc(public_url))
    return origin.lower() != "null" and _netloc(origin) in own


class Security:
    """Pure ASGI middleware: refuse a Host that is not ours (400) and a state-changing request
    from another site (403), and add the headers to every answer, refusals included."""

    def __init__(self, app, allowed_hosts: tuple[str, ...] | None, frame_ancestors: str = "'none'",
                 public_url: str | None = None):
        self.app = app
        self.public_url = public_url
        self.allowed_hosts = allowed_hosts  # None: no Host check (an app embedded in tests or elsewhere)
        self.headers = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
                        (b"cross-origin-opener-policy", b"same-origin")]
        self.page_policy = policy(frame_ancestors).encode()
        self.docs_policy = policy(frame_ancestors, inline_scripts=True).encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        if self.allowed_hosts is not None:
            host = headers.get(b"host", b"").decode("latin-1")
            if not host_allowed(host, self.allowed_hosts):
                detail = (f"Host {host!r} is not one this server answers to. Use its IP address or localhost, "
                          "or list the name in EXPLAINER_ALLOWED_HOSTS.")
                return await self._refuse(send, ApiError(400, "host_not_allowed", detail, field="host"))
        if scope["method"] in UNSAFE_METHODS and not from_this_site(headers, self.public_url):
            detail = ("origin: this request was sent by another web site; only this server's own pages may change "
                      "anything here.")
            return await self._refuse(send, ApiError(403, "cross_site", detail, field="origin"))
        csp = self.docs_policy if scope["path"] == "/docs" else self.page_policy

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self.headers, (b"content-security-policy", csp)]
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _refuse(self, send, error: ApiError) -> None:
        body = json.dumps(error.body()).encode()
        await send({"type": "http.response.start", "status": error.status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                *self.headers, (b"content-security-policy", self.page_policy)]})
        await send({"type": "http.response.body", "body": body})
