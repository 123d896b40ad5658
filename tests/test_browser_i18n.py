"""Every string a person reads comes from the catalog. The page is opened in the pseudo-language
en-XA, where every catalog string has its letters accented ("Ĺàýéŕ"): with every stage drawn,
any plain-English word left in a visible text node, a tooltip, an aria-label or a placeholder is a
string written in the code, which a translation could never reach.

Exempt, as they would be in any language: what is marked translate="no" (token texts, the
model's hook names, formulas, code and keys), Plotly's tick labels (token texts and numbers), and
inside a sentence, token texts in “quotes” and hook names (blocks.0.mlp.hook_post): attributes
cannot hold a translate="no" span, so a token text there is quoted, by the catalog's convention."""

from __future__ import annotations

import html
import re

import pytest

from app.page import catalog

from .browser import ARTIFACTS, chromium, frames, settle  # noqa: F401 (chromium: a fixture)
from .test_browser import Page, server  # noqa: F401 (server: a fixture)
from .test_catalog import english_words

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
        frames(page)
    page.wait_for_selector("#logit-lens td")
    page.locator("#logit-lens td").first.click()
    page.locator("[data-testid=token]").nth(2).click()
    page.wait_for_selector("[data-testid=attention-line]")
    page.wait_for_selector("[data-testid=neighbours] li")
    page.wait_for_selector("#anatomy-table tr")
    settle(page)


def open_drawn(ui: Page, path: str, lang: str) -> None:
    """`path` in `lang`, with every stage drawn (on /compare: both columns, a token pinned)."""
    ui.page.goto(f"{ui.url}{path}?lang={lang}")
    ui.page.wait_for_selector("body[data-loaded='1']")
    if path == "/":
        draw_every_stage(ui.page)
    else:
        ui.page.wait_for_selector("[data-run-key=b] [data-testid=prob-bar]")
        ui.page.locator("[data-run-key=a] [data-testid=token]").nth(2).click()
        settle(ui.page)


@pytest.mark.parametrize("path", ["/", "/compare"])
def test_no_english_is_left_outside_the_catalog(chromium, server, path):
    ui = Page(chromium, server)
    try:
        open_drawn(ui, path, "en-XA")
        leaks = ui.page.evaluate(LEAKS)
        if leaks:
            ARTIFACTS.mkdir(exist_ok=True)
            ui.page.screenshot(path=str(ARTIFACTS / f"i18n-leaks{path.replace('/', '-')}.png"), full_page=True)
        assert not leaks, "English outside the catalog:\n" + "\n".join(f"  {where}: {text!r}" for where, text in leaks)
        assert not ui.unexpected_errors(), ui.errors
    finally:
        ui.close()


# ----------------------------------------------------------------- Simplified Chinese ----

def english_values() -> tuple[set[str], list[re.Pattern]]:
    """The English catalog's values as a person reads them (tags dropped, spaces collapsed):
    (those without placeholders, those with them as patterns). A value with no English word
    (test_catalog's english_words: formulas, hook names, "L{layer}", "GPT-2") is every language's."""
    plain, patterns = set(), []
    for text in catalog.read(catalog.DEFAULT).values():
        if not english_words(text):
            continue
        words = " ".join(html.unescape(re.sub(r"<[^>]*>", "", text)).split())
        if catalog.PLACEHOLDER.search(words):
            parts = catalog.PLACEHOLDER.split(words)[::2]
            patterns.append(re.compile(".+?".join(re.escape(p) for p in parts), re.S))
        else:
            plain.add(words)
    return plain, patterns


# Every visible text a person reads: text nodes, each element's whole text (a catalog value with
# inline markup is several nodes), tooltips, labels and placeholders. Exempt: the prompt's text and
# what is marked translate="no" (token texts, example prompts, hook names, formulas, keys).
VISIBLE_TEXTS = r"""() => {
  const EXEMPT = '[translate=no], code, kbd, script, style, noscript, textarea, [data-testid=prompt-input]';
  const seen = (el) => el && el.checkVisibility && el.checkVisibility({ checkOpacity: false, checkVisibilityCSS: true });
  const out = new Set();
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const el = node.parentElement;
    if (!el || el.closest(EXEMPT) || !seen(el)) continue;
    out.add(node.textContent);
  }
  for (const el of document.body.querySelectorAll('*')) {
    if (el.closest(EXEMPT) || !seen(el)) continue;
    if (el.textContent.length < 600) out.add(el.textContent);
    for (const a of ['title', 'aria-label', 'placeholder']) if (el.getAttribute(a)) out.add(el.getAttribute(a));
  }
  return [...out].map((t) => t.split(/\s+/).join(' ').trim()).filter(Boolean);
}"""


def english_on_page(page) -> tuple[list[str], list[tuple[str, str]]]:
    """(texts that are an English catalog value, English words outside the exemptions)."""
    plain, patterns = english_values()
    texts = page.evaluate(VISIBLE_TEXTS)
    values = sorted({text for text in texts if text in plain or any(p.fullmatch(text) for p in patterns)})
    words = [(where, text) for where, text in page.evaluate(LEAKS)
             if not where.startswith(("sub ", "sup ")) and english_words(html.escape(text, quote=False))]
    return values, words


