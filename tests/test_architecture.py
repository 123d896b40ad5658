"""The design, checked on the import graph: every arrow between app/'s floors points down, no
router imports another, routes reach the model only through the Lab (no router or dependency
imports model/), model/ never imports app/, and no service takes an HTTP request."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Lowest first. A module may import its own floor and the floors below it, never above.
FLOORS = [
    ("model", ("model",)),
    ("contract", ("app.schemas", "app.page.resources", "app.page.stages")),  # shapes, and the files they read
    ("serving", ("app.errors", "app.serving")),  # the error type, queues, budgets, settings, logs
    ("work", ("app.runs", "app.rooms", "app.page")),  # the services
    ("front door", ("app.lab",)),
    ("routes", ("app.deps", "app.routers")),
    ("top", ("app.main", "app.contract", "app.cli", "app.cluster", "app.download")),
]


def floor(module: str) -> int:
    best, found = -1, None
    for number, (_, prefixes) in enumerate(FLOORS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, found = len(prefix), number
    if found is None:
        raise AssertionError(f"{module} is on no floor: add it to FLOORS in {Path(__file__).name}")
    return found


def modules() -> dict[str, Path]:
    found = {}
    for package in ("app", "model"):
        for path in sorted((ROOT / package).rglob("*.py")):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            found[name] = path
    return found


MODULES = modules()


def imports(module: str) -> set[str]:
    """The modules of this project that `module` imports, anywhere in it (function-level too)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in MODULES)
    return {name for name in out if name in MODULES or name in ("app", "model")} - {"app", module}


def test_every_module_is_on_a_floor():
    for module in MODULES:
        if module not in ("app", "model"):
            floor(module)


def test_arrows_point_down():
    up = [f"{m} (floor {FLOORS[floor(m)][0]}) imports {t} (floor {FLOORS[floor(t)][0]})"
          for m in MODULES if m not in ("app", "model") for t in sorted(imports(m)) if floor(t) > floor(m)]
    assert not up, "\n".join(up)


def test_model_never_imports_app():
    assert not [(m, t) for m in MODULES if m.startswith("model") for t in imports(m) if t.startswith("app")]


def test_routes_reach_the_model_only_through_the_lab():
    """Routers and their dependencies import nothing from model/: not its functions, not its types."""
    leaks = [(m, t) for m in MODULES if m.startswith("app.routers") or m == "app.deps"
             for t in imports(m) if t == "model" or t.startswith("model.")]
    assert not leaks


def test_no_router_imports_another():
    routers = {m for m in MODULES if m.startswith("app.routers.")}
    assert not [(m, t) for m in routers for t in imports(m) if t in routers]


def test_no_service_takes_a_request():
    """Services below the routes take what they need (a Caller, a client key), never Starlette's Request."""
    takers = []
    for module, path in MODULES.items():
        if not module.startswith(("app.runs", "app.lab", "app.rooms", "app.page", "app.serving.concurrency",
                                                                           "app.serving.budget", "app.serving.batcher")):
            continue
        tree = ast.parse(path.read_text())
        http = {alias.asname or alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                and (node.module or "").split(".")[0] in ("fastapi", "starlette") for alias in node.names
                if alias.name in ("Request", "HTTPConnection", "WebSocket")}
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for arg in node.args.args + node.args.kwonlyargs:
                    if arg.annotation is not None and ast.unparse(arg.annotation) in http:
                        takers.append(f"{module}.{node.name}({arg.arg})")
    assert not takers


@pytest.mark.parametrize("bad", ["import app.main\n", "from app.lab import Lab\n"])
def test_the_walk_sees_an_arrow_up(tmp_path, monkeypatch, bad):
    """The checks above can fail: a services module that imported the top would be caught."""
    fake = tmp_path / "analysis.py"
    fake.write_text(bad)
    monkeypatch.setitem(MODULES, "app.runs.analysis", fake)
    with pytest.raises(AssertionError):
        test_arrows_point_down()
