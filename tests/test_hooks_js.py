"""The page's one hook-name helper (static/hooks.js): no module spells a hook name by hand, and the
helper builds and parses names with the server's grammar (model/hooks.py), case by case, in
Chromium."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from model.hooks import GLOBAL_HOOKS, LAYER_HOOKS, HookNameError, hook_name, parse_hook

from .browser import chromium, require_chromium  # noqa: F401 (chromium is a fixture)
from .test_browser import Page, server  # noqa: F401 (server is a fixture)

STATIC = Path(__file__).resolve().parents[1] / "static"
COMMENT = re.compile(r"/\*.*?\*/|(?<![:\"'`\\])//[^\n]*", re.S)
# A hook name spelled by hand: a template literal `blocks.${...}`, or a quoted "blocks.3...".
BY_HAND = re.compile(r"blocks\.\$\{|[\"'`]blocks\.[0-9]")

require_chromium()


def test_no_module_builds_a_hook_name_by_hand():
    found = []
    for path in sorted(STATIC.glob("*.js")):
        if path.name == "hooks.js":
            continue
        code = COMMENT.sub("", path.read_text(encoding="utf-8"))
        found += [f"{path.name}: {line.strip()}" for line in code.splitlines() if BY_HAND.search(line)]
    assert not found, "hook names built by hand (use hookName from static/hooks.js):\n" + "\n".join(found)


def test_the_grep_would_catch_one():
    """The check above can fail: a hand-built name in a snippet is found, one in a comment is not."""
    assert BY_HAND.search(COMMENT.sub("", "const h = `blocks.${layer}.attn.hook_z`;"))
    assert BY_HAND.search(COMMENT.sub("", 'x = tensors["blocks.0.hook_resid_pre"];'))
    assert not BY_HAND.search(COMMENT.sub("", "/** e.g. `blocks.${L}.hook_z` */ x = 1; // \"blocks.3\""))


N_LAYERS = 3
# Names the page could meet, and mutations of them: other scripts' digits, leading zeros, spaces,
# case, parts missing or extra, layers out of range.
NAMES = [
    *GLOBAL_HOOKS, *(f"blocks.{l}.{s}" for l in (0, 2) for s in LAYER_HOOKS),
    "blocks.3.attn.hook_z", "blocks.10.attn.hook_z", "blocks.999999.hook_resid_pre", "blocks.1000000.hook_resid_pre",
    "blocks.01.attn.hook_z", "blocks.00.attn.hook_z", "blocks.１.attn.hook_z", "blocks.१.attn.hook_z", "blocks.٣.attn.hook_z",
    "blocks. 1.attn.hook_z", "blocks.1 .attn.hook_z", " blocks.1.attn.hook_z", "blocks.1.attn.hook_z ", "blocks.1.attn.hook_z\n",
    "Blocks.1.attn.hook_z", "blocks.1.ATTN.hook_z", "blocks.1.attn.hook_Z", "blocks.-1.attn.hook_z", "blocks.+1.attn.hook_z",
    "blocks.1.5.attn.hook_z", "blocks.1e0.attn.hook_z", "blocks.0x1.attn.hook_z", "blocks.1", "blocks.", "blocks.1.", "blocks..attn.hook_z",
    "blocks.1.attn", "blocks.1.hook_z", "blocks.1.attn.hook_z.extra", "blocks.1.blocks.1.attn.hook_z", "attn.hook_z",
    "hook_embed.x", "HOOK_EMBED", "ln_final", "blocks.1.hook_embed", "blocks.1.logits", "", "blocks.1.attn.hook_q\u200b",
]


def python_parse(name: str, n_layers: int | None) -> list | None:
    try:
        layer, suffix = parse_hook(name, n_layers)
        return [layer, suffix]
    except HookNameError:
        return None


@pytest.fixture(scope="module")
def page(chromium, server):
    page = Page(chromium, server)
    page.page.route("**/favicon.ico", lambda route: route.fulfill(status=204))  # the server has none
    page.page.goto(f"{server}/static/hooks.js")  # an origin to import from, without the app's scripts
    yield page
    errors = page.unexpected_errors()
    page.close()
    assert not errors, f"console errors: {errors}"


def js(page: Page, script: str, arg=None):
    """`script` is a function body with `h` (the module) and `arg` in scope."""
    return page.page.evaluate(f"async (arg) => {{ const h = await import('/static/hooks.js'); {script} }}", arg)


def test_parse_hook_agrees_with_the_server_on_every_name(page):
    for n_layers in (None, N_LAYERS):
        parsed = js(page, """return arg.names.map((name) => {
            try { const p = h.parseHook(name, arg.n); return [p.layer, p.suffix]; }
            catch (e) { if (e.name !== "HookNameError") throw e; return null; } });""", {"names": NAMES, "n": n_layers})
        expected = [python_parse(name, n_layers) for name in NAMES]
        assert parsed == expected, [(n, p, e) for n, p, e in zip(NAMES, parsed, expected) if p != e]
        assert js(page, "return arg.names.map((name) => h.isHook(name, arg.n));", {"names": NAMES, "n": n_layers}) \
            == [e is not None for e in expected]
    # Some of each kind were refused and some accepted, so the comparison could tell them apart.
    assert 0 < sum(python_parse(n, N_LAYERS) is not None for n in NAMES) < len(NAMES)


def test_hook_name_builds_the_server_names_and_refuses_the_rest(page):
    cases = [[s, l] for s in LAYER_HOOKS for l in (0, 3, 11)] + [[s, None] for s in GLOBAL_HOOKS]
    built = js(page, "return arg.map(([s, l]) => h.hookName(s, l));", cases)
    assert built == [hook_name(s, l) for s, l in cases]
    # Every built name parses back to its parts.
    assert js(page, "return arg.map((name) => { const p = h.parseHook(name); return [p.suffix, p.layer]; });", built) == cases
    assert js(page, "return [h.LAYER_HOOKS, h.GLOBAL_HOOKS];") == [list(LAYER_HOOKS), list(GLOBAL_HOOKS)]
    refused = [["attn.hook_z", -1], ["attn.hook_z", 1.5], ["attn.hook_z", "1"], ["attn.hook_z", True], ["hook_embed", 0],
               ["attn.hook_zz", 1], ["logits", 2], ["attn.hook_z", None], ["nope", None]]
    assert js(page, """return arg.map(([s, l]) => {
        try { h.hookName(s, l); return null; } catch (e) { return e.name; } });""", refused) == ["HookNameError"] * len(refused)
