"""Every EXPLAINER_* value is checked at start-up: a value the server cannot use is one line
naming the variable and what it accepts (the CLI and a bare uvicorn then exit 2, see
test_cli.py), never a traceback and never a server that starts and then refuses or hangs."""

from __future__ import annotations

import pytest

from app.settings import Settings, SettingsError

BAD = [
    ("EXPLAINER_MAX_CONCURRENT", "abc"), ("EXPLAINER_MAX_CONCURRENT", "0"),  # 0 slots: every request would hang
    ("EXPLAINER_MAX_WAITING", "0"), ("EXPLAINER_MAX_WAITING", "-1"),  # 0: every request refused
    ("EXPLAINER_REQUEST_TIMEOUT", "-1"), ("EXPLAINER_REQUEST_TIMEOUT", "nan"), ("EXPLAINER_REQUEST_TIMEOUT", "inf"),
    ("EXPLAINER_CACHE_ENTRIES", "1.5"), ("EXPLAINER_CACHE_BYTES", "1XB"), ("EXPLAINER_CACHE_BYTES", "-5"),
    ("EXPLAINER_AUTO_PATTERN_BYTES", "lots"),
    ("EXPLAINER_RANDOM_WEIGHTS", "maybe"), ("EXPLAINER_DEVICE", "meta"), ("EXPLAINER_DEVICE", "cuda:x"),
    ("EXPLAINER_LOG_LEVEL", "loud"),
]


@pytest.mark.parametrize("variable, value", BAD)
def test_a_bad_value_names_its_variable(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=rf"^{variable} must be .*, got {value!r}\.$"):
        Settings.from_env()


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
])
def test_good_values_are_read(monkeypatch, variable, value, field, expected):
    monkeypatch.setenv(variable, value)
    assert getattr(Settings.from_env(), field) == expected


def test_unset_means_the_defaults(monkeypatch):
    for variable in {v for v, _ in BAD} | {"EXPLAINER_MODEL", "EXPLAINER_REVISION", "EXPLAINER_ALLOWED_HOSTS"}:
        monkeypatch.delenv(variable, raising=False)
    # From the environment (a real server), the Host check is on: no names beyond the defaults.
    assert Settings.from_env() == Settings(allowed_hosts=())
