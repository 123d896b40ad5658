/**
 * output.js — stage 7: the next-token probabilities as bars, redrawn in the browser from the
 * logits already received (temperature, top-k, top-p: the semantics of model/sampling.py, in
 * sampling.js), the entropy, a seeded Sample, and Generate that streams tokens in.
 *
 * The controls set the shared store keys temperature, topK, topP and seed (so two runs side by
 * side sample alike), bounded by the server's limits (store.state.model.limits). Generated
 * tokens go to store.state.generation[runKey] as they stream in (the tokens view shows them under
 * the chips); when the stream ends, or Stop is pressed, the longer text is analyzed as the new run.
 *
 * When the run shown has interventions (a head switched off...) and the clean run of the same
 * text is known (store selectClean), each bar has a ghost behind it, `ghost-bar` with
 * data-token-id and data-prob: the clean run's probability at the same temperature, top-k and
 * top-p, and the change beside the number.
 *
 * A token's name on its bar is a button that picks it for the attribution stage: it becomes the
 * target, and the target before it the baseline (store pickCandidate); the two are tagged
 * (data-candidate "target" | "baseline").
 *
 * mount(root, store, runKey) -> unmount
 */
import { generate, sample } from "./api.js";
import { el, listen, part, showError } from "./dom.js";
import { count, pct, visible } from "./format.js";
import { t, tn } from "./i18n.js";
import { analyzeText, explain, timings } from "./prompt.js";
import { distribution, sortedIds } from "./sampling.js";
import { pickCandidate, selectCandidates, selectClean, selectRun } from "./store.js";

const DEFAULT_NEW_TOKENS = 20;

