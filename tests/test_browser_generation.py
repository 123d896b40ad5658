"""Generate on the page, in Chromium, against the API (issue 22):

- the run shown after a generation is exactly the prompt's ids followed by the generated ids
  (the `done` event's ids, GET /api/runs/{id}), never the text tokenized again: the seed is
  chosen so that the text would tokenize to other ids; the URL carries the ids, so a reload and
  Back/Forward show the same runs;
- with a head switched off, Generate stays on and writes twice with the same seed: the clean
  continuation and the ablated one, each equal to what the API streams for that request; the
  ablated one becomes the run shown, its ghost bars the clean model on the same ids;
- Stop (the stream slowed down in the page) leaves the page consistent: the run shown is the
  prompt's ids and the tokens that arrived, which are the start of the full generation;
- the real <|endoftext|> token is appended by its id; typed, it is plain text;
- nothing spills out of its card at 390, 1280 and 1920 (presenter), axe finds nothing serious,
  the console stays clean. Screenshots go to test-artifacts/generation-*.png.
"""

from __future__ import annotations

import json
import urllib.parse

import httpx
import numpy as np
import pytest

from app.runs.tensors import decode

from .browser import ARTIFACTS, chromium, csp_violations, open_page  # noqa: F401 (chromium is a fixture)
from .test_browser import Page, page, server, softmax  # noqa: F401 (page and server are fixtures)
from .test_browser_layout import OVERFLOW, serious

PROMPT = "Once upon a time"
T = 1.8
ABLATION = {"hook": "blocks.1.attn.hook_z", "op": "zero", "head": 2}
END_OF_TEXT = 50256


# ---------------------------------------------------------------- the API, independently

def analyze(server: str, **body) -> dict:
    response = httpx.post(f"{server}/api/analyze", json=body, timeout=60)
    response.raise_for_status()
    return response.json()


def ids_of(body: dict) -> list[int]:
    return [t["id"] for t in body["tokens"]]


def stream(server: str, **body) -> tuple[list[dict], dict]:
    """POST /api/generate: (the token events, the done event)."""
    steps, done, event = [], None, "message"
    with httpx.stream("POST", f"{server}/api/generate", json=body, timeout=120) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data = json.loads(line[5:])
                assert event != "error", data
                if event == "done":
                    done = data
                else:
                    steps.append(data)
                event = "message"
    assert done is not None
    return steps, done


def generated(steps: list[dict]) -> list[int]:
    return [s["token"]["id"] for s in steps]


def retokenizes_differently(server: str, done: dict) -> bool:
    return ids_of(analyze(server, text=done["text"])) != done["ids"]


# ---------------------------------------------------------------- the page

def chip_ids(page: Page) -> list[int]:
    return page.page.evaluate("() => [...document.querySelectorAll('[data-testid=token] .id')].map(s => Number(s.textContent))")


def shown(page: Page) -> dict:
    return page.page.evaluate("""() => { const s = explainer.store.state; const r = s.runs.get(s.shown.main);
        return {runId: r.runId, ids: r.ids, text: r.text, interventions: r.interventions}; }""")


def continuation(page: Page, kind: str) -> list[int]:
    return page.page.evaluate(f"""() => [...document.querySelectorAll(
        '[data-testid=continuation][data-kind={kind}] [data-testid=continuation-token]')].map(s => Number(s.dataset.tokenId))""")


def url_params(page: Page) -> dict:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlparse(page.page.url).query))


def generate_and_wait(page: Page, max_new: int, *, both: bool = False) -> None:
    page.page.locator("#max-new-tokens").fill(str(max_new))
    before = page.runs()
    page.page.get_by_test_id("generate-button").click()
    page.wait_run(before)
    if both:
        page.page.wait_for_function("!!(explainer.store.state.generation.main || {}).runId")
    page.page.wait_for_function("explainer.store.state.busy === null")


def query(seed: int, interventions: list[dict] | None = None, prompt: str = PROMPT) -> str:
    q = f"?p={urllib.parse.quote(prompt)}&t={T}&seed={seed}"
    return q + (f"&abl={urllib.parse.quote(json.dumps(interventions))}" if interventions else "")


@pytest.fixture(scope="module")
def prompt_ids(server) -> list[int]:
    return ids_of(analyze(server, text=PROMPT))


