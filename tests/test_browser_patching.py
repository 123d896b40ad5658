"""The patching view and the compare summary, read from the page and compared with the API.

On /compare, the summary card's KL(a‖b) and biggest changes are the compare endpoint's answer
for the two runs shown. On /, the patching heatmap's numbers (the Plotly div's z) are
POST /api/patching's grid for the same inputs, its labels the corrupted prompt's tokens, and a
clicked cell's probabilities are those of an analyze with that single patch."""

from __future__ import annotations

import urllib.parse

import httpx
import numpy as np
import pytest

from app.runs.tensors import decode

from .browser import ARTIFACTS, chromium  # noqa: F401 (a fixture)
from .test_browser import N_LAYERS, N_HEADS, Page, api_analyze, page, server  # noqa: F401 (page, server: fixtures)

CLEAN = "When Mary and John went to the store, John gave a drink to"
CORRUPTED = "When Mary and John went to the store, Mary gave a drink to"
A, B = CLEAN, "The cat sat on the mat"


def single_token(server: str, word: str) -> int:
    tokens = api_analyze(server, f" {word}")["tokens"]
    assert len(tokens) == 1, tokens
    return tokens[0]["id"]


def api_patching(server: str, hook: str) -> dict:
    body = {"clean": CLEAN, "corrupted": CORRUPTED, "target_token": single_token(server, "Mary"),
            "baseline_token": single_token(server, "John"), "hook": hook}
    response = httpx.post(f"{server}/api/patching", json=body, timeout=120)
    response.raise_for_status()  # a missing endpoint fails here: never a skip
    return response.json()


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max())
    return e / e.sum()




def test_the_compare_summary_is_the_apis_compare_answer(page, server):
    page.page.goto(f"{server}/compare?a={urllib.parse.quote(A)}&b={urllib.parse.quote(B)}")
    page.page.wait_for_selector("body[data-loaded='1']")
    assert page.page.get_by_test_id("compare-view").count() == 1
    page.page.wait_for_selector("[data-testid=compare-change]")
    a, b = api_analyze(server, A)["run_id"], api_analyze(server, B)["run_id"]
    shown = page.page.evaluate("() => [explainer.store.state.shown.a, explainer.store.state.shown.b]")
    assert shown == [a, b]
    answer = httpx.get(f"{server}/api/runs/{a}/compare/{b}", timeout=60).json()
    kl = float(page.page.get_by_test_id("compare-kl").get_attribute("data-value"))
    assert kl == pytest.approx(answer["kl_a_b"], rel=1e-9)
    assert answer["kl_a_b"] > 0
    changes = page.page.evaluate("() => [...document.querySelectorAll('[data-testid=compare-change]')].map(c =>"
                                 " [Number(c.dataset.tokenId), Number(c.dataset.probA), Number(c.dataset.probB), c.textContent])")
    first = answer["biggest_changes"][0]
    assert changes[0][:3] == [first["id"], pytest.approx(first["prob_a"], rel=1e-9), pytest.approx(first["prob_b"], rel=1e-9)]
    assert [c[0] for c in changes] == [c["id"] for c in answer["biggest_changes"][: len(changes)]]
    # KL(a‖b) from the two runs' own logits, independently of the compare endpoint.
    logits = [decode(api_analyze(server, text)["tensors"]["logits"]).astype(np.float64) for text in (A, B)]
    p, q = softmax(logits[0]), softmax(logits[1])
    assert kl == pytest.approx(float(np.sum(p * (np.log(p) - np.log(q)))), rel=1e-3, abs=1e-6)
    page.shot("compare-summary")