export function mount(root, store, runKey) {
  const slider = part(root, "temperature");
  const number = part(root, "temperature-number");
  const wide = part(root, "wide");
  const topK = part(root, "top-k");
  const topP = part(root, "top-p");
  const seed = part(root, "seed");
  const bars = part(root, "bars");
  const ghostLegend = part(root, "ghost-legend");
  const stats = part(root, "stats");
  const sampleButton = part(root, "sample");
  const generateButton = part(root, "generate");
  const stopButton = part(root, "stop");
  const maxNew = part(root, "max-new");
  const result = part(root, "result");
  const errorBox = part(root, "error");
  // The tokens stream in under the chips: the tokens view draws store.state.generation[runKey].
  const showGeneration = (tokens) => store.set({ generation: { ...store.state.generation, [runKey]: tokens } });

  let shownRun = null; // the run the bars are drawn for
  let shownClean = null; // the clean run its ghost bars show, or null
  let order = null; // its token ids by logit
  let cleanOrder = null; // the clean run's token ids by logit
  let rows = []; // [{id, node, fill, value}], one per bar
  let controller = null; // aborts the generation in flight

  const limits = () => store.state.model?.limits ?? null;

  function fail(error) {
    if (!error || error.name !== "ApiError") console.error(error);
    showError(errorBox, explain(error));
  }

  function renderBars(run) {
    bars.replaceChildren();
    rows = [];
    order = run ? sortedIds(run.logits) : null;
    cleanOrder = shownClean ? sortedIds(shownClean.logits) : null;
    bars.classList.toggle("with-ghosts", !!shownClean);
    ghostLegend.hidden = !(run && shownClean);
    if (!run) return;
    for (const top of run.top) {
      const fill = el("span", { class: "fill" });
      const value = el("span", { class: "value" });
      // The clean run's bar, pale behind this one.
      const ghost = shownClean ? el("span", { class: "ghost-fill", "data-testid": "ghost-bar", "data-token-id": top.id }) : null;
      const change = shownClean ? el("span", { class: "change small muted", "data-testid": "prob-change" }) : null;
      const track = el("span", { class: "track" }, ghost, fill);
      const tag = el("span", { class: "pick-tag small", "data-testid": "pick-tag" });
      // The token's name picks it for the attribution stage ("why this token and not that one").
      const label = el("button", { type: "button", class: "label pick", translate: "no", "data-testid": "pick-candidate",
        title: t("output.pick_title", { id: top.id, logit: top.logit.toFixed(4) }), text: visible(top.text),
        onclick: () => store.set({ candidates: pickCandidate(store.state, runKey, top.id) }) });
      const node = el("div", { class: "bar", role: "listitem", "data-testid": "prob-bar", "data-token-id": top.id },
        label, track, el("span", { class: "value" }, value, change, tag));
      rows.push({ id: top.id, node, fill, value, ghost, change, label, tag });
      bars.append(node);
    }
    redraw();
    markCandidates();
  }

  /** Tag the two tokens the attribution stage explains. */
  function markCandidates() {
    const picked = selectCandidates(store.state, runKey);
    for (const r of rows) {
      const role = picked && picked.target === r.id ? "target" : picked && picked.baseline === r.id ? "baseline" : null;
      r.node.dataset.candidate = role ?? "";
      r.label.setAttribute("aria-pressed", role === "target" ? "true" : "false");
      r.tag.textContent = role ? ` ${t(`output.tag_${role}`)}` : "";
    }
  }

  /** Recompute the distribution from the logits and update the bars in place. */
  function redraw() {
    const s = store.state;
    const run = shownRun;
    if (!run || !order) return;
    const t0 = performance.now();
    const dist = distribution(run.logits, order, { temperature: s.temperature, topK: s.topK, topP: s.topP });
    const probs = rows.map((r) => dist.prob(r.id));
    const clean = shownClean && cleanOrder
      ? distribution(shownClean.logits, cleanOrder, { temperature: s.temperature, topK: s.topK, topP: s.topP }) : null;
    const ghosts = clean ? rows.map((r) => clean.prob(r.id)) : null;
    // Bars are drawn against the most likely shown token, so a flat distribution is not hairlines;
    // the numbers beside them stay absolute.
    const most = Math.max(...probs, ...(ghosts || [])) || 1;
    rows.forEach((r, i) => {
      const p = probs[i];
      r.node.dataset.prob = String(p);
      r.node.classList.toggle("cut", p === 0);
      r.fill.style.width = `${((p / most) * 100).toFixed(3)}%`;
      r.value.textContent = p === 0 ? t("output.cut") : pct(p);
      const label = { token: visible(run.top[i].text), prob: p === 0 ? t("output.cut") : pct(p) };
      if (ghosts && r.ghost) {
        const g = ghosts[i];
        const points = (p - g) * 100;
        const size = Math.abs(points);
        // Percentage points, two significant digits below 0.1 (a random model moves them by 1e-4).
        const change = `${points >= 0 ? "+" : "−"}${size >= 0.1 || size === 0 ? size.toFixed(1) : String(Number(size.toPrecision(2)))}`;
        r.ghost.dataset.prob = String(g);
        r.ghost.style.width = `${((g / most) * 100).toFixed(3)}%`;
        r.ghost.title = t("output.ghost_title", { prob: pct(g) });
        r.change.textContent = ` ${t("output.change", { change })}`;
        r.change.classList.toggle("up", points > 0);
        r.change.classList.toggle("down", points < 0);
        r.node.setAttribute("aria-label", t("output.bar_label_change", { ...label, clean: pct(g), change }));
      } else {
        r.node.setAttribute("aria-label", t("output.bar_label", label));
      }
    });
    const T = s.temperature;
    const filters = [s.topK != null ? t("output.filter_top_k", { k: s.topK }) : null,
      s.topP != null ? t("output.filter_top_p", { p: s.topP }) : null].filter(Boolean);
    const kept = { kept: count(dist.kept), total: count(run.logits.length), filters: filters.join(", ") };
    stats.textContent = [
      t("output.stats_temperature", { t: T === 0 ? t("output.greedy", { t: 0 }) : T.toFixed(2) }),
      t("output.stats_entropy", { entropy: dist.entropy.toFixed(2) }),
      filters.length ? t("output.stats_kept_filtered", kept) : t("output.stats_kept", kept),
      tn("output.stats_shown", rows.length),
    ].join(" · ");
    timings.lastRedraw = performance.now() - t0;
  }

  function syncControls() {
    const s = store.state;
    const T = s.temperature;
    if (T > Number(slider.max)) {
      wide.checked = true;
      slider.max = "10";
    }
    if (Number(slider.value) !== T) slider.value = String(T);
    const focused = root.ownerDocument.activeElement;
    if (focused !== number) number.value = String(T);
    if (focused !== topK) topK.value = s.topK == null ? "" : String(s.topK);
    if (focused !== topP) topP.value = s.topP == null ? "" : String(s.topP);
    if (focused !== seed) seed.value = String(s.seed);
  }

  function syncButtons() {
    const s = store.state;
    const busy = s.busy != null;
    const run = selectRun(s, runKey);
    sampleButton.disabled = busy || !run;
    // Generation runs the model as it is: with parts switched off it would continue the text
    // with numbers that are not this run's. Said, not done.
    const modified = !!(run && run.interventions && run.interventions.length);
    generateButton.disabled = busy || !run || modified;
    generateButton.title = modified ? t("output.generate_modified") : "";
    stopButton.hidden = s.busy !== "generate";
  }

  function showRun() {
    const run = selectRun(store.state, runKey);
    const clean = selectClean(store.state, runKey);
    if (run === shownRun && clean === shownClean) return; // another key's run changed
    shownRun = run;
    shownClean = clean;
    result.replaceChildren();
    showError(errorBox, null);
    renderBars(run);
  }

  function params() {
    const s = store.state;
    return { temperature: s.temperature, topK: s.topK, topP: s.topP, seed: s.seed };
  }

  async function doSample() {
    const run = selectRun(store.state, runKey);
    if (!run) return;
    showError(errorBox, null);
    const asked = params();
    try {
      const answer = await sample({ runId: run.runId, ...asked });
      if (selectRun(store.state, runKey) !== run) return;
      const token = answer.token;
      // A byte token (half a character) cannot be appended as text on its own.
      const bytes = /^(<0x[0-9A-F]{2}>)+$/.test(token.text);
      result.replaceChildren(
        `${t("output.drew", { token: visible(token.text), id: token.id, prob: pct(token.prob), seed: asked.seed })} `,
        bytes ? "" : el("button", { type: "button", class: "ghost", onclick: () => analyzeText(store, runKey, run.text + token.text) },
          t("output.append")),
      );
      for (const r of rows) r.node.classList.toggle("drawn", r.id === token.id);
    } catch (error) {
      fail(error);
    }
  }

  async function doGenerate() {
    const run = selectRun(store.state, runKey);
    if (!run) return;
    showError(errorBox, null);
    const mine = (controller = new AbortController());
    store.set({ busy: "generate" });
    showGeneration([]);
    const pieces = [];
    const arrived = [];
    const most = limits()?.max_new_tokens ?? DEFAULT_NEW_TOKENS;
    try {
      const done = await generate(
        { text: run.text, maxNewTokens: Math.max(1, Math.min(most, Number(maxNew.value) || DEFAULT_NEW_TOKENS)), ...params() },
        {
          signal: mine.signal,
          onToken: (step) => {
            pieces.push(step.token.text);
            arrived.push(step.token);
            showGeneration(arrived.slice());
          },
        },
      );
      store.set({ busy: null });
      showGeneration(null);
      await analyzeText(store, runKey, done.text, { fresh: run.tokens.length });
    } catch (error) {
      store.set({ busy: null });
      if (error.name === "AbortError") {
        showGeneration(null);
        // Stopped part-way: the tokens that did arrive become the new prompt (not after an unmount,
        // which has let go of the controller).
        if (pieces.length && mine === controller) await analyzeText(store, runKey, run.text + pieces.join(""), { fresh: run.tokens.length });
      } else {
        fail(error);
      }
    } finally {
      if (controller === mine) controller = null;
    }
  }

  function setTopK() {
    const k = Number(topK.value);
    const max = limits()?.max_top_k ?? Infinity;
    store.set({ topK: topK.value !== "" && Number.isInteger(k) && k >= 1 ? Math.min(k, max) : null });
  }

  function setTopP() {
    const p = Number(topP.value);
    store.set({ topP: topP.value !== "" && p > 0 && p <= 1 ? p : null });
  }

  function setSeed() {
    const s = Number(seed.value);
    // Beyond 2^53 a JS number no longer holds the exact integer: a shared link would draw differently.
    if (seed.value !== "" && Number.isSafeInteger(s) && s >= 0) store.set({ seed: s });
  }

  function setTemperature() {
    const T = Number(number.value);
    if (number.value !== "" && Number.isFinite(T) && T >= 0 && T <= 10) store.set({ temperature: T });
  }

  function setWide() {
    slider.max = wide.checked ? "10" : "2";
    if (!wide.checked && store.state.temperature > 2) store.set({ temperature: 2 });
    syncControls();
  }

  const stops = [
    listen(slider, "input", () => store.set({ temperature: Number(slider.value) })),
    listen(number, "input", setTemperature),
    listen(wide, "change", setWide),
    listen(topK, "input", setTopK),
    listen(topP, "input", setTopP),
    listen(seed, "input", setSeed),
    listen(sampleButton, "click", doSample),
    listen(generateButton, "click", doGenerate),
    listen(stopButton, "click", () => controller?.abort()),
    store.subscribe(["runs", "shown"], showRun),
    store.subscribe(["temperature", "topK", "topP"], redraw),
    store.subscribe(["temperature", "topK", "topP", "seed"], syncControls),
    store.subscribe(["busy", "runs", "shown"], syncButtons),
    store.subscribe(["candidates"], markCandidates),
  ];
  syncControls();
  showRun();
  syncButtons();
  return () => {
    for (const stop of stops) stop();
    const running = controller;
    controller = null; // an unmounted view analyzes nothing when its generation stops
    running?.abort();
  };
}
