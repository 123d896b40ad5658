"""The classroom defects of issue 10, each checked in Chromium: the whole view in the URL and
Back/Forward through prompts, the empty prompt in plain words, a prompt box that grows,
probability bars against the most likely token, stage keys that never hide a heading under the
sticky bar, axis titles clear of long token labels, and a presenter mode at 1920 whose heatmap
fills the card and whose token bar is one line."""

from __future__ import annotations

import urllib.parse

import pytest

from .browser import ARTIFACTS, chromium, frames, open_page, settle  # noqa: F401 (chromium is a fixture)
from .test_browser import server  # noqa: F401 (a fixture)

FIRST = "The cat sat on the mat because it was tired"
SECOND = "When Mary and John went to the store, John gave a drink to"


@pytest.fixture(scope="module")
def resting(chromium, server):
    """One page for the tests that only read it (or type in the prompt box): 1280 x 720, the
    example analyzed, under the page's CSP. Opened once for the module."""
    context, page, _ = open_page(chromium, server, 1280, 720)
    yield page
    context.close()


def wait_prompt(page, text: str) -> None:
    page.wait_for_function("(t) => document.querySelectorAll('[data-testid=token]').length && "
                           "[...document.querySelectorAll('[data-testid=token] .t')].map(n => n.textContent).join('')"
                           " === t.replaceAll(' ', '␣')", arg=text)


def test_the_url_holds_the_whole_view_and_back_returns_to_the_last_prompt(chromium, server):
    query = f"?p={urllib.parse.quote(FIRST)}&mode=masked&heads=1&layers=1&mid=1&map=queen&gen=7"
    context, page, errors = open_page(chromium, server, 1280, 720, query, bypass_csp=True)
    context.set_default_timeout(20_000)
    wait_prompt(page, FIRST)
    state = page.evaluate("() => ({mode: document.querySelector('input[name=attn-mode]:checked').value,"
                          " heads: document.querySelector('#all-heads').checked, layers: document.querySelector('#all-layers').checked,"
                          " mid: document.querySelector('#lens-mid').checked, map: document.querySelector('#map-word').value,"
                          " gen: document.querySelector('#max-new-tokens').value})")
    assert state == {"mode": "masked", "heads": True, "layers": True, "mid": True, "map": "queen", "gen": "7"}
    page.locator("input[name=attn-mode][value=scores]").check()
    page.wait_for_function("location.search.includes('mode=scores')")
    # A new prompt is a new history entry; Back brings the first one back, with its view.
    page.get_by_test_id("prompt-input").fill(SECOND)
    page.get_by_test_id("analyze-button").click()
    wait_prompt(page, SECOND)
    page.wait_for_function("(t) => new URLSearchParams(location.search).get('p') === t", arg=SECOND)
    page.go_back()
    wait_prompt(page, FIRST)
    assert page.get_by_test_id("prompt-input").input_value() == FIRST
    assert page.locator("input[name=attn-mode]:checked").get_attribute("value") == "scores"
    page.go_forward()
    wait_prompt(page, SECOND)
    assert errors == []
    context.close()


def test_an_empty_prompt_is_said_in_plain_words(chromium, server):
    context, page, errors = open_page(chromium, server, 1280, 720)
    page.wait_for_selector("[data-testid=token]")
    for empty in ("", "   "):
        page.get_by_test_id("prompt-input").fill(empty)
        page.get_by_test_id("analyze-button").click()
        page.locator("#prompt-error").wait_for(state="visible")
        assert page.locator("#prompt-error").text_content() == "The prompt is empty: type some text to analyze."
    assert all("422" in e for e in errors)
    context.close()


def test_the_prompt_box_grows_with_its_text(resting):
    page = resting
    box = page.get_by_test_id("prompt-input")
    example = box.input_value()  # one line, as the page opens
    one = box.evaluate("b => b.getBoundingClientRect().height")
    box.fill("line\n" * 5 + "end")
    five = box.evaluate("b => b.getBoundingClientRect().height")
    assert five > one * 3
    box.fill("line\n" * 40)
    assert box.evaluate("b => b.getBoundingClientRect().height") < five * 2  # it stops growing, then scrolls
    box.fill(example)  # the module's page as it was


def test_probability_bars_are_drawn_against_the_most_likely_token(resting):
    page = resting
    page.wait_for_selector("[data-testid=prob-bar][data-prob]")
    bars = page.evaluate("() => [...document.querySelectorAll('[data-testid=prob-bar]')].map(b => "
                         "[+b.dataset.prob, b.querySelector('.fill').getBoundingClientRect().width, b.querySelector('.track').getBoundingClientRect().width])")
    top = max(p for p, _, _ in bars)
    for p, fill, track in bars:
        assert abs(fill - track * p / top) <= 1.5, (p, fill, track)


