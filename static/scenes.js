/**
 * scenes.js — guided scenes (issue 12): the Scenes menu in the page header, and the scene player,
 * a card fixed at the bottom of the screen that walks through a scene's steps.
 *
 * A scene is data, one JSON file in static/scenes/ (app/scenes.py validates it; GET /api/scenes
 * lists them, GET /api/scenes/{id} gives one). A step sets any of: prompt, stage (the data-stage
 * to scroll to), layer, head, pinned, temperature, interventions, probe (run the induction test);
 * and says text {lang: "..."}.
 * The prompt, layer, head and temperature carry forward from earlier steps, so step N is the same
 * state however it is reached (Next, Previous, or a shared URL); pinned, stage and interventions
 * belong to their step alone (no interventions named = none).
 *
 * Placeholders in a step's text, filled from the store once the step's analysis is shown:
 *   {top_token}  the most likely next token (the run's top, at temperature 1), quoted
 *   {second_token}, {logit_diff}  the second most likely, and logit(top) − logit(second)
 *   {top_prob}   its probability, as a percentage
 *   {layer} {head}   the selected layer and head
 *   {token}      the pinned token's text, quoted
 *   {n_tokens}   the number of tokens in the prompt
 * and in a step with `"probe": true`, which runs the induction test (actions.js runInductionProbe,
 * with the step's interventions; its answer is shown on the heads stage too):
 *   {loss_first} {loss_second}   the mean loss on the first and second half of the repeated tokens
 *   {loss_second_intact}         the second half's loss with nothing switched off
 *   {probe_head}                 the head with the highest induction score, "L.H"
 * (app/scenes.py PLACEHOLDERS is the same set: a scene with any other is rejected.)
 *
 * What GPT-2 small is known to show (scene.known, with its source) is shown beside the text; on
 * random weights (store.state.model.random_weights) scene.untrained is shown instead.
 *
 * URL: `scene=ID&step=N` (N from 1) beside url.js's keys; opening it restores the scene and step.
 * Store: `scene` = {id, step} (0-based) while a scene is open, else null; setting it from elsewhere
 * (room.js, following the teacher) opens that scene at that step, moves to the step, or closes it.
 * Keys while a scene is open: PageDown or "." next, PageUp or "," previous.
 *
 *   mount(root, store, runKey) -> unmount     root: the page's header: the menu and the player (fixed at
 *       the bottom of the screen by scenes.css) go into it; a step's stage is scrolled to through the
 *       store (actions.js goToStage)
 */
import { analyzeWith, goToStage, runInductionProbe } from "./actions.js";
import { getScene, listScenes } from "./api.js";
import { el, listen, withData } from "./dom.js";
import { fmt, pct, visible } from "./format.js";
import { lang, t } from "./i18n.js";
import { compactIntervention, ranked, selectRun } from "./store.js";

const CARRIED = ["prompt", "layer", "head", "temperature"];

/** The page's language's text, else English: [text, the language it is in]. */
function local(texts) {
  return texts[lang] != null ? [texts[lang], lang] : [texts.en, "en"];
}

/** The state step n sets: the carried keys from the steps up to n, the rest from step n. */
export function stepState(scene, n) {
  const state = { interventions: [] };
  for (const step of scene.steps.slice(0, n + 1)) {
    for (const key of CARRIED) if (step[key] != null) state[key] = step[key];
  }
  const step = scene.steps[n];
  for (const key of ["pinned", "stage"]) state[key] = step[key] ?? null;
  if (step.interventions) state.interventions = step.interventions.map(compactIntervention);
  return state;
}

const sameList = (a, b) => JSON.stringify(a.map(compactIntervention)) === JSON.stringify(b.map(compactIntervention));

function readScene() {
  const q = new URLSearchParams(location.search);
  const step = Number(q.get("step"));
  return q.get("scene") ? { id: q.get("scene"), step: Number.isInteger(step) && step >= 1 ? step - 1 : 0 } : null;
}

