/**
 * experiments.js — switch parts of the model off and watch the prediction move (issue 11).
 *
 *   - The toggle `ablate-toggle` sets store.state.ablate: while it is on, a click on a head in the
 *     overview or in the attention stage's head grid switches that head off, or back on, instead
 *     of selecting it (those views call `toggled(...)` on store.state.interventions).
 *   - Two buttons switch off the selected layer's whole attention (`blocks.L.hook_attn_out`) or
 *     its MLP (`blocks.L.hook_mlp_out`).
 *   - The list of what is switched off (`intervention`, one per entry) with a remove button each,
 *     and "clear all".
 *   - Any change of store.state.interventions analyzes the prompt again with the list
 *     (prompt.js reanalyze applies it to the same text or token ids, and shows the clean run under the run key cleanKey(runKey), from
 *     which the output stage draws its ghost bars).
 *
 * mount(root, store, runKey) -> unmount
 */
import { el, mountView, withData } from "./dom.js";
import { hookName, isHook, parseHook } from "./hooks.js";
import { t, tn } from "./i18n.js";
import { reanalyze } from "./actions.js";
import { sameIntervention, selectRun, toggled } from "./store.js";

/** The sentence naming one intervention, as nodes (hook names and ops are data, not words). */
export function describe(x) {
  const { layer, suffix: name } = isHook(x.hook) ? parseHook(x.hook) : { layer: null, suffix: null };
  if (x.op === "zero" && x.position == null) {
    if (name === "attn.hook_z" && x.head != null) return [t("experiments.head", { layer, head: x.head })];
    if (name === "mlp.hook_post" && x.neuron != null) return [t("experiments.neuron", { layer, neuron: x.neuron })];
    if (name === "hook_attn_out") return [t("experiments.attn_out", { layer })];
    if (name === "hook_mlp_out") return [t("experiments.mlp_out", { layer })];
  }
  const where = [x.hook, x.head != null ? `head=${x.head}` : null, x.neuron != null ? `neuron=${x.neuron}` : null,
    x.position != null ? `position=${x.position}` : null].filter(Boolean).join(" ");
  return withData(t("experiments.other"), { op: x.op, hook: where });
}

export function mount(root, store, runKey) {
  const state = store.state;
  const view = mountView(root, store);
  const { toggle, attnLayer, mlpLayer, clear, mode, list, status } = view.parts;

  const layerHook = (kind) => ({ hook: hookName(kind, state.layer), op: "zero" });
  const has = (x) => state.interventions.some((y) => sameIntervention(x, y));

  function renderControls() {
    toggle.setAttribute("aria-pressed", state.ablate ? "true" : "false");
    toggle.classList.toggle("on", state.ablate);
    mode.textContent = state.ablate ? t("experiments.mode_on") : t("experiments.mode_off");
    const layer = state.layer;
    attnLayer.textContent = t(has(layerHook("hook_attn_out")) ? "experiments.attn_layer_on" : "experiments.attn_layer", { layer });
    mlpLayer.textContent = t(has(layerHook("hook_mlp_out")) ? "experiments.mlp_layer_on" : "experiments.mlp_layer", { layer });
    clear.disabled = !state.interventions.length;
  }

  function renderList() {
    list.replaceChildren();
    if (!state.interventions.length) {
      list.append(el("li", { class: "muted small", text: t("experiments.empty") }));
    }
    state.interventions.forEach((x, i) => {
      const what = describe(x);
      const label = what.map((n) => (typeof n === "string" ? n : n.textContent)).join("");
      list.append(el("li", { "data-testid": "intervention", "data-hook": x.hook, "data-head": x.head ?? null, "data-neuron": x.neuron ?? null },
        el("span", {}, ...what), " ",
        el("button", { type: "button", class: "ghost small", "data-testid": "remove-intervention", "data-index": i,
          "aria-label": t("experiments.remove_label", { what: label }), text: t("experiments.remove") })));
    });
    renderControls();
  }

  function renderStatus() {
    const run = selectRun(state, runKey);
    const running = state.analysis[runKey]?.status === "running";
    status.textContent = running ? t("experiments.running")
      : run && run.interventions.length ? tn("experiments.applied", run.interventions.length) : "";
  }


  const change = (x) => store.set({ interventions: toggled(state.interventions, x) });

  view.on(toggle, "click", () => store.set({ ablate: !state.ablate }));
  view.on(attnLayer, "click", () => change(layerHook("hook_attn_out")));
  view.on(mlpLayer, "click", () => change(layerHook("hook_mlp_out")));
  view.on(clear, "click", () => store.set({ interventions: [] }));
  view.on(list, "click", (event) => {
    const b = event.target.closest("button[data-index]");
    if (b) store.set({ interventions: state.interventions.filter((_, i) => i !== Number(b.dataset.index)) });
  });
  view.watch(["interventions"], () => {
    renderList();
    // The prompt, analyzed again with the new list: the last one asked for, its text or its ids
    // (actions.js analyzeWith names a new text and a new list at once), else the one shown.
    reanalyze(store, runKey, { pinned: state.pinned });
  });
  view.watch(["ablate", "layer"], renderControls);
  view.watch(["runs", "shown", "analysis"], renderStatus);
  renderList();
  renderStatus();
  return view.unmount;
}
