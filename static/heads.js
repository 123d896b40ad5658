/**
 * heads.js — "What each head does": three detectors scored on the shown run's prompt
 * (GET /api/runs/{id}/head-scores), and the induction test (POST /api/induction-probe).
 *
 *   - For each kind (previous_token, duplicate_token, induction): the server's definition of the
 *     score (from the response, quoted as it is: the server's words), and the five heads with the
 *     highest score, best first. Each is a button `head-badge` (data-layer, data-head, data-kind,
 *     data-score: the API's number) that selects that layer and head; a score ≥ 0.5 is marked
 *     `strong`. A head scored null (no query position with such a key) is not ranked.
 *   - "Run the induction test": random tokens repeated twice; the five heads with the highest
 *     induction score (`induction-probe-head`, the same data attributes) and the mean loss on the
 *     first and the second half.
 *     The answer is the store's `probe` (runInductionProbe), so a scene that runs the test shows it here.
 *   - The scores are asked for only while the stage is on screen (a request per run).
 *
 * mount(root, store, runKey) -> unmount
 */
import { explain, runInductionProbe, selectHead } from "./actions.js";
import { headScores } from "./api.js";
import { el, mountView, showError } from "./dom.js";
import { fmt } from "./format.js";
import { t } from "./i18n.js";
import { onScreen } from "./lazy.js";
import { ranked, selectRun } from "./store.js";

export const KINDS = ["previous_token", "duplicate_token", "induction"];
const STRONG = 0.5;

/** One ranked head as a button that selects it. */
function badge(store, kind, { layer, head, score }, testid) {
  const selected = store.state.layer === layer && store.state.head === head;
  return el("li", {},
    el("button", {
      type: "button", class: `head-badge${score >= STRONG ? " strong" : ""}${selected ? " selected" : ""}`,
      "data-testid": testid, "data-layer": layer, "data-head": head, "data-kind": kind, "data-score": String(score),
      "aria-label": t("heads.head_label", { layer, head, score: fmt(score, 3) }),
      onclick: () => selectHead(store, layer, head),
    },
    el("span", { class: "head-name" }, t("heads.head", { layer, head })),
    el("span", { class: "head-bar", "aria-hidden": "true" },
      el("span", { style: `width: ${Math.round(Math.max(0, Math.min(1, score)) * 100)}%` })),
    el("span", { class: "numbers" }, fmt(score, 3)),
    score >= STRONG ? el("span", { class: "tag" }, t("heads.strong")) : null));
}

export function mount(root, store, runKey) {
  const state = store.state;
  const view = mountView(root, store);
  const { status, kinds, probe: probeButton, probeStatus, probeResult, probeLoss, probeList, error: errorBox } = view.parts;
  let shownId = null; // the run whose scores are drawn (or asked for)
  let scores = null;

  const fail = (error) => {
    if (!view.alive) return;
    showError(errorBox, error && error.name === "ApiError" ? explain(error) : error);
  };

  function drawScores() {
    kinds.replaceChildren();
    if (!scores) return;
    for (const kind of KINDS) {
      const top = ranked(scores[kind]);
      // The page's own words for the definitions the API states (so they can be translated).
      kinds.append(el("div", { class: "head-kind", "data-kind": kind },
        el("h3", {}, t(`heads.kind_${kind}`)),
        el("p", { class: "small muted", "data-testid": "head-definition", "data-kind": kind }, t(`heads.definition_${kind}`)),
        top.length
          ? el("ol", { class: "head-rank", "aria-label": t("heads.list_label") }, ...top.map((x) => badge(store, kind, x, "head-badge")))
          : el("p", { class: "small muted" }, t("heads.none"))));
    }
  }

  async function load() {
    const run = selectRun(state, runKey);
    if (!run || run.runId === shownId) return;
    const id = run.runId;
    shownId = id;
    status.textContent = t("heads.loading");
    try {
      const answer = await headScores(id);
      if (!view.alive || shownId !== id) return;
      scores = answer;
      status.textContent = "";
      showError(errorBox, null);
      root.dataset.runId = id;
      drawScores();
    } catch (error) {
      if (shownId === id) {
        shownId = null; // asked again next time
        status.textContent = "";
        fail(error);
      }
    }
  }

  function drawProbe() {
    const probe = store.state.probe;
    if (!probe) return;
    const first = probe.loss_first_half;
    const second = probe.loss_second_half;
    probeLoss.dataset.first = String(first);
    probeLoss.dataset.second = String(second);
    probeLoss.replaceChildren(t("heads.probe_loss", { first: fmt(first, 3), second: fmt(second, 3) }), " ",
      t(second < first ? "heads.probe_lower" : "heads.probe_not_lower"));
    probeList.replaceChildren(...ranked(probe.induction).map((x) => badge(store, "induction", x, "induction-probe-head")));
    probeResult.hidden = false;
  }

  async function runProbe() {
    probeButton.disabled = true;
    probeStatus.textContent = t("heads.probe_running");
    showError(errorBox, null);
    try {
      // With whatever is switched off (experiments), so switching the induction heads off shows in the loss.
      await runInductionProbe(store, state.interventions || []);
      if (view.alive) probeStatus.textContent = "";
    } catch (error) {
      probeStatus.textContent = "";
      fail(error);
    } finally {
      if (view.alive) probeButton.disabled = false;
    }
  }

  const screen = onScreen(root);
  const refresh = () => {
    const run = selectRun(state, runKey);
    if (run && run.runId !== shownId && !screen.visible) status.textContent = t("heads.waiting");
    screen.whenVisible(load);
  };
  view.on(probeButton, "click", runProbe);
  view.watch(["runs", "shown"], refresh);
  view.watch(["layer", "head"], () => { drawScores(); drawProbe(); });
  view.watch(["probe"], drawProbe);
  view.cleanup(screen.stop);
  refresh();
  drawProbe();
  return view.unmount;
}
