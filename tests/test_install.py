"""The package as a user installs it: a wheel built from the repository, installed (not
editable) into a fresh virtual environment, serving the page, its scripts, plotly and /docs from
its own package data, run from a folder that holds no checkout."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import httpx

from .live_server import serving

ROOT = Path(__file__).resolve().parents[1]
PACKAGED = ("app", "model", "templates", "static", "pyproject.toml", "README.md")


def page_files(folder: str) -> set[str]:
    """The files a wheel must carry for `folder`, as app/{folder}/... names."""
    base = ROOT / folder
    return {f"app/{folder}/{p.relative_to(base).as_posix()}" for p in base.rglob("*")
            if p.is_file() and not p.name.startswith(".") and "__pycache__" not in p.parts}


def see_running_environment(python: Path) -> None:
    """Make the site-packages of the interpreter running the tests visible to the virtual
    environment of `python`, after its own (their .pth files processed, as at start-up)."""
    outer = [folder for folder in (*site.getsitepackages(), site.getusersitepackages()) if os.path.isdir(folder)]
    inner = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                           capture_output=True, text=True, check=True, timeout=60).stdout.strip()
    lines = [f"import site; site.addsitedir({folder!r})" for folder in outer]
    (Path(inner) / "zz_running_environment.pth").write_text("\n".join(lines) + "\n")


def test_the_wheel_serves_the_page_from_a_fresh_virtual_environment(tmp_path):
    source = tmp_path / "source"
    for name in PACKAGED:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path / "dist")], check=True, capture_output=True, timeout=300)
    [wheel] = (tmp_path / "dist").glob("explainer-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = (page_files("static") | page_files("templates")) - names
    assert not missing, f"the wheel lacks {sorted(missing)}"

    # The dependencies (torch alone is gigabytes) come from the environment running the tests (a
    # virtual environment's or the system's site-packages, through a .pth file: `venv
    # --system-site-packages` would see only the base interpreter's); the package itself only from
    # the wheel, whose folder comes first on sys.path.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python, explainer = venv / "bin" / "python", venv / "bin" / "explainer"
    see_running_environment(python)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--force-reinstall", str(wheel)],
                   check=True, capture_output=True, timeout=300)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run(
        [str(python), "-c", "import app, model; from app.page.resources import data_dir; "
                            "print(app.__file__, model.__file__, data_dir('static'), data_dir('templates'), sep='\\n')"],
        cwd=elsewhere, capture_output=True, text=True, check=True, timeout=60).stdout.split()
    assert all(Path(p).is_relative_to(venv) for p in where), where

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    with serving([str(explainer), "serve", "--random-weights"], cwd=str(elsewhere)) as server:
        responses = {path: httpx.get(server.url + path, timeout=30) for path in
                     ("/", "/static/main.js", "/static/style.css", "/static/vendor/plotly.min.js", "/docs",
                      "/static/swagger/swagger-ui-bundle.js", "/api/model", "/?lang=zh-CN")}
    assert {path: r.status_code for path, r in responses.items()} == dict.fromkeys(responses, 200)
    assert responses["/static/main.js"].content == (ROOT / "static" / "main.js").read_bytes()
    assert 'id="prompt-input"' in responses["/"].text
    assert '<html lang="zh-CN">' in responses["/?lang=zh-CN"].text  # the catalogs are package data too
    assert "Plotly" in responses["/static/vendor/plotly.min.js"].text[:5000]
    assert responses["/api/model"].json()["version"] == version
