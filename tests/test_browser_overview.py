"""The classroom view in Chromium: the whole model at a glance (the overview), attention drawn as
lines on hover, and a first screen that is alive. Every number is read from the page and
compared with the API's tensors, recomputed here in numpy."""

from __future__ import annotations

import urllib.parse

import httpx
import numpy as np
import pytest

from .browser import chromium, settle  # noqa: F401 (chromium: a fixture)
from .test_browser import N_HEADS, N_LAYERS, Page, api_analyze, expected_row, server  # noqa: F401 (server: a fixture)

PROMPT = "When Mary and John went to the store, John gave a drink to"


@pytest.fixture(scope="module")
def analyzed(server):
    body = api_analyze(server, PROMPT)
    from app.runs.tensors import decode
    body["patterns_np"] = [decode(body["tensors"][f"blocks.{l}.attn.hook_pattern"]).astype(np.float64)
                           for l in range(N_LAYERS)]
    return body


@pytest.fixture
def ui(chromium, server):
    page = Page(chromium, server)
    page.page.goto(f"{server}/?p={urllib.parse.quote(PROMPT)}")
    page.page.wait_for_selector("body[data-loaded='1']")
    page.wait_run(0)
    yield page
    errors = page.unexpected_errors()
    page.close()
    assert not errors, f"console errors: {errors}"


def sharpness(row: np.ndarray, i: int) -> float:
    if i == 0:
        return 1.0
    w = row[: i + 1]
    entropy = -sum(x * np.log(x) for x in w if x > 0)
    return float(np.clip(1 - entropy / np.log(i + 1), 0, 1))


def test_opening_the_page_draws_the_overview_and_heatmap_with_no_click(chromium, server, analyzed):
    page = Page(chromium, server)
    try:
        page.page.goto(f"{server}/?p={urllib.parse.quote(PROMPT)}")
        page.page.wait_for_selector("[data-testid=overview-head][data-value]")
        page.page.wait_for_selector("#attention-heatmap .main-svg")
        assert page.page.get_by_test_id("overview-block").count() == N_LAYERS
        assert page.page.get_by_test_id("overview-head").count() == N_LAYERS * N_HEADS
        page.page.wait_for_selector("[data-testid=overview-prediction][data-token-id]")
        shown = int(page.page.get_by_test_id("overview-prediction").get_attribute("data-token-id"))
        assert shown == analyzed["top"][0]["id"]
        # With no prompt in the URL, the example in the box is analyzed just the same.
        page.page.goto(f"{server}/")
        page.page.wait_for_selector("[data-testid=overview-head][data-value]")
        assert page.chips().count() > 3
        assert not page.unexpected_errors(), page.errors
    finally:
        page.close()


def test_each_head_cell_is_the_sharpness_of_its_attention_row(ui, analyzed):
    n = len(analyzed["tokens"])
    for focus in (n - 1, 3):
        if focus != n - 1:
            ui.chips().nth(focus).click()  # pin it
        settle(ui.page)
        values = ui.page.evaluate("() => [...document.querySelectorAll('[data-testid=overview-head]')]"
                                  ".map(r => [+r.dataset.layer, +r.dataset.head, +r.dataset.value])")
        assert len(values) == N_LAYERS * N_HEADS
        for layer, head, value in values:
            expected = sharpness(analyzed["patterns_np"][layer][head, focus], focus)
            assert value == pytest.approx(expected, abs=2e-3), (focus, layer, head)


def test_the_lens_under_each_block_is_the_logit_lens_top_guess(ui, server, analyzed):
    n = len(analyzed["tokens"])
    lens = httpx.get(f"{server}/api/runs/{analyzed['run_id']}/logit-lens", params={"position": n - 1, "k": 1}, timeout=30).json()
    expected = [row[0]["top"][0]["text"] for row in lens["cells"]]
    ui.page.wait_for_function("() => [...document.querySelectorAll('.ov-lens')].every(t => t.textContent)")
    shown = ui.page.evaluate("() => [...document.querySelectorAll('.ov-lens')].map(t => t.querySelector('title').textContent)")
    assert len(shown) == N_LAYERS + 1
    for text, title in zip(expected, shown):
        assert text.replace(" ", "␣") in title


