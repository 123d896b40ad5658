/**
 * colors.js — colour scales, and the canvases drawn with them, shared by the views.
 * Sequential data (attention weights) use viridis, signed vectors a blue–white–red diverging
 * scale (ColorBrewer RdBu): both stay readable for the common colour-vision deficiencies.
 */

const VIRIDIS = ["#440154", "#482475", "#414487", "#355f8d", "#2a788e", "#21918c", "#22a884", "#44bf70", "#7ad151", "#bddf26", "#fde725"];
const RDBU = ["#053061", "#2166ac", "#4393c3", "#92c5de", "#d1e5f0", "#f7f7f7", "#fddbc7", "#f4a582", "#d6604d", "#b2182b", "#67001f"];

const hex = (h) => [1, 3, 5].map((i) => parseInt(h.slice(i, i + 2), 16));

function lut(stops) {
  const rgb = stops.map(hex);
  const table = new Uint8ClampedArray(256 * 3);
  for (let i = 0; i < 256; i++) {
    const x = (i / 255) * (rgb.length - 1);
    const j = Math.min(Math.floor(x), rgb.length - 2);
    const f = x - j;
    for (let c = 0; c < 3; c++) table[i * 3 + c] = Math.round(rgb[j][c] * (1 - f) + rgb[j + 1][c] * f);
  }
  return table;
}

export const VIRIDIS_LUT = lut(VIRIDIS);
export const DIVERGING_LUT = lut(RDBU);

/** Plotly colorscales made from the same stops. */
export const viridisScale = VIRIDIS.map((c, i) => [i / (VIRIDIS.length - 1), c]);
export const divergingScale = RDBU.map((c, i) => [i / (RDBU.length - 1), c]);

function index01(x) {
  return Math.max(0, Math.min(255, Math.round((Number.isFinite(x) ? x : 0) * 255)));
}

/** [r, g, b] of viridis at x in [0, 1]. */
export function viridis(x) {
  const i = index01(x) * 3;
  return [VIRIDIS_LUT[i], VIRIDIS_LUT[i + 1], VIRIDIS_LUT[i + 2]];
}

export function css([r, g, b]) {
  return `rgb(${r},${g},${b})`;
}

function luminance([r, g, b]) {
  const linear = (c) => (c /= 255) <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  return 0.2126 * linear(r) + 0.7152 * linear(g) + 0.0722 * linear(b);
}

/** Black or white, whichever has the higher WCAG contrast on [r, g, b]: at least 4.58:1 on
 * any colour (white on viridis's teals was 3.1-3.9:1). Pure black: #111 would fall to 4.36:1. */
export function inkOn(rgb) {
  const l = luminance(rgb);
  return (l + 0.05) / 0.05 >= 1.05 / (l + 0.05) ? "#000" : "#fff";
}

/**
 * Draw `values` as a strip of cells into `canvas` (one row, or `rows` rows), with a diverging
 * scale symmetric around 0 up to `limit` (default: the max |value|). Returns the limit used.
 */
export function drawStrip(canvas, values, { rows = 1, limit = null } = {}) {
  const cols = Math.ceil(values.length / rows);
  let m = limit;
  if (m == null) {
    m = 0;
    for (const v of values) if (Math.abs(v) > m) m = Math.abs(v);
  }
  m = m || 1;
  canvas.width = cols;
  canvas.height = rows;
  const ctx = canvas.getContext("2d");
  const image = ctx.createImageData(cols, rows);
  for (let i = 0; i < values.length; i++) {
    const k = index01(0.5 + values[i] / (2 * m)) * 3;
    image.data[i * 4] = DIVERGING_LUT[k];
    image.data[i * 4 + 1] = DIVERGING_LUT[k + 1];
    image.data[i * 4 + 2] = DIVERGING_LUT[k + 2];
    image.data[i * 4 + 3] = 255;
  }
  ctx.putImageData(image, 0, 0);
  return m;
}

/**
 * Draw an [n, n] attention matrix (values in [0, 1]) starting at `offset` of `data`: viridis below
 * the diagonal, grey stripes for the masked future. Long prompts are drawn at most `max` pixels
 * wide, each pixel showing the largest weight of its block, so sharp attention stays visible.
 */
export function drawMatrix(canvas, data, n, offset = 0, max = 128) {
  const size = Math.min(n, max);
  const block = n / size;
  canvas.width = size;
  canvas.height = size;
  const ctx = canvas.getContext("2d");
  const image = ctx.createImageData(size, size);
  for (let y = 0; y < size; y++) {
    const q0 = Math.floor(y * block);
    const q1 = Math.max(q0 + 1, Math.floor((y + 1) * block));
    for (let x = 0; x < size; x++) {
      const k0 = Math.floor(x * block);
      const k1 = Math.max(k0 + 1, Math.floor((x + 1) * block));
      const p = (y * size + x) * 4;
      if (k0 > q1 - 1) {
        const stripe = (x + y) % 4 < 2 ? 215 : 235; // entirely in the masked future
        image.data[p] = image.data[p + 1] = image.data[p + 2] = stripe;
      } else {
        let v = 0;
        for (let q = q0; q < q1; q++) {
          for (let k = k0; k < Math.min(k1, q + 1); k++) v = Math.max(v, data[offset + q * n + k]);
        }
        const i = index01(v) * 3;
        image.data[p] = VIRIDIS_LUT[i];
        image.data[p + 1] = VIRIDIS_LUT[i + 1];
        image.data[p + 2] = VIRIDIS_LUT[i + 2];
      }
      image.data[p + 3] = 255;
    }
  }
  ctx.putImageData(image, 0, 0);
}