@pytest.mark.parametrize("hook", ["resid_pre", "z"])
def test_the_patching_heatmap_is_the_apis_grid(page, server, hook):
    asked = []
    page.page.on("request", lambda r: asked.append(r.url) if "/api/patching" in r.url else None)
    page.open()
    assert not asked, "the patching sweep must wait for Run"
    assert page.page.get_by_test_id("patching-heatmap").is_hidden()
    answer = api_patching(server, hook)
    page.page.get_by_test_id("patching-hook").select_option(hook)
    page.page.get_by_test_id("patching-run").click()
    # The tiny random model barely tells the two prompts apart (see the tests below): the grid is
    # drawn on asking for it anyway.
    assert answer["reliable"] is False
    page.page.get_by_test_id("patching-show-anyway").click()
    page.page.wait_for_function("() => { const d = document.querySelector('[data-testid=patching-heatmap]');"
                                " return d && d.data && d.data.length; }")
    plotted = page.page.evaluate("() => { const d = document.querySelector('[data-testid=patching-heatmap]');"
                                 " return {z: d.data[0].z, ticks: d.layout.xaxis.ticktext, layers: d.layout.yaxis.ticktext}; }")
    assert len(plotted["z"]) == N_LAYERS
    np.testing.assert_allclose(np.array(plotted["z"], dtype=float), np.array(answer["grid"], dtype=float), rtol=0, atol=0)
    if hook == "z":
        assert len(plotted["ticks"]) == N_HEADS
    else:
        labels = [t["text"].replace(" ", "␣") for t in answer["tokens"]]
        assert plotted["ticks"] == labels
    lds = page.page.get_by_test_id("patching-lds")
    assert float(lds.get_attribute("data-ld-clean")) == pytest.approx(answer["ld_clean"], rel=1e-9)
    assert float(lds.get_attribute("data-ld-corrupted")) == pytest.approx(answer["ld_corrupted"], rel=1e-9)

    # Click a cell: the line says which patch it is, and its probabilities are those of an analyze
    # with that one intervention.
    layer, index = N_LAYERS - 1, 1
    page.page.get_by_test_id("patching-heatmap").scroll_into_view_if_needed()
    box = page.page.evaluate("([l, i]) => { const d = document.querySelector('[data-testid=patching-heatmap]');"
                             " const r = d.querySelector('.nsewdrag').getBoundingClientRect(); const xa = d._fullLayout.xaxis,"
                             " ya = d._fullLayout.yaxis; return [r.left + xa.l2p(i), r.top + ya.l2p(l)]; }", [layer, index])
    page.page.mouse.click(*box)
    page.page.wait_for_selector("[data-testid=patching-cell-result][data-prob-target]")
    assert page.page.get_by_test_id("patching-cell").get_attribute("data-layer") == str(layer)
    assert page.page.get_by_test_id("patching-cell").get_attribute("data-index") == str(index)
    hook_name = {"resid_pre": f"blocks.{layer}.hook_resid_pre", "z": f"blocks.{layer}.attn.hook_z"}[hook]
    where = {"head": index} if hook == "z" else {"position": index}
    patched = httpx.post(f"{server}/api/analyze", json={"text": CORRUPTED, "interventions": [
        {"hook": hook_name, "op": "patch", "source_run_id": answer["clean_run_id"], **where}]}, timeout=60).json()
    p = softmax(decode(patched["tensors"]["logits"]).astype(np.float64))
    result = page.page.get_by_test_id("patching-cell-result")
    target, baseline = single_token(server, "Mary"), single_token(server, "John")
    assert float(result.get_attribute("data-prob-target")) == pytest.approx(p[target], rel=1e-4)
    assert float(result.get_attribute("data-prob-baseline")) == pytest.approx(p[baseline], rel=1e-4)
    assert result.get_attribute("data-run-id") == patched["run_id"]
    page.shot(f"patching-{hook}", of="[data-testid=stage][data-stage=patching]")

    # "Show this patched run": every stage shows that run (its bars are the patched run's).
    before = page.runs()
    page.page.get_by_test_id("patching-show-run").click()
    page.wait_run(before)
    page.page.wait_for_function("(id) => explainer.store.state.shown.main === id", arg=patched["run_id"])
    shown = page.bars()
    np.testing.assert_allclose([q for _, q in shown], p[[i for i, _ in shown]], rtol=1e-4, atol=1e-9)
    assert page.page.get_by_test_id("intervention").count() == 1


def test_a_word_of_several_tokens_is_refused_in_words(page, server):
    page.open()
    page.page.get_by_test_id("patching-target").fill("Maryanneliza")
    page.page.get_by_test_id("patching-run").click()
    error = page.page.locator("[data-stage=patching] .error")
    error.wait_for(state="visible")
    assert "not one" in error.text_content()
    assert page.page.get_by_test_id("patching-heatmap").is_hidden()


# --- Patching says when it cannot tell --------------------------------------------------------

HEATMAP_DATA = "() => { const d = document.querySelector('[data-testid=patching-heatmap]'); return d.data ? d.data.length : 0; }"


def test_an_unreliable_sweep_is_said_in_words_and_its_heatmap_is_not_drawn(page, server):
    answer = api_patching(server, "resid_pre")
    assert answer["reliable"] is False and abs(answer["denominator"]) < answer["threshold"]
    page.open()
    page.page.get_by_test_id("patching-run").click()
    message = page.page.get_by_test_id("patching-unreliable")
    message.wait_for(state="visible")
    text = message.text_content()
    assert "barely differ in their answer" in text and "The grid is not drawn" in text
    # The difference and the threshold, in words (two significant digits, as JavaScript writes them).
    difference = float(f"{abs(answer['denominator']):.2g}")
    assert f"only {difference} between" in text and "at least 1)" in text
    lds = page.page.get_by_test_id("patching-lds")
    assert lds.get_attribute("data-reliable") == "false"
    assert float(lds.get_attribute("data-denominator")) == pytest.approx(answer["denominator"], rel=1e-9)
    # No figure to read as if it meant something: the heatmap is hidden and was never plotted.
    assert page.page.get_by_test_id("patching-heatmap").is_hidden()
    assert page.page.evaluate(HEATMAP_DATA) == 0
    assert page.page.get_by_test_id("patching-status").text_content() == ""
    page.shot("patching-unreliable", of="[data-testid=stage][data-stage=patching]")

    # "Show the grid anyway": drawn (the API's grid), the message staying above it, with a caution.
    page.page.get_by_test_id("patching-show-anyway").click()
    page.page.wait_for_function(HEATMAP_DATA)
    z = page.page.evaluate("() => document.querySelector('[data-testid=patching-heatmap]').data[0].z")
    np.testing.assert_allclose(np.array(z, dtype=float), np.array(answer["grid"], dtype=float), rtol=0, atol=0)
    assert message.is_visible() and page.page.get_by_test_id("patching-shown-anyway").is_visible()
    assert page.page.get_by_test_id("patching-show-anyway").count() == 0

    # Run again: the grid drawn on request is gone until asked for again.
    page.page.get_by_test_id("patching-run").click()
    page.page.get_by_test_id("patching-show-anyway").wait_for(state="visible")
    assert page.page.get_by_test_id("patching-heatmap").is_hidden()
    assert page.page.evaluate(HEATMAP_DATA) == 0


