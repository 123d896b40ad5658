"""The heads stage and the attribution stage, read from the page and compared with the API.

The ranked head badges carry GET /head-scores's numbers for the run the page shows, and are that
answer's top five per kind (ranked here independently); the induction test's top head is the
argmax of POST /induction-probe's scores. The attribution heatmap's z is GET /attribution's
`heads` for the page's two chosen candidates (the run's top two by default, then picked in the
selects and by clicking the output bars' token names), its logit
difference is the analyze answer's logits subtracted, and clicking a cell selects that head."""

from __future__ import annotations

import json
from urllib.parse import quote

import httpx
import numpy as np
import pytest

from app.runs.tensors import decode

from .browser import chromium  # noqa: F401 (a fixture)
from .test_browser import N_HEADS, N_LAYERS, PROMPT, api_analyze, server  # noqa: F401 (server: a fixture)
from .test_browser_patching import page  # noqa: F401 (a fixture: a Page with a clean console)

KINDS = ["previous_token", "duplicate_token", "induction"]
# Repeated tokens, so that every kind has query positions with keys of its kind.
REPEATED = "The cat sat on the mat. The cat sat on the mat. The cat sat"


def get(server: str, path: str, **params) -> dict:
    response = httpx.get(f"{server}{path}", params=params, timeout=120)
    response.raise_for_status()
    return response.json()


@pytest.fixture
def ui(page):
    """A fresh page (not yet opened) whose console must stay clean: test_browser_patching's."""
    return page


def shown_run(ui) -> str:
    return ui.page.evaluate("() => explainer.store.state.shown.main")


def top_five(grid) -> list[tuple[int, int]]:
    scored = [(score, layer, head) for layer, row in enumerate(grid) for head, score in enumerate(row) if score is not None]
    scored.sort(key=lambda x: (-x[0], x[1], x[2]))
    return [(layer, head) for _, layer, head in scored[:5]]


def test_the_head_badges_are_the_apis_scores_for_the_run_shown(ui, server):
    ui.open(f"?p={quote(REPEATED)}")
    ui.page.locator("#stage-heads").scroll_into_view_if_needed()
    ui.page.wait_for_selector("[data-testid=head-badge]")
    run_id = shown_run(ui)
    assert run_id == api_analyze(server, REPEATED)["run_id"]
    assert ui.page.locator("#stage-heads").get_attribute("data-run-id") == run_id
    scores = get(server, f"/api/runs/{run_id}/head-scores")
    badges = ui.page.evaluate("() => [...document.querySelectorAll('#stage-heads [data-testid=head-badge]')].map(b =>"
                              " [b.dataset.kind, Number(b.dataset.layer), Number(b.dataset.head), Number(b.dataset.score)])")
    for kind in KINDS:
        mine = [(layer, head) for k, layer, head, _ in badges if k == kind]
        assert mine == top_five(scores[kind]), kind
        assert len(mine) == min(5, N_LAYERS * N_HEADS)
    for kind, layer, head, score in badges:
        assert 0 <= score <= 1
        assert score == pytest.approx(scores[kind][layer][head], rel=1e-12, abs=1e-15)
    definitions = ui.page.evaluate("() => Object.fromEntries([...document.querySelectorAll('[data-testid=head-definition]')]"
                                   ".map(q => [q.dataset.kind, q.textContent]))")
    assert set(definitions) == set(scores["definitions"])  # each kind the API defines is defined on the page
    assert all(definitions.values())
    # A badge selects its head everywhere.
    kind, layer, head, _ = next(b for b in badges if (b[1], b[2]) != (0, 0))
    ui.page.locator(f"#stage-heads [data-testid=head-badge][data-kind={kind}][data-layer='{layer}'][data-head='{head}']").click()
    assert ui.page.evaluate("() => [explainer.store.state.layer, explainer.store.state.head]") == [layer, head]
    ui.page.locator("#stage-heads").scroll_into_view_if_needed()
    ui.shot("heads-stage", of="#stage-heads")


