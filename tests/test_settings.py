"""Every EXPLAINER_* value is checked at start-up: a value the server cannot use is one line
naming the variable and what it accepts (the CLI and a bare uvicorn then exit 2, see
test_cli.py), never a traceback and never a server that starts and then refuses or hangs."""

from __future__ import annotations

import re

import pytest

from app.serving.settings import Settings, SettingsError

BAD = [
    ("EXPLAINER_MAX_CONCURRENT", "abc"), ("EXPLAINER_MAX_CONCURRENT", "0"),  # 0 slots: every request would hang
    ("EXPLAINER_MAX_WAITING", "0"), ("EXPLAINER_MAX_WAITING", "-1"),  # 0: every request refused
    ("EXPLAINER_REQUEST_TIMEOUT", "-1"), ("EXPLAINER_REQUEST_TIMEOUT", "nan"), ("EXPLAINER_REQUEST_TIMEOUT", "inf"),
    ("EXPLAINER_CACHE_ENTRIES", "1.5"), ("EXPLAINER_CACHE_BYTES", "1XB"), ("EXPLAINER_CACHE_BYTES", "-5"),
    ("EXPLAINER_AUTO_PATTERN_BYTES", "lots"),
    ("EXPLAINER_RANDOM_WEIGHTS", "maybe"), ("EXPLAINER_DEVICE", "meta"), ("EXPLAINER_DEVICE", "cuda:x"),
    ("EXPLAINER_LOG_LEVEL", "loud"),
    # The classroom network (issue 23): typos the operator must see, not lists the server guesses at.
    ("EXPLAINER_ALLOWED_HOSTS", ",,"), ("EXPLAINER_ALLOWED_HOSTS", "a.example,,b.example"),
    ("EXPLAINER_ALLOWED_HOSTS", "class room.local"),
    ("EXPLAINER_PUBLIC_URL", "192.168.1.20:8000"), ("EXPLAINER_PUBLIC_URL", "ftp://class.example"),
    ("EXPLAINER_PUBLIC_URL", "http://class.example/?x=1"), ("EXPLAINER_PUBLIC_URL", "http://class.example:99999"),
    ("EXPLAINER_TRUSTED_PROXIES", "10.0.0.0/33"), ("EXPLAINER_TRUSTED_PROXIES", "proxy.local"),
    ("EXPLAINER_HEADER_TIMEOUT", "0"), ("EXPLAINER_BODY_TIMEOUT", "never"),
    ("EXPLAINER_CLIENT_CONNECTIONS", "0"), ("EXPLAINER_CLIENT_ROOMS", "0"), ("EXPLAINER_CLIENT_FOLLOWERS", "-2"),
]


@pytest.mark.parametrize("variable, value", BAD)
def test_a_bad_value_names_its_variable(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=rf"^{variable} must be .*, got {re.escape(repr(value))}\.$"):
        Settings.from_env()


def test_a_bad_teacher_token_is_refused_without_echoing_it(monkeypatch):
    monkeypatch.setenv("EXPLAINER_TEACHER_TOKEN", "short secret")
    with pytest.raises(SettingsError, match=r"^EXPLAINER_TEACHER_TOKEN must be 16 to 256 ") as caught:
        Settings.from_env()
    assert "short secret" not in str(caught.value)


@pytest.mark.parametrize("variable, value, field, expected", [
    ("EXPLAINER_CACHE_BYTES", "1GB", "cache_bytes", 10**9),
    ("EXPLAINER_CACHE_BYTES", "512MiB", "cache_bytes", 512 * 2**20),
    ("EXPLAINER_CACHE_BYTES", "1073741824", "cache_bytes", 2**30),
    ("EXPLAINER_AUTO_PATTERN_BYTES", "1.5 kb", "auto_pattern_bytes", 1500),
    ("EXPLAINER_RANDOM_WEIGHTS", "Yes", "random_weights", True),
    ("EXPLAINER_RANDOM_WEIGHTS", "off", "random_weights", False),
    ("EXPLAINER_DEVICE", "cuda:1", "device", "cuda:1"),
    ("EXPLAINER_REQUEST_TIMEOUT", "2.5", "request_timeout_s", 2.5),
    ("EXPLAINER_LOG_LEVEL", "DEBUG", "log_level", "debug"),
    ("EXPLAINER_ALLOWED_HOSTS", " Class.Example , laptop.local", "allowed_hosts", ("class.example", "laptop.local")),
    ("EXPLAINER_PUBLIC_URL", "https://explainer.school.example/", "public_url", "https://explainer.school.example"),
    ("EXPLAINER_TEACHER_TOKEN", "x" * 16, "teacher_token", "x" * 16),
    ("EXPLAINER_TRUSTED_PROXIES", "127.0.0.1, 10.0.0.0/8", "trusted_proxies", ("127.0.0.1", "10.0.0.0/8")),
    ("EXPLAINER_HOST", "0.0.0.0", "host", "0.0.0.0"),
    ("EXPLAINER_CLIENT_ROOMS", "5", "rooms_per_client", 5),
])
def test_good_values_are_read(monkeypatch, variable, value, field, expected):
    monkeypatch.setenv(variable, value)
    assert getattr(Settings.from_env(), field) == expected


def test_unset_means_the_defaults(monkeypatch):
    for variable in {v for v, _ in BAD} | {"EXPLAINER_MODEL", "EXPLAINER_REVISION", "EXPLAINER_ALLOWED_HOSTS",
                                           "EXPLAINER_TEACHER_TOKEN", "EXPLAINER_HOST"}:
        monkeypatch.delenv(variable, raising=False)
    # From the environment (a real server), the Host check is on: no names beyond the defaults.
    assert Settings.from_env() == Settings(allowed_hosts=())