def test_hovering_a_token_draws_lines_with_the_pattern_weights(ui, analyzed):
    for focus in (5, 9):
        ui.chips().nth(focus).hover()
        ui.page.wait_for_function(f"document.querySelectorAll('[data-testid=attention-line][data-from=\"{focus}\"]').length > 0")
        lines = ui.page.evaluate("() => [...document.querySelectorAll('[data-testid=attention-line]')]"
                                 ".map(l => [+l.dataset.from, +l.dataset.to, +l.dataset.head, +l.dataset.weight])")
        row = expected_row(analyzed["patterns_np"][0], 0, focus)
        assert {to for _, to, _, _ in lines} == {j for j in range(focus + 1) if row[j] >= 0.005}
        for source, to, head, weight in lines:
            assert source == focus and head == 0 and to <= focus
            assert weight == pytest.approx(row[to], abs=1e-3)
    # Another layer and head: the lines follow.
    ui.page.get_by_test_id("layer-select").select_option("2")
    ui.page.get_by_test_id("head-select").select_option("3")
    settle(ui.page)
    lines = ui.page.evaluate("() => [...document.querySelectorAll('[data-testid=attention-line]')].map(l => [+l.dataset.to, +l.dataset.weight])")
    row = expected_row(analyzed["patterns_np"][2], 3, 9)
    for to, weight in lines:
        assert weight == pytest.approx(row[to], abs=1e-3)
    # All heads of the layer, one colour each (pinned: the mouse leaves the chips for the box).
    ui.chips().nth(9).click()
    ui.page.locator("#all-heads").check()
    settle(ui.page)
    lines = ui.page.evaluate("() => [...document.querySelectorAll('[data-testid=attention-line]')].map(l => [+l.dataset.head, +l.dataset.to, +l.dataset.weight, l.getAttribute('stroke')])")
    assert {h for h, _, _, _ in lines} == set(range(N_HEADS))
    assert len({c for _, _, _, c in lines}) == N_HEADS
    for head, to, weight, _ in lines:
        assert weight == pytest.approx(analyzed["patterns_np"][2][head, 9, to], abs=1e-3)


def test_clicking_an_overview_head_selects_that_layer_and_head(ui):
    ui.page.locator("[data-testid=overview-head][data-layer='1'][data-head='2']").click()
    assert ui.page.get_by_test_id("layer-select").input_value() == "1"
    assert ui.page.get_by_test_id("head-select").input_value() == "2"
    assert "selected" in ui.page.locator("[data-testid=overview-head][data-layer='1'][data-head='2']").get_attribute("class")
    assert "selected" in ui.page.locator("[data-testid=overview-block][data-layer='1']").get_attribute("class")
    ui.page.locator("[data-testid=overview-block][data-layer='2'] .ov-frame").click()
    assert ui.page.get_by_test_id("layer-select").input_value() == "2"


def test_each_block_shows_the_streams_length_leaving_it(ui, analyzed):
    from app.runs.tensors import decode

    norms = decode(analyzed["resid_norms"])
    n = len(analyzed["tokens"])
    for focus in (n - 1, 2):
        if focus != n - 1:
            ui.chips().nth(focus).click()
        settle(ui.page)
        shown = ui.page.evaluate("() => [...document.querySelectorAll('[data-testid=overview-norm]')].map(t => [+t.dataset.layer, +t.dataset.value, t.textContent])")
        assert len(shown) == N_LAYERS
        for layer, value, text in shown:
            assert value == pytest.approx(float(norms[layer + 1, focus]), rel=1e-5)
            assert text == f"{norms[layer + 1, focus]:.1f}"
