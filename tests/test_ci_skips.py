"""tests/ci.py: a skip outside CI, a failure in CI (a missing Ray or a machine that cannot run a
test must not pass CI silently)."""

from __future__ import annotations

import _pytest.outcomes
import pytest

from . import ci


@pytest.mark.parametrize("in_ci, outcome", [(False, _pytest.outcomes.Skipped), (True, _pytest.outcomes.Failed)])
def test_a_skip_fails_in_ci(monkeypatch, in_ci, outcome):
    monkeypatch.setattr(ci, "IN_CI", in_ci)
    with pytest.raises(outcome, match="Ray cannot start"):
        ci.skip("Ray cannot start on this machine")
    with pytest.raises(outcome, match="the cluster extra is not installed.*no_such_module_here"):
        ci.importorskip("no_such_module_here", reason="the cluster extra is not installed")
    assert ci.importorskip("json", reason="the standard library").dumps([1]) == "[1]"


def test_ci_is_read_from_the_environment():
    import importlib
    import os

    assert ci.IN_CI == bool(os.environ.get("CI"))
    assert importlib.reload(ci).IN_CI == bool(os.environ.get("CI"))
