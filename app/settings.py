"""Server settings, read from the environment (EXPLAINER_*) or given by the CLI."""

from __future__ import annotations

import os
from dataclasses import dataclass


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def _float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


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
            max_waiting=_int("EXPLAINER_MAX_WAITING", cls.max_waiting),
            request_timeout_s=_float("EXPLAINER_REQUEST_TIMEOUT", cls.request_timeout_s),
            cache_entries=_int("EXPLAINER_CACHE_ENTRIES", cls.cache_entries),
            cache_bytes=_int("EXPLAINER_CACHE_BYTES", cls.cache_bytes),
            auto_pattern_bytes=_int("EXPLAINER_AUTO_PATTERN_BYTES", cls.auto_pattern_bytes),
        )
