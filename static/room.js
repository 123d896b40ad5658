/**
 * room.js — follow the teacher (issue 13).
 *
 * Teacher: "Open a room" in the header asks the server for a room (POST /api/rooms): a short
 * code, shown large in a panel with a QR code of the students' link (/r/CODE) and the link
 * itself, and a secret that only this tab holds (sessionStorage, so a reload keeps the room).
 * From then on the page publishes what it shows (PUT /api/rooms/CODE/state, X-Room-Secret):
 * the prompt, the stage card scrolled to, layer, head, pinned token, temperature and the scene
 * step (store.state.scene), when something changed: at once, and at most every 150 ms while
 * changes keep coming; and the same state again now and then, which keeps an idle room open.
 * "Close room" ends it on the server (DELETE /api/rooms/CODE): the students' pages say so at once.
 *
 * Student (/r/CODE): a bar "Following the teacher (room CODE)" with "Explore on my own" /
 * "Follow again". The page listens to the room's event stream (EventSource on
 * /api/rooms/CODE/events) and, while following, applies each state: layer, head, temperature
 * and the scene through the store, the prompt analyzed (prompt.js) only when it differs, the
 * pinned token once the run is shown, the stage card scrolled into view when it changes.
 * Exploring keeps listening but applies nothing; following again applies the latest state (and
 * drops what the student switched off meanwhile). A student publishes nothing. An unknown or
 * closed room is said on the page.
 *
 *   mount(root, store, runKey) -> unmount     root: the header the teacher's button goes into
 *
 * window.explainer.room (the browser tests read it): {role: "teacher" | "student", code,
 *   following, version (the last state received or published), applied (the last applied), ended (the
 *   error code when the room is unknown or has closed), sentAt / receivedAt (Date.now() of the last
 *   publish sent, of the last state received)}.
 */
import { closeRoom, openRoom, publishRoom, roomEventsUrl, roomQrUrl, roomSnapshot } from "./api.js";
import { el, listen, withData } from "./dom.js";
import { t } from "./i18n.js";
import { analyzeIds, analyzeText, analyzeWith } from "./prompt.js";
import { sameIds, selectRun } from "./store.js";

const PUBLISH_DELAY_MS = 150;
const KEEPALIVE_MAX_MS = 5 * 60 * 1000;
const SAVED = "explainer.room"; // sessionStorage: {code, secret} of the room this tab opened
const FOLLOW_PATH = /^\/r\/([A-Za-z0-9]{1,16})\/?$/;
const WATCHED = ["shown", "layer", "head", "pinned", "temperature", "scene"];

/** The stage card the reader is at: the last one whose top is above a quarter of the space under the token bar. */
export function currentStage() {
  const bar = document.getElementById("stage-tokens")?.getBoundingClientRect().bottom ?? 0;
  const line = bar + (innerHeight - bar) / 4;
  let at = null;
  for (const card of document.querySelectorAll(".stage[data-stage]:not(.sticky)")) {
    const r = card.getBoundingClientRect();
    if (!r.height) continue;
    if (r.top > line) break;
    at = card.dataset.stage;
  }
  return at ?? "prompt";
}

function loadCss() {
  const link = el("link", { rel: "stylesheet", href: "/static/room.css" });
  document.head.append(link);
  return link;
}

export function mount(root, store, runKey) {
  const followed = FOLLOW_PATH.exec(location.pathname);
  const info = (window.explainer = window.explainer || {}).room = {};
  const link = loadCss();
  const unmount = followed ? student(store, runKey, followed[1].toUpperCase(), info) : teacher(root, store, runKey, info);
  return () => {
    unmount();
    link.remove();
  };
}

// ------------------------------------------------------------------ teacher