@pytest.fixture(scope="module")
def telling_seed(server, prompt_ids) -> tuple[int, dict]:
    """A seed whose 24 generated tokens do not survive being detokenized and tokenized again (byte
    tokens, merges across the boundaries), so that a page re-tokenizing the text would show other ids."""
    for seed in range(40):
        _, done = stream(server, ids=prompt_ids, max_new_tokens=24, temperature=T, seed=seed)
        if retokenizes_differently(server, done):
            return seed, done
    pytest.fail("no seed in 0..39 gives a text that tokenizes to other ids")


@pytest.fixture(scope="module")
def parting_seed(server, prompt_ids) -> int:
    """A seed at which the head switched off changes what is written within 16 tokens."""
    for seed in range(40):
        clean, _ = stream(server, ids=prompt_ids, max_new_tokens=16, temperature=T, seed=seed)
        ablated, _ = stream(server, ids=prompt_ids, max_new_tokens=16, temperature=T, seed=seed, interventions=[ABLATION])
        if generated(clean) != generated(ablated) and generated(clean)[0] == generated(ablated)[0]:
            return seed
    pytest.fail("no seed in 0..39 where switching the head off changes the text after its first token")




# ---------------------------------------------------------------- tests

def test_a_generation_shows_exactly_the_ids_generated(page, server, prompt_ids, telling_seed):
    seed, done = telling_seed
    page.open(query(seed))
    assert chip_ids(page) == prompt_ids
    generate_and_wait(page, 24)

    # The chips are the done event's ids: the prompt's, then the 24 generated, not the text's tokens.
    assert len(done["ids"]) == len(prompt_ids) + 24 and done["ids"][:len(prompt_ids)] == prompt_ids
    assert chip_ids(page) == done["ids"]
    assert page.page.locator(".chip.fresh").count() == 24
    run = shown(page)
    assert run["ids"] == done["ids"] and run["interventions"] == []
    assert run["runId"] == done["run_id"]  # the run the done event named
    served = httpx.get(f"{server}/api/runs/{done['run_id']}", timeout=60).json()
    assert [t["id"] for t in served["tokens"]] == done["ids"] and served["interventions"] == []
    assert page.page.get_by_test_id("prompt-input").input_value() == done["text"] == served["text"]
    assert retokenizes_differently(server, done)  # so the comparisons above could fail

    # The URL names the ids: a reload shows the same run, and Back/Forward move between the two.
    page.page.wait_for_function("new URLSearchParams(location.search).has('ids')")
    params = url_params(page)
    assert params["ids"] == ",".join(map(str, done["ids"])) and params["p"] == done["text"]
    page.page.reload()
    page.page.wait_for_selector("body[data-loaded='1']")
    page.wait_run(0)
    assert chip_ids(page) == done["ids"]
    assert page.page.get_by_test_id("prompt-input").input_value() == done["text"]
    page.page.go_back()
    page.page.wait_for_function(f"document.querySelectorAll('[data-testid=token]').length === {len(prompt_ids)}")
    assert chip_ids(page) == prompt_ids and "ids" not in url_params(page)
    page.page.go_forward()
    page.page.wait_for_function(f"document.querySelectorAll('[data-testid=token]').length === {len(done['ids'])}")
    assert chip_ids(page) == done["ids"]
    page.shot("generation-plain", of="#generate-button")