def test_stage_keys_never_hide_a_heading_under_the_sticky_bar(chromium, server):
    for presenter in (False, True):
        query = f"?p={urllib.parse.quote(SECOND)}" + ("&present=1" if presenter else "")
        context, page, _ = open_page(chromium, server, 1280, 720, query)
        page.wait_for_selector("[data-testid=token]")
        page.locator("h1").click()
        seen = []
        for _ in range(6):
            page.keyboard.press("j")
            settle(page)
            seen.append(page.evaluate("""() => {  // the heading jumped to has the focus
                const bar = document.getElementById('stage-tokens').getBoundingClientRect().bottom;
                return [document.activeElement.getBoundingClientRect().top, bar, document.activeElement.textContent.slice(0, 30)]; }"""))
        assert len({name for _, _, name in seen}) == 6, seen  # six different stages
        for top, bar, _ in seen:
            assert top >= bar - 1, seen
        page.keyboard.press("k")
        context.close()


def test_axis_titles_clear_the_longest_token_labels(chromium, server):
    text = "Supercalifragilisticexpialidocious antidisestablishmentarianism internationalization"
    context, page, _ = open_page(chromium, server, 1280, 720, f"?p={urllib.parse.quote(text)}")
    page.wait_for_selector("#attention-heatmap .ytitle")
    page.locator("#stage-attention").scroll_into_view_if_needed()
    settle(page)
    gap = page.evaluate("""() => {
        const title = document.querySelector('#attention-heatmap .ytitle').getBoundingClientRect();
        const ticks = [...document.querySelectorAll('#attention-heatmap .yaxislayer-above .ytick text')].map(t => t.getBoundingClientRect());
        const xtitle = document.querySelector('#attention-heatmap .xtitle').getBoundingClientRect();
        const xticks = [...document.querySelectorAll('#attention-heatmap .xaxislayer-above .xtick text')].map(t => t.getBoundingClientRect());
        return [Math.min(...ticks.map(t => t.left)) - title.right, xtitle.top - Math.max(...xticks.map(t => t.bottom))]; }""")
    assert gap[0] >= 0 and gap[1] >= 0, gap
    context.close()


def test_presenter_mode_at_1920_fills_the_card(chromium, server):
    context, page, _ = open_page(chromium, server, 1920, 1080, f"?p={urllib.parse.quote(SECOND)}&present=1")
    page.wait_for_selector("#attention-heatmap .main-svg")
    page.locator("#stage-attention").scroll_into_view_if_needed()
    settle(page)
    share = page.evaluate("() => document.querySelector('#attention-heatmap .main-svg').getBoundingClientRect().width"
                          " / document.getElementById('stage-attention').getBoundingClientRect().width")
    assert share >= 0.6, share
    assert page.evaluate("parseFloat(getComputedStyle(document.body).fontSize)") >= 18
    tops = page.evaluate("() => new Set([...document.querySelectorAll('[data-testid=token]')].map(c => Math.round(c.getBoundingClientRect().top))).size")
    assert tops == 1  # the token bar is one line
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "presenter-1920-attention.png"))
    context.close()


def test_text_on_coloured_cells_has_enough_contrast(resting):
    """inkOn picks black or white by WCAG contrast: at least 4.5:1 on every viridis colour
    (white on the teals was 3.1-3.9:1)."""
    page = resting
    worst = page.evaluate("""async () => {
        const { VIRIDIS_LUT, inkOn } = await import('/static/colors.js');
        const lum = ([r, g, b]) => [r, g, b].map(c => (c /= 255) <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4)
          .reduce((s, c, i) => s + c * [0.2126, 0.7152, 0.0722][i], 0);
        let worst = 99;
        for (let i = 0; i < VIRIDIS_LUT.length; i += 3) {
          const bg = [VIRIDIS_LUT[i], VIRIDIS_LUT[i + 1], VIRIDIS_LUT[i + 2]];
          const ink = inkOn(bg) === '#fff' ? [255, 255, 255] : [0, 0, 0];
          const [a, b] = [lum(bg), lum(ink)].sort((x, y) => y - x);
          worst = Math.min(worst, (a + 0.05) / (b + 0.05));
        }
        return worst; }""")
    assert worst >= 4.5, worst


