"""What the browser tests share: one Debian's Chromium for the whole run (never a downloaded
browser), its flags for this closed network, where screenshots go, and `settle`, the wait for a
page at rest that stands where fixed sleeps stood. Outside CI a missing Chromium, Playwright or
axe skips the module; in CI (`CI` set), where .ci/run must have installed them, it fails."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps trying hosts it cannot reach.
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


def missing(what: str) -> None:
    """A browser test cannot run here: it fails in CI (which must have installed `what`), and skips
    the module on a developer's machine."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing: CI must install it", pytrace=False)
    pytest.skip(f"{what} is missing", allow_module_level=True)


def require_chromium() -> None:
    """Debian's Chromium and Playwright's Python package, or the module fails in CI (else skips)."""
    if not Path(CHROMIUM).exists():
        missing(f"{CHROMIUM} (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing("playwright (pip install -e '.[dev]')")


def require_axe():
    """axe-core's runner (axe-playwright-python), or the module fails in CI (else skips): its Axe class."""
    try:
        from axe_playwright_python.sync_playwright import Axe
    except ImportError:
        missing("axe-playwright-python (pip install -e '.[dev]')")
    return Axe


class SharedChromium:
    """The run's one Chromium, which the `chromium` fixture hands to every browser test: launched
    when a test first needs it (again if it crashed), and closed by conftest's
    pytest_runtest_teardown when the next module's first test needs none, since Playwright's sync
    API holds an event loop that an `asyncio.run` in another module's test would trip on. A test
    uses it as it would a Browser (`new_context`, `new_page`): each test's contexts are its own."""

    def __init__(self) -> None:
        self._playwright = None
        self._browser = None

    def browser(self):
        if self._browser is None or not self._browser.is_connected():
            self.close()
            require_chromium()
            from playwright.sync_api import sync_playwright

            self._playwright = sync_playwright().start()
            self._browser = self._playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        return self._browser

    def close(self) -> None:
        browser, playwright, self._browser, self._playwright = self._browser, self._playwright, None, None
        try:
            if browser is not None and browser.is_connected():
                browser.close()
        finally:
            if playwright is not None:
                playwright.stop()

    def __getattr__(self, name):
        return getattr(self.browser(), name)


SHARED_CHROMIUM = SharedChromium()


@pytest.fixture(scope="session")
def chromium():
    """Debian's Chromium, one for the whole run (see SharedChromium). Importing this fixture into a
    test module still works; conftest provides it to every module too."""
    require_chromium()
    yield SHARED_CHROMIUM
    SHARED_CHROMIUM.close()


# Runs before the page's own scripts: every Content-Security-Policy violation is kept.
CSP_WATCH = ("window.__cspViolations = []; document.addEventListener('securitypolicyviolation', "
             "(e) => window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`));")


def csp_violations(page) -> list[str]:
    return page.evaluate("window.__cspViolations || []")


# Runs before the page's own scripts: counts the page's fetches in flight and its short timers
# pending (debounces, coalescing: up to a second; longer ones are retries and back-offs), and
# defines window.__settled(limit_ms, fetches), which resolves true once there are none (fetches
# not counted if `fetches` is false) and the scroll position
# has held for a few polls, after two frames (so that what a scroll or a click set off has
# started), or false after `limit_ms`; and window.__frames(n), n frames. It runs under the
# page's CSP: evaluate, not eval.
SETTLE = """(() => {
  if (window.__settled) return;
  const setT = window.setTimeout.bind(window), clearT = window.clearTimeout.bind(window), fetch0 = window.fetch.bind(window);
  const timers = new Set();
  let inflight = 0;
  window.fetch = (...args) => {
    inflight++;
    let answer;
    try { answer = fetch0(...args); } catch (error) { inflight--; throw error; }
    answer.then(() => inflight--, () => inflight--);
    return answer;
  };
  window.setTimeout = (fn, ms, ...rest) => {
    if (typeof fn !== 'function' || ms > 1000) return setT(fn, ms, ...rest);
    const id = setT((...a) => { timers.delete(id); fn(...a); }, ms, ...rest);
    timers.add(id);
    return id;
  };
  window.clearTimeout = (id) => { timers.delete(id); clearT(id); };
  const frame = () => new Promise((r) => { requestAnimationFrame(() => r()); setT(r, 100); });
  window.__frames = async (n = 2) => { for (let i = 0; i < n; i++) await frame(); return true; };
  window.__settled = async (limit_ms = 30000, fetches = true) => {
    await frame(); await frame();
    const end = performance.now() + limit_ms;
    let quiet = 0, y = scrollY, x = scrollX;
    while (quiet < 4) {
      if (performance.now() > end) return false;
      await new Promise((r) => setT(r, 25));
      const still = scrollY === y && scrollX === x;
      [y, x] = [scrollY, scrollX];
      quiet = (inflight === 0 || !fetches) && timers.size === 0 && still ? quiet + 1 : 0;
    }
    await frame();
    return true;
  };
})();"""


def settle(page, limit_ms: int = 30_000, fetches: bool = True) -> None:
    """Wait for the page to be at rest: no fetch in flight (unless `fetches` is False: a test holds
    one back), no debounce pending, the scroll still, then a frame drawn (the page's context must
    have SETTLE among its init scripts). Where a fixed sleep "let the views draw", this waits for
    exactly that, and fails if it never comes."""
    assert page.evaluate("([ms, f]) => window.__settled ? window.__settled(ms, f) : null", [limit_ms, fetches]), \
        "the page did not come to rest (or SETTLE was not among its init scripts)"


def frames(page, n: int = 2) -> None:
    """Wait for `n` frames (what a scroll brought on screen has been seen: the lazy views'
    observers have fired and asked for their data). For stepping through stages; settle after."""
    assert page.evaluate("(n) => window.__frames ? window.__frames(n) : null", n), "SETTLE was not among the init scripts"


def open_page(browser, url: str, width: int, height: int, query: str = "", before_goto=None, bypass_csp: bool = False):
    """A page under the server's CSP (violations kept), console errors collected, opened on
    `url/query` and loaded: (context, page, errors). `before_goto(page)` can add routes first.
    `bypass_csp` for tests that wait on page predicates (Playwright evaluates them as strings)."""
    context = browser.new_context(viewport={"width": width, "height": height}, bypass_csp=bypass_csp)
    context.add_init_script(CSP_WATCH)
    context.add_init_script(SETTLE)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    page.on("pageerror", lambda e: errors.append(str(e)))
    if before_goto:
        before_goto(page)
    page.goto(f"{url}/{query}")
    page.wait_for_selector("body[data-loaded='1']")
    return context, page, errors