@pytest.mark.parametrize("path", ["/", "/compare"])
def test_in_zh_cn_no_english_catalog_value_is_on_the_page(chromium, server, path):
    ui = Page(chromium, server)
    try:
        open_drawn(ui, path, "zh-CN")
        assert ui.page.evaluate("document.documentElement.lang") == "zh-CN"
        values, words = english_on_page(ui.page)
        if values or words:
            ARTIFACTS.mkdir(exist_ok=True)
            ui.page.screenshot(path=str(ARTIFACTS / f"zh-CN-english{path.replace('/', '-')}.png"), full_page=True)
        assert not values, f"English catalog values on the zh-CN page: {values}"
        assert not words, "English words on the zh-CN page:\n" + "\n".join(f"  {where}: {text!r}" for where, text in words)
        assert not ui.unexpected_errors(), ui.errors
    finally:
        ui.close()


def view(page) -> dict:
    return page.evaluate("""() => { const s = window.explainer.store.state;
        return {lang: document.documentElement.lang, analyzed: s.analysis.main && s.analysis.main.text,
                typed: document.querySelector('[data-testid=prompt-input]').value,
                layer: s.layer, head: s.head, pinned: s.pinned}; }""")


def test_switching_language_keeps_the_view(chromium, server):
    ui = Page(chromium, server)
    try:
        ui.open()
        ui.analyze("The quick brown fox jumps over the lazy dog")
        ui.page.get_by_test_id("layer-select").select_option("1")
        ui.page.get_by_test_id("head-select").select_option("2")
        ui.chips().nth(3).click()
        ui.page.wait_for_function("window.explainer.store.state.pinned === 3")
        # Typed but not analyzed: not in the URL, and not lost either.
        ui.page.get_by_test_id("prompt-input").fill("A draft, typed but not analyzed yet")
        before = view(ui.page)
        assert before == {"lang": "en", "analyzed": "The quick brown fox jumps over the lazy dog",
                          "typed": "A draft, typed but not analyzed yet", "layer": 1, "head": 2, "pinned": 3}
        for lang in ("zh-CN", "en"):
            with ui.page.expect_navigation():
                ui.page.get_by_test_id("lang-switch").select_option(lang)
            ui.page.wait_for_selector("body[data-loaded='1']")
            ui.wait_run(0)  # the URL's prompt, analyzed again
            ui.page.wait_for_function("window.explainer.store.state.pinned === 3")
            ui.page.wait_for_function("document.querySelector('[data-testid=prompt-input]').value.startsWith('A draft')")
            assert view(ui.page) == {**before, "lang": lang}
            assert ui.page.get_by_test_id("lang-switch").input_value() == lang
            assert f"lang={lang}" in ui.page.evaluate("document.cookie")  # the choice, for pages opened without ?lang=
            assert ui.page.locator("h1").first.text_content().startswith(catalog.catalog(lang)["page.title"])
        assert not ui.unexpected_errors(), ui.errors
    finally:
        ui.close()


def test_prompt_errors_are_said_in_zh_cn_with_their_counts(chromium, server):
    zh = catalog.catalog("zh-CN")
    ui = Page(chromium, server)
    try:
        ui.open("?lang=zh-CN")
        error = ui.page.locator("#prompt-error")
        ui.page.get_by_test_id("prompt-input").fill("   ")
        ui.page.get_by_test_id("analyze-button").click()
        ui.page.wait_for_function("document.querySelector('#prompt-error').textContent.length > 0")
        assert error.text_content() == zh["page.error_empty_prompt"]

        ui.allowed.append("422")
        limit = ui.page.evaluate("window.explainer.store.state.model.n_ctx")
        long_text = " word" * (limit + 5)
        n_tokens = limit + 5  # " word" is one GPT-2 token
        ui.page.get_by_test_id("prompt-input").fill(long_text)
        ui.page.get_by_test_id("analyze-button").click()
        expected = zh["page.error_prompt_too_long"].replace("{n_tokens}", str(n_tokens)).replace("{limit}", str(limit))
        ui.page.wait_for_function("(t) => document.querySelector('#prompt-error').textContent === t", arg=expected)
        assert str(limit) in expected and str(n_tokens) in expected
        assert not ui.unexpected_errors(), ui.errors
    finally:
        ui.close()


@pytest.mark.parametrize("presenter", [False, True])
def test_zh_cn_screenshots(chromium, server, presenter):
    """The overview and the attention stage in zh-CN at 1280x720, to look at: nothing clipped, no
    missing-glyph boxes (the fonts are the system's: .ci/run installs Noto CJK)."""
    ui = Page(chromium, server)
    try:
        ui.open("?lang=zh-CN" + ("&present=1" if presenter else ""))
        suffix = "-presenter" if presenter else ""
        ui.shot(f"zh-CN-overview{suffix}", of="#stage-overview")
        ui.chips().nth(2).hover()
        ui.shot(f"zh-CN-attention{suffix}", of="#stage-attention")
        overflow = ui.page.evaluate("""() => [...document.querySelectorAll('#stage-overview *, #stage-attention *, header.top *')]
            .filter((e) => e.scrollWidth > e.clientWidth + 1 && getComputedStyle(e).overflowX === 'visible'
                     && e.getBoundingClientRect().right > document.documentElement.clientWidth + 1)
            .map((e) => e.tagName + '.' + e.className)""")
        assert overflow == [], overflow
        assert not ui.unexpected_errors(), ui.errors
    finally:
        ui.close()