function teacher(root, store, runKey, info) {
  const off = [];
  info.role = "teacher";
  const openButton = el("button", { type: "button", class: "ghost", "data-testid": "room-open",
    title: t("room.open_title"), text: t("room.open") });
  root.append(openButton);

  const title = el("h2", { id: "room-title", text: t("room.title") });
  const code = el("p", { class: "room-code", translate: "no", "data-testid": "room-code", "aria-label": t("room.code_label") });
  const qr = el("img", { class: "room-qr", alt: t("room.qr_alt"), "data-testid": "room-qr", width: "160", height: "160" });
  const url = el("a", { translate: "no", "data-testid": "room-url", target: "_blank", rel: "noopener" });
  const where = el("p", { class: "room-url" }, t("room.students_open"), " ", url);
  const local = el("p", { class: "room-warning", hidden: true, "data-testid": "room-localhost", text: t("room.localhost") });
  const error = el("p", { class: "room-error", role: "alert", hidden: true });
  const hide = el("button", { type: "button", class: "ghost", "aria-expanded": "true", "data-testid": "room-hide", text: t("room.hide") });
  const close = el("button", { type: "button", class: "ghost", "data-testid": "room-close", title: t("room.close_title"), text: t("room.close") });
  const body = el("div", { class: "room-body" }, where, local);
  const panel = el("section", { class: "room-panel", "data-testid": "room-panel", "aria-labelledby": "room-title", hidden: true },
    qr, el("div", { class: "room-side" }, title, code, body, error, el("div", { class: "room-buttons" }, hide, close)));
  document.body.append(panel);

  let room = null; // {code, secret, keepaliveMs}
  let sent = null; // the JSON of the last state the server has
  let timer = null;
  let lastPublish = -Infinity;
  let keepalive = null;
  let sending = false;
  let again = false;
  let stage = currentStage();

  function state() {
    const s = store.state;
    const run = selectRun(s, runKey);
    if (!run) return null;
    return {
      text: run.text,
      // A run asked for by ids (a generation's) is those ids: its text may tokenize to others.
      ids: run.byIds ? run.ids : null,
      stage,
      layer: s.layer,
      head: s.head,
      pinned: s.pinned != null && s.pinned < run.tokens.length ? s.pinned : null,
      temperature: s.temperature,
      scene: s.scene ? { id: s.scene.id, step: s.scene.step } : null,
    };
  }

  /** At most one publish per PUBLISH_DELAY_MS: a lone change goes at once (once the code that
   * made it has run, so that changes made together go together, and before the views' next frame
   * is drawn), a stream of them (the temperature slider dragged) every 150 ms, the last one always. */
  function schedule() {
    if (!room || timer) return;
    const wait = lastPublish + PUBLISH_DELAY_MS - performance.now();
    const go = () => {
      timer = null;
      lastPublish = performance.now();
      publish();
    };
    if (wait > 0) {
      timer = setTimeout(go, wait);
    } else {
      timer = true;
      queueMicrotask(go);
    }
  }

  /** Send the state if it changed (or `force`: the same again, to keep the room open); one request at a time. */
  async function publish(force = false) {
    if (!room) return;
    if (sending) {
      again = true;
      return;
    }
    const now = state();
    const json = JSON.stringify(now);
    if (!now || (json === sent && !force)) return;
    const mine = room;
    sending = true;
    info.sentAt = Date.now();
    try {
      const answer = await publishRoom(mine.code, mine.secret, now);
      if (room !== mine) return;
      sent = json;
      info.version = answer.version;
      error.hidden = true;
    } catch (e) {
      if (room !== mine) return;
      if (e.code === "room_expired" || e.code === "unknown_room" || e.code === "not_teacher") {
        forget();
        error.textContent = t("room.closed");
      } else {
        error.textContent = t("room.publish_failed", { error: e.message });
      }
      error.hidden = false;
      panel.hidden = false;
    } finally {
      sending = false;
      if (again) {
        again = false;
        schedule();
      }
    }
  }

  function show(opened) {
    room = opened;
    sent = null;
    info.code = opened.code;
    code.textContent = opened.code;
    qr.src = roomQrUrl(opened.code);
    const follow = new URL(`/r/${opened.code}`, location.origin).href;
    url.href = follow;
    url.textContent = follow;
    local.hidden = !/^(localhost|127\.\d+\.\d+\.\d+|\[::1\])$/.test(location.hostname);
    error.hidden = true;
    panel.hidden = false;
    setCollapsed(false);
    stage = currentStage();
    openButton.hidden = true;
    clearInterval(keepalive);
    keepalive = setInterval(() => publish(true), opened.keepaliveMs);
    publish();
  }

  function forget() {
    room = null;
    info.code = null;
    if (timer !== true) clearTimeout(timer);
    timer = null;
    clearInterval(keepalive);
    sessionStorage.removeItem(SAVED);
    openButton.hidden = false;
  }

  /** Shown: a card over the page's bottom left, for the whole class to read. Hidden: only the code,
   * in the header (nothing covers the page, nor the scene player). */
  function setCollapsed(collapsed) {
    const focused = panel.contains(document.activeElement) ? document.activeElement : null;
    if (collapsed) openButton.after(panel);
    else document.body.append(panel);
    focused?.focus();
    panel.classList.toggle("collapsed", collapsed);
    body.hidden = collapsed;
    qr.hidden = collapsed;
    hide.textContent = collapsed ? t("room.show") : t("room.hide");
    hide.setAttribute("aria-expanded", collapsed ? "false" : "true");
  }

  async function open() {
    openButton.disabled = true;
    openButton.textContent = t("room.opening");
    try {
      const opened = await openRoom();
      const saved = { code: opened.code, secret: opened.secret, keepaliveMs: keepaliveMs(opened.expires_in) };
      sessionStorage.setItem(SAVED, JSON.stringify(saved));
      show(saved);
      hide.focus(); // the button that was pressed is gone: keep the keyboard in the panel
    } catch (e) {
      error.textContent = t("room.open_failed", { error: e.message });
      error.hidden = false;
      panel.hidden = false;
      setCollapsed(true);
      code.textContent = "";
    } finally {
      openButton.disabled = false;
      openButton.textContent = t("room.open");
    }
  }

  async function endRoom() {
    const ending = room;
    forget();
    panel.hidden = true;
    openButton.focus();
    if (!ending) return;
    try {
      await closeRoom(ending.code, ending.secret); // the students' pages say so at once
    } catch (e) {
      // Gone already (expired, or the server restarted): nothing left to close.
      if (!(e && e.name === "ApiError" && (e.status === 404 || e.status === 410))) console.error(e);
    }
  }

  /** A room this tab opened before a reload: shown again if the server still has it. */
  async function resume() {
    let saved = null;
    try {
      saved = JSON.parse(sessionStorage.getItem(SAVED) || "null");
    } catch (_) { /* not ours */ }
    if (!saved || typeof saved.code !== "string" || typeof saved.secret !== "string") return;
    try {
      await roomSnapshot(saved.code);
      show({ keepaliveMs: KEEPALIVE_MAX_MS, ...saved });
    } catch (_) {
      sessionStorage.removeItem(SAVED); // closed while the page was away
    }
  }

  let frame = 0;
  function onScroll() {
    if (!room || frame) return;
    frame = requestAnimationFrame(() => {
      frame = 0;
      const now = currentStage();
      if (now !== stage) {
        stage = now;
        schedule();
      }
    });
  }

  off.push(listen(openButton, "click", open));
  off.push(listen(close, "click", endRoom));
  off.push(listen(hide, "click", () => setCollapsed(!panel.classList.contains("collapsed"))));
  off.push(listen(window, "scroll", onScroll, { passive: true }));
  off.push(store.subscribe(WATCHED, schedule));
  resume();

  return () => {
    for (const f of off) f();
    clearTimeout(timer);
    clearInterval(keepalive);
    cancelAnimationFrame(frame);
    room = null;
    openButton.remove();
    panel.remove();
  };
}

