"""The first run without weights, as a teacher sees it in Chromium: the server came up on random
weights (HF_HUB_OFFLINE, an empty cache), and the page says so in a banner with the reason and
the exact command, and in a badge in the sticky token bar that stays in view while scrolling,
at 1280x720, in presenter mode and on a phone."""

from __future__ import annotations

import sys

import httpx
import pytest

from .browser import ARTIFACTS, chromium, csp_violations, open_page, require_axe, require_chromium, settle  # noqa: F401 (chromium is a fixture)

require_chromium()

Axe = require_axe()


@pytest.fixture(scope="module")
def server(tmp_path_factory, live_servers):
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path_factory.mktemp("empty-hf-home")),
           "EXPLAINER_MODEL": None, "EXPLAINER_RANDOM_WEIGHTS": None}
    return live_servers.serve([sys.executable, "-m", "app.cli", "serve"], env).url


def in_view(page, test_id: str) -> bool:
    return page.evaluate("""(id) => { const r = document.querySelector(`[data-testid=${id}]`).getBoundingClientRect();
        return r.width > 0 && r.top >= 0 && r.bottom <= innerHeight && r.left >= 0 && r.right <= innerWidth; }""", test_id)


def test_the_untrained_state_stays_visible_and_names_the_command(chromium, server):
    reason = httpx.get(f"{server}/api/model").json()["reason"]
    ARTIFACTS.mkdir(exist_ok=True)
    context, page, errors = open_page(chromium, server, 1280, 720, "?p=The%20cat%20sat%20on%20the%20mat")
    page.wait_for_selector("[data-testid=token]")
    banner = page.get_by_test_id("random-weights-banner")
    assert banner.is_visible()
    assert page.get_by_test_id("download-command").inner_text() == "explainer download"
    assert page.get_by_test_id("random-weights-reason").inner_text() == f"Why: {reason}"
    badge = page.get_by_test_id("untrained-badge")
    assert badge.is_visible() and "Untrained" in badge.inner_text()
    assert "explainer download" in badge.get_attribute("title")
    page.screenshot(path=str(ARTIFACTS / "untrained-1280-top.png"))

    page.evaluate("scrollTo(0, document.body.scrollHeight / 2)")
    settle(page)
    assert not banner.evaluate("b => b.getBoundingClientRect().bottom > 0")  # the banner has scrolled away...
    assert in_view(page, "untrained-badge")  # ...the badge has not
    page.screenshot(path=str(ARTIFACTS / "untrained-1280-scrolled.png"))

    badge.click()  # it leads back to the banner and its explanation
    settle(page)
    assert in_view(page, "random-weights-banner")

    results = Axe().run(page, context={"include": [["#untrained"], ["#stage-tokens .tokens-head"]]})
    serious = [v for v in results.response["violations"] if v["impact"] in ("serious", "critical")]
    assert serious == [], [(v["id"], [n["target"] for n in v["nodes"]]) for v in serious]
    assert errors == [] and csp_violations(page) == []
    context.close()


@pytest.mark.parametrize("width, height, presenter", [(390, 844, False), (800, 900, False), (1280, 720, False), (1280, 720, True), (1920, 1080, False), (1920, 1080, True)])
def test_the_badge_fits_every_layout(chromium, server, width, height, presenter):
    query = "?p=The%20cat%20sat" + ("&present=1" if presenter else "")
    context, page, errors = open_page(chromium, server, width, height, query)
    page.wait_for_selector("[data-testid=token]")
    page.evaluate("scrollTo(0, document.body.scrollHeight / 2)")
    settle(page)
    assert in_view(page, "untrained-badge")
    # Inside its sticky card, and no sideways scrolling of the page.
    assert page.evaluate("""() => { const b = document.querySelector('[data-testid=untrained-badge]').getBoundingClientRect();
        const card = document.getElementById('stage-tokens').getBoundingClientRect();
        return b.left >= card.left && b.right <= card.right && b.top >= card.top && b.bottom <= card.bottom; }""")
    assert page.evaluate("document.documentElement.scrollWidth <= innerWidth")
    page.screenshot(path=str(ARTIFACTS / f"untrained-layout-{width}{'-presenter' if presenter else ''}.png"))
    assert errors == [] and csp_violations(page) == []
    context.close()


def test_a_scene_on_random_weights_says_so_instead_of_claiming_the_known_result(chromium, server):
    """A scene never pretends: on an untrained model it shows its `untrained` text, not the
    published finding it would otherwise state as what GPT-2 small shows."""
    from app.page import scenes

    scene = scenes.scenes()["4-ioi"]
    context, page, errors = open_page(chromium, server, 1280, 720, "?scene=4-ioi&step=1")
    known = page.locator("[data-testid=scene-step] [data-part=known]")
    known.wait_for()
    page.wait_for_selector("[data-testid=scene-step] [data-part=known][data-untrained='1']", timeout=60_000)
    text = known.inner_text()
    assert scene.untrained["en"][:40] in text
    assert scene.known.text["en"][:40] not in text
    assert errors == [] and csp_violations(page) == []
    context.close()
