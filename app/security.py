"""Security headers on every response, and the Host check that stops DNS rebinding.

The page satisfies a strict policy: scripts only from this server (no inline script; the model
info embedded in the page is a JSON data block, which is never executed), no plugins, no
framing unless EXPLAINER_FRAME_ANCESTORS allows it. Styles may be inline: plotly.js writes its
own <style> rules. Only /docs (Swagger UI, which starts from an inline script and holds no user
content) gets inline scripts.

A Host header that is an IP address cannot come from DNS rebinding, so it is always accepted
(students reach a teacher's laptop by its LAN address); a name must be a loopback name, the
name the server was started on (--host), or listed in EXPLAINER_ALLOWED_HOSTS."""

from __future__ import annotations

import ipaddress
import json

from .errors import ApiError

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


class Security:
    """Pure ASGI middleware: refuse a Host that is not ours (400), and add the headers."""

    def __init__(self, app, allowed_hosts: tuple[str, ...] | None, frame_ancestors: str = "'none'"):
        self.app = app
        self.allowed_hosts = allowed_hosts  # None: no Host check (an app embedded in tests or elsewhere)
        self.headers = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
                        (b"cross-origin-opener-policy", b"same-origin")]
        self.page_policy = policy(frame_ancestors).encode()
        self.docs_policy = policy(frame_ancestors, inline_scripts=True).encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if self.allowed_hosts is not None:
            host = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1")
            if not host_allowed(host, self.allowed_hosts):
                return await self._refuse(send, host)
        csp = self.docs_policy if scope["path"] == "/docs" else self.page_policy

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self.headers, (b"content-security-policy", csp)]
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _refuse(self, send, host: str) -> None:
        detail = (f"Host {host!r} is not one this server answers to. Use its IP address or localhost, "
                  "or list the name in EXPLAINER_ALLOWED_HOSTS.")
        body = json.dumps(ApiError(400, "host_not_allowed", detail, field="host").body()).encode()
        await send({"type": "http.response.start", "status": 400,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                *self.headers]})
        await send({"type": "http.response.body", "body": body})
