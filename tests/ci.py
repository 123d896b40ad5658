"""Skips that cannot hide a failure in CI: where CI is set (CI=true, as CI services set it), a
missing extra or a machine that cannot run a test fails it instead of skipping it silently."""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest

IN_CI = bool(os.environ.get("CI"))


def skip(reason: str) -> None:
    """Skip here; in CI, fail with the reason."""
    if IN_CI:
        pytest.fail(f"skipped in CI, which must run it: {reason}")
    pytest.skip(reason)


def importorskip(name: str, reason: str) -> ModuleType:
    """pytest.importorskip; in CI, a module that does not import fails the test."""
    try:
        return importlib.import_module(name)
    except ImportError as error:
        skip(f"{reason} ({error})")