def test_with_a_head_switched_off_generate_writes_both(page, server, prompt_ids, parting_seed):
    seed = parting_seed
    page.open(query(seed, [ABLATION]))
    page.page.wait_for_selector("[data-testid=ghost-bar]")
    button = page.page.get_by_test_id("generate-button")
    assert button.is_enabled() and button.get_attribute("title")
    generate_and_wait(page, 16, both=True)

    clean_steps, clean_done = stream(server, ids=prompt_ids, max_new_tokens=16, temperature=T, seed=seed)
    ablated_steps, ablated_done = stream(server, ids=prompt_ids, max_new_tokens=16, temperature=T, seed=seed,
                                         interventions=[ABLATION])
    assert continuation(page, "clean") == generated(clean_steps)
    assert continuation(page, "ablated") == generated(ablated_steps)
    assert generated(clean_steps) != generated(ablated_steps)
    labels = page.page.locator("[data-testid=continuation] .continuation-label").all_inner_texts()
    assert labels == ["With every part on", "With head 2 of layer 1 switched off"]
    texts = page.page.get_by_test_id("continuation-text").all_inner_texts()
    assert texts == [clean_done["text"][len(PROMPT):], ablated_done["text"][len(PROMPT):]]
    parted = page.page.locator("[data-kind=ablated] .parted").count()
    first = next(i for i, (a, b) in enumerate(zip(generated(clean_steps), generated(ablated_steps))) if a != b)
    assert parted == 16 - first
    assert f"new token {first + 1}" in page.page.get_by_test_id("continuation-status").inner_text()

    # The ablated continuation is the run shown, by its ids and with the intervention.
    assert chip_ids(page) == ablated_done["ids"]
    run = shown(page)
    assert run["runId"] == ablated_done["run_id"]
    assert [{k: v for k, v in x.items() if v is not None} for x in run["interventions"]] == [ABLATION]
    # Its bars are that run's; its ghosts the clean model on the same ids, at the page's temperature.
    bars = dict(page.bars())
    ablated = softmax(decode(analyze(server, ids=ablated_done["ids"], interventions=[ABLATION])["tensors"]["logits"]), T)
    np.testing.assert_allclose(list(bars.values()), ablated[list(bars)], rtol=1e-4, atol=1e-9)
    ghosts = dict(page.page.evaluate(
        "() => [...document.querySelectorAll('[data-testid=ghost-bar]')].map(b => [Number(b.dataset.tokenId), Number(b.dataset.prob)])"))
    clean = softmax(decode(analyze(server, ids=ablated_done["ids"])["tensors"]["logits"]), T)
    assert list(ghosts) == list(bars)
    np.testing.assert_allclose(list(ghosts.values()), clean[list(ghosts)], rtol=1e-4, atol=1e-9)
    assert np.abs(ablated[list(bars)] / clean[list(bars)] - 1).max() > 1e-3  # bars and ghosts differ
    assert url_params(page)["ids"] == ",".join(map(str, ablated_done["ids"]))
    page.page.set_viewport_size({"width": 1280, "height": 720})
    page.shot("generation-both", of="#generate-button")

    # Switching the head back on analyzes the same ids without it; the two lines go with the run.
    before = page.runs()
    page.page.get_by_test_id("remove-intervention").click()
    page.wait_run(before)
    assert chip_ids(page) == ablated_done["ids"] and shown(page)["interventions"] == []
    assert page.page.get_by_test_id("continuations").is_hidden()


# Each event of /api/generate's body reaches the page 150 ms after the one before (one event per
# read, however the server's bytes were chunked): Stop can be pressed part-way.
SLOW_STREAM = """(() => {
  const fetch0 = window.fetch;
  window.fetch = async (url, options) => {
    const response = await fetch0(url, options);
    if (!String(url).includes('/api/generate') || !response.body) return response;
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    const encoder = new TextEncoder();
    let buffer = '';
    let ended = false;
    const aborted = () => options && options.signal && options.signal.aborted;
    const body = new ReadableStream({ async pull(controller) {
      if (aborted()) throw new DOMException('Aborted', 'AbortError');
      while (!ended && buffer.indexOf('\\n\\n') < 0) {
        const { value, done } = await reader.read();
        if (done) ended = true; else buffer += decoder.decode(value, { stream: true });
      }
      await new Promise((r) => setTimeout(r, 150));
      if (aborted()) throw new DOMException('Aborted', 'AbortError');  // Stop: what is still buffered never arrives
      const cut = buffer.indexOf('\\n\\n');
      if (cut >= 0) {
        controller.enqueue(encoder.encode(buffer.slice(0, cut + 2)));
        buffer = buffer.slice(cut + 2);
      } else {
        if (buffer) controller.enqueue(encoder.encode(buffer));
        controller.close();
      }
    } });
    return new Response(body, { status: response.status, statusText: response.statusText, headers: response.headers });
  };
})();"""


