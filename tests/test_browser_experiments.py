"""Switching heads off on the main page (issue 11), in a real browser: a head ablated through the
UI re-analyzes the prompt with that intervention; the bars' probabilities are the API's
intervened distribution (POST /api/analyze with the same intervention, softmax of its logits),
the ghost bars the clean run's; the intervention is listed and in the URL; removing it brings
the bars back to the clean values."""

from __future__ import annotations

import json
import urllib.parse

import httpx
import numpy as np

from app.runs.tensors import decode

from .browser import chromium  # noqa: F401 (a fixture)
from .test_browser import Page, api_analyze, server, softmax  # noqa: F401 (server: a fixture)

PROMPT = "When Mary and John went to the store, John gave a drink to"
LAYER, HEAD = 1, 2
ABLATION = {"hook": f"blocks.{LAYER}.attn.hook_z", "op": "zero", "head": HEAD}


def intervened(server: str, text: str, interventions: list[dict]) -> dict:
    response = httpx.post(f"{server}/api/analyze", json={"text": text, "interventions": interventions}, timeout=60)
    response.raise_for_status()
    return response.json()


def bars(page: Page) -> dict[int, float]:
    return dict(page.page.evaluate(
        "() => [...document.querySelectorAll('[data-testid=prob-bar]')].map(b => [Number(b.dataset.tokenId), Number(b.dataset.prob)])"))


def ghosts(page: Page) -> dict[int, float]:
    return dict(page.page.evaluate(
        "() => [...document.querySelectorAll('[data-testid=ghost-bar]')].map(b => [Number(b.dataset.tokenId), Number(b.dataset.prob)])"))


def test_switching_a_head_off_moves_the_bars_over_ghosts_of_the_clean_run(chromium, server):
    page = Page(chromium, server)
    try:
        page.open(f"?p={urllib.parse.quote(PROMPT)}")
        clean = softmax(decode(api_analyze(server, PROMPT)["tensors"]["logits"]).astype(np.float64), 1.0)
        body = intervened(server, PROMPT, [ABLATION])
        assert [{k: v for k, v in x.items() if v is not None} for x in body["interventions"]] == [ABLATION]
        ablated = softmax(decode(body["tensors"]["logits"]).astype(np.float64), 1.0)
        # The head matters (relatively: the tiny random model's distribution is nearly flat), and the
        # comparisons below are relative, so they could tell the two runs apart.
        assert np.abs(ablated / clean - 1).max() > 1e-2

        shown = bars(page)
        np.testing.assert_allclose(list(shown.values()), clean[list(shown)], rtol=1e-4, atol=1e-9)
        assert page.page.get_by_test_id("ghost-bar").count() == 0  # nothing switched off: no ghosts

        # Switch the head off through the overview, in "switch heads off" mode.
        page.page.get_by_test_id("ablate-toggle").click()
        assert page.page.get_by_test_id("ablate-toggle").get_attribute("aria-pressed") == "true"
        before = page.runs()
        page.page.locator(f"[data-testid=overview-head][data-layer='{LAYER}'][data-head='{HEAD}']").dispatch_event("click")
        page.wait_run(before)
        page.page.wait_for_selector("[data-testid=ghost-bar]")

        shown = bars(page)
        assert list(shown) == [t["id"] for t in body["top"]]
        assert np.abs(ablated[list(shown)] / clean[list(shown)] - 1).max() > 1e-3  # bars and ghosts differ
        np.testing.assert_allclose(list(shown.values()), ablated[list(shown)], rtol=1e-4, atol=1e-9)
        ghost = ghosts(page)
        assert list(ghost) == list(shown)
        np.testing.assert_allclose(list(ghost.values()), clean[list(ghost)], rtol=1e-4, atol=1e-9)
        # The selection did not move (the click switched the head off instead of selecting it).
        assert page.page.evaluate("() => [explainer.store.state.layer, explainer.store.state.head]") == [0, 0]

        # At another temperature both follow: the ghost is the clean run's at that temperature.
        page.set_temperature(0.5)
        np.testing.assert_allclose(list(bars(page).values()), softmax(decode(body["tensors"]["logits"]), 0.5)[list(shown)], rtol=1e-4, atol=1e-9)
        np.testing.assert_allclose(list(ghosts(page).values()),
                                   softmax(decode(api_analyze(server, PROMPT)["tensors"]["logits"]), 0.5)[list(ghost)], rtol=1e-4, atol=1e-9)
        page.set_temperature(1.0)

        # Listed, marked in the overview and the head grid, and in the URL.
        items = page.page.get_by_test_id("intervention")
        assert items.count() == 1
        assert items.first.get_attribute("data-hook") == ABLATION["hook"]
        assert f"{LAYER}" in items.first.inner_text() and f"{HEAD}" in items.first.inner_text()
        head = page.page.locator(f"[data-testid=overview-head][data-layer='{LAYER}'][data-head='{HEAD}']")
        assert "ablated" in head.get_attribute("class")
        assert page.page.locator(f"[data-testid=overview-cross][data-layer='{LAYER}'][data-head='{HEAD}']").get_attribute("visibility") == "visible"
        page.page.wait_for_function("new URLSearchParams(location.search).has('abl')")
        url = urllib.parse.parse_qs(urllib.parse.urlparse(page.page.url).query)
        assert json.loads(url["abl"][0]) == [ABLATION]
        page.page.set_viewport_size({"width": 1280, "height": 720})
        page.shot("experiments-ablated", of="#stage-output")
        page.shot("experiments-list", of="#stage-experiments")

        # Remove it: the bars are the clean run's again, without ghosts.
        before = page.runs()
        page.page.get_by_test_id("remove-intervention").click()
        page.wait_run(before)
        assert page.page.get_by_test_id("intervention").count() == 0
        assert page.page.get_by_test_id("ghost-bar").count() == 0
        shown = bars(page)
        np.testing.assert_allclose(list(shown.values()), clean[list(shown)], rtol=1e-4, atol=1e-9)
        assert "ablated" not in head.get_attribute("class")
        page.page.wait_for_function("!new URLSearchParams(location.search).has('abl')")
        assert not page.unexpected_errors(), page.errors
    finally:
        page.close()


