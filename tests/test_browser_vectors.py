"""The embedding-space, logit-lens and anatomy views in Debian's Chromium, against the real
server (a subprocess) on a tiny real checkpoint. What the page shows (neighbours and their
cosines, arithmetic results, lens cells and their top 10, parameter counts) is read from the page
and compared with the API. Screenshots go to test-artifacts/vectors-*.png."""

from __future__ import annotations

import urllib.parse

import httpx
import pytest

from .browser import ARTIFACTS, CSP_WATCH, SETTLE, chromium, csp_violations, require_chromium, settle  # noqa: F401 (chromium: a fixture)
from .test_browser import server  # noqa: F401 (a fixture: the same checkpoint and settings, one server)

N_LAYERS = 3
PROMPT = "The king and the queen sat on the mat"

require_chromium()


ALLOWED: list[str] = []  # console errors a test causes on purpose (a 422 for a bad expression)
REQUESTS: list[str] = []  # every URL the page asked for


@pytest.fixture(scope="module")
def page(chromium, server):
    """One page for the module, opened on the analyzed prompt, under the server's CSP (the 3D
    map's WebGL included); console errors and CSP violations fail the module."""
    errors: list[str] = []
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    context.add_init_script(CSP_WATCH)
    context.add_init_script(SETTLE)
    page = context.new_page()
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    page.on("request", lambda r: REQUESTS.append(r.url))
    page.goto(f"{server}/?p={urllib.parse.quote(PROMPT)}")
    page.wait_for_selector("body[data-ready='1']", timeout=60_000)
    yield page
    violations = csp_violations(page)
    context.close()
    assert violations == [], violations
    unexpected = [e for e in errors if not any(a in e for a in ALLOWED)]
    assert not unexpected, f"console errors: {unexpected}"


