"""Guided scenes in Chromium: each scene opens from the Scenes menu, sets the state its first step
names (prompt, layer, head, pinned token, temperature, interventions, the stage scrolled into view)
and shows its text with the placeholders filled; the scene and step are in the URL, and opening
that URL restores them. The model has GPT-2 small's 12 layers × 12 heads (tiny widths), so the
published heads (9.9, 5.1...) exist in it."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from app.page import scenes

from .browser import ARTIFACTS, chromium, settle  # noqa: F401 (chromium: a fixture)
from .test_browser import Page

STATE = "() => { const s = explainer.store.state; const run = s.runs.get(s.shown.main); return {" \
        " text: run && run.text, layer: s.layer, head: s.head, pinned: s.pinned, temperature: s.temperature," \
        " interventions: s.interventions, run_interventions: run && run.interventions }; }"


@pytest.fixture(scope="module")
def server(checkpoints, live_servers):
    return live_servers.url(checkpoints(seed=5, n_layer=12, n_head=12, n_embd=48))


def compact(items):
    return [{k: v for k, v in x.items() if v is not None} for x in items or []]


def expected(scene, n: int) -> dict:
    """What step n sets, carried forward as scenes.js does (prompt, layer, head, temperature)."""
    state = {"interventions": []}
    for step in scene.steps[: n + 1]:
        for key in ("prompt", "layer", "head", "temperature"):
            if getattr(step, key) is not None:
                state[key] = getattr(step, key)
    step = scene.steps[n]
    state["pinned"], state["stage"] = step.pinned, step.stage
    if step.interventions:
        state["interventions"] = [x.model_dump(exclude_none=True) for x in step.interventions]
    return state


def check_step(page: Page, scene, n: int) -> None:
    card = page.page.get_by_test_id("scene-step")
    page.page.wait_for_selector(f"[data-testid=scene-step][data-scene='{scene.id}'][data-ready='{n + 1}']", timeout=30000)
    want = expected(scene, n)
    got = page.page.evaluate(STATE)
    assert got["text"] == want["prompt"]
    if "layer" in want:
        assert (got["layer"], got["head"]) == (want["layer"], want["head"])
    if "temperature" in want:
        assert got["temperature"] == want["temperature"]
    assert got["pinned"] == want["pinned"]
    assert compact(got["interventions"]) == want["interventions"]
    assert compact(got["run_interventions"]) == want["interventions"]
    if want["stage"]:
        top = page.page.evaluate(f"() => document.querySelector('[data-stage=\"{want['stage']}\"]').getBoundingClientRect().top")
        assert 0 <= top < page.page.viewport_size["height"] / 2, (scene.id, n, want["stage"], top)
    shown = card.locator("[data-part=text]").inner_text()
    # The text as written up to its first placeholder, and no placeholder left unfilled.
    assert shown.startswith(re.split(r"\{\w+\}", scene.steps[n].text["en"])[0]), shown
    assert "{" not in shown and "…" not in shown, shown
    assert card.get_attribute("data-step") == str(n + 1)
    assert scene.known.source in card.locator("[data-part=known]").inner_text()


@pytest.mark.parametrize("scene_id", list(scenes.scenes()))
def test_each_scene_opens_from_the_menu_and_sets_its_first_step(chromium, server, scene_id):
    scene = scenes.scenes()[scene_id]
    page = Page(chromium, server)
    try:
        page.open()
        page.page.get_by_test_id("scene-menu").get_by_role("button", name="Scenes").click()
        page.page.locator(f"[data-testid=scene-menu] [data-scene='{scene_id}']").click()
        check_step(page, scene, 0)
        page.page.wait_for_function(f"location.search.includes('scene={scene_id}') && location.search.includes('step=1')")
        assert not page.unexpected_errors(), page.errors
    finally:
        page.close()


def test_steps_move_with_buttons_and_keys_and_the_url_restores_them(chromium, server):
    scene = scenes.scenes()["4-ioi"]
    last = len(scene.steps) - 1
    page = Page(chromium, server)
    try:
        page.open("?scene=4-ioi&step=1")
        check_step(page, scene, 0)
        assert page.page.get_by_test_id("scene-previous").is_disabled()
        page.page.get_by_test_id("scene-next").click()
        check_step(page, scene, 1)
        page.page.keyboard.press("PageDown")
        check_step(page, scene, 2)
        page.page.keyboard.press(".")
        check_step(page, scene, 3)  # the attribution of the top two candidates
        for n in range(4, last + 1):
            page.page.get_by_test_id("scene-next").click()
            check_step(page, scene, n)  # the last: heads 9.9 and 9.6 switched off
        assert page.page.get_by_test_id("scene-next").is_disabled()
        settle(page.page)  # past url.js's and scenes.js's coalescing
        url = page.page.url
        assert f"scene=4-ioi" in url and f"step={last + 1}" in url
        ARTIFACTS.mkdir(exist_ok=True)
        page.page.set_viewport_size({"width": 1280, "height": 720})
        page.page.screenshot(path=str(ARTIFACTS / "scene-ioi-1280.png"))
        page.page.keyboard.press(",")
        check_step(page, scene, last - 1)  # back: the heads are on again
        page.page.get_by_test_id("scene-next").click()
        check_step(page, scene, last)
        assert not page.unexpected_errors(), page.errors
    finally:
        page.close()

    again = Page(chromium, server)
    try:
        again.open(url[len(server) + 1:])
        check_step(again, scene, last)
        again.page.get_by_test_id("scene-close").click()
        assert again.page.get_by_test_id("scene-step").is_hidden()
        settle(again.page)  # past the coalescing
        assert "scene=" not in again.page.url
        assert not again.unexpected_errors(), again.errors
    finally:
        again.close()



def test_the_induction_scene_runs_the_test_and_shows_the_losses_with_and_without_the_heads(chromium, server):
    """Steps 3 and 4 run the induction test themselves; their numbers are POST /induction-probe's."""
    scene = scenes.scenes()["3-induction"]
    ablated = [x.model_dump(exclude_none=True) for x in scene.steps[3].interventions]

    def probe(interventions):
        body = {"length": 50, "seed": 0, **({"interventions": interventions} if interventions else {})}
        response = httpx.post(f"{server}/api/induction-probe", json=body, timeout=120)
        response.raise_for_status()
        return response.json()

    intact, off = probe([]), probe(ablated)
    page = Page(chromium, server)
    try:
        page.open("?scene=3-induction&step=3")
        check_step(page, scene, 2)
        text = page.page.get_by_test_id("scene-step").locator("[data-part=text]").inner_text()
        assert f"{intact['loss_first_half']:.3f}" in text and f"{intact['loss_second_half']:.3f}" in text, text
        grid = [[-1 if s is None else s for s in row] for row in intact["induction"]]
        best = max(((l, h) for l in range(len(grid)) for h in range(len(grid[0]))), key=lambda lh: grid[lh[0]][lh[1]])
        assert f"{best[0]}.{best[1]}" in text, text
        # The heads stage shows the same test.
        loss = page.page.get_by_test_id("induction-probe-loss")
        assert float(loss.get_attribute("data-second")) == pytest.approx(intact["loss_second_half"], rel=1e-12)

        page.page.get_by_test_id("scene-next").click()
        check_step(page, scene, 3)
        text = page.page.get_by_test_id("scene-step").locator("[data-part=text]").inner_text()
        assert f"{off['loss_second_half']:.3f}" in text and f"{intact['loss_second_half']:.3f}" in text, text
        assert off["loss_second_half"] != intact["loss_second_half"]  # the switched-off heads changed the numbers
        page.page.wait_for_function(f"() => Number(document.querySelector('[data-testid=induction-probe-loss]').dataset.second)"
                                    f" === {off['loss_second_half']!r}")
        assert not page.unexpected_errors(), page.errors
    finally:
        page.close()
