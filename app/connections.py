"""The connection layer under the app (issue 23): what uvicorn is told about proxies, read
timeouts and connections per client address. (Being built: see issue 23, part 4.)"""

from __future__ import annotations

from .settings import Settings


def uvicorn_options(settings: Settings) -> dict:
    """Keyword arguments for uvicorn.Config: X-Forwarded-For believed only from the proxies the
    operator names (uvicorn's own default trusts 127.0.0.1, which lets any local client name
    itself another client)."""
    trusted = ",".join(settings.trusted_proxies)
    return {"proxy_headers": bool(trusted), "forwarded_allow_ips": trusted or ""}