@pytest.mark.parametrize("switched_off", [False, True], ids=["plain", "head-off"])
def test_stop_leaves_the_prompt_and_the_tokens_that_arrived(page, server, prompt_ids, parting_seed, switched_off):
    seed = parting_seed
    page.context.add_init_script(SLOW_STREAM)
    page.open(query(seed, [ABLATION] if switched_off else None))
    page.page.locator("#max-new-tokens").fill("60")
    before = page.runs()
    page.page.get_by_test_id("generate-button").click()
    arrived = "[data-kind=ablated] [data-testid=continuation-token]" if switched_off else "[data-testid=generated-token]"
    page.page.wait_for_function(f"document.querySelectorAll('{arrived}').length >= 3")
    assert page.page.get_by_test_id("generate-button").is_disabled()
    page.page.locator("#stop-button").click()
    page.wait_run(before)
    page.page.wait_for_function("explainer.store.state.busy === null")

    if switched_off:
        got = continuation(page, "ablated")
        clean_got = continuation(page, "clean")
        assert "Stopped" in page.page.get_by_test_id("continuation-status").inner_text()
    else:
        # The lone stream's tokens were under the chips (gone with the stream): the chips after the prompt's.
        assert page.page.locator("#generated").is_hidden()
        got = chip_ids(page)[len(prompt_ids):]
    assert 3 <= len(got) < 60
    full, _ = stream(server, ids=prompt_ids, max_new_tokens=60, temperature=T, seed=seed,
                     **({"interventions": [ABLATION]} if switched_off else {}))
    assert got == generated(full)[:len(got)]  # the start of the very same generation
    assert chip_ids(page) == prompt_ids + got
    run = shown(page)
    assert run["ids"] == prompt_ids + got and bool(run["interventions"]) == switched_off
    if switched_off:
        clean_full, _ = stream(server, ids=prompt_ids, max_new_tokens=60, temperature=T, seed=seed)
        assert 1 <= len(clean_got) < 60 and clean_got == generated(clean_full)[:len(clean_got)]
    # The page is ready for the next thing: buttons back, Stop gone, the URL names the run.
    assert page.page.get_by_test_id("generate-button").is_enabled()
    assert page.page.locator("#stop-button").is_hidden()
    assert page.page.get_by_test_id("analyze-button").is_enabled()
    page.page.wait_for_function("new URLSearchParams(location.search).has('ids')")
    assert url_params(page)["ids"] == ",".join(map(str, prompt_ids + got))
    if switched_off:
        page.page.set_viewport_size({"width": 1280, "height": 720})
        page.shot("generation-stopped", of="#generate-button")


def test_the_end_of_text_token_is_added_by_its_id(page, server, prompt_ids):
    page.open(f"?p={urllib.parse.quote(PROMPT)}")
    button = page.page.get_by_test_id("end-of-text")
    assert "50256" in button.get_attribute("title")
    before = page.runs()
    button.click()
    page.wait_run(before)
    assert chip_ids(page) == prompt_ids + [END_OF_TEXT]
    assert page.page.locator("[data-testid=token] .t").last.inner_text() == "<|endoftext|>"
    box = page.page.get_by_test_id("prompt-input")
    assert box.input_value() == PROMPT + "<|endoftext|>"
    # Typed, the same characters are plain text: other tokens.
    typed = ids_of(analyze(server, text=PROMPT + "<|endoftext|>"))
    assert END_OF_TEXT not in typed and len(typed) > len(prompt_ids) + 1
    page.page.wait_for_function("new URLSearchParams(location.search).has('ids')")
    assert url_params(page)["ids"] == ",".join(map(str, prompt_ids + [END_OF_TEXT]))
    # Enter on the unchanged box keeps the token; a Generate after it continues those ids.
    before = page.runs()
    box.press("Enter")
    page.wait_run(before)
    assert chip_ids(page) == prompt_ids + [END_OF_TEXT]
    generate_and_wait(page, 5)
    assert chip_ids(page)[:len(prompt_ids) + 1] == prompt_ids + [END_OF_TEXT] and len(chip_ids(page)) == len(prompt_ids) + 6
    # Typing changes it into text again: analyzed as typed.
    before = page.runs()
    box.fill(PROMPT + "<|endoftext|>")
    box.press("Enter")
    page.wait_run(before)
    assert chip_ids(page) == typed


LAYOUTS = [(390, 844, False, "en"), (800, 900, False, "en"), (1280, 720, False, "en"), (1024, 768, True, "en"),
           (1920, 1080, True, "en"), (390, 844, False, "zh-CN"), (1920, 1080, True, "zh-CN")]
TWO_FRAMES = "() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))"


@pytest.mark.parametrize("width, height, presenter, lang", LAYOUTS,
                         ids=[f"{w}{'-presenter' if p else ''}{'' if lang == 'en' else '-' + lang}" for w, _, p, lang in LAYOUTS])
