"""Views over a store, proved on /compare: every stage view is mounted twice on one store, with
the run keys "a" and "b", and each column shows its own run's numbers (read from the page,
compared with the API's answers for that column's prompt). The selection is shared: hovering a
token in one column shows the same position in both. Unmounting leaves nothing behind."""

from __future__ import annotations

import urllib.parse

import numpy as np
import pytest

from app.runs.tensors import decode

from .browser import chromium  # noqa: F401 (a fixture)
from .test_browser import Page, api_analyze, expected_row, patterns, server, softmax  # noqa: F401 (server: a fixture)

A = "When Mary and John went to the store, John gave a drink to"
B = "The cat sat on the mat"


@pytest.fixture(scope="module")
def runs(server):
    out = {}
    for key, text in (("a", A), ("b", B)):
        body = api_analyze(server, text)
        body["patterns_np"] = patterns(body)
        body["logits_np"] = decode(body["tensors"]["logits"]).astype(np.float64)
        body["prompt"] = text
        out[key] = body
    return out


@pytest.fixture
def ab(chromium, server):
    page = Page(chromium, server)
    page.page.goto(f"{server}/compare?a={urllib.parse.quote(A)}&b={urllib.parse.quote(B)}")
    page.page.wait_for_selector("body[data-loaded='1']")
    for key in "ab":
        page.page.wait_for_selector(f"[data-run-key={key}] [data-testid=prob-bar]")
        page.page.wait_for_selector(f"[data-run-key={key}] [data-testid=overview-prediction][data-token-id]")
    yield page
    errors = page.unexpected_errors()
    page.close()
    assert not errors, f"console errors: {errors}"


def column(page, key: str, script: str):
    """Evaluate `script` (a function of the column's element) in column `key`."""
    return page.page.evaluate(f"(key) => {{ const root = document.querySelector(`[data-run-key=${{key}}]`); return ({script})(root); }}", key)


def test_each_column_shows_its_own_runs_numbers(ab, runs):
    for key in "ab":
        body = runs[key]
        chips = column(ab, key, "(r) => [...r.querySelectorAll('[data-testid=token]')].map(c => Number(c.querySelector('.id').textContent))")
        assert chips == [t["id"] for t in body["tokens"]]
        bars = column(ab, key, "(r) => [...r.querySelectorAll('[data-testid=prob-bar]')].map(b => [Number(b.dataset.tokenId), Number(b.dataset.prob)])")
        p = softmax(body["logits_np"], 1.0)
        assert [i for i, _ in bars] == [t["id"] for t in body["top"]]
        np.testing.assert_allclose([q for _, q in bars], [p[i] for i, _ in bars], rtol=1e-4, atol=1e-7)
        prediction = column(ab, key, "(r) => Number(r.querySelector('[data-testid=overview-prediction]').dataset.tokenId)")
        assert prediction == body["top"][0]["id"]
        # The residual stream's length under each block is this run's, at its last token.
        norms = column(ab, key, "(r) => [...r.querySelectorAll('[data-testid=overview-norm]')].map(n => Number(n.dataset.value))")
        resid = decode(body["resid_norms"])
        np.testing.assert_allclose(norms, resid[1:, -1], rtol=1e-5)
        # The prompt box holds the column's own text, and the URL both.
        assert column(ab, key, "(r) => r.querySelector('[data-testid=prompt-input]').value") == body["prompt"]
    assert runs["a"]["run_id"] != runs["b"]["run_id"]
    query = urllib.parse.parse_qs(urllib.parse.urlparse(ab.page.url).query)
    assert query["a"] == [A] and query["b"] == [B]


def test_the_selection_is_shared_and_each_column_draws_its_own_pattern(ab, runs):
    ab.page.get_by_test_id("layer-select").select_option("1")
    ab.page.get_by_test_id("head-select").select_option("2")
    i = 3
    ab.page.locator(f"[data-run-key=a] [data-testid=token][data-index='{i}']").hover()
    for key in "ab":
        ab.page.wait_for_selector(f"[data-run-key={key}] [data-testid=token][data-weight]")
        weights = column(ab, key, "(r) => [...r.querySelectorAll('[data-testid=token]')].map(c => Number(c.dataset.weight))")
        np.testing.assert_allclose(weights, expected_row(runs[key]["patterns_np"][1], 2, i)[: len(weights)], atol=1e-3)
        ab.page.wait_for_selector(f"[data-run-key={key}] [data-testid=attention-line]")
        lines = column(ab, key, "(r) => [...r.querySelectorAll('[data-testid=attention-line]')].map(l => [Number(l.dataset.from), Number(l.dataset.to), Number(l.dataset.weight)])")
        row = runs[key]["patterns_np"][1][2, i]
        assert {f for f, _, _ in lines} == {i}
        for _, j, w in lines:
            assert abs(w - row[j]) < 1e-3
        # The heatmap title names the shared selection in both columns.
        title = column(ab, key, "(r) => r.querySelector('[data-stage=attention] h2').textContent")
        assert "1" in title and "2" in title


