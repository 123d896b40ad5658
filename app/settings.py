"""Server settings, read from the environment (EXPLAINER_*) or given by the CLI."""

from __future__ import annotations

import os
from dataclasses import dataclass


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


class SettingsError(ValueError):
    """An EXPLAINER_* variable holds a value the server cannot use; the message names it."""


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
    # Forward passes at once. Two cores: one pass already uses both through torch's threads.
    max_concurrent: int = 1
    max_waiting: int = 16  # requests queued for a forward pass before the server answers 503
    request_timeout_s: float = 120.0
    cache_entries: int = 64
    cache_bytes: int = 1 << 30
    max_body_bytes: int = 1 << 20
    # analyze with patterns='auto' sends every layer's pattern only up to this many bytes
    # (float16): 241 tokens in GPT-2 small. Beyond, the page fetches them layer by layer.
    auto_pattern_bytes: int = 16 << 20

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            model=os.environ.get("EXPLAINER_MODEL") or None,
            revision=os.environ.get("EXPLAINER_REVISION") or None,
            random_weights=env_flag("EXPLAINER_RANDOM_WEIGHTS"),
            device=os.environ.get("EXPLAINER_DEVICE") or "cpu",
            log_level=(os.environ.get("EXPLAINER_LOG_LEVEL") or cls.log_level).lower(),
            max_concurrent=_int("EXPLAINER_MAX_CONCURRENT", cls.max_concurrent),
            max_waiting=_int("EXPLAINER_MAX_WAITING", cls.max_waiting, minimum=0),
            request_timeout_s=_float("EXPLAINER_REQUEST_TIMEOUT", cls.request_timeout_s, minimum=0.1),
            cache_entries=_int("EXPLAINER_CACHE_ENTRIES", cls.cache_entries),
            cache_bytes=_int("EXPLAINER_CACHE_BYTES", cls.cache_bytes),
            auto_pattern_bytes=_int("EXPLAINER_AUTO_PATTERN_BYTES", cls.auto_pattern_bytes, minimum=0),
        )
