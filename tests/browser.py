"""What the browser tests share: Debian's Chromium (never a downloaded browser), its flags for
this closed network, and where screenshots go. Importing this skips the module when Chromium is
missing on a developer's machine, and fails it in CI, where .ci/run must have installed it."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps trying hosts it cannot reach.
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


def require_chromium() -> None:
    if Path(CHROMIUM).exists():
        return
    if os.environ.get("CI"):
        pytest.fail(f"{CHROMIUM} is missing: CI must install Debian's chromium", pytrace=False)
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def chromium():
    """Debian's Chromium, launched once per module (import this fixture into the test module)."""
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


# Runs before the page's own scripts: every Content-Security-Policy violation is kept.
CSP_WATCH = ("window.__cspViolations = []; document.addEventListener('securitypolicyviolation', "
             "(e) => window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`));")


def csp_violations(page) -> list[str]:
    return page.evaluate("window.__cspViolations || []")


@contextlib.contextmanager
def checkpoint_server(tmp_path_factory, name: str, seed: int, **shapes):
    """A real server on a tiny checkpoint of these shapes: its base URL."""
    from .conftest import build_checkpoint
    from .live_server import live_server

    with live_server(build_checkpoint(tmp_path_factory.mktemp(name), seed=seed, **shapes)) as url:
        yield url


def open_page(browser, url: str, width: int, height: int, query: str = "", before_goto=None, bypass_csp: bool = False):
    """A page under the server's CSP (violations kept), console errors collected, opened on
    `url/query` and loaded: (context, page, errors). `before_goto(page)` can add routes first.
    `bypass_csp` for tests that wait on page predicates (Playwright evaluates them as strings)."""
    context = browser.new_context(viewport={"width": width, "height": height}, bypass_csp=bypass_csp)
    context.add_init_script(CSP_WATCH)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    page.on("pageerror", lambda e: errors.append(str(e)))
    if before_goto:
        before_goto(page)
    page.goto(f"{url}/{query}")
    page.wait_for_selector("body[data-loaded='1']")
    return context, page, errors