UNRELIABLE_LAYOUTS = [(390, 844, False, "en"), (390, 844, False, "zh-CN"), (800, 900, False, "en"), (1280, 720, False, "en"),
                      (1024, 768, True, "en"), (1920, 1080, True, "en")]


@pytest.mark.parametrize("width, height, presenter, lang", UNRELIABLE_LAYOUTS,
                         ids=[f"{w}{'-presenter' if p else ''}-{lang}" for w, _, p, lang in UNRELIABLE_LAYOUTS])
def test_the_unreliable_message_fits_its_card_and_passes_axe(chromium, server, width, height, presenter, lang):
    from .browser import csp_violations, open_page
    from .test_browser_layout import OVERFLOW, serious

    context, page, errors = open_page(chromium, server, width, height, f"?lang={lang}" + ("&present=1" if presenter else ""))
    page.get_by_test_id("patching-run").scroll_into_view_if_needed()
    page.get_by_test_id("patching-run").click()
    page.get_by_test_id("patching-show-anyway").wait_for(state="visible")
    if lang == "zh-CN":
        assert "几乎没有差别" in page.get_by_test_id("patching-unreliable").text_content()
    spilled = [s for s in page.evaluate(OVERFLOW) if "patching" in s]
    page.get_by_test_id("patching-unreliable").scroll_into_view_if_needed()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"patching-unreliable-{width}{'-presenter' if presenter else ''}-{lang}.png"))
    assert spilled == [], spilled
    assert serious(page, context={"include": [["[data-stage=patching]"]]}) == []
    assert errors == [] and csp_violations(page) == []
    context.close()


ECHO = {"clean": "I saw a cat", "corrupted": "I saw a dog", "target": "cat", "baseline": "dog"}


@pytest.fixture(scope="module")
def echo_server(checkpoints, live_servers):
    """A tiny model built to echo " cat" and " dog": the two prompts clearly differ in their answer."""
    from .conftest import build_echo_checkpoint

    return live_servers.url(checkpoints(build=build_echo_checkpoint, words=(" cat", " dog"), seed=7, n_layer=N_LAYERS,
                                        n_head=N_HEADS))


def test_a_reliable_sweep_draws_its_heatmap_without_a_warning(chromium, echo_server):
    page = Page(chromium, echo_server)
    try:
        ids = {word: single_token(echo_server, ECHO[word]) for word in ("target", "baseline")}
        response = httpx.post(f"{echo_server}/api/patching", json={
            "clean": ECHO["clean"], "corrupted": ECHO["corrupted"], "target_token": ids["target"],
            "baseline_token": ids["baseline"], "hook": "attn_out"}, timeout=120)
        answer = response.json()
        assert answer["reliable"] is True and abs(answer["denominator"]) >= answer["threshold"]
        page.open()
        for field in ("clean", "corrupted", "target", "baseline"):
            page.page.get_by_test_id(f"patching-{field}").fill(ECHO[field])
        page.page.get_by_test_id("patching-hook").select_option("attn_out")
        page.page.get_by_test_id("patching-run").click()
        page.page.wait_for_function(HEATMAP_DATA)
        z = page.page.evaluate("() => document.querySelector('[data-testid=patching-heatmap]').data[0].z")
        np.testing.assert_allclose(np.array(z, dtype=float), np.array(answer["grid"], dtype=float), rtol=0, atol=0)
        assert page.page.get_by_test_id("patching-heatmap").is_visible()
        assert page.page.get_by_test_id("patching-unreliable").is_hidden()
        assert page.page.get_by_test_id("patching-lds").get_attribute("data-reliable") == "true"
        page.shot("patching-reliable", of="[data-testid=stage][data-stage=patching]")
    finally:
        errors = page.unexpected_errors()
        page.close()
    assert not errors, f"console errors: {errors}"