export function mount(root, store, runKey) {
  const off = [];

  // The menu: a button, and the list it opens.
  const list = el("ul", { id: "scene-list", hidden: true, "aria-label": t("scenes.menu_label") });
  const toggle = el("button", { type: "button", class: "ghost", "aria-expanded": "false", "aria-controls": "scene-list",
    title: t("scenes.menu_title"), "data-testid": "scene-menu-button", text: t("scenes.menu") });
  const menu = el("div", { class: "scene-menu", "data-testid": "scene-menu" }, toggle, list);
  root.append(menu);

  // The player.
  const title = el("h2", { id: "scene-title" });
  const count = el("span", { class: "scene-count", "data-part": "count" });
  const text = el("p", { "data-part": "text", "aria-live": "polite" });
  const known = el("p", { class: "scene-known", "data-part": "known" });
  const error = el("p", { role: "alert", hidden: true });
  const previous = el("button", { type: "button", class: "ghost", "data-testid": "scene-previous", text: t("scenes.previous") });
  const next = el("button", { type: "button", "data-testid": "scene-next", text: t("scenes.next") });
  const close = el("button", { type: "button", class: "ghost", "data-testid": "scene-close", title: t("scenes.close_title"), text: t("scenes.close") });
  const keys = el("span", { class: "scene-keys" },
    ...withData(t("scenes.keys"), { previous: "PageUp", previous_alt: ",", next: "PageDown", next_alt: "." }));
  const card = el("section", { class: "scene-card", "data-testid": "scene-step", "aria-labelledby": "scene-title", hidden: true },
    title, count, text, known, error, el("div", { class: "scene-buttons" }, previous, next, close, keys));
  root.append(card);

  let scenes = null; // [{id, title}]
  let open = null; // {scene, step}
  let serial = 0;
  let probed = null; // {step, answer, intact} for the open step, once its induction test is back

  function fillMenu() {
    list.replaceChildren(...scenes.map((s) => {
      const [words, inLang] = local(s.title);
      return el("li", {}, el("button", { type: "button", "data-scene": s.id, lang: inLang !== lang ? inLang : null,
        onclick: () => { showMenu(false); start(s.id, 0); }, text: words }));
    }));
  }

  function showMenu(shown) {
    list.hidden = !shown;
    toggle.setAttribute("aria-expanded", shown ? "true" : "false");
    if (shown) list.querySelector("button")?.focus();
  }

  /** The step's text with its placeholders filled from the store. */
  function render() {
    if (!open) return;
    const { scene, step } = open;
    const s = store.state;
    const run = selectRun(s, runKey);
    const [titleText, titleLang] = local(scene.title);
    title.textContent = titleText;
    title.lang = titleLang;
    count.textContent = t("scenes.step_of", { n: step + 1, m: scene.steps.length });
    const [words, wordsLang] = local(scene.steps[step].text);
    const top = run && run.top && run.top[0];
    const second = run && run.top && run.top[1];
    const pinned = run && s.pinned != null ? run.tokens[s.pinned] : null;
    const data = {
      top_token: top ? `“${visible(top.text)}”` : "…",
      top_prob: top ? pct(top.prob) : "…",
      second_token: second ? `“${visible(second.text)}”` : "…",
      logit_diff: top && second ? fmt(top.logit - second.logit, 3) : "…",
      layer: String(s.layer),
      head: String(s.head),
      token: pinned ? `“${visible(pinned.text)}”` : "…",
      n_tokens: run ? String(run.tokens.length) : "…",
      ...probeData(step),
    };
    text.lang = wordsLang;
    text.replaceChildren(...withData(words, data));
    const untrained = s.model && s.model.random_weights;
    const [claim, claimLang] = local(untrained ? scene.untrained : scene.known.text);
    known.lang = claimLang;
    known.replaceChildren(el("strong", { text: t(untrained ? "scenes.untrained" : "scenes.known") }), " ", claim,
      ...(untrained ? [] : [" ", el("cite", { translate: "no", text: t("scenes.source", { source: scene.known.source }) })]));
    known.dataset.untrained = untrained ? "1" : "0";
    previous.disabled = step === 0;
    next.disabled = step === scene.steps.length - 1;
    card.dataset.scene = scene.id;
    card.dataset.step = String(step + 1);
  }

  /** The probe placeholders: the numbers once the step's test is back, "…" until then. */
  function probeData(step) {
    const ready = probed && probed.step === step;
    const top = ready ? ranked(probed.answer.induction, 1)[0] : null;
    return {
      loss_first: ready ? fmt(probed.answer.loss_first_half, 3) : "…",
      loss_second: ready ? fmt(probed.answer.loss_second_half, 3) : "…",
      loss_second_intact: ready ? fmt(probed.intact.loss_second_half, 3) : "…",
      probe_head: top ? `${top.layer}.${top.head}` : "…",
    };
  }

  /** The shown run, once it is `text` with `interventions` (or null if its analysis failed). */
  function shownRun(textWanted, interventions) {
    const matches = () => {
      const run = selectRun(store.state, runKey);
      return run && run.text === textWanted && sameList(run.interventions || [], interventions) ? run : null;
    };
    return new Promise((resolve) => {
      if (matches()) return resolve(matches());
      const stop = store.subscribe(["shown", "analysis"], (s) => {
        const a = s.analysis[runKey];
        if (matches() || (a && a.text === textWanted && a.status === "failed")) {
          stop();
          resolve(matches());
        }
      });
    });
  }

  async function apply(n) {
    const mine = ++serial;
    const { scene } = open;
    const want = stepState(scene, n);
    const model = store.state.model;
    const fits = (v, size) => Math.max(0, Math.min(v, size - 1));
    const patch = {};
    if (want.layer != null) patch.layer = fits(want.layer, model.n_layers);
    if (want.head != null) patch.head = fits(want.head, model.n_heads);
    if (want.temperature != null) patch.temperature = want.temperature;
    store.set(patch);
    // Only what this model has: a head or layer past its shape is left out (a tiny test model).
    const interventions = want.interventions.filter((x) => {
      const layer = Number((/^blocks\.(\d+)\./.exec(x.hook) || [])[1]);
      return !(layer >= model.n_layers) && !(x.head >= model.n_heads);
    });
    const run = selectRun(store.state, runKey);
    if (!run || run.text !== want.prompt || !sameList(store.state.interventions, interventions)
        || !sameList(run.interventions || [], interventions)) {
      analyzeWith(store, runKey, want.prompt, interventions);
    }
    const shown = await shownRun(want.prompt, interventions);
    if (mine !== serial || !open) return;
    store.set({ pinned: shown && want.pinned != null && want.pinned < shown.tokens.length ? want.pinned : null });
    if (want.stage) {
      // Two frames on: the token bar has taken its new prompt's height (main.js's --sticky-height,
      // the scroll padding), so the stage's heading lands below it.
      await new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)));
      if (mine !== serial || !open) return;
      goToStage(store, want.stage);
    }
    render();
    if (scene.steps[n].probe) {
      try {
        // The intact test first (kept in api.js's cache), so the step can say what switching off changed.
        const intact = interventions.length ? await runInductionProbe(store, []) : null;
        const answer = await runInductionProbe(store, interventions);
        if (mine !== serial || !open) return;
        probed = { step: n, answer, intact: intact ?? answer };
        render();
      } catch (e) {
        if (mine !== serial || !open) return;
        error.textContent = t("scenes.failed", { error: e.message });
        error.hidden = false;
      }
    }
    card.dataset.ready = String(n + 1);
  }

  function go(n) {
    if (!open || n < 0 || n >= open.scene.steps.length) return;
    open.step = n;
    store.set({ scene: { id: open.scene.id, step: n } });
    probed = null;
    error.hidden = true;
    delete card.dataset.ready;
    render();
    writeUrl();
    apply(n);
  }

  let starts = 0;
  async function start(id, step) {
    const mine = ++starts;
    error.hidden = true;
    try {
      const scene = await getScene(id);
      if (mine !== starts) return; // another scene was asked for meanwhile
      open = { scene, step: 0 };
      card.hidden = false;
      go(Math.min(step, scene.steps.length - 1));
    } catch (e) {
      if (mine !== starts) return;
      card.hidden = false;
      error.textContent = t("scenes.failed", { error: e.message });
      error.hidden = false;
    }
  }

  function stop(focus = true) {
    open = null;
    serial++;
    starts++;
    card.hidden = true;
    delete card.dataset.ready;
    store.set({ scene: null });
    writeUrl();
    if (focus) toggle.focus();
  }

  /** The store names another scene or step (room.js): open it, move to it, or close. */
  function follow(s) {
    const want = s.scene;
    if (!want) {
      if (open || !card.hidden) stop(false);
    } else if (open && open.scene.id === want.id) {
      if (open.step !== want.step) go(want.step);
    } else {
      start(want.id, want.step);
    }
  }

  /** scene and step in the URL beside url.js's keys (url.js keeps them when it rewrites its own). */
  function writeUrl() {
    const q = new URLSearchParams(location.search);
    if (open) {
      q.set("scene", open.scene.id);
      q.set("step", String(open.step + 1));
    } else {
      q.delete("scene");
      q.delete("step");
    }
    const search = `?${q.toString()}`;
    if (search !== location.search) history.replaceState(history.state, "", search);
  }

  off.push(listen(toggle, "click", () => showMenu(list.hidden)));
  off.push(listen(previous, "click", () => go(open.step - 1)));
  off.push(listen(next, "click", () => go(open.step + 1)));
  off.push(listen(close, "click", stop));
  off.push(listen(document, "keydown", (event) => {
    if (event.key === "Escape" && !list.hidden) {
      showMenu(false);
      toggle.focus();
      return;
    }
    if (!open || event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.target instanceof Element && event.target.closest("input, textarea, select, [contenteditable]")) return;
    const step = { PageDown: 1, ".": 1, PageUp: -1, ",": -1 }[event.key];
    if (step) {
      event.preventDefault();
      go(open.step + step);
    }
  }));
  off.push(listen(document, "click", (event) => {
    if (!list.hidden && !menu.contains(event.target)) showMenu(false);
  }));
  off.push(store.subscribe(["shown", "layer", "head", "pinned", "model"], render));
  off.push(store.subscribe(["scene"], follow));

  listScenes().then((found) => {
    scenes = found;
    fillMenu();
  }, (e) => console.error(e));

  // A URL with a scene: once the model is known and the page's first analysis is over, open it.
  const fromUrl = readScene();
  if (fromUrl) {
    const ready = (s) => s.model && s.analysis[runKey] && s.analysis[runKey].status !== "running";
    if (ready(store.state)) start(fromUrl.id, fromUrl.step);
    else {
      const stopWaiting = store.subscribe(["model", "analysis"], (s) => {
        if (!ready(s)) return;
        stopWaiting();
        start(fromUrl.id, fromUrl.step);
      });
      off.push(stopWaiting);
    }
  }

  return () => {
    serial++;
    for (const f of off) f();
    menu.remove();
    card.remove();
  };
}