def test_the_all_layers_grid_labels_its_columns_and_passes_axe(chromium, server):
    from .test_browser_layout import serious

    context, page, errors = open_page(chromium, server, 1280, 720, f"?p={urllib.parse.quote(SECOND)}&layers=1")
    page.wait_for_selector("[data-testid=head-column]")
    labels = page.locator("[data-testid=head-column]").all_text_contents()
    layers = page.get_by_test_id("layer-select").locator("option").count()
    heads = page.get_by_test_id("head-select").locator("option").count()
    assert labels == [f"H{h}" for h in range(heads)]
    assert page.locator("#head-grid button.head").count() == layers * heads
    page.locator("#stage-attention").scroll_into_view_if_needed()
    assert serious(page, context={"include": [["#stage-attention"], ["#stage-tokens"]]}) == []
    page.locator("#all-layers").uncheck()  # one layer: each button shows H<n>, and its name starts with it
    names = page.evaluate("() => [...document.querySelectorAll('#head-grid button.head')].map(b => [b.textContent, b.getAttribute('aria-label')])")
    assert all(label.startswith(text) for text, label in names), names
    assert serious(page, context={"include": [["#stage-attention"]]}) == []
    assert errors == []
    context.close()


def test_the_logit_lens_window_shows_the_pinned_column(chromium, server):
    text = " ".join(["the quick brown fox jumps over the lazy dog"] * 8)  # over 48 tokens: a window
    context, page, _ = open_page(chromium, server, 800, 900, f"?p={urllib.parse.quote(text)}&pin=50", bypass_csp=True)
    page.locator("#stage-logit-lens").scroll_into_view_if_needed()
    page.wait_for_selector("[data-testid=logit-lens][data-rows] thead th[data-pos='50']", state="attached", timeout=30_000)
    settle(page)
    inside = page.evaluate("""() => {
        const box = document.querySelector('.lens-scroll').getBoundingClientRect();
        const col = document.querySelector("[data-testid=logit-lens] thead th[data-pos='50']").getBoundingClientRect();
        return [col.left >= box.left, col.right <= box.right, col.left, col.right, box.left, box.right]; }""")
    assert inside[0] and inside[1], inside
    context.close()


def test_the_sticky_token_bar_stays_a_short_band(chromium, server):
    nine = "The cat sat on the mat because it was"  # 9 tokens
    for width, height in ((1280, 720), (390, 844)):
        context, page, _ = open_page(chromium, server, width, height, f"?p={urllib.parse.quote(nine)}")
        page.wait_for_selector("[data-testid=token]")
        share = page.evaluate("document.getElementById('stage-tokens').getBoundingClientRect().height / innerHeight")
        assert share <= 0.2, (width, share)
        context.close()


def test_plot_labels_and_titles_are_not_cut_off(chromium, server):
    """Tick labels and axis titles of the 2D plots lie inside their plot (they were clipped)."""
    context, page, _ = open_page(chromium, server, 800, 900, f"?p={urllib.parse.quote(SECOND)}")
    page.wait_for_selector("[data-testid=token]")
    for box in ("#embedding-plot", "#positions-heatmap", "#positions-cosine"):
        page.locator(box).scroll_into_view_if_needed()
        frames(page)
        page.wait_for_selector(f"{box} .main-svg", state="attached", timeout=30_000)
    settle(page)
    outside = page.evaluate("""() => {
        const out = [];
        for (const id of ['embedding-plot', 'positions-heatmap', 'positions-cosine']) {
          const svg = document.querySelector(`#${id} .main-svg`).getBoundingClientRect();
          for (const t of document.querySelectorAll(`#${id} .xtick text, #${id} .ytick text, #${id} .xtitle, #${id} .ytitle`)) {
            const r = t.getBoundingClientRect();
            if (r.width && (r.left < svg.left - 1 || r.right > svg.right + 1 || r.top < svg.top - 1 || r.bottom > svg.bottom + 1))
              out.push(`${id}: ${t.textContent}`);
          }
        }
        return out; }""")
    assert outside == []
    context.close()


def test_the_inputs_state_the_servers_limits(resting, server):
    import httpx

    limits = httpx.get(f"{server}/api/model", timeout=30).json()["limits"]
    page = resting
    shown = page.evaluate("""() => ({
        prompt: +document.querySelector('#prompt-input').getAttribute('maxlength'),
        topk: +document.querySelector('#top-k').getAttribute('max'),
        seed: +document.querySelector('#seed').getAttribute('max'),
        gen: +document.querySelector('#max-new-tokens').getAttribute('max'),
        word: +document.querySelector('#neighbours-word').getAttribute('maxlength'),
        expression: +document.querySelector('#arithmetic-input').getAttribute('maxlength') })""")
    assert shown == {"prompt": limits["max_prompt_chars"], "topk": limits["max_top_k"], "seed": limits["max_seed"],
                     "gen": limits["max_new_tokens"], "word": limits["max_word_chars"],
                     "expression": limits["max_expression_chars"]}
