"""Layouts a classroom sees, in Chromium with every stage rendered: at 390, 800, 1280 and 1920
px wide, and in presenter mode, nothing inside a stage card extends past the card's edges
unless an ancestor inside the card scrolls (computed in the page from bounding rectangles);
axe-core finds no serious or critical violation before the analysis arrives, after it, and in
presenter mode."""

from __future__ import annotations

import json
import urllib.parse

import pytest

from .browser import ARTIFACTS, chromium, csp_violations, frames, open_page, require_axe, settle  # noqa: F401 (chromium is a fixture)
from .test_browser import server  # noqa: F401 (a fixture)

Axe = require_axe()

PROMPT = "When Mary and John went to the store, John gave a drink to"

# Every element of every stage card that pokes out of it, unless a scrolling ancestor inside
# the card holds it. SVG internals are left to their <svg> (which clips them).
OVERFLOW = """() => {
  const out = [];
  const scrolls = (a, card) => {
    for (; a && a !== card; a = a.parentElement) {
      const s = getComputedStyle(a);
      if (/(auto|scroll)/.test(s.overflowX) || /(auto|scroll)/.test(s.overflowY)) return true;
    }
    return false;
  };
  for (const card of document.querySelectorAll('.stage')) {
    const c = card.getBoundingClientRect();
    if (!c.width) continue;
    for (const e of card.querySelectorAll('*')) {
      if (e instanceof SVGElement && !(e instanceof SVGSVGElement)) continue;
      const r = e.getBoundingClientRect();
      if (!r.width && !r.height) continue;
      if (r.left >= c.left - 1 && r.right <= c.right + 1 && r.top >= c.top - 1 && r.bottom <= c.bottom + 1) continue;
      if (getComputedStyle(e).visibility === 'hidden' || scrolls(e.parentElement, card)) continue;
      const name = e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + (e.className && e.className.baseVal === undefined && e.className ? '.' + String(e.className).split(' ').join('.') : '');
      out.push(`${card.id}: ${name} [${Math.round(r.left)}..${Math.round(r.right)} x ${Math.round(r.top)}..${Math.round(r.bottom)}] outside [${Math.round(c.left)}..${Math.round(c.right)} x ${Math.round(c.top)}..${Math.round(c.bottom)}]`);
    }
  }
  return out;
}"""


def render_every_stage(page) -> None:
    """Pin a token, then bring every stage on screen once, so the lazy views draw."""
    page.wait_for_selector("[data-testid=token]")
    page.get_by_test_id("token").nth(3).click()
    for stage in page.locator(".stage").all():
        stage.scroll_into_view_if_needed()
        frames(page)
    page.wait_for_selector("[data-testid=logit-lens][data-rows]", state="attached", timeout=30_000)
    page.wait_for_selector("[data-testid=anatomy-total-count]", state="attached", timeout=30_000)
    settle(page)


def serious(page, **options) -> list:
    results = Axe().run(page, **options)
    return [(v["id"], v["help"], [n["target"] for n in v["nodes"]][:6])
            for v in results.response["violations"] if v["impact"] in ("serious", "critical")]


LAYOUTS = [(390, 844, False, "en"), (800, 900, False, "en"), (1280, 720, False, "en"), (1920, 1080, False, "en"),
           (1280, 720, True, "en"), (1920, 1080, True, "en"),
           # Chinese sentences wrap anywhere, its labels are shorter or longer: the narrowest and widest again.
           (390, 844, False, "zh-CN"), (1280, 720, False, "zh-CN"), (1920, 1080, True, "zh-CN")]


@pytest.mark.parametrize("width, height, presenter, lang", LAYOUTS,
                         ids=[f"{w}{'-presenter' if p else ''}{'' if lang == 'en' else '-' + lang}" for w, _, p, lang in LAYOUTS])
def test_nothing_spills_out_of_its_card(chromium, server, width, height, presenter, lang):
    query = f"?lang={lang}&p={urllib.parse.quote(PROMPT)}" + ("&present=1" if presenter else "")
    context, page, errors = open_page(chromium, server, width, height, query)
    render_every_stage(page)
    spilled = page.evaluate(OVERFLOW)
    page.evaluate("scrollTo(0, 0)")
    settle(page)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"layout-{width}{'-presenter' if presenter else ''}{'' if lang == 'en' else '-' + lang}.png"))
    assert spilled == [], json.dumps(spilled[:20], indent=1)
    assert page.evaluate("document.documentElement.scrollWidth <= innerWidth"), "the page scrolls sideways"
    assert errors == [] and csp_violations(page) == []
    context.close()


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
def test_axe_finds_nothing_serious_before_after_and_in_presenter_mode(chromium, server, lang):
    held = []  # the analyze request, held back to see the page before its answer
    context, page, errors = open_page(chromium, server, 1280, 720, f"?lang={lang}&p={urllib.parse.quote(PROMPT)}",
                                      before_goto=lambda p: p.route("**/api/analyze", lambda route: held.append(route)))
    settle(page, fetches=False)  # the analyze request is held back
    before = serious(page)
    for route in held:
        route.continue_()
    page.unroute("**/api/analyze")
    render_every_stage(page)
    after = serious(page)
    page.get_by_test_id("presenter-toggle").click()
    settle(page)
    presenter = serious(page)
    assert (before, after, presenter) == ([], [], []), json.dumps({"before": before, "after": after, "presenter": presenter}, indent=1)
    assert errors == [] and csp_violations(page) == []
    context.close()


COMPARE_LAYOUTS = [(390, 844), (1280, 720), (1920, 1080)]


@pytest.mark.parametrize("width, height", COMPARE_LAYOUTS, ids=[str(w) for w, _ in COMPARE_LAYOUTS])
def test_the_compare_page_fits_and_passes_axe(chromium, server, width, height):
    """/compare: each view twice, in two columns (one on a phone), nothing out of its card, no
    duplicate ids (each partial's ids are prefixed per run key), and axe finds nothing serious."""
    context, page, errors = open_page(chromium, server, width, height, f"compare?b={urllib.parse.quote(PROMPT)}")
    for key in "ab":
        page.wait_for_selector(f"[data-run-key={key}] [data-testid=prob-bar]")
    page.locator("[data-run-key=a] [data-testid=token]").nth(3).click()
    for stage in page.locator(".stage").all():
        stage.scroll_into_view_if_needed()
        frames(page)
    page.wait_for_selector("[data-run-key=b] [data-testid=logit-lens][data-rows]", state="attached", timeout=30_000)
    settle(page)
    spilled = page.evaluate(OVERFLOW)
    duplicated = page.evaluate("""() => { const ids = [...document.querySelectorAll('[id]')].map(e => e.id);
        return ids.filter((id, i) => ids.indexOf(id) !== i); }""")
    page.evaluate("scrollTo(0, 0)")
    settle(page)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"compare-{width}.png"))
    assert spilled == [], json.dumps(spilled[:20], indent=1)
    assert duplicated == []
    assert page.evaluate("document.documentElement.scrollWidth <= innerWidth"), "the page scrolls sideways"
    assert serious(page) == []
    assert errors == [] and csp_violations(page) == []
    context.close()
