"""Every string a person reads comes from the catalog. The page is opened in the pseudo-language
en-XA, where every catalog string has its letters accented ("Ĺàýéŕ"): with every stage drawn,
any plain-English word left in a visible text node, a tooltip, an aria-label or a placeholder is a
string written in the code, which a translation could never reach.

Exempt, as they would be in any language: what is marked translate="no" (token texts, the
model's hook names, formulas, code and keys), Plotly's tick labels (token texts and numbers), and
inside a sentence, token texts in “quotes” and hook names (blocks.0.mlp.hook_post): attributes
cannot hold a translate="no" span, so a token text there is quoted, by the catalog's convention."""

from __future__ import annotations

import pytest

from .browser import ARTIFACTS, chromium  # noqa: F401 (a fixture)
from .test_browser import Page, server  # noqa: F401 (server: a fixture)

# What a walk of the page reports: [where, the text] of each English word outside the exemptions.
LEAKS = r"""() => {
  const EXEMPT = '[translate=no], code, kbd, script, style, noscript, .xtick, .ytick, .cbaxis .tick, title';
  const DATA = /“[^”]*”|\b[\w.]*hook_\w+/g;
  const has = (text) => /[A-Za-z]{2,}/.test(text.replace(DATA, ''));
  const seen = (el) => el && el.checkVisibility && el.checkVisibility({ checkOpacity: false, checkVisibilityCSS: true });
  const name = (el) => `${el.tagName.toLowerCase()}${el.id ? '#' + el.id : ''}${el.dataset.testid ? '[' + el.dataset.testid + ']' : ''}` +
    ` in ${el.closest('[data-stage]')?.dataset.stage || el.closest('header, footer, .banner')?.tagName?.toLowerCase() || 'page'}`;
  const out = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const el = node.parentElement;
    if (!el || el.closest(EXEMPT) || !has(node.textContent) || !seen(el)) continue;
    out.push([name(el), node.textContent.trim().slice(0, 120)]);
  }
  for (const el of document.body.querySelectorAll('[title], [aria-label], [placeholder], svg title')) {
    if (el.closest('[translate=no], script, style') && el.tagName.toLowerCase() !== 'title') continue;
    const host = el.tagName.toLowerCase() === 'title' ? el.parentElement : el;
    if (!seen(host) || host.closest('[translate=no]')) continue;
    const texts = el.tagName.toLowerCase() === 'title' ? [el.textContent]
      : ['title', 'aria-label', 'placeholder'].map((a) => el.getAttribute(a)).filter(Boolean);
    for (const text of texts) if (has(text)) out.push([name(host) + ' (attribute)', text.slice(0, 120)]);
  }
  return out;
}"""


def draw_every_stage(page) -> None:
    """Scroll each stage into view (the lazy ones fetch then), pin a token, click a lens cell."""
    page.wait_for_selector("[data-testid=prob-bar]")
    for stage in page.evaluate("() => [...document.querySelectorAll('[data-testid=stage]')].map(s => s.id)"):
        page.evaluate("(id) => document.getElementById(id).scrollIntoView()", stage)
        page.wait_for_timeout(250)
    page.wait_for_selector("#logit-lens td")
    page.locator("#logit-lens td").first.click()
    page.locator("[data-testid=token]").nth(2).click()
    page.wait_for_selector("[data-testid=attention-line]")
    page.wait_for_selector("[data-testid=neighbours] li")
    page.wait_for_selector("#anatomy-table tr")
    page.wait_for_timeout(800)


@pytest.mark.parametrize("path", ["/", "/compare"])
def test_no_english_is_left_outside_the_catalog(chromium, server, path):
    ui = Page(chromium, server)
    try:
        ui.page.goto(f"{server}{path}?lang=en-XA")
        ui.page.wait_for_selector("body[data-loaded='1']")
        if path == "/":
            draw_every_stage(ui.page)
        else:
            ui.page.wait_for_selector("[data-run-key=b] [data-testid=prob-bar]")
            ui.page.locator("[data-run-key=a] [data-testid=token]").nth(2).click()
            ui.page.wait_for_timeout(1200)
        leaks = ui.page.evaluate(LEAKS)
        if leaks:
            ARTIFACTS.mkdir(exist_ok=True)
            ui.page.screenshot(path=str(ARTIFACTS / f"i18n-leaks{path.replace('/', '-')}.png"), full_page=True)
        assert not leaks, "English outside the catalog:\n" + "\n".join(f"  {where}: {text!r}" for where, text in leaks)
        assert not ui.unexpected_errors(), ui.errors
    finally:
        ui.close()