/** Re-publish often enough that an idle room never closes while the page is open. */
function keepaliveMs(expiresIn) {
  return Math.max(1000, Math.min(KEEPALIVE_MAX_MS, (Number(expiresIn) || 600) * 1000 / 3));
}

// ------------------------------------------------------------------ student

function student(store, runKey, code, info) {
  const off = [];
  Object.assign(info, { role: "student", code, following: true, version: null, applied: null });

  const status = el("p", { class: "room-status", "data-testid": "room-status", "aria-live": "polite" });
  const toggle = el("button", { type: "button", "aria-pressed": "true", "data-testid": "room-follow-toggle" });
  const error = el("p", { class: "room-error", role: "alert", hidden: true, "data-testid": "room-error" });
  const bar = el("section", { class: "room-bar", "data-testid": "room-bar", "aria-label": t("room.bar_label") },
    status, toggle, error);
  document.body.append(bar);

  let source = null;
  let latest = null; // {version, state} last received
  let target = null; // the state being applied: {...state, scrolled: the stage last scrolled to}
  let ready = false; // the model is known and the page's first analysis has started
  let lost = false; // the event stream dropped, and EventSource is connecting again

  function render() {
    if (info.ended) return;
    const key = info.following ? "room.following" : "room.exploring";
    status.replaceChildren(...withData(t(key), { code }));
    if (lost && source) status.append(" ", t("room.reconnecting"));
    else if (info.following && latest && !latest.state) status.append(" ", t("room.waiting"));
    toggle.textContent = info.following ? t("room.explore") : t("room.follow");
    toggle.setAttribute("aria-pressed", info.following ? "true" : "false");
    toggle.hidden = false;
    bar.dataset.following = info.following ? "1" : "0";
  }

  function fail(e) {
    const words = e && e.code === "unknown_room" ? t("room.unknown")
      : e && e.code === "room_expired" ? t("room.expired")
        : t("room.failed", { error: (e && e.message) || String(e) });
    error.replaceChildren(...withData(words, { code }));
    error.hidden = false;
    error.dataset.code = (e && e.code) || "error";
    toggle.hidden = true;
    status.hidden = true;
    bar.dataset.following = "0";
    info.following = false;
    info.ended = (e && e.code) || "error";
    stopListening();
  }

  function stopListening() {
    if (source) source.close();
    source = null;
  }

  /** Apply the latest state (force: even if this version was applied already). */
  function apply(force = false) {
    if (!info.following || !ready || !latest || !latest.state) return;
    if (!force && info.applied === latest.version) return;
    const state = latest.state;
    const before = target;
    const s = store.state;
    const { n_layers: L, n_heads: H } = s.model;
    store.set({
      layer: Math.min(state.layer, L - 1),
      head: Math.min(state.head, H - 1),
      temperature: state.temperature,
    });
    // A new scene step brings its own prompt (scenes.js): the room leaves the text to it this time.
    const sceneNow = JSON.stringify(s.scene ? { id: s.scene.id, step: s.scene.step } : null);
    const sceneChanged = JSON.stringify(state.scene) !== sceneNow;
    target = { ...state, scrolled: !force && before && before.stage === state.stage ? before.scrolled : null };
    info.applied = latest.version;
    if (sceneChanged) store.set({ scene: state.scene ? { ...state.scene } : null });
    const run = selectRun(store.state, runKey);
    const analysis = store.state.analysis[runKey];
    const coming = analysis && analysis.status === "running" &&
      (target.ids ? sameIds(analysis.ids, target.ids) : !analysis.ids && analysis.text === target.text);
    if (force && !state.scene && store.state.interventions.length) {
      // Following again: the teacher's view, without what this student switched off meanwhile.
      analyzeWith(store, runKey, target.ids ? { ids: target.ids, text: target.text } : target.text, []);
    } else if (!(sceneChanged && state.scene) && !isTarget(run) && !coming) {
      showTarget({ pinned: target.pinned });
    }
    settle();
  }

  /** Whether `run` is the teacher's prompt: the same ids when the teacher's run was asked for by
   * ids, else the same text. */
  function isTarget(run) {
    if (!run) return false;
    return target.ids ? run.byIds && sameIds(run.ids, target.ids) : !run.byIds && run.text === target.text;
  }

  function showTarget(after) {
    if (target.ids) return analyzeIds(store, runKey, target.ids, { ...after, text: target.text });
    return analyzeText(store, runKey, target.text, after);
  }

  /** Once the teacher's prompt is shown: its pinned token, and its stage scrolled into view. */
  function settle() {
    if (!info.following || !target) return;
    const s = store.state;
    const run = selectRun(s, runKey);
    if (!isTarget(run)) return;
    const pinned = target.pinned != null && target.pinned < run.tokens.length ? target.pinned : null;
    if (s.pinned !== pinned) store.set({ pinned });
    if (target.stage && target.scrolled !== target.stage) {
      target.scrolled = target.stage;
      const wanted = target;
      // Two frames on: the token bar has its new prompt's height (the scroll padding).
      requestAnimationFrame(() => requestAnimationFrame(() => {
        if (target !== wanted || !info.following) return;
        document.querySelector(`.stage[data-stage="${wanted.stage}"]`)?.scrollIntoView({ block: "start" });
      }));
    }
  }

  function receive(message) {
    let data;
    try {
      data = JSON.parse(message.data);
    } catch (_) {
      return;
    }
    latest = data;
    info.version = data.version;
    info.receivedAt = Date.now();
    lost = false;
    render();
    apply();
  }

  function listenToRoom() {
    source = new EventSource(roomEventsUrl(code));
    source.onopen = () => {
      lost = false;
      render();
    };
    source.onmessage = receive;
    source.addEventListener("end", (event) => {
      let body = {};
      try {
        body = JSON.parse(event.data);
      } catch (_) { /* said below */ }
      fail({ code: body.code, message: body.detail });
    });
    source.onerror = () => {
      if (!source) return;
      lost = true;
      if (source.readyState === EventSource.CLOSED) {
        // Refused (the room closed while the connection was down): the snapshot says why.
        stopListening();
        roomSnapshot(code).then(() => {
          listenToRoom(); // it is there after all: listen again
        }, fail);
      }
      render();
    };
  }

  toggle.addEventListener("click", () => {
    info.following = !info.following;
    render();
    if (info.following) apply(true);
    else target = null;
  });

  const isReady = (s) => s.model && s.analysis[runKey];
  function whenReady() {
    ready = true;
    apply(true);
  }
  if (isReady(store.state)) setTimeout(whenReady, 0);
  else {
    const stop = store.subscribe(["model", "analysis"], (s) => {
      if (!isReady(s)) return;
      stop();
      setTimeout(whenReady, 0); // after main.js has asked for its first analysis: the room's comes later, and wins
    });
    off.push(stop);
  }
  off.push(store.subscribe(["shown"], settle));

  render();
  roomSnapshot(code).then((snapshot) => {
    if (!latest) latest = snapshot;
    info.version = latest.version;
    render();
    apply();
    listenToRoom();
  }, fail);

  return () => {
    for (const f of off) f();
    stopListening();
    bar.remove();
  };
}
