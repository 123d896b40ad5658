"""Where the page's own files are. Installed (a wheel, `pip install .`), they are package data
inside `app`: app/templates and app/static, mapped there by pyproject from the repository's
top-level templates/ and static/. In a source checkout or an editable install, `app` is the
repository's folder, and the same names sit beside it."""

from __future__ import annotations

from functools import cache
from importlib import metadata, resources
from pathlib import Path

DISTRIBUTION = "explainer"


def data_dir(name: str) -> Path:
    """The directory of the page's `name` ('templates' or 'static'), as a real path: Starlette's
    StaticFiles and Jinja2's loader read from the file system."""
    package = Path(str(resources.files("app")))
    for candidate in (package / name, package.parent / name):
        if candidate.is_dir():
            return candidate
    raise RuntimeError(f"The page's {name}/ folder is missing: expected it at {package / name}. Reinstall the package.")


@cache
def version() -> str:
    """The installed version, whose one source is pyproject.toml."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:  # a checkout run without installing it
        return "0+unknown"
