"""Server settings, read from the environment (EXPLAINER_*) or given by the CLI."""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from app.serving.logs import LEVELS as LOG_LEVELS

TRUE, FALSE = {"1", "true", "yes", "on"}, {"", "0", "false", "no", "off"}
SIZE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}
DEVICE = re.compile(r"cpu|cuda(:\d+)?")


class SettingsError(ValueError):
    """An EXPLAINER_* variable holds a value the server cannot use; the message names it."""


def _flag(name: str) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if value not in TRUE | FALSE:
        raise SettingsError(f"{name} must be one of 1, true, yes, on (or 0, false, no, off), got {value!r}.")
    return value in TRUE


def _choice(name: str, default: str, pattern: re.Pattern | tuple, accepted: str) -> str:
    value = (os.environ.get(name) or default).strip().lower()
    ok = value in pattern if isinstance(pattern, tuple) else pattern.fullmatch(value)
    if not ok:
        raise SettingsError(f"{name} must be {accepted}, got {value!r}.")
    return value


def _size(name: str, default: int) -> int:
    """Bytes, plain (1073741824) or with a unit (1GB, 512MiB)."""
    value = os.environ.get(name)
    if not value:
        return default
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", value)
    unit = match and match.group(2).lower()
    if not match or unit not in SIZE_UNITS:
        raise SettingsError(f"{name} must be a size in bytes, plain or with a unit (KB, MB, GB, KiB, MiB, GiB), got {value!r}.")
    return int(float(match.group(1)) * SIZE_UNITS[unit])


def _hosts(name: str) -> tuple[str, ...]:
    """Host names, comma-separated. Unset or empty: none. A list with an empty entry (",,", "a,,b")
    or a name with spaces is a typo the operator should see, not a list the server guesses at."""
    value = os.environ.get(name, "")
    if not value.strip():
        return ()
    names = [h.strip().lower() for h in value.split(",")]
    if any(not h or not re.fullmatch(r"\*|[a-z0-9._:\[\]-]+", h) for h in names):
        raise SettingsError(f"{name} must be host names separated by commas (like class.example.org,laptop.local), "
                            f"got {value!r}.")
    return tuple(names)


def _networks(name: str) -> tuple[str, ...]:
    """IP addresses or networks (10.0.0.0/8), comma-separated; "*" trusts every address."""
    value = os.environ.get(name, "")
    if not value.strip():
        return ()
    items = [v.strip() for v in value.split(",")]
    for item in items:
        try:
            if item != "*":
                ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise SettingsError(f"{name} must be IP addresses or networks separated by commas (like 127.0.0.1,10.0.0.0/8), "
                                f"got {value!r}.") from None
    return tuple(items)


def _public_url(name: str) -> str | None:
    """http(s)://host[:port][/path], without a query or fragment; kept without its trailing slash."""
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment \
            or parts.username or " " in value:
        raise SettingsError(f"{name} must be the address students open, like http://192.168.1.20:8000 or "
                            f"https://explainer.school.example, got {value!r}.")
    return value.rstrip("/")


def _token(name: str) -> str | None:
    value = os.environ.get(name)
    if value is None or value == "":
        return None
    if not re.fullmatch(r"[A-Za-z0-9._~-]{16,256}", value):
        raise SettingsError(f"{name} must be 16 to 256 letters, digits or . _ ~ - (it goes in a URL), got a value "
                            f"of {len(value)} characters that is not.")
    return value


def _number(name: str, default, kind: type, minimum, what: str):
    value = os.environ.get(name)
    if not value:
        return default
    try:
        number = kind(value)
    except ValueError:
        raise SettingsError(f"{name} must be {what}, got {value!r}.") from None
    # A limit of 0 forward passes or a timeout of 0 s would not fail: every request would hang.
    if not minimum <= number < float("inf"):  # NaN fails this too
        raise SettingsError(f"{name} must be {what} of at least {minimum}, got {value!r}.")
    return number


def _int(name: str, default: int, minimum: int = 1) -> int:
    return _number(name, default, int, minimum, "a whole number")


def _float(name: str, default: float, minimum: float) -> float:
    return _number(name, default, float, minimum, "a number of seconds")