def api(server: str, path: str, **params) -> dict:
    response = httpx.get(f"{server}{path}", params=params, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def run_id(page) -> str:
    return page.evaluate("() => { const s = window.explainer.store.state; return s.shown.main; }")


def shot(page, name: str, selector: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    # On screen first: the page's sections use content-visibility: auto, so an off-screen
    # section has a remembered size until it is rendered again.
    page.locator(selector).scroll_into_view_if_needed()
    settle(page)  # the debounced views have drawn
    page.locator(selector).screenshot(path=str(ARTIFACTS / f"vectors-{name}.png"))


def list_items(page, testid: str) -> list[tuple[int, float]]:
    return page.evaluate(
        f"() => [...document.querySelectorAll('[data-testid={testid}]')].map(n => [Number(n.dataset.tokenId), Number(n.dataset.cosine ?? n.dataset.prob)])")


def test_views_load_only_when_scrolled_to(page):
    """A new prompt costs no lens or map request until someone looks at those sections. (The
    overview, on the first screen, asks for one position's top guess, k=1: not the lens section.)"""
    page.wait_for_selector("[data-testid=anatomy-total-count]", state="attached", timeout=30_000)
    settle(page)  # whatever the first screen asks for has been asked
    section = lambda u: ("/logit-lens" in u and "&k=1&" not in u) or "/embedding-space/map" in u  # noqa: E731
    assert not [u for u in REQUESTS if section(u)]
    page.locator("#stage-logit-lens").scroll_into_view_if_needed()
    page.wait_for_selector("[data-testid=logit-lens][data-rows]", state="attached", timeout=30_000)
    assert [u for u in REQUESTS if section(u)]


def test_map_renders_with_the_prompt_highlighted(page, server):
    page.locator("#stage-embedding-space").scroll_into_view_if_needed()
    page.wait_for_selector("[data-testid=embedding-map][data-points]", state="attached", timeout=30_000)
    body = api(server, f"/api/runs/{run_id(page)}/embedding-space/map")
    box = page.get_by_test_id("embedding-map")
    assert int(box.get_attribute("data-points")) == len(body["points"])
    assert int(box.get_attribute("data-prompt")) == len({p["id"] for p in body["points"] if p["group"] == "prompt"}) == 8
    assert page.locator("[data-testid=embedding-map] .gl-container canvas, [data-testid=embedding-map] canvas").count() > 0
    assert "slice" in page.locator("#map-caption").text_content()
    # Adding words puts them on the map, with the API's note for a multi-token word.
    page.fill("#map-word", "queen, Kubernetes")
    page.click("#map-add button[type=submit]")
    page.wait_for_selector("[data-testid=embedding-map][data-words='2']", state="attached", timeout=30_000)
    assert "average" in page.locator("#map-notes").text_content()
    shot(page, "map", "#stage-embedding-space")


def test_neighbours_follow_the_token_in_focus_and_answer_a_word(page, server):
    page.locator("#stage-embedding-space").scroll_into_view_if_needed()
    chips = page.get_by_test_id("token")  # sticky: they stay reachable from every section
    chips.nth(1).hover()  # ' king'
    page.wait_for_selector("[data-testid=neighbours][data-query='token:5822']", state="attached", timeout=30_000)
    expected = api(server, "/api/embedding-space/neighbours", token_id=5822, k=10)["neighbours"]
    got = list_items(page, "neighbour")
    assert [i for i, _ in got] == [n["id"] for n in expected]
    assert [round(c, 5) for _, c in got] == [round(n["cosine"], 5) for n in expected]
    page.locator("h1").hover()
    page.fill("#neighbours-word", "Paris")
    page.click("#neighbours-form button")
    page.wait_for_selector("[data-testid=neighbours][data-query='word:Paris']", state="attached", timeout=30_000)
    expected = api(server, "/api/embedding-space/neighbours", word="Paris", k=10)["neighbours"]
    assert [i for i, _ in list_items(page, "neighbour")] == [n["id"] for n in expected]
    page.fill("#neighbours-word", "")
    page.dispatch_event("#neighbours-word", "input")


def test_arithmetic_and_dot_product_match_the_api(page, server):
    page.get_by_test_id("arithmetic-input").fill("Paris - France + Italy")
    page.click("#arithmetic-form button")
    expected = api(server, "/api/embedding-space/arithmetic", expression="Paris - France + Italy", k=10)["neighbours"]
    page.wait_for_function(
        f"() => document.querySelector('[data-testid=arithmetic-result]')?.dataset.tokenId === '{expected[0]['id']}'",
        timeout=30_000)
    assert [i for i, _ in list_items(page, "arithmetic-result")] == [n["id"] for n in expected]
    # A bad expression is explained next to the box, not silently ignored.
    ALLOWED.append("status of 422")
    page.get_by_test_id("arithmetic-input").fill("king +")
    page.click("#arithmetic-form button")
    page.wait_for_selector("#arithmetic-error:not([hidden])", timeout=30_000)
    assert "operator" in page.locator("#arithmetic-error").text_content()
    dot = api(server, "/api/embedding-space/dot", a="cat", b="dog")
    page.wait_for_selector("[data-testid=dot-result][data-cosine]", state="attached", timeout=30_000)
    assert float(page.get_by_test_id("dot-result").get_attribute("data-cosine")) == pytest.approx(dot["cosine"], abs=1e-6)
    assert float(page.get_by_test_id("dot-result").get_attribute("data-dot")) == pytest.approx(dot["dot"], abs=1e-6)
    page.get_by_test_id("arithmetic-input").fill("Paris - France + Italy")
    page.click("#arithmetic-form button")
    page.wait_for_selector("#arithmetic-error[hidden]", state="attached", timeout=30_000)


def test_lens_grid_has_a_cell_per_layer_and_position(page, server):
    page.locator("#stage-logit-lens").scroll_into_view_if_needed()
    page.wait_for_selector("[data-testid=logit-lens][data-rows]", state="attached", timeout=30_000)
    n = page.get_by_test_id("token").count()
    body = api(server, f"/api/runs/{run_id(page)}/logit-lens", k=10)
    assert len(body["rows"]) == N_LAYERS + 1  # the embedding, then each block's output
    cells = page.evaluate(
        "() => [...document.querySelectorAll('[data-testid=lens-cell]')].map(c => [Number(c.dataset.row), Number(c.dataset.pos), Number(c.dataset.tokenId), Number(c.dataset.prob), Number(c.dataset.rank)])")
    assert len(cells) == (N_LAYERS + 1) * n
    for r, p, token_id, prob, rank in cells:
        cell = body["cells"][r][p]
        assert token_id == cell["top"][0]["id"]
        assert prob == pytest.approx(cell["top"][0]["prob"], rel=1e-6)
        assert rank == cell["final_rank"]
    # The last row is the model's output: its top guess at the last token is the analyze top 1.
    analyzed = httpx.post(f"{server}/api/analyze", json={"text": PROMPT}, timeout=60).json()
    assert cells[-1][2] == analyzed["top"][0]["id"]
    # Clicking a cell lists that cell's top 10.
    page.locator("[data-testid=lens-cell][data-row='1'][data-pos='3']").click()
    page.wait_for_selector("#lens-cell[data-row='1'][data-pos='3']", state="attached")
    top = list_items(page, "lens-top")
    assert [i for i, _ in top] == [t["id"] for t in body["cells"][1][3]["top"]]
    assert [p for _, p in top] == pytest.approx([t["prob"] for t in body["cells"][1][3]["top"]], rel=1e-6)
    # The keyboard reaches the grid too: one tab stop, arrows move, Enter lists the cell.
    page.locator("[data-testid=lens-cell][data-row='0'][data-pos='0']").focus()
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("Enter")
    page.wait_for_selector("#lens-cell[data-row='1'][data-pos='1']", state="attached")
    assert [i for i, _ in list_items(page, "lens-top")] == [t["id"] for t in body["cells"][1][1]["top"]]
    shot(page, "lens", "#stage-logit-lens")
    # The toggle adds the stream after attention: embed + 2 rows per layer.
    page.get_by_test_id("lens-mid").check()
    page.wait_for_selector(f"[data-testid=logit-lens][data-rows='{2 * N_LAYERS + 1}']", state="attached", timeout=30_000)
    assert page.get_by_test_id("lens-cell").count() == (2 * N_LAYERS + 1) * n
    shot(page, "lens-mid", "#stage-logit-lens")
    page.get_by_test_id("lens-mid").uncheck()
    page.wait_for_selector(f"[data-testid=logit-lens][data-rows='{N_LAYERS + 1}']", state="attached", timeout=30_000)


def test_anatomy_counts_equal_the_api(page, server):
    page.wait_for_selector("[data-testid=anatomy-total-count]", state="attached", timeout=30_000)
    body = api(server, "/api/anatomy")
    loaded, gpt3 = body["models"]
    assert page.get_by_test_id("anatomy-total-count").text_content().replace(",", "") == str(body["n_params"])
    counts = page.evaluate("() => Object.fromEntries([...document.querySelectorAll('#anatomy-table tr[data-kind]')].map(r => [r.dataset.kind, Number(r.dataset.count)]))")
    assert counts == {k["key"]: k["count"] for k in loaded["kinds"]}
    assert "175.2 B" in page.get_by_test_id("anatomy").text_content()
    assert page.locator("[data-testid=anatomy-chart] .main-svg").count() > 0
    shot(page, "anatomy", "#stage-anatomy")
