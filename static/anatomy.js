/**
 * anatomy.js — stage 10: where the parameters sit. A table of the loaded model's parameters by
 * kind of matrix (counted from its tensors by the server), and a chart of the share of each kind
 * beside GPT-3 175B (computed by the server from GPT-3's hyperparameters with the same formulas).
 * Data: GET /api/anatomy, asked for once the model is known; it depends on no run.
 *
 * mount(root, store, runKey) -> unmount   (runKey is not used: the parameters are the same for every run)
 */
import { anatomy } from "./api.js";
import { el, mountView, showError } from "./dom.js";
import { count, plotlyText, short } from "./format.js";
import { t } from "./i18n.js";
import { baseLayout, config, plotly } from "./plots.js";

// The kinds (model/anatomy.py KINDS) and notes the catalog words itself; any other is shown in the server's words.
const KINDS = new Set(["token_embedding", "unembedding", "position_embedding", "query", "key", "value",
  "attention_output", "mlp_up", "mlp_down", "layernorm", "biases", "other"]);
const NOTES = new Set(["token_embedding_tied", "unembedding_tied", "unembedding_untied"]);

const label = (kind) => (KINDS.has(kind.key) ? t(`anatomy.kind_${kind.key}`) : kind.label);
const description = (kind) => (KINDS.has(kind.key) ? t(`anatomy.kind_${kind.key}_description`) : kind.description);

function note(kind, tied) {
  if (!kind.note) return null;
  const key = `${kind.key}_${tied ? "tied" : "untied"}`;
  return NOTES.has(key) ? t(`anatomy.note_${key}`) : kind.note;
}

function shape(tensor) {
  const dims = tensor.shape.map(count).join(" × ");
  return tensor.copies > 1 ? `${tensor.copies} × [${dims}]` : `[${dims}]`;
}

const share = (kind, digits) => `${(kind.share * 100).toFixed(digits)}%`;

export function mount(root, store) {
  const s = store.state;
  const view = mountView(root, store);
  const { chart, table, total: totalBox, error: errorBox } = view.parts;
  let data = null;
  let asked = false;

  function renderTable(loaded, gpt3) {
    const tied = loaded.hyperparameters.tied_embeddings;
    const head = el("tr", {},
      el("th", { scope: "col", text: t("anatomy.col_kind") }),
      el("th", { scope: "col", class: "num", text: t("anatomy.col_parameters") }),
      el("th", { scope: "col", class: "num", text: t("anatomy.col_share") }),
      el("th", { scope: "col", class: "num", translate: "no", text: gpt3.name }));
    const rows = loaded.kinds.map((k) => {
      const other = gpt3.kinds.find((g) => g.key === k.key);
      const tensors = k.parts.map((p) => `${p.name} ${shape(p)} = ${count(p.count)}`).join("\n");
      const said = note(k, tied);
      // The tensors' names are the model's own (translate="no"), on the count they add up to.
      return el("tr", { "data-kind": k.key, "data-count": k.count },
        el("td", { title: said ? description(k) : null }, el("strong", { text: label(k) }), el("div", { class: "small muted", text: said || description(k) })),
        el("td", { class: "num", translate: "no", title: tensors, text: count(k.count) }),
        el("td", { class: "num", text: share(k, 2) }),
        el("td", { class: "num", text: other ? `${short(other.count)} (${share(other, 1)})` : "—" }));
    });
    const total = el("tr", { class: "total" },
      el("td", { text: t("anatomy.total") }),
      el("td", { class: "num", "data-testid": "anatomy-total-count", text: count(loaded.total) }),
      el("td", { class: "num", text: "100%" }),
      el("td", { class: "num", text: `${short(gpt3.total)} (${count(gpt3.total)})` }));
    table.replaceChildren(el("thead", {}, head), el("tbody", {}, ...rows, total));
    const hp = loaded.hyperparameters;
    totalBox.replaceChildren(el("span", { translate: "no", text: loaded.name }), ": ", t("anatomy.summary", { n_layers: hp.n_layers, d_model: hp.d_model,
      n_heads: hp.n_heads, d_head: hp.d_head, d_mlp: hp.d_mlp, d_vocab: count(hp.d_vocab), n_ctx: count(hp.n_ctx),
      total: count(loaded.total), n_params: count(data.n_params) }));
  }

  function drawChart(loaded, gpt3) {
    const Plotly = plotly();
    if (!Plotly) return;
    const kinds = gpt3.kinds.filter((k) => k.key !== "other");
    const hover = t("anatomy.chart_hover", { kind: "%{y}", count: "%{text}", share: "%{x:.2f}" });
    const series = (model, color, name) => {
      const found = kinds.map((kind) => model.kinds.find((k) => k.key === kind.key) || { count: 0, share: 0 });
      return {
        type: "bar", orientation: "h", name,
        y: kinds.map(label), x: found.map((k) => k.share * 100),
        text: found.map((k) => short(k.count)), textposition: "outside", cliponaxis: false,
        marker: { color },
        hovertemplate: `${plotlyText(model.name)}<br>${hover}<extra></extra>`,
      };
    };
    Plotly.react(chart, [
      series(loaded, "#0b5cad", t("anatomy.this_model", { total: short(loaded.total) })),
      series(gpt3, "#944a00", `${gpt3.name} (${short(gpt3.total)})`),
    ], baseLayout(s.presenter, {
      barmode: "group",
      height: s.presenter ? 520 : 430,
      margin: { l: 190, r: 60, t: 50, b: 40 },
      legend: { orientation: "h", yanchor: "bottom", y: 1.02, x: 0 },
      xaxis: { title: { text: t("anatomy.chart_axis") }, rangemode: "tozero" },
      yaxis: { autorange: "reversed" },
    }), config).then(() => {
      // The second legend entry is the other model's name, as the server spells it.
      chart.querySelectorAll(".legend .traces")[1]?.setAttribute("translate", "no");
    });
  }

  async function load() {
    if (asked || !s.model) return;
    asked = true;
    try {
      const answer = await anatomy();
      if (!view.alive) return;
      data = answer;
      const [loaded, gpt3] = data.models;
      renderTable(loaded, gpt3);
      drawChart(loaded, gpt3);
      showError(errorBox, null);
    } catch (error) {
      asked = false; // the next model change may try again
      if (view.alive) showError(errorBox, error);
    }
  }

  view.watch(["model"], load);
  view.watch(["presenter"], () => data && drawChart(...data.models));
  view.plots(chart);
  load();
  return view.unmount;
}