def test_the_induction_test_shows_the_probes_top_head(ui, server):
    ui.open()
    ui.page.locator("#stage-heads").scroll_into_view_if_needed()
    ui.page.get_by_test_id("induction-probe-button").click()
    ui.page.wait_for_selector("[data-testid=induction-probe-head]")
    response = httpx.post(f"{server}/api/induction-probe", json={"length": 50, "seed": 0}, timeout=120)
    response.raise_for_status()
    probe = response.json()
    induction = np.array([[np.nan if s is None else s for s in row] for row in probe["induction"]], dtype=np.float64)
    best = np.unravel_index(np.nanargmax(induction), induction.shape)
    shown = ui.page.evaluate("() => [...document.querySelectorAll('[data-testid=induction-probe-head]')].map(b =>"
                             " [Number(b.dataset.layer), Number(b.dataset.head), Number(b.dataset.score)])")
    assert shown[0][:2] == [int(best[0]), int(best[1])]
    assert shown[0][2] == pytest.approx(induction[best], rel=1e-12)
    assert [s[2] for s in shown] == sorted((s[2] for s in shown), reverse=True)
    loss = ui.page.get_by_test_id("induction-probe-loss")
    assert float(loss.get_attribute("data-first")) == pytest.approx(probe["loss_first_half"], rel=1e-12)
    assert float(loss.get_attribute("data-second")) == pytest.approx(probe["loss_second_half"], rel=1e-12)
    # The halves' means are the per-position losses' (length − 1 predictions inside the first half;
    # in the second, the repeated tokens but the first, which no induction head can predict).
    n = probe["length"]
    assert probe["loss_first_half"] == pytest.approx(np.mean(probe["loss"][: n - 1]), rel=1e-5)
    assert probe["loss_second_half"] == pytest.approx(np.mean(probe["loss"][n:]), rel=1e-5)
    ui.shot("heads-induction-test", of="[data-testid=induction-probe-button]")


def heatmap_z(ui) -> list[list[float]]:
    return ui.page.evaluate("() => document.querySelector('[data-testid=attribution-heatmap]').data[0].z")


def test_the_attribution_heatmap_is_the_apis_heads_and_a_click_selects_the_head(ui, server):
    ui.open(f"?p={quote(PROMPT)}")
    ui.page.locator("#stage-attribution").scroll_into_view_if_needed()
    ui.page.wait_for_function("() => document.querySelector('[data-testid=attribution-heatmap]').data")
    run_id = shown_run(ui)
    body = api_analyze(server, PROMPT)
    assert run_id == body["run_id"]
    top = [t["id"] for t in body["top"]]
    logits = decode(body["tensors"]["logits"]).astype(np.float64)

    def check(target: int, baseline: int) -> None:
        answer = get(server, f"/api/runs/{run_id}/attribution", target=target, baseline=baseline)
        z = heatmap_z(ui)
        assert np.array(z).shape == (N_LAYERS, N_HEADS)
        np.testing.assert_array_equal(np.array(z, dtype=np.float64), np.array(answer["heads"], dtype=np.float64))
        total = float(ui.page.get_by_test_id("attribution-sum").get_attribute("data-total"))
        diff = float(ui.page.get_by_test_id("attribution-sum").get_attribute("data-logit-diff"))
        assert diff == pytest.approx(answer["logit_diff"], rel=1e-12)
        assert total == pytest.approx(answer["total"], rel=1e-12)
        # Independently: the run's own logits, and the parts added up here.
        assert diff == pytest.approx(logits[target] - logits[baseline], abs=1e-3)
        parts = (answer["embed"] + answer["pos_embed"] + np.sum(answer["heads"]) + np.sum(answer["attn_bias"])
                 + np.sum(answer["mlp"]) + answer["ln_final_bias"])
        assert parts == pytest.approx(diff, abs=1e-3)

    assert ui.page.get_by_test_id("attribution-target").input_value() == str(top[0])
    assert ui.page.get_by_test_id("attribution-baseline").input_value() == str(top[1])
    check(top[0], top[1])
    before = heatmap_z(ui)
    ui.page.get_by_test_id("attribution-baseline").select_option(str(top[2]))
    ui.page.wait_for_function("(before) => JSON.stringify(document.querySelector('[data-testid=attribution-heatmap]').data[0].z)"
                              " !== before", arg=json.dumps(before))
    check(top[0], top[2])
    # Picked on the output bars: the token clicked becomes the target, the one clicked before it the baseline.
    for token in (top[3], top[1]):
        ui.page.locator(f"[data-testid=prob-bar][data-token-id='{token}'] [data-testid=pick-candidate]").click()
    ui.page.locator("#stage-attribution").scroll_into_view_if_needed()
    ui.page.wait_for_function("([a, b]) => { const sum = document.querySelector('[data-testid=attribution-sum]');"
                              " return sum.dataset.target === a && sum.dataset.baseline === b; }", arg=[str(top[1]), str(top[3])])
    assert ui.page.get_by_test_id("attribution-target").input_value() == str(top[1])
    assert ui.page.get_by_test_id("attribution-baseline").input_value() == str(top[3])
    tags = ui.page.evaluate("() => Object.fromEntries([...document.querySelectorAll('[data-testid=prob-bar]')]"
                            ".filter(b => b.dataset.candidate).map(b => [b.dataset.candidate, Number(b.dataset.tokenId)]))")
    assert tags == {"target": top[1], "baseline": top[3]}
    check(top[1], top[3])
    # Click the cell of layer L-1, head 1: its centre in page pixels, from Plotly's axes.
    layer, head = N_LAYERS - 1, 1
    x, y = ui.page.evaluate("([l, h]) => { const gd = document.querySelector('[data-testid=attribution-heatmap]');"
                            " const fl = gd._fullLayout; const r = gd.getBoundingClientRect();"
                            " return [r.left + fl.xaxis._offset + fl.xaxis.l2p(h), r.top + fl.yaxis._offset + fl.yaxis.l2p(l)]; }",
                            [layer, head])
    ui.page.mouse.click(x, y)
    ui.page.wait_for_function(f"() => explainer.store.state.layer === {layer} && explainer.store.state.head === {head}")
    ui.page.locator("#stage-attribution").scroll_into_view_if_needed()
    ui.shot("attribution-stage", of="#stage-attribution")
    ui.shot("attribution-bars", of="#stage-attribution [data-testid=attribution-bars]")