def test_the_url_interventions_are_applied_when_the_page_opens(chromium, server):
    page = Page(chromium, server)
    try:
        page.open(f"?p={urllib.parse.quote(PROMPT)}&abl={urllib.parse.quote(json.dumps([ABLATION]))}")
        page.page.wait_for_selector("[data-testid=ghost-bar]")
        ablated = softmax(decode(intervened(server, PROMPT, [ABLATION])["tensors"]["logits"]).astype(np.float64), 1.0)
        shown = bars(page)
        np.testing.assert_allclose(list(shown.values()), ablated[list(shown)], rtol=1e-4, atol=1e-9)
        assert page.page.get_by_test_id("intervention").count() == 1
        # A whole MLP layer, from its button; then "clear all".
        before = page.runs()
        page.page.get_by_test_id("ablate-mlp-layer").click()
        page.wait_run(before)
        assert page.page.get_by_test_id("intervention").count() == 2
        both = [ABLATION, {"hook": "blocks.0.hook_mlp_out", "op": "zero"}]
        expected = softmax(decode(intervened(server, PROMPT, both)["tensors"]["logits"]).astype(np.float64), 1.0)
        shown = bars(page)
        np.testing.assert_allclose(list(shown.values()), expected[list(shown)], rtol=1e-4, atol=1e-9)
        before = page.runs()
        page.page.get_by_test_id("clear-interventions").click()
        page.wait_run(before)
        assert page.page.get_by_test_id("ghost-bar").count() == 0
        assert not page.unexpected_errors(), page.errors
    finally:
        page.close()


def test_a_neuron_switched_off_from_the_mlp_list_and_a_head_from_the_head_grid(chromium, server):
    page = Page(chromium, server)
    try:
        page.open(f"?p={urllib.parse.quote(PROMPT)}")
        # The MLP list's most active neuron, switched off from its button.
        page.page.locator("#stage-mlp").scroll_into_view_if_needed()
        button = page.page.get_by_test_id("ablate-neuron").first
        button.wait_for()
        neuron = int(button.get_attribute("data-neuron"))
        before = page.runs()
        button.click()
        page.wait_run(before)
        off = {"hook": "blocks.0.mlp.hook_post", "op": "zero", "neuron": neuron}
        expected = softmax(decode(intervened(server, PROMPT, [off])["tensors"]["logits"]).astype(np.float64), 1.0)
        shown = bars(page)
        np.testing.assert_allclose(list(shown.values()), expected[list(shown)], rtol=1e-4, atol=1e-9)
        assert page.page.get_by_test_id("intervention").first.get_attribute("data-hook") == off["hook"]
        # In "switch heads off" mode, a head of the attention stage's grid is switched off too.
        page.page.get_by_test_id("ablate-toggle").click()
        page.page.locator("#stage-attention").scroll_into_view_if_needed()
        before = page.runs()
        page.page.locator(f"#head-grid button.head[data-layer='0'][data-head='{HEAD}']").click()
        page.wait_run(before)
        both = [off, {"hook": "blocks.0.attn.hook_z", "op": "zero", "head": HEAD}]
        expected = softmax(decode(intervened(server, PROMPT, both)["tensors"]["logits"]).astype(np.float64), 1.0)
        shown = bars(page)
        np.testing.assert_allclose(list(shown.values()), expected[list(shown)], rtol=1e-4, atol=1e-9)
        assert "ablated" in page.page.locator(f"#head-grid button.head[data-layer='0'][data-head='{HEAD}']").get_attribute("class")
        assert not page.unexpected_errors(), page.errors
    finally:
        page.close()
