/**
 * output.js — stage 7: the next-token probabilities as bars, redrawn in the browser from the
 * logits already received (temperature, top-k, top-p: the semantics of model/sampling.py, in
 * sampling.js), the entropy, a seeded Sample, and Generate that streams tokens in.
 *
 * The controls set the shared store keys temperature, topK, topP and seed (so two runs side by
 * side sample alike), bounded by the server's limits (store.state.model.limits).
 *
 * Generate continues the run shown, from its token ids, with its interventions. Generated tokens
 * go to store.state.generation[runKey] as they stream in (the tokens view shows them under the
 * chips); when the stream ends, or Stop is pressed, the run of exactly the prompt's ids followed
 * by the generated ids (those that arrived) is analyzed and shown: never the text tokenized again.
 * With parts switched off, Generate streams two generations with the same seed and settings, the
 * clean one and the one with the interventions, and shows them as two labelled lines
 * (`continuation`, data-kind "clean" | "ablated", one `continuation-token` per token with its
 * data-token-id); the one with the interventions becomes the run shown (its ghost bars are the
 * clean model on the same tokens, as for any run with interventions).
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
import { analyzeIds, explain, timings } from "./actions.js";
import { generate, sample } from "./api.js";
import { el, mountView, showError } from "./dom.js";
import { count, pct, visible } from "./format.js";
import { isHook, parseHook } from "./hooks.js";
import { t, tn } from "./i18n.js";
import { distribution, sortedIds } from "./sampling.js";
import { pickCandidate, selectCandidates, selectClean, selectRun } from "./store.js";

const DEFAULT_NEW_TOKENS = 20;
const NAMED_PARTS = 3; // more parts switched off than this are counted, not named
const PROMPT_TAIL = 40; // characters of the prompt shown before each continuation
let generations = 0; // a serial: the views tell a new generation from the same one growing

/** A part switched off, in words: "head 2 of layer 1". */
function partName(x) {
  const { layer, suffix } = isHook(x.hook) ? parseHook(x.hook) : { layer: null, suffix: null };
  if (x.op === "zero" && x.position == null && layer != null) {
    if (suffix === "attn.hook_z" && x.head != null) return t("output.part_head", { layer, head: x.head });
    if (suffix === "mlp.hook_post" && x.neuron != null) return t("output.part_neuron", { layer, neuron: x.neuron });
    if (suffix === "hook_attn_out") return t("output.part_attn", { layer });
    if (suffix === "hook_mlp_out") return t("output.part_mlp", { layer });
  }
  return t("output.part_other", { op: x.op, hook: x.hook });
}

/** The label of a continuation: "With every part on", "With head 2 of layer 1 switched off". */
function continuationLabel(interventions) {
  if (!interventions.length) return t("output.continuation_clean");
  if (interventions.length > NAMED_PARTS) return tn("output.continuation_ablated_many", interventions.length);
  return t("output.continuation_ablated", { parts: interventions.map(partName).join(t("output.part_separator")) });
}