def test_the_overview_colours_its_heads_by_a_detectors_score(ui, server):
    """"Colour the heads by" a detector: every head of the overview carries the API's score."""
    ui.open(f"?p={quote(REPEATED)}")
    scores = get(server, f"/api/runs/{shown_run(ui)}/head-scores")
    for kind in ("induction", "previous_token"):
        ui.page.get_by_test_id("overview-colour").select_option(kind)
        ui.page.wait_for_selector(f"[data-testid=overview-head][data-kind={kind}][data-value]")
        shown = ui.page.evaluate("() => [...document.querySelectorAll('[data-testid=overview-head]')].map(r =>"
                                 " [Number(r.dataset.layer), Number(r.dataset.head), r.dataset.kind, r.dataset.value ?? null])")
        for layer, head, k, value in shown:
            assert k == kind
            expected = scores[kind][layer][head]
            assert (value is None) == (expected is None)
            if expected is not None:
                assert float(value) == pytest.approx(expected, abs=1e-12)
    ui.page.wait_for_function("location.search.includes('hc=previous_token')")


@pytest.fixture(scope="module")
def prev_server(checkpoints, live_servers):
    """A server on the checkpoint whose head 0.0 is a previous-token head by construction."""
    from .test_heads import previous_token_checkpoint

    return live_servers.url(checkpoints(build=previous_token_checkpoint))


def test_the_head_grid_tags_the_heads_the_detectors_find(chromium, prev_server):
    """In the all-layers grid, a head whose strongest score is at least 0.5 carries a tag with the
    API's kind and score (head 0.0, built to attend to the previous token); no other head does."""
    from .test_browser import Page

    ui = Page(chromium, prev_server)
    # Its token embeddings are all zero (by construction), so "king − man + woman" is a zero vector: a 422 the page shows.
    ui.allowed.append("422")
    try:
        ui.open(f"?p={quote('one two three four five six seven eight nine')}")
        scores = get(prev_server, f"/api/runs/{shown_run(ui)}/head-scores")
        ui.page.locator("#all-layers").check()
        n_layers, n_heads = len(scores["previous_token"]), len(scores["previous_token"][0])
        expected = {}
        for layer in range(n_layers):
            for head in range(n_heads):
                found = [(scores[k][layer][head], k) for k in KINDS if scores[k][layer][head] is not None and scores[k][layer][head] >= 0.5]
                if found:
                    expected[(layer, head)] = max(found)
        assert expected[(0, 0)][1] == "previous_token"
        ui.page.wait_for_selector("[data-testid=grid-badge]")
        shown = ui.page.evaluate("() => [...document.querySelectorAll('[data-testid=grid-badge]')].map(b =>"
                                 " [Number(b.dataset.layer), Number(b.dataset.head), b.dataset.kind, Number(b.dataset.score)])")
        assert {(l, h) for l, h, _, _ in shown} == set(expected)
        for layer, head, kind, score in shown:
            assert kind == expected[(layer, head)][1] and score == pytest.approx(expected[(layer, head)][0], abs=1e-12)
        assert not ui.unexpected_errors(), ui.errors
    finally:
        ui.close()
