/**
 * plots.js — what the Plotly charts share: fonts that follow presenter mode, and one config.
 */
import { divergingScale } from "./colors.js";
export const config = { displayModeBar: false, responsive: true, doubleClick: false };

export function font(presenter) {
  return { family: "system-ui, -apple-system, 'Segoe UI', Roboto, 'Noto Sans CJK SC', 'PingFang SC', 'Microsoft YaHei', sans-serif",
    size: presenter ? 17 : 12, color: "#1b1f24" };
}

/** A layout with the page's font (larger in presenter mode) and a transparent background. */
export function baseLayout(presenter, extra = {}) {
  return {
    font: font(presenter),
    paper_bgcolor: "rgba(0,0,0,0)",
    plot_bgcolor: "rgba(0,0,0,0)",
    margin: { l: 60, r: 20, t: 10, b: 40 },
    ...extra,
  };
}

/** A heatmap trace's colours: centred on 0, from −limit to limit, a gap between cells. */
export function divergingCells(limit) {
  return { colorscale: divergingScale, zmid: 0, zmin: -limit, zmax: limit, xgap: 1, ygap: 1, colorbar: { thickness: 12 } };
}

export function plotly() {
  return window.Plotly;
}
