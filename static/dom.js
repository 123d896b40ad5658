import { plotly } from "./plots.js";

/**
 * dom.js — building and finding the page's elements. A view finds its elements inside its own
 * root by `data-part`, never by a page-wide id, so it can be mounted twice.
 */

/** Create an element with attributes and text children (never innerHTML). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value == null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child == null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** The element `[data-part=name]` inside root. A missing one is a template error: say which. */
export function part(root, name) {
  const node = root.querySelector(`[data-part="${name}"]`);
  if (!node) throw new Error(`no [data-part="${name}"] inside #${root.id || root.tagName}`);
  return node;
}

/** Every `[data-part=name]` inside root (radio groups). */
export function parts(root, name) {
  return [...root.querySelectorAll(`[data-part="${name}"]`)];
}

/** Show an error's message in `box` (an element with role=alert), or hide the box for null. */
export function showError(box, error) {
  const message = error == null ? "" : typeof error === "string" ? error : error.message || String(error);
  box.textContent = message;
  box.hidden = !message;
  if (error && typeof error !== "string" && error.name !== "ApiError" && error.name !== "AbortError") console.error(error);
}

/** Listen, and return the function that stops listening (for a view's unmount). */
export function listen(target, type, fn, options) {
  target.addEventListener(type, fn, options);
  return () => target.removeEventListener(type, fn, options);
}

/**
 * A sentence as nodes: each {name} left in `text` (a t() result without that parameter) becomes
 * data[name] in a <span translate="no">. Token texts and hook names are the model's data, not the
 * page's language: marked so, a translation (or the pseudo-language test) leaves them alone.
 *   caption.replaceChildren(...withData(t("overview.caption", { position: i }), { text: visible(token.text) }))
 */
export function withData(text, data) {
  return text.split(/\{(\w+)\}/).map((piece, i) => (i % 2 ? el("span", { translate: "no", text: data[piece] ?? `{${piece}}` }) : piece));
}

/** A part's name as a JS name: "top-k" is `topK`. */
const partName = (key) => key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

/**
 * The view kit: a view's mount boilerplate, done once. A view is
 *
 *   export function mount(root, store, runKey) {
 *     const view = mountView(root, store);
 *     const { input, topK, error: errorBox } = view.parts; // [data-part="input"], "top-k", "error"
 *     view.on(input, "change", fn);                       // listeners, removed at unmount
 *     view.watch(["runs", "shown"], render);              // store.subscribe, undone at unmount
 *     view.plots(box);                                    // Plotly plots, purged at unmount
 *     view.cleanup(soon.cancel);                          // anything else undone at unmount
 *     ... if (!view.alive) return;                        // an answer arriving after unmount
 *     return view.unmount;
 *   }
 *
 * `view.parts.name` and `view.part("name")` are part(root, name) (a missing part is a template error
 * that says which); `view.all(name)` every [data-part=name]; `view.signal` aborts at unmount (for a fetch).
 */
export function mountView(root, store) {
  const controller = new AbortController();
  const undo = [];
  const plotted = [];
  const view = {
    root,
    alive: true,
    signal: controller.signal,
    parts: new Proxy({}, { get: (_, key) => (typeof key === "string" ? part(root, partName(key)) : undefined) }),
    part: (name) => part(root, name),
    all: (name) => parts(root, name),
    on(target, type, fn, options = {}) {
      target.addEventListener(type, fn, { ...options, signal: controller.signal });
    },
    watch(keys, fn) {
      undo.push(store.subscribe(keys, fn));
    },
    plots(...nodes) {
      plotted.push(...nodes);
    },
    cleanup(...fns) {
      undo.push(...fns);
    },
    unmount() {
      if (!view.alive) return;
      view.alive = false;
      controller.abort();
      for (const fn of undo.splice(0)) fn();
      const Plotly = plotly();
      if (Plotly) for (const node of plotted.splice(0)) Plotly.purge(node);
    },
  };
  return view;
}
