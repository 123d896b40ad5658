"""The page rides out what a classroom server goes through, in Chromium: a server restarted
under it (its runs forgotten: the page analyzes the text again and gets the same run id, since
ids come from the content) and a connection reset (an idempotent request is sent once more)."""

from __future__ import annotations

import pytest

from .browser import CSP_WATCH, SETTLE, chromium, csp_violations, require_chromium, settle  # noqa: F401 (chromium is a fixture)
from .live_server import free_port, serve_command, serving
from .test_browser import server, tiny  # noqa: F401 (server: a fixture)

require_chromium()

PROMPT = "The cat sat on the mat"


@pytest.fixture(scope="module")
def model_dir(checkpoints):
    """The browser tests' tiny checkpoint (3 layers), for a server of this test's own to stop."""
    return tiny(checkpoints)


def open_page(chromium, url):
    context = chromium.new_context(viewport={"width": 1280, "height": 720})
    context.add_init_script(CSP_WATCH)
    context.add_init_script(SETTLE)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    page.on("pageerror", lambda e: errors.append(str(e)))
    with page.expect_response(lambda r: "/api/analyze" in r.url) as analyzed:
        page.goto(f"{url}/?p={PROMPT.replace(' ', '%20')}")
    page.wait_for_selector("[data-testid=token]")
    page.wait_for_selector(".ov-lens title", state="attached")  # the overview's last request is answered: the page is at rest
    page.run_id = analyzed.value.json()["run_id"]
    return context, page, errors


def shown_errors(page) -> list[str]:
    return page.evaluate("() => [...document.querySelectorAll('.error, [role=alert]')]"
                         ".filter(e => !e.hidden && e.offsetParent && e.textContent.trim()).map(e => e.textContent.trim())")


def test_a_restarted_server_gets_the_run_back_by_analyzing_again(chromium, model_dir):
    command = serve_command(model_dir)
    port = free_port()
    with serving(command, port=port) as first:
        context, page, errors = open_page(chromium, first.url)
    with serving(command, port=port):
        with page.expect_response(lambda r: "/api/analyze" in r.url) as analyzed:
            with page.expect_response(lambda r: "/layers/2" in r.url and r.status == 200) as layer:
                page.get_by_test_id("layer-select").select_option("2")
        # The new server issued the same id for the same text, and the page's request went through.
        assert analyzed.value.json()["run_id"] == page.run_id
        assert f"/api/runs/{page.run_id}/layers/2" in layer.value.url
        settle(page)
        assert shown_errors(page) == []
    # The 404 that started it is the only console error (Chromium logs every failed load).
    assert all("404" in e for e in errors), errors
    assert csp_violations(page) == []
    context.close()


def test_a_reset_connection_is_retried_once(chromium, server):
    """On the shared server: the reset is the browser's, the server goes on."""
    context, page, errors = open_page(chromium, server)
    aborted = []

    def reset_once(route):
        if not aborted:
            aborted.append(route.request.url)
            route.abort("connectionreset")
        else:
            route.continue_()

    page.route("**/api/runs/*/layers/1*", reset_once)
    with page.expect_response(lambda r: "/layers/1" in r.url and r.status == 200):
        page.get_by_test_id("layer-select").select_option("1")
    settle(page)
    assert aborted and shown_errors(page) == []
    assert all("ERR_CONNECTION_RESET" in e for e in errors), errors
    assert csp_violations(page) == []
    context.close()
