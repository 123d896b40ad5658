"""Who is asking: the client's address, set per request by the access-log middleware and read
by the forward queue, which serves clients in turn. Never logged."""

from __future__ import annotations

import contextvars

client: contextvars.ContextVar[str] = contextvars.ContextVar("client", default="")