def test_a_new_prompt_in_one_column_leaves_the_other_alone(ab, runs, server):
    before = column(ab, "b", "(r) => [...r.querySelectorAll('[data-testid=prob-bar]')].map(b => b.dataset.prob)")
    text = "1, 2, 3, 4, 5,"
    box = ab.page.locator("[data-run-key=a] [data-testid=prompt-input]")
    box.fill(text)
    box.press("Enter")
    fresh = api_analyze(server, text)
    ab.page.wait_for_function(
        "(n) => document.querySelectorAll('[data-run-key=a] [data-testid=token]').length === n", arg=len(fresh["tokens"]))
    bars = column(ab, "a", "(r) => [...r.querySelectorAll('[data-testid=prob-bar]')].map(b => Number(b.dataset.tokenId))")
    assert bars == [t["id"] for t in fresh["top"]]
    assert column(ab, "b", "(r) => [...r.querySelectorAll('[data-testid=prob-bar]')].map(b => b.dataset.prob)") == before
    ab.page.wait_for_function(f"() => new URLSearchParams(location.search).get('a') === {text!r}")


def test_unmounting_every_view_leaves_no_subscription_and_no_redraw(ab):
    before = ab.page.evaluate("() => window.explainer.store.subscriptions()")
    assert before >= 20  # nine stages, twice, and the lines
    changes = ab.page.evaluate("""async () => {
        const { store, unmountViews } = window.explainer;
        unmountViews();
        const left = store.subscriptions();
        let mutations = 0;
        const watch = new MutationObserver((records) => { mutations += records.length; });
        watch.observe(document.querySelector('main'), { subtree: true, childList: true, attributes: true, characterData: true });
        store.set({ layer: 2, head: 1, hovered: 2, pinned: 1, temperature: 0.5, presenter: false });
        window.dispatchEvent(new Event('resize'));
        await new Promise((r) => setTimeout(r, 600));
        watch.disconnect();
        return { left, mutations };
    }""")
    # What stays is the page's own: the presenter button and the URL.
    assert changes["left"] <= 2, changes
    assert changes["mutations"] == 0, changes


def test_a_head_switched_off_applies_to_both_prompts_each_over_its_own_ghosts(ab, server):
    """The compare view shows both runs with the change: each column's bars are its own prompt's
    intervened distribution (the API's), over ghosts of its own clean run."""
    import httpx

    ablation = {"hook": "blocks.1.attn.hook_z", "op": "zero", "head": 2}
    ab.page.locator("[data-run-key=a] [data-testid=ablate-toggle]").click()
    ab.page.locator("[data-run-key=a] [data-testid=overview-head][data-layer='1'][data-head='2']").dispatch_event("click")
    for key, text in (("a", A), ("b", B)):
        ab.page.wait_for_selector(f"[data-run-key={key}] [data-testid=ghost-bar]")
        body = httpx.post(f"{server}/api/analyze", json={"text": text, "interventions": [ablation]}, timeout=60).json()
        expected = softmax(decode(body["tensors"]["logits"]).astype(np.float64), 1.0)
        clean = softmax(decode(api_analyze(server, text)["tensors"]["logits"]).astype(np.float64), 1.0)
        bars = column(ab, key, "(r) => [...r.querySelectorAll('[data-testid=prob-bar]')].map(b => [Number(b.dataset.tokenId), Number(b.dataset.prob)])")
        assert [i for i, _ in bars] == [t["id"] for t in body["top"]]
        np.testing.assert_allclose([p for _, p in bars], expected[[i for i, _ in bars]], rtol=1e-4, atol=1e-9)
        ghosts = column(ab, key, "(r) => [...r.querySelectorAll('[data-testid=ghost-bar]')].map(b => [Number(b.dataset.tokenId), Number(b.dataset.prob)])")
        np.testing.assert_allclose([p for _, p in ghosts], clean[[i for i, _ in ghosts]], rtol=1e-4, atol=1e-9)
        assert column(ab, key, "(r) => r.querySelectorAll('[data-testid=intervention]').length") == 1
    # The URL holds it: the same link opens both prompts with the head switched off.
    ab.page.wait_for_function("() => new URLSearchParams(location.search).has('abl')")
    import json
    assert json.loads(urllib.parse.parse_qs(urllib.parse.urlparse(ab.page.url).query)["abl"][0]) == [ablation]
    ab.page.goto(ab.page.url)
    ab.page.wait_for_selector("[data-run-key=b] [data-testid=ghost-bar]")
    assert ab.page.evaluate("() => explainer.store.state.interventions.length") == 1