def test_both_continuations_fit_and_pass_axe(chromium, server, parting_seed, width, height, presenter, lang):
    q = query(parting_seed, [ABLATION]) + f"&lang={lang}" + ("&present=1" if presenter else "")
    context, page, errors = open_page(chromium, server, width, height, q, bypass_csp=True)
    page.wait_for_selector("[data-testid=ghost-bar]")
    page.locator("#max-new-tokens").fill("16")
    page.get_by_test_id("generate-button").click()
    page.wait_for_function("!!(explainer.store.state.generation.main || {}).runId")
    page.wait_for_function("explainer.store.state.busy === null")
    page.locator("#stage-output [data-testid=continuations]").scroll_into_view_if_needed()
    page.evaluate(TWO_FRAMES)  # laid out and painted after the scroll
    spilled = page.evaluate(OVERFLOW)
    ARTIFACTS.mkdir(exist_ok=True)
    name = f"generation-{width}{'-presenter' if presenter else ''}{'' if lang == 'en' else '-' + lang}"
    page.evaluate("""() => { const e = document.getElementById('generate-button');
        scrollTo(0, e.getBoundingClientRect().top + scrollY - document.getElementById('stage-tokens').offsetHeight - 8); }""")
    page.evaluate(TWO_FRAMES)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))
    assert spilled == [], json.dumps(spilled[:20], indent=1)
    assert page.evaluate("document.documentElement.scrollWidth <= innerWidth"), "the page scrolls sideways"
    assert serious(page, context={"include": [["#stage-output"], ["#stage-prompt"], ["#stage-tokens"]]}) == []
    assert errors == [] and csp_violations(page) == []
    context.close()


def test_a_forgotten_run_of_ids_is_asked_for_again_by_its_ids(page, server, prompt_ids):
    """The server answers 404 for a run it forgot (a restart): the page sends the same analyze body
    again, its ids (never its text), and gets the same run id back."""
    page.open(f"?p={urllib.parse.quote(PROMPT)}")
    before = page.runs()
    page.page.get_by_test_id("end-of-text").click()
    page.wait_run(before)
    run = shown(page)
    assert run["ids"] == prompt_ids + [END_OF_TEXT]
    page.allowed.append("404")
    forgotten = []

    def forget_once(route):
        if forgotten:
            route.continue_()
        else:
            forgotten.append(route.request.url)
            route.fulfill(status=404, content_type="application/json",
                          body=json.dumps({"detail": "unknown run", "code": "unknown_run"}))

    page.page.route("**/api/runs/*/layers/2*", forget_once)
    with page.page.expect_request(lambda r: r.url.endswith("/api/analyze") and r.method == "POST") as again:
        with page.page.expect_response(lambda r: "/layers/2" in r.url and r.status == 200) as layer:
            page.page.get_by_test_id("layer-select").select_option("2")
    body = again.value.post_data_json
    assert body["ids"] == prompt_ids + [END_OF_TEXT] and "text" not in body
    assert again.value.response().json()["run_id"] == run["runId"]
    assert f"/api/runs/{run['runId']}/layers/2" in layer.value.url and forgotten


def test_an_experiment_generation_cannot_apply_is_said_in_words(page, server, prompt_ids):
    """A patch at every position (no position) is an analysis the page can show, but generation
    refuses it (422 not_applicable, before a token): the output says so, and nothing is left running."""
    source = analyze(server, text=PROMPT)["run_id"]
    patch = {"hook": "blocks.0.hook_resid_pre", "op": "patch", "source_run_id": source}
    page.allowed.append("status of 422")
    page.open(query(1, [patch]))
    page.page.wait_for_selector("[data-testid=ghost-bar]")
    refused = httpx.post(f"{server}/api/generate", json={"ids": prompt_ids, "max_new_tokens": 4, "interventions": [patch]})
    assert refused.status_code == 422 and refused.json()["code"] == "not_applicable"
    before = chip_ids(page)
    page.page.get_by_test_id("generate-button").click()
    error = page.page.locator("#output-error")
    error.wait_for(state="visible")
    assert error.inner_text().startswith("Generate cannot run with this experiment:")
    page.page.wait_for_function("explainer.store.state.busy === null")
    assert chip_ids(page) == before and page.page.get_by_test_id("continuations").is_hidden()
    assert page.page.get_by_test_id("generate-button").is_enabled() and page.page.locator("#stop-button").is_hidden()