@dataclass(frozen=True)
class Settings:
    # A Hugging Face Hub id or a local save_pretrained directory. None: GPT-2 small from the
    # Hugging Face cache or the Hub, and if neither has it, random weights (said loudly).
    model: str | None = None
    revision: str | None = None  # a Hub branch, tag or commit
    random_weights: bool = False
    device: str = "cpu"
    log_level: str = "info"
    # Host names (besides IP addresses and localhost) the server answers to; None: no check.
    allowed_hosts: tuple[str, ...] | None = None
    frame_ancestors: str = "'none'"  # CSP frame-ancestors: who may embed the page
    # Forward passes at once. Two, sharing the cores (model/threads.py): a pass alone uses every
    # core, and a decode step can run beside an analysis instead of waiting for it to end.
    max_concurrent: int = 2
    # Requests queued for a forward pass before the server answers 503. Two per student of a
    # class of 30, and more: the queue is fair and each client may hold 8 of it, so a longer
    # queue costs only waiting, while a 503 costs a retry 2 s later at the back of the line
    # (the 10-minute soak with 16 saw 750 503s and 9 requests that gave up after 5 retries).
    max_waiting: int = 64
    request_timeout_s: float = 120.0
    # Generations stepped together in one forward pass (model/batching.py): sixteen cost little
    # more than one. 1: each generation steps alone, in its own turn of the queue.
    decode_batch: int = 16
    cache_entries: int = 64
    cache_bytes: int = 1 << 30
    # Above the largest body the schema allows: 100,000 characters of prompt, each escaped in
    # JSON as up to 12 bytes (a surrogate pair), is 1.2 MB.
    max_body_bytes: int = 2 << 20
    # analyze with patterns='auto' sends every layer's pattern only up to this many bytes
    # (float16): 241 tokens in GPT-2 small. Beyond, the page fetches them layer by layer.
    auto_pattern_bytes: int = 16 << 20
    # Follow-the-teacher rooms (app/rooms/store.py): at most this many open at once, each closed after
    # this long without a publish from the teacher's page (which refreshes it while it is open).
    rooms_max: int = 64
    room_idle_s: float = 7200.0
    # The classroom network (issue 23). `host`: the address the server binds (--host; --classroom
    # binds 0.0.0.0); on any bind but loopback, teacher actions need the teacher token.
    host: str = "127.0.0.1"
    # The address students open (behind a proxy, or a school DNS name); None: the LAN address.
    public_url: str | None = None
    # None: a random one per start, printed in the teacher URL on a non-loopback bind.
    teacher_token: str | None = None
    # Addresses whose X-Forwarded-For is believed (a reverse proxy); none by default, so that a
    # client cannot name itself another client and escape the per-client limits.
    trusted_proxies: tuple[str, ...] = ()
    # A request's headers, and then its body, must arrive within these (a slow-loris client).
    header_timeout_s: float = 10.0
    body_timeout_s: float = 10.0
    # Per client address: open connections (a page holds about 6, and a follow stream), rooms it
    # opened, and room event streams it holds (a student with a few tabs).
    connections_per_client: int = 64
    rooms_per_client: int = 3
    followers_per_client: int = 8

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            model=os.environ.get("EXPLAINER_MODEL") or None,
            revision=os.environ.get("EXPLAINER_REVISION") or None,
            random_weights=_flag("EXPLAINER_RANDOM_WEIGHTS"),
            device=_choice("EXPLAINER_DEVICE", cls.device, DEVICE, "cpu, or cuda / cuda:N on a machine with a GPU"),
            allowed_hosts=_hosts("EXPLAINER_ALLOWED_HOSTS"),
            frame_ancestors=os.environ.get("EXPLAINER_FRAME_ANCESTORS", "").strip() or cls.frame_ancestors,
            log_level=_choice("EXPLAINER_LOG_LEVEL", cls.log_level, LOG_LEVELS, "one of " + ", ".join(LOG_LEVELS)),
            max_concurrent=_int("EXPLAINER_MAX_CONCURRENT", cls.max_concurrent),
            max_waiting=_int("EXPLAINER_MAX_WAITING", cls.max_waiting),  # 0 would refuse every request
            request_timeout_s=_float("EXPLAINER_REQUEST_TIMEOUT", cls.request_timeout_s, minimum=0.1),
            decode_batch=_int("EXPLAINER_DECODE_BATCH", cls.decode_batch),
            cache_entries=_int("EXPLAINER_CACHE_ENTRIES", cls.cache_entries),
            cache_bytes=_size("EXPLAINER_CACHE_BYTES", cls.cache_bytes),
            auto_pattern_bytes=_size("EXPLAINER_AUTO_PATTERN_BYTES", cls.auto_pattern_bytes),
            rooms_max=_int("EXPLAINER_ROOMS_MAX", cls.rooms_max),
            room_idle_s=_float("EXPLAINER_ROOM_IDLE", cls.room_idle_s, minimum=1.0),
            host=(os.environ.get("EXPLAINER_HOST") or cls.host).strip(),
            public_url=_public_url("EXPLAINER_PUBLIC_URL"),
            teacher_token=_token("EXPLAINER_TEACHER_TOKEN"),
            trusted_proxies=_networks("EXPLAINER_TRUSTED_PROXIES"),
            header_timeout_s=_float("EXPLAINER_HEADER_TIMEOUT", cls.header_timeout_s, minimum=0.1),
            body_timeout_s=_float("EXPLAINER_BODY_TIMEOUT", cls.body_timeout_s, minimum=0.1),
            connections_per_client=_int("EXPLAINER_CLIENT_CONNECTIONS", cls.connections_per_client),
            rooms_per_client=_int("EXPLAINER_CLIENT_ROOMS", cls.rooms_per_client),
            followers_per_client=_int("EXPLAINER_CLIENT_FOLLOWERS", cls.followers_per_client),
        )