export function mount(root, store, runKey) {
  const view = mountView(root, store);
  const { temperature: slider, temperatureNumber: number, wide, topK, topP, seed, bars, ghostLegend, stats,
    sample: sampleButton, generate: generateButton, stop: stopButton, maxNew, result, continuations,
    error: errorBox } = view.parts;
  // The tokens stream in under the chips (tokens.js) and, with parts switched off, beside each
  // other here: both draw store.state.generation[runKey].
  const showGeneration = (generation) => store.set({ generation: { ...store.state.generation, [runKey]: generation } });

  let shownRun = null; // the run the bars are drawn for
  let shownClean = null; // the clean run its ghost bars show, or null
  let order = null; // its token ids by logit
  let cleanOrder = null; // the clean run's token ids by logit
  let rows = []; // [{id, node, fill, value}], one per bar
  let controller = null; // aborts the generation in flight

  const limits = () => store.state.model?.limits ?? null;

  function fail(error) {
    if (!error || error.name !== "ApiError") console.error(error);
    // An experiment generation cannot apply (an average over the prompt's positions, a patch
    // past its end) is refused before a token: say which, in the page's words.
    showError(errorBox, error?.code === "not_applicable" ? t("output.generate_refused", { reason: error.message }) : explain(error));
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
    generateButton.disabled = busy || !run;
    // With parts switched off, Generate writes twice: say so before it is pressed.
    generateButton.title = run && run.interventions.length ? t("output.generate_both_title") : "";
    stopButton.hidden = s.busy !== "generate";
  }

  /* The continuations side by side: built once per generation, then one token node per arrival
   * (the streaming look), never redrawn. */
  let drawnGeneration = null; // the generation the lines were built for
  let lines = []; // [{box, text, drawn}] per stream
  const continuationLines = el("div");
  const continuationStatus = el("p", { class: "continuation-status", "data-testid": "continuation-status", "aria-live": "polite" });
  continuations.replaceChildren(continuationLines, continuationStatus);

  function renderContinuations() {
    const generation = store.state.generation[runKey];
    const shown = !!generation && generation.streams.length > 1;
    continuations.hidden = !shown;
    if (!shown) {
      drawnGeneration = null;
      continuationLines.replaceChildren();
      continuationStatus.textContent = "";
      return;
    }
    if (!drawnGeneration || drawnGeneration.id !== generation.id) {
      lines = generation.streams.map((stream) => {
        const text = el("span", { "data-testid": "continuation-text" });
        // The end of the prompt, pale, so that the line reads as the text it continues.
        const tail = generation.prompt.length > PROMPT_TAIL ? `…${generation.prompt.slice(-PROMPT_TAIL)}` : generation.prompt;
        const box = el("div", { class: "continuation", "data-testid": "continuation",
          "data-kind": stream.interventions.length ? "ablated" : "clean" },
        el("p", { class: "continuation-label", text: continuationLabel(stream.interventions) }),
        el("p", { class: "continuation-line", translate: "no" }, el("span", { class: "continuation-prompt", text: tail }), text));
        return { box, text, drawn: 0 };
      });
      continuationLines.replaceChildren(...lines.map((line) => line.box));
    }
    drawnGeneration = generation;
    // Where the two texts part: the first step at which they drew different tokens.
    const [a, b] = generation.streams.map((stream) => stream.tokens);
    let split = 0;
    while (split < a.length && split < b.length && a[split].id === b[split].id) split++;
    const parted = split < Math.min(a.length, b.length);
    generation.streams.forEach((stream, i) => {
      const line = lines[i];
      line.text.append(...stream.tokens.slice(line.drawn).map((token) => el("span", {
        class: "new-token", "data-testid": "continuation-token", "data-token-id": token.id,
        title: t("tokens.generated_title", { prob: pct(token.prob) }), text: token.text })));
      line.drawn = stream.tokens.length;
      [...line.text.children].forEach((node, step) => node.classList.toggle("parted", parted && step >= split));
    });
    continuationStatus.textContent = generation.status === "running" ? t("output.continuations_running")
      : generation.status === "stopped" ? t("output.continuations_stopped")
        : parted ? t("output.continuations_parted", { n: split + 1 }) : t("output.continuations_same");
  }

  /** A generation belongs to the run it became: another run shown puts its lines away. */
  function forgetGeneration() {
    const generation = store.state.generation[runKey];
    const run = selectRun(store.state, runKey);
    if (generation && generation.runId && (!run || run.runId !== generation.runId)) showGeneration(null);
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
      // Appended by its id: the prompt's tokens then this one, whatever its text would tokenize to
      // (a byte token, half a character, too).
      result.replaceChildren(
        `${t("output.drew", { token: visible(token.text), id: token.id, prob: pct(token.prob), seed: asked.seed })} `,
        el("button", { type: "button", class: "ghost", "data-testid": "append-token",
          onclick: () => analyzeIds(store, runKey, [...run.ids, token.id], { fresh: run.ids.length }) }, t("output.append")),
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
    result.replaceChildren();
    const mine = (controller = new AbortController());
    store.set({ busy: "generate" });
    const most = limits()?.max_new_tokens ?? DEFAULT_NEW_TOKENS;
    const asked = { ids: run.ids, maxNewTokens: Math.max(1, Math.min(most, Number(maxNew.value) || DEFAULT_NEW_TOKENS)), ...params() };
    // With parts switched off: the clean model, then the one with them, with the same seed and settings.
    const streams = (run.interventions.length ? [[], run.interventions] : [[]]).map((interventions) => ({ interventions, tokens: [] }));
    const generation = { id: ++generations, prompt: run.text, streams, status: "running", runId: null };
    const publish = (patch = {}) => {
      Object.assign(generation, patch);
      showGeneration({ ...generation, streams: streams.map((s) => ({ interventions: s.interventions, tokens: s.tokens.slice() })) });
    };
    publish();
    const results = await Promise.allSettled(streams.map((stream) =>
      generate({ ...asked, interventions: stream.interventions }, {
        signal: mine.signal,
        onToken: (step) => {
          stream.tokens.push(step.token);
          if (controller === mine) publish();
        },
      }).catch((error) => {
        if (error.name !== "AbortError") mine.abort(); // one failed: the other stops too
        throw error;
      })));
    store.set({ busy: null });
    // Unmounted (it let go of the controller): this view analyzes nothing more.
    if (controller !== mine) return;
    controller = null;
    const failed = results.find((r) => r.status === "rejected" && r.reason?.name !== "AbortError");
    if (failed) {
      showGeneration(null);
      fail(failed.reason);
      return;
    }
    // The run shown next is the last stream's (the one with the interventions): exactly its ids,
    // the prompt's then the generated ones (those that arrived, if stopped).
    const stream = streams[streams.length - 1];
    const last = results[results.length - 1];
    const done = last.status === "fulfilled" ? last.value : null;
    const ids = done ? done.ids : [...run.ids, ...stream.tokens.map((token) => token.id)];
    const text = done ? done.text : run.text + stream.tokens.map((token) => token.text).join("");
    publish({ status: results.some((r) => r.status === "rejected") ? "stopped" : "done" });
    if (ids.length === run.ids.length) {
      // Stopped before a token came: the run stays (and the lines, until another is shown).
      if (streams.length === 1) showGeneration(null);
      else publish({ runId: run.runId });
      return;
    }
    const shown = await analyzeIds(store, runKey, ids, { fresh: run.tokens.length, text });
    if (store.state.generation[runKey]?.id !== generation.id) return; // another generation since
    if (shown && streams.length > 1) publish({ runId: shown.runId });
    else showGeneration(null);
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

  view.on(slider, "input", () => store.set({ temperature: Number(slider.value) }));
  view.on(number, "input", setTemperature);
  view.on(wide, "change", setWide);
  view.on(topK, "input", setTopK);
  view.on(topP, "input", setTopP);
  view.on(seed, "input", setSeed);
  view.on(sampleButton, "click", doSample);
  view.on(generateButton, "click", doGenerate);
  view.on(stopButton, "click", () => controller?.abort());
  view.watch(["runs", "shown"], showRun);
  view.watch(["temperature", "topK", "topP"], redraw);
  view.watch(["temperature", "topK", "topP", "seed"], syncControls);
  view.watch(["busy", "runs", "shown"], syncButtons);
  view.watch(["runs", "shown"], forgetGeneration);
  view.watch(["generation"], renderContinuations);
  view.watch(["candidates"], markCandidates);
  view.cleanup(() => {
    const running = controller;
    controller = null; // an unmounted view analyzes nothing when its generation stops
    running?.abort();
  });
  syncControls();
  showRun();
  syncButtons();
  return view.unmount;
}
